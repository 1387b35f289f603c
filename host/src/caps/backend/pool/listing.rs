//! The pool's merged model lists, answered by the host in place of one
//! node's: `/api/tags` and `/api/ps` (Ollama's shapes) and `/v1/models`
//! (OpenAI's), from the last refresh of every node whose breaker is not
//! open. A model on several nodes is listed once (the first node's entry).

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::Pool;

/// The merged answer for `path`, or `None` when it is not a listing or no
/// node's list is known yet (the call then goes to a node).
pub fn answer(pool: &Pool, path: &str) -> Option<Value> {
    let nodes = pool.nodes();
    let known: Vec<_> = nodes
        .iter()
        .filter(|node| node.healthy())
        .map(|node| (node.spec.protocol, node.learnt()))
        .filter(|(_, learnt)| learnt.known)
        .collect();
    if known.is_empty() {
        return None;
    }
    let mut merged: BTreeMap<String, Value> = BTreeMap::new();
    for (protocol, learnt) in &known {
        let listed = if path == "/api/ps" { &learnt.loaded } else { &learnt.models };
        for (name, entry) in listed {
            merged.entry(name.clone()).or_insert_with(|| protocol.merged_entry(path, name, entry));
        }
    }
    let entries: Vec<Value> = merged.into_values().collect();
    match path {
        "/api/tags" | "/api/ps" => Some(json!({"models": entries})),
        "/v1/models" => Some(json!({"object": "list", "data": entries})),
        _ => None,
    }
}
