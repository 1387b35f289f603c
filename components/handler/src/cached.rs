//! A non-streamed /generate through the response cache.
//!
//! A fresh entry is a hit. Otherwise the request joins the key's flight: the
//! leader generates (checking the cache once more first, in case a flight
//! just landed), stores the answer, then lands it for the waiters; a
//! follower answers with what the leader landed, or with the leader's error.
//! When the backend fails and a stale entry (within STALE_IF_ERROR) exists,
//! that is served instead, marked stale.

use std::time::Instant;

use llm_service_sdk::bindings::llm_service::host::cache::{self, JoinResult, Outcome};

use crate::backend::Backend;
use crate::error::ApiError;
use crate::generate::{CacheUse, GenerateRequest, Served, complete, finished};
use crate::response_cache::{self, Lookup, Stored};

/// Joins tried before generating without single-flight (each failed join
/// means a leader went away).
const MAX_JOINS: usize = 3;
/// How long a follower waits for its leader unless REQUEST_TIMEOUT says.
const DEFAULT_WAIT_MS: u32 = 30_000;

/// Answers `request`, using the cache as `use_cache` allows.
pub fn respond(backend: &Backend, request: &GenerateRequest, started: Instant) -> Served {
    if !request.use_cache {
        return match generate(backend, request) {
            Ok(stored) => Served::answer(stored, started, CacheUse::Bypass),
            Err(error) => Served::failure(&error),
        };
    }
    let primary = request.models().remove(0);
    let key = response_cache::key(request, &primary, backend.kind());
    let stale = match response_cache::lookup(&key) {
        Lookup::Fresh(stored) => return Served::answer(stored, started, CacheUse::Hit),
        Lookup::Stale(stored) => Some(stored),
        Lookup::Miss => None,
    };
    let wait_ms = std::env::var("REQUEST_TIMEOUT")
        .ok()
        .and_then(|seconds| seconds.parse::<u32>().ok())
        .map_or(DEFAULT_WAIT_MS, |seconds| seconds.saturating_mul(1000));
    for _ in 0..MAX_JOINS {
        match cache::join(&key, wait_ms) {
            JoinResult::Lead(flight) => {
                if let Lookup::Fresh(stored) = response_cache::lookup(&key) {
                    flight.land(&serde_json::to_vec(&stored).unwrap_or_default());
                    return Served::answer(stored, started, CacheUse::Hit);
                }
                return match generate(backend, request) {
                    Ok(stored) => {
                        if stored.model == primary {
                            response_cache::store(&key, &stored);
                        }
                        flight.land(&serde_json::to_vec(&stored).unwrap_or_default());
                        Served::answer(stored, started, CacheUse::Miss)
                    }
                    Err(error) => {
                        flight.crash(&error.encode());
                        match stale {
                            Some(stale) if error.allows_stale() => {
                                Served::answer(stale, started, CacheUse::Stale)
                            }
                            _ => Served::failure(&error),
                        }
                    }
                };
            }
            JoinResult::Followed(Outcome::Landed(bytes)) => {
                if let Ok(stored) = serde_json::from_slice::<Stored>(&bytes) {
                    return Served::answer(stored, started, CacheUse::Miss);
                }
            }
            JoinResult::Followed(Outcome::Crashed(bytes)) => {
                if let Some((status, response)) = ApiError::decode_response(&bytes) {
                    return match stale {
                        Some(stale) if matches!(status, 502..=504) => {
                            Served::answer(stale, started, CacheUse::Stale)
                        }
                        _ => Served::relayed(response),
                    };
                }
            }
            JoinResult::Followed(Outcome::Abandoned) => {}
        }
    }
    match generate(backend, request) {
        Ok(stored) => Served::answer(stored, started, CacheUse::Miss),
        Err(error) => Served::failure(&error),
    }
}

/// Generates (with fallbacks) and returns what would be stored.
fn generate(backend: &Backend, request: &GenerateRequest) -> Result<Stored, ApiError> {
    let models = request.models();
    let first = backend.start(&request.generation(&models[0]), false);
    let (completion, model) = complete(backend, request, first)?;
    finished(request, completion, &model)
}
