//! A handler that misbehaves on request, so tests can check that the host
//! contains it: `/loop` never returns, `/trap` panics, `/grow` allocates past
//! any sane memory limit, `/sleep?ms=N` answers after N milliseconds,
//! `/fetch?url=U` tries outbound HTTP to U and reports what happened, and
//! anything else answers 200 with the path.

use llm_service_sdk::Handler;
use llm_service_sdk::http::{Reply, Request, Response};
use llm_service_sdk::outbound;

struct Misbehave;

impl Handler for Misbehave {
    fn handle(request: Request) -> Reply {
        respond(&request).into()
    }
}

fn respond(request: &Request) -> Response {
    match request.path() {
        "/loop" => spin_forever(),
        "/trap" => panic!("misbehave: trapping on purpose"),
        "/grow" => {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                hoard.push(vec![1u8; 8 << 20]);
                std::hint::black_box(&hoard);
            }
        }
        "/sleep" => {
            let ms = request.query_param("ms").and_then(|ms| ms.parse().ok()).unwrap_or(0);
            std::thread::sleep(std::time::Duration::from_millis(ms));
            Response::text(200, &format!("slept {ms} ms"))
        }
        "/fetch" => {
            let url = request.query_param("url").unwrap_or_default();
            match outbound::send("GET", url, None) {
                Ok(response) => Response::text(200, &format!("fetched: status {}", response.status())),
                Err(error) => Response::text(200, &format!("refused: {error:?}")),
            }
        }
        path => Response::text(200, path),
    }
}

fn spin_forever() -> ! {
    let mut counter = 0u64;
    loop {
        counter = std::hint::black_box(counter.wrapping_add(1));
    }
}

llm_service_sdk::export_handler!(Misbehave);
