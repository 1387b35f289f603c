//! An OTLP/HTTP trace receiver on 127.0.0.1: it decodes what it is posted
//! on `/v1/traces` as the real protobuf wire format (opentelemetry-proto's
//! `ExportTraceServiceRequest`) and keeps every span, flattened, for tests
//! to wait on. A body that does not decode is answered 400 and counted.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use prost::Message;
use serde_json::Value;

/// One received span.
#[derive(Debug, Clone)]
pub struct ReceivedSpan {
    /// Its name (`llm_service.server.request`, ...).
    pub name: String,
    /// Trace id, hex.
    pub trace_id: String,
    /// Span id, hex.
    pub span_id: String,
    /// Parent's span id, hex (empty for a root).
    pub parent_span_id: String,
    /// OTLP's span kind (1 internal, 2 server, 3 client).
    pub kind: i32,
    /// OTLP's status code (0 unset, 1 ok, 2 error).
    pub status: i32,
    /// Attributes, as JSON values.
    pub attributes: BTreeMap<String, Value>,
    /// Event names, in order.
    pub events: Vec<String>,
    /// Links, as (trace id, span id) in hex.
    pub links: Vec<(String, String)>,
    /// The resource's attributes (`service.name`, ...).
    pub resource: BTreeMap<String, Value>,
    /// Start and end, Unix nanoseconds.
    pub start_end_ns: (u64, u64),
}

impl ReceivedSpan {
    /// The attribute `key` as text, if it is text.
    pub fn text(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).and_then(Value::as_str)
    }
}

#[derive(Default)]
struct Received {
    /// Counting only (the bench's sink): spans are decoded, counted, let go.
    count_only: bool,
    counted: AtomicUsize,
    spans: Mutex<Vec<ReceivedSpan>>,
    changed: Condvar,
    undecodable: AtomicUsize,
}

/// A running receiver; stops when dropped.
pub struct OtlpReceiver {
    addr: SocketAddr,
    received: Arc<Received>,
    _runtime: tokio::runtime::Runtime,
}

impl OtlpReceiver {
    /// Starts a receiver on a free port.
    pub fn start() -> Self {
        Self::start_on(0).expect("a free port")
    }

    /// Starts a receiver on `port`, if it is free.
    pub fn start_on(port: u16) -> Option<Self> {
        Self::listen(port, Received::default())
    }

    /// Starts a receiver that decodes and counts spans but keeps none
    /// (a sink for load: [`Self::counted`] says how many came).
    pub fn start_counting() -> Self {
        Self::listen(0, Received { count_only: true, ..Received::default() }).expect("a free port")
    }

    /// Spans received so far (kept or only counted).
    pub fn counted(&self) -> usize {
        self.received.counted.load(Ordering::SeqCst)
    }

    fn listen(port: u16, received: Received) -> Option<Self> {
        let runtime =
            tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let listener = runtime.block_on(tokio::net::TcpListener::bind(("127.0.0.1", port))).ok()?;
        let addr = listener.local_addr().unwrap();
        let received = Arc::new(received);
        runtime.spawn(accept_loop(listener, received.clone()));
        Some(Self { addr, received, _runtime: runtime })
    }

    /// The base URL to set as OTEL_EXPORTER_OTLP_ENDPOINT.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.received.spans.lock().unwrap().clone()
    }

    /// Posts whose body was not a trace export.
    pub fn undecodable(&self) -> usize {
        self.received.undecodable.load(Ordering::SeqCst)
    }

    /// Waits until `done` holds for the spans received, at most `deadline`;
    /// panics with what arrived otherwise.
    pub fn wait_for(&self, deadline: Duration, done: impl Fn(&[ReceivedSpan]) -> bool) -> Vec<ReceivedSpan> {
        let until = Instant::now() + deadline;
        let mut spans = self.received.spans.lock().unwrap();
        loop {
            if done(&spans) {
                return spans.clone();
            }
            let left = until.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "the spans expected did not arrive; received: {:#?}", names(&spans));
            spans = self.received.changed.wait_timeout(spans, left).unwrap().0;
        }
    }

    /// The spans of the trace `trace_id`, once one named `name` is among them.
    pub fn trace_with(&self, trace_id: &str, name: &str, deadline: Duration) -> Vec<ReceivedSpan> {
        let spans = self.wait_for(deadline, |spans| {
            spans.iter().any(|span| span.trace_id == trace_id && span.name == name)
        });
        spans.into_iter().filter(|span| span.trace_id == trace_id).collect()
    }
}

fn names(spans: &[ReceivedSpan]) -> Vec<(String, String)> {
    spans.iter().map(|span| (span.trace_id.clone(), span.name.clone())).collect()
}

async fn accept_loop(listener: tokio::net::TcpListener, received: Arc<Received>) {
    while let Ok((stream, _)) = listener.accept().await {
        let received = received.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| handle(received.clone(), request));
            let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
        });
    }
}

async fn handle(
    received: Arc<Received>,
    request: hyper::Request<Incoming>,
) -> Result<hyper::Response<Full<Bytes>>, Infallible> {
    let path = request.uri().path().to_string();
    let body = request.into_body().collect().await.map(|body| body.to_bytes()).unwrap_or_default();
    let decoded =
        (path == "/v1/traces").then(|| ExportTraceServiceRequest::decode(body)).and_then(Result::ok);
    let Some(export) = decoded else {
        received.undecodable.fetch_add(1, Ordering::SeqCst);
        return Ok(hyper::Response::builder().status(400).body(Full::new(Bytes::new())).unwrap());
    };
    let mut flattened = Vec::new();
    for resource_spans in export.resource_spans {
        let resource =
            resource_spans.resource.map(|resource| attributes(&resource.attributes)).unwrap_or_default();
        for span in resource_spans.scope_spans.into_iter().flat_map(|scope| scope.spans) {
            flattened.push(ReceivedSpan {
                name: span.name,
                trace_id: hex(&span.trace_id),
                span_id: hex(&span.span_id),
                parent_span_id: hex(&span.parent_span_id),
                kind: span.kind,
                status: span.status.map_or(0, |status| status.code),
                attributes: attributes(&span.attributes),
                events: span.events.into_iter().map(|event| event.name).collect(),
                links: span.links.iter().map(|link| (hex(&link.trace_id), hex(&link.span_id))).collect(),
                resource: resource.clone(),
                start_end_ns: (span.start_time_unix_nano, span.end_time_unix_nano),
            });
        }
    }
    received.counted.fetch_add(flattened.len(), Ordering::SeqCst);
    if !received.count_only {
        received.spans.lock().unwrap().extend(flattened);
        received.changed.notify_all();
    }
    // An empty ExportTraceServiceResponse: everything accepted.
    let reply = hyper::Response::builder().header("content-type", "application/x-protobuf");
    Ok(reply.body(Full::new(Bytes::new())).unwrap())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn attributes(pairs: &[KeyValue]) -> BTreeMap<String, Value> {
    pairs.iter().map(|pair| (pair.key.clone(), pair.value.as_ref().map_or(Value::Null, json))).collect()
}

fn json(value: &AnyValue) -> Value {
    match &value.value {
        Some(any_value::Value::StringValue(text)) => Value::from(text.as_str()),
        Some(any_value::Value::BoolValue(flag)) => Value::from(*flag),
        Some(any_value::Value::IntValue(number)) => Value::from(*number),
        Some(any_value::Value::DoubleValue(number)) => Value::from(*number),
        Some(any_value::Value::ArrayValue(array)) => array.values.iter().map(json).collect(),
        _ => Value::Null,
    }
}
