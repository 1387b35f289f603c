//! Client keys and tenants (`CLIENT_KEYS`): who may generate, and whose
//! cache an answer belongs to.
//!
//! Guarantees:
//! - Off by default: nothing is read, every request is the one default
//!   tenant, and the service answers as the seed's does.
//! - A key is shown once, when it is made; only its SHA-256 is kept (in
//!   memory and in [`store`]'s 0600 file, so keys survive a restart).
//! - A presented key is checked before a request enters the handler or
//!   the edge tier: unknown, revoked or expired → 401, a model outside the
//!   key's list → 403, each in the request's dialect's own error shape
//!   ([`refusal`]). A check is one hash and one map lookup.
//! - Each key belongs to a tenant, and a tenant's answers live in its own
//!   cache namespace (the tenant's name, unless the operator gives several
//!   tenants one `cache_namespace`): one tenant's cached answer is never
//!   another's hit, and their generations never share a flight.

pub mod config;
pub mod counts;
pub mod refusal;
mod store;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use self::config::{KeyConfig, KeyMode};
pub use self::refusal::Refusal;

/// What marks a secret as this service's key.
const SECRET_PREFIX: &str = "lls-";
/// What answers without a key even when keys are required: the seed's
/// health check and Ollama's root, which clients and balancers poll bare.
const OPEN_PATHS: &[&str] = &["/health", "/"];
/// The longest tenant, name or namespace accepted (they become cache key
/// prefixes and log fields).
const MAX_LABEL_BYTES: usize = 64;

/// One client key, as kept (never its secret).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ClientKey {
    /// Its id (`key_` and 12 hex digits): what logs and the API name.
    pub id: String,
    /// A name for people.
    pub name: String,
    /// The tenant it belongs to.
    pub tenant: String,
    /// The cache namespace its answers live in (default: the tenant).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_namespace: Option<String>,
    /// The models it may use; empty, any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub models: Vec<String>,
    /// Unix seconds.
    pub created_at: u64,
    /// Unix seconds after which it is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<u64>,
    /// Unix seconds when it was revoked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<u64>,
    /// SHA-256 of the secret, hex.
    pub sha256: String,
}

impl ClientKey {
    /// The cache namespace its answers live in.
    pub fn namespace(&self) -> &str {
        self.cache_namespace.as_deref().unwrap_or(&self.tenant)
    }
}

/// What a new key is made with.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewKey {
    /// Its tenant (required).
    pub tenant: String,
    /// A name for people (default: the tenant).
    #[serde(default)]
    pub name: Option<String>,
    /// A cache namespace shared with other tenants.
    #[serde(default)]
    pub cache_namespace: Option<String>,
    /// The models it may use.
    #[serde(default)]
    pub models: Vec<String>,
    /// Unix seconds after which it is refused.
    #[serde(default)]
    pub expires_at: Option<u64>,
}

/// The tenant an admitted request belongs to.
#[derive(Debug, Clone)]
pub struct Admitted {
    /// The key's id.
    pub key_id: Arc<str>,
    /// Its tenant.
    pub tenant: Arc<str>,
    /// The cache namespace its answers live in.
    pub namespace: Arc<str>,
    /// The tenant's counters (none when the keys count nothing).
    pub counts: Option<counts::TenantCounts>,
}

/// The service's client keys.
#[derive(Debug)]
pub struct ClientKeys {
    mode: KeyMode,
    /// By the secret's SHA-256.
    keys: RwLock<HashMap<String, Arc<ClientKey>>>,
    file: Option<PathBuf>,
    counts: Option<counts::KeyCounts>,
}

impl ClientKeys {
    /// The keys `config` names, read from their file.
    pub fn new(config: &KeyConfig) -> Result<Self, String> {
        let file = config.file();
        let keys = match &file {
            Some(file) => store::read(file)?,
            None => Vec::new(),
        };
        let keys = keys.into_iter().map(|key| (key.sha256.clone(), Arc::new(key))).collect();
        Ok(Self { mode: config.client_keys, keys: RwLock::new(keys), file, counts: None })
    }

    /// The same keys, counting what tenants do in `registry`.
    pub fn counted(mut self, registry: &prometheus::Registry) -> Self {
        self.counts = Some(counts::KeyCounts::register(registry));
        self
    }

    /// Keys off: every request is the default tenant.
    pub fn off() -> Self {
        Self { mode: KeyMode::Off, keys: RwLock::default(), file: None, counts: None }
    }

    /// Whether keys are read at all.
    pub fn mode(&self) -> KeyMode {
        self.mode
    }

    /// Checks `request`'s key, if it presents one, and logs a refusal; a
    /// body that names no model generates with `current_model`, a request
    /// without a body (a listing) asks for none.
    pub fn admit_request(
        &self,
        request: &http::Request<bytes::Bytes>,
        current_model: impl FnOnce() -> Arc<str>,
    ) -> Result<Option<Admitted>, Refusal> {
        let path = request.uri().path();
        let model = || {
            let body = request.body();
            (!body.is_empty()).then(|| asked_model(body).unwrap_or_else(|| current_model().to_string()))
        };
        self.admit(path, request.headers(), model).inspect_err(|refusal| {
            tracing::info!(cap = "keys", reason = refusal.kind(), path, %refusal, "request refused by its client key");
        })
    }

    /// Checks the key that a request for `path` presents in `headers`, if
    /// any; `model` names the model it asks for, if it asks for one (read
    /// only when the key limits its models). `Ok(None)`: the default tenant.
    pub fn admit(
        &self,
        path: &str,
        headers: &http::HeaderMap,
        model: impl FnOnce() -> Option<String>,
    ) -> Result<Option<Admitted>, Refusal> {
        if self.mode == KeyMode::Off {
            return Ok(None);
        }
        let checked = self.check(path, headers, model);
        if let (Err(refusal), Some(counts)) = (&checked, &self.counts) {
            counts.refused(refusal.kind());
        }
        checked
    }

    fn check(
        &self,
        path: &str,
        headers: &http::HeaderMap,
        model: impl FnOnce() -> Option<String>,
    ) -> Result<Option<Admitted>, Refusal> {
        let Some(secret) = presented(headers) else {
            return match self.mode {
                KeyMode::Required if !OPEN_PATHS.contains(&path) => Err(Refusal::Missing),
                _ => Ok(None),
            };
        };
        let key = self.read().get(&digest(secret)).cloned().ok_or(Refusal::Unknown)?;
        if key.revoked_at.is_some() {
            return Err(Refusal::Revoked { id: key.id.clone() });
        }
        if key.expires_at.is_some_and(|at| at <= now_s()) {
            return Err(Refusal::Expired { id: key.id.clone() });
        }
        if !key.models.is_empty()
            && let Some(model) = model()
            && !key.models.contains(&model)
        {
            return Err(Refusal::ModelNotAllowed { id: key.id.clone(), model });
        }
        Ok(Some(Admitted {
            key_id: key.id.as_str().into(),
            tenant: key.tenant.as_str().into(),
            namespace: key.namespace().into(),
            counts: self.counts.as_ref().map(|counts| counts.tenant(&key.tenant)),
        }))
    }

    /// Makes a key: the record, and its secret (shown this once).
    pub fn create(&self, new: NewKey) -> Result<(ClientKey, String), String> {
        let name = new.name.unwrap_or_else(|| new.tenant.clone());
        for (field, value) in [
            ("tenant", Some(&new.tenant)),
            ("name", Some(&name)),
            ("cache_namespace", new.cache_namespace.as_ref()),
        ] {
            if let Some(value) = value {
                label(field, value)?;
            }
        }
        let mut random = [0u8; 32];
        getrandom::fill(&mut random).map_err(|error| format!("no randomness for a key: {error}"))?;
        let secret = format!("{SECRET_PREFIX}{}", hex(&random));
        let sha256 = digest(&secret);
        let key = ClientKey {
            id: format!("key_{}", &sha256[..12]),
            name,
            tenant: new.tenant,
            cache_namespace: new.cache_namespace,
            models: new.models,
            created_at: now_s(),
            expires_at: new.expires_at,
            revoked_at: None,
            sha256: sha256.clone(),
        };
        self.change(|keys| {
            keys.insert(sha256, Arc::new(key.clone()));
        })?;
        tracing::info!(cap = "keys", key_id = key.id, tenant = key.tenant, "client key created");
        Ok((key, secret))
    }

    /// Every key, oldest first.
    pub fn list(&self) -> Vec<ClientKey> {
        let mut keys: Vec<ClientKey> = self.read().values().map(|key| (**key).clone()).collect();
        keys.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        keys
    }

    /// Revokes the key `id`; `None` if there is none. A key stays listed,
    /// revoked, so its id keeps meaning something in old logs.
    pub fn revoke(&self, id: &str) -> Result<Option<ClientKey>, String> {
        let mut revoked = None;
        self.change(|keys| {
            if let Some(key) = keys.values_mut().find(|key| key.id == id) {
                let mut changed = (**key).clone();
                changed.revoked_at.get_or_insert_with(now_s);
                revoked = Some(changed.clone());
                *key = Arc::new(changed);
            }
        })?;
        if let Some(key) = &revoked {
            tracing::info!(cap = "keys", key_id = key.id, tenant = key.tenant, "client key revoked");
        }
        Ok(revoked)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Arc<ClientKey>>> {
        self.keys.read().unwrap_or_else(|poison| poison.into_inner())
    }

    /// Applies `change` and writes the file; on a failed write the change
    /// is undone, so what is served is what a restart would find.
    fn change(&self, change: impl FnOnce(&mut HashMap<String, Arc<ClientKey>>)) -> Result<(), String> {
        let mut keys = self.keys.write().unwrap_or_else(|poison| poison.into_inner());
        let before = keys.clone();
        change(&mut keys);
        if let Some(file) = &self.file {
            let mut all: Vec<&ClientKey> = keys.values().map(Arc::as_ref).collect();
            all.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
            if let Err(error) = store::write(file, &all) {
                *keys = before;
                return Err(error);
            }
        }
        Ok(())
    }
}

/// The model a request's JSON body names (`model`), if it names one.
pub fn asked_model(body: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct Asked {
        model: Option<String>,
    }
    serde_json::from_slice::<Asked>(body).ok()?.model.filter(|model| !model.is_empty())
}

/// The key a client presents the way its SDK does: `Authorization:
/// Bearer` (OpenAI's, Ollama's clients) or `x-api-key` (Anthropic's).
fn presented(headers: &http::HeaderMap) -> Option<&str> {
    if let Some(key) = headers.get("x-api-key").and_then(|value| value.to_str().ok()) {
        return Some(key.trim());
    }
    let authorization = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, key) = authorization.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| key.trim())
}

/// Checks a tenant, name or namespace.
fn label(field: &str, value: &str) -> Result<(), String> {
    let fits = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    if value.is_empty() || value.len() > MAX_LABEL_BYTES || !value.chars().all(fits) {
        return Err(format!(
            "{field} must be 1 to {MAX_LABEL_BYTES} letters, digits, '-', '_' or '.', not {value:?}"
        ));
    }
    Ok(())
}

fn digest(secret: &str) -> String {
    hex(&Sha256::digest(secret.as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn now_s() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |since| since.as_secs())
}

#[cfg(test)]
mod tests;
