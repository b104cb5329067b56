//! The original request, as the ingress describes it in the headers of its
//! auth subrequest: the method in `X-Forwarded-Method` (Caddy, Traefik) or
//! `X-Original-Method` (the usual nginx spelling), the path and query in
//! `X-Forwarded-Uri` or `X-Original-URI`, and, from a trusted proxy only,
//! the host in `X-Forwarded-Host`.
//!
//! The two spellings are one field: if both arrive and disagree, the
//! request is refused. An ingress sets one of them and passes the client's
//! other headers through, so otherwise a client could send the spelling the
//! ingress does not set and have its own method or path decided instead of
//! the real one.

use http::header::{HeaderMap, HeaderName, HeaderValue, HOST};
use http::request::Parts;
use http::{Method, Uri};

pub const X_FORWARDED_METHOD: HeaderName = HeaderName::from_static("x-forwarded-method");
pub const X_ORIGINAL_METHOD: HeaderName = HeaderName::from_static("x-original-method");
pub const X_FORWARDED_URI: HeaderName = HeaderName::from_static("x-forwarded-uri");
pub const X_ORIGINAL_URI: HeaderName = HeaderName::from_static("x-original-uri");
pub const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Why the headers name no usable original request; the `detail` of the
/// `bad_request` problem the ingress gets back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unusable {
    NoMethod,
    NoUri,
    /// The two spellings (or two values of one) disagree.
    Conflicting(&'static str),
    BadMethod,
    BadUri,
    BadHost,
}

impl Unusable {
    pub fn detail(self) -> &'static str {
        match self {
            Unusable::NoMethod => "Forward auth needs the original method in X-Forwarded-Method or X-Original-Method.",
            Unusable::NoUri => "Forward auth needs the original path and query in X-Forwarded-Uri or X-Original-URI.",
            Unusable::Conflicting(detail) => detail,
            Unusable::BadMethod => {
                "The original method (X-Forwarded-Method or X-Original-Method) is not an HTTP method."
            }
            Unusable::BadUri => {
                "The original URI (X-Forwarded-Uri or X-Original-URI) is not a path and query starting with /."
            }
            Unusable::BadHost => "X-Forwarded-Host does not name one host.",
        }
    }
}

/// Turns the auth subrequest's head into the original request's: its
/// method and URI, and (when `trusted`, the peer being one of
/// `proxy.trusted_proxies`) its `Host` from `X-Forwarded-Host`. From an
/// untrusted peer, `X-Forwarded-Host` is ignored as the proxy ignores it,
/// and the subrequest's own `Host` is what host routes and restrictions see.
pub fn restore(parts: &mut Parts, trusted: bool) -> Result<(), Unusable> {
    let method = one_of(
        &parts.headers,
        [X_FORWARDED_METHOD, X_ORIGINAL_METHOD],
        "X-Forwarded-Method and X-Original-Method name different methods.",
    )?
    .ok_or(Unusable::NoMethod)?;
    let method = Method::from_bytes(method.as_bytes()).map_err(|_| Unusable::BadMethod)?;
    let uri = one_of(
        &parts.headers,
        [X_FORWARDED_URI, X_ORIGINAL_URI],
        "X-Forwarded-Uri and X-Original-URI name different URIs.",
    )?
    .ok_or(Unusable::NoUri)?;
    let uri = origin_form(uri).ok_or(Unusable::BadUri)?;
    if trusted {
        if let Some(host) = forwarded_host(&parts.headers)? {
            parts.headers.insert(HOST, host);
        }
    }
    parts.method = method;
    parts.uri = uri;
    Ok(())
}

/// The one value the headers `names` carry between them: `None` when
/// absent, refused when two values differ.
fn one_of<'a>(
    headers: &'a HeaderMap,
    names: [HeaderName; 2],
    conflict: &'static str,
) -> Result<Option<&'a HeaderValue>, Unusable> {
    let mut found: Option<&HeaderValue> = None;
    for value in names.iter().flat_map(|name| headers.get_all(name)) {
        match found {
            Some(previous) if previous != value => return Err(Unusable::Conflicting(conflict)),
            _ => found = Some(value),
        }
    }
    Ok(found)
}

/// A path with an optional query, as the request line carries it (`/a?b`):
/// absolute URIs and `*` are refused, so the decision is always about a
/// path.
fn origin_form(value: &HeaderValue) -> Option<Uri> {
    let bytes = value.as_bytes();
    if bytes.first() != Some(&b'/') || bytes.starts_with(b"//") {
        return None;
    }
    let uri = Uri::try_from(bytes).ok()?;
    (uri.scheme().is_none() && uri.authority().is_none()).then_some(uri)
}

/// `X-Forwarded-Host`: one value naming one host (with an optional port).
fn forwarded_host(headers: &HeaderMap) -> Result<Option<HeaderValue>, Unusable> {
    let mut values = headers.get_all(X_FORWARDED_HOST).iter();
    let Some(value) = values.next() else { return Ok(None) };
    if values.next().is_some() {
        return Err(Unusable::BadHost);
    }
    let text = value.to_str().map_err(|_| Unusable::BadHost)?.trim();
    match text.parse::<http::uri::Authority>() {
        Ok(authority) if !authority.host().is_empty() && !text.contains('@') => {
            HeaderValue::from_str(text).map(Some).map_err(|_| Unusable::BadHost)
        }
        _ => Err(Unusable::BadHost),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(pairs: &[(&'static str, &'static str)]) -> Parts {
        let mut request = http::Request::builder().method("GET").uri("/auth").header("host", "auth.internal");
        for (name, value) in pairs {
            request = request.header(*name, *value);
        }
        request.body(()).expect("request").into_parts().0
    }

    #[test]
    fn either_spelling_names_the_original_request() {
        let mut p = parts(&[("x-forwarded-method", "DELETE"), ("x-forwarded-uri", "/v1/things/7?force=1")]);
        restore(&mut p, false).expect("usable");
        assert_eq!((p.method.as_str(), p.uri.to_string().as_str()), ("DELETE", "/v1/things/7?force=1"));
        let mut p = parts(&[("x-original-method", "POST"), ("x-original-uri", "/v1/x")]);
        restore(&mut p, false).expect("usable");
        assert_eq!((p.method.as_str(), p.uri.path()), ("POST", "/v1/x"));
        // Both spellings agreeing is fine.
        let mut p = parts(&[("x-forwarded-method", "GET"), ("x-original-method", "GET"), ("x-original-uri", "/")]);
        assert_eq!(restore(&mut p, false), Ok(()));
    }

    #[test]
    fn a_second_spelling_that_disagrees_is_refused() {
        let mut p = parts(&[("x-original-method", "POST"), ("x-forwarded-method", "GET"), ("x-original-uri", "/a")]);
        assert!(matches!(restore(&mut p, true), Err(Unusable::Conflicting(_))));
        let mut p =
            parts(&[("x-original-method", "GET"), ("x-original-uri", "/admin"), ("x-forwarded-uri", "/public")]);
        assert!(matches!(restore(&mut p, true), Err(Unusable::Conflicting(_))));
        let mut p = parts(&[("x-forwarded-method", "GET"), ("x-forwarded-method", "POST"), ("x-forwarded-uri", "/")]);
        assert!(matches!(restore(&mut p, true), Err(Unusable::Conflicting(_))));
    }

    #[test]
    fn missing_or_garbled_fields_are_named() {
        assert_eq!(restore(&mut parts(&[("x-forwarded-uri", "/a")]), false), Err(Unusable::NoMethod));
        assert_eq!(restore(&mut parts(&[("x-forwarded-method", "GET")]), false), Err(Unusable::NoUri));
        let bad_method = parts(&[("x-forwarded-method", "GE T"), ("x-forwarded-uri", "/a")]);
        assert_eq!(restore(&mut { bad_method }, false), Err(Unusable::BadMethod));
        for uri in ["a/b", "http://evil.example/a", "//evil.example/a", "*", "/a b"] {
            let mut p = parts(&[("x-forwarded-method", "GET")]);
            p.headers.insert(X_FORWARDED_URI, HeaderValue::from_str(uri).expect("value"));
            assert_eq!(restore(&mut p, false), Err(Unusable::BadUri), "{uri}");
        }
        assert!(Unusable::NoUri.detail().contains("X-Forwarded-Uri"));
    }

    #[test]
    fn forwarded_host_only_from_a_trusted_peer() {
        let with_host = || {
            parts(&[("x-forwarded-method", "GET"), ("x-forwarded-uri", "/"), ("x-forwarded-host", "api.example.com")])
        };
        let mut p = with_host();
        restore(&mut p, false).expect("usable");
        assert_eq!(p.headers[HOST], "auth.internal");
        let mut p = with_host();
        restore(&mut p, true).expect("usable");
        assert_eq!(p.headers[HOST], "api.example.com");
        for bad in ["a.example, b.example", "user@a.example", ""] {
            let mut p = parts(&[("x-forwarded-method", "GET"), ("x-forwarded-uri", "/")]);
            p.headers.insert(X_FORWARDED_HOST, HeaderValue::from_str(bad).expect("value"));
            assert_eq!(restore(&mut p, true), Err(Unusable::BadHost), "{bad:?}");
        }
    }
}
