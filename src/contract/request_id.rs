//! The request id that ties a request's log lines, problem, audit entry and
//! upstream call together, on both planes: the client's `X-Request-Id` when
//! it is a sane token (1–128 of `[A-Za-z0-9._-]`, safe to log and to echo),
//! else 128 random bits as 32 lowercase hex digits.
//!
//! Made once per proxied request, so it stays cheap: no formatting machinery,
//! and an accepted client id is reused as the header value it arrived in.

use http::header::{HeaderMap, HeaderName, HeaderValue};

pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Longest client-supplied request id that is kept.
const MAX_LEN: usize = 128;

#[derive(Debug, Clone)]
pub struct RequestId(Repr);

/// A generated id stays inline until a header needs it: the fast path
/// writes it as bytes and never does.
#[derive(Debug, Clone)]
enum Repr {
    Generated([u8; 32]),
    Client(HeaderValue),
}

impl RequestId {
    /// The client's `X-Request-Id` if it is sane, else a new one.
    pub fn from_headers(headers: &HeaderMap) -> Self {
        match headers.get(X_REQUEST_ID) {
            Some(value) if is_sane(value.as_bytes()) => RequestId(Repr::Client(value.clone())),
            _ => Self::generate(),
        }
    }

    /// The client's `X-Request-Id` value, if it sent one and it is sane,
    /// else a new one.
    pub fn from_client(value: Option<&[u8]>) -> Self {
        match value.filter(|v| is_sane(v)).map(HeaderValue::from_bytes) {
            Some(Ok(value)) => RequestId(Repr::Client(value)),
            _ => Self::generate(),
        }
    }

    /// 128 random bits as 32 hex digits.
    pub fn generate() -> Self {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let bits = rand::random::<u128>();
        let mut id = [0u8; 32];
        for (i, digit) in id.iter_mut().enumerate() {
            *digit = HEX[((bits >> (124 - 4 * i)) & 0xf) as usize];
        }
        RequestId(Repr::Generated(id))
    }

    pub fn as_str(&self) -> &str {
        // Only sane ASCII tokens are ever stored (see `from_headers`).
        match &self.0 {
            Repr::Generated(id) => std::str::from_utf8(id).unwrap_or(""),
            Repr::Client(value) => value.to_str().unwrap_or(""),
        }
    }

    pub fn header_value(&self) -> HeaderValue {
        match &self.0 {
            // Hex digits are always a valid header value.
            Repr::Generated(id) => HeaderValue::from_bytes(id).unwrap_or(HeaderValue::from_static("0")),
            Repr::Client(value) => value.clone(),
        }
    }

    /// The value, without the copy `header_value` may make.
    pub fn into_header_value(self) -> HeaderValue {
        match self.0 {
            Repr::Client(value) => value,
            generated => RequestId(generated).header_value(),
        }
    }
}

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

fn is_sane(id: &[u8]) -> bool {
    !id.is_empty()
        && id.len() <= MAX_LEN
        && id.iter().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from(value: &str) -> RequestId {
        let mut headers = HeaderMap::new();
        headers.insert(X_REQUEST_ID, HeaderValue::from_str(value).expect("header value"));
        RequestId::from_headers(&headers)
    }

    fn is_generated(id: &RequestId) -> bool {
        id.as_str().len() == 32 && id.as_str().bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    }

    #[test]
    fn generated_request_id_is_32_lowercase_hex_digits() {
        let a = RequestId::generate();
        let b = RequestId::generate();
        assert!(is_generated(&a), "{a}");
        assert_ne!(a.as_str(), b.as_str());
        assert!(is_generated(&RequestId::from_headers(&HeaderMap::new())));
        assert_eq!(a.header_value(), a.as_str());
        assert_eq!(a.clone().into_header_value(), a.as_str());
    }

    #[test]
    fn a_client_value_is_judged_as_a_header_is() {
        assert_eq!(RequestId::from_client(Some(b"client-id_1.2")).as_str(), "client-id_1.2");
        assert_eq!(RequestId::from_client(Some(b"client-id")).header_value(), "client-id");
        for bad in [&b"not sane!"[..], b"", b"caf\xc3\xa9", &[b'a'; 129]] {
            assert!(is_generated(&RequestId::from_client(Some(bad))), "{bad:?}");
        }
        assert!(is_generated(&RequestId::from_client(None)));
    }

    #[test]
    fn a_sane_client_request_id_is_kept() {
        assert_eq!(from("client-id_1.2").as_str(), "client-id_1.2");
        assert_eq!(from(&"a".repeat(128)).as_str().len(), 128);
    }

    #[test]
    fn an_insane_client_request_id_is_replaced() {
        for bad in ["not sane!", "", "a/b", "x\ty", &"a".repeat(129)] {
            assert!(is_generated(&from(bad)), "{bad:?}");
        }
    }
}
