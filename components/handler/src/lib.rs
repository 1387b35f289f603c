//! The default llm-service handler: routing, validation and the JSON shapes
//! of the seed's API. It keeps no state between requests; anything that must
//! last (the current model, statistics) is asked of the host.

mod health;

use llm_service_sdk::Handler;
use llm_service_sdk::http::{Request, Response};

/// One route: a path and the methods it answers.
struct Route {
    path: &'static str,
    methods: &'static [&'static str],
    handle: fn(&Request) -> Response,
}

/// Every path this handler serves. A known path with another method is a 405
/// listing these methods in `Allow`.
const ROUTES: &[Route] = &[Route { path: "/health", methods: &["GET"], handle: health::get }];

struct DefaultHandler;

impl Handler for DefaultHandler {
    fn handle(request: Request) -> Response {
        route(&request)
    }
}

fn route(request: &Request) -> Response {
    let Some(route) = ROUTES.iter().find(|route| route.path == request.path()) else {
        return Response::error(404, &format!("no such endpoint: {}", request.path()));
    };
    if !route.methods.contains(&request.method()) {
        let allow = route.methods.join(", ");
        let message = format!("{} does not accept {}; allowed: {allow}", route.path, request.method());
        return Response::error(405, &message).with_header("allow", &allow);
    }
    (route.handle)(request)
}

llm_service_sdk::export_handler!(DefaultHandler);
