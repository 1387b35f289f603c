//! What the cache holds for a generation: the answer in a neutral form,
//! rendered afresh (as JSON, an NDJSON line or a batch item) each time it
//! is served. Its freshness and age are the host's to judge.

use serde::{Deserialize, Serialize};

/// A finished answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stored {
    pub response: String,
    /// The model that answered.
    pub model: String,
    pub tokens_generated: u64,
    /// The temperature it was generated at.
    pub temperature: f64,
    /// SHA-256 of the client's prompt.
    pub prompt_hash: String,
    /// Tokens of the prompt, when the backend said (answers stored before
    /// this field existed read as unknown).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_tokens: Option<u64>,
    /// Why the generation stopped (`stop`, `length`), when the backend said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub done_reason: Option<String>,
    /// The tool calls the model answered with, in Ollama's shape.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<serde_json::Value>,
    /// What a thinking model thought before answering.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thinking: Option<String>,
    /// How long the backend took, as far as it said.
    #[serde(default, skip_serializing_if = "Durations::is_empty")]
    pub durations: Durations,
}

/// A generation's durations in nanoseconds, as the backend reported them
/// (Ollama's `*_duration`; llama.cpp's `timings`). They describe the
/// answer, so a cached answer reports them again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Durations {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_ns: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_eval_ns: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eval_ns: Option<u64>,
}

impl Durations {
    fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

impl Stored {
    /// The bytes stored and handed to followers.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Reads stored bytes; `None` if they are not an answer (another
    /// handler's format, say), which counts as a miss.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        serde_json::from_slice(bytes).ok()
    }
}
