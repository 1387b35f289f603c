//! What is particular to one request, as every capability serving it sees
//! it: its id, deadline, version, route and tenant, and what its calls
//! found (the backend node, the cache's lookups, its place in the edge
//! tier). A leaf: it names the capabilities' types and nothing names it
//! back but the request's store and the capabilities' request views.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::caps::backend::ServedBy;
use crate::caps::cache::LookupTrace;
use crate::caps::edge::EdgeTicket;
use crate::routing::RoutingKey;

/// What is particular to one request, for its store.
#[derive(Debug, Clone)]
pub struct RequestScope {
    /// Its id, as logged and answered in `X-Request-Id`.
    pub request_id: Arc<str>,
    /// What keeps its conversation on one model in a model split.
    pub routing_key: RoutingKey,
    /// The tag of the handler version serving it.
    pub handler_version: Arc<str>,
    /// Its route, as the metrics label it.
    pub endpoint: &'static str,
    /// When it must be done.
    pub deadline: Instant,
    /// The whole time it was given (the backend's margin is a share of it).
    pub timeout: Duration,
    /// Which backend node answered its latest backend call.
    pub served_by: ServedBy,
    /// Its place in the edge tier (None: the tier is off).
    pub edge: Option<EdgeTicket>,
    /// What its cache lookups found fresh.
    pub trace: LookupTrace,
    /// Its handler-call span (disabled when traces are off).
    pub span: tracing::Span,
    /// Its tenant, by its client key (`None`: the default tenant).
    pub tenant: Option<crate::keys::Admitted>,
}
