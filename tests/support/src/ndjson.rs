//! An NDJSON stream read line by line as it arrives, each line stamped
//! with when it was complete: what tests of streaming (who got which chunk
//! first) need and an ordinary client hides. HTTP/1.1 over a plain socket,
//! chunked transfer encoding decoded by hand.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// A streamed response being read.
pub struct NdjsonStream {
    reader: BufReader<TcpStream>,
    /// The status code.
    pub status: u16,
    /// Header lines, lower-cased names.
    pub headers: Vec<(String, String)>,
    partial: Vec<u8>,
    ready: VecDeque<(Instant, serde_json::Value)>,
    ended: bool,
}

impl NdjsonStream {
    /// POSTs `body` to `path` at `addr` and reads the response head.
    pub fn post(addr: SocketAddr, path: &str, body: &serde_json::Value) -> Self {
        let mut socket = TcpStream::connect(addr).expect("the service accepts connections");
        socket.set_read_timeout(Some(Duration::from_secs(60))).expect("a read timeout");
        let body = body.to_string();
        let request = format!(
            "POST {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        socket.write_all(request.as_bytes()).expect("the request is sent");
        let mut reader = BufReader::new(socket);
        let mut status_line = String::new();
        reader.read_line(&mut status_line).expect("a status line");
        let status = status_line.split_whitespace().nth(1).and_then(|code| code.parse().ok()).unwrap_or(0);
        let mut headers = Vec::new();
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).expect("a header line");
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
            }
        }
        Self { reader, status, headers, partial: Vec::new(), ready: VecDeque::new(), ended: false }
    }

    /// Header `name`'s value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(key, _)| key == name).map(|(_, value)| value.as_str())
    }

    /// The next JSON line and when it arrived; `None` at the end.
    pub fn next_line(&mut self) -> Option<(Instant, serde_json::Value)> {
        while self.ready.is_empty() && !self.ended {
            self.read_chunk();
        }
        self.ready.pop_front()
    }

    /// Every remaining line.
    pub fn collect(mut self) -> Vec<(Instant, serde_json::Value)> {
        std::iter::from_fn(|| self.next_line()).collect()
    }

    fn read_chunk(&mut self) {
        let mut size_line = String::new();
        if self.reader.read_line(&mut size_line).unwrap_or(0) == 0 {
            self.ended = true;
            return;
        }
        let size = usize::from_str_radix(size_line.trim().split(';').next().unwrap_or("0"), 16).unwrap_or(0);
        if size == 0 {
            self.ended = true;
            return;
        }
        let mut chunk = vec![0; size + 2];
        self.reader.read_exact(&mut chunk).expect("a whole chunk");
        chunk.truncate(size);
        self.partial.extend_from_slice(&chunk);
        let arrived = Instant::now();
        while let Some(end) = self.partial.iter().position(|byte| *byte == b'\n') {
            let line: Vec<u8> = self.partial.drain(..=end).collect();
            let value = serde_json::from_slice(&line).expect("every line is JSON");
            self.ready.push_back((arrived, value));
        }
    }
}
