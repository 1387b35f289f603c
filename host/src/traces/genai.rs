//! OpenTelemetry's GenAI semantic conventions on the generation span: what
//! the host knows of every generation, whatever handler made it. What
//! only the handler knows (the request's model and sampling options, the
//! prompt's token count, finish reasons, content) it adds itself through
//! `annotate-span`.

use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::bindings::llm_service::host::runtime::GenerationReport;

/// `gen_ai.operation.name` for a route, by the conventions' values.
pub fn operation(endpoint: &str) -> &'static str {
    match endpoint {
        "/api/chat" | "/v1/chat/completions" | "/v1/messages" | "/v1/responses" => "chat",
        "/api/embed" | "/api/embeddings" | "/v1/embeddings" => "embeddings",
        _ => "text_completion",
    }
}

/// Puts `report` (the handler's report of a generation on `endpoint`,
/// served by a `provider` backend) on `span`.
pub fn record_report(
    span: &tracing::Span,
    report: &GenerationReport,
    endpoint: &str,
    provider: &'static str,
) {
    span.set_attribute("gen_ai.operation.name", operation(endpoint));
    span.set_attribute("gen_ai.provider.name", provider);
    span.set_attribute("gen_ai.response.model", report.model.clone());
    span.set_attribute(
        "gen_ai.usage.output_tokens",
        i64::try_from(report.tokens_generated).unwrap_or(i64::MAX),
    );
    span.set_attribute("llm_service.cache.hit", report.cache_hit);
    span.set_attribute("llm_service.prompt_length", i64::from(report.prompt_length));
    span.set_attribute("http.response.status_code", i64::from(report.status));
    if let Some(character) = &report.character {
        span.set_attribute("llm_service.character", character.clone());
    }
    if let Some(kind) = &report.error_kind {
        span.set_attribute("error.type", kind.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_dialect_names_its_operation() {
        assert_eq!(operation("/api/chat"), "chat");
        assert_eq!(operation("/v1/messages"), "chat");
        assert_eq!(operation("/generate"), "text_completion");
        assert_eq!(operation("/v1/completions"), "text_completion");
        assert_eq!(operation("/v1/embeddings"), "embeddings");
    }
}
