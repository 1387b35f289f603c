//! The generated `cache` traits, answered by [`ResponseCache`]; flights
//! (led or followed) are resources in the request's table.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use wasmtime::component::{HasData, Linker, Resource, ResourceTable};

use super::flight::{Crash, End, Event, FlightLease, Follower, Join};
use super::stamped::{Stamped, now_ms};
use super::{CacheError, CacheStatus, Found, FreshFound, LookupTrace, ResponseCache};
use crate::bindings::llm_service::host::cache::CacheStatus as Status;
use crate::bindings::llm_service::host::cache::{
    self, Cached, Entry, Error, Failure, FlightEvent, Host, HostFlight, HostFollow, HostLead, JoinResult,
    LookupResult,
};
use crate::traces::spans;
use tracing::Instrument;

/// What a request's store lends the cache functions.
pub struct CacheView<'a> {
    /// The shared cache.
    pub cache: &'a Arc<ResponseCache>,
    /// The request's resource table (flights live there).
    pub table: &'a mut ResourceTable,
    /// The request's deadline: no wait outlasts it.
    pub deadline: Instant,
    /// Where the request's fresh finds are recorded.
    pub trace: &'a LookupTrace,
    /// The request's generation span, when traced.
    pub span: Option<&'a tracing::Span>,
    /// The tenant's cache namespace (`None`: the default one).
    pub namespace: Option<&'a str>,
}

impl CacheView<'_> {
    /// `key` in the request's namespace: a tenant's keys are its own.
    fn key(&self, key: String) -> String {
        match self.namespace {
            Some(namespace) => format!("{TENANT_PREFIX}{namespace}:{key}"),
            None => key,
        }
    }

    /// Records `value` under `field` on `span` and on the generation span.
    fn mark(&self, span: &tracing::Span, field: &'static str, value: &'static str) {
        span.record(field, value);
        if let Some(generation) = self.span {
            generation.record(field, value);
        }
    }

    /// Records how this request took part in a flight.
    fn mark_follower(&self, span: &tracing::Span, follower: &Follower) {
        if span.is_disabled() {
            return;
        }
        self.mark(span, ROLE, if follower.relayed() { "fleet_relay" } else { "follower" });
        if let Some(leader) = follower.leader() {
            leader.link(span);
        }
    }
}

/// What a tenant's cache keys start with (then its namespace and `:`);
/// tenant names cannot hold `:`, so no namespace is a prefix of another.
const TENANT_PREFIX: &str = "tenant:";

/// The span field naming a request's part in a flight.
const ROLE: &str = "llm_service.flight.role";

struct CacheData;

impl HasData for CacheData {
    type Data<'a> = CacheView<'a>;
}

/// Adds the interface to `linker`; `get` lends a store's view.
pub fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    get: fn(&mut T) -> CacheView<'_>,
) -> wasmtime::Result<()> {
    cache::add_to_linker::<T, CacheData>(linker, get)
}

/// A failure's `error.type` in a trace.
fn error_type(error: &CacheError) -> &'static str {
    match error {
        CacheError::Unavailable { .. } => "unavailable",
        CacheError::TooLarge { .. } => "too_large",
        CacheError::InvalidKey { .. } => "invalid_key",
    }
}

impl From<CacheError> for Error {
    fn from(error: CacheError) -> Self {
        match error {
            CacheError::Unavailable { reason } => Error::Unavailable(reason),
            CacheError::TooLarge { bytes, .. } => Error::TooLarge(bytes),
            CacheError::InvalidKey { reason } => Error::InvalidKey(reason.to_string()),
        }
    }
}

impl Host for CacheView<'_> {
    async fn get(&mut self, key: String) -> Result<Option<Entry>, Error> {
        let key = self.key(key);
        let found = self.cache.get(&key).await?;
        Ok(found.map(|(value, ttl)| Entry { value: value.to_vec(), ttl_left_s: ttl.as_secs() }))
    }

    async fn set(&mut self, key: String, value: Vec<u8>, ttl_s: u64) -> Result<(), Error> {
        let key = self.key(key);
        Ok(self.cache.set(&key, Bytes::from(value), Duration::from_secs(ttl_s)).await?)
    }

    async fn delete(&mut self, key: String) -> Result<bool, Error> {
        let key = self.key(key);
        Ok(self.cache.delete(&key).await?)
    }

    async fn clear(&mut self, prefix: String, containing: Option<String>) -> Result<u64, Error> {
        // A tenant clears its own namespace.
        let prefix = self.key(prefix);
        Ok(self.cache.clear(&prefix, containing.as_deref()).await?)
    }

    fn status(&mut self) -> Status {
        match self.cache.status() {
            CacheStatus::InProcess => Status::InProcess,
            CacheStatus::Connected => Status::Connected,
            CacheStatus::Disconnected => Status::Disconnected,
        }
    }

    async fn join(&mut self, key: String, wait_ms: u32) -> wasmtime::Result<JoinResult> {
        let key = self.key(key);
        let span = spans::cache_lookup();
        match span.in_scope(|| self.cache.flights().join(&key)) {
            Join::Lead(lease) => {
                self.mark(&span, ROLE, "leader");
                Ok(JoinResult::Lead(self.table.push(Flight(Some(lease)))?))
            }
            Join::Follow(mut follower) => {
                self.mark_follower(&span, &follower);
                let waited = Instant::now() + Duration::from_millis(u64::from(wait_ms));
                // A typed failure means nothing to a handler of the first
                // protocol: it tries again, as after an abandoned flight.
                Ok(JoinResult::Followed(match follower.end(waited.min(self.deadline)).await {
                    End::Landed(value) => cache::Outcome::Landed(value.to_vec()),
                    End::Crashed(Crash::Encoded(error)) => cache::Outcome::Crashed(error.to_vec()),
                    End::Crashed(Crash::Typed(_)) | End::Abandoned => cache::Outcome::Abandoned,
                }))
            }
        }
    }

    async fn lookup(&mut self, key: String, stale_s: u64) -> wasmtime::Result<LookupResult> {
        let key = self.key(key);
        let span = spans::cache_lookup();
        let lookup = self.cache.lookup(&key, Duration::from_secs(stale_s)).instrument(span.clone()).await;
        let now = now_ms();
        let cached = |stamped: Stamped| Cached { age_s: stamped.age_s(now), value: stamped.value.to_vec() };
        let found = match lookup.found {
            Found::Fresh(stamped, tier) => {
                self.trace.record(FreshFound { tier, fresh_until_ms: stamped.fresh_until_ms });
                self.mark(&span, "llm_service.cache.tier", tier.label());
                cache::Found::Fresh(cached(stamped))
            }
            Found::Lead(lease) => {
                self.mark(&span, ROLE, if lease.is_mirrored() { "fleet_leader" } else { "leader" });
                cache::Found::Lead(self.table.push(Lead { lease: Some(lease), key })?)
            }
            Found::Follow(follower) => {
                self.mark_follower(&span, &follower);
                cache::Found::Follow(self.table.push(Follow(follower))?)
            }
        };
        Ok(LookupResult { found, stale: lookup.stale.map(cached) })
    }
}

/// A `lead` resource: the lease of a flight this request computes.
pub struct Lead {
    lease: Option<FlightLease>,
    key: String,
}

impl HostLead for CacheView<'_> {
    fn publish(&mut self, lead: Resource<Lead>, chunk: Vec<u8>) -> wasmtime::Result<()> {
        if let Some(lease) = &self.table.get(&lead)?.lease {
            lease.publish(Bytes::from(chunk));
        }
        Ok(())
    }

    async fn land(
        &mut self,
        lead: Resource<Lead>,
        value: Vec<u8>,
        fresh_s: u64,
        stale_s: u64,
    ) -> wasmtime::Result<Result<(), Error>> {
        let lead = self.table.get_mut(&lead)?;
        // A second land or crash finds the lease gone and does nothing.
        let Some(lease) = lead.lease.take() else { return Ok(Ok(())) };
        let (fresh, stale) = (Duration::from_secs(fresh_s), Duration::from_secs(stale_s));
        let key = lead.key.clone();
        let span = spans::cache_land();
        let landed =
            self.cache.land(lease, &key, Bytes::from(value), fresh, stale).instrument(span.clone()).await;
        if let Err(error) = &landed {
            span.record("error.type", error_type(error));
        }
        Ok(landed.map_err(Error::from))
    }

    fn crash(&mut self, lead: Resource<Lead>, failure: Failure) -> wasmtime::Result<()> {
        if let Some(lease) = self.table.get_mut(&lead)?.lease.take() {
            lease.finish(End::Crashed(Crash::Typed(failure)));
        }
        Ok(())
    }

    fn followers(&mut self, lead: Resource<Lead>) -> wasmtime::Result<u32> {
        Ok(self.table.get(&lead)?.lease.as_ref().map_or(0, FlightLease::followers))
    }

    fn drop(&mut self, lead: Resource<Lead>) -> wasmtime::Result<()> {
        // Dropping an unfinished lease abandons the flight.
        self.table.delete(lead)?;
        Ok(())
    }
}

/// A `follow` resource: waiting on another request's flight.
pub struct Follow(Follower);

impl HostFollow for CacheView<'_> {
    async fn next(&mut self, follow: Resource<Follow>) -> wasmtime::Result<FlightEvent> {
        let deadline = self.deadline;
        let event = self.table.get_mut(&follow)?.0.next(deadline).await;
        Ok(match event {
            Event::Chunk(chunk) => FlightEvent::Chunk(chunk.to_vec()),
            Event::End(End::Landed(value)) => FlightEvent::Landed(value.to_vec()),
            Event::End(End::Crashed(Crash::Typed(failure))) => FlightEvent::Crashed(failure),
            // An opaque failure from a handler of the first protocol: try again.
            Event::End(End::Crashed(Crash::Encoded(_)) | End::Abandoned) => FlightEvent::Abandoned,
        })
    }

    fn drop(&mut self, follow: Resource<Follow>) -> wasmtime::Result<()> {
        self.table.delete(follow)?;
        Ok(())
    }
}

/// A `flight` resource: the lease until it is landed or crashed.
pub struct Flight(Option<FlightLease>);

impl Flight {
    fn finish(&mut self, end: End) {
        // A second land or crash finds the lease gone and does nothing.
        if let Some(lease) = self.0.take() {
            lease.finish(end);
        }
    }
}

impl HostFlight for CacheView<'_> {
    fn land(&mut self, flight: Resource<Flight>, value: Vec<u8>) -> wasmtime::Result<()> {
        self.table.get_mut(&flight)?.finish(End::Landed(Bytes::from(value)));
        Ok(())
    }

    fn crash(&mut self, flight: Resource<Flight>, error: Vec<u8>) -> wasmtime::Result<()> {
        self.table.get_mut(&flight)?.finish(End::Crashed(Crash::Encoded(Bytes::from(error))));
        Ok(())
    }

    fn drop(&mut self, flight: Resource<Flight>) -> wasmtime::Result<()> {
        // Dropping an unfinished lease abandons the flight.
        self.table.delete(flight)?;
        Ok(())
    }
}
