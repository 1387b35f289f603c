//! The client keys' side of the shared store ([`SharedKeys`]): the key
//! records in one hash, and each key's minute, day and use in keys of its
//! own that share the hash tag `{llm-service:key:<id>}`, so each script
//! touches one slot of a Redis Cluster. Every call goes through the
//! store's gate: a store that is down fails at once, and the keys fall
//! back to this replica's counts.
//!
//! The scripts follow [`crate::keys::limits`]'s rule to the letter: one
//! second buckets, a bucket leaves the minute when `second + 60 <= now`,
//! a day is the UTC date.

use std::sync::LazyLock;

use super::Fleet;
use super::events::FleetEvent;
use crate::keys::ClientKey;
use crate::keys::limits::{Limits, Used, WINDOW_S};
use crate::keys::shared::{KeyUse, SharedKeys, StoreError};

/// The key records: SHA-256 of the secret → the record as JSON.
pub const KEYS_KEY: &str = "{llm-service}:keys";
/// How long a key's day of use is kept after its last change.
const USE_KEPT_S: u64 = 30 * 86_400;

/// Counts the request if no limit is reached; what was used before it:
/// {requests, requests_reset, tokens, tokens_reset, day_tokens}.
static TAKE: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
local now, window = tonumber(ARGV[1]), tonumber(ARGV[6])
local function used(key)
  local sum, oldest = 0, now
  local buckets = redis.call('HGETALL', key)
  for i = 1, #buckets, 2 do
    local second = tonumber(buckets[i])
    if second + window <= now then
      redis.call('HDEL', key, buckets[i])
    else
      sum = sum + tonumber(buckets[i + 1])
      if second < oldest then oldest = second end
    end
  end
  return sum, oldest + window - now
end
local requests, requests_reset = used(KEYS[1])
local tokens, tokens_reset = used(KEYS[2])
local day_tokens = 0
if redis.call('HGET', KEYS[3], 'day') == ARGV[5] then
  day_tokens = tonumber(redis.call('HGET', KEYS[3], 'tokens') or '0')
end
local function over(limit, count) return tonumber(limit) > 0 and count >= tonumber(limit) end
if not (over(ARGV[2], requests) or over(ARGV[3], tokens) or over(ARGV[4], day_tokens)) then
  redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
  redis.call('EXPIRE', KEYS[1], 2 * window)
end
return {requests, requests_reset, tokens, tokens_reset, day_tokens}
",
    )
});

/// Adds ARGV[2] tokens to the minute (second ARGV[1]) and the day ARGV[3].
static SPEND: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
redis.call('HINCRBY', KEYS[1], ARGV[1], ARGV[2])
redis.call('EXPIRE', KEYS[1], 2 * tonumber(ARGV[4]))
if redis.call('HGET', KEYS[2], 'day') ~= ARGV[3] then
  redis.call('HSET', KEYS[2], 'day', ARGV[3], 'tokens', 0)
end
redis.call('HINCRBY', KEYS[2], 'tokens', ARGV[2])
redis.call('EXPIRE', KEYS[2], 172800)
return {}
",
    )
});

/// Adds {requests, tokens} to day ARGV[1]'s use and keeps the latest
/// last use; then answers the day's {requests, tokens, last_used}.
static USE: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
if redis.call('HGET', KEYS[1], 'day') ~= ARGV[1] then
  redis.call('HSET', KEYS[1], 'day', ARGV[1], 'requests', 0, 'tokens', 0)
end
redis.call('HINCRBY', KEYS[1], 'requests', ARGV[2])
redis.call('HINCRBY', KEYS[1], 'tokens', ARGV[3])
local last = tonumber(redis.call('HGET', KEYS[1], 'last_used') or '0')
if tonumber(ARGV[4]) > last then
  last = tonumber(ARGV[4])
  redis.call('HSET', KEYS[1], 'last_used', last)
end
redis.call('EXPIRE', KEYS[1], ARGV[5])
return {tonumber(redis.call('HGET', KEYS[1], 'requests')), tonumber(redis.call('HGET', KEYS[1], 'tokens')), last}
",
    )
});

/// The keys' records and counts in the fleet's store.
pub struct StoreKeys(pub Fleet);

impl std::fmt::Debug for StoreKeys {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_tuple("StoreKeys").field(&self.0.replica()).finish()
    }
}

/// Key `id`'s own key `part`, in its hash tag.
fn key_of(id: &str, part: &str) -> String {
    format!("{{llm-service:key:{id}}}:{part}")
}

/// The UTC day of `now_s`, as the scripts compare it.
fn day(now_s: u64) -> String {
    (now_s / 86_400).to_string()
}

impl StoreKeys {
    async fn run(
        &self,
        script: &redis::Script,
        keys: &[String],
        args: &[String],
    ) -> Result<Vec<i64>, StoreError> {
        self.0.store().script(script, keys, args).await.map_err(|error| error.0)
    }

    /// Adds `uses` to key `id`'s day: its totals after.
    async fn add(&self, id: &str, uses: &KeyUse, now_s: u64) -> Result<KeyUse, StoreError> {
        let args = [
            day(now_s),
            uses.requests_today.to_string(),
            uses.tokens_today.to_string(),
            uses.last_used_at.unwrap_or(0).to_string(),
            USE_KEPT_S.to_string(),
        ];
        let reply = self.run(&USE, &[key_of(id, "use")], &args).await?;
        let at = |index: usize| reply.get(index).copied().unwrap_or(0).max(0) as u64;
        Ok(KeyUse {
            requests_today: at(0),
            tokens_today: at(1),
            last_used_at: Some(at(2)).filter(|&at| at > 0),
        })
    }
}

#[async_trait::async_trait]
impl SharedKeys for StoreKeys {
    async fn load(&self) -> Result<Vec<ClientKey>, StoreError> {
        let records = self.0.store().hash_all(KEYS_KEY).await.map_err(|error| error.0)?;
        // A record that does not parse (a newer replica's, say) is skipped
        // rather than taking every other key down with it.
        Ok(records.into_iter().filter_map(|(_, json)| serde_json::from_str(&json).ok()).collect())
    }

    async fn put(&self, key: &ClientKey) -> Result<(), StoreError> {
        let fleet = &self.0;
        let json = serde_json::to_string(key).map_err(|error| error.to_string())?;
        fleet.store().hash_set(KEYS_KEY, &key.sha256, &json).await.map_err(|error| error.0)?;
        fleet
            .publish(&FleetEvent::Keys { origin: fleet.replica().to_string() })
            .await
            .map_err(|error| error.0)
    }

    async fn take(&self, id: &str, limits: &Limits, now_s: u64) -> Result<Used, StoreError> {
        let limit = |limit: Option<u64>| limit.unwrap_or(0).to_string();
        let keys = [key_of(id, "requests"), key_of(id, "tokens"), key_of(id, "day")];
        let args = [
            now_s.to_string(),
            limit(limits.rpm),
            limit(limits.tpm),
            limit(limits.daily_tokens),
            day(now_s),
            WINDOW_S.to_string(),
        ];
        let reply = self.run(&TAKE, &keys, &args).await?;
        let [requests, requests_reset_s, tokens, tokens_reset_s, day_tokens] = reply[..] else {
            return Err(format!("the limit script answered {reply:?}"));
        };
        let count = |value: i64| value.max(0) as u64;
        Ok(Used {
            requests: count(requests),
            requests_reset_s: count(requests_reset_s),
            tokens: count(tokens),
            tokens_reset_s: count(tokens_reset_s),
            day_tokens: count(day_tokens),
        })
    }

    async fn spend(&self, id: &str, tokens: u64, now_s: u64) -> Result<(), StoreError> {
        let keys = [key_of(id, "tokens"), key_of(id, "day")];
        let args = [now_s.to_string(), tokens.to_string(), day(now_s), WINDOW_S.to_string()];
        self.run(&SPEND, &keys, &args).await.map(drop)
    }

    async fn add_use(&self, uses: &[(String, KeyUse)], now_s: u64) -> Result<(), StoreError> {
        for (id, uses) in uses {
            self.add(id, uses, now_s).await?;
        }
        Ok(())
    }

    async fn use_today(&self, ids: &[&str], now_s: u64) -> Result<Vec<KeyUse>, StoreError> {
        let mut totals = Vec::with_capacity(ids.len());
        for id in ids {
            // Adding nothing answers the day's totals.
            totals.push(self.add(id, &KeyUse::default(), now_s).await?);
        }
        Ok(totals)
    }
}
