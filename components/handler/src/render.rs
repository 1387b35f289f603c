//! Answers in the seed's shapes: a whole JSON response, NDJSON lines, a
//! batch item; with `X-Cache`, and `Age` on answers from the cache.

use llm_service_sdk::http::{BodyWriter, ClientGone, Response};
use serde_json::{Map, Value, json};

use crate::pipeline::{Answer, CacheUse, Outcome};
use crate::stamp::Stamp;

/// The seed's response body for `answer`.
pub fn answer_body(answer: &Answer, stamp: &Stamp) -> Map<String, Value> {
    let Answer { stored, cache_use, .. } = answer;
    let mut body = Map::new();
    body.insert("response".into(), json!(stored.response));
    body.insert("model".into(), json!(stored.model));
    body.insert("generation_time".into(), stamp.elapsed_s());
    body.insert("cache_hit".into(), json!(cache_use.served_from_cache()));
    body.insert(
        "metadata".into(),
        json!({
            "temperature": stored.temperature,
            "tokens_generated": stored.tokens_generated,
            "prompt_hash": stored.prompt_hash,
        }),
    );
    if *cache_use == CacheUse::Stale {
        body.insert("stale".into(), json!(true));
    }
    body
}

/// `X-Cache` for `cache_use`, and `Age` on answers from the cache.
pub fn with_cache_headers(response: Response, cache_use: CacheUse, age_s: u64) -> Response {
    let response = response.with_header("x-cache", cache_use.header());
    if cache_use.served_from_cache() { response.with_header("age", &age_s.to_string()) } else { response }
}

/// The whole HTTP answer for `outcome`.
pub fn whole(outcome: &Outcome, stamp: &Stamp) -> Response {
    match outcome {
        Ok(answer) => with_cache_headers(
            Response::json(200, &answer_body(answer, stamp)),
            answer.cache_use,
            answer.age_s,
        ),
        Err(error) => error.response(),
    }
}

/// A batch item: the answer's body, or the error's with its status.
pub fn batch_item(outcome: &Outcome, stamp: &Stamp) -> Value {
    match outcome {
        Ok(answer) => Value::Object(answer_body(answer, stamp)),
        Err(error) => {
            let mut body = error.body();
            body.insert("status".into(), json!(error.status()));
            Value::Object(body)
        }
    }
}

/// A streamed piece: `{"response": piece, "done": false}`.
pub fn piece_line(writer: &mut BodyWriter, piece: &str) -> Result<(), ClientGone> {
    write_line(writer, &json!({"response": piece, "done": false}))
}

/// The last line of a stream: the whole answer plus `"done": true`, or the
/// error plus `"done": true`.
pub fn last_line(writer: &mut BodyWriter, outcome: &Outcome, stamp: &Stamp) -> Result<(), ClientGone> {
    let mut last = match outcome {
        Ok(answer) => answer_body(answer, stamp),
        Err(error) => error.body(),
    };
    last.insert("done".into(), json!(true));
    write_line(writer, &Value::Object(last))
}

/// `value` as one NDJSON line.
pub fn write_line(writer: &mut BodyWriter, value: &Value) -> Result<(), ClientGone> {
    let mut line = value.to_string();
    line.push('\n');
    writer.write(line.as_bytes())
}
