//! The tool calls a model answers with, gathered from whatever the backend
//! sends into one list in Ollama's shape,
//! `[{"function": {"name": ..., "arguments": {...}}}]`, which is what the
//! cache stores and both dialects render. Ollama sends whole calls (in a
//! whole answer or on one stream line); OpenAI-compatible servers send
//! whole calls in a whole answer and, in a stream, fragments by `index`
//! whose `arguments` text arrives in pieces. A leaf.

use serde_json::{Map, Value, json};

/// Calls gathered so far.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ToolCalls {
    /// Complete calls, Ollama's shape.
    whole: Vec<Value>,
    /// OpenAI stream fragments by index: the name, the arguments text.
    parts: Vec<(String, String)>,
}

impl ToolCalls {
    /// Adds complete calls in Ollama's shape.
    pub fn add_ollama(&mut self, calls: &Value) {
        if let Some(calls) = calls.as_array() {
            self.whole.extend(calls.iter().cloned());
        }
    }

    /// Adds complete calls in OpenAI's shape (arguments as JSON text).
    pub fn add_openai(&mut self, calls: &Value) {
        for call in calls.as_array().into_iter().flatten() {
            let name = call.pointer("/function/name").and_then(Value::as_str).unwrap_or_default();
            let arguments = call.pointer("/function/arguments").and_then(Value::as_str).unwrap_or("{}");
            self.whole.push(ollama_call(name, arguments));
        }
    }

    /// Adds OpenAI stream fragments: `[{"index", "function": {"name"?, "arguments"?}}]`.
    pub fn add_openai_fragments(&mut self, fragments: &Value) {
        for fragment in fragments.as_array().into_iter().flatten() {
            let index = fragment.get("index").and_then(Value::as_u64).unwrap_or(0) as usize;
            // A server numbers its calls from 0; a wild index gets no room.
            if index > self.parts.len() {
                continue;
            }
            if index == self.parts.len() {
                self.parts.push((String::new(), String::new()));
            }
            let (name, arguments) = &mut self.parts[index];
            if let Some(piece) = fragment.pointer("/function/name").and_then(Value::as_str) {
                name.push_str(piece);
            }
            if let Some(piece) = fragment.pointer("/function/arguments").and_then(Value::as_str) {
                arguments.push_str(piece);
            }
        }
    }

    /// Adds what `other` gathered.
    pub fn extend(&mut self, other: ToolCalls) {
        self.whole.extend(other.whole);
        self.parts.extend(other.parts);
    }

    /// Everything gathered, in Ollama's shape, or `None` if there was none.
    pub fn finish(self) -> Option<Value> {
        let mut calls = self.whole;
        calls.extend(self.parts.iter().map(|(name, arguments)| ollama_call(name, arguments)));
        (!calls.is_empty()).then_some(Value::Array(calls))
    }
}

/// One call in Ollama's shape; arguments that are not a JSON object are
/// kept as their text under `"arguments"`'s place, so nothing is lost.
fn ollama_call(name: &str, arguments: &str) -> Value {
    let arguments = match serde_json::from_str::<Value>(arguments) {
        Ok(Value::Object(object)) => Value::Object(object),
        _ if arguments.trim().is_empty() => Value::Object(Map::new()),
        _ => json!(arguments),
    };
    json!({"function": {"name": name, "arguments": arguments}})
}

/// `calls` (Ollama's shape) in OpenAI's: ids, `type`, arguments as text.
pub fn to_openai(calls: &Value) -> Value {
    let calls = calls.as_array().into_iter().flatten().enumerate().map(|(index, call)| {
        let arguments = match call.pointer("/function/arguments") {
            Some(Value::String(text)) => text.clone(),
            Some(other) => other.to_string(),
            None => "{}".to_string(),
        };
        json!({
            "id": format!("call_{index}"),
            "type": "function",
            "function": {"name": call.pointer("/function/name").cloned().unwrap_or_default(), "arguments": arguments},
        })
    });
    Value::Array(calls.collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openai_fragments_become_one_call_with_parsed_arguments() {
        let mut calls = ToolCalls::default();
        calls.add_openai_fragments(
            &json!([{"index": 0, "id": "x", "function": {"name": "get_weather", "arguments": ""}}]),
        );
        calls.add_openai_fragments(&json!([{"index": 0, "function": {"arguments": "{\"city\": "}}]));
        calls.add_openai_fragments(&json!([{"index": 0, "function": {"arguments": "\"Paris\"}"}}]));
        let expected = json!([{"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]);
        assert_eq!(calls.finish(), Some(expected));
    }

    #[test]
    fn both_shapes_round_trip_and_none_is_none() {
        assert_eq!(ToolCalls::default().finish(), None);
        let mut calls = ToolCalls::default();
        calls.add_openai(
            &json!([{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{\"a\":1}"}}]),
        );
        let ollama = calls.finish().unwrap();
        assert_eq!(ollama, json!([{"function": {"name": "f", "arguments": {"a": 1}}}]));
        assert_eq!(to_openai(&ollama)[0]["function"]["arguments"], "{\"a\":1}");
    }
}
