//! A handler that traps on every request, /health included: an upload the
//! admin API must refuse at its smoke check.

use llm_service_sdk::Handler;
use llm_service_sdk::http::{Reply, Request};

struct Sick;

impl Handler for Sick {
    fn handle(request: Request) -> Reply {
        panic!("sick: {} always traps", request.path())
    }
}

llm_service_sdk::export_handler!(Sick);
