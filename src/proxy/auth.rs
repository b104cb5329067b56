//! Finding the API key in a request: the configured headers in order
//! (`authorization` as `Bearer <key>`, any other name as the bare key), then
//! the query parameter if one is configured.
//!
//! Extraction borrows the key from the request head and allocates nothing;
//! the key is handed to `KeySet::check` and never stored, logged or put in
//! an error. Two different credentials in one request are refused rather
//! than guessing which one the client meant.

use http::header::{HeaderMap, HeaderName, AUTHORIZATION};
use http::Uri;

use super::fields::Fields;
use crate::contract::bearer;
use crate::keys::Refusal;

/// More credential headers than this is a configuration nobody needs; the
/// limit lets `Credential` record which headers held the key in one word.
const MAX_KEY_HEADERS: usize = 64;

/// Where keys are looked for, from `proxy.key_headers` and
/// `proxy.key_query_param`.
#[derive(Debug, Clone)]
pub struct CredentialSources {
    headers: Vec<KeyHeader>,
    query_param: Option<String>,
    missing_detail: String,
}

#[derive(Debug, Clone)]
struct KeyHeader {
    name: HeaderName,
    /// `Authorization`: the value is `Bearer <key>`; other schemes are the
    /// upstream's business and are left alone.
    bearer: bool,
}

/// A key found in a request, and where it was found.
#[derive(Debug, Clone, Copy)]
pub struct Credential<'a> {
    pub key: &'a [u8],
    /// Where the key came from, to strip it before forwarding.
    pub found_in: FoundIn,
}

/// Which configured headers (bit i = `key_headers[i]`) and whether the query
/// string carried the key.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FoundIn {
    headers: u64,
    query: bool,
}

/// Why no usable credential came out of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialError {
    Missing,
    /// Two places held different keys.
    Conflicting,
    /// A credential header or parameter was present but empty.
    Empty,
}

impl CredentialError {
    pub fn refusal(self) -> Refusal {
        match self {
            CredentialError::Missing => Refusal::MissingKey,
            CredentialError::Conflicting | CredentialError::Empty => Refusal::InvalidKey,
        }
    }
}

impl CredentialSources {
    /// `key_headers` are lowercase header names (validated by the config).
    pub fn new(key_headers: &[String], query_param: Option<&str>) -> anyhow::Result<Self> {
        if key_headers.len() > MAX_KEY_HEADERS {
            anyhow::bail!("proxy.key_headers: at most {MAX_KEY_HEADERS} headers");
        }
        let headers = key_headers
            .iter()
            .map(|name| {
                let name = HeaderName::from_bytes(name.as_bytes())
                    .map_err(|_| anyhow::anyhow!("proxy.key_headers: not a header name: {name:?}"))?;
                Ok(KeyHeader { bearer: name == AUTHORIZATION, name })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let mut places: Vec<String> = headers
            .iter()
            .map(|h| if h.bearer { "Authorization: Bearer <key>".to_string() } else { format!("{}: <key>", h.name) })
            .collect();
        if let Some(param) = query_param {
            places.push(format!("the {param} query parameter"));
        }
        let missing_detail = format!("Send the API key as {}.", places.join(" or "));
        Ok(CredentialSources { headers, query_param: query_param.map(str::to_owned), missing_detail })
    }

    /// Tells a client without a key where to put it.
    pub fn missing_detail(&self) -> &str {
        &self.missing_detail
    }

    /// The one key the request carries.
    pub fn extract<'a, F: Fields>(&self, headers: &'a F, uri: &'a Uri) -> Result<Credential<'a>, CredentialError> {
        let mut key: Option<&'a [u8]> = None;
        let mut found_in = FoundIn::default();
        for (i, source) in self.headers.iter().enumerate() {
            for value in headers.values(&source.name) {
                let candidate = if source.bearer {
                    match bearer::token(value) {
                        Some(token) => token,
                        None => continue,
                    }
                } else {
                    value.trim_ascii()
                };
                merge(&mut key, candidate)?;
                found_in.headers |= 1 << i;
            }
        }
        if let (Some(param), Some(query)) = (self.query_param.as_deref(), uri.query()) {
            for pair in query.split('&') {
                let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
                if name == param {
                    merge(&mut key, value.as_bytes())?;
                    found_in.query = true;
                }
            }
        }
        key.map(|key| Credential { key, found_in }).ok_or(CredentialError::Missing)
    }

    /// Removes the credential from the headers it was found in (the query
    /// parameter is dropped when the upstream URI is built).
    pub fn strip(&self, headers: &mut HeaderMap, found_in: FoundIn) {
        for (i, source) in self.headers.iter().enumerate() {
            if found_in.headers & (1 << i) != 0 {
                headers.remove(&source.name);
            }
        }
    }

    /// Whether `strip` removes the header `name`.
    pub fn strips(&self, name: &[u8], found_in: FoundIn) -> bool {
        self.headers
            .iter()
            .enumerate()
            .any(|(i, source)| found_in.headers & (1 << i) != 0 && source.name.as_str().as_bytes() == name)
    }

    /// The query parameter to drop from the upstream URI, if the key came
    /// from there.
    pub fn query_param_to_strip(&self, found_in: FoundIn) -> Option<&str> {
        self.query_param.as_deref().filter(|_| found_in.query)
    }
}

/// Records `candidate` as the request's key, or refuses a second, different one.
fn merge<'a>(key: &mut Option<&'a [u8]>, candidate: &'a [u8]) -> Result<(), CredentialError> {
    if candidate.is_empty() {
        return Err(CredentialError::Empty);
    }
    match key {
        None => *key = Some(candidate),
        Some(previous) if *previous == candidate => {}
        Some(_) => return Err(CredentialError::Conflicting),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn sources(query: Option<&str>) -> CredentialSources {
        CredentialSources::new(&["authorization".into(), "x-api-key".into()], query).expect("sources")
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in pairs {
            h.append(HeaderName::from_static(name), HeaderValue::from_static(value));
        }
        h
    }

    #[test]
    fn same_key_twice_is_fine_different_keys_are_not() {
        let s = sources(None);
        let uri = Uri::from_static("/x");
        let h = headers(&[("authorization", "Bearer k1"), ("x-api-key", "k1")]);
        let c = s.extract(&h, &uri).expect("one key");
        assert_eq!(c.key, b"k1");
        let mut stripped = h.clone();
        s.strip(&mut stripped, c.found_in);
        assert!(stripped.is_empty());
        let h = headers(&[("x-api-key", "k1"), ("x-api-key", "k2")]);
        assert_eq!(s.extract(&h, &uri).map(|c| c.key), Err(CredentialError::Conflicting));
        let h = headers(&[("authorization", "Basic dXNlcg=="), ("x-api-key", "k1")]);
        let c = s.extract(&h, &uri).expect("basic is ignored");
        let mut stripped = h.clone();
        s.strip(&mut stripped, c.found_in);
        assert!(stripped.contains_key(AUTHORIZATION));
        assert_eq!(s.extract(&headers(&[("x-api-key", " ")]), &uri).map(|c| c.key), Err(CredentialError::Empty));
        assert_eq!(s.extract(&HeaderMap::new(), &uri).map(|c| c.key), Err(CredentialError::Missing));
    }

    #[test]
    fn query_parameter_only_when_configured() {
        let uri = Uri::from_static("/x?a=1&api_key=k9&b");
        assert_eq!(sources(None).extract(&HeaderMap::new(), &uri).map(|c| c.key), Err(CredentialError::Missing));
        let s = sources(Some("api_key"));
        let none = HeaderMap::new();
        let c = s.extract(&none, &uri).expect("from query");
        assert_eq!(c.key, b"k9");
        assert_eq!(s.query_param_to_strip(c.found_in), Some("api_key"));
        assert!(s.missing_detail().contains("api_key"));
    }
}
