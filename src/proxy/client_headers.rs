//! Which client headers never reach the upstream, besides the hop-by-hop
//! ones and those keygate sets itself: a spelling of a managed header with
//! `_` for `-` (always: CGI-style servers merge the two), any header with
//! `_` (by default, `proxy.underscore_headers`), the method and URL override
//! headers (by default, `proxy.override_headers`), and what a peer that is
//! not a trusted proxy claims about the client (`Forwarded`, `X-Real-IP`,
//! `X-Forwarded-Host`, `X-Forwarded-Port`), and `X-Keygate-Identity`,
//! which only keygate signs.
//!
//! Decides per header name, without allocating; `headers::prepare_request`
//! removes what it says in its one pass over the request's headers.

use http::header::HeaderName;

use super::overrides;
use crate::config::{HeaderRule, ProxyConfig};
use crate::identity::X_KEYGATE_IDENTITY;

const FORWARDED: HeaderName = HeaderName::from_static("forwarded");
const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");

/// What a proxy in front of keygate says about the client; believed only
/// from a trusted proxy (`X-Forwarded-For` is rewritten instead).
const FORWARDING_CLAIMS: [HeaderName; 4] = [FORWARDED, X_REAL_IP, X_FORWARDED_HOST, X_FORWARDED_PORT];

/// Names with `-` that keygate sets or strips, besides the credential
/// headers, `x-keygate-*` and the override headers: a client header equal to
/// one of them with `_` read as `-` never passes.
const MANAGED_WITH_DASH: [&str; 11] = [
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-forwarded-port",
    "x-request-id",
    "x-real-ip",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "proxy-authenticate",
    "proxy-authorization",
];

/// Which client headers `prepare_request` removes beyond the ones it always
/// manages; built once from the config.
#[derive(Debug, Clone)]
pub struct ClientHeaders {
    underscores: HeaderRule,
    overrides: HeaderRule,
    /// The credential headers with a `-` in their name (`x-api-key`), whose
    /// `_` spellings never pass.
    credentials: Vec<HeaderName>,
}

impl ClientHeaders {
    pub fn new(config: &ProxyConfig) -> Self {
        let credentials = config
            .key_headers
            .iter()
            .filter(|name| name.contains('-'))
            .filter_map(|name| HeaderName::from_bytes(name.as_bytes()).ok())
            .collect();
        ClientHeaders { underscores: config.underscore_headers, overrides: config.override_headers, credentials }
    }

    /// Whether the override headers reach the upstream (and so must be
    /// decided on).
    pub fn passes_overrides(&self) -> bool {
        self.overrides == HeaderRule::Pass
    }

    /// Whether a client header named `name` (lower case, never a hop-by-hop
    /// one) is removed. Called for every header of every request: names without
    /// `_` that start with neither `x` nor `f` are answered at once.
    pub(super) fn removes(&self, name: &[u8], trusted_peer: bool) -> bool {
        if name.contains(&b'_') {
            return self.underscores == HeaderRule::Drop || self.is_managed_spelling(name);
        }
        let is = |h: &HeaderName| h.as_str().as_bytes() == name;
        match name.first() {
            Some(b'x') | Some(b'f') => {
                // Set by keygate when identity tokens are on, and never a
                // client's to send either way.
                is(&X_KEYGATE_IDENTITY)
                    || (self.overrides == HeaderRule::Drop && overrides::is_override(name))
                    || (!trusted_peer && FORWARDING_CLAIMS.iter().any(is))
            }
            _ => false,
        }
    }

    /// Whether `name` (lowercase, with `_`) is a managed header with `_` read
    /// as `-`.
    fn is_managed_spelling(&self, name: &[u8]) -> bool {
        let same = |managed: &str| {
            name.len() == managed.len()
                && name.iter().zip(managed.bytes()).all(|(&a, b)| a == b || (a == b'_' && b == b'-'))
        };
        same_prefix(name, "x-keygate-")
            || MANAGED_WITH_DASH.iter().any(|m| same(m))
            || overrides::METHOD_HEADERS.iter().chain(overrides::URL_HEADERS.iter()).any(|h| same(h.as_str()))
            || self.credentials.iter().any(|h| same(h.as_str()))
    }
}

/// Whether `name` starts with `prefix` with `_` in `name` read as `-`.
fn same_prefix(name: &[u8], prefix: &str) -> bool {
    name.len() >= prefix.len() && name.iter().zip(prefix.bytes()).all(|(&a, b)| a == b || (a == b'_' && b == b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> ClientHeaders {
        ClientHeaders::new(&ProxyConfig::default())
    }

    #[test]
    fn underscore_spellings_of_managed_headers_are_recognised() {
        let passing = ClientHeaders::new(&ProxyConfig { underscore_headers: HeaderRule::Pass, ..Default::default() });
        for managed in [
            "x_keygate_key_id",
            "x-keygate_anything",
            "x_forwarded_for",
            "x_request_id",
            "x_api_key",
            "x_http_method_override",
            "x_original_url",
            "proxy_authorization",
        ] {
            assert!(passing.removes(managed.as_bytes(), true), "{managed}");
        }
        for kept in ["x_custom", "x_keygate", "x_forwarded_forx", "accept"] {
            assert!(!passing.removes(kept.as_bytes(), true), "{kept}");
            assert_eq!(defaults().removes(kept.as_bytes(), true), kept.contains('_'), "{kept}");
        }
    }

    #[test]
    fn forwarding_claims_pass_only_from_trusted_peers() {
        for name in [FORWARDED, X_REAL_IP, X_FORWARDED_HOST, X_FORWARDED_PORT] {
            assert!(defaults().removes(name.as_str().as_bytes(), false), "{name}");
            assert!(!defaults().removes(name.as_str().as_bytes(), true), "{name}");
        }
    }

    #[test]
    fn a_client_identity_token_never_passes() {
        for trusted in [false, true] {
            assert!(defaults().removes(X_KEYGATE_IDENTITY.as_str().as_bytes(), trusted));
        }
        let passing = ClientHeaders::new(&ProxyConfig { underscore_headers: HeaderRule::Pass, ..Default::default() });
        assert!(passing.removes(b"x_keygate_identity", true));
    }
}
