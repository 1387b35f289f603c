//! `wasi:http/outgoing-handler`, answered by [`Backend::send`].

use std::future::Future;

use wasmtime_wasi_http::{RequestOptions, WasiBody, WasiHttpHooks};

use super::BackendHooks;
use crate::traces::spans;
use tracing::Instrument;

type SendResult = wasmtime_wasi_http::Result<(
    http::Response<WasiBody>,
    Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
)>;

impl WasiHttpHooks for BackendHooks {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        _options: Option<RequestOptions>,
        _body_written: Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
    ) -> Box<dyn Future<Output = SendResult> + Send> {
        let (backend, deadline, key, served_by) =
            (self.backend.clone(), self.deadline, self.key, self.served_by.clone());
        // Called from the handler's call, whose span is the parent; the
        // future runs on a task of wasi-http's, so it carries its span.
        let span = spans::backend_send(request.method(), request.uri());
        Box::new(
            async move {
                let response = backend.send(request, deadline, key, &served_by).await;
                let span = tracing::Span::current();
                match &response {
                    Ok(_) if span.is_disabled() => {}
                    Ok(response) => {
                        let node = served_by.lock().unwrap_or_else(|poison| poison.into_inner()).clone();
                        spans::backend_answered(&span, response.status(), node.as_deref());
                    }
                    Err(error) => spans::backend_failed(&span, error),
                }
                // The pooled client drives its connections itself.
                let connection: Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send> =
                    Box::new(async { Ok(()) });
                Ok((response?, connection))
            }
            .instrument(span),
        )
    }
}
