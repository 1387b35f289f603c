//! The cache policy: what a key is, what is stored, how long it lives.
//!
//! Key, per the seed: `llm_response:{prompt_hash}:{character}:{settings_hash}`.
//! `settings_hash` is the SHA-256 of a canonical JSON of everything that
//! changes the output: the backend protocol, the model and every setting
//! after defaults are merged, in a fixed order with normalised numbers. So
//! key order and spelled-out defaults never matter, and a different model or
//! option always does. A plugin's changes are in it (its prompt, system
//! prompt and settings, see [`crate::plugin`]) and so is its sha256.
//! `conversation_id` is not part of the key: the prompt carries the
//! conversation. Cache errors count as misses.

use llm_service_sdk::bindings::llm_service::host::cache;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::backend::Kind;
use crate::generate::GenerateRequest;
use crate::settings::Settings;

/// Every key this handler writes starts so; /cache/clear removes only these.
pub const KEY_PREFIX: &str = "llm_response:";
/// The character segment of a request without `character_name`.
const NO_CHARACTER: &str = "default";

/// The seed's one hour, unless LLM_RESPONSE_CACHE_TTL says otherwise.
fn default_ttl_s() -> u64 {
    std::env::var("LLM_RESPONSE_CACHE_TTL").ok().and_then(|v| v.parse().ok()).unwrap_or(3600)
}

/// Seconds past its TTL an answer is kept for STALE_IF_ERROR (0 = off).
pub fn stale_window_s() -> u64 {
    std::env::var("STALE_IF_ERROR").ok().and_then(|v| v.parse().ok()).unwrap_or(0)
}

/// The key for `request` answered by `model` over `backend`.
pub fn key(request: &GenerateRequest, model: &str, backend: Kind) -> String {
    let character = request.character_name.as_deref().unwrap_or(NO_CHARACTER);
    format!(
        "{KEY_PREFIX}{}:{character}:{}",
        prompt_hash(&request.prompt),
        settings_hash(request, model, backend)
    )
}

/// SHA-256 of the prompt, hex.
pub fn prompt_hash(prompt: &str) -> String {
    hex::encode(Sha256::digest(prompt.as_bytes()))
}

/// SHA-256 of the canonical form of what shapes the output.
fn settings_hash(request: &GenerateRequest, model: &str, backend: Kind) -> String {
    // Exhaustive on purpose: a new setting must be classified here before
    // the handler compiles again.
    let Settings { temperature, max_tokens, top_p, top_k, repeat_penalty, stop, seed } = &request.settings;
    let backend = match backend {
        Kind::Ollama => "ollama",
        Kind::OpenAi => "openai",
    };
    let mut canonical = json!([
        ["backend", backend],
        ["model", model],
        ["max_tokens", max_tokens],
        ["repeat_penalty", canonical_number(*repeat_penalty)],
        ["seed", seed],
        ["stop", stop],
        ["temperature", canonical_number(*temperature)],
        ["top_k", top_k],
        ["top_p", canonical_number(*top_p)],
    ]);
    // Only when present, so keys of requests without a plugin are what they
    // were before plugins existed.
    if let (Some(plugin), Value::Array(parts)) = (&request.plugin, &mut canonical) {
        parts.push(json!(["plugin", plugin.sha256]));
        parts.push(json!(["system", request.system]));
    }
    hex::encode(Sha256::digest(canonical.to_string().as_bytes()))
}

/// `1`, `1.0` and `1.00` are one number: render every float the same way.
fn canonical_number(number: f64) -> String {
    format!("{number:.6}")
}

/// What is stored for a completed generation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stored {
    pub response: String,
    pub model: String,
    pub tokens_generated: u64,
    pub temperature: f64,
    pub prompt_hash: String,
    /// Unix seconds when stored.
    pub stored_at: u64,
    /// Unix seconds until which it is fresh (served as a hit).
    pub fresh_until: u64,
}

/// What the cache holds for a key.
pub enum Lookup {
    /// A fresh answer.
    Fresh(Stored),
    /// An answer past its TTL, kept for STALE_IF_ERROR.
    Stale(Stored),
    /// Nothing usable.
    Miss,
}

/// Unix seconds now.
pub fn now_s() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// Looks `key` up; an unreadable value or a cache error is a miss.
pub fn lookup(key: &str) -> Lookup {
    let Ok(Some(entry)) = cache::get(key) else { return Lookup::Miss };
    let Ok(stored) = serde_json::from_slice::<Stored>(&entry.value) else { return Lookup::Miss };
    if now_s() < stored.fresh_until { Lookup::Fresh(stored) } else { Lookup::Stale(stored) }
}

/// The value to store for an answer, fresh for the request's TTL.
pub fn stored(request: &GenerateRequest, response: &str, model: &str, tokens_generated: u64) -> Stored {
    let now = now_s();
    Stored {
        response: response.to_string(),
        model: model.to_string(),
        tokens_generated,
        temperature: request.settings.temperature,
        prompt_hash: prompt_hash(&request.prompt),
        stored_at: now,
        fresh_until: now + request.cache_ttl_s.unwrap_or_else(default_ttl_s),
    }
}

/// Stores `value` under `key`, kept past freshness for the stale window.
/// A failure only costs a later miss.
pub fn store(key: &str, value: &Stored) {
    let Ok(bytes) = serde_json::to_vec(value) else { return };
    let ttl = value.fresh_until.saturating_sub(value.stored_at) + stale_window_s();
    let _ = cache::set(key, &bytes, ttl.max(1));
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn request(body: serde_json::Value) -> GenerateRequest {
        GenerateRequest::from_value(&body, "").unwrap()
    }

    #[test]
    fn key_order_and_spelled_out_defaults_share_a_key() {
        let a = request(
            json!({"prompt": "hi", "character_name": "peter", "settings": {"temperature": 1, "top_k": 40}}),
        );
        let b = request(
            json!({"settings": {"top_k": 40, "temperature": 1.0}, "character_name": "peter", "prompt": "hi"}),
        );
        let c = request(json!({"prompt": "hi", "character_name": "peter", "settings": {"temperature": 1.0}}));
        let key_a = key(&a, "m", Kind::Ollama);
        assert_eq!(key_a, key(&b, "m", Kind::Ollama));
        assert_eq!(key_a, key(&c, "m", Kind::Ollama));
        assert!(key_a.starts_with(
            "llm_response:8f434346648f6b96df89dda901c5176b10a6d83961dd3c1ac88b59b2dc327aa4:peter:"
        ));
    }

    #[test]
    fn model_backend_and_every_option_change_the_key() {
        let base = request(json!({"prompt": "hi"}));
        let base_key = key(&base, "m", Kind::Ollama);
        assert_ne!(base_key, key(&base, "other", Kind::Ollama));
        assert_ne!(base_key, key(&base, "m", Kind::OpenAi));
        for settings in [
            json!({"temperature": 0.5}),
            json!({"max_tokens": 7}),
            json!({"top_p": 0.5}),
            json!({"top_k": 3}),
            json!({"repeat_penalty": 1.3}),
            json!({"stop": ["x"]}),
            json!({"seed": 1}),
        ] {
            let changed = request(json!({"prompt": "hi", "settings": settings}));
            assert_ne!(base_key, key(&changed, "m", Kind::Ollama), "{settings}");
        }
    }
}
