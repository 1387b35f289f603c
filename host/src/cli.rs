//! The subcommands.
//!
//! - `llm-service component push FILE | list | rollback [SHA256]`,
//!   `llm-service plugin push FILE | list | remove NAME` and
//!   `llm-service key create --tenant T | list | change ID | revoke ID`: the admin API from
//!   the command line. They talk to ADMIN_BIND:ADMIN_PORT (or `--admin-url`)
//!   with ADMIN_TOKEN, print the API's JSON answer, and exit 0 on success, 1
//!   when the API refused (its message on stderr).
//! - `llm-service probe [--ready]`: a container health check that needs no
//!   shell tools. It asks the service on this machine for `/livez` (or
//!   `/readyz`) and exits 0 on 200, 1 on anything else, within
//!   [`PROBE_TIMEOUT`].

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::commands::{Command, ComponentAction, KeyAction, PluginAction};
use crate::config::{AdminConfig, ServerConfig};

/// A probe's whole budget: shorter than any orchestrator's probe timeout
/// (Docker's and Kubernetes' default to 30 s and 1 s; the image's
/// HEALTHCHECK sets 3 s).
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Runs `command`; returns the process exit code.
pub async fn run(command: Command, admin: &AdminConfig, server: &ServerConfig) -> anyhow::Result<u8> {
    let (admin_url, (method, path, body)) = match command {
        Command::Probe { ready, url } => return probe(ready, url, server).await,
        Command::Component { action, admin_url } => (admin_url, component_call(action)?),
        Command::Plugin { action, admin_url } => (admin_url, plugin_call(action)?),
        Command::Key { action, admin_url } => (admin_url, key_call(action)),
    };
    let Some(token) = &admin.admin_token else {
        anyhow::bail!("ADMIN_TOKEN is not set: the admin API needs it");
    };
    let base = admin_url.unwrap_or_else(|| format!("http://{}:{}", admin.admin_bind, admin.admin_port));
    let request = http::Request::builder()
        .method(method)
        .uri(format!("{}{path}", base.trim_end_matches('/')))
        .header(http::header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Full::new(body))?;
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let response = client.request(request).await.map_err(|error| anyhow::anyhow!("{base}: {error}"))?;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    let text = String::from_utf8_lossy(&body);
    if status.is_success() {
        let pretty = serde_json::from_slice::<serde_json::Value>(&body)
            .and_then(|value| serde_json::to_string_pretty(&value))
            .unwrap_or_else(|_| text.into_owned());
        println!("{pretty}");
        Ok(0)
    } else {
        eprintln!("llm-service: the admin API answered {status}: {text}");
        Ok(1)
    }
}

/// `GET /livez` or `/readyz` on the service; prints the answer.
async fn probe(ready: bool, url: Option<String>, server: &ServerConfig) -> anyhow::Result<u8> {
    let base = url.unwrap_or_else(|| format!("http://{}", local_address(server.bind, server.port)));
    let path = if ready { "/readyz" } else { "/livez" };
    let uri = format!("{}{path}", base.trim_end_matches('/'));
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let request = http::Request::get(&uri).body(Full::new(Bytes::new()))?;
    let answer = tokio::time::timeout(PROBE_TIMEOUT, async {
        let response = client.request(request).await?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        anyhow::Ok((status, body))
    })
    .await;
    match answer {
        Ok(Ok((status, body))) => {
            println!("{uri}: {status} {}", String::from_utf8_lossy(&body).trim());
            Ok(if status == http::StatusCode::OK { 0 } else { 1 })
        }
        Ok(Err(error)) => {
            eprintln!("llm-service: {uri}: {error}");
            Ok(1)
        }
        Err(_) => {
            eprintln!("llm-service: {uri}: no answer within {PROBE_TIMEOUT:?}");
            Ok(1)
        }
    }
}

/// Where a probe on this machine reaches a service bound to `bind`: a
/// wildcard bind answers on loopback.
fn local_address(bind: IpAddr, port: u16) -> std::net::SocketAddr {
    let ip = match bind {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    (ip, port).into()
}

/// An admin API call: method, path, body.
type Call = (&'static str, String, Bytes);

fn read_upload(file: &Path) -> anyhow::Result<Bytes> {
    let bytes =
        std::fs::read(file).map_err(|error| anyhow::anyhow!("reading {}: {error}", file.display()))?;
    Ok(Bytes::from(bytes))
}

fn component_call(action: ComponentAction) -> anyhow::Result<Call> {
    Ok(match action {
        ComponentAction::Push { file } => ("PUT", "/components/handler".into(), read_upload(&file)?),
        ComponentAction::List => ("GET", "/components".into(), Bytes::new()),
        ComponentAction::Rollback { sha256 } => {
            let body =
                sha256.map(|sha256| serde_json::json!({ "sha256": sha256 }).to_string()).unwrap_or_default();
            ("POST", "/components/handler/rollback".into(), Bytes::from(body))
        }
        ComponentAction::Canary { file, percent } => {
            let body = file.map(|file| read_upload(&file)).transpose()?.unwrap_or_default();
            ("PUT", format!("/components/handler/canary?percent={percent}"), body)
        }
        ComponentAction::Promote => ("POST", "/components/handler/promote".into(), Bytes::new()),
        ComponentAction::DropCanary => ("DELETE", "/components/handler/canary".into(), Bytes::new()),
    })
}

fn plugin_call(action: PluginAction) -> anyhow::Result<Call> {
    Ok(match action {
        PluginAction::Push { file } => ("PUT", "/plugins".into(), read_upload(&file)?),
        PluginAction::List => ("GET", "/plugins".into(), Bytes::new()),
        PluginAction::Remove { name } => ("DELETE", format!("/plugins/{name}"), Bytes::new()),
    })
}

fn key_call(action: KeyAction) -> Call {
    match action {
        KeyAction::Create { tenant, name, models, expires, cache_namespace, limits } => {
            let body = serde_json::json!({
                "tenant": tenant, "name": name, "models": models,
                "expires_at": expires, "cache_namespace": cache_namespace,
                "limits": limits.json().unwrap_or_else(|| serde_json::json!({})),
            });
            ("POST", "/keys".into(), Bytes::from(body.to_string()))
        }
        KeyAction::List => ("GET", "/keys".into(), Bytes::new()),
        KeyAction::Change { id, name, models, expires, limits } => {
            let body = serde_json::json!({
                "name": name, "models": models, "expires_at": expires, "limits": limits.json(),
            });
            ("PATCH", format!("/keys/{id}"), Bytes::from(body.to_string()))
        }
        KeyAction::Revoke { id } => ("DELETE", format!("/keys/{id}"), Bytes::new()),
    }
}
