//! The default llm-service handler: routing, validation and the JSON shapes
//! of the seed's API. It keeps no state between requests; anything that must
//! last (the current model, statistics) is asked of the host.

mod backend;
mod batch;
mod cache_clear;
mod config;
mod error;
mod generate;
mod health;
mod key;
mod metrics;
mod models;
mod pipeline;
mod plugin;
mod render;
mod report;
mod request;
mod settings;
mod stored;
mod wasm_host;

use llm_service_sdk::Handler;
use llm_service_sdk::http::{Reply, Request, Response};

/// One route: a path and the methods it answers.
struct Route {
    path: &'static str,
    methods: &'static [&'static str],
    handle: fn(&Request) -> Reply,
}

/// Every path this handler serves. A known path with another method is a 405
/// listing these methods in `Allow`.
const ROUTES: &[Route] = &[
    Route { path: "/", methods: &["GET", "HEAD"], handle: index },
    Route { path: "/health", methods: &["GET"], handle: health::get },
    Route { path: "/generate", methods: &["POST"], handle: generate::post },
    Route { path: "/generate/batch", methods: &["POST"], handle: batch::post },
    Route { path: "/cache/clear", methods: &["POST"], handle: cache_clear::post },
    Route { path: "/metrics", methods: &["GET"], handle: metrics::get },
    Route { path: "/metrics/prometheus", methods: &["GET"], handle: metrics::prometheus },
    Route { path: "/models", methods: &["GET"], handle: models::list },
    Route { path: "/model", methods: &["POST"], handle: models::switch },
    Route { path: "/validate-model", methods: &["GET", "POST"], handle: models::validate },
    Route { path: "/openapi.json", methods: &["GET"], handle: openapi },
];

/// The public API's OpenAPI 3.1 description, kept in the repository.
const OPENAPI: &str = include_str!("../../../docs/openapi.json");

/// What `GET /` says: where the API is described.
const INDEX: &str = "llm-service is running.\n\
The API: GET /openapi.json (OpenAPI 3.1). Start with GET /health and POST /generate.\n";

/// GET / (and HEAD): a person or a liveness check finds the service here.
fn index(_request: &Request) -> Reply {
    Response::new(200, "text/plain; charset=utf-8", INDEX.as_bytes().to_vec()).into()
}

/// GET /openapi.json.
fn openapi(_request: &Request) -> Reply {
    Response::new(200, "application/json", OPENAPI.as_bytes().to_vec()).into()
}

struct DefaultHandler;

impl Handler for DefaultHandler {
    fn handle(request: Request) -> Reply {
        route(&request)
    }
}

fn route(request: &Request) -> Reply {
    let Some(route) = ROUTES.iter().find(|route| route.path == request.path()) else {
        return Response::error(404, &format!("no such endpoint: {}", request.path())).into();
    };
    if !route.methods.contains(&request.method()) {
        let allow = route.methods.join(", ");
        let message = format!("{} does not accept {}; allowed: {allow}", route.path, request.method());
        return Response::error(405, &message).with_header("allow", &allow).into();
    }
    (route.handle)(request)
}

llm_service_sdk::export_handler!(DefaultHandler);
