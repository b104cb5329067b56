//! The typed values the gateway runs on, parsed once from a `Config`:
//! upstreams, routes and trusted proxy ranges. `check-config` and `serve`
//! both get them from `Config::settings`, so a file that passes the check
//! starts. A plain value (Clone, no I/O) that a reload can build and swap.

use http::header::HeaderValue;
use http::uri::{Authority, Scheme};
use http::Uri;

use super::{Config, FieldError};
use crate::keys::cidr::IpNet;
use crate::keys::route::{Hostname, PathPrefix};

/// An upstream base URL, parsed once.
#[derive(Debug, Clone)]
pub struct Upstream {
    pub scheme: Scheme,
    pub authority: Authority,
    /// The base URL's path without its trailing `/` (`""` for none): it is
    /// put in front of every request path.
    pub base_path: String,
    /// The `Host` header the upstream gets.
    pub host: HeaderValue,
    /// Spoken to over HTTP/2 (`upstream.http2`, `routes[].http2`).
    pub http2: bool,
}

impl Upstream {
    /// An `http://` or `https://` base URL with a host and no query string
    /// (a query would have nowhere to go: the request brings its own).
    pub fn parse(url: &str) -> Result<Self, String> {
        // Errors show the URL with any password masked.
        let shown = || super::redact(url);
        let uri: Uri = url.parse().map_err(|e| format!("not a URL {:?}: {e}", shown()))?;
        let scheme = match uri.scheme() {
            Some(s) if *s == Scheme::HTTP || *s == Scheme::HTTPS => s.clone(),
            _ => return Err(format!("must be an http:// or https:// URL, got {:?}", shown())),
        };
        let authority = match uri.authority() {
            Some(a) if !a.host().is_empty() => a.clone(),
            _ => return Err(format!("has no host: {:?}", shown())),
        };
        if uri.query().is_some() {
            return Err(format!("must not have a query string: {:?}", shown()));
        }
        let host = HeaderValue::from_str(authority.as_str()).map_err(|_| format!("bad host in {:?}", shown()))?;
        let base_path = uri.path().trim_end_matches('/').to_owned();
        Ok(Upstream { scheme, authority, base_path, host, http2: false })
    }
}

/// One configured route, typed.
#[derive(Debug, Clone)]
pub struct RouteSettings {
    /// Without a trailing `/`, except the root prefix `/` itself.
    pub prefix: PathPrefix,
    pub host: Option<Hostname>,
    pub upstream: Upstream,
    /// `None` is unlimited.
    pub body_limit: Option<u64>,
    /// Units of every quota a request here spends.
    pub cost: u64,
}

/// The parsed, validated values of a `Config`.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The default upstream.
    pub upstream: Upstream,
    /// Body limit of requests no route with its own limit takes.
    pub body_limit: Option<u64>,
    /// `routes`, in config order.
    pub routes: Vec<RouteSettings>,
    pub trusted_proxies: Vec<IpNet>,
}

impl Config {
    /// Parses the fields that become typed values, recording each failure
    /// with its path; `None` when any failed.
    pub(super) fn parse_settings(&self, errors: &mut Vec<FieldError>) -> Option<Settings> {
        let before = errors.len();
        let mut err = |path: String, message: String| errors.push(FieldError { path, message });
        let body_limit = limit(self.proxy.max_body_bytes);
        let upstream = Upstream::parse(&self.upstream.url)
            .map(|u| Upstream { http2: self.upstream.http2, ..u })
            .map_err(|m| err("upstream.url".into(), m))
            .ok();
        let mut routes = Vec::with_capacity(self.routes.len());
        for (i, route) in self.routes.iter().enumerate() {
            let prefix =
                PathPrefix::parse(&route.path_prefix).map_err(|m| err(format!("routes[{i}].path_prefix"), m)).ok();
            let host = match route.host.as_deref().map(Hostname::parse).transpose() {
                Ok(host) => Some(host),
                Err(m) => {
                    err(format!("routes[{i}].host"), m);
                    None
                }
            };
            let upstream = Upstream::parse(&route.upstream)
                .map(|u| Upstream { http2: route.http2.unwrap_or(self.upstream.http2), ..u })
                .map_err(|m| err(format!("routes[{i}].upstream"), m))
                .ok();
            let cost = route.cost.unwrap_or(1);
            if !(1..=crate::keys::MAX_QUOTA).contains(&cost) {
                err(
                    format!("routes[{i}].cost"),
                    format!("must be between 1 and {}, got {cost}", crate::keys::MAX_QUOTA),
                );
            }
            if let (Some(prefix), Some(host), Some(upstream)) = (prefix, host, upstream) {
                let body_limit = route.max_body_bytes.map_or(body_limit, limit);
                let prefix = prefix.without_trailing_slash();
                routes.push(RouteSettings { prefix, host, upstream, body_limit, cost });
            }
        }
        let trusted_proxies = self
            .proxy
            .trusted_proxies
            .iter()
            .enumerate()
            .filter_map(|(i, cidr)| IpNet::parse(cidr).map_err(|m| err(format!("proxy.trusted_proxies[{i}]"), m)).ok())
            .collect();
        let upstream = upstream?;
        (errors.len() == before).then_some(Settings { upstream, body_limit, routes, trusted_proxies })
    }
}

/// A body limit from config, where 0 means none.
fn limit(bytes: u64) -> Option<u64> {
    (bytes != 0).then_some(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_urls_keep_their_base_path_and_refuse_a_query() {
        let up = Upstream::parse("https://up.example:8443/api/").expect("valid");
        assert_eq!(
            (up.scheme.as_str(), up.authority.as_str(), up.base_path.as_str()),
            ("https", "up.example:8443", "/api")
        );
        for bad in ["ftp://x", "http:///a", "/relative", "http://x/a?q=1", "not a url"] {
            assert!(Upstream::parse(bad).is_err(), "{bad}");
        }
    }
}
