//! Request ids: the client's `X-Request-Id` when it sent a usable one, else
//! a new one; answered back on every response and named in every log line.

use std::sync::Arc;

/// The header carrying a request's id, in and out.
pub const REQUEST_ID: &str = "x-request-id";
/// Longest client-supplied request id kept; longer ones are replaced.
const MAX_REQUEST_ID_BYTES: usize = 128;

/// The client's `X-Request-Id` if it is short printable ASCII, else a new
/// one: 128 random bits in hex. Ids need to be unique, not unguessable, so
/// they come from a per-thread generator seeded once rather than from the
/// kernel's (a `getrandom` call per request showed in the profile).
pub fn request_id(headers: &http::HeaderMap) -> Arc<str> {
    client_request_id(headers)
        .map(Arc::from)
        .unwrap_or_else(|| Arc::from(format!("{:032x}", fastrand::u128(..))))
}

/// The client's `X-Request-Id`, if it sent a usable one.
pub fn client_request_id(headers: &http::HeaderMap) -> Option<&str> {
    headers.get(REQUEST_ID).and_then(|value| value.to_str().ok()).filter(|id| {
        !id.is_empty() && id.len() <= MAX_REQUEST_ID_BYTES && id.bytes().all(|b| b.is_ascii_graphic())
    })
}
