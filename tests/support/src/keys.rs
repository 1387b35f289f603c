//! Client keys from a test's side: making one through the admin API,
//! presenting one, and reading a tenant's counters.

use serde_json::Value;

use crate::{Client, Reply, Service};

/// Makes a key on `service` through its admin API (`token`): its record,
/// with its secret.
pub fn create(service: &Service, token: &str, spec: &Value) -> Value {
    let reply = service.admin(token, "POST", "/keys", spec.to_string().as_bytes());
    assert_eq!(reply.status, 201, "{}", reply.body);
    reply.json()
}

/// The secret of a key made with `spec`.
pub fn secret(service: &Service, token: &str, spec: &Value) -> String {
    create(service, token, spec)["secret"].as_str().unwrap().to_string()
}

/// POSTs `body` as JSON to `path` with `headers`.
pub fn post(service: &Service, path: &str, headers: &[(&str, &str)], body: &Value) -> Reply {
    let mut headers = headers.to_vec();
    headers.push(("content-type", "application/json"));
    Client::new().send_with_headers("POST", &service.url(path), &headers, body.to_string().as_bytes())
}

/// `Bearer <secret>`.
pub fn bearer(secret: &str) -> String {
    format!("Bearer {secret}")
}

/// The value of `name` with `labels` in the service's metrics (through
/// the admin API, which needs no client key), 0 when absent.
pub fn metric(service: &Service, token: &str, name: &str, labels: &[(&str, &str)]) -> u64 {
    let text = service.admin(token, "GET", "/service/metrics/prometheus", b"").body;
    text.lines()
        .filter(|line| line.starts_with(&format!("{name}{{")))
        .filter(|line| labels.iter().all(|(key, value)| line.contains(&format!("{key}=\"{value}\""))))
        .find_map(|line| line.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0)
}
