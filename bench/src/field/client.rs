//! The field rows' client: one keep-alive HTTP/1.1 connection per caller,
//! each request with its own body (so every one is a miss), and a stream
//! read frame by frame with the time each frame arrived.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpStream;

use crate::scenarios::MODEL;

/// A client dialect: where its request goes through the gateway, where
/// the same question goes straight to the mock, and the body of each.
#[derive(Debug, Clone, Copy)]
pub struct Dialect {
    /// Its name in the table.
    pub name: &'static str,
    /// The gateway's path.
    pub path: &'static str,
    /// The mock's path for the same question.
    pub direct_path: &'static str,
    /// The body asking `prompt`, streamed or not.
    pub body: fn(prompt: &str, stream: bool) -> Value,
}

fn chat(prompt: &str, stream: bool) -> Value {
    json!({"model": MODEL, "messages": [{"role": "user", "content": prompt}], "stream": stream})
}

/// The seed's `/generate`, Ollama's `/api/chat` and OpenAI's chat.
pub const DIALECTS: [Dialect; 3] = [
    Dialect {
        name: "seed /generate",
        path: "/generate",
        direct_path: "/api/generate",
        body: |prompt, stream| json!({"model": MODEL, "prompt": prompt, "stream": stream}),
    },
    Dialect { name: "Ollama /api/chat", path: "/api/chat", direct_path: "/api/chat", body: chat },
    Dialect {
        name: "OpenAI /v1/chat/completions",
        path: "/v1/chat/completions",
        direct_path: "/v1/chat/completions",
        body: chat,
    },
];

/// One open connection.
pub struct Connection {
    addr: SocketAddr,
    sender: SendRequest<Full<Bytes>>,
}

/// When each frame of an answer arrived, from the moment it was sent.
#[derive(Debug, Default)]
pub struct Frames {
    /// The answer's status.
    pub status: u16,
    /// Arrival of each data frame.
    pub at: Vec<Duration>,
    /// When the body ended.
    pub done: Duration,
    /// The whole body.
    pub body: Vec<u8>,
}

impl Connection {
    /// Opens one to `addr`.
    pub async fn open(addr: SocketAddr) -> anyhow::Result<Self> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let (sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(connection);
        Ok(Self { addr, sender })
    }

    /// POSTs `body` to `path` and reads the answer frame by frame.
    pub async fn post(&mut self, path: &str, body: &Value) -> anyhow::Result<Frames> {
        let request = http::Request::post(format!("http://{}{path}", self.addr))
            .header(http::header::HOST, self.addr.to_string())
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body.to_string())))?;
        self.sender.ready().await?;
        let sent = Instant::now();
        let response = self.sender.send_request(request).await?;
        let mut frames = Frames { status: response.status().as_u16(), ..Frames::default() };
        let mut body = response.into_body();
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame?.into_data() {
                frames.at.push(sent.elapsed());
                frames.body.extend_from_slice(&data);
            }
        }
        frames.done = sent.elapsed();
        Ok(frames)
    }
}

impl Frames {
    /// Whether each of the mock's `chunks` pieces of text arrived.
    pub fn has_every_chunk(&self, chunks: usize) -> bool {
        let body = String::from_utf8_lossy(&self.body);
        self.status == 200 && (0..chunks).all(|index| body.contains(&format!("t{index} ")))
    }
}
