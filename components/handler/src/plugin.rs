//! Prompt plugins as the handler uses them. The plugin version serving a
//! request's character is pinned when the request arrives (its sha256 is
//! part of the cache key, see [`crate::key`]); it transforms the request
//! only when the answer must be generated, and post-processes the text
//! before it is stored, so a hit costs no plugin call. What a plugin
//! returns is checked like a request: settings out of range fail the
//! request (502, naming the plugin).

use std::rc::Rc;

use llm_service_sdk::bindings::llm_service::host::plugins::{
    self, AppliedPlugin, PluginError, PluginFailure,
};
use llm_service_sdk::bindings::llm_service::host::prompt_types as wit;
use serde_json::{Map, Value, json};

use crate::error::ApiError;
use crate::request::{GenerateRequest, Prepared, PromptPlugin};
use crate::settings::Settings;

impl From<PluginFailure> for ApiError {
    fn from(failure: PluginFailure) -> Self {
        match failure.error {
            PluginError::Refused(message) => Self::PluginRefused { plugin: failure.plugin, message },
            PluginError::Failed(message) => Self::PluginFailed { plugin: failure.plugin, message },
        }
    }
}

/// A plugin version pinned for one request.
struct Pinned {
    name: String,
    sha256: String,
    applied: AppliedPlugin,
}

/// Pins the plugin serving `request`'s character, if one does.
pub fn pin(request: &mut GenerateRequest) {
    let Some(character) = &request.character_name else { return };
    if let Some((applied, info)) = plugins::serving(character) {
        request.plugin = Some(Rc::new(Pinned { name: info.name, sha256: info.sha256, applied }));
    }
}

impl PromptPlugin for Pinned {
    fn name(&self) -> &str {
        &self.name
    }

    fn sha256(&self) -> &str {
        &self.sha256
    }

    fn transform(&self, request: &GenerateRequest) -> Result<Prepared, ApiError> {
        let unchanged =
            Prepared { system: None, prompt: request.prompt.clone(), settings: request.settings.clone() };
        let generation = self.applied.transform(&prompt_request(request, &unchanged))?;
        let failed = |message: String| ApiError::PluginFailed { plugin: self.name.clone(), message };
        if generation.prompt.trim().is_empty() {
            return Err(failed("it returned an empty prompt".into()));
        }
        Ok(Prepared {
            settings: checked_settings(&generation.settings).map_err(|error| failed(error.message()))?,
            prompt: generation.prompt,
            system: generation.system.filter(|system| !system.trim().is_empty()),
        })
    }

    fn post_process(
        &self,
        request: &GenerateRequest,
        prepared: &Prepared,
        text: String,
    ) -> Result<String, ApiError> {
        Ok(self.applied.post_process(&prompt_request(request, prepared), &text)?)
    }
}

/// The request as a plugin sees it, with `prepared` as its generation.
fn prompt_request(request: &GenerateRequest, prepared: &Prepared) -> wit::PromptRequest {
    let Settings { temperature, max_tokens, top_p, top_k, repeat_penalty, stop, seed } = &prepared.settings;
    wit::PromptRequest {
        character: request.character_name.clone().unwrap_or_default(),
        conversation_id: request.conversation_id.clone(),
        generation: wit::Generation {
            system: prepared.system.clone(),
            prompt: prepared.prompt.clone(),
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
    // Every field is set from the plugin's values; the start only has to be valid.
    let mut checked = Settings {
        temperature: 0.0,
        max_tokens: 1,
        top_p: 1.0,
        top_k: 1,
        repeat_penalty: 1.0,
        stop: Vec::new(),
        seed: None,
    };
    if let Some(seed) = seed {
        values.insert("seed".into(), Value::from(*seed));
    }
    checked.merge(&values, "settings")?;
    Ok(checked)
}
