//! Method and URL override headers: `X-HTTP-Method-Override`,
//! `X-HTTP-Method` and `X-Method-Override` make Express, Rails, Laravel,
//! Symfony and ASP.NET act on another method; `X-Original-URL` and
//! `X-Rewrite-URL` make IIS-style stacks act on another path. By default
//! `headers` removes them; where `proxy.override_headers` lets them pass,
//! this module reads what they name so the key decision holds for it too.
//!
//! Owns the names and their parsing, nothing of the decision itself.

use http::header::HeaderName;
use http::{Method, Uri};

use super::fields::{text, Fields};

pub const METHOD_HEADERS: [HeaderName; 3] = [
    HeaderName::from_static("x-http-method-override"),
    HeaderName::from_static("x-http-method"),
    HeaderName::from_static("x-method-override"),
];
pub const URL_HEADERS: [HeaderName; 2] =
    [HeaderName::from_static("x-original-url"), HeaderName::from_static("x-rewrite-url")];

/// Whether `name` (lower case) is one of the override headers.
pub fn is_override(name: &[u8]) -> bool {
    METHOD_HEADERS.iter().chain(URL_HEADERS.iter()).any(|h| h.as_str().as_bytes() == name)
}

/// The methods and paths a request's override headers name.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Named {
    pub methods: Vec<Method>,
    pub paths: Vec<String>,
}

/// An override header whose value names no method or path: refused, since
/// nobody can tell what the upstream will make of it.
#[derive(Debug, PartialEq, Eq)]
pub struct Unreadable;

/// What the override headers of a request name; `None` (without
/// allocating) when it has none.
pub fn named<F: Fields>(headers: &F) -> Result<Option<Named>, Unreadable> {
    if !METHOD_HEADERS.iter().chain(URL_HEADERS.iter()).any(|h| headers.has(h)) {
        return Ok(None);
    }
    let mut named = Named::default();
    for value in METHOD_HEADERS.iter().flat_map(|h| headers.values(h)) {
        // Frameworks upper-case the value before they use it.
        let text = text(value).ok_or(Unreadable)?.trim().to_ascii_uppercase();
        named.methods.push(Method::from_bytes(text.as_bytes()).map_err(|_| Unreadable)?);
    }
    for value in URL_HEADERS.iter().flat_map(|h| headers.values(h)) {
        let uri: Uri = text(value).ok_or(Unreadable)?.trim().parse().map_err(|_| Unreadable)?;
        if uri.path().is_empty() {
            return Err(Unreadable);
        }
        named.paths.push(uri.path().to_owned());
    }
    Ok(Some(named))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderMap;
    use http::HeaderValue;

    #[test]
    fn methods_and_paths_are_read_and_nonsense_refused() {
        let mut h = HeaderMap::new();
        assert_eq!(named(&h), Ok(None));
        h.insert("x-http-method-override", HeaderValue::from_static(" delete "));
        h.insert("x-original-url", HeaderValue::from_static("/admin?x=1"));
        h.insert("x-rewrite-url", HeaderValue::from_static("http://other/v2/x"));
        let n = named(&h).expect("readable").expect("some");
        assert_eq!(n.methods, vec![Method::DELETE]);
        assert_eq!(n.paths, vec!["/admin".to_string(), "/v2/x".to_string()]);
        h.insert("x-method-override", HeaderValue::from_static("GET POST"));
        assert_eq!(named(&h), Err(Unreadable));
    }
}
