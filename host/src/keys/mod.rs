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
//! - With a shared store, the records live in it too ([`shared`]): a key
//!   made or revoked on one replica is known to every other within a
//!   second (the fleet's event), and a replica whose store is down keeps
//!   serving the keys it last read.
//! - Each key belongs to a tenant, and a tenant's answers live in its own
//!   cache namespace (the tenant's name, unless the operator gives several
//!   tenants one `cache_namespace`): one tenant's cached answer is never
//!   another's hit, and their generations never share a flight.
//! - A key's [`limits`] (requests and tokens per minute, tokens per day)
//!   hold across the fleet ([`meter`]); past one, 429 with `Retry-After`.

pub mod config;
pub mod counts;
pub mod limits;
mod manage;
pub mod meter;
pub mod refusal;
pub mod shared;
mod store;
mod usage;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use self::config::{KeyConfig, KeyMode};
use self::limits::{Limits, Quota};
pub use self::manage::{KeyChange, KeyError};
use self::meter::Meter;
pub use self::refusal::Refusal;
use self::shared::SharedKeys;

/// What marks a secret as this service's key.
const SECRET_PREFIX: &str = "lls-";
/// What answers without a key even when keys are required: the seed's
/// health check and Ollama's root, which clients and balancers poll bare.
const OPEN_PATHS: &[&str] = &["/health", "/"];
/// The longest tenant, name or namespace accepted (they become cache key
/// prefixes and log fields).
const MAX_LABEL_BYTES: usize = 64;
/// The most models one key may be limited to, and the longest name among
/// them (the handler's own bound on a model name).
const MAX_KEY_MODELS: usize = 100;
const MAX_MODEL_CHARS: usize = 256;

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
    /// What it may use (none set: no limit).
    #[serde(default, skip_serializing_if = "no_limits")]
    pub limits: Limits,
    /// SHA-256 of the secret, hex.
    pub sha256: String,
}

fn no_limits(limits: &Limits) -> bool {
    !limits.any()
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
    /// What it may use.
    #[serde(default)]
    pub limits: Limits,
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
    /// The key's limits.
    pub limits: Limits,
    /// Counts what the key uses.
    meter: Arc<Meter>,
}

impl Admitted {
    /// Holds the request to its key's limits, and counts it if admitted:
    /// what is left, for the `x-ratelimit-*` headers.
    pub async fn take(&self) -> Result<Quota, Refusal> {
        self.meter.take(&self.key_id, &self.limits).await.map_err(|exceeded| {
            tracing::info!(cap = "keys", key_id = %self.key_id, tenant = %self.tenant,
                limit = exceeded.limit.label(), retry_after_s = exceeded.retry_after_s, "request refused by its key's limit");
            if let Some(counts) = &self.counts {
                counts.limited(exceeded.limit.label());
            }
            Refusal::Limited { id: self.key_id.to_string(), exceeded }
        })
    }

    /// Counts `tokens` generated for the request.
    pub fn spend(&self, tokens: u64) {
        self.meter.spend(&self.key_id, &self.limits, tokens);
    }
}

/// The service's client keys.
#[derive(Debug)]
pub struct ClientKeys {
    mode: KeyMode,
    /// By the secret's SHA-256.
    keys: RwLock<HashMap<String, Arc<ClientKey>>>,
    file: Option<PathBuf>,
    counts: Option<counts::KeyCounts>,
    /// The shared store's side, if there is a store.
    shared: Option<Arc<dyn SharedKeys>>,
    meter: Arc<Meter>,
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
        Ok(Self {
            mode: config.client_keys,
            keys: RwLock::new(keys),
            file,
            counts: None,
            shared: None,
            meter: Arc::default(),
        })
    }

    /// The same keys, kept in and counted through a shared store too.
    pub fn shared(mut self, store: Arc<dyn SharedKeys>) -> Self {
        self.meter = Arc::new(Meter::new(Some(store.clone())));
        self.shared = Some(store);
        self
    }

    /// The same keys, counting what tenants do in `registry`.
    pub fn counted(mut self, registry: &prometheus::Registry) -> Self {
        self.counts = Some(counts::KeyCounts::register(registry));
        self
    }

    /// Keys off: every request is the default tenant.
    pub fn off() -> Self {
        Self {
            mode: KeyMode::Off,
            keys: RwLock::default(),
            file: None,
            counts: None,
            shared: None,
            meter: Arc::default(),
        }
    }

    /// Whether keys are read at all.
    pub fn mode(&self) -> KeyMode {
        self.mode
    }

    /// Checks `request`'s key, if it presents one, and logs a refusal; a
    /// body that names no model generates with `current_model`, a request
    /// without a body (a listing) asks for none. Then holds it to the
    /// key's limits: its tenant and what the key has left.
    pub async fn admit_request(
        &self,
        request: &http::Request<bytes::Bytes>,
        current_model: impl FnOnce() -> Arc<str>,
    ) -> Result<(Option<Admitted>, Quota), Refusal> {
        let path = request.uri().path();
        let model = || {
            let body = request.body();
            (!body.is_empty()).then(|| asked_model(body).unwrap_or_else(|| current_model().to_string()))
        };
        let admitted = self.admit(path, request.headers(), model).inspect_err(|refusal| {
            tracing::info!(cap = "keys", reason = refusal.kind(), path, %refusal, "request refused by its client key");
        })?;
        let Some(admitted) = admitted else { return Ok((None, Quota::default())) };
        let quota = admitted.take().await?;
        Ok((Some(admitted), quota))
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
            limits: key.limits,
            meter: self.meter.clone(),
        }))
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Arc<ClientKey>>> {
        self.keys.read().unwrap_or_else(|poison| poison.into_inner())
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

/// Checks a key's model list.
fn model_list(models: &[String]) -> Result<(), String> {
    if models.len() > MAX_KEY_MODELS {
        return Err(format!("models: at most {MAX_KEY_MODELS}, not {}", models.len()));
    }
    match models.iter().find(|model| model.is_empty() || model.chars().count() > MAX_MODEL_CHARS) {
        Some(model) => Err(format!("models: each is 1 to {MAX_MODEL_CHARS} characters, not {model:?}")),
        None => Ok(()),
    }
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
