//! What makes two responses carrying the same answer differ: the time, the
//! time taken, fresh ids. A dialect's framing asks a [`Stamp`] for each
//! such value instead of reading the clock itself.
//!
//! A live stamp gives the values (the same id and `created` to every chunk
//! of one response). A template stamp gives markers instead, which
//! [`Stamp::segments`] turns into the host's fills (`llm-service:host/edge`),
//! so the edge tier can replay the answer with values of its own without
//! parsing JSON. A marker is a private-use character, a random nonce and a
//! letter; a number's marker is rendered as a JSON string and its quotes
//! are dropped with it.

use std::cell::OnceCell;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use llm_service_sdk::bindings::llm_service::host::edge::{Fill, Segment};
use serde_json::{Value, json};

/// Opens and closes a marker (a private-use code point serde_json writes as is).
const MARK: char = '\u{E000}';

/// The values one response carries.
pub struct Stamp {
    kind: Kind,
}

enum Kind {
    Live { started: Instant, id: OnceCell<String>, created: OnceCell<u64> },
    Template { nonce: String },
}

impl Stamp {
    /// Live values, for a request that arrived at `started`.
    pub fn live(started: Instant) -> Self {
        Self { kind: Kind::Live { started, id: OnceCell::new(), created: OnceCell::new() } }
    }

    /// Markers, for a replay's template.
    pub fn template() -> Self {
        let nonce = llm_service_sdk::bindings::wasi::random::random::get_random_u64();
        Self { kind: Kind::Template { nonce: format!("{nonce:016x}") } }
    }

    /// When the request arrived (now, for a template).
    pub fn started(&self) -> Instant {
        match &self.kind {
            Kind::Live { started, .. } => *started,
            Kind::Template { .. } => Instant::now(),
        }
    }

    fn marker(&self, fill: Fill) -> Option<Value> {
        let Kind::Template { nonce } = &self.kind else { return None };
        Some(json!(format!("{MARK}{nonce}{}{MARK}", letter(fill))))
    }

    /// Seconds since the request arrived (the seed's `generation_time`).
    pub fn elapsed_s(&self) -> Value {
        self.marker(Fill::ElapsedS).unwrap_or_else(|| json!(self.started().elapsed().as_secs_f64()))
    }

    /// Nanoseconds since the request arrived (Ollama's durations).
    pub fn elapsed_ns(&self) -> Value {
        self.marker(Fill::ElapsedNs)
            .unwrap_or_else(|| json!(u64::try_from(self.started().elapsed().as_nanos()).unwrap_or(u64::MAX)))
    }

    /// Now, RFC 3339 with nanoseconds (Ollama's `created_at`).
    pub fn now_rfc3339(&self) -> Value {
        self.marker(Fill::Rfc3339Time)
            .unwrap_or_else(|| json!(humantime::format_rfc3339_nanos(SystemTime::now()).to_string()))
    }

    /// The response's time in whole seconds since the epoch (OpenAI's
    /// `created`), the same for every chunk.
    pub fn created(&self) -> Value {
        match &self.kind {
            Kind::Live { created, .. } => json!(*created.get_or_init(|| {
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|elapsed| elapsed.as_secs())
                    .unwrap_or_default()
            })),
            Kind::Template { .. } => self.marker(Fill::UnixTimeS).unwrap_or_default(),
        }
    }

    /// An id of the response, `prefix` and a unique part: the part is the
    /// same for every chunk and every prefix (a response's items share it).
    pub fn answer_id(&self, prefix: &str) -> Value {
        match &self.kind {
            Kind::Live { id, .. } => {
                json!(format!("{prefix}{}", id.get_or_init(|| crate::dialect::answer_id(""))))
            }
            Kind::Template { nonce } => {
                json!(format!("{prefix}{MARK}{nonce}{}{MARK}", letter(Fill::RandomId)))
            }
        }
    }

    /// `rendered` (made with this template stamp) as literal bytes and
    /// fills; a live stamp's output is one literal.
    pub fn segments(&self, rendered: &[u8]) -> Vec<Segment> {
        let Kind::Template { nonce } = &self.kind else { return vec![Segment::Literal(rendered.to_vec())] };
        let Ok(text) = std::str::from_utf8(rendered) else {
            return vec![Segment::Literal(rendered.to_vec())];
        };
        let opening = format!("{MARK}{nonce}");
        let mut segments = Vec::new();
        let mut literal: Vec<u8> = Vec::new();
        let mut rest = text;
        while let Some(at) = rest.find(&opening) {
            let after = &rest[at + opening.len()..];
            let mut chars = after.chars();
            let (Some(code), Some(MARK)) = (chars.next(), chars.next()) else {
                // Not one of ours after all: keep the bytes.
                literal.extend_from_slice(&rest.as_bytes()[..at + opening.len()]);
                rest = after;
                continue;
            };
            let Some(fill) = fill_of(code) else {
                literal.extend_from_slice(&rest.as_bytes()[..at + opening.len()]);
                rest = after;
                continue;
            };
            let mut before = &rest.as_bytes()[..at];
            let mut next = &after[code.len_utf8() + MARK.len_utf8()..];
            // A number's marker stood in a JSON string: drop its quotes.
            if is_number(fill) && before.ends_with(b"\"") && next.starts_with('"') {
                before = &before[..before.len() - 1];
                next = &next[1..];
            }
            literal.extend_from_slice(before);
            if !literal.is_empty() {
                segments.push(Segment::Literal(std::mem::take(&mut literal)));
            }
            segments.push(Segment::Fill(fill));
            rest = next;
        }
        literal.extend_from_slice(rest.as_bytes());
        if !literal.is_empty() {
            segments.push(Segment::Literal(literal));
        }
        segments
    }
}

fn letter(fill: Fill) -> char {
    match fill {
        Fill::RequestId => 'i',
        Fill::UnixTimeS => 'u',
        Fill::Rfc3339Time => 't',
        Fill::ElapsedS => 's',
        Fill::ElapsedNs => 'n',
        Fill::RandomId => 'r',
    }
}

fn fill_of(letter: char) -> Option<Fill> {
    Some(match letter {
        'i' => Fill::RequestId,
        'u' => Fill::UnixTimeS,
        't' => Fill::Rfc3339Time,
        's' => Fill::ElapsedS,
        'n' => Fill::ElapsedNs,
        'r' => Fill::RandomId,
        _ => return None,
    })
}

fn is_number(fill: Fill) -> bool {
    matches!(fill, Fill::UnixTimeS | Fill::ElapsedS | Fill::ElapsedNs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template(nonce: &str) -> Stamp {
        Stamp { kind: Kind::Template { nonce: nonce.into() } }
    }

    #[test]
    fn a_template_becomes_literals_and_fills_with_numbers_unquoted() {
        let stamp = template("00ab");
        let body = json!({"created": stamp.created(), "id": stamp.answer_id("chatcmpl-"), "text": "a \"quoted\" answer"});
        let segments = stamp.segments(body.to_string().as_bytes());
        let rendered: String = segments
            .iter()
            .map(|segment| match segment {
                Segment::Literal(bytes) => String::from_utf8(bytes.clone()).expect("utf-8"),
                Segment::Fill(Fill::UnixTimeS) => "1700000000".into(),
                Segment::Fill(Fill::RandomId) => "f00d".into(),
                Segment::Fill(other) => panic!("unexpected fill {other:?}"),
            })
            .collect();
        let parsed: Value = serde_json::from_str(&rendered).expect("the filled template is JSON");
        assert_eq!(
            parsed,
            json!({"created": 1_700_000_000u64, "id": "chatcmpl-f00d", "text": "a \"quoted\" answer"})
        );
    }

    #[test]
    fn text_that_looks_like_a_marker_of_another_nonce_stays_literal() {
        let stamp = template("00ab");
        let other = template("ffff");
        let body = json!({"text": other.elapsed_s()}).to_string();
        let segments = stamp.segments(body.as_bytes());
        assert!(matches!(segments.as_slice(), [Segment::Literal(bytes)] if bytes == body.as_bytes()));
    }

    #[test]
    fn a_live_stamp_gives_one_id_and_time_per_response() {
        let stamp = Stamp::live(Instant::now());
        assert_eq!(stamp.answer_id("x-"), stamp.answer_id("x-"));
        let (resp, msg) = (stamp.answer_id("resp_"), stamp.answer_id("msg_"));
        assert_eq!(resp.as_str().unwrap().strip_prefix("resp_"), msg.as_str().unwrap().strip_prefix("msg_"));
        assert_eq!(stamp.created(), stamp.created());
        assert!(stamp.elapsed_s().is_f64());
    }
}
