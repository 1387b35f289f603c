//! Reading a request's body under admission's bounds: its declared size
//! (413 before a byte is read), its size as it arrives (413), its time
//! (`BODY_READ_TIMEOUT_MS`, 408) and how many bodies arrive at once
//! (503), so clients trickling bodies never hold the slots that other
//! requests need.

use bytes::Bytes;
use http::{StatusCode, header};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

use super::{Service, busy, json_error};

impl Service {
    pub(super) fn too_large(&self) -> hyper::Response<HyperOutgoingBody> {
        json_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!("request body exceeds MAX_BODY_BYTES ({} bytes)", self.max_body_bytes),
        )
    }

    /// Reads the whole body, bounded by size and by the request deadline.
    pub(super) async fn read_body(
        &self,
        request: hyper::Request<Incoming>,
    ) -> Result<hyper::Request<Bytes>, hyper::Response<HyperOutgoingBody>> {
        let too_large = || self.too_large();
        let declared = request
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.parse::<u64>().ok());
        if declared.is_some_and(|length| length > self.max_body_bytes) {
            return Err(too_large());
        }
        let (parts, body) = request.into_parts();
        if declared == Some(0)
            || (declared.is_none() && !parts.headers.contains_key(header::TRANSFER_ENCODING))
        {
            // Nothing to read (a GET, say): no reader slot, no timer.
            return Ok(hyper::Request::from_parts(parts, Bytes::new()));
        }
        let Ok(_reader) = self.body_readers.clone().try_acquire_owned() else {
            return Err(busy("too many request bodies are arriving at once; retry shortly"));
        };
        let limit = usize::try_from(self.max_body_bytes).unwrap_or(usize::MAX);
        let timeout = self.body_read_timeout.min(self.request_timeout);
        let collected = tokio::time::timeout(timeout, Limited::new(body, limit).collect()).await;
        match collected {
            Ok(Ok(body)) => Ok(hyper::Request::from_parts(parts, body.to_bytes())),
            Ok(Err(error)) if error.is::<http_body_util::LengthLimitError>() => Err(too_large()),
            Ok(Err(error)) => {
                Err(json_error(StatusCode::BAD_REQUEST, &format!("reading the request body: {error}")))
            }
            Err(_elapsed) => Err(json_error(
                StatusCode::REQUEST_TIMEOUT,
                &format!(
                    "the request body did not arrive within {} ms (BODY_READ_TIMEOUT_MS)",
                    timeout.as_millis()
                ),
            )),
        }
    }
}
