//! The upstream side of a fast-path exchange: plain TCP connections (new,
//! or from this thread's shelf in `pool`), the response head parsed once,
//! and the response relayed to the client as it comes — by
//! `Content-Length`, chunked (judged by `listener::chunked::Chunked` and
//! passed on as it is), or to the end of the connection (framed chunked for
//! the client, whose connection stays open).

use std::io;
use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use http::header::{HeaderName, CONNECTION, CONTENT_LENGTH, TRANSFER_ENCODING};
use http::StatusCode;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::net::TcpStream;

use super::body::{chunk_header, Chunked};
use super::deadline::Deadline;
use super::parse::{has_token, MAX_HEADERS};
use super::write::{end_head, write_all, write_all_vectored, Delimit};
use crate::contract::X_REQUEST_ID;
use crate::listener::framing::content_length;
use crate::proxy::headers;
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

/// A parsed response head. The client's head is built beside it (see
/// `parse_response`), so the fields are not kept here.
#[derive(Debug)]
pub struct ResponseHead {
    pub len: usize,
    pub status: StatusCode,
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

/// Whether a field is the message's framing or one the proxy drops or
/// sets itself, by name (any case).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    ContentLength,
    TransferEncoding,
    Connection,
    /// Another hop-by-hop field (RFC 9110 §7.6.1).
    HopByHop,
    /// `X-Request-Id`: the proxy's own replaces it.
    RequestId,
    /// `RateLimit-Policy` or `RateLimit`: replaced when the proxy sets them.
    RateLimit,
    Other,
}

fn kind(name: &[u8]) -> Kind {
    let is = |n: &HeaderName| name.eq_ignore_ascii_case(n.as_str().as_bytes());
    if is(&CONTENT_LENGTH) {
        Kind::ContentLength
    } else if is(&TRANSFER_ENCODING) {
        Kind::TransferEncoding
    } else if is(&CONNECTION) {
        Kind::Connection
    } else if headers::is_hop_by_hop(name) {
        Kind::HopByHop
    } else if is(&X_REQUEST_ID) {
        Kind::RequestId
    } else if is(&headers::RATELIMIT) || is(&headers::RATELIMIT_POLICY) {
        Kind::RateLimit
    } else {
        Kind::Other
    }
}

/// Parses the response head at the start of `buf`: `None` if incomplete.
///
/// With a head, `out` holds the start of the client's head, spliced from
/// the upstream's bytes in the same pass: the status line, then every
/// field but the hop-by-hop ones (and those `Connection` names), the
/// upstream's `X-Request-Id`, its `RateLimit` fields when `limits` (the
/// proxy sets its own), and `Content-Length` beside `Transfer-Encoding`.
/// Names are written in lower case, as hyper writes them. `finish_head`
/// adds the proxy's fields and the framing.
pub fn parse_response(
    buf: &[u8],
    head_request: bool,
    limits: bool,
    out: &mut Vec<u8>,
) -> io::Result<Option<ResponseHead>> {
    // Uninitialized: httparse fills what it uses (3.2 KB not zeroed a head).
    let mut fields = [const { MaybeUninit::uninit() }; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut []);
    let len =
        match httparse::ParserConfig::default().parse_response_with_uninit_headers(&mut response, buf, &mut fields) {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(_) => return Err(broken("the upstream's response head is not HTTP/1.1")),
        };
    let code = response.code.unwrap_or(0);
    let status = StatusCode::from_u16(code).map_err(|_| broken("bad status"))?;
    let http11 = response.version == Some(1);
    let mut keep_alive = http11;
    let mut length = None;
    let mut transfer_encoding = None;
    // A `Connection` field lists a token besides `close` and `keep-alive`:
    // the fields it names are dropped (below), each kept field looked up.
    let mut names_fields = false;
    // The framing first: whether a `Content-Length` is passed on depends
    // on a `Transfer-Encoding` that may come after it. Each field's kind is
    // worked out once, here.
    let headers = &*response.headers;
    let mut kinds = [Kind::Other; MAX_HEADERS];
    // httparse let no control character but tab through in a value (what
    // `http::HeaderValue` accepts too): the values go to the client as
    // they are.
    for (field, slot) in headers.iter().zip(kinds.iter_mut()) {
        *slot = kind(field.name.as_bytes());
        match *slot {
            Kind::ContentLength => {
                let n = content_length(field.value).ok_or_else(|| broken("bad content-length"))?;
                if length.is_some_and(|l| l != n) {
                    return Err(broken("two content-lengths"));
                }
                length = Some(n);
            }
            Kind::TransferEncoding => {
                let last = field.value.rsplit(|&b| b == b',').next().map_or(&b""[..], <[u8]>::trim_ascii);
                transfer_encoding = Some(last.eq_ignore_ascii_case(b"chunked"));
            }
            Kind::Connection => {
                names_fields |= field.value.split(|&b| b == b',').map(<[u8]>::trim_ascii).any(|t| {
                    !t.is_empty() && !t.eq_ignore_ascii_case(b"close") && !t.eq_ignore_ascii_case(b"keep-alive")
                });
                if has_token(field.value, b"close") {
                    keep_alive = false;
                } else if has_token(field.value, b"keep-alive") && !http11 {
                    keep_alive = true;
                }
            }
            _ => {}
        }
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
    out.clear();
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    let reason = response.reason.unwrap_or_else(|| status.canonical_reason().unwrap_or(""));
    out.extend_from_slice(reason.as_bytes());
    out.extend_from_slice(b"\r\n");
    let kinds = &kinds[..headers.len()];
    for (field, &kind) in headers.iter().zip(kinds) {
        let name = field.name.as_bytes();
        let keep = match kind {
            // The body is relayed chunked; a length beside it would lie.
            Kind::ContentLength => transfer_encoding.is_none(),
            Kind::TransferEncoding | Kind::Connection | Kind::HopByHop | Kind::RequestId => false,
            Kind::RateLimit => !limits,
            Kind::Other => true,
        };
        let named = || headers.iter().zip(kinds).any(|(f, &k)| k == Kind::Connection && has_token(f.value, name));
        if !keep || names_fields && named() {
            continue;
        }
        let at = out.len();
        out.extend_from_slice(name);
        out[at..].make_ascii_lowercase();
        out.extend_from_slice(b": ");
        out.extend_from_slice(field.value);
        out.extend_from_slice(b"\r\n");
    }
    Ok(Some(ResponseHead { len, status, body, keep_alive }))
}

/// Reads more of the upstream's bytes into `buf`; 0 at its end.
async fn fill<R: AsyncRead + Unpin>(reader: &mut R, buf: &mut Vec<u8>) -> io::Result<usize> {
    if buf.capacity() - buf.len() < READ_CHUNK / 2 {
        buf.reserve(READ_CHUNK);
    }
    reader.read_buf(buf).await
}

/// Reads the response head (skipping 1xx answers other than 101, which the
/// fast path never asks for) by `deadline`, kept by the connection's
/// `timer`. The head's bytes stay at the start of `buf`, the body's first
/// bytes after them; the start of the client's head is in `out`
/// (`parse_response`).
pub async fn read_head<R: AsyncRead + Unpin>(
    reader: &mut R,
    buf: &mut Vec<u8>,
    head_request: bool,
    limits: bool,
    out: &mut Vec<u8>,
    timer: &mut Deadline,
    deadline: tokio::time::Instant,
) -> Result<ResponseHead, Failure> {
    loop {
        if !buf.is_empty() {
            match parse_response(buf, head_request, limits, out) {
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
        match timer.bound(deadline, fill(reader, buf)).await {
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

/// Relays a response whose head is `head`: writes the client's head (begun
/// in `out` by `parse_response`, ended here with the proxy's own `fields`
/// and the framing) with the body's first bytes, then the rest of the body
/// as it comes. `written` is set once anything went to the client. Returns
/// whether the upstream connection is left clean for another request.
#[allow(clippy::too_many_arguments)]
pub async fn relay<R, W>(
    reader: &mut R,
    writer: &mut W,
    buf: &mut Vec<u8>,
    out: &mut Vec<u8>,
    head: &ResponseHead,
    fields: &[u8],
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
    end_head(out, fields, delimit, close_client);
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

    fn head(text: &str, head_request: bool) -> ResponseHead {
        parse_response(text.as_bytes(), head_request, false, &mut Vec::new()).expect("valid").expect("complete")
    }

    #[test]
    fn response_framing_follows_rfc_9112() {
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
        let mut out = Vec::new();
        let parse = |bytes: &[u8], out: &mut Vec<u8>| parse_response(bytes, false, false, out);
        assert!(parse(b"HTTP/1.1 200 OK\r\nContent-Le", &mut out).expect("fine").is_none());
        assert!(parse(b"\x16\x03\x01 garbage\r\n\r\n", &mut out).is_err());
        assert!(parse(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", &mut out).is_err());
        assert!(parse(b"HTTP/1.1 200 OK\r\nX-A: a\x01b\r\nContent-Length: 0\r\n\r\n", &mut out).is_err());
        assert!(parse(b"HTTP/1.1 200 OK\r\nX-A: a\x7fb\r\nContent-Length: 0\r\n\r\n", &mut out).is_err());
        assert!(parse(b"HTTP/1.1 200 OK\r\nX-A: a\0b\r\nContent-Length: 0\r\n\r\n", &mut out).is_err());
    }

    /// The client's head is the upstream's, less what is hop-by-hop or the
    /// proxy's to set, names in lower case, the reason phrase kept.
    #[test]
    fn the_client_head_is_spliced_from_the_upstreams() {
        let splice = |text: &str, limits: bool| {
            let mut out = Vec::new();
            parse_response(text.as_bytes(), false, limits, &mut out).expect("valid").expect("complete");
            end_head(&mut out, b"x-request-id: mine\r\n", Delimit::AsIs, false);
            String::from_utf8(out).expect("text")
        };
        let upstream =
            "HTTP/1.1 299 Odd Reason\r\nContent-Length: 2\r\nX-Trace: a\r\nConnection: keep-alive, X-Trace\r\n\
            Keep-Alive: timeout=5\r\nX-Request-Id: theirs\r\nRateLimit: \"up\";r=1\r\nServer: Up\r\n\r\nok";
        assert_eq!(
            splice(upstream, false),
            "HTTP/1.1 299 Odd Reason\r\ncontent-length: 2\r\nratelimit: \"up\";r=1\r\nserver: Up\r\n\
             x-request-id: mine\r\n\r\n"
        );
        assert_eq!(
            splice(upstream, true),
            "HTTP/1.1 299 Odd Reason\r\ncontent-length: 2\r\nserver: Up\r\nx-request-id: mine\r\n\r\n"
        );
        // Only the fields a `Connection` field names go, from any of them.
        let named =
            "HTTP/1.1 200 OK\r\nConnection: Keep-Alive\r\nX-Trace: a\r\nX-Other: b\r\nConnection: , X-TRACE\r\n\
            Content-Length: 0\r\n\r\n";
        assert_eq!(
            splice(named, false),
            "HTTP/1.1 200 OK\r\nx-other: b\r\ncontent-length: 0\r\nx-request-id: mine\r\n\r\n"
        );
        let plain = "HTTP/1.1 200 OK\r\nConnection: Keep-Alive, close\r\nX-Trace: a\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(
            splice(plain, false),
            "HTTP/1.1 200 OK\r\nx-trace: a\r\ncontent-length: 0\r\nx-request-id: mine\r\n\r\n"
        );
        // A length beside chunked framing is dropped, whichever comes first.
        let chunked = "HTTP/1.1 200 OK\r\nContent-Length: 9\r\nTransfer-Encoding: chunked\r\nTE: trailers\r\n\
            Trailer: X\r\nUpgrade: h2c\r\nProxy-Authenticate: Basic\r\n\r\n";
        assert_eq!(splice(chunked, false), "HTTP/1.1 200 OK\r\nx-request-id: mine\r\n\r\n");
        assert_eq!(splice("HTTP/1.1 404 \r\nContent-Length: 0\r\n\r\n", false).lines().next(), Some("HTTP/1.1 404 "));
    }
}
