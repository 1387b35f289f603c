//! What this handler adds to its generation span (OpenTelemetry's GenAI
//! conventions): the request's model and sampling settings, the prompt's
//! token count and why the generation stopped, which only the handler
//! knows. The host adds the rest (operation, provider, response model,
//! output tokens, cache tier, flight role, version). Prompts and answers
//! go on only when the operator allows it (`with-content`). Nothing is
//! built when the request is not traced. Its policy decisions are events:
//! `llm_service.handler.fallback` (a fallback model answered) and
//! `llm_service.handler.stale` (a stale answer stood in for an error).

use llm_service_sdk::runtime::{self, AttributeValue, SpanAttribute, TraceMode};
use serde_json::json;

use crate::pipeline::{CacheUse, Outcome};
use crate::request::GenerateRequest;

/// Annotates the span of a generation of `request` that ended in `outcome`.
pub fn annotate(request: &GenerateRequest, outcome: &Outcome) {
    let mode = runtime::tracing();
    if mode == TraceMode::Off {
        return;
    }
    let settings = &request.settings;
    let mut attributes = vec![
        text("gen_ai.request.model", request.primary_model()),
        real("gen_ai.request.temperature", settings.temperature),
        real("gen_ai.request.top_p", settings.top_p),
        integer("gen_ai.request.max_tokens", u64::from(settings.max_tokens)),
        SpanAttribute { key: "llm_service.stream".into(), value: AttributeValue::Boolean(request.stream) },
    ];
    if let Some(plugin) = &request.plugin {
        attributes.push(text("llm_service.plugin.name", plugin.name()));
    }
    if let Ok(answer) = outcome {
        if let Some(tokens) = answer.stored.prompt_tokens {
            attributes.push(integer("gen_ai.usage.input_tokens", tokens));
        }
        if let Some(reason) = &answer.stored.done_reason {
            attributes.push(SpanAttribute {
                key: "gen_ai.response.finish_reasons".into(),
                value: AttributeValue::Texts(vec![reason.clone()]),
            });
        }
    }
    if mode == TraceMode::WithContent {
        attributes.push(text("gen_ai.input.messages", &input_messages(request).to_string()));
        if let Ok(answer) = outcome {
            let output = json!([{
                "role": "assistant",
                "parts": [{"type": "text", "content": answer.stored.response}],
                "finish_reason": answer.stored.done_reason.as_deref().unwrap_or("stop"),
            }]);
            attributes.push(text("gen_ai.output.messages", &output.to_string()));
        }
    }
    runtime::annotate_span(&attributes);
    if let Ok(answer) = outcome {
        if answer.cache_use == CacheUse::Stale {
            runtime::add_span_event(
                "llm_service.handler.stale",
                &[integer("llm_service.cache.age_s", answer.age_s)],
            );
        } else if answer.stored.model != request.primary_model() {
            let asked = text("gen_ai.request.model", request.primary_model());
            runtime::add_span_event(
                "llm_service.handler.fallback",
                &[asked, text("gen_ai.response.model", &answer.stored.model)],
            );
        }
    }
}

/// The conversation in the conventions' shape (a role and its text parts).
fn input_messages(request: &GenerateRequest) -> serde_json::Value {
    let part =
        |role: &str, content: &str| json!({"role": role, "parts": [{"type": "text", "content": content}]});
    match request.question.as_deref() {
        Some(question) if !question.messages.is_empty() => {
            question.messages.iter().map(|message| part(&message.role, &message.content)).collect()
        }
        _ => json!([part("user", &request.prompt)]),
    }
}

fn text(key: &str, value: &str) -> SpanAttribute {
    SpanAttribute { key: key.into(), value: AttributeValue::Text(value.into()) }
}

fn real(key: &str, value: f64) -> SpanAttribute {
    SpanAttribute { key: key.into(), value: AttributeValue::Real(value) }
}

fn integer(key: &str, value: u64) -> SpanAttribute {
    SpanAttribute {
        key: key.into(),
        value: AttributeValue::Integer(i64::try_from(value).unwrap_or(i64::MAX)),
    }
}
