//! What a handler adds to its own span through the telemetry interface,
//! held to per-request bounds so a handler (or a client steering it)
//! cannot grow a span, and the export queue behind it, without limit.

use opentelemetry::{Array, KeyValue, StringValue, Value};
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::bindings::llm_service::host::runtime::{AttributeValue, SpanAttribute};

/// Attributes one request's handler may set.
pub const MAX_ATTRIBUTES: u32 = 64;
/// Events one request's handler may add.
pub const MAX_EVENTS: u32 = 16;
/// The longest attribute key or event name kept.
pub const MAX_KEY_BYTES: usize = 128;
/// The longest text value kept (longer ones are cut at a character).
pub const MAX_TEXT_BYTES: usize = 4096;

/// One request's handler span and what its handler has added so far.
#[derive(Debug, Clone, Default)]
pub struct HandlerSpan {
    span: Option<tracing::Span>,
    attributes: u32,
    events: u32,
}

impl HandlerSpan {
    /// The handler's span `span`, when it is traced (else every call is a no-op).
    pub fn new(span: &tracing::Span) -> Self {
        Self { span: super::sampled(span).then(|| span.clone()), ..Self::default() }
    }

    /// The span, when traced.
    pub fn span(&self) -> Option<&tracing::Span> {
        self.span.as_ref()
    }

    /// Sets `attributes` within the bounds.
    pub fn annotate(&mut self, attributes: Vec<SpanAttribute>) {
        let Some(span) = &self.span else { return };
        for SpanAttribute { key, value } in attributes {
            if self.attributes >= MAX_ATTRIBUTES || key.is_empty() || key.len() > MAX_KEY_BYTES {
                refuse(1);
                continue;
            }
            self.attributes += 1;
            span.set_attribute(key, value_of(value));
        }
    }

    /// Adds the event `name` with `attributes` within the bounds.
    pub fn event(&mut self, name: String, attributes: Vec<SpanAttribute>) {
        let Some(span) = &self.span else { return };
        if self.events >= MAX_EVENTS || name.is_empty() || name.len() > MAX_KEY_BYTES {
            refuse(1);
            return;
        }
        self.events += 1;
        let kept = usize::try_from(MAX_ATTRIBUTES).unwrap_or(usize::MAX);
        refuse(attributes.len().saturating_sub(kept));
        let attributes = attributes
            .into_iter()
            .take(kept)
            .filter(|attribute| !attribute.key.is_empty() && attribute.key.len() <= MAX_KEY_BYTES)
            .map(|SpanAttribute { key, value }| KeyValue::new(key, value_of(value)))
            .collect();
        span.add_event(name, attributes);
    }
}

/// Counts `items` refused for a bound.
fn refuse(items: usize) {
    if let Some(counts) = super::counts() {
        counts.refused_handler_items(items as u64);
    }
}

fn value_of(value: AttributeValue) -> Value {
    match value {
        AttributeValue::Text(text) => Value::from(cut(text)),
        AttributeValue::Integer(integer) => Value::I64(integer),
        AttributeValue::Real(real) => Value::F64(real),
        AttributeValue::Boolean(flag) => Value::Bool(flag),
        AttributeValue::Texts(texts) => {
            let mut left = MAX_TEXT_BYTES;
            let kept = texts
                .into_iter()
                .map_while(|text| {
                    let text = cut(text);
                    left = left.checked_sub(text.len())?;
                    Some(StringValue::from(text))
                })
                .collect();
            Value::Array(Array::String(kept))
        }
    }
}

/// `text` cut to at most [`MAX_TEXT_BYTES`], at a character's boundary.
fn cut(mut text: String) -> String {
    if text.len() > MAX_TEXT_BYTES {
        let end = (0..=MAX_TEXT_BYTES).rev().find(|&at| text.is_char_boundary(at)).unwrap_or(0);
        text.truncate(end);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_text_is_cut_at_a_character() {
        let text = "é".repeat(MAX_TEXT_BYTES);
        let kept = cut(text);
        assert!(kept.len() <= MAX_TEXT_BYTES);
        assert!(kept.len() >= MAX_TEXT_BYTES - 1);
        assert!(kept.chars().all(|c| c == 'é'));
    }

    #[test]
    fn a_list_of_texts_shares_one_budget() {
        let Value::Array(Array::String(kept)) =
            value_of(AttributeValue::Texts(vec!["x".repeat(3000), "y".repeat(3000)]))
        else {
            panic!("a list of texts stays one");
        };
        assert_eq!(kept.len(), 1);
    }
}
