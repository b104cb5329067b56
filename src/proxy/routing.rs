//! Which upstream a request goes to: the route with the longest matching
//! path prefix (segment-aware: `/v2` matches `/v2` and `/v2/x`, not `/v20`),
//! optionally restricted to one host, else the default upstream.
//!
//! Routes are parsed once into a table sorted so the first match is the
//! best; matching compares bytes and allocates nothing.

use anyhow::{anyhow, Context};
use http::header::HeaderValue;
use http::uri::{Authority, Scheme};
use http::Uri;

use crate::config::Config;

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
    pub fn parse(url: &str) -> anyhow::Result<Self> {
        let uri: Uri = url.parse().with_context(|| format!("not a URL: {url:?}"))?;
        let scheme = uri.scheme().cloned().ok_or_else(|| anyhow!("no scheme in {url:?}"))?;
        if scheme != Scheme::HTTP && scheme != Scheme::HTTPS {
            return Err(anyhow!("must be http:// or https://, got {url:?}"));
        }
        let authority = uri.authority().cloned().ok_or_else(|| anyhow!("no host in {url:?}"))?;
        let host = HeaderValue::from_str(authority.as_str()).with_context(|| format!("bad host in {url:?}"))?;
        let base_path = uri.path().trim_end_matches('/').to_owned();
        Ok(Upstream { scheme, authority, base_path, host, http2: false })
    }
}

/// Where a request goes and how much body it may bring.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    /// 0 for the default upstream, `i + 1` for `routes[i]` (metrics label).
    pub index: usize,
    pub upstream: &'a Upstream,
    /// `None` is unlimited.
    pub body_limit: Option<u64>,
}

#[derive(Debug)]
struct Route {
    index: usize,
    /// Without a trailing `/`, except the root prefix `/` itself.
    prefix: String,
    /// Lowercase, without port.
    host: Option<String>,
    upstream: Upstream,
    body_limit: Option<u64>,
}

impl Route {
    fn matches(&self, path: &str, host: Option<&str>) -> bool {
        if let Some(wanted) = &self.host {
            if !host.is_some_and(|h| h.eq_ignore_ascii_case(wanted)) {
                return false;
            }
        }
        let prefix = self.prefix.as_str();
        prefix == "/"
            || (path.starts_with(prefix) && (path.len() == prefix.len() || path.as_bytes()[prefix.len()] == b'/'))
    }
}

/// The `route` label of each route for metrics: `default`, then each
/// configured route as `[host]/prefix`, in config order.
pub fn labels(config: &Config) -> Vec<String> {
    std::iter::once("default".to_owned())
        .chain(config.routes.iter().map(|r| format!("{}{}", r.host.as_deref().unwrap_or(""), r.path_prefix)))
        .collect()
}

/// The routing table.
#[derive(Debug)]
pub struct Routes {
    /// Longest prefix first; among equal prefixes, host-bound first.
    routes: Vec<Route>,
    default: Route,
}

impl Routes {
    pub fn new(config: &Config) -> anyhow::Result<Self> {
        let default_limit = limit(config.proxy.max_body_bytes);
        let default = Route {
            index: 0,
            prefix: "/".into(),
            host: None,
            upstream: Upstream {
                http2: config.upstream.http2,
                ..Upstream::parse(&config.upstream.url).context("upstream.url")?
            },
            body_limit: default_limit,
        };
        let mut routes = Vec::with_capacity(config.routes.len());
        for (i, route) in config.routes.iter().enumerate() {
            let upstream = Upstream {
                http2: route.http2.unwrap_or(config.upstream.http2),
                ..Upstream::parse(&route.upstream).with_context(|| format!("routes[{i}].upstream"))?
            };
            let trimmed = route.path_prefix.trim_end_matches('/');
            routes.push(Route {
                index: i + 1,
                prefix: if trimmed.is_empty() { "/".into() } else { trimmed.to_owned() },
                host: route.host.as_deref().map(|h| strip_port(h).to_ascii_lowercase()),
                upstream,
                body_limit: route.max_body_bytes.map_or(default_limit, limit),
            });
        }
        routes.sort_by(|a, b| b.prefix.len().cmp(&a.prefix.len()).then(b.host.is_some().cmp(&a.host.is_some())));
        Ok(Routes { routes, default })
    }

    /// The target for a request path and `Host` (port, if any, ignored).
    pub fn resolve(&self, path: &str, host: Option<&str>) -> Target<'_> {
        let host = host.map(strip_port);
        let route = self.routes.iter().find(|r| r.matches(path, host)).unwrap_or(&self.default);
        Target { index: route.index, upstream: &route.upstream, body_limit: route.body_limit }
    }
}

/// A body limit from config, where 0 means none.
fn limit(bytes: u64) -> Option<u64> {
    (bytes != 0).then_some(bytes)
}

/// `example.com:8080` → `example.com`, `[::1]:80` → `[::1]`.
fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.find(']').map_or(host, |end| &host[..=end]);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RouteConfig;

    fn routes() -> Routes {
        let mut config = Config::default();
        config.upstream.url = "http://default:1".into();
        let route = |prefix: &str, host: Option<&str>, upstream: &str| RouteConfig {
            path_prefix: prefix.into(),
            host: host.map(str::to_owned),
            upstream: upstream.into(),
            max_body_bytes: Some(0),
            http2: None,
        };
        config.routes = vec![
            route("/v2", None, "http://v2:1"),
            route("/v2/admin/", None, "http://admin:1/base/"),
            route("/v2", Some("API.example.com"), "http://host:1"),
        ];
        Routes::new(&config).expect("routes")
    }

    fn to(routes: &Routes, path: &str, host: Option<&str>) -> String {
        routes.resolve(path, host).upstream.authority.to_string()
    }

    #[test]
    fn longest_segment_aware_prefix_wins() {
        let r = routes();
        assert_eq!(to(&r, "/v2", None), "v2:1");
        assert_eq!(to(&r, "/v2/x", None), "v2:1");
        assert_eq!(to(&r, "/v20", None), "default:1");
        assert_eq!(to(&r, "/v2/admin", None), "admin:1");
        assert_eq!(to(&r, "/v2/admin/users", None), "admin:1");
        assert_eq!(to(&r, "/v2/administrators", None), "v2:1");
        assert_eq!(r.resolve("/v2/admin", None).upstream.base_path, "/base");
        assert_eq!(r.resolve("/v2", None).body_limit, None);
        assert_eq!(r.resolve("/other", None).body_limit, Some(10 * 1024 * 1024));
    }

    #[test]
    fn host_routes_ignore_port_and_case() {
        let r = routes();
        assert_eq!(to(&r, "/v2/x", Some("api.example.com:8443")), "host:1");
        assert_eq!(to(&r, "/v2/x", Some("Api.Example.Com")), "host:1");
        assert_eq!(to(&r, "/v2/x", Some("other.example.com")), "v2:1");
        assert_eq!(strip_port("[::1]:80"), "[::1]");
        assert_eq!(strip_port("h"), "h");
    }
}
