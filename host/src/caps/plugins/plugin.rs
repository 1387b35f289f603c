//! One loaded prompt plugin, and each call into it.
//!
//! Every call runs in a fresh instance of the plugin (nothing survives from
//! one call to the next) in a store of its own, under the plugin limits: its
//! linear memory cannot grow past PLUGIN_MAX_MEMORY, and the call is
//! interrupted at its deadline (PLUGIN_TIMEOUT_MS, or the request's own
//! deadline if that comes first), whether the plugin computes or waits.

use std::time::{Duration, Instant, SystemTime};

use wasmtime::component::{Linker, ResourceTable};
use wasmtime::{Store, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::config::PluginLimits;
use crate::bindings::llm_service::host::prompt_types::{Generation, PromptRequest, Settings};
use crate::bindings::plugin::PromptPluginPre;
use crate::guest::call::{self, GuestFailure, GuestOutput};
use crate::guest::compiled::{Compilation, CompiledCache, sha256_hex};

/// Longest plugin name; names go in logs, metrics and URLs.
const MAX_NAME_CHARS: usize = 64;

/// The data of one plugin call's store: WASI with nothing granted (no
/// environment, no preopened directory, every socket address refused), and
/// the memory limit.
pub struct PluginState {
    wasi: WasiCtx,
    table: ResourceTable,
    limits: StoreLimits,
    output: GuestOutput,
}

impl PluginState {
    fn new(limits: &PluginLimits) -> Self {
        let output = GuestOutput::default();
        let wasi = WasiCtx::builder()
            .stdout(output.pipe())
            .stderr(output.pipe())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        let limits =
            StoreLimitsBuilder::new().memory_size(limits.max_memory).trap_on_grow_failure(true).build();
        Self { wasi, table: ResourceTable::new(), limits, output }
    }
}

impl WasiView for PluginState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

/// The linker every plugin is instantiated with: WASI p2 only (no
/// `wasi:http`), so a plugin importing anything else is refused at load.
pub fn plugin_linker(engine: &wasmtime::Engine) -> wasmtime::Result<Linker<PluginState>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    Ok(linker)
}

/// Why a plugin could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum PluginLoadError {
    /// Not a valid component, or wasmtime could not compile it.
    #[error("{source_name} does not compile: {reason}")]
    Compile {
        /// Where the bytes came from.
        source_name: String,
        /// wasmtime's explanation.
        reason: String,
    },
    /// Compiles, but does not fit the `prompt-plugin` world.
    #[error(
        "{source_name} is not a prompt plugin: {reason} (plugins get no network, no filesystem and no wasi:http)"
    )]
    NotAPlugin {
        /// Where the bytes came from.
        source_name: String,
        /// What is missing or not allowed.
        reason: String,
    },
    /// Its manifest is unusable, or it fails on a sample request.
    #[error("{source_name} was refused: {reason}")]
    Refused {
        /// Where the bytes came from.
        source_name: String,
        /// What is wrong.
        reason: String,
    },
}

/// Why one plugin call gave no result.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PluginCallError {
    /// The plugin refused with its own message.
    #[error("{0}")]
    Refused(String),
    /// It ran past its deadline and was stopped.
    #[error("did not finish within {0:?}")]
    Timeout(Duration),
    /// It trapped (a panic, memory over the limit).
    #[error("trapped: {0}")]
    Trap(String),
    /// Its post-process returned an error: the answer cannot be given (502).
    #[error("post-processing failed: {0}")]
    PostProcess(String),
}

/// Who a plugin says it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// Its name.
    pub name: String,
    /// The characters it serves.
    pub characters: Vec<String>,
}

/// A compiled, checked plugin.
pub struct PromptPlugin {
    manifest: Manifest,
    sha256: String,
    pre: PromptPluginPre<PluginState>,
    limits: PluginLimits,
    /// Where it came from (a file, or an upload).
    pub source: String,
    /// When it was loaded.
    pub loaded_at: SystemTime,
    /// Its size in bytes.
    pub size: usize,
    /// Whether it was compiled now or read from the compiled cache.
    pub compilation: Compilation,
}

impl PromptPlugin {
    /// Compiles `bytes` and checks the world; blocking (compiling takes CPU
    /// seconds). [`check`](Self::check) must pass before it serves.
    pub fn compile(
        linker: &Linker<PluginState>,
        compiled: &CompiledCache,
        bytes: &[u8],
        source: &str,
    ) -> Result<(PromptPluginPre<PluginState>, String, Compilation), PluginLoadError> {
        let sha256 = sha256_hex(bytes);
        let (component, compilation) =
            compiled.component(linker.engine(), bytes, &sha256).map_err(|error| {
                PluginLoadError::Compile { source_name: source.to_string(), reason: format!("{error:#}") }
            })?;
        let not_a_plugin = |error: wasmtime::Error| PluginLoadError::NotAPlugin {
            source_name: source.to_string(),
            reason: format!("{error:#}"),
        };
        let pre = PromptPluginPre::new(linker.instantiate_pre(&component).map_err(not_a_plugin)?)
            .map_err(not_a_plugin)?;
        Ok((pre, sha256, compilation))
    }

    /// Asks the compiled plugin who it is, checks the answer and tries it on
    /// a sample request: a plugin that traps or overruns there never serves.
    pub async fn check(
        pre: PromptPluginPre<PluginState>,
        sha256: String,
        compilation: Compilation,
        limits: PluginLimits,
        size: usize,
        source: &str,
    ) -> Result<Self, PluginLoadError> {
        let refused = |reason: String| PluginLoadError::Refused { source_name: source.to_string(), reason };
        let manifest = describe(&pre, limits).await.map_err(|error| refused(format!("describe {error}")))?;
        validate(&manifest).map_err(refused)?;
        let plugin = Self {
            manifest,
            sha256,
            pre,
            limits,
            source: source.to_string(),
            loaded_at: SystemTime::now(),
            size,
            compilation,
        };
        let sample = sample_request(&plugin.manifest.characters[0]);
        let deadline = Instant::now() + limits.timeout;
        match plugin.transform(&sample, deadline).await {
            Ok(_) | Err(PluginCallError::Refused(_)) => {}
            Err(error) => return Err(refused(format!("transform of a sample request {error}"))),
        }
        match plugin.post_process(&sample, "Hello.".into(), Instant::now() + limits.timeout).await {
            Ok(_) | Err(PluginCallError::PostProcess(_)) => Ok(plugin),
            Err(error) => Err(refused(format!("post-process of a sample text {error}"))),
        }
    }

    /// Its name and characters.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// SHA-256 of its bytes, hex.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// Runs `transform`, ending by `deadline` at the latest.
    pub async fn transform(
        &self,
        request: &PromptRequest,
        deadline: Instant,
    ) -> Result<Generation, PluginCallError> {
        let (mut store, deadline) = self.store(deadline);
        let result = within(deadline, async {
            let plugin = self.pre.instantiate_async(&mut store).await?;
            plugin.llm_service_host_prompt().call_transform(&mut store, request).await
        })
        .await;
        settle(result, &store, self.limits.timeout)?.map_err(PluginCallError::Refused)
    }

    /// Runs `post-process` on `text`, ending by `deadline` at the latest.
    pub async fn post_process(
        &self,
        request: &PromptRequest,
        text: String,
        deadline: Instant,
    ) -> Result<String, PluginCallError> {
        let (mut store, deadline) = self.store(deadline);
        let result = within(deadline, async {
            let plugin = self.pre.instantiate_async(&mut store).await?;
            plugin.llm_service_host_prompt().call_post_process(&mut store, request, &text).await
        })
        .await;
        settle(result, &store, self.limits.timeout)?.map_err(PluginCallError::PostProcess)
    }

    fn store(&self, deadline: Instant) -> (Store<PluginState>, Instant) {
        call_store(&self.pre, self.limits, deadline)
    }
}

/// Asks the plugin who it is.
async fn describe(
    pre: &PromptPluginPre<PluginState>,
    limits: PluginLimits,
) -> Result<Manifest, PluginCallError> {
    let (mut store, deadline) = call_store(pre, limits, Instant::now() + limits.timeout);
    let result = within(deadline, async {
        let plugin = pre.instantiate_async(&mut store).await?;
        plugin.llm_service_host_prompt().call_describe(&mut store).await
    })
    .await;
    let manifest = settle(result, &store, limits.timeout)?;
    Ok(Manifest { name: manifest.name, characters: manifest.characters })
}

/// A store for one call that must end by the earlier of `deadline` and the
/// plugin timeout from now; and that moment.
fn call_store(
    pre: &PromptPluginPre<PluginState>,
    limits: PluginLimits,
    deadline: Instant,
) -> (Store<PluginState>, Instant) {
    let deadline = call::deadline_within(deadline, limits.timeout);
    let mut store = Store::new(pre.engine(), PluginState::new(&limits));
    store.limiter(|state| &mut state.limits);
    call::arm_deadline(&mut store, deadline);
    (store, deadline)
}

/// Runs `call`, giving up a little after `deadline`: the epoch interrupt
/// normally ends it first; this catches a plugin parked in a host call.
async fn within<T>(
    deadline: Instant,
    call: impl Future<Output = wasmtime::Result<T>>,
) -> Option<wasmtime::Result<T>> {
    call::within(deadline, call).await
}

/// A call's outcome as the caller sees it.
fn settle<T>(
    result: Option<wasmtime::Result<T>>,
    store: &Store<PluginState>,
    timeout: Duration,
) -> Result<T, PluginCallError> {
    let error = match result {
        Some(Ok(value)) => return Ok(value),
        None => return Err(PluginCallError::Timeout(timeout)),
        Some(Err(error)) => error,
    };
    match call::classify(&error) {
        GuestFailure::Timeout => Err(PluginCallError::Timeout(timeout)),
        GuestFailure::Trap(reason) => {
            let output = store.data().output.text();
            Err(PluginCallError::Trap(if output.is_empty() {
                reason
            } else {
                format!("{reason}; output: {output}")
            }))
        }
    }
}

/// The name is 1 to 64 of `a-z 0-9 - _`; at least one character is served,
/// each named and listed once.
fn validate(manifest: &Manifest) -> Result<(), String> {
    let name = &manifest.name;
    let name_ok = !name.is_empty()
        && name.chars().count() <= MAX_NAME_CHARS
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if !name_ok {
        return Err(format!("plugin name '{name}' must be 1 to {MAX_NAME_CHARS} of a-z, 0-9, '-', '_'"));
    }
    if manifest.characters.is_empty() {
        return Err(format!("plugin '{name}' serves no characters"));
    }
    for (index, character) in manifest.characters.iter().enumerate() {
        if character.trim().is_empty() {
            return Err(format!("plugin '{name}' lists an empty character name"));
        }
        if manifest.characters[..index].contains(character) {
            return Err(format!("plugin '{name}' lists character '{character}' twice"));
        }
    }
    Ok(())
}

/// The request a new plugin is tried on before it serves.
fn sample_request(character: &str) -> PromptRequest {
    PromptRequest {
        character: character.to_string(),
        conversation_id: None,
        generation: Generation {
            system: None,
            prompt: "Hello.".into(),
            settings: Settings {
                temperature: 0.8,
                max_tokens: 500,
                top_p: 0.9,
                top_k: 40,
                repeat_penalty: 1.1,
                stop: vec!["Human:".into(), "Assistant:".into()],
                seed: None,
            },
        },
    }
}
