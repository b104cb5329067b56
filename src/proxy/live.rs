//! The part of the proxy a configuration reload replaces: routes and
//! upstreams (with their connection pool), body limits, credential sources,
//! header rules, trusted proxies, the default rate limit and the failed-auth
//! guard. Built whole from a validated `Config` off the request path, then
//! published with one `ArcSwap::store` (see `Proxy::reconfigure`); a request
//! loads it once and keeps that one to its end, so a reload never changes
//! the rules in the middle of a request.
//!
//! Building reuses what did not change: the forwarder (and so the pooled
//! upstream connections) while every route index still points at the same
//! upstream with the same client settings, and the failed-auth guard (and so
//! its counts) while its limits are the same. Does no I/O except reading
//! `upstream.ca_file` when the forwarder is rebuilt.

use std::sync::Arc;
use std::time::Duration;

use super::auth::CredentialSources;
use super::client_headers::ClientHeaders;
use super::forward::Forwarder;
use super::guard::FailureGuard;
use super::routing::{self, Routes};
use crate::config::{Config, LimitsConfig, Settings, UpstreamConfig};
use crate::keys::cidr::IpNet;
use crate::keys::Quota;
use crate::metrics::{Metrics, RouteDurations};
use crate::telemetry::throttle::Throttle;

/// The reloadable proxy state; see the module doc.
#[derive(Debug)]
pub struct Live {
    pub(super) credentials: CredentialSources,
    pub(super) routes: Routes,
    pub(super) forwarder: Arc<Forwarder>,
    pub(super) strip_credentials: bool,
    pub(super) client_headers: ClientHeaders,
    pub(super) body_read_timeout: Duration,
    pub(super) default_quota: Option<Quota>,
    pub(super) trusted_proxies: Vec<IpNet>,
    pub(super) guard: Arc<FailureGuard>,
    pub(super) durations: RouteDurations,
    /// Upstream-failure warnings, one a second per route of this table.
    pub(super) upstream_warnings: Throttle,
    /// What the forwarder was built for, to tell whether the next one can
    /// be kept.
    upstreams: UpstreamIdentity,
    /// What the guard was built for.
    guard_limits: (u32, u32, u8),
}

/// The upstream client settings and, for each route index, where it sends:
/// the pool's shelves are per route index, so while this is the same, its
/// connections still go to the right places.
#[derive(Debug, PartialEq)]
struct UpstreamIdentity {
    client: UpstreamConfig,
    /// `(scheme, authority, http2)` of the default upstream, then each route.
    targets: Vec<(String, String, bool)>,
}

impl UpstreamIdentity {
    fn of(config: &Config, settings: &Settings) -> Self {
        let target = |u: &crate::config::Upstream| (u.scheme.to_string(), u.authority.to_string(), u.http2);
        UpstreamIdentity {
            client: config.upstream.clone(),
            targets: std::iter::once(target(&settings.upstream))
                .chain(settings.routes.iter().map(|r| target(&r.upstream)))
                .collect(),
        }
    }
}

fn guard_limits(limits: &LimitsConfig) -> (u32, u32, u8) {
    (limits.failed_auth_per_minute, limits.failed_auth_burst, limits.failed_auth_ipv6_prefix)
}

impl Live {
    /// The state for `config` (already validated; `settings` is its typed
    /// part), keeping `previous`'s forwarder and guard where they still fit.
    pub fn build(
        config: &Config,
        settings: &Settings,
        previous: Option<&Live>,
        metrics: &Metrics,
    ) -> anyhow::Result<Live> {
        let proxy = &config.proxy;
        let upstreams = UpstreamIdentity::of(config, settings);
        let forwarder = match previous {
            Some(p) if p.upstreams == upstreams => Arc::clone(&p.forwarder),
            _ => Arc::new(Forwarder::new(&config.upstream)?),
        };
        let limits = guard_limits(&config.limits);
        let guard = match previous {
            Some(p) if p.guard_limits == limits => Arc::clone(&p.guard),
            _ => FailureGuard::new(limits.0, limits.1, limits.2),
        };
        Ok(Live {
            credentials: CredentialSources::new(&proxy.key_headers, proxy.key_query_param.as_deref())?,
            routes: Routes::new(settings),
            forwarder,
            strip_credentials: proxy.strip_credentials,
            client_headers: ClientHeaders::new(proxy),
            body_read_timeout: Duration::from_millis(proxy.body_read_timeout_ms),
            default_quota: config
                .limits
                .default_per_key
                .map(|q| Quota { requests: q.requests, per_seconds: q.per_seconds }),
            trusted_proxies: settings.trusted_proxies.clone(),
            guard,
            durations: metrics.route_durations(&routing::labels(config)),
            upstream_warnings: Throttle::new(1 + config.routes.len()),
            upstreams,
            guard_limits: limits,
        })
    }

    /// Whether `next` sends over this state's upstream connections (else the
    /// old ones close once the requests using them are done).
    pub fn shares_connections_with(&self, next: &Live) -> bool {
        Arc::ptr_eq(&self.forwarder, &next.forwarder)
    }

    /// Whether `next` keeps this state's failed-auth counts.
    pub fn shares_guard_with(&self, next: &Live) -> bool {
        Arc::ptr_eq(&self.guard, &next.guard)
    }
}
