//! What operators compare when they change things gradually: answers and
//! latency per handler version (a canary beside the stable one), why
//! canaries were dropped, generations, failures, tokens and latency per
//! model (the two sides of a model split), and the sampled quality checks'
//! pass rate. Version and model labels are bounded ([`BoundedLabels`]).

use std::time::Duration;

use prometheus::{GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};

use super::metrics::LATENCY_BUCKETS_S;
use crate::registry::{BoundedLabels, counter_vec, registered};

/// Handler versions with a series of their own (every push is a new one).
const MAX_VERSION_LABELS: usize = 32;
/// Models with a series of their own.
const MAX_MODEL_LABELS: usize = 32;
/// Longest model label; a longer name counts as `other`.
const MAX_MODEL_LABEL_BYTES: usize = 256;

/// The metrics, registered once.
pub struct RolloutMetrics {
    version_answers: IntCounterVec,
    version_latency: HistogramVec,
    canary_drops: IntCounterVec,
    model_generations: IntCounterVec,
    model_tokens: IntCounterVec,
    model_latency: HistogramVec,
    quality_pass_ratio: GaugeVec,
    versions: BoundedLabels,
    models: BoundedLabels,
}

fn histogram(registry: &Registry, name: &str, help: &str, label: &str) -> HistogramVec {
    let options = HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS_S.to_vec());
    registered(registry, HistogramVec::new(options, &[label]).expect("a valid metric name"))
}

impl RolloutMetrics {
    /// The metrics, registered in `registry`.
    pub fn register(registry: &Registry) -> Self {
        Self {
            version_answers: counter_vec(
                registry,
                "llm_service_handler_answers_total",
                "Answers by handler version (the tag in X-Handler-Version) and status class.",
                &["version", "class"],
            ),
            version_latency: histogram(
                registry,
                "llm_service_handler_duration_seconds",
                "Time to the response head, by handler version.",
                "version",
            ),
            canary_drops: counter_vec(
                registry,
                "llm_service_canary_drops_total",
                "Canary handler versions dropped, by reason (trap, errors, latency, operator).",
                &["reason"],
            ),
            model_generations: counter_vec(
                registry,
                "llm_service_model_generations_total",
                "Generations by model and outcome (ok, error).",
                &["model", "outcome"],
            ),
            model_tokens: counter_vec(
                registry,
                "llm_service_model_tokens_total",
                "Tokens the backend generated, by model.",
                &["model"],
            ),
            model_latency: histogram(
                registry,
                "llm_service_model_generation_seconds",
                "Time the handler spent on a generation, by model.",
                "model",
            ),
            quality_pass_ratio: registered(
                registry,
                GaugeVec::new(
                    Opts::new(
                        "llm_service_quality_pass_ratio",
                        "Share of the latest sampled quality probes that passed, by model.",
                    ),
                    &["model"],
                )
                .expect("a valid metric name"),
            ),
            versions: BoundedLabels::new(MAX_VERSION_LABELS, 64),
            models: BoundedLabels::new(MAX_MODEL_LABELS, MAX_MODEL_LABEL_BYTES),
        }
    }

    /// An answer by the handler version tagged `version`.
    pub fn record_answer(&self, version: &str, status: u16, latency: Duration) {
        let version = self.versions.label(version);
        let class = match status {
            500.. => "5xx",
            400..=499 => "4xx",
            _ => "2xx",
        };
        self.version_answers.with_label_values(&[version, class]).inc();
        self.version_latency.with_label_values(&[version]).observe(latency.as_secs_f64());
    }

    /// A canary dropped for `reason` (its label).
    pub fn record_canary_drop(&self, reason: &str) {
        self.canary_drops.with_label_values(&[reason]).inc();
    }

    /// A generation by `model`: failed or not, a cache hit or not, its
    /// tokens and its time. Tokens and time count only for answers the
    /// model generated now: they are what an A/B comparison weighs.
    pub fn record_generation(&self, model: &str, failed: bool, cache_hit: bool, tokens: u64, seconds: f64) {
        let model = self.models.label(model);
        let outcome = if failed { "error" } else { "ok" };
        self.model_generations.with_label_values(&[model, outcome]).inc();
        if !failed && !cache_hit {
            self.model_tokens.with_label_values(&[model]).inc_by(tokens);
            self.model_latency.with_label_values(&[model]).observe(seconds.max(0.0));
        }
    }

    /// The pass rate of `model`'s latest probes.
    pub fn record_quality(&self, model: &str, pass_ratio: f64) {
        self.quality_pass_ratio.with_label_values(&[self.models.label(model)]).set(pass_ratio);
    }

    /// Answers by `version` tag: (all, 5xx).
    pub fn answers(&self, version: &str) -> (u64, u64) {
        let version = self.versions.label(version);
        let count = |class: &str| {
            self.version_answers
                .get_metric_with_label_values(&[version, class])
                .map_or(0, |counter| counter.get())
        };
        let server_errors = count("5xx");
        (count("2xx") + count("4xx") + server_errors, server_errors)
    }
}
