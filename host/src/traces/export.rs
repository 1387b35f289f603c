//! Finished spans leave through a bounded queue: a request's thread only
//! tries to put its span in, and one task posts batches to the receiver.
//! A full queue drops the span (counted); an export that fails or times
//! out drops its batch (counted); neither ever waits a request.
//!
//! The SDK's own batch processor has a queue too, but it drops silently
//! (one log line) and runs on a thread of its own; this one counts each
//! outcome in `llm_service_trace_spans_total` and runs on the service's
//! runtime, where the hyper client that posts the spans lives.

use std::time::Duration;

use opentelemetry::Context;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{Span, SpanData, SpanExporter, SpanProcessor};
use prometheus::{IntCounter, IntCounterVec, Opts};
use tokio::sync::{mpsc, oneshot};

/// What became of finished spans, by outcome.
#[derive(Debug, Clone)]
pub struct SpanCounts {
    vec: IntCounterVec,
    exported: IntCounter,
    queue_full: IntCounter,
    export_failed: IntCounter,
    handler_items: IntCounter,
}

impl SpanCounts {
    fn new() -> Self {
        let vec = IntCounterVec::new(
            Opts::new("llm_service_trace_spans_total", "Finished spans, by what became of them."),
            &["outcome"],
        )
        .expect("a valid metric");
        Self {
            exported: vec.with_label_values(&["exported"]),
            queue_full: vec.with_label_values(&["dropped_queue_full"]),
            export_failed: vec.with_label_values(&["dropped_export_failed"]),
            vec,
            handler_items: IntCounter::new(
                "llm_service_trace_handler_items_dropped_total",
                "Attributes and events a handler added to its span past the per-request bounds.",
            )
            .expect("a valid metric"),
        }
    }

    /// Joins the service's metrics.
    pub fn register(&self, registry: &prometheus::Registry) {
        let _ = registry.register(Box::new(self.vec.clone()));
        let _ = registry.register(Box::new(self.handler_items.clone()));
    }

    /// Counts `items` a handler added past its span's bounds.
    pub fn refused_handler_items(&self, items: u64) {
        self.handler_items.inc_by(items);
    }
}

/// The processor the tracer provider ends spans into.
#[derive(Debug)]
pub struct QueuedSpans {
    queue: mpsc::Sender<SpanData>,
    counts: SpanCounts,
}

/// The other end of [`QueuedSpans`]: started on the runtime by [`Self::start`].
pub struct ExportTask<E> {
    spans: mpsc::Receiver<SpanData>,
    exporter: E,
    counts: SpanCounts,
    batch: usize,
    every: Duration,
    timeout: Duration,
}

/// How often and how much the task exports.
#[derive(Debug, Clone, Copy)]
pub struct Batching {
    /// Spans held before they are dropped.
    pub queue: usize,
    /// Spans in one export.
    pub batch: usize,
    /// Time between exports.
    pub every: Duration,
    /// Time one export may take.
    pub timeout: Duration,
}

/// A queue of `batching.queue` spans, and the task that empties it into `exporter`.
pub fn queue<E: SpanExporter>(
    mut exporter: E,
    resource: &Resource,
    batching: Batching,
) -> (QueuedSpans, ExportTask<E>) {
    exporter.set_resource(resource);
    let (queue, spans) = mpsc::channel(batching.queue.max(1));
    let counts = SpanCounts::new();
    let task = ExportTask {
        spans,
        exporter,
        counts: counts.clone(),
        batch: batching.batch.max(1),
        every: batching.every,
        timeout: batching.timeout,
    };
    (QueuedSpans { queue, counts }, task)
}

impl QueuedSpans {
    /// Its counts.
    pub fn counts(&self) -> SpanCounts {
        self.counts.clone()
    }
}

impl SpanProcessor for QueuedSpans {
    fn on_start(&self, _span: &mut Span, _cx: &Context) {}

    fn on_end(&self, span: SpanData) {
        if !span.span_context.is_sampled() {
            return;
        }
        if self.queue.try_send(span).is_err() {
            self.counts.queue_full.inc();
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        Ok(())
    }
}

/// Asks the export task to post what it holds now.
#[derive(Debug, Clone)]
pub struct Flush(mpsc::Sender<oneshot::Sender<()>>);

impl Flush {
    /// Posts what is queued, waiting at most `within` (the shutdown's last export).
    pub async fn now(&self, within: Duration) {
        let (done, flushed) = oneshot::channel();
        if self.0.send(done).await.is_ok() {
            let _ = tokio::time::timeout(within, flushed).await;
        }
    }
}

impl<E: SpanExporter + 'static> ExportTask<E> {
    /// Runs the task on the current runtime.
    pub fn start(self) -> Flush {
        let (flush, requests) = mpsc::channel(1);
        tokio::spawn(self.run(requests));
        Flush(flush)
    }

    async fn run(mut self, mut flushes: mpsc::Receiver<oneshot::Sender<()>>) {
        let mut held = Vec::with_capacity(self.batch);
        let mut tick = tokio::time::interval(self.every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let room = self.batch.saturating_sub(held.len()).max(1);
            tokio::select! {
                taken = self.spans.recv_many(&mut held, room) => {
                    if taken == 0 {
                        return;
                    }
                    if held.len() >= self.batch {
                        self.export(&mut held).await;
                    }
                }
                _ = tick.tick() => self.export(&mut held).await,
                Some(done) = flushes.recv() => {
                    loop {
                        while held.len() < self.batch && let Ok(span) = self.spans.try_recv() {
                            held.push(span);
                        }
                        if held.is_empty() {
                            break;
                        }
                        self.export(&mut held).await;
                    }
                    let _ = done.send(());
                }
            }
        }
    }

    async fn export(&mut self, held: &mut Vec<SpanData>) {
        if held.is_empty() {
            return;
        }
        let batch = std::mem::replace(held, Vec::with_capacity(self.batch));
        let spans = batch.len() as u64;
        match tokio::time::timeout(self.timeout, self.exporter.export(batch)).await {
            Ok(Ok(())) => self.counts.exported.inc_by(spans),
            Ok(Err(error)) => {
                self.counts.export_failed.inc_by(spans);
                tracing::debug!(cap = "traces", %error, spans, "span export failed");
            }
            Err(_elapsed) => {
                self.counts.export_failed.inc_by(spans);
                tracing::debug!(cap = "traces", spans, "span export timed out");
            }
        }
    }
}
