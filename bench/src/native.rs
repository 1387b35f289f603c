//! Row 1's server: plain hyper on tokio, answering every request with the
//! same status, headers and body a cached /generate gets from the service.
//! Nothing in between, so it is the most this machine serves.

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// A running native server; stops with the runtime it was started on.
pub struct NativeServer {
    /// Where it listens.
    pub addr: SocketAddr,
}

impl NativeServer {
    /// Serves `headers` and `body` on 127.0.0.1, a free port.
    pub async fn start(headers: http::HeaderMap, body: Bytes) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let _ = stream.set_nodelay(true);
                let (headers, body) = (headers.clone(), body.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |_request| {
                        let mut response = hyper::Response::new(Full::new(body.clone()));
                        *response.headers_mut() = headers.clone();
                        async move { Ok::<_, Infallible>(response) }
                    });
                    let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
                });
            }
        });
        Ok(Self { addr })
    }
}
