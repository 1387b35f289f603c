//! POST /generate/batch: `{"requests": [...]}` → `{"results": [...]}` in the
//! same order, each item through the one pipeline. Items that ask the same
//! (the same cache key) share one generation. Every item's backend request
//! is sent before any answer is awaited (the host's generation limit paces
//! them), and the items this batch generates are finished before it waits
//! on other requests' flights, so two batches never wait on each other. A
//! bad item gets its own `{"error", "status"}` and never fails the others.
//! The results are one JSON body built in the handler's memory, so the
//! answers held together are bounded ([`MAX_HELD_BYTES`]): an answer past
//! it is an error of its own item (its answer is cached all the same, so
//! asking it alone is a hit), never a 500 for the whole batch.

use std::collections::HashMap;
use std::time::Instant;

use llm_service_sdk::http::{Reply, Request, Response};
use serde_json::{Value, json};

use super::seed::parse_item;
use crate::config::Config;
use crate::error::ApiError;
use crate::key::key;
use crate::pipeline::{Begun, Ctx, Outcome, begin};
use crate::render;
use crate::report;
use crate::request::GenerateRequest;
use crate::serve::policy;
use crate::stamp::Stamp;
use crate::wasm_host::WasmHost;

/// The answer bytes a batch holds at most: a few times this (the results
/// as JSON values, then as text) must fit the instance's memory
/// (MAX_INSTANCE_MEMORY, 64 MiB by default) beside the backend's answers.
const MAX_HELD_BYTES: usize = 8 << 20;

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
    // The first item of each generation, to name in its error.
    let mut first_items: Vec<usize> = Vec::new();
    let mut by_key: HashMap<(String, bool), usize> = HashMap::new();
    let shared: Vec<Option<usize>> = parsed
        .iter()
        .enumerate()
        .map(|(item, request)| {
            let request = request.as_ref().ok()?;
            let identity = (key(request, config.backend.kind()), request.use_cache);
            Some(*by_key.entry(identity).or_insert_with(|| {
                generations.push(request);
                first_items.push(item);
                generations.len() - 1
            }))
        })
        .collect();

    let (host, policy) = (WasmHost::new(config.backend.clone()), policy(config));
    let begun: Vec<Begun<WasmHost>> =
        generations.iter().map(|request| begin(&Ctx { host: &host, request, policy: &policy })).collect();
    let mut outcomes: Vec<Option<Outcome>> = vec![None; generations.len()];
    let mut held = 0usize;
    let mut keep = |index: usize, outcome: Outcome| Some(bounded(outcome, &mut held, first_items[index]));
    let mut following = Vec::new();
    for (index, begun) in begun.into_iter().enumerate() {
        let ctx = Ctx { host: &host, request: generations[index], policy: &policy };
        match begun {
            Begun::Done(outcome) => outcomes[index] = keep(index, outcome),
            Begun::Flowing(flow) if flow.follows() => following.push((index, flow)),
            Begun::Flowing(flow) => outcomes[index] = keep(index, flow.finish(&ctx)),
        }
    }
    for (index, flow) in following {
        let ctx = Ctx { host: &host, request: generations[index], policy: &policy };
        outcomes[index] = keep(index, flow.finish(&ctx));
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

/// `outcome` if its answer fits beside the `held` bytes (which it then
/// joins), else the error of the batch's item `item`: the batch's answers
/// are too big together.
fn bounded(outcome: Outcome, held: &mut usize, item: usize) -> Outcome {
    let answer = outcome?;
    let bytes = answer.stored.response.len();
    if *held + bytes > MAX_HELD_BYTES {
        let message = format!(
            "this answer ({bytes} bytes) does not fit beside the batch's others: a batch holds {} MiB of answers; ask it on its own (its answer is cached unless the item said use_cache: false)",
            MAX_HELD_BYTES >> 20
        );
        return Err(ApiError::invalid(&format!("requests[{item}]"), message));
    }
    *held += bytes;
    Ok(answer)
}
