//! The default llm-service handler: routing, validation and the JSON shapes
//! of the seed's API. It keeps no state between requests; anything that must
//! last (the current model, statistics) is asked of the host.

mod backend;
mod batch;
mod cache_clear;
mod config;
mod cross_origin;
mod dialect;
mod error;
mod generate;
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

use dialect::{anthropic, ollama, ollama_meta, openai, openai_completions, openai_meta, openai_responses};
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
    Route { path: "/health", methods: &["GET"], handle: health::get },
    Route { path: "/generate", methods: &["POST"], handle: generate::post },
    Route { path: "/generate/batch", methods: &["POST"], handle: batch::post },
    Route { path: "/cache/clear", methods: &["POST"], handle: cache_clear::post },
    Route { path: "/metrics", methods: &["GET"], handle: metrics::get },
    Route { path: "/metrics/prometheus", methods: &["GET"], handle: metrics::prometheus },
    Route { path: "/models", methods: &["GET"], handle: models::list },
    Route { path: "/model", methods: &["POST"], handle: models::switch },
    Route { path: "/validate-model", methods: &["GET", "POST"], handle: validate::validate },
    Route { path: "/openapi.json", methods: &["GET"], handle: openapi },
    // Ollama's API.
    Route { path: "/", methods: &["GET", "HEAD"], handle: ollama_meta::index },
    Route { path: "/api/version", methods: &["GET"], handle: ollama_meta::version },
    Route { path: "/api/tags", methods: &["GET"], handle: ollama_meta::tags },
    Route { path: "/api/ps", methods: &["GET"], handle: ollama_meta::ps },
    Route { path: "/api/show", methods: &["POST"], handle: ollama_meta::show },
    Route { path: "/api/generate", methods: &["POST"], handle: ollama::generate },
    Route { path: "/api/chat", methods: &["POST"], handle: ollama::chat },
    Route { path: "/api/embed", methods: &["POST"], handle: ollama_meta::embed },
    Route { path: "/api/embeddings", methods: &["POST"], handle: ollama_meta::embed },
    Route { path: "/api/pull", methods: &["POST"], handle: ollama_meta::management },
    Route { path: "/api/push", methods: &["POST"], handle: ollama_meta::management },
    Route { path: "/api/create", methods: &["POST"], handle: ollama_meta::management },
    Route { path: "/api/copy", methods: &["POST"], handle: ollama_meta::management },
    Route { path: "/api/delete", methods: &["DELETE"], handle: ollama_meta::management },
    // OpenAI's API.
    Route { path: "/v1/chat/completions", methods: &["POST"], handle: openai::chat_completions },
    Route { path: "/v1/completions", methods: &["POST"], handle: openai_completions::completions },
    Route { path: "/v1/models", methods: &["GET"], handle: openai_meta::list },
    Route { path: "/v1/embeddings", methods: &["POST"], handle: openai_meta::embeddings },
    Route { path: "/v1/responses", methods: &["POST"], handle: openai_responses::responses },
    // Anthropic's Messages API.
    Route { path: "/v1/messages", methods: &["POST"], handle: anthropic::messages },
    Route { path: "/v1/messages/count_tokens", methods: &["POST"], handle: anthropic::count_tokens },
];

/// Paths served by prefix (a name follows it).
const PREFIX_ROUTES: &[Route] = &[
    Route { path: openai_meta::MODEL_PATH_PREFIX, methods: &["GET"], handle: openai_meta::one },
    Route { path: "/api/blobs/", methods: &["HEAD", "POST"], handle: ollama_meta::management },
];

/// The public API's OpenAPI 3.1 description, kept in the repository.
const OPENAPI: &str = include_str!("../../../docs/openapi.json");

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
    let path = request.path();
    let exact = ROUTES.iter().find(|route| route.path == path);
    let prefixed =
        || PREFIX_ROUTES.iter().find(|route| path.len() > route.path.len() && path.starts_with(route.path));
    let Some(route) = exact.or_else(prefixed) else {
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
