//! The `Cache-Status` header (RFC 9211) on every answer, naming the tier
//! that answered: `llm-service; hit; detail=edge` (the edge tier),
//! `detail=memory` or `detail=keydb` (the handler's hit from the
//! in-process tier or the shared store), `detail=stale` (stale-if-error),
//! `fwd=miss` (generated), `fwd=bypass` (the cache was not asked: the
//! request said so, or it is not a generation). The handler's `X-Cache`
//! says whether its answer came from the cache; the host adds which tier.

use http::HeaderValue;

use crate::caps::cache::{FreshFound, Tier};

/// The header's name.
pub const HEADER: &str = "cache-status";
/// Answered by the edge tier.
pub const EDGE: HeaderValue = HeaderValue::from_static("llm-service; hit; detail=edge");
/// Not answered from a cache, and none was asked.
pub const BYPASS: HeaderValue = HeaderValue::from_static("llm-service; fwd=bypass");
const MEMORY: HeaderValue = HeaderValue::from_static("llm-service; hit; detail=memory");
const KEYDB: HeaderValue = HeaderValue::from_static("llm-service; hit; detail=keydb");
const HIT: HeaderValue = HeaderValue::from_static("llm-service; hit");
const STALE: HeaderValue = HeaderValue::from_static("llm-service; hit; detail=stale");
const MISS: HeaderValue = HeaderValue::from_static("llm-service; fwd=miss");

/// The header for a handler's answer that said `x_cache`, after lookups
/// that found `found` fresh.
pub fn of(x_cache: Option<&HeaderValue>, found: Option<FreshFound>) -> HeaderValue {
    match x_cache.map(HeaderValue::as_bytes) {
        Some(b"HIT") => match found.map(|found| found.tier) {
            Some(Tier::Memory) => MEMORY,
            Some(Tier::Shared) => KEYDB,
            None => HIT,
        },
        Some(b"STALE") => STALE,
        Some(b"MISS") => MISS,
        _ => BYPASS,
    }
}

/// The tier a `Cache-Status` value names, as a trace records it: `edge`,
/// `memory`, `keydb`, `hit` (tier unknown), `stale`, `miss` or `bypass`.
pub fn tier(value: &HeaderValue) -> &'static str {
    [(EDGE, "edge"), (MEMORY, "memory"), (KEYDB, "keydb"), (HIT, "hit"), (STALE, "stale"), (MISS, "miss")]
        .into_iter()
        .find_map(|(known, tier)| (known == value).then_some(tier))
        .unwrap_or("bypass")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hit_names_the_tier_its_lookup_found() {
        let found = |tier| Some(FreshFound { tier, fresh_until_ms: 0 });
        let hit = HeaderValue::from_static("HIT");
        assert_eq!(of(Some(&hit), found(Tier::Memory)), "llm-service; hit; detail=memory");
        assert_eq!(of(Some(&hit), found(Tier::Shared)), "llm-service; hit; detail=keydb");
        assert_eq!(of(Some(&HeaderValue::from_static("MISS")), None), "llm-service; fwd=miss");
        assert_eq!(of(None, found(Tier::Memory)), "llm-service; fwd=bypass");
    }

    #[test]
    fn a_trace_names_the_tier_the_header_names() {
        assert_eq!(tier(&EDGE), "edge");
        assert_eq!(tier(&of(Some(&HeaderValue::from_static("HIT")), None)), "hit");
        assert_eq!(tier(&MISS), "miss");
        assert_eq!(tier(&BYPASS), "bypass");
    }
}
