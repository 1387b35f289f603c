//! The operator API, on its own listener (ADMIN_BIND:ADMIN_PORT, loopback by
//! default), off unless ADMIN_TOKEN is set. Every call needs
//! `Authorization: Bearer $ADMIN_TOKEN` (401 otherwise), except the
//! console's page and assets ([`console`]), which hold no data. Wrong
//! tokens are counted per address ([`lockout`]): past the limit, 429.
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
//! - `GET /stats`: the live counters, as totals since start.
//! - `GET /openapi.json`: the client keys' calls as OpenAPI (docs/admin-openapi.json).
//! - canaries and model splits: see [`rollout`]; client keys: see [`keys`].
//! - `/service/{path}`: the public port's `/{path}` (any method, the same
//!   handler, admission and body limit), answered in-process, so the
//!   console reaches /health, /models, /model and /cache/clear through this
//!   listener and its token. Not counted in the public request metrics.
//! - `GET /console/`: the operator console.

mod console;
mod describe;
mod keys;
mod lockout;
mod rollout;

use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Method, StatusCode, header};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

pub use self::console::CONSOLE_PATH;
use self::describe::{describe, describe_canary, describe_plugin, pushed};
use crate::caps::HostCapabilities;
use crate::caps::plugins::PluginInstallError;
use crate::listener::{Accepted, ConnectionLimits, accept_loop};
use crate::runtime::installer::HandlerInstaller;
use crate::runtime::versions::RollbackError;
use crate::server::{Service, json_error, json_response as json};

/// The prefix under which the admin listener reaches the public endpoints.
const SERVICE_PREFIX: &str = "/service/";
/// The OpenAPI description of the client keys' calls, at `GET /openapi.json`.
const ADMIN_OPENAPI: &str = include_str!("../../../docs/admin-openapi.json");

/// What the admin API needs.
pub struct AdminApi {
    /// Checks and swaps in new handlers.
    pub installer: Arc<HandlerInstaller>,
    /// The bearer token.
    pub token: String,
    /// The host's shared state: plugins, counters, backend load.
    pub capabilities: HostCapabilities,
    /// The public service, for `/service/...`.
    pub service: Arc<Service>,
    /// Largest upload accepted.
    pub max_component_bytes: u64,
    /// Wrong tokens by peer.
    pub lockout: lockout::Lockout,
    /// Seals what is shared through the store; `None`, nothing is.
    pub seal: Option<Arc<crate::fleet::seal::FleetSeal>>,
    /// The client keys.
    pub keys: Arc<crate::keys::ClientKeys>,
    /// The replicas sharing this one's store, if it has one.
    pub fleet: Option<crate::fleet::Fleet>,
}

impl AdminApi {
    async fn handle(
        &self,
        request: hyper::Request<Incoming>,
        peer: IpAddr,
    ) -> hyper::Response<HyperOutgoingBody> {
        if matches!(*request.method(), Method::GET | Method::HEAD)
            && let Some(page) = console::asset(request.uri().path())
        {
            return page;
        }
        if self.lockout.locked(peer) {
            let mut response = json_error(
                StatusCode::TOO_MANY_REQUESTS,
                "too many wrong tokens from this address; wait and try again",
            );
            let retry = HeaderValue::from(lockout::WINDOW.as_secs());
            response.headers_mut().insert(header::RETRY_AFTER, retry);
            return response;
        }
        if !self.authorized(&request) {
            self.lockout.failed(peer);
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
        let mut response = match parts.uri.path().strip_prefix(SERVICE_PREFIX).map(str::to_string) {
            Some(path) => self.forward(parts, &path, body).await,
            None if keys::is_keys_path(parts.uri.path()) => {
                self.keys(&parts.method, parts.uri.path(), &body).await
            }
            None => match self
                .rollout(&parts.method, parts.uri.path(), parts.uri.query().unwrap_or(""), body.clone())
                .await
            {
                Some(response) => response,
                None => self.operate(&parts.method, parts.uri.path(), body).await,
            },
        };
        // Answers carry what the token guards: no cache may keep them.
        response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        response
    }

    /// `/service/{path}`: the public endpoint `/{path}`, in-process. The
    /// admin token stays here: the handler never sees it.
    async fn forward(
        &self,
        mut parts: http::request::Parts,
        path: &str,
        body: Bytes,
    ) -> hyper::Response<HyperOutgoingBody> {
        let target = match parts.uri.query() {
            Some(query) => format!("/{path}?{query}"),
            None => format!("/{path}"),
        };
        parts.uri = match target.parse() {
            Ok(uri) => uri,
            Err(_) => return json_error(StatusCode::BAD_REQUEST, "not a valid path"),
        };
        parts.headers.remove(header::AUTHORIZATION);
        self.service.handle_in_process(hyper::Request::from_parts(parts, body)).await
    }

    async fn operate(&self, method: &Method, path: &str, body: Bytes) -> hyper::Response<HyperOutgoingBody> {
        let plugins = &self.capabilities.plugins;
        match (method, path) {
            (&Method::PUT, "/components/handler") => {
                match self.installer.push(body.clone(), "admin upload").await {
                    Ok(version) => {
                        // Replicas sharing the store install it too, sealed
                        // ([`crate::fleet`], [`crate::fleet::seal`]).
                        if let (Some(seal), Some(fleet)) = (&self.seal, &self.fleet) {
                            let sealed = seal.seal(fleet.replica(), &body);
                            if let Err(error) = fleet.share_handler(&sealed, version.component.sha256()).await
                            {
                                tracing::warn!(%error, "the handler serves here, but the fleet was not told");
                            }
                        }
                        json(StatusCode::OK, &pushed(&version))
                    }
                    Err(error) => {
                        tracing::warn!(%error, "handler upload refused");
                        json_error(StatusCode::UNPROCESSABLE_ENTITY, &error.to_string())
                    }
                }
            }
            (&Method::GET, "/components") => {
                let metrics = self.capabilities.telemetry.rollout_metrics();
                let versions = self.installer.versions();
                let (active, previous) = versions.list();
                let previous: Vec<Value> =
                    previous.iter().map(|version| describe(version, metrics)).collect();
                let canary = versions.canary().map(|canary| describe_canary(&canary, metrics));
                let mut answer =
                    json!({"active": describe(&active, metrics), "previous": previous, "canary": canary});
                if let Some(fleet) = &self.fleet {
                    answer["replicas"] = describe::replicas(fleet).await;
                }
                json(StatusCode::OK, &answer)
            }
            (&Method::POST, "/components/handler/rollback") => {
                let sha256 = serde_json::from_slice::<Value>(&body)
                    .ok()
                    .and_then(|value| value.get("sha256").and_then(Value::as_str).map(str::to_string));
                match self.installer.versions().rollback(sha256.as_deref()) {
                    Ok(version) => json(
                        StatusCode::OK,
                        &describe(&version, self.capabilities.telemetry.rollout_metrics()),
                    ),
                    Err(error @ RollbackError::NoPrevious) => {
                        json_error(StatusCode::CONFLICT, &error.to_string())
                    }
                    Err(error @ RollbackError::Unknown { .. }) => {
                        json_error(StatusCode::NOT_FOUND, &error.to_string())
                    }
                }
            }
            (&Method::PUT, "/plugins") => match plugins.push(body.clone(), "admin upload").await {
                Ok(installed) => {
                    let plugin = &installed.plugin;
                    if let (Some(seal), Some(fleet)) = (&self.seal, &self.fleet) {
                        let sealed = seal.seal(fleet.replica(), &body);
                        let shared = fleet.share_plugin(&plugin.manifest().name, &sealed, plugin.sha256());
                        if let Err(error) = shared.await {
                            tracing::warn!(%error, "the plugin serves here, but the fleet was not told");
                        }
                    }
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
            (&Method::GET, "/stats") => json(StatusCode::OK, &describe::stats(&self.capabilities)),
            (&Method::GET, "/openapi.json") => match serde_json::from_str(ADMIN_OPENAPI) {
                Ok(description) => json(StatusCode::OK, &description),
                Err(error) => json_error(StatusCode::INTERNAL_SERVER_ERROR, &error.to_string()),
            },
            (&Method::GET, "/plugins") => {
                let plugins: Vec<Value> =
                    plugins.list().iter().map(|plugin| describe_plugin(plugin)).collect();
                json(StatusCode::OK, &json!({ "plugins": plugins }))
            }
            (&Method::DELETE, path) if path.starts_with("/plugins/") => {
                let name = &path["/plugins/".len()..];
                match plugins.remove(name) {
                    Some(plugin) => {
                        if let Some(fleet) = &self.fleet
                            && let Err(error) = fleet.unshare_plugin(name).await
                        {
                            tracing::warn!(%error, "the plugin is unloaded here, but the fleet was not told");
                        }
                        json(StatusCode::OK, &json!({ "removed": describe_plugin(&plugin) }))
                    }
                    None => json_error(StatusCode::NOT_FOUND, &format!("no plugin named '{name}' is loaded")),
                }
            }
            (_, path) if path == "/plugins" || path.starts_with("/plugins/") => {
                json_error(StatusCode::METHOD_NOT_ALLOWED, "wrong method for this admin endpoint")
            }
            (
                _,
                "/components/handler"
                | "/components"
                | "/components/handler/rollback"
                | "/stats"
                | "/openapi.json",
            ) => json_error(StatusCode::METHOD_NOT_ALLOWED, "wrong method for this admin endpoint"),
            (_, path) => json_error(StatusCode::NOT_FOUND, &format!("no such admin endpoint: {path}")),
        }
    }

    fn authorized(&self, request: &hyper::Request<Incoming>) -> bool {
        let Some(given) = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.split_once(' '))
            // The scheme is case-insensitive (RFC 9110 11.1): `bearer` too.
            .and_then(|(scheme, token)| scheme.eq_ignore_ascii_case("bearer").then_some(token.trim()))
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
        accept_loop("admin", listener, limits, shutdown, |Accepted { stream, peer, permit, shed }| {
            let api = self.clone();
            let service = hyper::service::service_fn(move |request| {
                let api = api.clone();
                async move { Ok::<_, Infallible>(api.handle(request, peer.ip()).await) }
            });
            let connection = builder.serve_connection(TokioIo::new(stream), service);
            tokio::spawn(async move {
                let _counted = permit;
                tokio::select! {
                    _ = connection => {}
                    () = shed.wait() => {}
                }
            });
        })
        .await;
    }
}
