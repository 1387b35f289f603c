//! `wasi:http/outgoing-handler`, answered by [`Backend::send`].

use std::future::Future;

use wasmtime_wasi_http::{RequestOptions, WasiBody, WasiHttpHooks};

use super::BackendHooks;

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
        Box::new(async move {
            let response = backend.send(request, deadline, key, &served_by).await?;
            // The pooled client drives its connections itself.
            let connection: Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send> =
                Box::new(async { Ok(()) });
            Ok((response, connection))
        })
    }
}
