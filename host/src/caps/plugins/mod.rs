//! `llm-service:host/plugins`: prompt plugins, the components plugin
//! authors write to shape one character's generations.
//!
//! Guarantees:
//! - Isolation: plugins run on an engine of their own (pooled, its memory
//!   slots sized to PLUGIN_MAX_MEMORY), each call in a fresh instance with
//!   its own store, under [`PluginLimits`] (deadline by epoch interruption
//!   and wall clock, memory by the pool and a store limiter). A plugin is
//!   linked with WASI only, with nothing granted: no environment, no
//!   preopened directory, every socket address refused, no `wasi:http`. A
//!   plugin importing anything else is refused at load.
//! - A plugin serves only after it compiled, fits the `prompt-plugin` world,
//!   named itself and its characters validly, and ran a sample request
//!   without trapping or overrunning ([`PromptPlugin::check`]). Loading is
//!   the same for the admin API and PLUGINS_DIR.
//! - Each character is served by at most one plugin; a plugin with a loaded
//!   name replaces it atomically. A request holds the version it was
//!   transformed by until its end ([`AppliedPlugin`]), so post-processing
//!   never mixes versions.
//! - A failing plugin fails only the call: the caller gets the reason.

pub mod config;
mod host;
pub mod plugin;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use bytes::Bytes;
use wasmtime::component::Linker;

pub use self::config::{PluginConfig, PluginLimits};
pub use self::host::{AppliedPlugin, PluginsView, add_to_linker};
pub use self::plugin::{PluginCallError, PluginLoadError, PromptPlugin};
use self::plugin::{PluginState, plugin_linker};
use crate::guest::compiled::CompiledCache;
use crate::guest::engine::{EngineLimits, build_engine};
use crate::purge::{PurgeCause, SharedPurges};

/// Why a plugin was not installed.
#[derive(Debug, thiserror::Error)]
pub enum PluginInstallError {
    /// It did not load.
    #[error(transparent)]
    Load(#[from] PluginLoadError),
    /// Another plugin serves one of its characters.
    #[error("character '{character}' is already served by plugin '{plugin}'; remove that plugin first")]
    Conflict {
        /// The character.
        character: String,
        /// The plugin serving it.
        plugin: String,
    },
}

/// An installed plugin, and the version it replaced.
pub struct Installed {
    /// The plugin now serving.
    pub plugin: Arc<PromptPlugin>,
    /// The one with the same name it replaced.
    pub replaced: Option<Arc<PromptPlugin>>,
}

/// The loaded plugins and what loading more needs.
pub struct PromptPlugins {
    linker: Linker<PluginState>,
    compiled: CompiledCache,
    limits: PluginLimits,
    /// Sorted by name; replaced whole on every change.
    loaded: ArcSwap<Vec<Arc<PromptPlugin>>>,
    /// Serialises changes so a check-then-swap sees no other change.
    changing: Mutex<()>,
    /// Told of every change: a plugin changes the answers of its characters.
    purges: SharedPurges,
}

impl PromptPlugins {
    /// No plugins yet. `max_instances` sizes the instance pool (a request
    /// runs at most one plugin call at a time); compiled plugins are cached
    /// under `compiled_dir`.
    pub fn new(
        limits: PluginLimits,
        max_instances: u32,
        compiled_dir: Option<PathBuf>,
    ) -> anyhow::Result<Self> {
        // Pooled like the handler's: an instance per call is only cheap when
        // its memory comes from a pool rather than fresh mappings.
        let engine = build_engine(EngineLimits {
            max_instances,
            max_instance_memory: limits.max_memory as u64,
            perf_map: false,
        })?;
        Ok(Self {
            linker: plugin_linker(&engine)?,
            compiled: CompiledCache::new(compiled_dir),
            limits,
            loaded: ArcSwap::from_pointee(Vec::new()),
            changing: Mutex::new(()),
            purges: crate::purge::none(),
        })
    }

    /// Tells `purges` of every plugin loaded or unloaded.
    pub fn with_purges(mut self, purges: SharedPurges) -> Self {
        self.purges = purges;
        self
    }

    /// The plugins' engine (its epoch needs the service's ticker).
    pub fn engine(&self) -> &wasmtime::Engine {
        self.linker.engine()
    }

    /// What every plugin call runs under.
    pub fn limits(&self) -> PluginLimits {
        self.limits
    }

    /// Loads and checks `bytes` (from `source`), then installs the plugin.
    pub async fn push(&self, bytes: Bytes, source: &str) -> Result<Installed, PluginInstallError> {
        let (linker, compiled, name) = (self.linker.clone(), self.compiled.clone(), source.to_string());
        let size = bytes.len();
        // Compiling takes CPU seconds: keep it off the async workers.
        let compiled =
            tokio::task::spawn_blocking(move || PromptPlugin::compile(&linker, &compiled, &bytes, &name))
                .await
                .map_err(|error| PluginLoadError::Refused {
                    source_name: source.to_string(),
                    reason: format!("loader failed: {error}"),
                })??;
        let (pre, sha256, compilation) = compiled;
        let plugin = PromptPlugin::check(pre, sha256, compilation, self.limits, size, source).await?;
        self.install(Arc::new(plugin))
    }

    fn install(&self, plugin: Arc<PromptPlugin>) -> Result<Installed, PluginInstallError> {
        let _changing = self.changing.lock().unwrap_or_else(|poison| poison.into_inner());
        let current = self.loaded.load_full();
        let name = &plugin.manifest().name;
        for other in current.iter().filter(|other| &other.manifest().name != name) {
            if let Some(character) = plugin
                .manifest()
                .characters
                .iter()
                .find(|character| other.manifest().characters.contains(character))
            {
                return Err(PluginInstallError::Conflict {
                    character: character.clone(),
                    plugin: other.manifest().name.clone(),
                });
            }
        }
        let replaced = current.iter().find(|other| &other.manifest().name == name).cloned();
        let mut next: Vec<_> =
            current.iter().filter(|other| &other.manifest().name != name).cloned().collect();
        next.push(plugin.clone());
        next.sort_by(|a, b| a.manifest().name.cmp(&b.manifest().name));
        self.loaded.store(Arc::new(next));
        self.purges.purge_all(PurgeCause::Plugin);
        tracing::info!(
            plugin = %name,
            sha256 = plugin.sha256(),
            characters = ?plugin.manifest().characters,
            source = %plugin.source,
            replaced = replaced.as_ref().map(|old| old.sha256()),
            "plugin now serving"
        );
        Ok(Installed { plugin, replaced })
    }

    /// Unloads the plugin called `name`; its characters pass through
    /// unchanged from the next request on.
    pub fn remove(&self, name: &str) -> Option<Arc<PromptPlugin>> {
        let _changing = self.changing.lock().unwrap_or_else(|poison| poison.into_inner());
        let current = self.loaded.load_full();
        let removed = current.iter().find(|plugin| plugin.manifest().name == name).cloned()?;
        let next = current.iter().filter(|plugin| plugin.manifest().name != name).cloned().collect();
        self.loaded.store(Arc::new(next));
        self.purges.purge_all(PurgeCause::Plugin);
        tracing::info!(plugin = %name, sha256 = removed.sha256(), "plugin removed");
        Some(removed)
    }

    /// The plugin serving `character`, if any.
    pub fn serving(&self, character: &str) -> Option<Arc<PromptPlugin>> {
        self.loaded
            .load()
            .iter()
            .find(|plugin| plugin.manifest().characters.iter().any(|served| served == character))
            .cloned()
    }

    /// The loaded plugins, by name.
    pub fn list(&self) -> Arc<Vec<Arc<PromptPlugin>>> {
        self.loaded.load_full()
    }
}
