//! A request head as the proxy's decision reads it, whichever path parsed
//! it: hyper's `http::request::Parts` with its `HeaderMap`, or the fast
//! path's fields borrowed from the head's own bytes (`fast::parse::Head`),
//! which are never put in a map. The decision (`Proxy::admit` and what it
//! calls) asks for values by name; both answer the same.

use http::header::{HeaderMap, HeaderName};
use http::request::Parts;
use http::{Method, Uri};

use crate::contract::{RequestId, X_REQUEST_ID};

/// A request's header fields, looked up by name.
pub trait Fields {
    /// Every value of `name`, in the order the client sent them.
    fn values<'s, 'n>(&'s self, name: &'n HeaderName) -> impl DoubleEndedIterator<Item = &'s [u8]> + use<'s, 'n, Self>;

    /// The first value of `name`.
    fn first<'s>(&'s self, name: &HeaderName) -> Option<&'s [u8]> {
        self.values(name).next()
    }

    /// Whether a field is named `name`.
    fn has(&self, name: &HeaderName) -> bool {
        self.first(name).is_some()
    }

    /// The bytes of the fields' names and values (what the head limit
    /// counts of them).
    fn size(&self) -> usize;

    /// The client's `X-Request-Id` if it is sane, else a new one.
    fn request_id(&self) -> RequestId {
        RequestId::from_client(self.first(&X_REQUEST_ID))
    }
}

impl Fields for HeaderMap {
    fn values<'s, 'n>(&'s self, name: &'n HeaderName) -> impl DoubleEndedIterator<Item = &'s [u8]> + use<'s, 'n> {
        self.get_all(name).into_iter().map(|v| v.as_bytes())
    }

    fn first<'s>(&'s self, name: &HeaderName) -> Option<&'s [u8]> {
        self.get(name).map(|v| v.as_bytes())
    }

    fn has(&self, name: &HeaderName) -> bool {
        self.contains_key(name)
    }

    fn size(&self) -> usize {
        self.iter().map(|(name, value)| name.as_str().len() + value.len()).sum()
    }

    /// The client's value shared, not copied.
    fn request_id(&self) -> RequestId {
        RequestId::from_headers(self)
    }
}

/// A value as text, as `HeaderValue::to_str` reads it: visible ASCII and
/// tabs only.
pub fn text(value: &[u8]) -> Option<&str> {
    if value.iter().all(|&b| b == b'\t' || (0x20..0x7f).contains(&b)) {
        std::str::from_utf8(value).ok()
    } else {
        None
    }
}

/// The parts of a request head the decision reads.
#[derive(Debug)]
pub struct View<'a, F: ?Sized> {
    pub method: &'a Method,
    pub uri: &'a Uri,
    pub fields: &'a F,
}

impl<F: ?Sized> Clone for View<'_, F> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<F: ?Sized> Copy for View<'_, F> {}

impl<'a> View<'a, HeaderMap> {
    /// hyper's request head.
    pub fn of(parts: &'a Parts) -> Self {
        View { method: &parts.method, uri: &parts.uri, fields: &parts.headers }
    }
}

impl<F: Fields + ?Sized> View<'_, F> {
    /// The head's size as the limit counts it: method, target, and field
    /// names and values, without framing.
    pub fn head_size(&self) -> usize {
        let target = self.uri.path_and_query().map_or(0, |pq| pq.as_str().len())
            + self.uri.authority().map_or(0, |a| a.as_str().len());
        self.method.as_str().len() + target + self.fields.size()
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    #[test]
    fn text_is_what_a_header_value_reads_as_text() {
        for value in [&b"plain"[..], b"tab\there", b"", b"caf\xc3\xa9", b"nul\0", b"del\x7f", b"\xff"] {
            let header = HeaderValue::from_bytes(value).ok();
            let expected = header.as_ref().and_then(|h| h.to_str().ok());
            assert_eq!(text(value), expected, "{value:?}");
        }
    }
}
