//! POST /generate/batch: `{"requests": [...]}` → `{"results": [...]}` in the
//! same order. Every valid item's first backend request starts at once (the
//! host's generation limit paces them); a bad item gets its own
//! `{"error", "status"}` and never fails the others.

use std::time::Instant;

use llm_service_sdk::http::{Reply, Request, Response};
use llm_service_sdk::outbound::Pending;
use serde_json::{Value, json};

use crate::backend::Backend;
use crate::error::ApiError;
use crate::generate::{CacheUse, GenerateRequest, answer_body, complete, finished, report};
use crate::response_cache::{self, Lookup, Stored};

/// Most items in one batch unless MAX_BATCH says otherwise.
const DEFAULT_MAX_BATCH: usize = 32;

/// POST /generate/batch.
pub fn post(request: &Request) -> Reply {
    match run(request.body()) {
        Ok(results) => Response::json(200, &json!({ "results": results })).into(),
        Err(error) => error.response().into(),
    }
}

fn run(body: &[u8]) -> Result<Vec<Value>, ApiError> {
    let started = Instant::now();
    let value: Value = serde_json::from_slice(body)?;
    let items = value
        .get("requests")
        .and_then(Value::as_array)
        .ok_or_else(|| ApiError::invalid("requests", "requests must be a list of /generate requests"))?;
    let max = std::env::var("MAX_BATCH").ok().and_then(|v| v.parse().ok()).unwrap_or(DEFAULT_MAX_BATCH);
    if items.is_empty() || items.len() > max {
        return Err(ApiError::invalid("requests", format!("a batch holds 1 to {max} requests (MAX_BATCH)")));
    }
    let backend = Backend::from_env();
    let parsed: Vec<Result<GenerateRequest, ApiError>> = items
        .iter()
        .enumerate()
        .map(|(index, item)| {
            let prefix = format!("requests[{index}].");
            let mut request = GenerateRequest::from_value(item, &prefix)?;
            if request.stream {
                return Err(ApiError::invalid(
                    &format!("{prefix}stream"),
                    "streaming is not available in a batch",
                ));
            }
            crate::plugin::apply(&mut request)?;
            Ok(request)
        })
        .collect();
    // Answer hits at once; start every miss's first attempt before waiting
    // on any, so they run together.
    let items: Vec<Result<Item, ApiError>> = parsed
        .into_iter()
        .map(|request| {
            request.map(|request| {
                let primary = request.models().remove(0);
                let key = request.use_cache.then(|| response_cache::key(&request, &primary, backend.kind()));
                if let Some(Lookup::Fresh(stored)) = key.as_deref().map(response_cache::lookup) {
                    return Item::Hit { request, stored };
                }
                let first = backend.start(&request.generation(&primary), false);
                Item::Started { request, primary, key, first }
            })
        })
        .collect();
    Ok(items
        .into_iter()
        .map(|item| {
            let outcome = item.and_then(|item| match item {
                Item::Hit { request, stored } => {
                    report(&request, started, 200, Some(&stored), CacheUse::Hit, None);
                    Ok(answer_body(&stored, started, CacheUse::Hit))
                }
                Item::Started { request, primary, key, first } => {
                    let (completion, model) = complete(&backend, &request, first).inspect_err(|error| {
                        report(&request, started, error.status(), None, CacheUse::Miss, Some(error.kind()));
                    })?;
                    let stored = finished(&request, completion, &model).inspect_err(|error| {
                        report(&request, started, error.status(), None, CacheUse::Miss, Some(error.kind()));
                    })?;
                    let cache_use = match key.filter(|_| model == primary) {
                        Some(key) => {
                            response_cache::store(&key, &stored);
                            CacheUse::Miss
                        }
                        None if request.use_cache => CacheUse::Miss,
                        None => CacheUse::Bypass,
                    };
                    report(&request, started, 200, Some(&stored), cache_use, None);
                    Ok(answer_body(&stored, started, cache_use))
                }
            });
            outcome.map(Value::Object).unwrap_or_else(|error| {
                let mut body = error.body();
                body.insert("status".into(), json!(error.status()));
                Value::Object(body)
            })
        })
        .collect())
}

/// One batch item after the cache was asked.
enum Item {
    Hit {
        request: GenerateRequest,
        stored: Stored,
    },
    Started {
        request: GenerateRequest,
        primary: String,
        key: Option<String>,
        first: Result<Pending, ApiError>,
    },
}
