//! The JSON answers the host gives itself (probes, refusals, the admin
//! API): `{"error": "..."}` and plain JSON values.

use std::convert::Infallible;

use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};
use http_body_util::{BodyExt, Full};
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

/// Seconds a client told 503 should wait before trying again.
const RETRY_AFTER_S: &str = "1";

/// `{"error": message}` with `status`.
pub fn json_error(status: StatusCode, message: &str) -> hyper::Response<HyperOutgoingBody> {
    json_response(status, &serde_json::json!({ "error": message }))
}

/// 503 with `Retry-After`, saying `why`.
pub fn busy(why: &str) -> hyper::Response<HyperOutgoingBody> {
    let mut response = json_error(StatusCode::SERVICE_UNAVAILABLE, why);
    response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER_S));
    response
}

/// `value` as a JSON response with `status`.
pub fn json_response(status: StatusCode, value: &serde_json::Value) -> hyper::Response<HyperOutgoingBody> {
    let body = value.to_string();
    let mut response = hyper::Response::new(
        Full::new(Bytes::from(body)).map_err(|never: Infallible| match never {}).boxed_unsync(),
    );
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}
