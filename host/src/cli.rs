//! `llm-service component push FILE | list | rollback [SHA256]`: the admin
//! API from the command line. It talks to ADMIN_BIND:ADMIN_PORT (or
//! `--admin-url`) with ADMIN_TOKEN, prints the API's JSON answer, and exits
//! 0 on success, 1 when the API refused (its message on stderr).

use std::path::PathBuf;

use bytes::Bytes;
use clap::Subcommand;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::config::AdminConfig;

/// What the binary does besides serving.
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Manage the handler component of a running service through its admin API.
    Component {
        /// What to do.
        #[command(subcommand)]
        action: ComponentAction,
        /// The admin API's base URL (default: http://ADMIN_BIND:ADMIN_PORT).
        #[arg(long, env = "ADMIN_URL", value_name = "ADMIN_URL")]
        admin_url: Option<String>,
    },
}

/// Admin API calls.
#[derive(Debug, Clone, Subcommand)]
pub enum ComponentAction {
    /// Upload FILE as the new handler (compiled, checked, swapped in).
    Push {
        /// The handler .wasm.
        file: PathBuf,
    },
    /// Show the active handler version and the kept previous ones.
    List,
    /// Serve the previous version again, or the kept one with this sha256 (or prefix).
    Rollback {
        /// The version to return to.
        sha256: Option<String>,
    },
}

/// Runs `command`; returns the process exit code.
pub async fn run(command: Command, admin: &AdminConfig) -> anyhow::Result<u8> {
    let Command::Component { action, admin_url } = command;
    let Some(token) = &admin.admin_token else {
        anyhow::bail!("ADMIN_TOKEN is not set: the admin API needs it");
    };
    let base = admin_url.unwrap_or_else(|| format!("http://{}:{}", admin.admin_bind, admin.admin_port));
    let (method, path, body) = match action {
        ComponentAction::Push { file } => {
            let bytes = std::fs::read(&file)
                .map_err(|error| anyhow::anyhow!("reading {}: {error}", file.display()))?;
            ("PUT", "/components/handler", Bytes::from(bytes))
        }
        ComponentAction::List => ("GET", "/components", Bytes::new()),
        ComponentAction::Rollback { sha256 } => {
            let body =
                sha256.map(|sha256| serde_json::json!({ "sha256": sha256 }).to_string()).unwrap_or_default();
            ("POST", "/components/handler/rollback", Bytes::from(body))
        }
    };
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
