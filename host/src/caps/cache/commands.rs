//! The commands both shared tiers send, for any connection (one node or a
//! cluster): a value with its remaining lifetime, and what
//! [`super::events`] needs (streams and plain text keys).

use std::time::Duration;

use bytes::Bytes;
use redis::aio::ConnectionLike;
use redis::streams::{StreamRangeReply, StreamReadReply};

use super::TierError;

/// Events read per poll at most.
const READ_COUNT: usize = 100;

fn parsing(error: impl std::fmt::Display) -> TierError {
    TierError(format!("unexpected reply: {error}"))
}

/// The bytes under `key` and their remaining lifetime (`GET` and `PTTL` in
/// one round trip; one key, so one node of a cluster).
pub(super) async fn get_with_ttl<C: ConnectionLike + Send>(
    connection: &mut C,
    key: &str,
) -> Result<Option<(Bytes, Duration)>, TierError> {
    let (value, ttl_ms): (Option<Vec<u8>>, i64) =
        redis::pipe().get(key).cmd("PTTL").arg(key).query_async(connection).await?;
    // PTTL is -1 for a key without expiry (never set by us) and -2 for one
    // that vanished between the two commands.
    Ok(value.filter(|_| ttl_ms > 0).map(|value| (Bytes::from(value), Duration::from_millis(ttl_ms as u64))))
}

/// `XADD stream MAXLEN ~ keep * event payload`.
pub(super) async fn append<C: ConnectionLike + Send>(
    connection: &mut C,
    stream: &str,
    payload: &str,
    keep: usize,
) -> Result<(), TierError> {
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

/// `XREAD COUNT n STREAMS stream after`, as (id, event payload).
pub(super) async fn read_after<C: ConnectionLike + Send>(
    connection: &mut C,
    stream: &str,
    after: &str,
) -> Result<Vec<(String, String)>, TierError> {
    let reply: Option<StreamReadReply> = redis::cmd("XREAD")
        .arg("COUNT")
        .arg(READ_COUNT)
        .arg("STREAMS")
        .arg(stream)
        .arg(after)
        .query_async(connection)
        .await?;
    Ok(reply
        .into_iter()
        .flat_map(|reply| reply.keys)
        .flat_map(|key| key.ids)
        .map(|entry| {
            let payload = entry.get::<String>("event").unwrap_or_default();
            (entry.id, payload)
        })
        .collect())
}

/// The id of `stream`'s last entry, "0-0" when it has none.
pub(super) async fn last_id<C: ConnectionLike + Send>(
    connection: &mut C,
    stream: &str,
) -> Result<String, TierError> {
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
pub(super) async fn get_raw<C: ConnectionLike + Send>(
    connection: &mut C,
    key: &str,
) -> Result<Option<Vec<u8>>, TierError> {
    Ok(redis::cmd("GET").arg(key).query_async(connection).await?)
}

/// `SET key value`, without expiry.
pub(super) async fn set_raw<C: ConnectionLike + Send>(
    connection: &mut C,
    key: &str,
    value: &[u8],
) -> Result<(), TierError> {
    let _: () = redis::cmd("SET").arg(key).arg(value).query_async(connection).await?;
    Ok(())
}

/// `HSET key field value`.
pub(super) async fn hash_set<C: ConnectionLike + Send>(
    connection: &mut C,
    key: &str,
    field: &str,
    value: &str,
) -> Result<(), TierError> {
    let _: i64 = redis::cmd("HSET").arg(key).arg(field).arg(value).query_async(connection).await?;
    Ok(())
}

/// `HGETALL key` as (field, value) pairs.
pub(super) async fn hash_all<C: ConnectionLike + Send>(
    connection: &mut C,
    key: &str,
) -> Result<Vec<(String, String)>, TierError> {
    let map: std::collections::BTreeMap<String, String> =
        redis::cmd("HGETALL").arg(key).query_async(connection).await?;
    Ok(map.into_iter().collect())
}

/// `HDEL key field`.
pub(super) async fn hash_delete<C: ConnectionLike + Send>(
    connection: &mut C,
    key: &str,
    field: &str,
) -> Result<(), TierError> {
    let _: i64 = redis::cmd("HDEL").arg(key).arg(field).query_async(connection).await?;
    Ok(())
}
