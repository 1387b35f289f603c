//! The default llm-service handler: routing, validation and the JSON shapes
//! of the seed's API. It keeps no state between requests; anything that must
//! last (the current model, statistics) is asked of the host.

mod backend;
mod cache_clear;
mod config;
mod cross_origin;
mod dialect;
mod error;
mod health;
mod key;
mod metrics;
mod models;
mod pipeline;
mod plugin;
mod quality;
mod question;
mod render;
mod replay;
mod report;
mod request;
mod serve;
mod settings;
mod span;
mod stamp;
mod stored;
mod tool_calls;
mod validate;
mod wasm_host;

use dialect::Route;
use llm_service_sdk::Handler;
use llm_service_sdk::http::{Reply, Request, Response};

/// The public API's OpenAPI 3.1 description, kept in the repository.
const OPENAPI: &str = include_str!("../../../docs/openapi.json");

/// GET /openapi.json.
pub(crate) fn openapi(_request: &Request) -> Reply {
    Response::new(200, "application/json", OPENAPI.as_bytes().to_vec()).into()
}

struct DefaultHandler;

impl Handler for DefaultHandler {
    fn handle(request: Request) -> Reply {
        route(&request)
    }
}

fn route(request: &Request) -> Reply {
    let path = request.path();
    let routes = || dialect::DIALECTS.iter().flat_map(|routes| routes.iter());
    let exact = routes().find(|route| !route.prefix && route.path == path);
    let prefixed = || {
        routes().find(|route| route.prefix && path.len() > route.path.len() && path.starts_with(route.path))
    };
    let Some(route): Option<&Route> = exact.or_else(prefixed) else {
        return Response::error(404, &format!("no such endpoint: {}", request.path())).into();
    };
    if request.method() == "OPTIONS" {
        // What HAProxy's default check sends (`OPTIONS /`): say what the path takes.
        let allow = format!("{}, OPTIONS", route.methods.join(", "));
        return Response::new(204, "text/plain", Vec::new()).with_header("allow", &allow).into();
    }
    if let Some(refusal) = cross_origin::refusal(request) {
        return refusal.into();
    }
    if !route.methods.contains(&request.method()) {
        let allow = route.methods.join(", ");
        let message = format!("{} does not accept {}; allowed: {allow}", route.path, request.method());
        return Response::error(405, &message).with_header("allow", &allow).into();
    }
    (route.handle)(request)
}

llm_service_sdk::export_handler!(DefaultHandler);
