//! Outbound HTTP through `wasi:http/outgoing-handler`: the only way a
//! component reaches the model backend. The host decides what is reachable
//! (one origin), pools connections, retries and times out; failures arrive
//! here as [`OutboundError`] values, never as traps.

use crate::bindings::wasi::http::outgoing_handler;
use crate::bindings::wasi::http::types::{
    ErrorCode, Fields, IncomingBody, IncomingResponse, Method, OutgoingBody, OutgoingRequest, Scheme,
};
use crate::bindings::wasi::io::streams::{InputStream, StreamError};

/// How much one read of a response body asks for.
const READ_CHUNK_BYTES: u64 = 16 * 1024;
/// The most a single `blocking-write-and-flush` call may carry (wasi:io).
const WRITE_CHUNK_BYTES: usize = 4096;

/// Why an outbound request got no (complete) answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutboundError {
    /// The host does not allow this destination.
    Denied,
    /// Too many generations already wait for the backend.
    Busy,
    /// The backend could not be reached (after the host's retries).
    Unreachable(String),
    /// The backend did not answer, or stopped answering, in time.
    Timeout,
    /// Anything else: a protocol error, a bad URL.
    Other(String),
}

impl std::fmt::Display for OutboundError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Denied => write!(f, "the host denied the request (not the configured backend)"),
            Self::Busy => write!(f, "too many generations are waiting for the backend"),
            Self::Unreachable(why) => write!(f, "the backend is unreachable: {why}"),
            Self::Timeout => write!(f, "the backend did not answer in time"),
            Self::Other(why) => write!(f, "{why}"),
        }
    }
}

impl From<ErrorCode> for OutboundError {
    fn from(code: ErrorCode) -> Self {
        match code {
            ErrorCode::HttpRequestDenied => Self::Denied,
            ErrorCode::ConnectionLimitReached => Self::Busy,
            ErrorCode::ConnectionTimeout
            | ErrorCode::ConnectionReadTimeout
            | ErrorCode::HttpResponseTimeout
            | ErrorCode::ConnectionWriteTimeout => Self::Timeout,
            ErrorCode::ConnectionRefused
            | ErrorCode::ConnectionTerminated
            | ErrorCode::DestinationUnavailable
            | ErrorCode::DestinationNotFound
            | ErrorCode::DnsTimeout
            | ErrorCode::DnsError(_) => Self::Unreachable(format!("{code:?}")),
            // The host's own words (a shutdown past its grace period).
            ErrorCode::InternalError(Some(why)) => Self::Other(why),
            other => Self::Other(format!("{other:?}")),
        }
    }
}

/// A response whose body is read on demand.
pub struct Response {
    // Field order is drop order: a stream goes before its body, the body
    // before its response (wasi:http resources are children of each other).
    stream: InputStream,
    _body: IncomingBody,
    _response: IncomingResponse,
    status: u16,
    pending: Vec<u8>,
    ended: bool,
}

impl Response {
    /// The status code.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The next chunk of the body as it arrives; `Ok(None)` at its end.
    pub fn next_chunk(&mut self) -> Result<Option<Vec<u8>>, OutboundError> {
        if !self.pending.is_empty() {
            return Ok(Some(std::mem::take(&mut self.pending)));
        }
        if self.ended {
            return Ok(None);
        }
        match self.stream.blocking_read(READ_CHUNK_BYTES) {
            Ok(chunk) => Ok(Some(chunk)),
            Err(StreamError::Closed) => {
                self.ended = true;
                Ok(None)
            }
            Err(StreamError::LastOperationFailed(error)) => {
                self.ended = true;
                Err(crate::bindings::wasi::http::types::http_error_code(&error)
                    .map(OutboundError::from)
                    .unwrap_or_else(|| body_error(error.to_debug_string())))
            }
        }
    }

    /// The next line of the body (without its `\n`); `Ok(None)` at the end.
    /// For NDJSON and server-sent events.
    pub fn next_line(&mut self) -> Result<Option<Vec<u8>>, OutboundError> {
        let mut line = Vec::new();
        loop {
            let chunk = match self.next_chunk()? {
                Some(chunk) => chunk,
                None => return Ok(if line.is_empty() { None } else { Some(line) }),
            };
            match chunk.iter().position(|byte| *byte == b'\n') {
                Some(newline) => {
                    line.extend_from_slice(&chunk[..newline]);
                    self.pending = chunk[newline + 1..].to_vec();
                    return Ok(Some(line));
                }
                None => line.extend_from_slice(&chunk),
            }
        }
    }

    /// The whole remaining body.
    pub fn read_all(mut self) -> Result<Vec<u8>, OutboundError> {
        let mut body = Vec::new();
        while let Some(chunk) = self.next_chunk()? {
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}

/// Sends `method url` with a JSON `body` (or none) and waits for the
/// response head. `url` is absolute: `http://host:port/path?query`.
pub fn send(method: &str, url: &str, body: Option<&[u8]>) -> Result<Response, OutboundError> {
    start(method, url, body)?.wait()
}

/// A request on its way: the host works on it while the component starts
/// others, so several [`Pending`] requests run concurrently.
pub struct Pending {
    future: outgoing_handler::FutureIncomingResponse,
}

impl Pending {
    /// Waits for the response head.
    pub fn wait(self) -> Result<Response, OutboundError> {
        let future = self.future;
        future.subscribe().block();
        let response = match future.get() {
            Some(Ok(Ok(response))) => response,
            Some(Ok(Err(code))) => return Err(code.into()),
            Some(Err(())) | None => return Err(OutboundError::Other("response already taken".into())),
        };
        let status = response.status();
        let body = response.consume().map_err(|()| OutboundError::Other("response body taken".into()))?;
        let stream = body.stream().map_err(|()| OutboundError::Other("response stream taken".into()))?;
        Ok(Response { stream, _body: body, _response: response, status, pending: Vec::new(), ended: false })
    }
}

/// Sends `method url` with a JSON `body` (or none) without waiting for the
/// answer.
pub fn start(method: &str, url: &str, body: Option<&[u8]>) -> Result<Pending, OutboundError> {
    let (scheme, rest) =
        url.split_once("://").ok_or_else(|| OutboundError::Other(format!("not a URL: {url}")))?;
    let (authority, path) = match rest.find('/') {
        Some(slash) => (&rest[..slash], &rest[slash..]),
        None => (rest, "/"),
    };
    let mut entries: Vec<(String, Vec<u8>)> = vec![("accept".into(), b"application/json".to_vec())];
    if let Some(body) = body {
        entries.push(("content-type".into(), b"application/json".to_vec()));
        entries.push(("content-length".into(), body.len().to_string().into_bytes()));
    }
    let headers = Fields::from_list(&entries).map_err(|error| OutboundError::Other(format!("{error:?}")))?;
    let request = OutgoingRequest::new(headers);
    let method = match method {
        "GET" => Method::Get,
        "POST" => Method::Post,
        other => Method::Other(other.to_string()),
    };
    let invalid = |what: &str| OutboundError::Other(format!("invalid {what} in {url}"));
    request.set_method(&method).map_err(|()| invalid("method"))?;
    let scheme = if scheme.eq_ignore_ascii_case("https") { Scheme::Https } else { Scheme::Http };
    request.set_scheme(Some(&scheme)).map_err(|()| invalid("scheme"))?;
    request.set_authority(Some(authority)).map_err(|()| invalid("authority"))?;
    request.set_path_with_query(Some(path)).map_err(|()| invalid("path"))?;

    let outgoing_body = request.body().map_err(|()| OutboundError::Other("request body taken".into()))?;
    let future = outgoing_handler::handle(request, None).map_err(OutboundError::from)?;
    {
        let stream =
            outgoing_body.write().map_err(|()| OutboundError::Other("request stream taken".into()))?;
        for chunk in body.unwrap_or_default().chunks(WRITE_CHUNK_BYTES) {
            stream
                .blocking_write_and_flush(chunk)
                .map_err(|error| OutboundError::Other(format!("{error:?}")))?;
        }
    }
    OutgoingBody::finish(outgoing_body, None).map_err(OutboundError::from)?;

    Ok(Pending { future })
}

/// A body read's failure that carries no `error-code`, by its text: the
/// host's between-chunk and deadline timeouts arrive so.
fn body_error(text: String) -> OutboundError {
    if text.contains("timeout") || text.contains("timed out") {
        OutboundError::Timeout
    } else {
        OutboundError::Other(text)
    }
}
