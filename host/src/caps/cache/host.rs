//! The generated `cache` traits, answered by [`ResponseCache`]; flights are
//! resources in the request's table.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use wasmtime::component::{HasData, Linker, Resource, ResourceTable};

use super::flight::{self, FlightLease, Join, Outcome};
use super::{CacheError, CacheStatus, ResponseCache};
use crate::bindings::llm_service::host::cache::CacheStatus as Status;
use crate::bindings::llm_service::host::cache::{self, Entry, Error, Host, HostFlight, JoinResult};

/// What a request's store lends the cache functions.
pub struct CacheView<'a> {
    /// The shared cache.
    pub cache: &'a Arc<ResponseCache>,
    /// The request's resource table (flights live there).
    pub table: &'a mut ResourceTable,
}

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
        let found = self.cache.get(&key).await?;
        Ok(found.map(|(value, ttl)| Entry { value: value.to_vec(), ttl_left_s: ttl.as_secs() }))
    }

    async fn set(&mut self, key: String, value: Vec<u8>, ttl_s: u64) -> Result<(), Error> {
        Ok(self.cache.set(&key, Bytes::from(value), Duration::from_secs(ttl_s)).await?)
    }

    async fn delete(&mut self, key: String) -> Result<bool, Error> {
        Ok(self.cache.delete(&key).await?)
    }

    async fn clear(&mut self, prefix: String, containing: Option<String>) -> Result<u64, Error> {
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
        match self.cache.flights().join(&key) {
            Join::Lead(lease) => Ok(JoinResult::Lead(self.table.push(Flight(Some(lease)))?)),
            Join::Follow(watch) => {
                let outcome = flight::follow(watch, Duration::from_millis(u64::from(wait_ms))).await;
                Ok(JoinResult::Followed(match outcome {
                    Outcome::Landed(value) => cache::Outcome::Landed(value.to_vec()),
                    Outcome::Crashed(error) => cache::Outcome::Crashed(error.to_vec()),
                    Outcome::Abandoned => cache::Outcome::Abandoned,
                }))
            }
        }
    }
}

/// A `flight` resource: the lease until it is landed or crashed.
pub struct Flight(Option<FlightLease>);

impl Flight {
    fn finish(&mut self, outcome: Outcome) {
        // A second land or crash finds the lease gone and does nothing.
        if let Some(lease) = self.0.take() {
            lease.finish(outcome);
        }
    }
}

impl HostFlight for CacheView<'_> {
    fn land(&mut self, flight: Resource<Flight>, value: Vec<u8>) -> wasmtime::Result<()> {
        self.table.get_mut(&flight)?.finish(Outcome::Landed(Bytes::from(value)));
        Ok(())
    }

    fn crash(&mut self, flight: Resource<Flight>, error: Vec<u8>) -> wasmtime::Result<()> {
        self.table.get_mut(&flight)?.finish(Outcome::Crashed(Bytes::from(error)));
        Ok(())
    }

    fn drop(&mut self, flight: Resource<Flight>) -> wasmtime::Result<()> {
        // Dropping an unfinished lease abandons the flight.
        self.table.delete(flight)?;
        Ok(())
    }
}
