//! hyper's own error answers, given words. hyper answers a request head it
//! cannot parse (400) or that is too large (431) by itself, before any
//! service sees it, with an empty body; a client then sees a status and no
//! reason. This stream recognises those answers as hyper writes them (a
//! 400 or 431 head with `connection: close` and `content-length: 0`, which
//! the service's own answers never are: they always carry a JSON body) and
//! writes them with a JSON `{"error": "..."}` body instead.

use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// What hyper's empty error answers end with.
const HYPERS_EMPTY_ERROR: &[u8] = b"\r\nconnection: close\r\ncontent-length: 0\r\n";
/// hyper's heads are short; anything longer is not one.
const MAX_HEAD: usize = 256;

/// A stream that words hyper's empty error answers.
pub struct Worded<S> {
    stream: S,
    /// A worded answer being written, and how much of it is out.
    replacing: Option<(Vec<u8>, usize)>,
}

impl<S> Worded<S> {
    /// Wraps `stream`.
    pub fn new(stream: S) -> Self {
        Self { stream, replacing: None }
    }
}

/// The worded answer for `head`, if it is one of hyper's empty errors.
fn worded(head: &[u8]) -> Option<Vec<u8>> {
    if head.len() > MAX_HEAD || !head.ends_with(b"\r\n\r\n") {
        return None;
    }
    let message = if head.starts_with(b"HTTP/1.1 431 ") {
        "the request's headers are too large: at most 100 headers and about 400 KiB in all"
    } else if head.starts_with(b"HTTP/1.1 400 ") {
        "the request is not valid HTTP/1.1 (its request line or a header could not be parsed)"
    } else {
        return None;
    };
    memchr::memmem::find(head, HYPERS_EMPTY_ERROR)?;
    let status_line = &head[..memchr::memmem::find(head, b"\r\n")?];
    let body = serde_json::json!({ "error": message }).to_string();
    let mut answer = status_line.to_vec();
    answer.extend_from_slice(
        format!(
            "\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
    Some(answer)
}

impl<S: AsyncWrite + Unpin> Worded<S> {
    /// Writes what is being replaced; ready once it is all out.
    fn write_replacement(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        while let Some((answer, written)) = &mut self.replacing {
            if *written == answer.len() {
                self.replacing = None;
                break;
            }
            match Pin::new(&mut self.stream).poll_write(cx, &answer[*written..]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(count)) => *written += count,
                Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Worded<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Worded<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if self.replacing.is_none()
            && let Some(answer) = worded(data)
        {
            self.replacing = Some((answer, 0));
        }
        if self.replacing.is_some() {
            // hyper gave `data`: it is written, in words.
            return self.write_replacement(cx).map_ok(|()| data.len());
        }
        Pin::new(&mut self.stream).poll_write(cx, data)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        // An error head comes whole, in one slice.
        if let [head] = data.iter().filter(|slice| !slice.is_empty()).collect::<Vec<_>>()[..]
            && (self.replacing.is_some() || worded(head).is_some())
        {
            return self.poll_write(cx, head);
        }
        Pin::new(&mut self.stream).poll_write_vectored(cx, data)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        std::task::ready!(self.write_replacement(cx))?;
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        std::task::ready!(self.write_replacement(cx))?;
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_hypers_empty_errors_are_worded() {
        let hypers = b"HTTP/1.1 431 Request Header Fields Too Large\r\nconnection: close\r\ncontent-length: 0\r\ndate: Wed, 02 Dec 2026 18:00:01 GMT\r\n\r\n";
        let answer = String::from_utf8(worded(hypers).unwrap()).unwrap();
        assert!(answer.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"), "{answer}");
        let body = answer.split("\r\n\r\n").nth(1).unwrap();
        assert!(answer.contains(&format!("content-length: {}\r\n", body.len())), "{answer}");
        assert!(serde_json::from_str::<serde_json::Value>(body).unwrap()["error"].is_string());
        let ours =
            b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: 30\r\n\r\n";
        assert!(worded(ours).is_none(), "the service's own 400 carries its body");
        assert!(worded(b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n").is_none());
    }
}
