//! The generated `Host` trait, answered from [`Telemetry`].

use super::RequestTelemetry;
use super::checks::DependencyStatus as Checked;
use crate::bindings::llm_service::host::runtime::{
    BackendNode, DependencyStatus, GenerationReport, HandlerSettings, Host, QualityStatus,
    ServiceStats as Stats, SpanAttribute, TraceMode, WeightedModel,
};
use crate::caps::backend::pool::node::Circuit;
use crate::caps::backend::protocol::Protocol;
use crate::rollout::verdict::Verdict;
use crate::traces::genai;

impl Host for RequestTelemetry {
    fn current_model(&mut self) -> String {
        self.service.current_model().to_string()
    }

    fn set_current_model(&mut self, model: String) -> String {
        self.service.set_current_model(&model).to_string()
    }

    fn backend_status(&mut self) -> DependencyStatus {
        match self.service.checks().backend() {
            Checked::Unknown => DependencyStatus::Unknown,
            Checked::Up => DependencyStatus::Up,
            Checked::Slow => DependencyStatus::Slow,
            Checked::Down => DependencyStatus::Down,
        }
    }

    fn settings(&mut self) -> HandlerSettings {
        self.service.handler_settings().clone()
    }

    fn model_for_generation(&mut self) -> String {
        self.service.model_for(self.routing_key).to_string()
    }

    fn model_split(&mut self) -> Vec<WeightedModel> {
        let Some(split) = self.service.model_split().get() else { return Vec::new() };
        split
            .models()
            .iter()
            .map(|(model, weight)| WeightedModel { model: model.clone(), weight: *weight })
            .collect()
    }

    fn backend_nodes(&mut self) -> Vec<BackendNode> {
        let Some(pool) = self.service.backend().pool() else { return Vec::new() };
        pool.nodes()
            .iter()
            .map(|node| {
                let learnt = node.learnt();
                BackendNode {
                    name: node.spec.name.clone(),
                    url: node.spec.url.clone(),
                    status: match node.circuit() {
                        Circuit::Closed => "up",
                        Circuit::HalfOpen => "trial",
                        Circuit::Open => "down",
                    }
                    .to_string(),
                    models: learnt.models.into_keys().collect(),
                    loaded: learnt.loaded.into_keys().collect(),
                    in_flight: node.in_flight(),
                    slots: node.spec.slots,
                }
            })
            .collect()
    }

    fn quality(&mut self) -> QualityStatus {
        let (state, failing_check) = match self.service.quality().get() {
            Verdict::Off => ("off", None),
            Verdict::Pending => ("pending", None),
            Verdict::Ok => ("ok", None),
            Verdict::Degraded(failure) => ("degraded", Some(failure)),
        };
        QualityStatus { state: state.to_string(), failing_check }
    }

    fn stats(&mut self) -> Stats {
        self.service.stats()
    }

    fn prometheus(&mut self) -> String {
        super::prometheus::render(&self.service)
    }

    fn report_generation(&mut self, report: GenerationReport) {
        let response_time_s = report.response_time_s;
        self.report(&report, response_time_s);
    }

    fn tracing(&mut self) -> TraceMode {
        match self.span().span() {
            None => TraceMode::Off,
            Some(_) if crate::traces::capture_content() => TraceMode::WithContent,
            Some(_) => TraceMode::On,
        }
    }

    fn annotate_span(&mut self, attributes: Vec<SpanAttribute>) {
        self.span_mut().annotate(attributes);
    }

    fn add_span_event(&mut self, name: String, attributes: Vec<SpanAttribute>) {
        self.span_mut().event(name, attributes);
    }
}

impl RequestTelemetry {
    /// Counts a generation that took `response_time_s` and writes its log
    /// line: the handler's report, or the report an edge replay carries.
    pub fn report(&self, report: &GenerationReport, response_time_s: f64) {
        let GenerationReport {
            character,
            model,
            cache_hit,
            tokens_generated,
            prompt_length,
            status,
            response_time_s: _,
            error_kind,
            prompt,
        } = report;
        let (cache_hit, tokens_generated, prompt_length, status) =
            (*cache_hit, *tokens_generated, *prompt_length, *status);
        self.service.metrics().record_generation(
            character.as_deref(),
            cache_hit,
            tokens_generated,
            error_kind.as_deref(),
        );
        self.service.rollout_metrics().record_generation(
            model,
            error_kind.is_some(),
            cache_hit,
            tokens_generated,
            response_time_s,
        );
        let character = character.as_deref().unwrap_or("default");
        let backend_node = self.served_by.lock().unwrap_or_else(|poison| poison.into_inner()).clone();
        let traced = self.span().span().and_then(crate::traces::ids);
        if let Some(span) = self.span().span() {
            let provider = Protocol::of_handler(self.service.handler_settings().backend_kind).as_str();
            genai::record_report(span, report, self.endpoint, provider);
        }
        if let Some(tenant) = &self.tenant
            && error_kind.is_none()
        {
            if let Some(counts) = &tenant.counts {
                counts.generated(cache_hit, tokens_generated);
            }
            if !cache_hit {
                tenant.spend(tokens_generated);
            }
        }
        let (tenant, key_id) = match &self.tenant {
            Some(tenant) => (Some(&*tenant.tenant), Some(&*tenant.key_id)),
            None => (None, None),
        };
        let (trace_id, span_id) = match &traced {
            Some((trace_id, span_id)) => (Some(trace_id.as_str()), Some(span_id.as_str())),
            None => (None, None),
        };
        // `prompt` is only ever Some when the operator set LOG_PROMPTS=true;
        // a None field is left out of the line.
        macro_rules! line {
            ($level:expr) => {
                tracing::event!(
                    target: "llm_service::generate", $level,
                    request_id = %self.request_id, handler_version = %self.handler_version,
                    endpoint = self.endpoint, character,
                    prompt_length, response_time = response_time_s, cache_hit, tokens_generated, model, status,
                    error_kind, prompt = prompt.as_deref(), backend_node = backend_node.as_deref(),
                    trace_id, span_id, tenant, key_id, "LLM Request"
                )
            };
        }
        // Hits are the bulk of a busy service's requests: each is a debug
        // line, and an info line a minute sums them. Misses and failures
        // keep an info line each.
        if cache_hit && error_kind.is_none() {
            line!(tracing::Level::DEBUG);
            if let Some((hits, since)) = self.service.hit_summary().note_hit() {
                tracing::info!(target: "llm_service::generate", hits, seconds = since.as_secs(), "cache hits since the last summary");
            }
        } else {
            line!(tracing::Level::INFO);
        }
    }
}
