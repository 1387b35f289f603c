//! The `llm-service` binary: reads the configuration, then wires the engine,
//! the handler, the capabilities and the listener together.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use llm_service::caps::HostCapabilities;
use llm_service::caps::backend::Backend;
use llm_service::caps::cache::ResponseCache;
use llm_service::caps::runtime::ServiceRuntime;
use llm_service::caps::runtime::checks::CheckSettings;
use llm_service::config::Config;
use llm_service::logging;
use llm_service::runtime::engine::{EngineLimits, EpochTicker, build_engine};
use llm_service::runtime::handler::{
    BUILTIN_HANDLER, BUILTIN_HANDLER_PATH, HandlerComponent, handler_linker,
};
use llm_service::server::{self, Admission, Service};

fn main() -> ExitCode {
    let config = Config::parse_or_exit();
    logging::init(config.log.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::error!(%error, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "llm-service stopped");
            ExitCode::FAILURE
        }
    }
}

async fn run(config: Config) -> anyhow::Result<()> {
    let engine = build_engine(EngineLimits {
        max_instances: config.server.max_in_flight,
        max_instance_memory: config.runtime.max_instance_memory,
    })?;
    let _ticker = EpochTicker::start(&engine).context("starting the epoch ticker")?;
    let linker = handler_linker(&engine)?;

    let (bytes, source_name) = match &config.runtime.component {
        Some(path) => {
            let bytes =
                std::fs::read(path).with_context(|| format!("reading component {}", path.display()))?;
            (bytes, path.display().to_string())
        }
        None => (BUILTIN_HANDLER.to_vec(), format!("{BUILTIN_HANDLER_PATH} (built in)")),
    };
    let handler = Arc::new(HandlerComponent::load(&linker, &bytes, &source_name)?);

    let mut guest_environment = vec![
        ("BACKEND_KIND".to_string(), config.backend.backend_kind.as_str().to_string()),
        (
            "BACKEND_BASE_URL".to_string(),
            config.backend.base_url().to_string().trim_end_matches('/').to_string(),
        ),
    ];
    guest_environment.extend(config.generation.guest_environment());
    guest_environment.extend(config.cache.guest_environment());
    guest_environment.push(("REQUEST_TIMEOUT".to_string(), config.server.request_timeout_s.to_string()));
    guest_environment.push(("LOG_PROMPTS".to_string(), config.log.log_prompts.to_string()));
    let cache = Arc::new(ResponseCache::new(&config.cache)?);
    let backend = Arc::new(Backend::new(&config.backend));
    let runtime = ServiceRuntime::new(&config.backend.ollama_model, backend.clone(), cache.clone());
    let _checks = runtime.checks().start(
        CheckSettings {
            interval: Duration::from_secs_f64(config.backend.health_check_interval_s),
            slow_after: Duration::from_millis(config.backend.slow_threshold_ms),
            base_url: config.backend.base_url().to_string(),
            kind: config.backend.backend_kind,
        },
        cache.clone(),
    );
    let capabilities =
        HostCapabilities { runtime, backend, cache, guest_environment: guest_environment.into() };
    let admission = Admission {
        max_in_flight: config.server.max_in_flight,
        max_body_bytes: config.server.max_body_bytes,
        request_timeout: config.request_timeout(),
    };
    let listener = tokio::net::TcpListener::bind((config.server.bind, config.server.port))
        .await
        .with_context(|| format!("binding {}:{}", config.server.bind, config.server.port))?;
    let addr = listener.local_addr()?;
    tracing::info!(
        %addr,
        port = addr.port(),
        component = handler.source_name(),
        sha256 = handler.sha256(),
        compile_ms = handler.compile_time().as_millis() as u64,
        "llm-service listening"
    );
    let service = Arc::new(Service::new(handler, capabilities, admission));
    let drained = server::serve(listener, service, shutdown_signal(), config.shutdown_grace()).await;
    if drained {
        tracing::info!("all in-flight requests finished; exiting");
    } else {
        tracing::warn!("grace period over with requests still in flight; exiting");
    }
    Ok(())
}

/// Completes on SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt()))
    else {
        tracing::error!("cannot install signal handlers; stop with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!(signal = "SIGTERM", "shutdown requested"),
        _ = int.recv() => tracing::info!(signal = "SIGINT", "shutdown requested"),
    }
}
