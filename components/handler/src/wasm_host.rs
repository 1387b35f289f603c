//! The pipeline's [`Host`] over the component's imports: the cache protocol
//! of `llm-service:host/cache` and the model backend through
//! `wasi:http/outgoing-handler`.

use llm_service_sdk::bindings::llm_service::host::cache::{self, Cached as WitCached, Failure};
use llm_service_sdk::outbound;

use crate::backend::{Backend, Completion, Ending, Generation, StreamEvent};
use crate::error::ApiError;
use crate::pipeline::host::{self, Cached, FlightEvent, Found, Host, Lookup, Pending, TextSource};

/// The host, as the pipeline reaches it.
pub struct WasmHost {
    backend: Backend,
}

impl WasmHost {
    /// Generations go to `backend`.
    pub fn new(backend: Backend) -> Self {
        Self { backend }
    }
}

impl Host for WasmHost {
    type Lead = Lead;
    type Follow = Follow;

    fn lookup(&self, key: &str, stale_s: u64) -> Lookup<Lead, Follow> {
        let found = cache::lookup(key, stale_s);
        Lookup {
            found: match found.found {
                cache::Found::Fresh(cached) => Found::Fresh(from_wit(cached)),
                cache::Found::Lead(lead) => Found::Lead(Lead(lead)),
                cache::Found::Follow(follow) => Found::Follow(Follow(follow)),
            },
            stale: found.stale.map(from_wit),
        }
    }

    fn start(&self, generation: &Generation<'_>, stream: bool) -> Result<Box<dyn Pending>, ApiError> {
        let pending = self.backend.start(generation, stream)?;
        Ok(Box::new(Sent {
            backend: self.backend.clone(),
            model: generation.model.to_string(),
            pending,
            stream,
        }))
    }
}

fn from_wit(cached: WitCached) -> Cached {
    Cached { value: cached.value, age_s: cached.age_s }
}

/// Leading a flight.
pub struct Lead(cache::Lead);

impl host::Lead for Lead {
    fn publish(&self, chunk: &[u8]) {
        self.0.publish(chunk);
    }

    fn land(self, value: &[u8], fresh_s: u64, stale_s: u64) {
        // A failed store costs a later miss; the followers have the value.
        let _ = self.0.land(value, fresh_s, stale_s);
    }

    fn followers(&self) -> u32 {
        self.0.followers()
    }

    fn crash(self, error: &ApiError) {
        let parts = error.parts();
        self.0.crash(&Failure {
            status: parts.status,
            kind: parts.kind.to_string(),
            message: parts.detail,
            subject: parts.subject,
            retry_after_s: parts.retry_after_s,
        });
    }
}

/// Following a flight.
pub struct Follow(cache::Follow);

impl host::Follow for Follow {
    fn next(&mut self) -> FlightEvent {
        match self.0.next() {
            cache::FlightEvent::Chunk(chunk) => FlightEvent::Chunk(chunk),
            cache::FlightEvent::Landed(value) => FlightEvent::Landed(value),
            cache::FlightEvent::Crashed(failure) => {
                match ApiError::from_parts(&failure.kind, failure.message, failure.subject) {
                    Some(error) => FlightEvent::Crashed(error),
                    // A kind another handler version made up: share nothing.
                    None => FlightEvent::Abandoned,
                }
            }
            cache::FlightEvent::Abandoned => FlightEvent::Abandoned,
        }
    }
}

/// A backend request sent.
struct Sent {
    backend: Backend,
    model: String,
    pending: outbound::Pending,
    stream: bool,
}

impl Pending for Sent {
    fn open(self: Box<Self>) -> Result<Box<dyn TextSource>, ApiError> {
        let Sent { backend, model, pending, stream } = *self;
        if stream {
            let response = backend.open_stream(&model, pending)?;
            return Ok(Box::new(Streamed { backend, response }));
        }
        Ok(Box::new(Whole(Some(backend.finish(&model, pending)?))))
    }
}

/// A whole answer, read as one piece.
struct Whole(Option<Completion>);

impl TextSource for Whole {
    fn next(&mut self) -> Result<StreamEvent, ApiError> {
        Ok(match &mut self.0 {
            Some(completion) if !completion.text.is_empty() => {
                StreamEvent::Text(std::mem::take(&mut completion.text))
            }
            Some(_) => {
                StreamEvent::Done(self.0.take().map(|completion| completion.ending).unwrap_or_default())
            }
            None => StreamEvent::Done(Ending::default()),
        })
    }
}

/// A streamed answer, read line by line.
struct Streamed {
    backend: Backend,
    response: outbound::Response,
}

impl TextSource for Streamed {
    fn next(&mut self) -> Result<StreamEvent, ApiError> {
        match self.response.next_line() {
            Ok(Some(line)) => self.backend.stream_event(&line),
            Ok(None) => Err(ApiError::BadGateway { message: "the stream ended before it was done".into() }),
            Err(error) => Err(self.backend.failed(error)),
        }
    }
}
