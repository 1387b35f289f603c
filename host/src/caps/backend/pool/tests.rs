use std::collections::BTreeMap;

use serde_json::Value;

use super::node::Learnt;
use super::*;

fn spec(name: &str, slots: u32) -> NodeSpec {
    toml::from_str(&format!(
        "name = \"{name}\"\nurl = \"http://127.0.0.1:{}\"\nslots = {slots}",
        name.len() + 1000
    ))
    .unwrap()
}

/// A pool of nodes `a` (models x, y; x loaded), `bb` (x), `ccc` (z).
fn pool(slots: u32, max_queued: u32) -> Arc<Pool> {
    let specs = vec![spec("a", slots), spec("bb", slots), spec("ccc", slots)];
    let pool =
        Pool::new(specs, Arc::new(Allowlist::for_base_urls(&[])), max_queued, &Registry::new()).unwrap();
    let names = |names: &[&str]| -> BTreeMap<String, Value> {
        names.iter().map(|name| (name.to_string(), Value::Null)).collect()
    };
    let nodes = pool.nodes();
    nodes[0].learn(Learnt { models: names(&["x", "y"]), loaded: names(&["x"]), known: true });
    nodes[1].learn(Learnt { models: names(&["x"]), loaded: names(&[]), known: true });
    nodes[2].learn(Learnt { models: names(&["z"]), loaded: names(&["z"]), known: true });
    pool
}

fn key(n: u64) -> RoutingKey {
    RoutingKey::of(None, b"", &n.to_string())
}

fn far() -> Instant {
    Instant::now() + Duration::from_secs(5)
}

#[tokio::test]
async fn a_call_goes_to_a_node_with_the_model_loaded_first_then_to_one_that_has_it() {
    let pool = pool(1, 8);
    let first = pool.route(Some("x"), None, key(1), &[], far()).await.unwrap();
    assert_eq!(first.node().spec.name, "a", "x is loaded on a");
    let second = pool.route(Some("x"), None, key(2), &[], far()).await.unwrap();
    assert_eq!(second.node().spec.name, "bb", "a is busy; bb has x");
    assert_eq!(pool.route(Some("z"), None, key(3), &[], far()).await.unwrap().node().spec.name, "ccc");
    assert_eq!(
        pool.route(Some("w"), None, key(4), &[], far()).await.err(),
        Some(RouteError::NoSuchModel("w".into()))
    );
}

#[tokio::test]
async fn a_full_node_set_queues_until_a_slot_frees_and_a_full_queue_refuses() {
    let pool = pool(1, 1);
    let held = pool.route(Some("z"), None, key(1), &[], far()).await.unwrap();
    let waiter = tokio::spawn({
        let pool = pool.clone();
        async move {
            pool.route(Some("z"), None, key(2), &[], far()).await.map(|lease| lease.node().spec.name.clone())
        }
    });
    while pool.queued() == 0 {
        tokio::task::yield_now().await;
    }
    assert_eq!(pool.route(Some("z"), None, key(3), &[], far()).await.err(), Some(RouteError::QueueFull));
    drop(held);
    assert_eq!(waiter.await.unwrap().unwrap(), "ccc", "the freed slot went to the waiter");
    let _again = pool.route(Some("z"), None, key(4), &[], far()).await.unwrap();
    let soon = Instant::now() + Duration::from_millis(20);
    assert_eq!(pool.route(Some("z"), None, key(5), &[], soon).await.err(), Some(RouteError::Deadline));
}

#[tokio::test]
async fn a_conversation_stays_on_its_node_and_open_breakers_are_skipped() {
    let pool = pool(4, 8);
    let first = pool.route(Some("x"), None, key(7), &[], far()).await.unwrap().node().clone();
    // Load a, so that without affinity the next call would go to bb.
    let _busy: Vec<_> = leases(pool.clone(), "x", 3).await;
    assert_eq!(
        pool.route(Some("x"), None, key(7), &[], far()).await.unwrap().node().spec.name,
        first.spec.name
    );
    for _ in 0..node::FAILURES_TO_OPEN {
        pool.failed(&pool.nodes()[0], Probe::Call);
        pool.failed(&pool.nodes()[1], Probe::Call);
    }
    assert_eq!(
        pool.route(Some("x"), None, key(7), &[], far()).await.err(),
        Some(RouteError::AllDown("x".into()))
    );
    let tried = vec![pool.nodes()[2].clone()];
    assert_eq!(
        pool.route(Some("z"), None, key(8), &tried, far()).await.err(),
        Some(RouteError::AllDown("z".into()))
    );
}

/// `count` leases for `model` with distinct keys.
async fn leases(pool: Arc<Pool>, model: &str, count: u64) -> Vec<NodeLease> {
    let mut leases = Vec::new();
    for n in 0..count {
        leases.push(pool.route(Some(model), None, key(100 + n), &[], far()).await.unwrap());
    }
    leases
}

#[test]
fn a_replacement_keeps_unchanged_nodes_and_refuses_bad_files() {
    let pool = pool(1, 1);
    let before = pool.nodes()[0].clone();
    pool.replace(vec![spec("a", 1), spec("dddd", 2)]).unwrap();
    assert!(Arc::ptr_eq(&pool.nodes()[0], &before), "a kept its state");
    assert_eq!(pool.nodes().len(), 2);
    assert!(pool.replace(vec![spec("a", 1), spec("a", 1)]).is_err(), "two nodes named a");
    assert!(pool.replace(vec![]).is_err());
    assert_eq!(pool.nodes().len(), 2, "a refused file changes nothing");
    assert!(pool.allowlist.permits(&"http://127.0.0.1:1004/api/tags".parse().unwrap()));
    assert!(!pool.allowlist.permits(&"http://127.0.0.1:1002/api/tags".parse().unwrap()), "bb left");
}
