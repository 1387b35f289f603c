//! A handler that looks healthy (`GET /health` answers 200, so it passes
//! the admin API's smoke check) but fails every `POST /generate` with 500:
//! the bad release a canary's automatic rollback must catch.

use llm_service_sdk::Handler;
use llm_service_sdk::http::{Reply, Request, Response};

struct FailingGenerate;

impl Handler for FailingGenerate {
    fn handle(request: Request) -> Reply {
        match request.path() {
            "/generate" => {
                Response::json(500, &serde_json::json!({"error": "failing-generate: broken on purpose"}))
            }
            _ => Response::json(200, &serde_json::json!({"status": "healthy"})),
        }
        .into()
    }
}

llm_service_sdk::export_handler!(FailingGenerate);
