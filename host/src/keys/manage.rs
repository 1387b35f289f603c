//! Making, changing, listing and revoking keys, and keeping them where
//! they survive: the shared store first when there is one (so a change
//! that the store did not take is refused, never served by one replica
//! alone), then this replica's map and its file. With a store the file is
//! this replica's copy of what it last read, so a restart while the store
//! is down still knows every key.

use std::collections::HashMap;
use std::sync::Arc;

use serde::Deserialize;

use super::limits::Limits;
use super::shared::KeyUse;
use super::{ClientKey, ClientKeys, NewKey, SECRET_PREFIX, digest, hex, label, model_list, now_s, store};

/// Why a key could not be made or changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The request is wrong: 400, naming the field.
    #[error("{0}")]
    Invalid(String),
    /// The shared store did not take the change: 503, try again.
    #[error("the shared store did not take the change, so no replica serves it: {0}")]
    Store(String),
    /// This replica could not keep it: 500.
    #[error("{0}")]
    Kept(String),
}

/// A change to a key; each field left out stays as it is.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyChange {
    /// A new name.
    #[serde(default)]
    pub name: Option<String>,
    /// The models it may use (empty: any).
    #[serde(default)]
    pub models: Option<Vec<String>>,
    /// Unix seconds after which it is refused.
    #[serde(default)]
    pub expires_at: Option<u64>,
    /// Its limits, whole (a limit left out of them is no limit).
    #[serde(default)]
    pub limits: Option<Limits>,
}

/// A key's record with what it used today, as the key list shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ListedKey {
    /// The record (never a secret).
    #[serde(flatten)]
    pub key: ClientKey,
    /// Its use today.
    #[serde(rename = "use")]
    pub used: KeyUse,
}

impl ClientKeys {
    /// Makes a key: the record, and its secret (shown this once).
    pub async fn create(&self, new: NewKey) -> Result<(ClientKey, String), KeyError> {
        let name = new.name.unwrap_or_else(|| new.tenant.clone());
        for (field, value) in [
            ("tenant", Some(&new.tenant)),
            ("name", Some(&name)),
            ("cache_namespace", new.cache_namespace.as_ref()),
        ] {
            if let Some(value) = value {
                label(field, value).map_err(KeyError::Invalid)?;
            }
        }
        model_list(&new.models).map_err(KeyError::Invalid)?;
        new.limits.check().map_err(KeyError::Invalid)?;
        let mut random = [0u8; 32];
        getrandom::fill(&mut random)
            .map_err(|error| KeyError::Kept(format!("no randomness for a key: {error}")))?;
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
            limits: new.limits,
            sha256,
        };
        self.save(key.clone()).await?;
        tracing::info!(cap = "keys", key_id = key.id, tenant = key.tenant, "client key created");
        Ok((key, secret))
    }

    /// Changes the key `id`; `None` if there is none.
    pub async fn update(&self, id: &str, change: KeyChange) -> Result<Option<ClientKey>, KeyError> {
        if let Some(name) = &change.name {
            label("name", name).map_err(KeyError::Invalid)?;
        }
        if let Some(models) = &change.models {
            model_list(models).map_err(KeyError::Invalid)?;
        }
        if let Some(limits) = &change.limits {
            limits.check().map_err(KeyError::Invalid)?;
        }
        let Some(mut key) = self.by_id(id) else { return Ok(None) };
        key.name = change.name.unwrap_or(key.name);
        key.models = change.models.unwrap_or(key.models);
        key.expires_at = change.expires_at.or(key.expires_at);
        key.limits = change.limits.unwrap_or(key.limits);
        self.save(key.clone()).await?;
        tracing::info!(cap = "keys", key_id = key.id, tenant = key.tenant, "client key changed");
        Ok(Some(key))
    }

    /// Revokes the key `id`; `None` if there is none. A key stays listed,
    /// revoked, so its id keeps meaning something in old logs.
    pub async fn revoke(&self, id: &str) -> Result<Option<ClientKey>, KeyError> {
        let Some(mut key) = self.by_id(id) else { return Ok(None) };
        key.revoked_at.get_or_insert_with(now_s);
        self.save(key.clone()).await?;
        tracing::info!(cap = "keys", key_id = key.id, tenant = key.tenant, "client key revoked");
        Ok(Some(key))
    }

    /// Every key, oldest first.
    pub fn list(&self) -> Vec<ClientKey> {
        let mut keys: Vec<ClientKey> = self.read().values().map(|key| (**key).clone()).collect();
        keys.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        keys
    }

    /// Every key with what it used today (the fleet's, with a store).
    pub async fn list_with_use(&self) -> Vec<ListedKey> {
        let keys = self.list();
        let ids: Vec<&str> = keys.iter().map(|key| key.id.as_str()).collect();
        let used = self.meter.use_today(&ids).await;
        keys.iter().cloned().zip(used).map(|(key, used)| ListedKey { key, used }).collect()
    }

    /// Takes the store's records (a key changed on another replica), adds
    /// to it the keys only this replica knows (made before there was a
    /// store), and keeps the result in the file. A store that does not
    /// answer changes nothing: this replica keeps what it has.
    pub async fn reload(&self) {
        let Some(shared) = &self.shared else { return };
        let Ok(stored) = shared.load().await else { return };
        let stored: HashMap<String, Arc<ClientKey>> =
            stored.into_iter().map(|key| (key.sha256.clone(), Arc::new(key))).collect();
        let only_here: Vec<Arc<ClientKey>> = self
            .read()
            .iter()
            .filter(|(sha, _)| !stored.contains_key(*sha))
            .map(|(_, key)| key.clone())
            .collect();
        for key in &only_here {
            if let Err(error) = shared.put(key).await {
                tracing::warn!(cap = "keys", key_id = key.id, %error, "could not add a key to the shared store");
            }
        }
        let mut keys = self.keys.write().unwrap_or_else(|poison| poison.into_inner());
        let mut merged = stored;
        merged.extend(only_here.into_iter().map(|key| (key.sha256.clone(), key)));
        if *keys != merged {
            *keys = merged;
            if let Err(error) = self.write_file(&keys) {
                tracing::warn!(cap = "keys", %error, "could not keep the fleet's keys in this replica's file");
            }
        }
    }

    /// Adds what this replica's keys used to the fleet's totals.
    pub async fn add_use(&self) {
        self.meter.add_use().await;
    }

    fn by_id(&self, id: &str) -> Option<ClientKey> {
        self.read().values().find(|key| key.id == id).map(|key| (**key).clone())
    }

    /// Keeps `key`: in the store first (refused if it does not take it),
    /// then here. Without a store the file must take it; with one it is
    /// only this replica's copy, and a failed write is logged.
    async fn save(&self, key: ClientKey) -> Result<(), KeyError> {
        if let Some(shared) = &self.shared {
            shared.put(&key).await.map_err(KeyError::Store)?;
        }
        // The file is written under the lock, so two changes at once
        // cannot leave it holding only one of them.
        let mut keys = self.keys.write().unwrap_or_else(|poison| poison.into_inner());
        let before = keys.insert(key.sha256.clone(), Arc::new(key.clone()));
        match self.write_file(&keys) {
            Ok(()) => Ok(()),
            Err(error) if self.shared.is_some() => {
                tracing::warn!(cap = "keys", %error, "could not keep the key in this replica's file");
                Ok(())
            }
            Err(error) => {
                // What is served is what a restart would find.
                match before {
                    Some(before) => keys.insert(key.sha256, before),
                    None => keys.remove(&key.sha256),
                };
                Err(KeyError::Kept(error))
            }
        }
    }

    fn write_file(&self, keys: &HashMap<String, Arc<ClientKey>>) -> Result<(), String> {
        let Some(file) = &self.file else { return Ok(()) };
        let mut all: Vec<&ClientKey> = keys.values().map(Arc::as_ref).collect();
        all.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        store::write(file, &all)
    }
}
