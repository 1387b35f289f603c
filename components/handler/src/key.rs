//! The cache key: `llm_response:{prompt_hash}:{character}:{settings_hash}`,
//! as the seed names it.
//!
//! `settings_hash` is the SHA-256 of a canonical JSON of everything that
//! changes the answer: the backend protocol, the model asked for and every
//! setting after defaults are merged, in a fixed order with normalised
//! numbers, so key order and spelled-out defaults never matter, and a
//! different model or option always does. A request served by a plugin adds
//! the plugin's sha256: the plugin's transform is a function of the request
//! and its version, so keying on both means a hit runs no plugin, and a new
//! version never serves the old one's answers. [`key`] destructures the
//! whole request, so a new field does not compile until it is classified.

use serde_json::json;
use sha2::{Digest, Sha256};

use crate::backend::Kind;
use crate::request::GenerateRequest;
use crate::settings::Settings;

/// Every key this handler writes starts so; /cache/clear removes only these.
pub const KEY_PREFIX: &str = "llm_response:";
/// The character segment of a request without `character_name`.
const NO_CHARACTER: &str = "default";

/// The key for `request` over a `backend` speaking that protocol.
pub fn key(request: &GenerateRequest, backend: Kind) -> String {
    let GenerateRequest {
        prompt,
        character_name,
        settings,
        models,
        plugin,
        question,
        // The prompt carries the conversation; the id only tells plugins.
        conversation_id: _,
        // Whether to use the cache at all, not what the answer is.
        use_cache: _,
        // One answer, framed as JSON or NDJSON.
        stream: _,
        // How long the answer is kept, not what it is.
        cache_ttl_s: _,
    } = request;
    let character = character_segment(character_name.as_deref().unwrap_or(NO_CHARACTER));
    // Only the first model: an answer from a fallback is never stored.
    let model = &models[0];
    let Settings { temperature, max_tokens, top_p, top_k, repeat_penalty, stop, seed } = settings;
    let backend = backend.protocol().name;
    let mut canonical = vec![json!(["backend", backend]), json!(["model", model])];
    match question {
        // The seed's request: its settings after the defaults.
        None => canonical.extend([
            json!(["max_tokens", max_tokens]),
            json!(["repeat_penalty", canonical_number(*repeat_penalty)]),
            json!(["seed", seed]),
            json!(["stop", stop]),
            json!(["temperature", canonical_number(*temperature)]),
            json!(["top_k", top_k]),
            json!(["top_p", canonical_number(*top_p)]),
        ]),
        // A dialect's: everything it asks, and not the seed's defaults,
        // which it never uses.
        Some(question) => canonical.push(json!(["question", question.canonical()])),
    }
    // Only when present, so keys of requests without a plugin are what they
    // were before plugins existed.
    if let Some(plugin) = plugin {
        canonical.push(json!(["plugin", plugin.sha256()]));
    }
    let settings_hash =
        hex::encode(Sha256::digest(serde_json::Value::from(canonical).to_string().as_bytes()));
    format!("{KEY_PREFIX}{}:{character}:{settings_hash}", prompt_hash(prompt))
}

/// A character as its key segment: `%` and `:` percent-encoded, so the
/// segment never contains the separator and `:{segment}:` matches exactly
/// one character's keys (a clear of "lois" leaves "peter:lois" alone).
/// Names without either character are their own segment.
pub fn character_segment(character: &str) -> std::borrow::Cow<'_, str> {
    if !character.contains([':', '%']) {
        return character.into();
    }
    character.replace('%', "%25").replace(':', "%3A").into()
}

/// SHA-256 of the prompt, hex.
pub fn prompt_hash(prompt: &str) -> String {
    hex::encode(Sha256::digest(prompt.as_bytes()))
}

/// `1`, `1.0` and `1.00` are one number: render every float the same way
/// ([`crate::question::number_text`]: exact past six decimals).
fn canonical_number(number: f64) -> String {
    crate::question::number_text(number)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::request::tests::{config, parsed};

    fn request(body: serde_json::Value) -> GenerateRequest {
        parsed(body, &config(&[]))
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
        let key_a = key(&a, Kind::Ollama);
        assert_eq!(key_a, key(&b, Kind::Ollama));
        assert_eq!(key_a, key(&c, Kind::Ollama));
        assert!(key_a.starts_with(
            "llm_response:8f434346648f6b96df89dda901c5176b10a6d83961dd3c1ac88b59b2dc327aa4:peter:"
        ));
    }

    #[test]
    fn model_backend_and_every_option_change_the_key() {
        let base = request(json!({"prompt": "hi", "model": "m"}));
        let base_key = key(&base, Kind::Ollama);
        assert_ne!(base_key, key(&request(json!({"prompt": "hi", "model": "other"})), Kind::Ollama));
        assert_ne!(base_key, key(&base, Kind::OpenAi));
        for settings in [
            json!({"temperature": 0.5}),
            json!({"max_tokens": 7}),
            json!({"top_p": 0.5}),
            json!({"top_k": 3}),
            json!({"repeat_penalty": 1.3}),
            json!({"stop": ["x"]}),
            json!({"seed": 1}),
        ] {
            let changed = request(json!({"prompt": "hi", "model": "m", "settings": settings}));
            assert_ne!(base_key, key(&changed, Kind::Ollama), "{settings}");
        }
    }

    #[test]
    fn what_does_not_change_the_answer_does_not_change_the_key() {
        let base = key(&request(json!({"prompt": "hi"})), Kind::Ollama);
        let framed = request(
            json!({"prompt": "hi", "stream": true, "use_cache": true, "cache_ttl": 5, "conversation_id": "c"}),
        );
        assert_eq!(base, key(&framed, Kind::Ollama));
    }

    #[test]
    fn a_character_segment_never_holds_the_separator() {
        assert_eq!(character_segment("lois"), "lois");
        assert_eq!(character_segment("peter:lois"), "peter%3Alois");
        assert_eq!(character_segment("50%:x"), "50%25%3Ax");
        let key = key(&request(json!({"prompt": "hi", "character_name": "peter:lois"})), Kind::Ollama);
        assert!(!key.contains(":lois:"), "{key}");
    }
}
