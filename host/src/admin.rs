//! The operator API, on its own listener (ADMIN_BIND:ADMIN_PORT, loopback by
//! default), off unless ADMIN_TOKEN is set. Every call needs
//! `Authorization: Bearer $ADMIN_TOKEN` (401 otherwise).
//!
//! - `PUT /components/handler` (body: the .wasm): through the
//!   [`HandlerInstaller`] → `{version, sha256, compile_ms,
//!   compiled_from_cache}`. Any failure is 422 with the reason, and the
//!   serving version stays.
//! - `GET /components`: the active version and the kept previous ones.
//! - `POST /components/handler/rollback`, optionally `{"sha256": "..."}`.
//! - `PUT /plugins` (body: the plugin's .wasm): loaded and checked like a
//!   plugin in PLUGINS_DIR → the plugin; 422 with the reason if refused, 409
//!   if another plugin serves one of its characters.
//! - `GET /plugins`: the loaded plugins.
//! - `DELETE /plugins/{name}`: unloads it (404 if none has that name).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{HeaderValue, Method, StatusCode, header};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

use crate::caps::plugins::{PluginInstallError, PromptPlugin, PromptPlugins};
use crate::listener::{ConnectionLimits, accept_loop};
use crate::runtime::installer::HandlerInstaller;
use crate::runtime::versions::{HandlerVersion, RollbackError};
use crate::server::{json_error, json_response as json};

/// What the admin API needs.
pub struct AdminApi {
    /// Checks and swaps in new handlers.
    pub installer: Arc<HandlerInstaller>,
    /// The bearer token.
    pub token: String,
    /// The loaded prompt plugins.
    pub plugins: Arc<PromptPlugins>,
    /// Largest upload accepted.
    pub max_component_bytes: u64,
}

impl AdminApi {
    async fn handle(&self, request: hyper::Request<Incoming>) -> hyper::Response<HyperOutgoingBody> {
        if !self.authorized(&request) {
            let mut response = json_error(StatusCode::UNAUTHORIZED, "missing or wrong bearer token");
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return response;
        }
        let (parts, body) = request.into_parts();
        let limit = usize::try_from(self.max_component_bytes).unwrap_or(usize::MAX);
        let body = match Limited::new(body, limit).collect().await {
            Ok(body) => body.to_bytes(),
            Err(_) => return json_error(StatusCode::PAYLOAD_TOO_LARGE, "upload over MAX_COMPONENT_BYTES"),
        };
        match (&parts.method, parts.uri.path()) {
            (&Method::PUT, "/components/handler") => match self.installer.push(body, "admin upload").await {
                Ok(version) => json(StatusCode::OK, &pushed(&version)),
                Err(error) => {
                    tracing::warn!(%error, "handler upload refused");
                    json_error(StatusCode::UNPROCESSABLE_ENTITY, &error.to_string())
                }
            },
            (&Method::GET, "/components") => {
                let (active, previous) = self.installer.versions().list();
                let previous: Vec<Value> = previous.iter().map(|version| describe(version)).collect();
                json(StatusCode::OK, &json!({"active": describe(&active), "previous": previous}))
            }
            (&Method::POST, "/components/handler/rollback") => {
                let sha256 = serde_json::from_slice::<Value>(&body)
                    .ok()
                    .and_then(|value| value.get("sha256").and_then(Value::as_str).map(str::to_string));
                match self.installer.versions().rollback(sha256.as_deref()) {
                    Ok(version) => json(StatusCode::OK, &describe(&version)),
                    Err(error @ RollbackError::NoPrevious) => {
                        json_error(StatusCode::CONFLICT, &error.to_string())
                    }
                    Err(error @ RollbackError::Unknown { .. }) => {
                        json_error(StatusCode::NOT_FOUND, &error.to_string())
                    }
                }
            }
            (&Method::PUT, "/plugins") => match self.plugins.push(body, "admin upload").await {
                Ok(installed) => {
                    let mut answer = describe_plugin(&installed.plugin);
                    answer["replaced"] = json!(installed.replaced.as_ref().map(|old| old.sha256()));
                    json(StatusCode::OK, &answer)
                }
                Err(error) => {
                    tracing::warn!(%error, "plugin upload refused");
                    let status = match error {
                        PluginInstallError::Conflict { .. } => StatusCode::CONFLICT,
                        PluginInstallError::Load(_) => StatusCode::UNPROCESSABLE_ENTITY,
                    };
                    json_error(status, &error.to_string())
                }
            },
            (&Method::GET, "/plugins") => {
                let plugins: Vec<Value> =
                    self.plugins.list().iter().map(|plugin| describe_plugin(plugin)).collect();
                json(StatusCode::OK, &json!({ "plugins": plugins }))
            }
            (&Method::DELETE, path) if path.starts_with("/plugins/") => {
                let name = &path["/plugins/".len()..];
                match self.plugins.remove(name) {
                    Some(plugin) => json(StatusCode::OK, &json!({ "removed": describe_plugin(&plugin) })),
                    None => json_error(StatusCode::NOT_FOUND, &format!("no plugin named '{name}' is loaded")),
                }
            }
            (_, path) if path == "/plugins" || path.starts_with("/plugins/") => {
                json_error(StatusCode::METHOD_NOT_ALLOWED, "wrong method for this admin endpoint")
            }
            (_, "/components/handler" | "/components" | "/components/handler/rollback") => {
                json_error(StatusCode::METHOD_NOT_ALLOWED, "wrong method for this admin endpoint")
            }
            (_, path) => json_error(StatusCode::NOT_FOUND, &format!("no such admin endpoint: {path}")),
        }
    }

    fn authorized(&self, request: &hyper::Request<Incoming>) -> bool {
        let Some(given) = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "))
        else {
            return false;
        };
        constant_time_eq::constant_time_eq(given.as_bytes(), self.token.as_bytes())
    }

    /// Serves the admin API on `listener` under `limits` until `shutdown` completes.
    pub async fn serve(
        self: Arc<Self>,
        listener: TcpListener,
        limits: ConnectionLimits,
        shutdown: impl Future<Output = ()>,
    ) {
        let builder = limits.http1();
        accept_loop("admin", listener, limits, shutdown, |stream, _peer, permit| {
            let api = self.clone();
            let service = hyper::service::service_fn(move |request| {
                let api = api.clone();
                async move { Ok::<_, Infallible>(api.handle(request).await) }
            });
            let connection = builder.serve_connection(TokioIo::new(stream), service);
            tokio::spawn(async move {
                let _counted = permit;
                let _ = connection.await;
            });
        })
        .await;
    }
}

fn rfc3339(at: SystemTime) -> String {
    let seconds = at.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(seconds)).to_string()
}

fn pushed(version: &HandlerVersion) -> Value {
    let (compile_ms, cached) = version.component.compilation().report();
    json!({
        "version": version.number,
        "sha256": version.component.sha256(),
        "compile_ms": compile_ms,
        "compiled_from_cache": cached,
    })
}

fn describe(version: &HandlerVersion) -> Value {
    json!({
        "version": version.number,
        "sha256": version.component.sha256(),
        "size": version.size,
        "loaded_at": rfc3339(version.loaded_at),
        "source": version.component.source_name(),
    })
}

fn describe_plugin(plugin: &PromptPlugin) -> Value {
    let (compile_ms, cached) = plugin.compilation.report();
    json!({
        "name": plugin.manifest().name,
        "characters": plugin.manifest().characters,
        "sha256": plugin.sha256(),
        "size": plugin.size,
        "loaded_at": rfc3339(plugin.loaded_at),
        "source": plugin.source,
        "compile_ms": compile_ms,
        "compiled_from_cache": cached,
    })
}
