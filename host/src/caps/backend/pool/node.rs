//! One model server of the pool: what the operator said about it (a
//! [`NodeSpec`]), what the background refresh learnt (its models, the ones
//! loaded), its generation slots and its circuit breaker.
//!
//! The breaker opens after [`FAILURES_TO_OPEN`] consecutive failures (of
//! requests or of refreshes); while open the node gets no request; after
//! [`OPEN_FOR`] one request (or refresh) may try it (half-open): success
//! closes it, failure opens it again. A refresh's success closes only a
//! breaker that refreshes opened: a node that lists its models but fails
//! its calls (hangs, junk) stays out until a call's trial succeeds.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::Value;

pub use crate::caps::backend::protocol::Protocol;

/// Consecutive failures that open a node's breaker.
pub const FAILURES_TO_OPEN: u32 = 3;
/// How long an open breaker keeps a node out before a trial.
pub const OPEN_FOR: Duration = Duration::from_secs(5);

/// A node as configured.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSpec {
    /// Its name in headers, logs and metrics (default: its URL's host:port).
    #[serde(default)]
    pub name: String,
    /// Its base URL (http only).
    pub url: String,
    /// Generations it runs at once (Ollama's OLLAMA_NUM_PARALLEL).
    #[serde(default = "one")]
    pub slots: u32,
    /// Its share of traffic against nodes of the same priority.
    #[serde(default = "one")]
    pub weight: u32,
    /// Lower goes first: a node is used only while no node of a lower
    /// priority that has the model has a free slot.
    #[serde(default)]
    pub priority: u32,
    /// What it speaks.
    #[serde(default = "ollama")]
    pub protocol: Protocol,
    /// The models it may serve (default: whatever it lists).
    #[serde(default)]
    pub models: Option<Vec<String>>,
}

fn one() -> u32 {
    1
}

fn ollama() -> Protocol {
    Protocol::Ollama
}

/// A breaker's state, as /health and /metrics say it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Circuit {
    /// Requests flow.
    Closed,
    /// One trial may go.
    HalfOpen,
    /// No request goes.
    Open,
}

impl Circuit {
    /// Its word.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::HalfOpen => "half-open",
            Self::Open => "open",
        }
    }
}

/// What found a node working or failing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// A call the node was sent.
    Call,
    /// The background refresh of its listing.
    Refresh,
}

#[derive(Debug, Default)]
struct Breaker {
    failures: u32,
    open_until: Option<Instant>,
    trial_out: bool,
    /// Calls failed since the last call that succeeded.
    calls_failing: bool,
}

/// What the last refresh learnt.
#[derive(Debug, Default, Clone)]
pub struct Learnt {
    /// Its models by name, each as the node described it (Ollama's
    /// /api/tags entry, or an OpenAI model object).
    pub models: BTreeMap<String, Value>,
    /// Its loaded models by name (/api/ps entries).
    pub loaded: BTreeMap<String, Value>,
    /// Whether a refresh ever succeeded.
    pub known: bool,
}

/// A node of the pool.
#[derive(Debug)]
pub struct Node {
    /// As configured (name filled in).
    pub spec: NodeSpec,
    /// Its parsed base URL.
    pub base: http::Uri,
    in_flight: AtomicU32,
    breaker: Mutex<Breaker>,
    learnt: RwLock<Learnt>,
}

impl Node {
    /// A node for `spec`, checked: an http URL with a host.
    pub fn new(mut spec: NodeSpec) -> Result<Self, String> {
        let base: http::Uri =
            spec.url.trim_end_matches('/').parse().map_err(|error| format!("{}: {error}", spec.url))?;
        if base.scheme_str() != Some("http") || base.host().is_none() {
            return Err(format!("{}: a node's url is http://host:port", spec.url));
        }
        if spec.slots == 0 || spec.weight == 0 {
            return Err(format!("{}: slots and weight are at least 1", spec.url));
        }
        if spec.name.is_empty() {
            spec.name = base.authority().map(ToString::to_string).unwrap_or_default();
        }
        Ok(Self {
            spec,
            base,
            in_flight: AtomicU32::default(),
            breaker: Mutex::default(),
            learnt: RwLock::default(),
        })
    }

    /// The URL of `path_and_query` on this node.
    pub fn url_for(&self, path_and_query: &str) -> Result<http::Uri, http::uri::InvalidUri> {
        format!("{}{path_and_query}", self.spec.url.trim_end_matches('/')).parse()
    }

    /// Generations running on it now.
    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Acquire)
    }

    /// Takes a slot if one is free.
    pub fn try_take_slot(&self) -> bool {
        self.in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |now| {
                (now < self.spec.slots).then_some(now + 1)
            })
            .is_ok()
    }

    /// Gives a slot back.
    pub fn release_slot(&self) {
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
    }

    /// Whether it may serve `model`: its allow-list permits it and, once
    /// its list is known, it lists it (Ollama's names: `mistral` is
    /// `mistral:latest`).
    pub fn offers(&self, model: &str) -> bool {
        if self
            .spec
            .models
            .as_ref()
            .is_some_and(|allowed| !allowed.iter().any(|name| same_model(name, model)))
        {
            return false;
        }
        let learnt = self.learnt.read().unwrap_or_else(|poison| poison.into_inner());
        !learnt.known || learnt.models.keys().any(|name| same_model(name, model))
    }

    /// Whether `model` is loaded on it.
    pub fn has_loaded(&self, model: &str) -> bool {
        let learnt = self.learnt.read().unwrap_or_else(|poison| poison.into_inner());
        learnt.loaded.keys().any(|name| same_model(name, model))
    }

    /// What the last refresh learnt.
    pub fn learnt(&self) -> Learnt {
        self.learnt.read().unwrap_or_else(|poison| poison.into_inner()).clone()
    }

    /// Records a refresh's findings, keeping only allowed models.
    pub fn learn(&self, mut learnt: Learnt) {
        if let Some(allowed) = &self.spec.models {
            learnt.models.retain(|name, _| allowed.contains(name));
            learnt.loaded.retain(|name, _| allowed.contains(name));
        }
        *self.learnt.write().unwrap_or_else(|poison| poison.into_inner()) = learnt;
    }

    /// The breaker's state now.
    pub fn circuit(&self) -> Circuit {
        let breaker = self.lock();
        match breaker.open_until {
            None => Circuit::Closed,
            Some(until) if Instant::now() < until => Circuit::Open,
            Some(_) => Circuit::HalfOpen,
        }
    }

    /// Whether a request may go to it now: closed, or half-open with no
    /// trial out (which this call then is).
    pub fn admits(&self) -> bool {
        let mut breaker = self.lock();
        match breaker.open_until {
            None => true,
            Some(until) if Instant::now() < until => false,
            Some(_) if breaker.trial_out => false,
            Some(_) => {
                breaker.trial_out = true;
                true
            }
        }
    }

    /// Whether it is up as far as anyone can tell (not open).
    pub fn healthy(&self) -> bool {
        self.circuit() != Circuit::Open
    }

    /// A request or refresh succeeded: the breaker closes (a refresh's
    /// only if no call failed since a call last succeeded).
    pub fn succeeded(&self, probe: Probe) {
        let mut breaker = self.lock();
        if probe == Probe::Refresh && breaker.calls_failing {
            return;
        }
        if breaker.open_until.is_some() {
            tracing::info!(cap = "backend", node = %self.spec.name, "backend node back: circuit closed");
        }
        *breaker = Breaker::default();
    }

    /// A call ended with no verdict on the node (abandoned by its caller,
    /// refused as the client's mistake, cut short by the shutdown): if it
    /// was the trial, the next call may try again; nothing else changes.
    pub fn unjudged(&self) {
        self.lock().trial_out = false;
    }

    /// A request or refresh failed: counts toward opening the breaker.
    pub fn failed(&self, probe: Probe) {
        let mut breaker = self.lock();
        breaker.failures += 1;
        breaker.calls_failing |= probe == Probe::Call;
        breaker.trial_out = false;
        let was_open = breaker.open_until.is_some();
        if breaker.failures >= FAILURES_TO_OPEN || was_open {
            breaker.open_until = Some(Instant::now() + OPEN_FOR);
            if !was_open {
                tracing::warn!(cap = "backend", node = %self.spec.name, failures = breaker.failures, "backend node failing: circuit open");
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Breaker> {
        self.breaker.lock().unwrap_or_else(|poison| poison.into_inner())
    }
}

/// Whether two model names are one model as Ollama reads them: a name
/// without a tag means its `:latest`.
pub fn same_model(a: &str, b: &str) -> bool {
    fn tagged(name: &str) -> std::borrow::Cow<'_, str> {
        let last = name.rsplit('/').next().unwrap_or(name);
        if last.contains(':') { name.into() } else { format!("{name}:latest").into() }
    }
    a == b || tagged(a) == tagged(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(models: Option<Vec<String>>) -> Node {
        let spec: NodeSpec = toml::from_str("url = \"http://127.0.0.1:1\"\nslots = 2").unwrap();
        Node::new(NodeSpec { models, ..spec }).unwrap()
    }

    #[test]
    fn slots_are_bounded_and_given_back() {
        let node = node(None);
        assert!(node.try_take_slot() && node.try_take_slot());
        assert!(!node.try_take_slot(), "two slots");
        node.release_slot();
        assert!(node.try_take_slot());
        assert_eq!(node.spec.name, "127.0.0.1:1");
    }

    #[test]
    fn the_breaker_opens_after_consecutive_failures_and_a_success_closes_it() {
        let node = node(None);
        node.failed(Probe::Refresh);
        node.failed(Probe::Refresh);
        assert_eq!(node.circuit(), Circuit::Closed);
        node.failed(Probe::Refresh);
        assert_eq!(node.circuit(), Circuit::Open);
        assert!(!node.admits());
        node.lock().open_until = Some(Instant::now());
        assert_eq!(node.circuit(), Circuit::HalfOpen);
        assert!(node.admits(), "one trial");
        assert!(!node.admits(), "only one");
        node.succeeded(Probe::Refresh);
        assert_eq!(node.circuit(), Circuit::Closed);
    }

    #[test]
    fn a_refresh_does_not_close_what_failing_calls_opened() {
        let node = node(None);
        for _ in 0..FAILURES_TO_OPEN {
            node.failed(Probe::Call);
        }
        node.succeeded(Probe::Refresh);
        assert_eq!(node.circuit(), Circuit::Open, "it lists its models, yet its calls fail");
        node.lock().open_until = Some(Instant::now());
        assert!(node.admits(), "a call's trial");
        node.succeeded(Probe::Call);
        assert_eq!(node.circuit(), Circuit::Closed);
        node.failed(Probe::Refresh);
        node.succeeded(Probe::Refresh);
        assert_eq!(node.lock().failures, 0, "refreshes alone: a refresh closes");
    }

    #[test]
    fn a_trial_that_ends_unjudged_lets_the_next_call_try() {
        let node = node(None);
        for _ in 0..FAILURES_TO_OPEN {
            node.failed(Probe::Call);
        }
        node.lock().open_until = Some(Instant::now());
        assert!(node.admits(), "the trial");
        assert!(!node.admits(), "one at a time");
        node.unjudged();
        assert!(node.admits(), "another trial once the first ended unjudged");
        assert_eq!(node.circuit(), Circuit::HalfOpen, "an unjudged call changes nothing else");
    }

    #[test]
    fn what_a_node_offers_follows_its_list_and_its_allow_list() {
        let node = node(Some(vec!["a".into(), "b".into()]));
        assert!(node.offers("a") && !node.offers("c"), "unknown list: the allow-list decides");
        let models = ["a", "c"].into_iter().map(|name| (name.to_string(), Value::Null)).collect();
        node.learn(Learnt { models, loaded: BTreeMap::new(), known: true });
        assert!(node.offers("a") && !node.offers("b") && !node.offers("c"));
        assert!(Node::new(NodeSpec { url: "https://x".into(), ..node.spec.clone() }).is_err());
    }

    #[test]
    fn a_name_without_a_tag_is_its_latest() {
        let node = node(None);
        let models =
            ["mistral:latest", "llama3:8b"].into_iter().map(|name| (name.to_string(), Value::Null)).collect();
        node.learn(Learnt { models, loaded: BTreeMap::new(), known: true });
        assert!(node.offers("mistral") && node.offers("mistral:latest") && node.offers("llama3:8b"));
        assert!(!node.offers("llama3"), "llama3 is llama3:latest, which it lacks");
        assert!(same_model("hf.co/org/model", "hf.co/org/model:latest") && !same_model("a:1b", "a:7b"));
    }
}
