//! The store on one node: KeyDB (or Redis) through one reconnecting
//! `ConnectionManager`, created lazily so the service starts while KeyDB is
//! down. Every call is bounded by the configured timeout. Values are stored
//! with `SET .. EX`; clears walk the keyspace with `SCAN` and remove with
//! `UNLINK` (never `KEYS`, which blocks the server). Blocking stream reads
//! go through readers of their own ([`Readers`]), never the shared
//! connection.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncCommands, RedisError};

use super::StoreError;
use super::{Connected, Gate, MAX_BLOCK, Readers};

/// Keys asked for per SCAN step: large enough to be quick, small enough not
/// to hold KeyDB up.
pub(super) const SCAN_COUNT: usize = 500;

/// KeyDB or Redis, one node.
pub struct SingleNode {
    client: redis::Client,
    connection: ConnectionManager,
    timeout: Duration,
    readers: Readers<ConnectionManager>,
    gate: Gate,
}

impl SingleNode {
    /// The node at `url`, its calls passing `gate`; connects on first use
    /// and reconnects by itself.
    pub fn new(url: &str, timeout: Duration, gate: Gate) -> Result<Self, RedisError> {
        let client = redis::Client::open(url)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_secs(1));
        let connection = ConnectionManager::new_lazy_with_config(client.clone(), config)?;
        Ok(Self { client, connection, timeout, readers: Readers::default(), gate })
    }
}

#[async_trait::async_trait]
impl Connected for SingleNode {
    type Connection = ConnectionManager;

    async fn connection(&self) -> Result<ConnectionManager, StoreError> {
        Ok(self.connection.clone())
    }

    async fn new_reader(&self) -> Result<ConnectionManager, StoreError> {
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout + MAX_BLOCK))
            .set_number_of_retries(1);
        Ok(ConnectionManager::new_with_config(self.client.clone(), config).await?)
    }

    fn readers(&self) -> &Readers<ConnectionManager> {
        &self.readers
    }

    fn name(&self) -> &'static str {
        "keydb"
    }

    fn gate(&self) -> &Gate {
        &self.gate
    }

    async fn clear(&self, prefix: &str, containing: Option<&str>) -> Result<Vec<String>, StoreError> {
        let mut connection = self.connection.clone();
        let pattern = scan_pattern(prefix, containing);
        let mut removed = Vec::new();
        let mut cursor: u64 = 0;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(SCAN_COUNT)
                .query_async(&mut connection)
                .await?;
            let doomed: Vec<String> =
                keys.into_iter().filter(|key| super::cleared_by(key, prefix, containing)).collect();
            if !doomed.is_empty() {
                let _: u64 = connection.unlink(&doomed).await?;
                removed.extend(doomed);
            }
            if next == 0 {
                return Ok(removed);
            }
            cursor = next;
        }
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let mut connection = self.connection.clone();
        redis::cmd("PING").query_async::<String>(&mut connection).await?;
        Ok(())
    }
}

/// The `SCAN MATCH` pattern for keys that start with `prefix` and contain
/// `containing`.
pub(super) fn scan_pattern(prefix: &str, containing: Option<&str>) -> String {
    match containing {
        Some(infix) => format!("{}*{}*", glob_escape(prefix), glob_escape(infix)),
        None => format!("{}*", glob_escape(prefix)),
    }
}

/// `text` as a literal inside a Redis glob pattern.
fn glob_escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for character in text.chars() {
        if matches!(character, '*' | '?' | '[' | ']' | '\\') {
            escaped.push('\\');
        }
        escaped.push(character);
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_specials_are_escaped() {
        assert_eq!(glob_escape("llm_response:"), "llm_response:");
        assert_eq!(glob_escape(":a*b?[c]\\:"), ":a\\*b\\?\\[c\\]\\\\:");
    }
}
