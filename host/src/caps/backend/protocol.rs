//! What the host needs of a backend protocol, in one place: its name, how a
//! health check probes it, where a node lists its models (and, for Ollama,
//! the loaded ones), how a node's entry reads in the pool's merged
//! listings, and the handler's name for it. Both BACKEND_KIND and a pooled
//! node's `protocol` are one of these; adding a protocol is a variant here
//! and its arms, plus the handler's file for it.

use clap::ValueEnum;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::bindings::llm_service::host::runtime::BackendKind as HandlerKind;

/// The protocol a model server speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// Ollama's REST API (/api/generate), which also answers OpenAI's /v1 routes.
    Ollama,
    /// OpenAI-compatible servers (/v1/chat/completions): llama.cpp, vLLM, LM Studio.
    Openai,
}

/// Where a server lists models: `GET path` answers an object whose `array`
/// holds one entry per model, named by its `name` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listing {
    /// The path asked.
    pub path: &'static str,
    /// The field holding the entries.
    pub array: &'static str,
    /// Each entry's name field.
    pub name: &'static str,
}

impl Protocol {
    /// Its name (BACKEND_KIND, a node's `protocol`, the traces' provider).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ollama => "ollama",
            Self::Openai => "openai",
        }
    }

    /// The protocol the handler's report names.
    pub fn of_handler(kind: HandlerKind) -> Self {
        match kind {
            HandlerKind::Ollama => Self::Ollama,
            HandlerKind::Openai => Self::Openai,
        }
    }

    /// The handler's name for it, in its settings.
    pub fn for_handler(self) -> HandlerKind {
        match self {
            Self::Ollama => HandlerKind::Ollama,
            Self::Openai => HandlerKind::Openai,
        }
    }

    /// What a health check asks: a cheap call every server answers.
    pub fn probe_path(self) -> &'static str {
        match self {
            Self::Ollama => "/api/version",
            Self::Openai => "/v1/models",
        }
    }

    /// Where a node lists the models it has, and those it has loaded
    /// (`None`: it does not say; every listed model counts as loaded).
    pub fn listings(self) -> (Listing, Option<Listing>) {
        match self {
            Self::Ollama => (
                Listing { path: "/api/tags", array: "models", name: "name" },
                Some(Listing { path: "/api/ps", array: "models", name: "name" }),
            ),
            Self::Openai => (Listing { path: "/v1/models", array: "data", name: "id" }, None),
        }
    }

    /// The protocol a call to `path` needs of a node, if only one answers
    /// it: Ollama's own routes need Ollama; the /v1 routes any node.
    pub fn needed_for(path: &str) -> Option<Self> {
        (!path.starts_with("/v1/")).then_some(Self::Ollama)
    }

    /// A node's entry for model `name` (`entry`, as this protocol listed
    /// it) in the merged listing at `path`: as is in its own protocol's
    /// listings, else the least the other protocol's clients read.
    pub fn merged_entry(self, path: &str, name: &str, entry: &Value) -> Value {
        match (path == "/v1/models", self) {
            (true, Self::Openai) | (false, Self::Ollama) => entry.clone(),
            (true, Self::Ollama) => {
                json!({"id": name, "object": "model", "created": 0, "owned_by": "library"})
            }
            (false, Self::Openai) => json!({"name": name, "model": name}),
        }
    }
}

impl std::fmt::Display for Protocol {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_merged_entry_keeps_its_own_protocols_shape_and_gives_the_other_the_least() {
        let ollama = json!({"name": "m", "size": 1});
        let openai = json!({"id": "m", "object": "model", "meta": {"size": 2}});
        assert_eq!(Protocol::Ollama.merged_entry("/api/tags", "m", &ollama), ollama);
        assert_eq!(Protocol::Openai.merged_entry("/v1/models", "m", &openai), openai);
        assert_eq!(Protocol::Ollama.merged_entry("/v1/models", "m", &ollama)["id"], "m");
        assert_eq!(
            Protocol::Openai.merged_entry("/api/tags", "m", &openai),
            json!({"name": "m", "model": "m"})
        );
        assert_eq!(Protocol::needed_for("/api/chat"), Some(Protocol::Ollama));
        assert_eq!(Protocol::needed_for("/v1/chat/completions"), None);
    }
}
