//! The background refresh: each node's models (Ollama's /api/tags, or
//! /v1/models) and loaded models (/api/ps; an OpenAI-compatible server's
//! listed models count as loaded), every HEALTH_CHECK_INTERVAL, all nodes
//! at once. A refresh is also the node's health check: an answer closes its
//! breaker (unless calls opened it), a failure counts toward opening it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::Value;

use super::Pool;
use super::node::{Learnt, Node, Probe};

/// The client refreshes use: a fresh connection each time, so a node that
/// stopped accepting new connections is noticed.
pub type RefreshClient = Client<HttpConnector, Empty<Bytes>>;

/// Refreshes every node within `timeout`; returns how many are healthy.
pub async fn round(pool: &Arc<Pool>, client: &RefreshClient, timeout: Duration) -> usize {
    let mut tasks = tokio::task::JoinSet::new();
    for node in pool.nodes().iter().cloned() {
        let client = client.clone();
        tasks.spawn(async move {
            let learnt = tokio::time::timeout(timeout, learn(&client, &node)).await.ok().flatten();
            (node, learnt)
        });
    }
    while let Some(Ok((node, learnt))) = tasks.join_next().await {
        match learnt {
            Some(learnt) => {
                node.learn(learnt);
                pool.succeeded(&node, Probe::Refresh);
            }
            None => {
                tracing::debug!(cap = "backend", node = %node.spec.name, "backend node refresh failed");
                pool.failed(&node, Probe::Refresh);
            }
        }
    }
    pool.nodes().iter().filter(|node| node.healthy()).count()
}

async fn learn(client: &RefreshClient, node: &Node) -> Option<Learnt> {
    let (listed, loaded) = node.spec.protocol.listings();
    let models = entries(get(client, node, listed.path).await?, listed.array, listed.name);
    let loaded = match loaded {
        Some(loaded) => entries(get(client, node, loaded.path).await?, loaded.array, loaded.name),
        None => models.clone(),
    };
    Some(Learnt { models, loaded, known: true })
}

/// `list[]` of `answer`, by each entry's `name` field.
fn entries(answer: Value, list: &str, name: &str) -> BTreeMap<String, Value> {
    let Some(entries) = answer.get(list).and_then(Value::as_array) else { return BTreeMap::new() };
    entries.iter().filter_map(|entry| Some((entry.get(name)?.as_str()?.to_string(), entry.clone()))).collect()
}

async fn get(client: &RefreshClient, node: &Node, path: &str) -> Option<Value> {
    let url = node.url_for(path).ok()?;
    let response = client.get(url).await.ok()?;
    if !response.status().is_success() {
        return None;
    }
    let body = response.into_body().collect().await.ok()?.to_bytes();
    serde_json::from_slice(&body).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_keyed_by_name_and_odd_ones_are_skipped() {
        let answer = serde_json::json!({"models": [{"name": "a", "size": 1}, {"size": 2}, {"name": 3}]});
        let found = entries(answer, "models", "name");
        assert_eq!(found.keys().collect::<Vec<_>>(), ["a"]);
        assert_eq!(found["a"]["size"], 1);
        assert!(entries(serde_json::json!({"data": 5}), "data", "id").is_empty());
    }
}
