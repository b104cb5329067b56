//! The upstream side of a fast-path exchange: plain TCP connections (new,
//! or from this thread's shelf in `pool`), the response head parsed once,
//! and the response relayed to the client as it comes — by
//! `Content-Length`, chunked (judged by `listener::chunked::Chunked` and
//! passed on as it is), or to the end of the connection (framed chunked for
//! the client, whose connection stays open).

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::StatusCode;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::net::TcpStream;

use super::body::{chunk_header, Chunked};
use super::parse::{has_token, MAX_HEADERS};
use super::write::{response_head, write_all, write_all_vectored, Delimit};
use crate::listener::framing::content_length;
use crate::proxy::routing::Upstream;

/// The largest response head read from an upstream (hyper's default
/// buffer is about this).
const MAX_RESPONSE_HEAD: usize = 64 * 1024;
/// Reads from the upstream take at most this much buffer.
const READ_CHUNK: usize = 16 * 1024;

/// A new connection to `upstream` (plain `http://`), within `timeout`.
pub async fn connect(upstream: &Upstream, timeout: Duration) -> io::Result<TcpStream> {
    let authority = upstream.authority.as_str();
    let connecting = async {
        match upstream.authority.port_u16() {
            Some(_) => TcpStream::connect(authority).await,
            None => TcpStream::connect(format!("{authority}:80")).await,
        }
    };
    let stream = tokio::time::timeout(timeout, connecting)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// How the upstream's response body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    /// None (HEAD, 204, 304).
    Empty,
    Length(u64),
    Chunked,
    /// Up to the end of the connection.
    Close,
}

/// A parsed response head.
#[derive(Debug)]
pub struct ResponseHead {
    pub len: usize,
    pub status: StatusCode,
    /// The reason phrase, if not the usual one for the status.
    pub reason: Option<Vec<u8>>,
    pub headers: HeaderMap,
    pub body: Body,
    /// The upstream keeps the connection open after this response.
    pub keep_alive: bool,
}

/// Why an upstream exchange failed.
#[derive(Debug)]
pub enum Failure {
    /// The connection ended before any byte of a response (a pooled
    /// connection the upstream had closed, or a crash).
    Closed(io::Error),
    /// Not HTTP, or a broken exchange before the response head ended.
    Broken(io::Error),
    /// No response head within the response timeout.
    Timeout,
    /// The response head went out, then the upstream broke off.
    BrokeAfterHead(io::Error),
    /// Writing to the client failed (it left).
    Client(io::Error),
}

fn broken(what: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

/// Parses the response head at the start of `buf`: `None` if incomplete.
pub fn parse_response(buf: &[u8], head_request: bool) -> io::Result<Option<ResponseHead>> {
    let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut fields);
    let len = match response.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err(broken("the upstream's response head is not HTTP/1.1")),
    };
    let code = response.code.unwrap_or(0);
    let status = StatusCode::from_u16(code).map_err(|_| broken("bad status"))?;
    let reason = response.reason.filter(|r| Some(*r) != status.canonical_reason()).map(|r| r.as_bytes().to_vec());
    let http11 = response.version == Some(1);
    let mut keep_alive = http11;
    let mut length = None;
    let mut transfer_encoding = None;
    let mut headers = HeaderMap::with_capacity(response.headers.len() + 6);
    for field in response.headers.iter() {
        let name = HeaderName::from_bytes(field.name.as_bytes()).map_err(|_| broken("bad header name"))?;
        match name.as_str() {
            "content-length" => {
                let n = content_length(field.value).ok_or_else(|| broken("bad content-length"))?;
                if length.is_some_and(|l| l != n) {
                    return Err(broken("two content-lengths"));
                }
                length = Some(n);
            }
            "transfer-encoding" => {
                let last = field.value.rsplit(|&b| b == b',').next().map_or(&b""[..], <[u8]>::trim_ascii);
                transfer_encoding = Some(last.eq_ignore_ascii_case(b"chunked"));
            }
            "connection" => {
                if has_token(field.value, b"close") {
                    keep_alive = false;
                } else if has_token(field.value, b"keep-alive") && !http11 {
                    keep_alive = true;
                }
            }
            _ => {}
        }
        let value = HeaderValue::from_bytes(field.value).map_err(|_| broken("bad header value"))?;
        headers.append(name, value);
    }
    let no_body = head_request || status.is_informational() || code == 204 || code == 304;
    let body = match (transfer_encoding, length) {
        _ if no_body => Body::Empty,
        (Some(true), _) => Body::Chunked,
        (Some(false), _) => Body::Close,
        (None, Some(n)) => Body::Length(n),
        (None, None) => Body::Close,
    };
    if body == Body::Close || transfer_encoding.is_some() && length.is_some() {
        keep_alive = false;
    }
    if transfer_encoding.is_some() {
        // The body is relayed chunked; a length beside it would lie.
        headers.remove(http::header::CONTENT_LENGTH);
    }
    Ok(Some(ResponseHead { len, status, reason, headers, body, keep_alive }))
}

/// Reads more of the upstream's bytes into `buf`; 0 at its end.
async fn fill<R: AsyncRead + Unpin>(reader: &mut R, buf: &mut Vec<u8>) -> io::Result<usize> {
    if buf.capacity() - buf.len() < READ_CHUNK / 2 {
        buf.reserve(READ_CHUNK);
    }
    reader.read_buf(buf).await
}

/// Reads the response head (skipping 1xx answers other than 101, which the
/// fast path never asks for) by `deadline`. The head's bytes stay at the
/// start of `buf`, the body's first bytes after them.
pub async fn read_head<R: AsyncRead + Unpin>(
    reader: &mut R,
    buf: &mut Vec<u8>,
    head_request: bool,
    deadline: tokio::time::Instant,
) -> Result<ResponseHead, Failure> {
    loop {
        if !buf.is_empty() {
            match parse_response(buf, head_request) {
                Ok(Some(head)) if head.status == StatusCode::SWITCHING_PROTOCOLS => {
                    return Err(Failure::Broken(broken("the upstream switched protocols unasked")));
                }
                Ok(Some(head)) if head.status.is_informational() => {
                    buf.drain(..head.len);
                    continue;
                }
                Ok(Some(head)) => return Ok(head),
                Ok(None) if buf.len() > MAX_RESPONSE_HEAD => {
                    return Err(Failure::Broken(broken("the upstream's response head is too large")));
                }
                Ok(None) => {}
                Err(e) => return Err(Failure::Broken(e)),
            }
        }
        let was_empty = buf.is_empty();
        match tokio::time::timeout_at(deadline, fill(reader, buf)).await {
            Err(_) => return Err(Failure::Timeout),
            Ok(Ok(0)) if was_empty => {
                return Err(Failure::Closed(io::ErrorKind::UnexpectedEof.into()));
            }
            Ok(Ok(0)) => return Err(Failure::Broken(io::ErrorKind::UnexpectedEof.into())),
            Ok(Ok(_)) => {}
            Ok(Err(e)) if was_empty => return Err(Failure::Closed(e)),
            Ok(Err(e)) => return Err(Failure::Broken(e)),
        }
    }
}

/// Relays a response whose (edited) head is `head`: writes the client's
/// head with the body's first bytes, then the rest of the body as it comes.
/// `written` is set once anything went to the client. Returns whether the
/// upstream connection is left clean for another request.
#[allow(clippy::too_many_arguments)]
pub async fn relay<R, W>(
    reader: &mut R,
    writer: &mut W,
    buf: &mut Vec<u8>,
    out: &mut Vec<u8>,
    head: &ResponseHead,
    close_client: bool,
    written: &AtomicBool,
) -> Result<bool, Failure>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let delimit = match head.body {
        Body::Chunked | Body::Close => Delimit::Chunked,
        Body::Empty | Body::Length(_) => Delimit::AsIs,
    };
    response_head(out, head.status, head.reason.as_deref(), &head.headers, delimit, close_client);
    buf.drain(..head.len);
    written.store(true, Ordering::Release);
    let client = Failure::Client;
    match head.body {
        Body::Empty => {
            write_all(writer, out).await.map_err(client)?;
            Ok(head.keep_alive && buf.is_empty())
        }
        Body::Length(total) => {
            let mut left = total;
            let first = left.min(buf.len() as u64) as usize;
            write_all_vectored(writer, &[out, &buf[..first]]).await.map_err(client)?;
            left -= first as u64;
            let clean = buf.len() == first;
            buf.clear();
            while left > 0 {
                let n = fill(reader, buf).await.map_err(Failure::BrokeAfterHead)?;
                if n == 0 {
                    return Err(Failure::BrokeAfterHead(io::ErrorKind::UnexpectedEof.into()));
                }
                let take = left.min(buf.len() as u64) as usize;
                write_all(writer, &buf[..take]).await.map_err(client)?;
                left -= take as u64;
                if take < buf.len() {
                    // Bytes past the promised length: not reusable.
                    buf.clear();
                    return Ok(false);
                }
                buf.clear();
            }
            Ok(head.keep_alive && clean)
        }
        Body::Chunked => {
            // Relayed as it is, once judged.
            let mut chunked = Chunked::default();
            let mut first = true;
            loop {
                let mut at = 0;
                while at < buf.len() && !chunked.is_done() {
                    let step =
                        chunked.step(&buf[at..]).map_err(|_| Failure::BrokeAfterHead(broken("bad chunked framing")))?;
                    at += step.consumed;
                }
                if first {
                    write_all_vectored(writer, &[out, &buf[..at]]).await.map_err(client)?;
                    first = false;
                } else if at > 0 {
                    write_all(writer, &buf[..at]).await.map_err(client)?;
                }
                if chunked.is_done() {
                    let clean = at == buf.len();
                    buf.clear();
                    return Ok(head.keep_alive && clean);
                }
                buf.clear();
                if fill(reader, buf).await.map_err(Failure::BrokeAfterHead)? == 0 {
                    return Err(Failure::BrokeAfterHead(io::ErrorKind::UnexpectedEof.into()));
                }
            }
        }
        Body::Close => {
            let mut header = [0u8; 20];
            // The head, and what was read after it as the first chunk.
            if buf.is_empty() {
                write_all(writer, out).await.map_err(client)?;
            } else {
                let n = chunk_header(buf.len(), &mut header);
                write_all_vectored(writer, &[out, &header[..n], buf, b"\r\n"]).await.map_err(client)?;
            }
            loop {
                buf.clear();
                if fill(reader, buf).await.map_err(Failure::BrokeAfterHead)? == 0 {
                    write_all(writer, b"0\r\n\r\n").await.map_err(client)?;
                    return Ok(false);
                }
                let n = chunk_header(buf.len(), &mut header);
                write_all_vectored(writer, &[&header[..n], buf, b"\r\n"]).await.map_err(client)?;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_framing_follows_rfc_9112() {
        let head = |text: &str, head_request: bool| {
            parse_response(text.as_bytes(), head_request).expect("valid").expect("complete")
        };
        let r = head("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", false);
        assert_eq!((r.body, r.keep_alive, r.len), (Body::Length(5), true, 38));
        let r = head("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", false);
        assert_eq!((r.body, r.keep_alive), (Body::Chunked, true));
        let r = head("HTTP/1.1 200 OK\r\n\r\n", false);
        assert_eq!((r.body, r.keep_alive), (Body::Close, false));
        let r = head("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", true);
        assert_eq!((r.body, r.keep_alive), (Body::Empty, true));
        for status in [204, 304] {
            let r = head(&format!("HTTP/1.1 {status} X\r\n\r\n"), false);
            assert_eq!((r.body, r.keep_alive), (Body::Empty, true));
        }
        let r = head("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", false);
        assert!(!r.keep_alive);
        let r = head("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n", false);
        assert!(!r.keep_alive);
        let r = head("HTTP/1.1 299 Odd Reason\r\nContent-Length: 0\r\n\r\n", false);
        assert_eq!(r.reason.as_deref(), Some(&b"Odd Reason"[..]));
        assert!(parse_response(b"HTTP/1.1 200 OK\r\nContent-Le", false).expect("fine").is_none());
        assert!(parse_response(b"\x16\x03\x01 garbage\r\n\r\n", false).is_err());
        assert!(parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", false).is_err());
    }
}
