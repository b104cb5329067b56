//! The full per-request decision the proxy (and `verify`) makes: the key
//! check of the snapshot, then the key's client-address and route
//! restrictions and its rate limit, and the count of the outcome on the
//! key's usage. Allocation-free and lock-free for keys without a limit; a
//! rate-limited key costs one atomic compare-and-swap (governor's GCRA).

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::{Clock, QuantaClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::RateLimiter;

use super::cidr::IpNet;
use super::policy::Refusal;
use super::snapshot::{Identity, KeySet, KeyState};
use crate::usage::outcome_index;

pub(super) type Limiter = RateLimiter<NotKeyed, InMemoryState, QuantaClock, StateInformationMiddleware>;

/// `requests` per `per_seconds`, as a burst that refills evenly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    pub requests: u32,
    pub per_seconds: u32,
}

/// A key's allowed client ranges and routes (empty = no restriction).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Restrictions {
    pub ips: Vec<IpNet>,
    pub routes: Vec<RouteRestriction>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteRestriction {
    pub path_prefix: String,
    /// Empty: every method the key's permission allows.
    pub methods: Vec<http::Method>,
}

impl RouteRestriction {
    fn allows(&self, method: &http::Method, path: &str) -> bool {
        let prefix = self.path_prefix.as_str();
        let matches = path == prefix
            || (path.starts_with(prefix)
                && (prefix.ends_with('/') || path.as_bytes().get(prefix.len()) == Some(&b'/')));
        matches && (self.methods.is_empty() || self.methods.iter().any(|m| m == method))
    }
}

/// Whether a path means what it says to any upstream: no `.` or `..`
/// segment (also with `;parameters`), no percent-encoded dot, slash or
/// backslash, no backslash. A route restriction matches the raw path, and an
/// upstream that normalises `/v1/reports/../admin` would serve `/admin`; so
/// for keys with route restrictions, anything else is refused.
fn plain_path(path: &str) -> bool {
    let bytes = path.as_bytes();
    if bytes.contains(&b'\\') {
        return false;
    }
    let encoded_special = bytes.windows(3).any(|w| {
        w[0] == b'%' && matches!((w[1], w[2].to_ascii_lowercase()), (b'2', b'e') | (b'2', b'f') | (b'5', b'c'))
    });
    !encoded_special
        && path.split('/').all(|segment| {
            let name = segment.split(';').next().unwrap_or("");
            name != "." && name != ".."
        })
}

/// What the decision needs to know about the request.
#[derive(Debug, Clone, Copy)]
pub struct Facts<'a> {
    pub method: &'a http::Method,
    pub path: &'a str,
    /// The client's address as configured to be trusted (`None`: unknown,
    /// which fails any IP restriction).
    pub client_ip: Option<IpAddr>,
}

/// The state of a key's rate limit after this request, for the
/// `RateLimit-*` and `Retry-After` headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateInfo {
    pub limit: u32,
    pub window_seconds: u32,
    pub remaining: u32,
    /// Seconds until the quota is whole again.
    pub reset_seconds: u64,
    /// Set when refused: seconds until one request is allowed again.
    pub retry_after_seconds: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub result: Result<Identity, Refusal>,
    pub rate: Option<RateInfo>,
}

impl KeySet {
    /// The proxy's decision for one request, counted on the key's usage.
    /// `default_quota` applies to keys without a rate limit of their own.
    pub fn decide(&self, key: &[u8], facts: &Facts<'_>, now_ms: i64, default_quota: Option<Quota>) -> Decision {
        let found = match self.find(key) {
            Ok(f) => f,
            Err(refusal) => return Decision { result: Err(refusal), rate: None },
        };
        let state = found.state;
        let quota = state.policy.quota.or(default_quota);
        let runtime = state.runtime(self.usage(), quota, new_limiter);
        let mut rate = None;
        let outcome = found.status(facts.method, now_ms).and_then(|()| restrictions(state, facts)).and_then(|()| {
            let (allowed, info) = match (quota, &runtime.limiter) {
                (Some(quota), Some(limiter)) => limit(limiter, quota),
                _ => (true, None),
            };
            rate = info;
            if allowed {
                Ok(())
            } else {
                Err(Refusal::RateLimited)
            }
        });
        if let Some(i) = outcome_index(outcome) {
            runtime.usage.record(i, now_ms);
        }
        Decision { result: outcome.map(|()| state.policy.identity()), rate }
    }
}

fn restrictions(state: &KeyState, facts: &Facts<'_>) -> Result<(), Refusal> {
    let Some(r) = &state.policy.restrictions else { return Ok(()) };
    if !r.ips.is_empty() && !facts.client_ip.is_some_and(|ip| r.ips.iter().any(|net| net.contains(ip))) {
        return Err(Refusal::IpNotAllowed);
    }
    if !r.routes.is_empty()
        && (!plain_path(facts.path) || !r.routes.iter().any(|route| route.allows(facts.method, facts.path)))
    {
        return Err(Refusal::RouteNotAllowed);
    }
    Ok(())
}

/// Takes one request from the key's limiter; `(allowed, state)`.
fn limit(limiter: &Limiter, quota: Quota) -> (bool, Option<RateInfo>) {
    let per_request = period(quota);
    match limiter.check() {
        Ok(snapshot) => {
            let remaining = snapshot.remaining_burst_capacity();
            let reset =
                per_request.saturating_mul(quota.requests.saturating_sub(remaining)).as_secs_f64().ceil() as u64;
            let info = RateInfo {
                limit: quota.requests,
                window_seconds: quota.per_seconds,
                remaining,
                reset_seconds: reset,
                retry_after_seconds: None,
            };
            (true, Some(info))
        }
        Err(not_until) => {
            let wait = not_until.wait_time_from(limiter.clock().now());
            let retry = wait.as_secs_f64().ceil().max(1.0) as u64;
            let reset =
                (wait + per_request.saturating_mul(quota.requests.saturating_sub(1))).as_secs_f64().ceil() as u64;
            let info = RateInfo {
                limit: quota.requests,
                window_seconds: quota.per_seconds,
                remaining: 0,
                reset_seconds: reset,
                retry_after_seconds: Some(retry),
            };
            (false, Some(info))
        }
    }
}

fn period(quota: Quota) -> Duration {
    Duration::from_secs(u64::from(quota.per_seconds)) / quota.requests.max(1)
}

fn new_limiter(quota: Quota) -> Option<Limiter> {
    let burst = NonZeroU32::new(quota.requests)?;
    let gq = governor::Quota::with_period(period(quota))?.allow_burst(burst);
    Some(RateLimiter::direct(gq).with_middleware::<StateInformationMiddleware>())
}

/// Builds the restrictions of a key from its stored lists; `None` when both
/// are empty, so unrestricted keys carry no allocation.
pub fn compile_restrictions(
    ips: &[String],
    routes: &[(String, Vec<String>)],
) -> Result<Option<Arc<Restrictions>>, String> {
    if ips.is_empty() && routes.is_empty() {
        return Ok(None);
    }
    let ips = ips.iter().map(|s| IpNet::parse(s)).collect::<Result<Vec<_>, _>>()?;
    let routes = routes
        .iter()
        .map(|(prefix, methods)| {
            let methods = methods
                .iter()
                .map(|m| http::Method::from_bytes(m.as_bytes()).map_err(|_| format!("bad method {m:?}")))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(RouteRestriction { path_prefix: prefix.clone(), methods })
        })
        .collect::<Result<Vec<_>, String>>()?;
    Ok(Some(Arc::new(Restrictions { ips, routes })))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::format::generate;
    use crate::keys::snapshot::{KeyPolicy, PolicyRow};
    use crate::keys::{Changes, Permission};
    use http::Method;

    fn set_with(policy: KeyPolicy) -> (KeySet, String) {
        let key = generate("kg_live");
        let set = KeySet::empty().apply(Changes {
            revision: 1,
            keys: vec![PolicyRow { hash: key.hash(), policy }],
            retired: vec![],
        });
        (set, key.expose().to_owned())
    }

    fn policy() -> KeyPolicy {
        KeyPolicy::builder("key_1", "acc_1").build()
    }

    fn facts<'a>(method: &'a Method, path: &'a str, ip: &str) -> Facts<'a> {
        Facts { method, path, client_ip: ip.parse().ok() }
    }

    #[test]
    fn restrictions_refuse_other_addresses_and_routes() {
        let mut p = policy();
        let routes = vec![("/v1/reports".to_string(), vec!["GET".to_string()]), ("/v1/orders/".to_string(), vec![])];
        p.restrictions = compile_restrictions(&["10.0.0.0/8".into(), "2001:db8::/32".into()], &routes).expect("valid");
        let (set, key) = set_with(p);
        let d = |m: &Method, path: &str, ip: &str| {
            set.decide(key.as_bytes(), &facts(m, path, ip), 0, None).result.map(|_| ())
        };
        assert_eq!(d(&Method::GET, "/v1/reports/1", "10.1.2.3"), Ok(()));
        assert_eq!(d(&Method::GET, "/v1/reports", "2001:db8::1"), Ok(()));
        assert_eq!(d(&Method::GET, "/v1/reports", "192.168.0.1"), Err(Refusal::IpNotAllowed));
        assert_eq!(d(&Method::GET, "/v1/reports", "not an ip"), Err(Refusal::IpNotAllowed));
        assert_eq!(d(&Method::POST, "/v1/reports", "10.0.0.1"), Err(Refusal::RouteNotAllowed));
        assert_eq!(d(&Method::GET, "/v1/reportsx", "10.0.0.1"), Err(Refusal::RouteNotAllowed));
        assert_eq!(d(&Method::DELETE, "/v1/orders/7", "10.0.0.1"), Ok(()));
        for escape in [
            "/v1/reports/../admin",
            "/v1/reports/%2e%2e/admin",
            "/v1/reports/..;/x",
            "/v1/reports/..%2Fx",
            "/v1/reports\\..\\x",
        ] {
            assert_eq!(d(&Method::GET, escape, "10.0.0.1"), Err(Refusal::RouteNotAllowed), "{escape}");
        }
        assert_eq!(d(&Method::GET, "/v1/reports/2026.11..12", "10.0.0.1"), Ok(()), "dots inside a name are fine");
    }

    #[test]
    fn rate_limit_refuses_past_the_burst_and_counts_outcomes() {
        let mut p = policy();
        p.quota = Some(Quota { requests: 3, per_seconds: 60 });
        let (set, key) = set_with(p);
        let get = Method::GET;
        let f = facts(&get, "/", "127.0.0.1");
        let remaining: Vec<u32> =
            (0..3).map(|_| set.decide(key.as_bytes(), &f, 0, None).rate.expect("rate").remaining).collect();
        assert_eq!(remaining, [2, 1, 0]);
        let refused = set.decide(key.as_bytes(), &f, 0, None);
        assert_eq!(refused.result, Err(Refusal::RateLimited));
        let info = refused.rate.expect("rate");
        assert!(info.retry_after_seconds.is_some_and(|s| (1..=20).contains(&s)), "{info:?}");
        let counts = &set.usage().all()[0];
        assert_eq!(counts.outcomes[0].load(std::sync::atomic::Ordering::Relaxed), 3);
        assert_eq!(counts.outcomes[8].load(std::sync::atomic::Ordering::Relaxed), 1);
    }

    #[test]
    fn the_default_quota_applies_without_an_override() {
        let (set, key) = set_with(policy());
        let get = Method::GET;
        let f = facts(&get, "/", "127.0.0.1");
        let quota = Some(Quota { requests: 1, per_seconds: 60 });
        assert!(set.decide(key.as_bytes(), &f, 0, quota).result.is_ok());
        assert_eq!(set.decide(key.as_bytes(), &f, 0, quota).result, Err(Refusal::RateLimited));
    }

    #[test]
    fn usage_survives_a_policy_change() {
        let key = generate("kg_live");
        let v1 = KeySet::empty().apply(Changes {
            revision: 1,
            keys: vec![PolicyRow { hash: key.hash(), policy: policy() }],
            retired: vec![],
        });
        let get = Method::GET;
        v1.decide(key.expose().as_bytes(), &facts(&get, "/", "127.0.0.1"), 5, None);
        let mut changed = policy();
        changed.permission = Permission::Read;
        let v2 = v1.apply(Changes {
            revision: 2,
            keys: vec![PolicyRow { hash: key.hash(), policy: changed }],
            retired: vec![],
        });
        v2.decide(key.expose().as_bytes(), &facts(&get, "/", "127.0.0.1"), 6, None);
        let usage = v2.usage().all();
        assert_eq!(usage.len(), 1);
        assert_eq!(usage[0].outcomes[0].load(std::sync::atomic::Ordering::Relaxed), 2);
    }
}
