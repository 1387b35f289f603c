//! A loaded handler component and the life of one request through it.
//!
//! [`HandlerComponent::load`] compiles a component once, checks that it
//! exports `wasi:http/incoming-handler` and pre-instantiates it.
//! [`HandlerComponent::serve`] runs one request in an instance (fresh, or
//! kept from the same connection's previous request: [`super::reuse`] says
//! what that shares) under a deadline: a
//! computing guest yields its worker every epoch tick and is interrupted at
//! the deadline; a guest stuck in a host call is dropped by a wall-clock
//! timeout. Every failure is a value of [`InvokeError`] for that request only.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use tokio::sync::oneshot;
use tracing::Instrument;
use wasmtime::component::Linker;
use wasmtime::{CallHook, Engine, Store};
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::bindings::http::types::{ErrorCode, Scheme};
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

use super::reuse::InstanceSlot;
use super::state::RequestState;
use crate::caps;
use crate::caps::HostCapabilities;
use crate::guest::call::{self, GuestFailure};
use crate::guest::compiled::{Compilation, CompiledCache, sha256_hex};
use crate::scope::RequestScope;

/// The default handler, built from `components/handler` by the build script.
pub const BUILTIN_HANDLER: &[u8] = include_bytes!(env!("LLM_SERVICE_HANDLER_WASM"));
/// Where [`BUILTIN_HANDLER`] was built.
pub const BUILTIN_HANDLER_PATH: &str = env!("LLM_SERVICE_HANDLER_WASM");

/// Why a component could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// Not a valid component, or wasmtime could not compile it.
    #[error("{source_name} does not compile: {reason}")]
    Compile {
        /// Where the bytes came from.
        source_name: String,
        /// wasmtime's explanation.
        reason: String,
    },
    /// Compiles, but does not fit the `handler` world.
    #[error("{source_name} is not a handler component: {reason}")]
    NotAHandler {
        /// Where the bytes came from.
        source_name: String,
        /// What is missing or mistyped.
        reason: String,
    },
}

/// Why one request got no response from the component.
#[derive(Debug, thiserror::Error)]
pub enum InvokeError {
    /// The component ran past the request deadline and was interrupted.
    #[error("the handler did not answer within {after:?}")]
    Timeout {
        /// The deadline.
        after: Duration,
    },
    /// The component trapped (a panic, an out-of-memory abort, a host bug).
    #[error("the handler failed: {reason}")]
    Trap {
        /// wasmtime's description of the trap.
        reason: String,
        /// What the guest wrote to stdout/stderr (its panic message, say).
        guest_output: String,
    },
    /// No instance could be created (the pool is exhausted).
    #[error("no component instance available: {reason}")]
    Instantiate {
        /// wasmtime's explanation.
        reason: String,
    },
    /// The component answered with a `wasi:http` error code instead of a response.
    #[error("the handler answered with an error: {code:?}")]
    ErrorCode {
        /// The code it gave.
        code: ErrorCode,
    },
    /// The component returned without calling `response-outparam.set`.
    #[error("the handler returned without a response")]
    NoResponse,
    /// The request could not be handed to the component.
    #[error("malformed request: {reason}")]
    BadRequest {
        /// What is wrong with it.
        reason: String,
    },
}

impl InvokeError {
    /// The HTTP status a client gets for this failure.
    pub fn status(&self) -> http::StatusCode {
        use http::StatusCode;
        match self {
            Self::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            Self::Instantiate { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::BadRequest { .. } => StatusCode::BAD_REQUEST,
            Self::Trap { .. } | Self::ErrorCode { .. } | Self::NoResponse => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }
}

/// The linker every handler is instantiated with: WASI p2, `wasi:http` and
/// the service's own capabilities.
pub fn handler_linker(engine: &Engine) -> wasmtime::Result<Linker<RequestState>> {
    let mut linker = Linker::<RequestState>::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
    caps::telemetry::add_to_linker(&mut linker, |state| &mut state.telemetry)?;
    caps::cache::add_to_linker(&mut linker, RequestState::cache_view)?;
    caps::plugins::add_to_linker(&mut linker, RequestState::plugins_view)?;
    caps::edge::add_to_linker(&mut linker, RequestState::edge_view)?;
    Ok(linker)
}

/// What the caller knows of a request before a handler serves it.
#[derive(Debug, Clone)]
pub struct Ticket {
    /// Its id.
    pub request_id: Arc<str>,
    /// Its routing key (canary and model split).
    pub routing_key: crate::routing::RoutingKey,
    /// How long it may take.
    pub timeout: Duration,
    /// Where the backend node that answered it is recorded.
    pub served_by: crate::caps::backend::ServedBy,
    /// Its place in the edge tier (None: the tier is off).
    pub edge: Option<crate::caps::edge::EdgeTicket>,
    /// Where its cache lookups record what they found fresh.
    pub trace: crate::caps::cache::LookupTrace,
    /// Its handler-call span (disabled when traces are off).
    pub span: tracing::Span,
    /// Its tenant, by its client key (`None`: the default tenant).
    pub tenant: Option<crate::keys::Admitted>,
}

/// A compiled, pre-instantiated handler.
pub struct HandlerComponent {
    pre: ProxyPre<RequestState>,
    sha256: Arc<str>,
    /// The first 12 hex digits of `sha256`, made once: every request's log
    /// line and `X-Handler-Version` carry it.
    tag: Arc<str>,
    source_name: String,
    compilation: Compilation,
}

impl HandlerComponent {
    /// Compiles `bytes` (from `source_name`, for messages) and checks that
    /// they are a handler.
    pub fn load(
        linker: &Linker<RequestState>,
        compiled: &CompiledCache,
        bytes: &[u8],
        source_name: &str,
    ) -> Result<Self, LoadError> {
        let sha256 = sha256_hex(bytes);
        let (component, compilation) =
            compiled.component(linker.engine(), bytes, &sha256).map_err(|error| LoadError::Compile {
                source_name: source_name.to_string(),
                reason: format!("{error:#}"),
            })?;
        let not_a_handler = |error: wasmtime::Error| LoadError::NotAHandler {
            source_name: source_name.to_string(),
            reason: format!("{error:#}"),
        };
        let instance_pre = linker.instantiate_pre(&component).map_err(not_a_handler)?;
        let pre = ProxyPre::new(instance_pre).map_err(not_a_handler)?;
        let tag = Arc::from(&sha256[..12]);
        Ok(Self { pre, sha256: Arc::from(sha256), tag, source_name: source_name.to_string(), compilation })
    }

    /// SHA-256 of the component's bytes, hex.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// The short form of the sha256 used in `X-Handler-Version` and logs.
    pub fn tag(&self) -> &str {
        &self.tag
    }

    /// [`Self::tag`], shared.
    pub fn shared_tag(&self) -> Arc<str> {
        self.tag.clone()
    }

    /// Where the component came from.
    pub fn source_name(&self) -> &str {
        &self.source_name
    }

    /// Whether it was compiled now (and how long that took) or read from
    /// the compiled cache.
    pub fn compilation(&self) -> Compilation {
        self.compilation
    }

    /// Runs `request` in the instance `slot` kept from its connection's
    /// previous request, or a fresh one, and offers the instance back to
    /// `slot` if it answered cleanly (see [`super::reuse`]). `guard` is held
    /// until the instance is done (after the response body is complete), so
    /// admission counts working instances, not just requests waiting for
    /// headers.
    pub async fn serve(
        &self,
        request: hyper::Request<Full<Bytes>>,
        capabilities: &HostCapabilities,
        ticket: Ticket,
        guard: impl Send + 'static,
        slot: &InstanceSlot,
    ) -> Result<hyper::Response<HyperOutgoingBody>, InvokeError> {
        let timeout = ticket.timeout;
        let deadline = Instant::now() + timeout;
        let scope = RequestScope {
            request_id: ticket.request_id,
            routing_key: ticket.routing_key,
            handler_version: self.tag.clone(),
            endpoint: crate::caps::telemetry::metrics::endpoint_label(request.uri().path()),
            deadline,
            timeout,
            served_by: ticket.served_by,
            edge: ticket.edge,
            trace: ticket.trace,
            span: ticket.span.clone(),
            tenant: ticket.tenant,
        };
        let (lease, kept) = slot.claim(&self.sha256).await;
        let (mut store, kept, uses) = match kept {
            Some((mut store, proxy, uses)) => {
                store.data_mut().renew(capabilities, scope);
                (store, Some(proxy), uses)
            }
            None => {
                let state = RequestState::new(capabilities, scope);
                let mut store = Store::new(self.pre.engine(), state);
                if capabilities.count_host_calls {
                    store.call_hook(|mut store, hook| {
                        if matches!(hook, CallHook::CallingHost) {
                            store.data_mut().host_calls += 1;
                        }
                        Ok(())
                    });
                }
                (store, None, 0)
            }
        };
        call::arm_deadline(&mut store, deadline);

        let (sender, receiver) = oneshot::channel();
        let responded = Arc::new(AtomicBool::new(false));
        let incoming = store
            .data_mut()
            .http()
            .new_incoming_request(Scheme::Http, request)
            .map_err(|error| InvokeError::BadRequest { reason: format!("{error:#}") })?;
        let outparam = store
            .data_mut()
            .http()
            .new_response_outparam_from_callback({
                let responded = responded.clone();
                move |response| {
                    responded.store(true, Ordering::Release);
                    let _ = sender.send(response);
                }
            })
            .map_err(|error| InvokeError::BadRequest { reason: format!("{error:#}") })?;

        let (pre, sha256) = (self.pre.clone(), self.sha256.clone());
        // Until the response is handed over, a client that goes away (hyper
        // drops this future) takes the instance, and its backend call, along.
        let mut task = AbortOnDrop(Some(tokio::spawn(async move {
            let _guard = guard;
            let proxy = match kept {
                Some(proxy) => proxy,
                None => pre
                    .instantiate_async(&mut store)
                    .await
                    .map_err(|error| InvokeError::Instantiate { reason: format!("{error:#}") })?,
            };
            let result = proxy.wasi_http_incoming_handler().call_handle(&mut store, incoming, outparam).await;
            if store.data().host_calls > 0 {
                tracing::debug!(target: "llm_service::host_calls", host_calls = store.data().host_calls, "handler call finished");
            }
            match result {
                Ok(()) => {
                    // A kept instance must not hold this request's span open.
                    store.data_mut().telemetry.end_span();
                    lease.keep(sha256, store, proxy, uses + 1);
                    Ok(())
                }
                Err(error) => {
                    let error = classify_trap(&error, timeout, store.data().guest_output());
                    if responded.load(Ordering::Acquire) {
                        // The client already has its status line; the body ends early.
                        tracing::warn!(cap = "handler", %sha256, %error, "handler failed while streaming its response");
                    }
                    Err(error)
                }
            }
        }.instrument(ticket.span))));

        // The epoch deadline normally fires first; this catches a guest
        // parked in a host call, where epochs are not checked.
        match call::within(deadline, receiver).await.ok_or(()) {
            Ok(Ok(Ok(response))) => {
                task.detach();
                Ok(response)
            }
            Ok(Ok(Err(code))) => Err(InvokeError::ErrorCode { code }),
            Ok(Err(_dropped)) => match task.join().await {
                Ok(Ok(())) => Err(InvokeError::NoResponse),
                Ok(Err(error)) => Err(error),
                Err(join_error) => Err(InvokeError::Trap {
                    reason: format!("host task failed: {join_error}"),
                    guest_output: String::new(),
                }),
            },
            Err(()) => Err(InvokeError::Timeout { after: timeout }),
        }
    }
}

fn classify_trap(error: &wasmtime::Error, timeout: Duration, guest_output: String) -> InvokeError {
    match call::classify(error) {
        GuestFailure::Timeout => InvokeError::Timeout { after: timeout },
        GuestFailure::Trap(reason) => InvokeError::Trap { reason, guest_output },
    }
}

/// A task aborted when dropped, unless detached first.
struct AbortOnDrop<T>(Option<tokio::task::JoinHandle<T>>);

impl<T> AbortOnDrop<T> {
    /// Lets the task run to its end on its own.
    fn detach(&mut self) {
        self.0 = None;
    }

    /// Waits for the task.
    async fn join(mut self) -> Result<T, tokio::task::JoinError> {
        self.0.take().expect("joined once").await
    }
}

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        if let Some(task) = self.0.take() {
            task.abort();
        }
    }
}
