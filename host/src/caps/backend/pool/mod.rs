//! Several model servers behind one backend: which node a call goes to.
//!
//! A call for model M goes, among the nodes that may serve M ([`Node::offers`]),
//! whose breaker is not open and that have a free slot:
//! 1. to the node its conversation used last (affinity by routing key), if it
//!    still qualifies, so the node's KV cache is reused;
//! 2. else by priority (lower first), then to a node that has M loaded, then
//!    to the least loaded by weight (in flight + 1) / weight, then to the
//!    fewest in flight.
//!
//! With no free slot it waits in the gateway's bounded queue
//! (MAX_QUEUED_GENERATIONS, then 503) for the first slot on any such node,
//! up to its deadline. No node offering M → 404; only nodes whose breaker
//! is open → 503. A node's slot is held until its answer has been read
//! to the end ([`NodeLease`]).

pub mod answer;
pub mod file;
pub mod listing;
pub mod node;
pub mod refresh;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use prometheus::{Histogram, HistogramOpts, IntCounterVec, IntGaugeVec, Opts, Registry};
use tokio::sync::Notify;

use self::node::{Circuit, Node, NodeSpec, Probe, Protocol};
use super::allowlist::Allowlist;
use crate::registry::{counter_vec, registered};
use crate::routing::RoutingKey;

/// Conversations whose node is remembered.
const AFFINITY_ENTRIES: u64 = 100_000;
/// A conversation idle this long may move to another node.
const AFFINITY_IDLE: Duration = Duration::from_secs(30 * 60);

/// Why no node was chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteError {
    /// No node offers the model.
    NoSuchModel(String),
    /// Every node that offers it is down (or was tried already).
    AllDown(String),
    /// The queue is full.
    QueueFull,
    /// The deadline passed in the queue.
    Deadline,
}

/// The pool's metrics, one series per node.
struct PoolMetrics {
    requests: IntCounterVec,
    failures: IntCounterVec,
    in_flight: IntGaugeVec,
    circuit: IntGaugeVec,
    queue_wait: Histogram,
}

impl PoolMetrics {
    /// Drops the series of the node `name`.
    fn forget(&self, name: &str) {
        let _ = self.requests.remove_label_values(&[name]);
        let _ = self.failures.remove_label_values(&[name]);
        let _ = self.in_flight.remove_label_values(&[name]);
        let _ = self.circuit.remove_label_values(&[name]);
    }

    fn register(registry: &Registry) -> Self {
        let gauge = |name: &str, help: &str| {
            registered(
                registry,
                IntGaugeVec::new(Opts::new(name, help), &["node"]).expect("a valid metric name"),
            )
        };
        let wait = HistogramOpts::new(
            "llm_service_backend_queue_wait_seconds",
            "Time a backend call waited for a node's slot.",
        )
        .buckets(vec![0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]);
        Self {
            requests: counter_vec(
                registry,
                "llm_service_backend_node_requests_total",
                "Calls sent to each backend node.",
                &["node"],
            ),
            failures: counter_vec(
                registry,
                "llm_service_backend_node_failures_total",
                "Calls to each backend node that failed (connection, 5xx) or its refreshes that did.",
                &["node"],
            ),
            in_flight: gauge(
                "llm_service_backend_node_in_flight",
                "Calls holding a slot of each backend node.",
            ),
            circuit: gauge(
                "llm_service_backend_node_circuit",
                "Each backend node's circuit breaker: 0 closed, 1 half-open, 2 open.",
            ),
            queue_wait: registered(registry, Histogram::with_opts(wait).expect("valid buckets")),
        }
    }
}

/// The nodes, their queue and the conversations' affinities.
pub struct Pool {
    nodes: ArcSwap<Vec<Arc<Node>>>,
    allowlist: Arc<Allowlist>,
    freed: Notify,
    queued: AtomicU32,
    max_queued: u32,
    affinity: moka::sync::Cache<RoutingKey, Arc<str>>,
    metrics: PoolMetrics,
}

/// A slot on a node, given back (and a waiter woken) when dropped.
pub struct NodeLease {
    node: Arc<Node>,
    pool: Arc<Pool>,
}

impl NodeLease {
    /// The node.
    pub fn node(&self) -> &Arc<Node> {
        &self.node
    }
}

impl Drop for NodeLease {
    fn drop(&mut self) {
        self.node.release_slot();
        if self.pool.holds(&self.node) {
            self.pool
                .metrics
                .in_flight
                .with_label_values(&[&self.node.spec.name])
                .set(i64::from(self.node.in_flight()));
        }
        self.pool.freed.notify_waiters();
    }
}

/// Counts a waiter in the queue while alive.
struct Waiting<'a>(&'a AtomicU32);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Pool {
    /// A pool of `specs` (checked), reachable through `allowlist`, with
    /// `max_queued` waiters at most; its metrics join `registry`.
    pub fn new(
        specs: Vec<NodeSpec>,
        allowlist: Arc<Allowlist>,
        max_queued: u32,
        registry: &Registry,
    ) -> Result<Arc<Self>, String> {
        let pool = Arc::new(Self {
            nodes: ArcSwap::from_pointee(Vec::new()),
            allowlist,
            freed: Notify::new(),
            queued: AtomicU32::new(0),
            max_queued,
            affinity: moka::sync::Cache::builder()
                .max_capacity(AFFINITY_ENTRIES)
                .time_to_idle(AFFINITY_IDLE)
                .build(),
            metrics: PoolMetrics::register(registry),
        });
        pool.replace(specs)?;
        Ok(pool)
    }

    /// The nodes now.
    pub fn nodes(&self) -> Arc<Vec<Arc<Node>>> {
        self.nodes.load_full()
    }

    /// Serves `specs` from now on: unchanged nodes keep their state, the
    /// allowlist follows. Refused (nothing changes) when a spec is invalid,
    /// two share a name, or there are none.
    pub fn replace(&self, specs: Vec<NodeSpec>) -> Result<(), String> {
        let old = self.nodes();
        let mut nodes: Vec<Arc<Node>> = Vec::with_capacity(specs.len());
        for spec in specs {
            let fresh = Node::new(spec)?;
            if nodes.iter().any(|node| node.spec.name == fresh.spec.name) {
                return Err(format!("two backend nodes are named {}", fresh.spec.name));
            }
            let kept = old.iter().find(|node| node.spec == fresh.spec).cloned();
            nodes.push(kept.unwrap_or_else(|| Arc::new(fresh)));
        }
        if nodes.is_empty() {
            return Err("no backend node is configured".into());
        }
        let urls: Vec<http::Uri> = nodes.iter().map(|node| node.base.clone()).collect();
        self.allowlist.replace(&urls);
        let names: Vec<&str> = nodes.iter().map(|node| node.spec.name.as_str()).collect();
        tracing::info!(cap = "backend", nodes = ?names, "backend nodes");
        // A node that is gone takes its series with it: the label set is
        // the nodes that exist.
        for gone in old.iter().filter(|node| !names.contains(&node.spec.name.as_str())) {
            self.metrics.forget(&gone.spec.name);
        }
        self.nodes.store(Arc::new(nodes));
        // Waiters may now fit on a new node.
        self.freed.notify_waiters();
        Ok(())
    }

    /// A slot for a call about `model` (none: any node) in `protocol` (none:
    /// either), for the request with `key`, on a node not in `tried`;
    /// waits in the queue up to `deadline` when every such node is busy.
    pub async fn route(
        self: &Arc<Self>,
        model: Option<&str>,
        protocol: Option<Protocol>,
        key: RoutingKey,
        tried: &[Arc<Node>],
        deadline: Instant,
    ) -> Result<NodeLease, RouteError> {
        let started = Instant::now();
        let mut waiting = None;
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            if let Some(lease) = self.pick(model, protocol, key, tried)? {
                self.metrics.queue_wait.observe(started.elapsed().as_secs_f64());
                return Ok(lease);
            }
            if waiting.is_none() {
                if self.queued.fetch_add(1, Ordering::AcqRel) >= self.max_queued {
                    self.queued.fetch_sub(1, Ordering::AcqRel);
                    return Err(RouteError::QueueFull);
                }
                waiting = Some(Waiting(&self.queued));
            }
            if tokio::time::timeout_at(deadline.into(), freed).await.is_err() {
                return Err(RouteError::Deadline);
            }
        }
    }

    /// A free slot on the best qualifying node, `None` if all are busy.
    fn pick(
        self: &Arc<Self>,
        model: Option<&str>,
        protocol: Option<Protocol>,
        key: RoutingKey,
        tried: &[Arc<Node>],
    ) -> Result<Option<NodeLease>, RouteError> {
        let nodes = self.nodes();
        let named = || model.unwrap_or("any").to_string();
        let offering: Vec<&Arc<Node>> = offering(&nodes, model, protocol).collect();
        if offering.is_empty() {
            return Err(RouteError::NoSuchModel(named()));
        }
        let mut usable: Vec<&Arc<Node>> = offering.into_iter().filter(|node| usable(node, tried)).collect();
        if usable.is_empty() {
            return Err(RouteError::AllDown(named()));
        }
        let sticky = self.affinity.get(&key);
        usable.sort_by(|a, b| {
            let first = |node: &Node| sticky.as_deref() != Some(node.spec.name.as_str());
            let cold = |node: &Node| !model.is_some_and(|model| node.has_loaded(model));
            let load = |node: &Node| f64::from(node.in_flight() + 1) / f64::from(node.spec.weight);
            (first(a), a.spec.priority, cold(a))
                .cmp(&(first(b), b.spec.priority, cold(b)))
                .then(load(a).total_cmp(&load(b)))
                .then(a.in_flight().cmp(&b.in_flight()))
        });
        for node in usable {
            if !node.try_take_slot() {
                continue;
            }
            if !node.admits() {
                node.release_slot();
                continue;
            }
            let name = node.spec.name.as_str();
            self.metrics.requests.with_label_values(&[name]).inc();
            self.metrics.in_flight.with_label_values(&[name]).set(i64::from(node.in_flight()));
            if sticky.as_deref() != Some(name) {
                self.affinity.insert(key, Arc::from(name));
            }
            return Ok(Some(NodeLease { node: node.clone(), pool: self.clone() }));
        }
        Ok(None)
    }

    /// Whether a node not in `tried` could take a call about `model` in
    /// `protocol` now or once it has a free slot.
    pub fn has_spare(&self, model: Option<&str>, protocol: Option<Protocol>, tried: &[Arc<Node>]) -> bool {
        offering(&self.nodes(), model, protocol).any(|node| usable(node, tried))
    }

    /// A call to `node` failed (connection, 5xx, a bad answer) or its
    /// refresh did.
    pub fn failed(&self, node: &Node, probe: Probe) {
        node.failed(probe);
        if self.holds(node) {
            self.metrics.failures.with_label_values(&[&node.spec.name]).inc();
        }
        self.show_circuit(node);
    }

    /// Whether `node` is one of the pool's now (a call or a refresh can
    /// outlive its node's removal, and must not bring its series back).
    fn holds(&self, node: &Node) -> bool {
        self.nodes().iter().any(|held| std::ptr::eq(held.as_ref(), node))
    }

    /// A call to `node`, or its refresh, succeeded.
    pub fn succeeded(&self, node: &Node, probe: Probe) {
        node.succeeded(probe);
        self.show_circuit(node);
    }

    fn show_circuit(&self, node: &Node) {
        let state = match node.circuit() {
            Circuit::Closed => 0,
            Circuit::HalfOpen => 1,
            Circuit::Open => 2,
        };
        if self.holds(node) {
            self.metrics.circuit.with_label_values(&[&node.spec.name]).set(state);
        }
    }

    /// Calls waiting for a slot now.
    pub fn queued(&self) -> u32 {
        self.queued.load(Ordering::Acquire)
    }
}

/// The nodes of `nodes` that may serve `model` (none: any) in `protocol`
/// (none: either).
fn offering<'a>(
    nodes: &'a [Arc<Node>],
    model: Option<&'a str>,
    protocol: Option<Protocol>,
) -> impl Iterator<Item = &'a Arc<Node>> {
    nodes
        .iter()
        .filter(move |node| protocol.is_none_or(|protocol| node.spec.protocol == protocol))
        .filter(move |node| model.is_none_or(|model| node.offers(model)))
}

/// Whether `node` may be tried: not open, and not tried already.
fn usable(node: &Arc<Node>, tried: &[Arc<Node>]) -> bool {
    node.healthy() && !tried.iter().any(|done| Arc::ptr_eq(done, node))
}

#[cfg(test)]
mod tests;
