use super::*;
use http::StatusCode;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

fn keys(mode: KeyMode, file: Option<PathBuf>) -> ClientKeys {
    let config = KeyConfig { client_keys: mode, client_keys_file: file.clone() };
    let keys = ClientKeys::new(&config).unwrap();
    if file.is_none() {
        // No file at all: nothing outlives the test.
        return ClientKeys { file: None, ..keys };
    }
    keys
}

fn with_key(secret: &str, header: &str) -> http::HeaderMap {
    let mut headers = http::HeaderMap::new();
    let value = if header == "authorization" { format!("Bearer {secret}") } else { secret.to_string() };
    headers.insert(http::HeaderName::from_bytes(header.as_bytes()).unwrap(), value.parse().unwrap());
    headers
}

fn new_key(tenant: &str) -> NewKey {
    NewKey {
        tenant: tenant.into(),
        name: None,
        cache_namespace: None,
        models: Vec::new(),
        expires_at: None,
        limits: Limits::default(),
    }
}

/// Runs a key change to its end (none waits on a store here).
fn done<T>(change: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(change)
}

#[test]
fn a_key_is_known_by_its_hash_only_and_admits_its_tenant_either_way_it_is_sent() {
    let keys = keys(KeyMode::Required, None);
    let (key, secret) = done(keys.create(new_key("team-a"))).unwrap();
    assert!(secret.starts_with(SECRET_PREFIX) && secret.len() == SECRET_PREFIX.len() + 64);
    assert_eq!(key.sha256, digest(&secret));
    assert!(!serde_json::to_string(&keys.list()).unwrap().contains(&secret), "the secret is never kept");
    for header in ["authorization", "x-api-key"] {
        let admitted = keys.admit("/generate", &with_key(&secret, header), || None).unwrap().unwrap();
        assert_eq!(
            (&*admitted.tenant, &*admitted.namespace, &*admitted.key_id),
            ("team-a", "team-a", key.id.as_str())
        );
    }
    let wrong = keys.admit("/generate", &with_key("lls-nope", "authorization"), || None);
    assert_eq!(wrong.unwrap_err(), Refusal::Unknown);
}

#[test]
fn the_modes_decide_what_a_request_without_a_key_is() {
    let none = http::HeaderMap::new();
    assert!(keys(KeyMode::Off, None).admit("/generate", &none, || None).unwrap().is_none());
    assert!(keys(KeyMode::Optional, None).admit("/generate", &none, || None).unwrap().is_none());
    let required = keys(KeyMode::Required, None);
    assert_eq!(required.admit("/generate", &none, || None).unwrap_err(), Refusal::Missing);
    assert!(required.admit("/health", &none, || None).unwrap().is_none(), "/health stays open");
    // Off reads no key at all, even a wrong one.
    let off = keys(KeyMode::Off, None);
    assert!(off.admit("/generate", &with_key("lls-wrong", "x-api-key"), || None).unwrap().is_none());
}

#[test]
fn revoked_expired_and_other_models_are_refused_with_their_reason() {
    let keys = keys(KeyMode::Optional, None);
    let (revoked, revoked_secret) = done(keys.create(new_key("a"))).unwrap();
    done(keys.revoke(&revoked.id)).unwrap().unwrap();
    let refusal = keys.admit("/generate", &with_key(&revoked_secret, "x-api-key"), || None).unwrap_err();
    assert_eq!(refusal, Refusal::Revoked { id: revoked.id.clone() });
    assert_eq!(refusal.status(), StatusCode::UNAUTHORIZED);

    let (expired, secret) = done(keys.create(NewKey { expires_at: Some(1), ..new_key("b") })).unwrap();
    let refusal = keys.admit("/generate", &with_key(&secret, "x-api-key"), || None).unwrap_err();
    assert_eq!(refusal, Refusal::Expired { id: expired.id });

    let (limited, secret) =
        done(keys.create(NewKey { models: vec!["small:1b".into()], ..new_key("c") })).unwrap();
    assert!(keys.admit("/generate", &with_key(&secret, "x-api-key"), || Some("small:1b".into())).is_ok());
    let refusal =
        keys.admit("/generate", &with_key(&secret, "x-api-key"), || Some("big:70b".into())).unwrap_err();
    assert_eq!(refusal, Refusal::ModelNotAllowed { id: limited.id, model: "big:70b".into() });
    assert_eq!(refusal.status(), StatusCode::FORBIDDEN);
    assert_eq!(done(keys.revoke("key_000000000000")).unwrap(), None);
}

#[test]
fn keys_survive_a_restart_in_a_file_only_the_owner_reads() {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("llm-service-keys-{}", fastrand::u64(..)));
    let file = dir.join("keys.json");
    let (key, secret) = done(keys(KeyMode::Required, Some(file.clone())).create(new_key("team-a"))).unwrap();
    assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
    let again = keys(KeyMode::Required, Some(file.clone()));
    assert_eq!(again.list(), vec![key]);
    assert!(again.admit("/generate", &with_key(&secret, "x-api-key"), || None).is_ok());
    assert!(!std::fs::read_to_string(&file).unwrap().contains(&secret));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn tenants_and_names_that_would_bend_a_cache_key_are_refused() {
    let keys = keys(KeyMode::Optional, None);
    for tenant in ["", "a/b", "with space", &"x".repeat(65)] {
        assert!(done(keys.create(new_key(tenant))).unwrap_err().to_string().contains("tenant"), "{tenant:?}");
    }
    let shared =
        done(keys.create(NewKey { cache_namespace: Some("bots".into()), ..new_key("a") })).unwrap().0;
    assert_eq!(shared.namespace(), "bots");
}

#[test]
fn a_model_list_is_bounded_in_length_and_in_each_name() {
    let keys = keys(KeyMode::Optional, None);
    let with = |models: Vec<String>| done(keys.create(NewKey { models, ..new_key("a") }));
    for models in [vec![String::new()], vec!["m".repeat(257)], vec!["m".to_string(); 101]] {
        assert!(with(models).unwrap_err().to_string().starts_with("models:"));
    }
    let key = with(vec!["m".repeat(256)]).unwrap().0;
    let change = KeyChange { models: Some(vec![String::new()]), ..KeyChange::default() };
    assert!(done(keys.update(&key.id, change)).unwrap_err().to_string().starts_with("models:"));
}

#[test]
fn each_dialect_gets_its_own_error_shape() {
    let read = |response: hyper::Response<HyperOutgoingBody>| {
        let body = futures_body(response);
        serde_json::from_slice::<serde_json::Value>(&body).unwrap()
    };
    let seed = read(Refusal::Unknown.response("/api/chat"));
    assert_eq!(seed["error"], "the client key is not valid");
    let openai = read(Refusal::Unknown.response("/v1/chat/completions"));
    assert_eq!(openai["error"]["code"], "invalid_api_key");
    let forbidden = Refusal::ModelNotAllowed { id: "key_x".into(), model: "m".into() };
    assert_eq!(read(forbidden.response("/v1/chat/completions"))["error"]["type"], "permission_error");
    let anthropic = read(Refusal::Missing.response("/v1/messages"));
    assert_eq!(
        (anthropic["type"].as_str(), anthropic["error"]["type"].as_str()),
        (Some("error"), Some("authentication_error"))
    );
}

fn futures_body(response: hyper::Response<HyperOutgoingBody>) -> bytes::Bytes {
    use http_body_util::BodyExt;
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    runtime.block_on(response.into_body().collect()).unwrap().to_bytes()
}
