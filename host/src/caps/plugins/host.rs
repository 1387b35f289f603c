//! The generated `plugins` traits, answered by [`PromptPlugins`]; an
//! applied plugin is a resource in the request's table that holds the
//! plugin version it was transformed by.

use std::sync::Arc;
use std::time::Instant;

use wasmtime::component::{HasData, Linker, Resource, ResourceTable};

use tracing::Instrument;

use super::{PluginCallError, PromptPlugin, PromptPlugins};
use crate::bindings::llm_service::host::plugins::{
    self, Host, HostAppliedPlugin, PluginError, PluginFailure, PluginInfo,
};
use crate::bindings::llm_service::host::prompt_types::{self, Generation, PromptRequest};
use crate::traces::spans;

/// The plugin a request was transformed by.
pub struct AppliedPlugin(Arc<PromptPlugin>);

/// What a request's store lends the plugin functions.
pub struct PluginsView<'a> {
    /// The loaded plugins.
    pub plugins: &'a Arc<PromptPlugins>,
    /// The request's resource table (applied plugins live there).
    pub table: &'a mut ResourceTable,
    /// The request's deadline: no plugin call runs past it.
    pub deadline: Instant,
}

struct PluginsData;

impl HasData for PluginsData {
    type Data<'a> = PluginsView<'a>;
}

/// Adds the interface (and its types) to `linker`; `get` lends a store's view.
pub fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    get: fn(&mut T) -> PluginsView<'_>,
) -> wasmtime::Result<()> {
    prompt_types::add_to_linker::<T, PluginsData>(linker, get)?;
    plugins::add_to_linker::<T, PluginsData>(linker, get)
}

impl prompt_types::Host for PluginsView<'_> {}

fn failure(plugin: &PromptPlugin, error: PluginCallError) -> PluginFailure {
    let name = plugin.manifest().name.clone();
    if !matches!(error, PluginCallError::Refused(_)) {
        tracing::warn!(cap = "plugins", plugin = %name, sha256 = plugin.sha256(), %error, "plugin call failed");
    }
    let error = match error {
        PluginCallError::Refused(message) => PluginError::Refused(message),
        other => PluginError::Failed(other.to_string()),
    };
    PluginFailure { plugin: name, error }
}

/// Runs `call` (`plugin`'s `operation`) in a span of its own.
async fn traced<T>(
    plugin: &PromptPlugin,
    operation: &'static str,
    call: impl std::future::Future<Output = Result<T, PluginCallError>>,
) -> Result<T, PluginCallError> {
    let span = spans::plugin_call(&plugin.manifest().name, operation);
    let outcome = call.instrument(span.clone()).await;
    if let Err(error) = &outcome {
        span.record(
            "error.type",
            if matches!(error, PluginCallError::Refused(_)) { "refused" } else { "failed" },
        );
        span.record("otel.status_code", "ERROR");
    }
    outcome
}

impl Host for PluginsView<'_> {
    async fn transform(
        &mut self,
        request: PromptRequest,
    ) -> wasmtime::Result<Result<Option<(Resource<AppliedPlugin>, Generation)>, PluginFailure>> {
        let Some(plugin) = self.plugins.serving(&request.character) else { return Ok(Ok(None)) };
        match traced(&plugin, "transform", plugin.transform(&request, self.deadline)).await {
            Ok(generation) => Ok(Ok(Some((self.table.push(AppliedPlugin(plugin))?, generation)))),
            Err(error) => Ok(Err(failure(&plugin, error))),
        }
    }

    fn serving(
        &mut self,
        character: String,
    ) -> wasmtime::Result<Option<(Resource<AppliedPlugin>, PluginInfo)>> {
        let Some(plugin) = self.plugins.serving(&character) else { return Ok(None) };
        let info = PluginInfo { name: plugin.manifest().name.clone(), sha256: plugin.sha256().to_string() };
        Ok(Some((self.table.push(AppliedPlugin(plugin))?, info)))
    }
}

impl HostAppliedPlugin for PluginsView<'_> {
    fn name(&mut self, applied: Resource<AppliedPlugin>) -> wasmtime::Result<String> {
        Ok(self.table.get(&applied)?.0.manifest().name.clone())
    }

    fn sha256(&mut self, applied: Resource<AppliedPlugin>) -> wasmtime::Result<String> {
        Ok(self.table.get(&applied)?.0.sha256().to_string())
    }

    async fn post_process(
        &mut self,
        applied: Resource<AppliedPlugin>,
        request: PromptRequest,
        text: String,
    ) -> wasmtime::Result<Result<String, PluginFailure>> {
        let plugin = self.table.get(&applied)?.0.clone();
        let processed =
            traced(&plugin, "post_process", plugin.post_process(&request, text, self.deadline)).await;
        Ok(processed.map_err(|error| failure(&plugin, error)))
    }

    async fn transform(
        &mut self,
        applied: Resource<AppliedPlugin>,
        request: PromptRequest,
    ) -> wasmtime::Result<Result<Generation, PluginFailure>> {
        let plugin = self.table.get(&applied)?.0.clone();
        let transformed = traced(&plugin, "transform", plugin.transform(&request, self.deadline)).await;
        Ok(transformed.map_err(|error| failure(&plugin, error)))
    }

    fn drop(&mut self, applied: Resource<AppliedPlugin>) -> wasmtime::Result<()> {
        self.table.delete(applied)?;
        Ok(())
    }
}
