//! The admin API's safe-change endpoints:
//!
//! - `PUT /components/handler/canary?percent=N` with a .wasm body: checked
//!   like a push, then serves N% of requests beside the stable version
//!   (replacing any canary); with an empty body: the canary's share becomes
//!   N (409 without a canary).
//! - `POST /components/handler/promote`: the canary serves everything.
//! - `DELETE /components/handler/canary`: the canary stops serving.
//! - `GET /model-split`, `PUT /model-split` (`{"split": "a=90,b=10"}`, each
//!   model checked against the backend's list), `DELETE /model-split`.

use bytes::Bytes;
use http::{Method, StatusCode};
use serde_json::{Value, json};
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

use super::AdminApi;
use super::describe::{describe, describe_canary};
use crate::rollout::model_split::ModelSplit;
use crate::runtime::canary::DropReason;
use crate::server::{json_error, json_response as json};

type Response = hyper::Response<HyperOutgoingBody>;

impl AdminApi {
    /// The answer to a safe-change call, or `None` when `path` is not one.
    pub(super) async fn rollout(
        &self,
        method: &Method,
        path: &str,
        query: &str,
        body: Bytes,
    ) -> Option<Response> {
        let versions = self.installer.versions();
        let no_canary =
            |error: crate::runtime::versions::NoCanary| json_error(StatusCode::CONFLICT, &error.to_string());
        Some(match (method, path) {
            (&Method::PUT, "/components/handler/canary") => {
                let percent = match percent(query) {
                    Ok(percent) => percent,
                    Err(message) => return Some(json_error(StatusCode::BAD_REQUEST, &message)),
                };
                if body.is_empty() {
                    match versions.set_canary_percent(percent) {
                        Ok(canary) => json(StatusCode::OK, &describe_canary(&canary, self.metrics())),
                        Err(error) => no_canary(error),
                    }
                } else {
                    match self.installer.canary(body, "admin upload (canary)", percent).await {
                        Ok(canary) => json(StatusCode::OK, &describe_canary(&canary, self.metrics())),
                        Err(error) => {
                            tracing::warn!(%error, "canary upload refused");
                            json_error(StatusCode::UNPROCESSABLE_ENTITY, &error.to_string())
                        }
                    }
                }
            }
            (&Method::POST, "/components/handler/promote") => match versions.promote() {
                Ok(version) => json(StatusCode::OK, &describe(&version, self.metrics())),
                Err(error) => no_canary(error),
            },
            (&Method::DELETE, "/components/handler/canary") => {
                match versions.drop_canary(&DropReason::Operator) {
                    Ok(version) => {
                        self.metrics().record_canary_drop(DropReason::Operator.label());
                        json(StatusCode::OK, &json!({"dropped": describe(&version, self.metrics())}))
                    }
                    Err(error) => no_canary(error),
                }
            }
            (_, "/components/handler/canary" | "/components/handler/promote") => {
                json_error(StatusCode::METHOD_NOT_ALLOWED, "wrong method for this admin endpoint")
            }
            (&Method::GET, "/model-split") => json(StatusCode::OK, &self.split_answer()),
            (&Method::PUT, "/model-split") => match self.checked_split(&body).await {
                Ok(split) => {
                    self.capabilities.telemetry.set_model_split(Some(split));
                    json(StatusCode::OK, &self.split_answer())
                }
                Err((status, message)) => json_error(status, &message),
            },
            (&Method::DELETE, "/model-split") => {
                self.capabilities.telemetry.set_model_split(None);
                json(StatusCode::OK, &self.split_answer())
            }
            (_, "/model-split") => {
                json_error(StatusCode::METHOD_NOT_ALLOWED, "wrong method for this admin endpoint")
            }
            _ => return None,
        })
    }

    fn metrics(&self) -> &crate::caps::telemetry::rollout_metrics::RolloutMetrics {
        self.capabilities.telemetry.rollout_metrics()
    }

    fn split_answer(&self) -> Value {
        let telemetry = &self.capabilities.telemetry;
        let split = telemetry.model_split().get().map(|split| {
            split
                .models()
                .iter()
                .map(|(model, weight)| json!({"model": model, "weight": weight}))
                .collect::<Vec<_>>()
        });
        json!({"split": split, "current_model": &*telemetry.current_model()})
    }

    /// The body's split, each model checked against the handler's `GET /models`.
    async fn checked_split(&self, body: &[u8]) -> Result<ModelSplit, (StatusCode, String)> {
        let invalid = |message: String| (StatusCode::BAD_REQUEST, message);
        let value: Value = serde_json::from_slice(body).map_err(|error| invalid(format!("body: {error}")))?;
        let text = value
            .get("split")
            .and_then(Value::as_str)
            .ok_or_else(|| invalid("split: required, a string such as \"a=90,b=10\"".into()))?;
        let split = ModelSplit::parse(text).map_err(|message| invalid(format!("split: {message}")))?;
        let request = hyper::Request::get("/models")
            .header(http::header::HOST, "localhost")
            .body(Bytes::new())
            .map_err(|error| (StatusCode::INTERNAL_SERVER_ERROR, error.to_string()))?;
        let response = self.service.handle_in_process(request).await;
        let status = response.status();
        let listing = http_body_util::BodyExt::collect(response.into_body())
            .await
            .map(|body| serde_json::from_slice::<Value>(&body.to_bytes()).unwrap_or(Value::Null))
            .unwrap_or(Value::Null);
        if !status.is_success() {
            let reason = listing.get("error").and_then(Value::as_str).unwrap_or("no reason given");
            return Err((
                StatusCode::SERVICE_UNAVAILABLE,
                format!("cannot check the models: GET /models answered {status}: {reason}"),
            ));
        }
        let offered: Vec<&str> = listing["models"]
            .as_array()
            .map(|models| models.iter().filter_map(|model| model["name"].as_str()).collect())
            .unwrap_or_default();
        match split.models().iter().find(|(model, _)| !offered.contains(&model.as_str())) {
            Some((missing, _)) => Err((StatusCode::NOT_FOUND, format!("model '{missing}' not found"))),
            None => Ok(split),
        }
    }
}

/// `percent=N` from the query, 0 to 100.
fn percent(query: &str) -> Result<u32, String> {
    let value = query.split('&').find_map(|pair| pair.strip_prefix("percent="));
    value.and_then(|value| value.parse::<u32>().ok()).filter(|percent| *percent <= 100).ok_or_else(|| {
        "percent: required in the query (?percent=N), a whole number from 0 to 100".to_string()
    })
}
