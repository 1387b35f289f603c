//! POST /generate/batch: `{"requests": [...]}` → `{"results": [...]}` in the
//! same order, each item through the one pipeline. Items that ask the same
//! (the same cache key) share one generation. Every item's backend request
//! is sent before any answer is awaited (the host's generation limit paces
//! them), and the items this batch generates are finished before it waits
//! on other requests' flights, so two batches never wait on each other. A
//! bad item gets its own `{"error", "status"}` and never fails the others.

use std::collections::HashMap;
use std::time::Instant;

use llm_service_sdk::http::{Reply, Request, Response};
use serde_json::{Value, json};

use crate::config::Config;
use crate::error::ApiError;
use crate::generate::parse_item;
use crate::key::key;
use crate::pipeline::{Begun, Ctx, Outcome, begin};
use crate::render;
use crate::report;
use crate::request::GenerateRequest;
use crate::serve::policy;
use crate::stamp::Stamp;
use crate::wasm_host::WasmHost;

/// POST /generate/batch.
pub fn post(request: &Request) -> Reply {
    match run(request.body()) {
        Ok(results) => Response::json(200, &json!({ "results": results })).into(),
        Err(error) => error.response().into(),
    }
}

fn run(body: &[u8]) -> Result<Vec<Value>, ApiError> {
    let started = Instant::now();
    let config = Config::get();
    let value: Value = serde_json::from_slice(body)?;
    let items = value
        .get("requests")
        .and_then(Value::as_array)
        .ok_or_else(|| ApiError::invalid("requests", "requests must be a list of /generate requests"))?;
    let max = config.max_batch;
    if items.is_empty() || items.len() > max {
        return Err(ApiError::invalid("requests", format!("a batch holds 1 to {max} requests (MAX_BATCH)")));
    }
    let parsed: Vec<Result<GenerateRequest, ApiError>> = items
        .iter()
        .enumerate()
        .map(|(index, item)| {
            let prefix = format!("requests[{index}].");
            let request = parse_item(item, &prefix, config)?;
            if request.stream {
                return Err(ApiError::invalid(
                    &format!("{prefix}stream"),
                    "streaming is not available in a batch",
                ));
            }
            Ok(request)
        })
        .collect();

    // One generation per distinct key (and cache use): `shared[i]` is the
    // generation item i takes its answer from.
    let mut generations: Vec<&GenerateRequest> = Vec::new();
    let mut by_key: HashMap<(String, bool), usize> = HashMap::new();
    let shared: Vec<Option<usize>> = parsed
        .iter()
        .map(|request| {
            let request = request.as_ref().ok()?;
            let identity = (key(request, config.backend.kind()), request.use_cache);
            Some(*by_key.entry(identity).or_insert_with(|| {
                generations.push(request);
                generations.len() - 1
            }))
        })
        .collect();

    let (host, policy) = (WasmHost::new(config.backend.clone()), policy(config));
    let begun: Vec<Begun<WasmHost>> =
        generations.iter().map(|request| begin(&Ctx { host: &host, request, policy: &policy })).collect();
    let mut outcomes: Vec<Option<Outcome>> = vec![None; generations.len()];
    let mut following = Vec::new();
    for (index, begun) in begun.into_iter().enumerate() {
        let ctx = Ctx { host: &host, request: generations[index], policy: &policy };
        match begun {
            Begun::Done(outcome) => outcomes[index] = Some(outcome),
            Begun::Flowing(flow) if flow.follows() => following.push((index, flow)),
            Begun::Flowing(flow) => outcomes[index] = Some(flow.finish(&ctx)),
        }
    }
    for (index, flow) in following {
        let ctx = Ctx { host: &host, request: generations[index], policy: &policy };
        outcomes[index] = Some(flow.finish(&ctx));
    }

    Ok(parsed
        .iter()
        .zip(shared)
        .map(|(request, shared)| {
            let outcome = match (request, shared) {
                (Ok(request), Some(index)) => {
                    let outcome = outcomes[index].clone().expect("every generation finished");
                    let status = outcome.as_ref().map_or_else(ApiError::status, |_| 200);
                    report::generation(request, started, status, &outcome);
                    outcome
                }
                (Err(error), _) => Err(error.clone()),
                (Ok(_), None) => unreachable!("every valid item has a generation"),
            };
            render::batch_item(&outcome, &Stamp::live(started))
        })
        .collect())
}
