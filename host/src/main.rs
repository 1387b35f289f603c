//! The `llm-service` binary: reads the configuration, then wires the engine,
//! the handler, the capabilities and the listener together.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use llm_service::admin::AdminApi;
use llm_service::caps::HostCapabilities;
use llm_service::caps::backend::Backend;
use llm_service::caps::cache::{ResponseCache, tier};
use llm_service::caps::edge::EdgeCache;
use llm_service::caps::plugins::PromptPlugins;
use llm_service::caps::telemetry::Telemetry;
use llm_service::caps::telemetry::checks::CheckSettings;
use llm_service::cli;
use llm_service::config::Config;
use llm_service::fleet::keys::StoreKeys;
use llm_service::fleet::{self, Fleet};
use llm_service::guest::compiled::CompiledCache;
use llm_service::guest::engine::{EngineLimits, EpochTicker, build_engine};
use llm_service::keys::ClientKeys;
use llm_service::keys::config::KeyMode;
use llm_service::logging;
use llm_service::purge::SharedPurges;
use llm_service::rollout::quality;
use llm_service::runtime::handler::{
    BUILTIN_HANDLER, BUILTIN_HANDLER_PATH, HandlerComponent, handler_linker,
};
use llm_service::runtime::installer::HandlerInstaller;
use llm_service::runtime::reuse;
use llm_service::runtime::versions::HandlerVersions;
use llm_service::server::{self, Admission, Service};
use llm_service::store::Store;
use llm_service::watch;

fn main() -> ExitCode {
    let config = Config::parse_or_exit();
    let traces = match logging::init(config.log.log_format, &config.traces) {
        Ok(traces) => traces,
        Err(error) => {
            eprintln!("llm-service: {error}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::error!(%error, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    if let Some(command) = config.command.clone() {
        return match runtime.block_on(cli::run(command, &config.admin, &config.server)) {
            Ok(code) => ExitCode::from(code),
            Err(error) => {
                eprintln!("llm-service: {error:#}");
                ExitCode::FAILURE
            }
        };
    }
    match runtime.block_on(run(config, traces)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "llm-service stopped");
            ExitCode::FAILURE
        }
    }
}

async fn run(config: Config, traces: Option<llm_service::traces::Pending>) -> anyhow::Result<()> {
    let quality_checks = config.rollout.quality_checks().map_err(anyhow::Error::msg)?;
    let seal = config.admin.fleet_seal().map_err(anyhow::Error::msg)?;
    // A slot per admitted request, plus the instances kept idle for reuse.
    let engine = build_engine(EngineLimits {
        max_instances: config.server.max_in_flight.saturating_add(reuse::MAX_IDLE as u32),
        max_instance_memory: config.runtime.max_instance_memory,
        perf_map: config.runtime.guest_perf_map,
    })?;
    let linker = handler_linker(&engine)?;
    let compiled = CompiledCache::new(config.admin.compiled_cache_dir());

    let (bytes, source_name) = match &config.runtime.component {
        Some(path) => {
            let bytes =
                std::fs::read(path).with_context(|| format!("reading component {}", path.display()))?;
            (bytes, path.display().to_string())
        }
        None => (BUILTIN_HANDLER.to_vec(), format!("{BUILTIN_HANDLER_PATH} (built in)")),
    };
    let handler = HandlerComponent::load(&linker, &compiled, &bytes, &source_name)?;
    let (compile_ms, compiled_from_cache) = handler.compilation().report();
    let (component, sha256) = (handler.source_name().to_string(), handler.sha256().to_string());

    // One registry: each capability registers its own metrics in it.
    let registry = prometheus::Registry::new();
    let traces = traces.map(|pending| pending.start(&registry));
    // Everything that changes what an answer is purges the edge tier.
    let edge = Arc::new(EdgeCache::new(&config.edge, &registry));
    let purges: SharedPurges = edge.clone();
    let versions = Arc::new(
        HandlerVersions::new(
            handler,
            bytes.len(),
            config.admin.keep_versions,
            config.rollout.canary_policy(),
        )
        .with_purges(purges.clone()),
    );
    // A store makes this replica part of a fleet; without one there is none.
    let cache_config = &config.cache;
    let nodes = cache_config.redis_cluster_nodes.as_ref().map(|nodes| nodes.0.as_slice());
    let store =
        Store::open(cache_config.redis_url.as_deref(), nodes, cache_config.redis_timeout(), &registry)
            .map_err(|error| anyhow::anyhow!("the shared store: {error}"))?;
    let fleet = store.as_ref().map(|store| Fleet::new(store, &registry));
    let mut cache = ResponseCache::new(cache_config, tier::of(store.as_ref())).with_purges(purges.clone());
    if let Some(fleet) = &fleet {
        cache = cache.with_sharing(Arc::new(fleet.clone()));
    }
    let cache = Arc::new(cache);
    let backend = Arc::new(Backend::new(&config.backend, &registry).map_err(anyhow::Error::msg)?);
    let _backends_file = backend.watch_file();
    let telemetry = Telemetry::new(
        &config.backend.ollama_model,
        config.rollout.model_split.clone(),
        backend.clone(),
        fleet.clone().map(|fleet| Arc::new(fleet) as _),
        config.handler_settings(),
        &registry,
        purges.clone(),
    );
    let _checks = telemetry.checks().start(
        CheckSettings {
            interval: Duration::from_secs_f64(config.backend.health_check_interval_s),
            slow_after: Duration::from_millis(config.backend.slow_threshold_ms),
            base_url: config.backend.base_url().to_string(),
            kind: config.backend.backend_kind,
            pool: backend.pool().cloned(),
        },
        cache.clone(),
    );
    let plugins = Arc::new(
        PromptPlugins::new(
            config.plugins.limits(),
            config.server.max_in_flight,
            config.admin.compiled_cache_dir().map(|dir| dir.join("plugins")),
        )?
        .with_purges(purges),
    );
    let _ticker = EpochTicker::start(&[&engine, plugins.engine()]).context("starting the epoch ticker")?;
    // Past the shutdown's grace period, answers still read are cut.
    let backend_client = backend.clone();
    let capabilities = HostCapabilities {
        telemetry,
        backend,
        cache,
        edge,
        plugins: plugins.clone(),
        guest_environment: config.guest_environment().into(),
        count_host_calls: config.runtime.count_host_calls,
    };

    let (stop, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop.send(true);
    });
    let until_stopped = |mut stopped: tokio::sync::watch::Receiver<bool>| async move {
        let _ = stopped.wait_for(|stop| *stop).await;
    };

    let installer = Arc::new(HandlerInstaller::new(versions.clone(), linker, compiled, capabilities.clone()));
    let _watch = match &config.admin.components_dir {
        Some(dir) => Some(
            watch::start(dir, installer.clone())
                .with_context(|| format!("watching COMPONENTS_DIR {}", dir.display()))?,
        ),
        None => None,
    };
    let _plugin_watch = match &config.plugins.plugins_dir {
        Some(dir) => Some(
            watch::start_plugins(dir, plugins.clone())
                .await
                .with_context(|| format!("watching PLUGINS_DIR {}", dir.display()))?,
        ),
        None => None,
    };
    let admission = Admission {
        max_in_flight: config.server.max_in_flight,
        max_body_bytes: config.server.max_body_bytes,
        body_read_timeout: Duration::from_millis(config.server.body_read_timeout_ms),
        request_timeout: config.request_timeout(),
    };
    let listener = tokio::net::TcpListener::bind((config.server.bind, config.server.port))
        .await
        .with_context(|| format!("binding {}:{}", config.server.bind, config.server.port))?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, port = addr.port(), component, sha256, compile_ms, compiled_from_cache, "llm-service listening");
    let mut keys = ClientKeys::new(&config.keys).map_err(anyhow::Error::msg)?.counted(&registry);
    if let Some(fleet) = fleet.clone().filter(|_| keys.mode() != KeyMode::Off) {
        keys = keys.shared(Arc::new(StoreKeys(fleet)));
    }
    let keys = Arc::new(keys);
    // The fleet's keys, if the store answers; else the file's until it does.
    keys.reload().await;
    if keys.mode() != KeyMode::Off {
        tracing::info!(cap = "keys", mode = %keys.mode(), keys = keys.list().len(), "client keys on");
    }
    let service = Arc::new(Service::new(versions, capabilities.clone(), admission).with_keys(keys.clone()));
    let _fleet_sync = fleet.clone().map(|fleet| {
        fleet::sync::start(fleet::sync::Follower {
            fleet,
            cache: capabilities.cache.clone(),
            telemetry: capabilities.telemetry.clone(),
            installer: installer.clone(),
            plugins: plugins.clone(),
            seal: seal.clone(),
            refused: Default::default(),
            keys: keys.clone(),
        })
    });
    let _quality = quality_checks.map(|(probes, interval)| {
        quality::start(service.clone(), capabilities.telemetry.clone(), probes, interval)
    });
    match &config.admin.admin_token {
        Some(token) => {
            let admin = Arc::new(AdminApi {
                installer: installer.clone(),
                token: token.clone(),
                capabilities,
                service: service.clone(),
                max_component_bytes: config.admin.max_component_bytes,
                lockout: Default::default(),
                seal,
                keys,
                fleet,
            });
            let listener = tokio::net::TcpListener::bind((config.admin.admin_bind, config.admin.admin_port))
                .await
                .with_context(|| {
                    format!(
                        "binding the admin API to {}:{}",
                        config.admin.admin_bind, config.admin.admin_port
                    )
                })?;
            tracing::info!(addr = %listener.local_addr()?, "admin API listening");
            tokio::spawn(admin.serve(
                listener,
                config.admin_connection_limits(),
                until_stopped(stopped.clone()),
            ));
        }
        None => tracing::info!("admin API off: ADMIN_TOKEN is not set"),
    }

    let limits = config.connection_limits();
    let grace_over = move || backend_client.client().cut_answers();
    let drained =
        server::serve(listener, service, limits, until_stopped(stopped), config.shutdown_grace(), grace_over)
            .await;
    if drained {
        tracing::info!("all in-flight requests finished; exiting");
    } else {
        tracing::warn!("grace period over with requests still in flight; exiting");
    }
    if let Some(traces) = traces {
        // The last spans, when the receiver takes them soon.
        traces.now(Duration::from_secs(2)).await;
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
