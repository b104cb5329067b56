//! The fast path's HTTP/1.1 request head parser: one pass over the head
//! (httparse for the grammar — tokens, bare CR, whitespace before a colon,
//! obs-fold — and one `memchr` walk for line ends), with the strict framing
//! rules of `listener::framing` built in rather than checked by a second
//! tracker:
//!
//! - every line of the head ends in CRLF, never a bare LF;
//! - `Content-Length` is one decimal number (or a list of the same one);
//! - `Transfer-Encoding`'s last coding is `chunked`, and never together
//!   with `Content-Length`.
//!
//! The head is judged whole, once it is all in the buffer: the verdict
//! cannot depend on where the client's reads end. Chunked bodies are walked
//! by `listener::chunked::Chunked`; `Walker` strings both together over a
//! whole stream (tests and the `http1_framing` fuzz target).

use std::mem::MaybeUninit;

use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::{Method, Uri, Version};
use memchr::memchr_iter;

use super::body::Chunked;
use crate::listener::framing::{content_length, Fault, LINE_KEEP};

/// Header fields a request head may have on the fast path (hyper's own
/// default); more get 431.
pub const MAX_HEADERS: usize = 100;

/// How a request's body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body.
    Empty,
    /// `Content-Length`.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// What the head says beyond its fields, decided in the same pass.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Flags {
    /// `Upgrade` or `CONNECT`: a protocol switch may follow (hyper's).
    pub upgrade: bool,
    /// An `Expect` field (100-continue): hyper's.
    pub expect: bool,
    /// `Connection: close`.
    pub close: bool,
    /// Not HTTP/1.1 (HTTP/1.0): hyper's.
    pub not_http11: bool,
}

impl Flags {
    /// The request needs hyper's server (the rest of the connection goes
    /// there).
    pub fn unusual(&self) -> bool {
        self.upgrade || self.expect || self.not_http11
    }
}

/// A complete, strictly framed request head.
#[derive(Debug)]
pub struct Head {
    /// Bytes of the buffer the head took (with leading empty lines).
    pub len: usize,
    pub method: Method,
    pub uri: Uri,
    pub headers: HeaderMap,
    pub framing: Framing,
    pub flags: Flags,
}

impl Head {
    /// The head as the proxy's decision takes it.
    pub fn into_parts(self) -> (http::request::Parts, Framing, Flags) {
        let (mut parts, ()) = http::Request::new(()).into_parts();
        parts.method = self.method;
        parts.uri = self.uri;
        parts.version = Version::HTTP_11;
        parts.headers = self.headers;
        (parts, self.framing, self.flags)
    }
}

/// The verdict on the bytes at the start of a buffer.
#[derive(Debug)]
pub enum Parsed {
    /// No whole head yet.
    Partial,
    /// Boxed: a head is large, and the other verdicts are small.
    Complete(Box<Head>),
    /// Not a request head a strict reading accepts: 400, then close.
    Refused(Fault),
    /// More than `MAX_HEADERS` fields: 431, then close.
    TooManyHeaders,
}

/// Parses the request head at the start of `buf`.
pub fn parse_request(buf: &[u8]) -> Parsed {
    // Uninitialized: httparse fills what it uses (3.2 KB not zeroed a head).
    let mut fields = [const { MaybeUninit::uninit() }; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut []);
    let len = match request.parse_with_uninit_headers(buf, &mut fields) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => {
            // A bare LF is refused as soon as it is seen, whole head or not.
            return match bare_lf(buf) {
                true => Parsed::Refused(Fault::LineEnd),
                false => Parsed::Partial,
            };
        }
        Err(httparse::Error::TooManyHeaders) => return Parsed::TooManyHeaders,
        Err(_) => return Parsed::Refused(Fault::LineEnd),
    };
    if bare_lf(&buf[..len]) {
        return Parsed::Refused(Fault::LineEnd);
    }
    let (Some(method), Some(target), Some(minor)) = (request.method, request.path, request.version) else {
        return Parsed::Refused(Fault::LineEnd);
    };
    let mut flags = Flags { not_http11: minor != 1, upgrade: method == "CONNECT", ..Flags::default() };
    let mut length: Option<u64> = None;
    let mut transfer_encoding = false;
    let mut chunked = false;
    // Exactly the head's fields: the fast path adds none to the map (its
    // edits are spliced into the bytes sent upstream), and a few fields'
    // worth of room keeps the map's entries within the allocator's
    // per-thread cache (up to 1,032 bytes, about nine fields), where eight
    // spare entries put even a three-field head's beyond it, through
    // glibc's slower path on every request.
    let mut headers = HeaderMap::with_capacity(request.headers.len());
    // The head is copied once; the values and the target are slices of it,
    // not copies of their own.
    let shared = Bytes::copy_from_slice(&buf[..len]);
    let slice_of = |part: &[u8]| {
        let start = (part.as_ptr() as usize).wrapping_sub(buf.as_ptr() as usize);
        match start.checked_add(part.len()) {
            Some(end) if end <= shared.len() && !part.is_empty() => shared.slice(start..end),
            _ => Bytes::copy_from_slice(part),
        }
    };
    for field in request.headers.iter() {
        let Ok(name) = HeaderName::from_bytes(field.name.as_bytes()) else {
            return Parsed::Refused(Fault::LineEnd);
        };
        let value = field.value;
        match name.as_str() {
            // As long as what `framing::Tracker` keeps of a line split
            // across reads, or longer: refused as it refuses them, so that
            // nothing it refuses passes here.
            "content-length" if line_len(buf, field) >= LINE_KEEP => return Parsed::Refused(Fault::BadLength),
            "transfer-encoding" if line_len(buf, field) >= LINE_KEEP => {
                return Parsed::Refused(Fault::BadTransferEncoding);
            }
            "content-length" => match (content_length(value), length) {
                (None, _) => return Parsed::Refused(Fault::BadLength),
                (Some(n), Some(seen)) if n != seen => return Parsed::Refused(Fault::BadLength),
                (Some(n), _) => length = Some(n),
            },
            "transfer-encoding" => {
                transfer_encoding = true;
                // The last line's last coding decides.
                let last = value.rsplit(|&b| b == b',').next().map_or(&b""[..], <[u8]>::trim_ascii);
                chunked = last.eq_ignore_ascii_case(b"chunked");
            }
            "upgrade" => flags.upgrade = true,
            "expect" => flags.expect = true,
            "connection" => flags.close |= has_token(value, b"close"),
            _ => {}
        }
        let Ok(value) = HeaderValue::from_maybe_shared(slice_of(value)) else {
            return Parsed::Refused(Fault::LineEnd);
        };
        headers.append(name, value);
    }
    let framing = match (transfer_encoding, length) {
        (true, Some(_)) => return Parsed::Refused(Fault::LengthAndChunked),
        (true, None) if !chunked || flags.not_http11 => return Parsed::Refused(Fault::BadTransferEncoding),
        (true, None) => Framing::Chunked,
        (false, Some(0)) | (false, None) => Framing::Empty,
        (false, Some(n)) => Framing::Length(n),
    };
    let Ok(method) = Method::from_bytes(method.as_bytes()) else { return Parsed::Refused(Fault::LineEnd) };
    let Ok(uri) = Uri::from_maybe_shared(slice_of(target.as_bytes())) else { return Parsed::Refused(Fault::LineEnd) };
    Parsed::Complete(Box::new(Head { len, method, uri, headers, framing, flags }))
}

/// The length of a field's line in `buf` (name to the CR, whitespace
/// around the value included).
fn line_len(buf: &[u8], field: &httparse::Header<'_>) -> usize {
    let base = buf.as_ptr() as usize;
    let name = field.name.as_ptr() as usize - base;
    let value_end = (field.value.as_ptr() as usize + field.value.len()).saturating_sub(base).max(name);
    let rest = buf.get(value_end..).unwrap_or_default();
    value_end + memchr::memchr(b'\r', rest).unwrap_or(rest.len()) - name
}

/// Whether some LF in `bytes` is not preceded by CR.
fn bare_lf(bytes: &[u8]) -> bool {
    memchr_iter(b'\n', bytes).any(|i| i == 0 || bytes[i - 1] != b'\r')
}

/// Whether a comma-separated header value lists `token` (any case).
pub fn has_token(value: &[u8], token: &[u8]) -> bool {
    value.split(|&b| b == b',').any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
}

/// A whole client stream judged the way the fast path's connection loop
/// judges it: heads gathered until complete, `Content-Length` bodies
/// skipped by count, chunked bodies walked. For tests and fuzzing; the
/// connection loop drives `parse_request` and `Chunked` itself.
#[derive(Debug, Default)]
pub struct Walker {
    head: Vec<u8>,
    body: WalkBody,
    /// Complete requests seen.
    pub requests: usize,
    failed: Option<Fault>,
}

#[derive(Debug, Default)]
enum WalkBody {
    #[default]
    None,
    Length(u64),
    Chunked(Chunked),
}

impl Walker {
    /// Part of a head is buffered, not judged yet.
    pub fn head_pending(&self) -> bool {
        !self.head.is_empty()
    }

    /// Judges the next bytes of the stream. After a refusal every call
    /// reports it again. `Ok(false)`: a head needs hyper (the walk stops
    /// there, as the connection loop hands over).
    pub fn feed(&mut self, mut bytes: &[u8]) -> Result<bool, Fault> {
        if let Some(fault) = self.failed {
            return Err(fault);
        }
        while !bytes.is_empty() {
            match &mut self.body {
                WalkBody::Length(left) => {
                    let n = (*left).min(bytes.len() as u64);
                    *left -= n;
                    bytes = &bytes[n as usize..];
                    if *left == 0 {
                        self.body = WalkBody::None;
                        self.requests += 1;
                    }
                }
                WalkBody::Chunked(chunked) => {
                    let step = chunked.step(bytes).inspect_err(|&f| self.failed = Some(f))?;
                    bytes = &bytes[step.consumed..];
                    if step.done {
                        self.body = WalkBody::None;
                        self.requests += 1;
                    }
                }
                WalkBody::None => {
                    let before = self.head.len();
                    self.head.extend_from_slice(bytes);
                    match parse_request(&self.head) {
                        Parsed::Partial => bytes = &[],
                        Parsed::Refused(fault) => {
                            self.failed = Some(fault);
                            return Err(fault);
                        }
                        Parsed::TooManyHeaders => {
                            self.failed = Some(Fault::LineEnd);
                            return Err(Fault::LineEnd);
                        }
                        Parsed::Complete(head) if head.flags.unusual() => return Ok(false),
                        Parsed::Complete(head) => {
                            // The head ends in these bytes: what follows it
                            // is judged as the stream goes on.
                            bytes = &bytes[head.len.saturating_sub(before).min(bytes.len())..];
                            self.head.clear();
                            match head.framing {
                                Framing::Empty => self.requests += 1,
                                Framing::Length(n) => self.body = WalkBody::Length(n),
                                Framing::Chunked => self.body = WalkBody::Chunked(Chunked::default()),
                            }
                        }
                    }
                }
            }
        }
        Ok(true)
    }
}

#[cfg(test)]
#[path = "parse_tests.rs"]
mod tests;
