//! Prompt plugins as the handler uses them. The plugin serving a request's
//! character (the host knows which) transforms the generation before the
//! cache is asked, so everything it changes, and its sha256, are part of
//! the cache key: a new plugin version never serves the old one's answers.
//! It post-processes the answer's text before the text is stored, so a hit
//! costs no post-processing. What a plugin returns is checked like a
//! request: settings out of range fail the request (502, naming it).

use std::rc::Rc;

use llm_service_sdk::bindings::llm_service::host::plugins::{
    self, AppliedPlugin, PluginError, PluginFailure,
};
use llm_service_sdk::bindings::llm_service::host::prompt_types as wit;
use serde_json::{Map, Value, json};

use crate::error::ApiError;
use crate::generate::GenerateRequest;
use crate::settings::Settings;

/// The plugin a request was transformed by.
#[derive(Clone)]
pub struct PluginUse {
    pub name: String,
    pub sha256: String,
    applied: Rc<AppliedPlugin>,
}

impl std::fmt::Debug for PluginUse {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("PluginUse").field("name", &self.name).field("sha256", &self.sha256).finish()
    }
}

impl From<PluginFailure> for ApiError {
    fn from(failure: PluginFailure) -> Self {
        match failure.error {
            PluginError::Refused(message) => Self::PluginRefused { plugin: failure.plugin, message },
            PluginError::Failed(message) => Self::PluginFailed { plugin: failure.plugin, message },
        }
    }
}

/// Lets the plugin serving `request`'s character (if any) transform it.
pub fn apply(request: &mut GenerateRequest) -> Result<(), ApiError> {
    let Some(character) = request.character_name.clone() else { return Ok(()) };
    let Some((applied, generation)) = plugins::transform(&prompt_request(request, &character))? else {
        return Ok(());
    };
    let name = applied.name();
    let failed = |message: String| ApiError::PluginFailed { plugin: name.clone(), message };
    if generation.prompt.trim().is_empty() {
        return Err(failed("it returned an empty prompt".into()));
    }
    request.settings = checked_settings(&generation.settings).map_err(|error| failed(error.message()))?;
    request.prompt = generation.prompt;
    request.system = generation.system.filter(|system| !system.trim().is_empty());
    request.plugin = Some(PluginUse { sha256: applied.sha256(), name, applied: Rc::new(applied) });
    Ok(())
}

/// The answer's text after the request's plugin (if any) post-processed it.
pub fn post_process(request: &GenerateRequest, text: String) -> Result<String, ApiError> {
    let (Some(plugin), Some(character)) = (&request.plugin, &request.character_name) else {
        return Ok(text);
    };
    Ok(plugin.applied.post_process(&prompt_request(request, character), &text)?)
}

/// The request as a plugin sees it.
fn prompt_request(request: &GenerateRequest, character: &str) -> wit::PromptRequest {
    let Settings { temperature, max_tokens, top_p, top_k, repeat_penalty, stop, seed } = &request.settings;
    wit::PromptRequest {
        character: character.to_string(),
        conversation_id: request.conversation_id.clone(),
        generation: wit::Generation {
            system: request.system.clone(),
            prompt: request.prompt.clone(),
            settings: wit::Settings {
                temperature: *temperature,
                max_tokens: *max_tokens,
                top_p: *top_p,
                top_k: *top_k,
                repeat_penalty: *repeat_penalty,
                stop: stop.clone(),
                seed: *seed,
            },
        },
    }
}

/// A plugin's settings, held to the same ranges as a request's.
fn checked_settings(settings: &wit::Settings) -> Result<Settings, ApiError> {
    let wit::Settings { temperature, max_tokens, top_p, top_k, repeat_penalty, stop, seed } = settings;
    let mut values = Map::new();
    values.insert("temperature".into(), json!(temperature));
    values.insert("max_tokens".into(), json!(max_tokens));
    values.insert("top_p".into(), json!(top_p));
    values.insert("top_k".into(), json!(top_k));
    values.insert("repeat_penalty".into(), json!(repeat_penalty));
    values.insert("stop".into(), json!(stop));
    if let Some(seed) = seed {
        values.insert("seed".into(), Value::from(*seed));
    }
    let mut checked = Settings::defaults();
    checked.seed = None;
    checked.merge(&values, "settings")?;
    Ok(checked)
}
