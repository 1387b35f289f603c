//! `llm-service component push FILE | list | rollback [SHA256]` and
//! `llm-service plugin push FILE | list | remove NAME`: the admin API from
//! the command line. It talks to ADMIN_BIND:ADMIN_PORT (or
//! `--admin-url`) with ADMIN_TOKEN, prints the API's JSON answer, and exits
//! 0 on success, 1 when the API refused (its message on stderr).

use std::path::Path;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::commands::{Command, ComponentAction, PluginAction};
use crate::config::AdminConfig;

/// Runs `command`; returns the process exit code.
pub async fn run(command: Command, admin: &AdminConfig) -> anyhow::Result<u8> {
    let Some(token) = &admin.admin_token else {
        anyhow::bail!("ADMIN_TOKEN is not set: the admin API needs it");
    };
    let (admin_url, (method, path, body)) = match command {
        Command::Component { action, admin_url } => (admin_url, component_call(action)?),
        Command::Plugin { action, admin_url } => (admin_url, plugin_call(action)?),
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
    })
}

fn plugin_call(action: PluginAction) -> anyhow::Result<Call> {
    Ok(match action {
        PluginAction::Push { file } => ("PUT", "/plugins".into(), read_upload(&file)?),
        PluginAction::List => ("GET", "/plugins".into(), Bytes::new()),
        PluginAction::Remove { name } => ("DELETE", format!("/plugins/{name}"), Bytes::new()),
    })
}
