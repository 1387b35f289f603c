//! POST /generate: the seed's request, answered whole as JSON or, with
//! `"stream": true`, as NDJSON: a line per piece as the model produces it,
//! the last carrying the whole answer (post-processed, if the character's
//! plugin does that) and `"done": true`. After the first line a failure is
//! an `{"error": ..., "done": true}` line. [`crate::serve`] runs it.

use std::time::Instant;

use llm_service_sdk::http::{BodyWriter, ClientGone, Reply, Request, Response};
use llm_service_sdk::runtime;
use serde_json::Value;

use super::Route;
use crate::config::Config;
use crate::error::ApiError;
use crate::pipeline::Outcome;
use crate::render;
use crate::report;
use crate::request::GenerateRequest;
use crate::serve::{self, Framing};
use crate::stamp::Stamp;

/// The seed's API: generations, the cache, the service's own pages.
pub const ROUTES: &[Route] = &[
    Route::exact("/health", &["GET"], crate::health::get),
    Route::exact("/generate", &["POST"], post),
    Route::exact("/generate/batch", &["POST"], super::seed_batch::post),
    Route::exact("/cache/clear", &["POST"], crate::cache_clear::post),
    Route::exact("/metrics", &["GET"], crate::metrics::get),
    Route::exact("/metrics/prometheus", &["GET"], crate::metrics::prometheus),
    Route::exact("/models", &["GET"], crate::models::list),
    Route::exact("/model", &["POST"], crate::models::switch),
    Route::exact("/validate-model", &["GET", "POST"], crate::validate::validate),
    Route::exact("/openapi.json", &["GET"], crate::openapi),
];

/// One request object, validated, its model resolved and its plugin pinned.
pub fn parse_item(value: &Value, prefix: &str, config: &Config) -> Result<GenerateRequest, ApiError> {
    let mut request = GenerateRequest::from_value(value, prefix, config, &runtime::model_for_generation)?;
    crate::plugin::pin(&mut request);
    Ok(request)
}

/// POST /generate.
pub fn post(request: &Request) -> Reply {
    let started = Instant::now();
    let parsed = serde_json::from_slice::<Value>(request.body())
        .map_err(ApiError::from)
        .and_then(|value| parse_item(&value, "", Config::get()));
    match parsed {
        Ok(parsed) => serve::answer(parsed, SeedFraming, Stamp::live(started), Vec::new()),
        Err(error) => {
            report::rejected(&error, started);
            error.response().into()
        }
    }
}

/// The seed's shapes ([`render`]).
#[derive(Clone)]
struct SeedFraming;

impl Framing for SeedFraming {
    fn whole(&self, outcome: &Outcome, stamp: &Stamp) -> Response {
        render::whole(outcome, stamp)
    }

    fn stream_head(&self) -> Response {
        Response::new(200, "application/x-ndjson", Vec::new())
    }

    fn piece(&mut self, writer: &mut BodyWriter, piece: &str, _stamp: &Stamp) -> Result<(), ClientGone> {
        render::piece_line(writer, piece)
    }

    fn end(&mut self, writer: &mut BodyWriter, outcome: &Outcome, stamp: &Stamp) -> Result<(), ClientGone> {
        render::last_line(writer, outcome, stamp)
    }
}
