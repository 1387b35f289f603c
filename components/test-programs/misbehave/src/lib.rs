//! A handler that misbehaves on request, so tests can check that the host
//! contains it: `/loop` never returns, `/trap` panics, `/grow` allocates past
//! any sane memory limit, `/sleep?ms=N` answers after N milliseconds,
//! `/fetch?url=U` tries outbound HTTP to U and reports what happened,
//! `/count` answers how many requests this instance has served (instance
//! reuse shows), `/print` writes to stdout, and anything else answers 200
//! with the path.

use std::sync::atomic::{AtomicU64, Ordering};

use llm_service_sdk::Handler;
use llm_service_sdk::http::{Reply, Request, Response};
use llm_service_sdk::outbound;

struct Misbehave;

impl Handler for Misbehave {
    fn handle(request: Request) -> Reply {
        respond(&request).into()
    }
}

/// Requests this instance has served.
static SERVED: AtomicU64 = AtomicU64::new(0);

fn respond(request: &Request) -> Response {
    let served = SERVED.fetch_add(1, Ordering::Relaxed) + 1;
    match request.path() {
        "/count" => Response::text(200, &served.to_string()),
        "/print" => {
            println!("misbehave: printing on purpose");
            Response::text(200, "printed")
        }
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
