//! A node's answer judged, so a node that answers fast with junk is ejected
//! instead of drawing the pool's traffic (outlier ejection, as Envoy does).
//!
//! A 2xx answer counts for its node only once it has proved well-formed:
//! - a whole answer (JSON) is one JSON object without an `error` member;
//! - a streamed one (`application/x-ndjson`, or SSE's `text/event-stream`) is
//!   lines of JSON objects (SSE: `data:` lines, `[DONE]`, comments and the
//!   other SSE fields) without an `error` member, ending at a line's end;
//!   an Ollama generation's stream (`/api/generate`, `/api/chat`) also has
//!   its `"done": true` line.
//!
//! Anything else (unparseable bytes, an error line, a stream cut short or
//! timing out) counts against the node as a 5xx does. The first look (the
//! whole answer, or a stream's first line) is taken before the component
//! sees the answer, so junk there moves the call to another node; junk later
//! in a stream still reaches the component, which ends it with an error.
//! A [`Verdict`] is given once per call, by whoever judges first.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use serde::Deserialize;
use serde::de::IgnoredAny;

use super::node::{Node, Probe};
use super::{NodeLease, Pool};
use crate::caps::backend::client::{AnswerEnd, AnswerGuard, Framing};

/// The members of a JSON object (a whole answer, a line) that decide.
#[derive(Deserialize)]
struct Members {
    error: Option<IgnoredAny>,
    done: Option<IgnoredAny>,
}

/// What a look at part of an answer found.
#[derive(Debug, PartialEq, Eq)]
enum Look {
    /// Nothing to judge (a blank line, an SSE comment).
    Nothing,
    /// A good line.
    Line,
    /// The stream's last line (`done`, `[DONE]`).
    Last,
}

/// Judges one JSON object: junk, an error, or good (`done` present).
fn object(bytes: &[u8]) -> Result<bool, String> {
    let trimmed = bytes.trim_ascii();
    if trimmed.first() != Some(&b'{') {
        return Err("not a JSON object".into());
    }
    let members: Members = serde_json::from_slice(trimmed).map_err(|error| format!("not JSON: {error}"))?;
    if members.error.is_some() {
        return Err("an error in a 2xx answer".into());
    }
    Ok(members.done.is_some())
}

fn line(framing: Framing, line: &[u8]) -> Result<Look, String> {
    let line = line.trim_ascii();
    if line.is_empty() {
        return Ok(Look::Nothing);
    }
    match framing {
        Framing::Whole | Framing::Ndjson => Ok(if object(line)? { Look::Last } else { Look::Line }),
        Framing::Sse => {
            if let Some(data) = line.strip_prefix(b"data:") {
                let data = data.trim_ascii();
                return if data == b"[DONE]" { Ok(Look::Last) } else { object(data).map(|_| Look::Line) };
            }
            let field = [&b":"[..], b"event:", b"id:", b"retry:"];
            if field.iter().any(|prefix| line.starts_with(prefix)) {
                Ok(Look::Nothing)
            } else {
                Err("not a server-sent event".into())
            }
        }
    }
}

/// Judges a whole answer; an empty one is good unless `required` (an
/// Ollama copy or delete answers 200 with nothing; a generation may not).
pub fn whole(body: &[u8], required: bool) -> Result<(), String> {
    if !required && body.trim_ascii().is_empty() {
        return Ok(());
    }
    object(body).map(|_| ())
}

/// Judges a stream's first line (`head` holds it whole): whether the call
/// should stay on its node.
pub fn first_line(framing: Framing, head: &[u8]) -> Result<(), String> {
    let end = memchr::memchr(b'\n', head).unwrap_or(head.len());
    line(framing, &head[..end]).map(|_| ())
}

/// A body whose first chunks were read ahead (to judge its first line)
/// and are given back before the rest.
pub struct ReadAhead<B> {
    ahead: std::collections::VecDeque<Bytes>,
    rest: B,
}

impl<B> ReadAhead<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    /// Reads `body` up to its first line's end (or its end) and judges
    /// that line in `framing`: the body to give on, or why it is junk.
    pub async fn first_line(mut rest: B, framing: Framing) -> Result<Self, (String, Option<B::Error>)> {
        let mut ahead = std::collections::VecDeque::new();
        let mut head = Vec::new();
        while memchr::memchr(b'\n', &head).is_none() {
            match rest.frame().await {
                None => break,
                Some(Err(error)) => return Err(("its answer broke off".into(), Some(error))),
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        head.extend_from_slice(&data);
                        ahead.push_back(data);
                    }
                }
            }
        }
        match first_line(framing, &head) {
            Ok(()) => Ok(Self { ahead, rest }),
            Err(why) => Err((why, None)),
        }
    }
}

impl<B> Body for ReadAhead<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        if let Some(data) = self.ahead.pop_front() {
            return std::task::Poll::Ready(Some(Ok(Frame::data(data))));
        }
        std::pin::Pin::new(&mut self.rest).poll_frame(cx)
    }
}

/// One call's verdict on its node, given at most once. One never given
/// (the call abandoned, or the client's mistake) frees the node's trial
/// when dropped, so a half-open node is never left waiting on a call that
/// will not judge it.
pub struct Verdict {
    node: Arc<Node>,
    pool: Arc<Pool>,
    given: AtomicBool,
}

impl Verdict {
    /// The verdict on `lease`'s node.
    pub fn new(lease: &NodeLease) -> Arc<Self> {
        Arc::new(Self { node: lease.node().clone(), pool: lease.pool.clone(), given: AtomicBool::new(false) })
    }

    /// The node did its part.
    pub fn good(&self) {
        if !self.given.swap(true, Ordering::AcqRel) {
            self.pool.succeeded(&self.node, Probe::Call);
        }
    }

    /// The node answered `why`: it counts against it.
    pub fn bad(&self, why: &str) {
        if !self.given.swap(true, Ordering::AcqRel) {
            tracing::warn!(cap = "backend", node = %self.node.spec.name, %why, "backend node answered badly");
            self.pool.failed(&self.node, Probe::Call);
        }
    }
}

impl Drop for Verdict {
    fn drop(&mut self) {
        if !*self.given.get_mut() {
            self.node.unjudged();
        }
    }
}

/// A node's slot held by a call whose streamed answer is judged as it
/// passes; a whole answer is judged by the caller, which reads it first.
pub struct JudgedLease {
    _lease: NodeLease,
    verdict: Arc<Verdict>,
    stream: Option<StreamCheck>,
    /// An Ollama generation: its stream must say `done`.
    generation: bool,
}

impl JudgedLease {
    /// Judges the answer on `lease` with `verdict`; `generation` says the
    /// call is an Ollama generation.
    pub fn new(lease: NodeLease, verdict: Arc<Verdict>, generation: bool) -> Self {
        Self { _lease: lease, verdict, stream: None, generation }
    }
}

/// A stream's lines checked as they go: the line not yet ended, and what
/// was found.
struct StreamCheck {
    framing: Framing,
    partial: Vec<u8>,
    last_seen: bool,
    junk: Option<String>,
}

/// The longest line kept to judge; a longer one is judged by its start.
const MAX_LINE: usize = 1 << 20;

impl StreamCheck {
    fn feed(&mut self, mut data: &[u8]) {
        while self.junk.is_none() {
            let Some(end) = memchr::memchr(b'\n', data) else {
                if self.partial.len() < MAX_LINE {
                    self.partial.extend_from_slice(&data[..data.len().min(MAX_LINE - self.partial.len())]);
                }
                return;
            };
            let whole_line = if self.partial.is_empty() {
                line(self.framing, &data[..end])
            } else {
                self.partial.extend_from_slice(&data[..end.min(MAX_LINE)]);
                let found = line(self.framing, &self.partial);
                self.partial.clear();
                found
            };
            match whole_line {
                Ok(Look::Last) => self.last_seen = true,
                Ok(_) => {}
                Err(why) => self.junk = Some(why),
            }
            data = &data[end + 1..];
        }
    }

    fn finish(mut self, needs_last: bool) -> Result<(), String> {
        if !self.partial.trim_ascii().is_empty() {
            let rest = std::mem::take(&mut self.partial);
            self.feed(&rest);
            self.feed(b"\n");
        }
        if let Some(why) = self.junk {
            return Err(why);
        }
        if needs_last && !self.last_seen {
            return Err("the stream ended before its done line".into());
        }
        Ok(())
    }
}

impl AnswerGuard for JudgedLease {
    fn head(&mut self, status: StatusCode, headers: &HeaderMap) {
        let framing = Framing::of(headers);
        if status.is_success() && framing != Framing::Whole {
            self.stream = Some(StreamCheck { framing, partial: Vec::new(), last_seen: false, junk: None });
        }
    }

    fn chunk(&mut self, data: &[u8]) {
        if let Some(stream) = &mut self.stream {
            stream.feed(data);
        }
    }

    fn ended(self, how: AnswerEnd) {
        match (how, self.stream) {
            // Its caller stopped reading after the last line: the node did
            // its part (the trial that proves a node back is often this).
            (AnswerEnd::Abandoned, Some(stream)) if stream.last_seen && stream.junk.is_none() => {
                self.verdict.good()
            }
            (AnswerEnd::Abandoned, _) => {}
            (AnswerEnd::Failed, _) => self.verdict.bad("its answer broke off"),
            (AnswerEnd::Finished, Some(stream)) => {
                let needs_last = self.generation && stream.framing == Framing::Ndjson;
                match stream.finish(needs_last) {
                    Ok(()) => self.verdict.good(),
                    Err(why) => self.verdict.bad(&why),
                }
            }
            // A whole answer, or a status answer: the caller judged it.
            (AnswerEnd::Finished, None) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(framing: Framing, chunks: &[&[u8]], needs_last: bool) -> Result<(), String> {
        let mut check = StreamCheck { framing, partial: Vec::new(), last_seen: false, junk: None };
        for chunk in chunks {
            check.feed(chunk);
        }
        check.finish(needs_last)
    }

    #[test]
    fn a_whole_answer_is_one_object_without_an_error() {
        assert!(whole(br#"{"response":"hi","done":true}"#, true).is_ok());
        assert!(whole(b"<html>oops</html>", true).is_err());
        assert!(whole(br#"{"response":"cut"#, true).is_err());
        assert!(whole(br#"{"error":"out of memory"}"#, true).is_err());
        assert!(whole(b"[1,2]", true).is_err());
        assert!(whole(b"", false).is_ok() && whole(b"", true).is_err(), "a copy's empty 200");
    }

    #[test]
    fn an_ollama_stream_is_json_lines_ending_with_done_even_across_chunks() {
        let good: &[&[u8]] = &[b"{\"response\":\"a\"}\n{\"resp", b"onse\":\"b\"}\n", b"{\"done\":true}\n"];
        assert_eq!(stream(Framing::Ndjson, good, true), Ok(()));
        assert!(stream(Framing::Ndjson, &good[..2], true).is_err(), "no done line");
        assert!(stream(Framing::Ndjson, &good[..2], false).is_ok(), "a pull's progress needs none");
        assert!(stream(Framing::Ndjson, &[b"{\"response\":\"a\"}\nnot json\n"], false).is_err());
        assert!(stream(Framing::Ndjson, &[b"{\"done\":true}\n{\"respo"], true).is_err(), "cut mid-line");
        assert!(stream(Framing::Ndjson, &[b"{\"error\":\"boom\"}\n"], false).is_err());
    }

    #[test]
    fn an_sse_stream_is_data_lines_and_the_other_fields() {
        let good: &[&[u8]] = &[b": ping\n\nevent: x\ndata: {\"choices\":[]}\n\n", b"data: [DONE]\n\n"];
        assert_eq!(stream(Framing::Sse, good, false), Ok(()));
        assert!(stream(Framing::Sse, &[b"data: junk\n\n"], false).is_err());
        assert!(stream(Framing::Sse, &[b"hello\n"], false).is_err());
        assert_eq!(first_line(Framing::Sse, b"data: {\"a\":1}\n\ndata: [DONE]"), Ok(()));
        assert!(first_line(Framing::Ndjson, b"<html>\n").is_err());
    }
}
