//! The routing key: what keeps one conversation on one handler version and
//! one model while a canary or a model split divides traffic.
//!
//! In order: the client's own `X-Request-Id` (a retry with the same id
//! lands where the first try did), the body's `conversation_id` (every
//! turn of a chat stays together), else the request's own id: each such
//! request is picked afresh. (Not the connection: a proxy's few keep-alive
//! connections would put all of its traffic on one side.) Each split hashes
//! the key with a salt of its own, so a 20% canary and a 10% model split
//! pick independent slices of traffic.

use std::hash::{DefaultHasher, Hash, Hasher};

/// The number of buckets a key hashes into: shares have 0.01% steps.
pub const BUCKETS: u32 = 10_000;

/// A request's routing key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RoutingKey(u64);

/// Reads `conversation_id` and skips everything else.
#[derive(serde::Deserialize)]
struct Conversation<'a> {
    #[serde(borrow)]
    conversation_id: Option<std::borrow::Cow<'a, str>>,
}

impl RoutingKey {
    /// The key of a request with `client_request_id` (as the client sent
    /// it, if it did) and `body`, whose own id is `request_id`.
    pub fn of(client_request_id: Option<&str>, body: &[u8], request_id: &str) -> Self {
        if let Some(id) = client_request_id {
            return Self(hash(&("request", id)));
        }
        // The cheap test first: most bodies without the field are never parsed.
        if memchr::memmem::find(body, b"\"conversation_id\"").is_some()
            && let Ok(Conversation { conversation_id: Some(id) }) = serde_json::from_slice(body)
        {
            return Self(hash(&("conversation", &*id)));
        }
        Self(hash(&("request", request_id)))
    }

    /// Its bucket (0..[`BUCKETS`]) for the split named `salt`.
    pub fn bucket(self, salt: &str) -> u32 {
        (hash(&(salt, self.0)) % u64::from(BUCKETS)) as u32
    }
}

/// `DefaultHasher::new()` has fixed keys: the same key hashes the same way
/// for the life of the process (and of this Rust release), which is all a
/// split needs.
fn hash(value: &impl Hash) -> u64 {
    let mut hasher = DefaultHasher::new();
    value.hash(&mut hasher);
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_client_id_comes_first_then_the_conversation_then_the_request() {
        let body = br#"{"prompt": "hi", "conversation_id": "chat-7"}"#;
        assert_eq!(RoutingKey::of(Some("r1"), body, "a"), RoutingKey::of(Some("r1"), b"", "b"));
        assert_eq!(
            RoutingKey::of(None, body, "a"),
            RoutingKey::of(None, body, "b"),
            "the request's own id is not used"
        );
        assert_ne!(
            RoutingKey::of(None, b"{}", "a"),
            RoutingKey::of(None, b"{}", "b"),
            "each request picked afresh"
        );
        assert_eq!(RoutingKey::of(None, b"{\"conversation_id\": 5}", "a"), RoutingKey::of(None, b"", "a"));
    }

    #[test]
    fn buckets_spread_evenly_and_salts_are_independent() {
        let keys: Vec<RoutingKey> =
            (0..10_000u64).map(|request| RoutingKey::of(None, b"", &request.to_string())).collect();
        let under = |salt: &str| keys.iter().filter(|key| key.bucket(salt) < BUCKETS / 5).count();
        let (canary, split) = (under("canary"), under("model"));
        assert!((1_800..2_200).contains(&canary), "{canary} of 10,000 under 20%");
        let both =
            keys.iter().filter(|key| key.bucket("canary") < BUCKETS / 5 && key.bucket("model") < BUCKETS / 5);
        assert!((300..500).contains(&both.count()), "independent: about 4% in both ({split})");
    }
}
