//! The commands the store is sent, for any connection (one node or a
//! cluster): a value with its remaining lifetime (the cache's tier), and
//! what the fleet needs: streams, plain keys, hashes, scripts, leases and
//! a flight's stream.

use std::time::Duration;

use bytes::Bytes;
use redis::aio::ConnectionLike;
use redis::streams::{StreamId, StreamRangeReply, StreamReadReply};

use super::StoreError;

/// Events read per poll at most.
const READ_COUNT: usize = 100;

fn parsing(error: impl std::fmt::Display) -> StoreError {
    StoreError(format!("unexpected reply: {error}"))
}

/// The bytes under `key` and their remaining lifetime (`GET` and `PTTL` in
/// one round trip; one key, so one node of a cluster).
pub async fn get_with_ttl<C: ConnectionLike + Send>(
    connection: &mut C,
    key: &str,
) -> Result<Option<(Bytes, Duration)>, StoreError> {
    let (value, ttl_ms): (Option<Vec<u8>>, i64) =
        redis::pipe().get(key).cmd("PTTL").arg(key).query_async(connection).await?;
    // PTTL is -1 for a key without expiry (never set by us) and -2 for one
    // that vanished between the two commands.
    Ok(value.filter(|_| ttl_ms > 0).map(|value| (Bytes::from(value), Duration::from_millis(ttl_ms as u64))))
}

/// `SET key value EX ttl` (whole seconds, at least one).
pub async fn set_with_ttl<C: ConnectionLike + Send>(
    connection: &mut C,
    key: &str,
    value: &[u8],
    ttl: Duration,
) -> Result<(), StoreError> {
    let _: () = redis::cmd("SET")
        .arg(key)
        .arg(value)
        .arg("EX")
        .arg(ttl.as_secs().max(1))
        .query_async(connection)
        .await?;
    Ok(())
}

/// `UNLINK key`: whether it was there.
pub async fn unlink<C: ConnectionLike + Send>(connection: &mut C, key: &str) -> Result<bool, StoreError> {
    let removed: u64 = redis::cmd("UNLINK").arg(key).query_async(connection).await?;
    Ok(removed > 0)
}

/// `XADD stream MAXLEN ~ keep * event payload`.
pub async fn append<C: ConnectionLike + Send>(
    connection: &mut C,
    stream: &str,
    payload: &str,
    keep: usize,
) -> Result<(), StoreError> {
    let _: String = redis::cmd("XADD")
        .arg(stream)
        .arg("MAXLEN")
        .arg("~")
        .arg(keep)
        .arg("*")
        .arg("event")
        .arg(payload)
        .query_async(connection)
        .await?;
    Ok(())
}

/// `XREAD [BLOCK ms] COUNT n STREAMS stream after`. Only a connection of
/// its own may block: a blocked read holds up every command behind it.
async fn xread<C: ConnectionLike + Send>(
    connection: &mut C,
    stream: &str,
    after: &str,
    block: Option<Duration>,
) -> Result<Vec<StreamId>, StoreError> {
    let mut read = redis::cmd("XREAD");
    if let Some(block) = block {
        // BLOCK 0 would wait for ever.
        read.arg("BLOCK").arg((block.as_millis() as u64).max(1));
    }
    let reply: Option<StreamReadReply> = read
        .arg("COUNT")
        .arg(READ_COUNT)
        .arg("STREAMS")
        .arg(stream)
        .arg(after)
        .query_async(connection)
        .await?;
    Ok(reply.into_iter().flat_map(|reply| reply.keys).flat_map(|key| key.ids).collect())
}

/// The entries of `stream` after id `after`, as (id, event payload).
pub async fn read_after<C: ConnectionLike + Send>(
    connection: &mut C,
    stream: &str,
    after: &str,
) -> Result<Vec<(String, String)>, StoreError> {
    let entries = xread(connection, stream, after, None).await?;
    Ok(entries
        .into_iter()
        .map(|entry| {
            let payload = entry.get::<String>("event").unwrap_or_default();
            (entry.id, payload)
        })
        .collect())
}

/// The id of `stream`'s last entry, "0-0" when it has none.
pub async fn last_id<C: ConnectionLike + Send>(
    connection: &mut C,
    stream: &str,
) -> Result<String, StoreError> {
    let value = redis::cmd("XREVRANGE")
        .arg(stream)
        .arg("+")
        .arg("-")
        .arg("COUNT")
        .arg(1)
        .query_async(connection)
        .await?;
    let reply: StreamRangeReply = redis::from_redis_value(value).map_err(parsing)?;
    Ok(reply.ids.into_iter().next().map_or_else(|| "0-0".to_string(), |entry| entry.id))
}

/// `GET key`, whole.
pub async fn get_raw<C: ConnectionLike + Send>(
    connection: &mut C,
    key: &str,
) -> Result<Option<Vec<u8>>, StoreError> {
    Ok(redis::cmd("GET").arg(key).query_async(connection).await?)
}

/// `SET key value`, without expiry.
pub async fn set_raw<C: ConnectionLike + Send>(
    connection: &mut C,
    key: &str,
    value: &[u8],
) -> Result<(), StoreError> {
    let _: () = redis::cmd("SET").arg(key).arg(value).query_async(connection).await?;
    Ok(())
}

/// `HSET key field value`.
pub async fn hash_set<C: ConnectionLike + Send>(
    connection: &mut C,
    key: &str,
    field: &str,
    value: &str,
) -> Result<(), StoreError> {
    let _: i64 = redis::cmd("HSET").arg(key).arg(field).arg(value).query_async(connection).await?;
    Ok(())
}

/// `HGETALL key` as (field, value) pairs.
pub async fn hash_all<C: ConnectionLike + Send>(
    connection: &mut C,
    key: &str,
) -> Result<Vec<(String, String)>, StoreError> {
    let map: std::collections::BTreeMap<String, String> =
        redis::cmd("HGETALL").arg(key).query_async(connection).await?;
    Ok(map.into_iter().collect())
}

/// `EVALSHA` of `script` (loaded first if the node lacks it) over `keys`,
/// which share one hash tag so a cluster runs it on one node; its reply
/// as integers.
pub async fn script<C: ConnectionLike + Send>(
    connection: &mut C,
    script: &redis::Script,
    keys: &[String],
    args: &[String],
) -> Result<Vec<i64>, StoreError> {
    let mut invocation = script.prepare_invoke();
    for key in keys {
        invocation.key(key);
    }
    for arg in args {
        invocation.arg(arg);
    }
    Ok(invocation.invoke_async(connection).await?)
}

/// `HDEL key field`.
pub async fn hash_delete<C: ConnectionLike + Send>(
    connection: &mut C,
    key: &str,
    field: &str,
) -> Result<(), StoreError> {
    let _: i64 = redis::cmd("HDEL").arg(key).arg(field).query_async(connection).await?;
    Ok(())
}

/// `SET key token NX PX ttl`: whether the lease was free and is now ours.
pub async fn lease_take<C: ConnectionLike + Send>(
    connection: &mut C,
    key: &str,
    token: &str,
    ttl: Duration,
) -> Result<bool, StoreError> {
    let taken: Option<String> = redis::cmd("SET")
        .arg(key)
        .arg(token)
        .arg("NX")
        .arg("PX")
        .arg(ttl.as_millis() as u64)
        .query_async(connection)
        .await?;
    Ok(taken.is_some())
}

/// Extends the lease `key` by `ttl` if `token` still holds it.
const RENEW: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then \
                     return redis.call('PEXPIRE', KEYS[1], ARGV[2]) else return 0 end";

/// Removes the lease `key` if `token` still holds it.
const RELEASE: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then \
                       return redis.call('DEL', KEYS[1]) else return 0 end";

/// Extends `token`'s lease on `key` by `ttl`; whether it still held it.
pub async fn lease_renew<C: ConnectionLike + Send>(
    connection: &mut C,
    key: &str,
    token: &str,
    ttl: Duration,
) -> Result<bool, StoreError> {
    let renewed: i64 = redis::Script::new(RENEW)
        .key(key)
        .arg(token)
        .arg(ttl.as_millis() as u64)
        .invoke_async(connection)
        .await?;
    Ok(renewed == 1)
}

/// Removes `token`'s lease on `key` (compare and delete: never another's).
pub async fn lease_release<C: ConnectionLike + Send>(
    connection: &mut C,
    key: &str,
    token: &str,
) -> Result<(), StoreError> {
    let _: i64 = redis::Script::new(RELEASE).key(key).arg(token).invoke_async(connection).await?;
    Ok(())
}

/// Appends `entries` (kind, data) to `stream` in one round trip and keeps
/// the stream `ttl` longer.
pub async fn flight_append<C: ConnectionLike + Send>(
    connection: &mut C,
    stream: &str,
    entries: &[(&str, Bytes)],
    ttl: Duration,
) -> Result<(), StoreError> {
    let mut pipe = redis::pipe();
    for (kind, data) in entries {
        pipe.cmd("XADD").arg(stream).arg("*").arg("kind").arg(*kind).arg("data").arg(data.as_ref()).ignore();
    }
    pipe.cmd("PEXPIRE").arg(stream).arg(ttl.as_millis() as u64).ignore();
    let _: () = pipe.query_async(connection).await?;
    Ok(())
}

/// The entries of `stream` after id `after`: (id, kind, data), oldest
/// first, waiting up to `block` for the first (on a reader's connection).
pub async fn flight_read<C: ConnectionLike + Send>(
    connection: &mut C,
    stream: &str,
    after: &str,
    block: Duration,
) -> Result<Vec<(String, String, Bytes)>, StoreError> {
    let entries = xread(connection, stream, after, Some(block)).await?;
    Ok(entries
        .into_iter()
        .map(|entry| {
            let kind = entry.get::<String>("kind").unwrap_or_default();
            let data = entry.get::<Vec<u8>>("data").unwrap_or_default();
            (entry.id, kind, Bytes::from(data))
        })
        .collect())
}
