//! A question asked in a client dialect (Ollama's `/api/generate` and
//! `/api/chat`, OpenAI's `/v1/chat/completions`), in one backend-neutral
//! form: what either backend protocol renders, and what the cache key
//! hashes. A leaf: the dialects build it, the backends and the key read it.
//!
//! Options are kept in Ollama's names (`num_predict`, `repeat_penalty`, ...),
//! only those the client set, sorted: the OpenAI dialect translates into
//! them, the OpenAI backend translates out of them.

use std::collections::BTreeMap;

use serde_json::{Value, json};

/// Which API family asked: part of the key, so a chat answer never serves a
/// generate request with the same text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// Ollama's `/api/generate`: a prompt.
    Generate,
    /// Ollama's `/api/chat` and OpenAI's `/v1/chat/completions`: messages.
    Chat,
}

impl Family {
    /// The name in keys and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Generate => "generate",
            Self::Chat => "chat",
        }
    }
}

/// One chat message. Empty lists are absent, as LangChain's `images: []`
/// on every message must not change the key.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Message {
    pub role: String,
    pub content: String,
    /// Base64 images (Ollama's form; OpenAI data URLs are converted).
    pub images: Vec<String>,
    pub tool_calls: Option<Value>,
    pub tool_name: Option<String>,
    /// OpenAI's id of the call a tool message answers: relayed to an
    /// OpenAI-compatible backend, which needs it; not in the key (ids are
    /// the gateway's own `call_N`, or the client's).
    pub tool_call_id: Option<String>,
    pub thinking: Option<String>,
}

impl Message {
    /// The message in Ollama's shape, without absent parts.
    pub fn to_ollama(&self) -> Value {
        let mut message = json!({"role": self.role, "content": self.content});
        if !self.images.is_empty() {
            message["images"] = json!(self.images);
        }
        if let Some(tool_calls) = &self.tool_calls {
            message["tool_calls"] = tool_calls.clone();
        }
        if let Some(tool_name) = &self.tool_name {
            message["tool_name"] = json!(tool_name);
        }
        if let Some(thinking) = &self.thinking {
            message["thinking"] = json!(thinking);
        }
        message
    }
}

/// Ollama's `/api/generate` fields besides the prompt.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PromptParts {
    pub suffix: Option<String>,
    pub system: Option<String>,
    pub template: Option<String>,
    pub raw: Option<bool>,
    pub context: Option<Value>,
    pub images: Vec<String>,
}

/// A dialect's question.
#[derive(Debug, Clone, PartialEq)]
pub struct Question {
    pub family: Family,
    /// Chat: the conversation.
    pub messages: Vec<Message>,
    /// Generate: the prompt's companions.
    pub prompt_parts: PromptParts,
    pub tools: Option<Value>,
    /// `"json"` or a JSON schema.
    pub format: Option<Value>,
    /// A JSON schema format's `name` and `strict` as an OpenAI client gave
    /// them (`{"name", "strict"}`): relayed to an OpenAI-compatible backend.
    pub format_meta: Option<Value>,
    /// OpenAI's `tool_choice` when it is not `auto` (`required`, or a named
    /// function): relayed to an OpenAI-compatible backend.
    pub tool_choice: Option<Value>,
    pub think: Option<Value>,
    /// Predict options in Ollama's names, as the client set them.
    pub options: BTreeMap<String, Value>,
    /// Ollama's `keep_alive`: handed to an Ollama backend, never in the key.
    pub keep_alive: Option<Value>,
    /// The model's digest as the backend lists it (Ollama's `/api/tags`),
    /// so a re-pulled model never serves the old one's answers. Not sent.
    pub digest: Option<String>,
}

/// Options that say where and how fast a model runs, not what it answers:
/// passed on, left out of the key.
pub const HARDWARE_OPTIONS: &[&str] =
    &["num_gpu", "num_thread", "main_gpu", "use_mmap", "use_mlock", "num_batch", "low_vram", "numa"];

impl Question {
    /// A question of `family` with nothing set.
    pub fn new(family: Family) -> Self {
        Self {
            family,
            messages: Vec::new(),
            prompt_parts: PromptParts::default(),
            tools: None,
            format: None,
            format_meta: None,
            tool_choice: None,
            think: None,
            options: BTreeMap::new(),
            keep_alive: None,
            digest: None,
        }
    }

    /// The conversation as sent: `system` (a plugin's) first, and the last
    /// user message's text replaced by `prompt` (what the plugin made of it;
    /// without a plugin, the same text).
    pub fn messages_sent(&self, system: Option<&str>, prompt: &str) -> Vec<Message> {
        let mut messages = self.messages.clone();
        if let Some(last_user) = messages.iter_mut().rev().find(|message| message.role == "user") {
            last_user.content = prompt.to_string();
        }
        if let Some(system) = system {
            let system = Message { role: "system".into(), content: system.to_string(), ..Message::default() };
            messages.insert(0, system);
        }
        messages
    }

    /// Everything that changes the answer, in one canonical JSON value:
    /// fixed order, numbers as the client wrote them, hardware options and
    /// `keep_alive` left out. The fields added since the first form come
    /// last and only when set, so the keys of answers that lack them stay
    /// what they were.
    pub fn canonical(&self) -> Value {
        let Self {
            family,
            messages,
            prompt_parts,
            tools,
            format,
            format_meta,
            tool_choice,
            think,
            options,
            keep_alive: _,
            digest,
        } = self;
        let PromptParts { suffix, system, template, raw, context, images } = prompt_parts;
        let options: BTreeMap<&String, Value> = options
            .iter()
            .filter(|(name, _)| !HARDWARE_OPTIONS.contains(&name.as_str()))
            .map(|(name, value)| (name, canonical_number(value)))
            .collect();
        let mut canonical = json!([
            ["family", family.as_str()],
            ["messages", messages.iter().map(Message::to_ollama).collect::<Vec<_>>()],
            ["suffix", suffix],
            ["system", system],
            ["template", template],
            ["raw", raw],
            ["context", context],
            ["images", images],
            ["tools", tools],
            ["format", format],
            ["think", think],
            ["options", options],
            ["digest", digest],
        ]);
        let later = [("format_meta", format_meta), ("tool_choice", tool_choice)];
        if let Some(entries) = canonical.as_array_mut() {
            entries
                .extend(later.into_iter().filter_map(|(name, value)| Some(json!([name, value.as_ref()?]))));
        }
        canonical
    }
}

/// `1`, `1.0` and `1.00` are one number; other values are themselves.
fn canonical_number(value: &Value) -> Value {
    match value.as_f64() {
        Some(number) if number.fract() == 0.0 && number.abs() < 9.0e15 => json!(number as i64),
        Some(number) if value.is_f64() => json!(number_text(number)),
        _ => value.clone(),
    }
}

/// A fraction as a key holds it: with six decimals, as keys always have
/// (so the keys of answers already cached stay), unless six lose some of
/// it; then exactly, as the backend receives it (0.1234561 and 0.1234564
/// are two numbers, two answers).
pub fn number_text(number: f64) -> String {
    let six = format!("{number:.6}");
    if six.parse::<f64>() == Ok(number) { six } else { format!("{number}") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hardware_options_and_keep_alive_leave_the_canonical_form_alone() {
        let mut plain = Question::new(Family::Chat);
        plain.options.insert("temperature".into(), json!(0.2));
        let mut tuned = plain.clone();
        tuned.options.insert("num_gpu".into(), json!(99));
        tuned.keep_alive = Some(json!("10m"));
        assert_eq!(plain.canonical(), tuned.canonical());
        tuned.options.insert("num_ctx".into(), json!(8192));
        assert_ne!(plain.canonical(), tuned.canonical(), "num_ctx changes what the model sees");
    }

    #[test]
    fn numbers_are_one_number_however_written() {
        let mut integer = Question::new(Family::Chat);
        integer.options.insert("temperature".into(), json!(1));
        let mut float = Question::new(Family::Chat);
        float.options.insert("temperature".into(), json!(1.0));
        assert_eq!(integer.canonical(), float.canonical());
        float.options.insert("temperature".into(), json!(1.5));
        assert_ne!(integer.canonical(), float.canonical());
    }

    #[test]
    fn numbers_differing_past_the_sixth_decimal_are_two_numbers() {
        assert_eq!(number_text(0.7), "0.700000", "the keys already cached stay");
        assert_ne!(number_text(0.1234561), number_text(0.1234564));
        assert_eq!(number_text(0.1234561), "0.1234561");
    }

    #[test]
    fn later_fields_key_only_when_set() {
        let plain = Question::new(Family::Chat);
        assert_eq!(plain.canonical().as_array().unwrap().len(), 13, "the first form, unchanged");
        let mut forced = plain.clone();
        forced.tool_choice = Some(json!("required"));
        assert_ne!(plain.canonical(), forced.canonical());
    }

    #[test]
    fn the_family_is_part_of_the_form() {
        assert_ne!(Question::new(Family::Chat).canonical(), Question::new(Family::Generate).canonical());
    }
}
