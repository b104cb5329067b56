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

use bytes::{Bytes, BytesMut};
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::{Method, Uri, Version};
use memchr::memchr_iter;

use super::body::Chunked;
use crate::listener::framing::{content_length, Fault, LINE_KEEP};
use crate::proxy::fields::{Fields, View};

/// Header fields a request head may have on the fast path (hyper's own
/// default); more get 431.
pub const MAX_HEADERS: usize = 100;

/// The room `Reuse` keeps for heads: several of a usual size, one after
/// the other, before it goes back to the start.
const REUSED: usize = 4096;

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
    pub fields: RawFields,
    pub framing: Framing,
    pub flags: Flags,
}

impl Head {
    /// The head as the proxy's decision reads it.
    pub fn view(&self) -> View<'_, RawFields> {
        View { method: &self.method, uri: &self.uri, fields: &self.fields }
    }

    /// The head as hyper's types hold it (for telemetry, which reads a
    /// `Request`).
    pub fn to_request(&self) -> http::Request<()> {
        let mut request = http::Request::new(());
        *request.method_mut() = self.method.clone();
        *request.uri_mut() = self.uri.clone();
        *request.version_mut() = Version::HTTP_11;
        *request.headers_mut() = self.fields.to_map();
        request
    }
}

/// Where a field's name and value are in the head's bytes.
#[derive(Debug, Clone, Copy)]
struct Span {
    name: (u32, u32),
    value: (u32, u32),
}

/// A request head's fields, borrowed from a copy of the head's bytes in
/// which the names are lower case: no map is built, no name hashed, and a
/// lookup is a walk over a handful of fields. Names and values are what
/// `HeaderName` and `HeaderValue` accept (httparse allows no other).
#[derive(Debug, Default)]
pub struct RawFields {
    head: Bytes,
    spans: Vec<Span>,
}

impl RawFields {
    fn at(&self, (start, end): (u32, u32)) -> &[u8] {
        &self.head[start as usize..end as usize]
    }

    /// Each field as (lower-case name, value), in the client's order.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = (&[u8], &[u8])> {
        self.spans.iter().map(|span| (self.at(span.name), self.at(span.value)))
    }

    /// The fields in a `HeaderMap`.
    pub fn to_map(&self) -> HeaderMap {
        let mut map = HeaderMap::with_capacity(self.spans.len());
        for span in &self.spans {
            let value = self.head.slice(span.value.0 as usize..span.value.1 as usize);
            if let (Ok(name), Ok(value)) =
                (HeaderName::from_bytes(self.at(span.name)), HeaderValue::from_maybe_shared(value))
            {
                map.append(name, value);
            }
        }
        map
    }
}

impl Fields for RawFields {
    fn values<'s, 'n>(&'s self, name: &'n HeaderName) -> impl DoubleEndedIterator<Item = &'s [u8]> + use<'s, 'n> {
        let name = name.as_str().as_bytes();
        self.iter().filter(move |(n, _)| *n == name).map(|(_, value)| value)
    }

    fn size(&self) -> usize {
        self.spans.iter().map(|s| (s.name.1 - s.name.0 + s.value.1 - s.value.0) as usize).sum()
    }
}

/// What a connection's heads reuse from one to the next: the buffer each
/// head is copied into, whose room a head's copy gives back when the head
/// is dropped (`BytesMut::reserve` takes it back once nothing shares it),
/// and the vector of field offsets. A connection's requests then allocate
/// nothing for their heads.
#[derive(Debug, Default)]
pub struct Reuse {
    bytes: BytesMut,
    spans: Vec<Span>,
}

impl Reuse {
    /// What `head` held, kept for the next head.
    pub fn recycle(&mut self, head: Head) {
        let mut spans = head.fields.spans;
        spans.clear();
        self.spans = spans;
    }
}

/// The verdict on the bytes at the start of a buffer.
#[derive(Debug)]
// Not boxed: a verdict is moved once or twice, where a box would be one
// more allocation a request.
#[allow(clippy::large_enum_variant)]
pub enum Parsed {
    /// No whole head yet.
    Partial,
    Complete(Head),
    /// Not a request head a strict reading accepts: 400, then close.
    Refused(Fault),
    /// More than `MAX_HEADERS` fields: 431, then close.
    TooManyHeaders,
}

/// Parses the request head at the start of `buf`.
pub fn parse_request(buf: &[u8]) -> Parsed {
    parse_request_with(buf, &mut Reuse::default())
}

/// `parse_request`, copying the head into `reuse`'s buffer.
pub fn parse_request_with(buf: &[u8], reuse: &mut Reuse) -> Parsed {
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
    // The head is copied once, its names put in lower case; the fields and
    // the target are slices of the copy.
    if reuse.bytes.capacity() < len {
        reuse.bytes.reserve(len.max(REUSED));
    }
    reuse.bytes.extend_from_slice(&buf[..len]);
    let mut copy = reuse.bytes.split();
    let offset = |part: &[u8]| (part.as_ptr() as usize).wrapping_sub(buf.as_ptr() as usize);
    let mut spans = std::mem::take(&mut reuse.spans);
    spans.reserve(request.headers.len());
    for field in request.headers.iter() {
        let name = field.name.as_bytes();
        let value = field.value;
        let (name_at, value_at) = (offset(name), offset(value));
        // httparse's fields are slices of `buf[..len]` (empty values too).
        let within = |at: usize, n: usize| at.checked_add(n).is_some_and(|end| end <= len);
        if !within(name_at, name.len()) || !within(value_at, value.len()) {
            return Parsed::Refused(Fault::LineEnd);
        }
        let lower = &mut copy[name_at..name_at + name.len()];
        lower.make_ascii_lowercase();
        match &*lower {
            // As long as what `framing::Tracker` keeps of a line split
            // across reads, or longer: refused as it refuses them, so that
            // nothing it refuses passes here.
            b"content-length" if line_len(buf, field) >= LINE_KEEP => return Parsed::Refused(Fault::BadLength),
            b"transfer-encoding" if line_len(buf, field) >= LINE_KEEP => {
                return Parsed::Refused(Fault::BadTransferEncoding);
            }
            b"content-length" => match (content_length(value), length) {
                (None, _) => return Parsed::Refused(Fault::BadLength),
                (Some(n), Some(seen)) if n != seen => return Parsed::Refused(Fault::BadLength),
                (Some(n), _) => length = Some(n),
            },
            b"transfer-encoding" => {
                transfer_encoding = true;
                // The last line's last coding decides.
                let last = value.rsplit(|&b| b == b',').next().map_or(&b""[..], <[u8]>::trim_ascii);
                chunked = last.eq_ignore_ascii_case(b"chunked");
            }
            b"upgrade" => flags.upgrade = true,
            b"expect" => flags.expect = true,
            b"connection" => flags.close |= has_token(value, b"close"),
            _ => {}
        }
        // Offsets within the head, which is far shorter than 4 GiB.
        let span = |at: usize, n: usize| (at as u32, (at + n) as u32);
        spans.push(Span { name: span(name_at, name.len()), value: span(value_at, value.len()) });
    }
    let framing = match (transfer_encoding, length) {
        (true, Some(_)) => return Parsed::Refused(Fault::LengthAndChunked),
        (true, None) if !chunked || flags.not_http11 => return Parsed::Refused(Fault::BadTransferEncoding),
        (true, None) => Framing::Chunked,
        (false, Some(0)) | (false, None) => Framing::Empty,
        (false, Some(n)) => Framing::Length(n),
    };
    let Ok(method) = Method::from_bytes(method.as_bytes()) else { return Parsed::Refused(Fault::LineEnd) };
    let target_at = offset(target.as_bytes());
    let head = copy.freeze();
    let uri = match target_at.checked_add(target.len()).filter(|&end| end <= len && !target.is_empty()) {
        Some(end) => Uri::from_maybe_shared(head.slice(target_at..end)),
        None => Uri::from_maybe_shared(Bytes::copy_from_slice(target.as_bytes())),
    };
    let Ok(uri) = uri else { return Parsed::Refused(Fault::LineEnd) };
    let fields = RawFields { head, spans };
    Parsed::Complete(Head { len, method, uri, fields, framing, flags })
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
