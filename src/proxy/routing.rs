//! Which upstream a request goes to: the route with the longest matching
//! path prefix (segment-aware: `/v2` matches `/v2` and `/v2/x`, not `/v20`),
//! optionally restricted to one host, else the default upstream.
//!
//! Routes come parsed from `config::Settings`, in a table sorted so the
//! first match is the best; matching compares bytes and allocates nothing.

use crate::config::{Config, Settings};
use crate::keys::route::{Hostname, PathPrefix};

pub use crate::config::Upstream;

/// Where a request goes and how much body it may bring.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    /// 0 for the default upstream, `i + 1` for `routes[i]` (metrics label).
    pub index: usize,
    pub upstream: &'a Upstream,
    /// `None` is unlimited.
    pub body_limit: Option<u64>,
    /// Units of every quota a request here spends (`routes[].cost`).
    pub cost: u64,
}

#[derive(Debug)]
struct Route {
    index: usize,
    prefix: PathPrefix,
    host: Option<Hostname>,
    upstream: Upstream,
    body_limit: Option<u64>,
    cost: u64,
}

impl Route {
    fn matches(&self, path: &str, host: Option<&str>) -> bool {
        if let Some(wanted) = &self.host {
            if !host.is_some_and(|h| wanted.matches(h)) {
                return false;
            }
        }
        self.prefix.as_str() == "/" || self.prefix.matches(path)
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
    /// Every upstream is `http://` without `http2`.
    plain_http1: bool,
}

/// An upstream spoken to in plain HTTP/1.1.
fn plain(upstream: &Upstream) -> bool {
    upstream.scheme == http::uri::Scheme::HTTP && !upstream.http2
}

impl Routes {
    pub fn new(settings: &Settings) -> Self {
        let default = Route {
            index: 0,
            prefix: PathPrefix::root(),
            host: None,
            upstream: settings.upstream.clone(),
            body_limit: settings.body_limit,
            cost: 1,
        };
        let mut routes: Vec<Route> = settings
            .routes
            .iter()
            .enumerate()
            .map(|(i, r)| Route {
                index: i + 1,
                prefix: r.prefix.clone(),
                host: r.host.clone(),
                upstream: r.upstream.clone(),
                body_limit: r.body_limit,
                cost: r.cost,
            })
            .collect();
        let len = |r: &Route| r.prefix.as_str().len();
        routes.sort_by(|a, b| len(b).cmp(&len(a)).then(b.host.is_some().cmp(&a.host.is_some())));
        let plain_http1 = plain(&default.upstream) && routes.iter().all(|r| plain(&r.upstream));
        Routes { routes, default, plain_http1 }
    }

    /// Whether the request for `path` and `host` (`host` worked out only
    /// if needed) goes to an upstream that is not plain HTTP/1.1
    /// (`https://`, or `http2`). With every upstream plain, nothing is
    /// resolved.
    pub fn needs_other_than_http1<'h>(&self, path: &str, host: impl FnOnce() -> Option<&'h str>) -> bool {
        !self.plain_http1 && !plain(self.resolve(path, host()).upstream)
    }

    /// The target for a request path and host (as `route::request_host`
    /// gives it).
    pub fn resolve(&self, path: &str, host: Option<&str>) -> Target<'_> {
        let route = self.routes.iter().find(|r| r.matches(path, host)).unwrap_or(&self.default);
        Target { index: route.index, upstream: &route.upstream, body_limit: route.body_limit, cost: route.cost }
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
            cost: None,
        };
        config.routes = vec![
            route("/v2", None, "http://v2:1"),
            route("/v2/admin/", None, "http://admin:1/base/"),
            route("/v2", Some("API.example.com"), "http://host:1"),
        ];
        Routes::new(&config.settings().expect("valid"))
    }

    fn to(routes: &Routes, path: &str, host: Option<&str>) -> String {
        routes.resolve(path, host.map(crate::keys::route::request_host)).upstream.authority.to_string()
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
        assert_eq!(to(&r, "/v2/x", Some("api.example.com.")), "host:1");
        assert_eq!(to(&r, "/v2/x", Some("api.example.com.:8443")), "host:1");
        assert_eq!(to(&r, "/v2/x", Some("other.example.com")), "v2:1");
    }
}
