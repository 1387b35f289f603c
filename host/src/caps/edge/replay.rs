//! A replay the edge tier keeps: a handler's offer, checked once when it is
//! kept, and rendered for each exact repeat with the host's fills.
//!
//! An offer is refused whole (never half kept) when its status, a header or
//! a vary name is not valid HTTP. The headers the host owns on every answer
//! (`Age`, `Cache-Status`, `X-Request-Id`, `X-Handler-Version`) and the
//! framing (`Content-Length`, `Transfer-Encoding`) are dropped from the
//! offer; the host writes them.

use std::cell::OnceCell;
use std::collections::VecDeque;
use std::convert::Infallible;
use std::fmt::Write as _;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use http_body::Frame;
use http_body_util::{BodyExt, Full};
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

use crate::bindings::llm_service::host::edge::{self, Fill, Segment};
use crate::bindings::llm_service::host::runtime::GenerationReport;

/// Headers an offer may not set: the host writes them on every answer.
const HOST_OWNED: &[&str] = &[
    "age",
    "cache-status",
    "x-request-id",
    "x-handler-version",
    "content-length",
    "transfer-encoding",
    "connection",
];
/// What a kept entry costs beyond its bytes (its structs, the map's entry).
const ENTRY_OVERHEAD_BYTES: usize = 256;

/// Why an offer was not kept (a metric label, and a debug line).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OfferError {
    /// The status is not an HTTP status.
    #[error("status {0} is not an HTTP status")]
    Status(u16),
    /// A header's name or value is not valid HTTP.
    #[error("header {0:?} is not valid HTTP")]
    Header(String),
    /// A vary entry names no valid header.
    #[error("vary names {0:?}, not a valid header")]
    Vary(String),
    /// Nothing to replay.
    #[error("the replay has no body chunks")]
    Empty,
}

impl OfferError {
    /// The metric label.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Status(_) => "status",
            Self::Header(_) => "header",
            Self::Vary(_) => "vary",
            Self::Empty => "empty",
        }
    }
}

/// A piece of a kept body.
#[derive(Debug, Clone, PartialEq)]
enum Piece {
    Literal(Bytes),
    Fill(Fill),
}

/// A kept replay.
#[derive(Debug)]
pub struct Replay {
    status: StatusCode,
    headers: HeaderMap,
    chunks: Vec<Vec<Piece>>,
    vary: Vec<(HeaderName, Option<HeaderValue>)>,
    /// How long it is served.
    pub fresh: Duration,
    age_s: u64,
    kept_at: Instant,
    /// Its purge tags.
    pub tags: Vec<String>,
    /// What each replay counts as.
    pub report: GenerationReport,
    /// Bytes it holds, for the tier's bound.
    pub weight: u32,
}

/// What differs between two replays of one answer.
#[derive(Debug, Clone, Copy)]
pub struct Fills<'a> {
    /// The request's id.
    pub request_id: &'a str,
    /// When the request arrived.
    pub started: Instant,
}

impl Replay {
    /// Checks `offer`; it is served for at most `fresh_for`.
    pub fn from_offer(offer: edge::Replay, fresh_for: Duration) -> Result<Self, OfferError> {
        let edge::Replay { status, headers: offered, chunks, vary, fresh_s, age_s, tags, report } = offer;
        let status = StatusCode::from_u16(status).map_err(|_| OfferError::Status(status))?;
        if chunks.is_empty() {
            return Err(OfferError::Empty);
        }
        let mut weight = ENTRY_OVERHEAD_BYTES;
        let mut headers = HeaderMap::with_capacity(offered.len());
        for (name, value) in offered {
            weight += name.len() + value.len();
            let invalid = || OfferError::Header(name.clone());
            let header_name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| invalid())?;
            let header_value = HeaderValue::from_str(&value).map_err(|_| invalid())?;
            if !HOST_OWNED.contains(&header_name.as_str()) {
                headers.append(header_name, header_value);
            }
        }
        let vary = vary
            .into_iter()
            .map(|edge::Vary { name, value }| {
                weight += name.len() + value.as_ref().map_or(0, String::len);
                let header_name =
                    HeaderName::from_bytes(name.as_bytes()).map_err(|_| OfferError::Vary(name))?;
                // A value that is not valid HTTP never arrives: no request matches it.
                let header_value = value.map(|value| HeaderValue::from_str(&value).ok());
                Ok((header_name, header_value.unwrap_or(None)))
            })
            .collect::<Result<Vec<_>, OfferError>>()?;
        let chunks: Vec<Vec<Piece>> = chunks
            .into_iter()
            .map(|segments| {
                segments
                    .into_iter()
                    .map(|segment| match segment {
                        Segment::Literal(bytes) => {
                            weight += bytes.len();
                            Piece::Literal(Bytes::from(bytes))
                        }
                        Segment::Fill(fill) => Piece::Fill(fill),
                    })
                    .collect()
            })
            .collect();
        weight += tags.iter().map(String::len).sum::<usize>();
        weight += report.model.len() + report.character.as_ref().map_or(0, String::len);
        weight += report.prompt.as_ref().map_or(0, String::len);
        Ok(Self {
            status,
            headers,
            chunks,
            vary,
            fresh: Duration::from_secs(fresh_s).min(fresh_for),
            age_s,
            kept_at: Instant::now(),
            tags,
            report,
            weight: u32::try_from(weight).unwrap_or(u32::MAX),
        })
    }

    /// Whether a request with `headers` is one this replay answers: the
    /// same value (or absence) of every header the handler named.
    pub fn matches(&self, headers: &HeaderMap) -> bool {
        self.vary.iter().all(|(name, value)| headers.get(name) == value.as_ref())
    }

    /// The answer for one more request, with `fills`; `Age` counts from
    /// the stored answer's age when it was offered.
    pub fn response(&self, fills: Fills<'_>) -> hyper::Response<HyperOutgoingBody> {
        let values = Values::new(fills);
        let mut chunks: VecDeque<Bytes> = self.chunks.iter().map(|pieces| render(pieces, &values)).collect();
        let body = if chunks.len() == 1 {
            let whole = chunks.pop_front().unwrap_or_default();
            Full::new(whole).map_err(|never: Infallible| match never {}).boxed_unsync()
        } else {
            Chunks(chunks).map_err(|never: Infallible| match never {}).boxed_unsync()
        };
        let mut response = hyper::Response::new(body);
        *response.status_mut() = self.status;
        *response.headers_mut() = self.headers.clone();
        let age = self.age_s.saturating_add(self.kept_at.elapsed().as_secs());
        response.headers_mut().insert(header::AGE, HeaderValue::from(age));
        response
    }
}

/// One response's fills: each is the same at every place it stands (every
/// chunk of a stream carries one id and one time).
struct Values<'a> {
    request_id: &'a str,
    now: SystemTime,
    elapsed: Duration,
    rfc3339: OnceCell<String>,
    random: OnceCell<u128>,
}

impl<'a> Values<'a> {
    fn new(fills: Fills<'a>) -> Self {
        Self {
            request_id: fills.request_id,
            now: SystemTime::now(),
            elapsed: fills.started.elapsed(),
            rfc3339: OnceCell::new(),
            random: OnceCell::new(),
        }
    }

    fn write(&self, out: &mut BytesMut, fill: Fill) -> std::fmt::Result {
        match fill {
            Fill::RequestId => out.write_str(self.request_id),
            Fill::UnixTimeS => {
                write!(out, "{}", self.now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs())
            }
            Fill::Rfc3339Time => out.write_str(
                self.rfc3339.get_or_init(|| humantime::format_rfc3339_nanos(self.now).to_string()),
            ),
            // Rust prints the shortest decimal that reads back the same,
            // never an exponent: a valid JSON number.
            Fill::ElapsedS => write!(out, "{}", self.elapsed.as_secs_f64()),
            Fill::ElapsedNs => write!(out, "{}", self.elapsed.as_nanos()),
            Fill::RandomId => write!(out, "{:032x}", self.random.get_or_init(|| fastrand::u128(..))),
        }
    }
}

/// `pieces` with the fills written in.
fn render(pieces: &[Piece], values: &Values<'_>) -> Bytes {
    if let [Piece::Literal(only)] = pieces {
        return only.clone();
    }
    let literal: usize =
        pieces.iter().map(|piece| if let Piece::Literal(bytes) = piece { bytes.len() } else { 0 }).sum();
    let mut out = BytesMut::with_capacity(literal + 40 * pieces.len());
    for piece in pieces {
        match piece {
            Piece::Literal(bytes) => out.extend_from_slice(bytes),
            // Writing into a BytesMut cannot fail.
            Piece::Fill(fill) => {
                let _ = values.write(&mut out, *fill);
            }
        }
    }
    out.freeze()
}

/// A body of chunks known up front, each its own frame (as the handler
/// wrote them), with no length: a replayed stream stays chunked.
struct Chunks(VecDeque<Bytes>);

impl http_body::Body for Chunks {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _context: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.0.pop_front().map(|chunk| Ok(Frame::data(chunk))))
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> GenerationReport {
        GenerationReport {
            character: Some("lois".into()),
            model: "m".into(),
            cache_hit: true,
            tokens_generated: 3,
            prompt_length: 5,
            status: 200,
            response_time_s: 0.0,
            error_kind: None,
            prompt: None,
        }
    }

    fn offer(chunks: Vec<Vec<Segment>>) -> edge::Replay {
        edge::Replay {
            status: 200,
            headers: vec![
                ("content-type".into(), "application/json".into()),
                ("x-request-id".into(), "stale-id".into()),
                ("age".into(), "99".into()),
            ],
            chunks,
            vary: vec![edge::Vary { name: "x-character".into(), value: Some("lois".into()) }],
            fresh_s: 60,
            age_s: 7,
            tags: vec!["llm_response:abc:lois:def".into()],
            report: report(),
        }
    }

    async fn body_text(response: hyper::Response<HyperOutgoingBody>) -> String {
        let bytes = response.into_body().collect().await.expect("an infallible body").to_bytes();
        String::from_utf8(bytes.to_vec()).expect("utf-8")
    }

    #[tokio::test]
    async fn fills_are_written_between_the_literals() {
        let literal = |text: &str| Segment::Literal(text.as_bytes().to_vec());
        let replay = Replay::from_offer(
            offer(vec![vec![
                literal("{\"id\":\"chatcmpl-"),
                Segment::Fill(Fill::RandomId),
                literal("\",\"rid\":\""),
                Segment::Fill(Fill::RequestId),
                literal("\",\"t\":"),
                Segment::Fill(Fill::ElapsedS),
                literal("}"),
            ]]),
            Duration::from_secs(3600),
        )
        .expect("a valid offer");
        let fills = Fills { request_id: "req-1", started: Instant::now() };
        let first = body_text(replay.response(fills)).await;
        let second = body_text(replay.response(fills)).await;
        let parsed: serde_json::Value = serde_json::from_str(&first).expect("valid JSON");
        assert_eq!(parsed["rid"], "req-1");
        assert!(parsed["t"].is_f64(), "elapsed seconds are a number: {first}");
        let id = parsed["id"].as_str().expect("an id");
        assert_eq!(id.len(), "chatcmpl-".len() + 32, "{id}");
        assert_ne!(first, second, "each replay gets a fresh random id");
    }

    #[test]
    fn host_owned_headers_are_dropped_and_age_counts_from_the_offer() {
        let replay = Replay::from_offer(offer(vec![vec![]]), Duration::from_secs(10)).expect("valid");
        let response = replay.response(Fills { request_id: "r", started: Instant::now() });
        assert!(response.headers().get("x-request-id").is_none());
        assert_eq!(response.headers()["age"], "7");
        assert_eq!(response.headers()["content-type"], "application/json");
        assert_eq!(replay.fresh, Duration::from_secs(10), "never fresher than the cached answer");
    }

    #[test]
    fn vary_matches_only_the_same_header_values() {
        let replay = Replay::from_offer(offer(vec![vec![]]), Duration::from_secs(10)).expect("valid");
        let mut headers = HeaderMap::new();
        assert!(!replay.matches(&headers), "absent is not lois");
        headers.insert("x-character", HeaderValue::from_static("lois"));
        assert!(replay.matches(&headers));
        headers.insert("x-character", HeaderValue::from_static("peter"));
        assert!(!replay.matches(&headers));
    }

    #[test]
    fn an_invalid_offer_is_refused_whole() {
        let mut bad = offer(vec![vec![]]);
        bad.headers.push(("bad header".into(), "x".into()));
        assert_eq!(
            Replay::from_offer(bad, Duration::from_secs(1)).unwrap_err(),
            OfferError::Header("bad header".into())
        );
        let mut bad = offer(vec![vec![]]);
        bad.status = 1000;
        assert_eq!(Replay::from_offer(bad, Duration::from_secs(1)).unwrap_err(), OfferError::Status(1000));
        assert_eq!(Replay::from_offer(offer(vec![]), Duration::from_secs(1)).unwrap_err(), OfferError::Empty);
    }
}
