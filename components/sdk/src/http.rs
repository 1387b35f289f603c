//! Requests and responses as plain values over `wasi:http/types`.
//!
//! [`Request::read`] drains the incoming body into memory (the host has
//! already bounded its size) and [`Response::send`] writes status, headers and
//! body back through the response out-parameter.
//!
//! Every call into the host costs time on the hottest path (a cache hit makes
//! about thirty), so this layer makes none it can avoid: headers are fetched
//! on the first [`Request::header`], an empty GET body is not read, a body's
//! trailers are never asked for, and a 200 is not set (it is the default).

use crate::Handler;
use crate::bindings::wasi::http::types::{
    Fields, IncomingRequest, Method, OutgoingBody, OutgoingResponse, ResponseOutparam,
};
use crate::bindings::wasi::io::streams::StreamError;

/// The most a single `blocking-write-and-flush` call may carry (wasi:io).
const WRITE_CHUNK_BYTES: usize = 4096;
/// How much one read of the request body asks for.
const READ_CHUNK_BYTES: u64 = 64 * 1024;

/// An incoming request with its body read in full.
pub struct Request {
    method: String,
    path: String,
    query: Option<String>,
    /// Kept to fetch the headers when first asked for.
    incoming: IncomingRequest,
    headers: std::cell::OnceCell<Vec<(String, Vec<u8>)>>,
    body: Vec<u8>,
}

impl std::fmt::Debug for Request {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Request")
            .field("method", &self.method)
            .field("path", &self.path)
            .field("query", &self.query)
            .field("body_bytes", &self.body.len())
            .finish_non_exhaustive()
    }
}

impl Request {
    /// Reads method, path, headers and the whole body of `request`.
    pub fn read(request: IncomingRequest) -> Result<Self, String> {
        let method = method_name(&request.method());
        let path_with_query = request.path_with_query().unwrap_or_else(|| "/".to_string());
        let (path, query) = match path_with_query.split_once('?') {
            Some((path, query)) => (path.to_string(), Some(query.to_string())),
            None => (path_with_query, None),
        };
        // A GET or HEAD has no body worth reading: skip the host calls.
        let body = if matches!(method.as_str(), "GET" | "HEAD") { Vec::new() } else { read_body(&request)? };
        Ok(Self { method, path, query, incoming: request, headers: std::cell::OnceCell::new(), body })
    }

    /// The method, upper case (`GET`, `POST`, ...).
    pub fn method(&self) -> &str {
        &self.method
    }

    /// The path, without the query string.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The raw query string, if any.
    pub fn query(&self) -> Option<&str> {
        self.query.as_deref()
    }

    /// The first value of query parameter `name` (no percent-decoding).
    pub fn query_param(&self, name: &str) -> Option<&str> {
        self.query()?
            .split('&')
            .filter_map(|pair| pair.split_once('='))
            .find(|(key, _)| *key == name)
            .map(|(_, value)| value)
    }

    /// The first value of header `name` (case-insensitive), if it is UTF-8.
    /// The first call fetches every header from the host.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get_or_init(|| self.incoming.headers().entries())
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .and_then(|(_, value)| std::str::from_utf8(value).ok())
    }

    /// The authority the client asked for (`Host`: `host:port`), if any.
    pub fn authority(&self) -> Option<String> {
        self.incoming.authority()
    }

    /// The body bytes.
    pub fn body(&self) -> &[u8] {
        &self.body
    }
}

fn read_body(request: &IncomingRequest) -> Result<Vec<u8>, String> {
    let body = request.consume().map_err(|()| "request body already consumed".to_string())?;
    let stream = body.stream().map_err(|()| "request body stream unavailable".to_string())?;
    let mut bytes = Vec::new();
    loop {
        match stream.blocking_read(READ_CHUNK_BYTES) {
            Ok(chunk) => bytes.extend_from_slice(&chunk),
            Err(StreamError::Closed) => break,
            Err(StreamError::LastOperationFailed(error)) => {
                return Err(format!("reading request body: {}", error.to_debug_string()));
            }
        }
    }
    // Dropped, not finished: finishing would ask for trailers nobody reads.
    drop(stream);
    drop(body);
    Ok(bytes)
}

fn method_name(method: &Method) -> String {
    match method {
        Method::Get => "GET",
        Method::Head => "HEAD",
        Method::Post => "POST",
        Method::Put => "PUT",
        Method::Delete => "DELETE",
        Method::Connect => "CONNECT",
        Method::Options => "OPTIONS",
        Method::Trace => "TRACE",
        Method::Patch => "PATCH",
        Method::Other(other) => return other.to_ascii_uppercase(),
    }
    .to_string()
}

/// A response to send: status, headers and a complete body.
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    /// A response with `status`, `content-type` and `body`.
    pub fn new(status: u16, content_type: &str, body: Vec<u8>) -> Self {
        Self { status, headers: vec![("content-type".into(), content_type.into())], body }
    }

    /// A JSON response. Serialising a `serde_json::Value` or a plain struct
    /// cannot fail; anything else that does becomes a 500 saying so.
    pub fn json(status: u16, value: &impl serde::Serialize) -> Self {
        match serde_json::to_vec(value) {
            Ok(body) => Self::new(status, "application/json", body),
            Err(error) => Self::error(500, &format!("serialising response: {error}")),
        }
    }

    /// The service's error shape: `{"error": message}`.
    pub fn error(status: u16, message: &str) -> Self {
        let body = serde_json::json!({ "error": message });
        Self::new(status, "application/json", body.to_string().into_bytes())
    }

    /// A plain-text response.
    pub fn text(status: u16, text: &str) -> Self {
        Self::new(status, "text/plain; charset=utf-8", text.as_bytes().to_vec())
    }

    /// Adds a header.
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// The status code.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The body bytes.
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(key, _)| key.eq_ignore_ascii_case(name)).map(|(_, value)| value.as_str())
    }

    /// Every header, in order.
    pub fn headers(&self) -> &[(String, String)] {
        &self.headers
    }

    /// Writes the response through `out`. A client that went away ends the
    /// write early; there is nobody left to tell.
    pub fn send(mut self, out: ResponseOutparam) {
        let body = std::mem::take(&mut self.body);
        let length = body.len().to_string();
        self.with_header("content-length", &length).stream(
            out,
            Box::new(move |writer| {
                let _ = writer.write(&body);
            }),
        );
    }

    /// Sends status and headers, then lets `write` produce the body.
    fn stream(self, out: ResponseOutparam, write: Box<dyn FnOnce(&mut BodyWriter)>) {
        let entries: Vec<(String, Vec<u8>)> =
            self.headers.into_iter().map(|(name, value)| (name, value.into_bytes())).collect();
        let headers = match Fields::from_list(&entries) {
            Ok(headers) => headers,
            Err(error) => {
                let message = format!("invalid response header: {error:?}");
                return Response::error(500, &message).send(out);
            }
        };
        let response = OutgoingResponse::new(headers);
        // 200 is every new response's status. Setting another only fails
        // for codes outside 100..=999, which is a handler bug.
        if self.status != 200 && response.set_status_code(self.status).is_err() {
            let _ = response.set_status_code(500);
        }
        let Ok(body) = response.body() else { return };
        ResponseOutparam::set(out, Ok(response));
        let Ok(stream) = body.write() else { return };
        let mut writer = BodyWriter { stream: Some(stream), recorded: None };
        write(&mut writer);
        let gone = writer.stream.is_none();
        drop(writer);
        if !gone {
            let _ = OutgoingBody::finish(body, None);
        }
    }
}

/// What a handler answers: a complete response, or a status and headers
/// followed by a body it writes as it goes.
pub enum Reply {
    /// A response with its whole body.
    Complete(Response),
    /// A streamed response: `head` goes out first (its body is ignored),
    /// then `write` produces the body.
    Stream {
        /// Status and headers.
        head: Response,
        /// Writes the body; returns when it is complete or the client left.
        write: Box<dyn FnOnce(&mut BodyWriter)>,
    },
}

impl From<Response> for Reply {
    fn from(response: Response) -> Self {
        Self::Complete(response)
    }
}

/// The client went away; stop producing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientGone;

/// Writes a streamed body, flushing each piece to the client at once; or,
/// made with [`BodyWriter::recording`], keeps each write as a chunk (what
/// a replay of the stream would send).
pub struct BodyWriter {
    stream: Option<crate::bindings::wasi::io::streams::OutputStream>,
    recorded: Option<Vec<Vec<u8>>>,
}

impl BodyWriter {
    /// A writer that sends nothing and keeps every write.
    pub fn recording() -> Self {
        Self { stream: None, recorded: Some(Vec::new()) }
    }

    /// What a recording writer kept, a chunk per write.
    pub fn into_recorded(self) -> Vec<Vec<u8>> {
        self.recorded.unwrap_or_default()
    }

    /// Sends `bytes` now.
    pub fn write(&mut self, bytes: &[u8]) -> Result<(), ClientGone> {
        if let Some(recorded) = &mut self.recorded {
            recorded.push(bytes.to_vec());
            return Ok(());
        }
        let stream = self.stream.as_ref().ok_or(ClientGone)?;
        for chunk in bytes.chunks(WRITE_CHUNK_BYTES) {
            if stream.blocking_write_and_flush(chunk).is_err() {
                self.stream = None;
                return Err(ClientGone);
            }
        }
        Ok(())
    }
}

/// Reads `request`, runs `H`, sends its answer. Called by [`crate::export_handler`].
pub fn serve<H: Handler>(request: IncomingRequest, out: ResponseOutparam) {
    let reply = match Request::read(request) {
        Ok(request) => H::handle(request),
        Err(message) => Response::error(400, &message).into(),
    };
    match reply {
        Reply::Complete(response) => response.send(out),
        Reply::Stream { head, write } => head.stream(out, write),
    }
}
