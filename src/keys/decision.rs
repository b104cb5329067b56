//! The full per-request decision the proxy (and `verify`) makes: the key
//! check of the snapshot, then the key's client-address and route
//! restrictions and its rate limit, and the count of the outcome on the
//! key's usage. Allocation-free and lock-free for keys without a limit; a
//! rate-limited key costs one atomic compare-and-swap (governor's GCRA),
//! plus, with `limits.redis_url`, one on its fleet lease (`crate::fleet`).
//! An account on a plan with a rate limit adds its pooled limiter, shared by
//! all of the account's keys (and, with `limits.redis_url`, its fleet
//! lease): a request passes only when both pass.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, QuantaClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::RateLimiter;

use super::counters::Outcome;
use super::policy::Refusal;
use super::restrictions::plain_path;
use super::snapshot::{Identity, KeySet, KeyState};
use crate::quota::{Charge, QuotaInfo};

/// Which limit a `RateInfo` describes: the name `RateLimit-Policy` and
/// `RateLimit` give it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateScope {
    /// The key's own rate limit (or `limits.default_per_key`).
    Key,
    /// The rate limit of the key's account's plan, pooled over its keys.
    Account,
}

impl RateScope {
    pub fn as_str(self) -> &'static str {
        match self {
            RateScope::Key => "key",
            RateScope::Account => "account",
        }
    }
}

pub(super) type Limiter = RateLimiter<NotKeyed, InMemoryState, QuantaClock, StateInformationMiddleware>;

/// `requests` per `per_seconds`, as a burst that refills evenly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    pub requests: u32,
    pub per_seconds: u32,
}

/// What the decision needs to know about the request.
#[derive(Debug, Clone, Copy)]
pub struct Facts<'a> {
    pub method: &'a http::Method,
    pub path: &'a str,
    /// The client's address as configured to be trusted (`None`: unknown,
    /// which fails any IP restriction).
    pub client_ip: Option<IpAddr>,
    /// The request's host as `route::request_host` gives it (`None`:
    /// unknown, which fails any route restriction naming a host).
    pub host: Option<&'a str>,
    /// Units of every quota that applies this request spends
    /// (`routes[].cost`, at least 1).
    pub cost: u64,
}

/// The state of a key's rate limit after this request, for the
/// `RateLimit-*` and `Retry-After` headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateInfo {
    pub scope: RateScope,
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
    /// The quota that refused, or the tightest one after spending.
    pub quota: Option<QuotaInfo>,
}

impl KeySet {
    /// The proxy's decision for one request, counted on the key's usage.
    /// `default_quota` applies to keys without a rate limit of their own.
    pub fn decide(&self, key: &[u8], facts: &Facts<'_>, now_ms: i64, default_quota: Option<Quota>) -> Decision {
        let found = match self.find(key) {
            Ok(f) => f,
            Err(refusal) => return Decision { result: Err(refusal), rate: None, quota: None },
        };
        self.sighted(&found, key);
        let state = found.state;
        let runtime =
            state.runtime(self.usage(), state.policy.quota.or(default_quota), new_limiter, self.fleet().map(|f| &**f));
        let mut rate = None;
        let mut quota = None;
        let outcome = found.status(facts.method, now_ms).and_then(|()| restrictions(state, facts)).and_then(|()| {
            // The key's own limit first: a request it refuses takes nothing
            // from the account's pool, so one noisy key cannot drain it.
            let (allowed, info) = match (runtime.quota, &runtime.limiter) {
                (Some(quota), Some(limiter)) => match &runtime.fleet {
                    Some(fleet) => fleet.admit(now_ms, || limit(limiter, quota, RateScope::Key)),
                    None => limit(limiter, quota, RateScope::Key),
                },
                // A limit that could not be built is never dropped: refused.
                (Some(_), None) => (false, None),
                (None, _) => (true, None),
            };
            rate = info;
            if !allowed {
                return Err(Refusal::RateLimited);
            }
            let account = self.account_of(&state.policy, runtime);
            if let Some(account) = account {
                if let Some(quota) = account.plan.rate_limit {
                    let Some(limiter) = &account.limiter else { return Err(Refusal::RateLimited) };
                    let (allowed, pooled) = match &account.fleet {
                        Some(fleet) => fleet.admit(now_ms, || limit(limiter, quota, RateScope::Account)),
                        None => limit(limiter, quota, RateScope::Account),
                    };
                    // Refused: the account's state says why. Allowed: the
                    // headers show whichever limit has the fewest requests
                    // left.
                    if !allowed || tighter(pooled, rate) {
                        rate = pooled;
                    }
                    if !allowed {
                        return Err(Refusal::RateLimited);
                    }
                }
            }
            // Quotas last: a request any other limit refuses spends none.
            let pooled = account.and_then(|a| {
                a.plan.quota.map(|spec| Charge { owner: state.policy.account_id, spec, slot: Some(&a.quota_cell) })
            });
            let own = state.policy.usage_quota.map(|q| Charge {
                owner: state.policy.id,
                spec: q.spec(),
                slot: Some(&runtime.quota_cell),
            });
            let Some(book) = self.quotas().filter(|_| own.is_some() || pooled.is_some()) else { return Ok(()) };
            match book.charge(own, pooled, facts.cost, now_ms) {
                Ok(info) => {
                    quota = info;
                    Ok(())
                }
                Err(info) => {
                    quota = Some(info);
                    Err(Refusal::QuotaExceeded)
                }
            }
        });
        if let Some(counted) = Outcome::of(outcome) {
            runtime.usage.record(counted, now_ms);
        }
        Decision { result: outcome.map(|()| state.policy.identity()), rate, quota }
    }
}

impl KeySet {
    /// `decide` without its side effects: the key checks and the
    /// restrictions, but nothing taken from the rate limit and nothing
    /// counted. For a dry-run verify, and for the other methods and paths a
    /// request names in override headers. The limiter cannot be read without
    /// taking from it, so a dry run does not evaluate the rate limit: it
    /// never answers `rate_limited`.
    pub fn dry_run(&self, key: &[u8], facts: &Facts<'_>, now_ms: i64) -> Result<Identity, Refusal> {
        let found = self.find(key)?;
        found.status(facts.method, now_ms)?;
        restrictions(found.state, facts)?;
        Ok(found.state.policy.identity())
    }

    /// The quotas a request of this key would spend from, read without
    /// spending: `Ok` with the tightest (`None`: no quota applies), `Err`
    /// with the one that would refuse `facts.cost`. For a dry-run verify.
    pub fn peek_quota(&self, key: &[u8], facts: &Facts<'_>, now_ms: i64) -> Result<Option<QuotaInfo>, QuotaInfo> {
        let Ok(found) = self.find(key) else { return Ok(None) };
        let policy = &found.state.policy;
        let pooled = self.account(&policy.account_id).and_then(|a| a.plan.quota).map(|q| (policy.account_id, q));
        let own = policy.usage_quota.map(|q| (policy.id, q.spec()));
        match self.quotas() {
            Some(book) if own.is_some() || pooled.is_some() => book.peek(own, pooled, facts.cost, now_ms),
            _ => Ok(None),
        }
    }
}

fn restrictions(state: &KeyState, facts: &Facts<'_>) -> Result<(), Refusal> {
    let Some(r) = &state.policy.restrictions else { return Ok(()) };
    if !r.ips.is_empty() && !facts.client_ip.is_some_and(|ip| r.ips.iter().any(|net| net.contains(ip))) {
        return Err(Refusal::IpNotAllowed);
    }
    if !r.routes.is_empty()
        && (!plain_path(facts.path) || !r.routes.iter().any(|route| route.allows(facts.method, facts.path, facts.host)))
    {
        return Err(Refusal::RouteNotAllowed);
    }
    Ok(())
}

/// Whether `a` has fewer requests left than `b`.
fn tighter(a: Option<RateInfo>, b: Option<RateInfo>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => a.remaining < b.remaining,
        (Some(_), None) => true,
        (None, _) => false,
    }
}

/// Takes one request from a limiter; `(allowed, state)`.
fn limit(limiter: &Limiter, quota: Quota, scope: RateScope) -> (bool, Option<RateInfo>) {
    let per_request = period(quota);
    match limiter.check() {
        Ok(snapshot) => {
            let remaining = snapshot.remaining_burst_capacity();
            let reset =
                per_request.saturating_mul(quota.requests.saturating_sub(remaining)).as_secs_f64().ceil() as u64;
            let info = RateInfo {
                scope,
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
                scope,
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

/// Most requests a key's rate limit may allow in its window.
pub const MAX_REQUESTS: u32 = 1_000_000;
/// Longest window of a key's rate limit: a day.
pub const MAX_PER_SECONDS: u32 = 86_400;

/// The time one request takes from the bucket; at least 1 µs within the
/// bounds above, never zero.
fn period(quota: Quota) -> Duration {
    (Duration::from_secs(u64::from(quota.per_seconds)) / quota.requests.max(1)).max(Duration::from_nanos(1))
}

/// `None` only for a quota of no requests (which `decide` refuses).
pub(super) fn new_limiter(quota: Quota) -> Option<Limiter> {
    let burst = NonZeroU32::new(quota.requests)?;
    let gq = governor::Quota::with_period(period(quota))?.allow_burst(burst);
    Some(RateLimiter::direct(gq).with_middleware::<StateInformationMiddleware>())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::format::generate;
    use crate::keys::restrictions::{Restrictions, RouteRule};
    use crate::keys::snapshot::{KeyPolicy, PolicyRow};
    use crate::keys::{Changes, Permission};
    use http::Method;

    fn set_with(policy: KeyPolicy) -> (KeySet, String) {
        let key = generate("kg_live");
        let set = KeySet::empty().apply(Changes {
            revision: 1,
            keys: vec![PolicyRow { hash: key.hash(), policy }],
            retired: vec![],
            accounts: vec![],
            ..Default::default()
        });
        (set, key.expose().to_owned())
    }

    fn policy() -> KeyPolicy {
        KeyPolicy::builder("key_1", "acc_1").build()
    }

    fn facts<'a>(method: &'a Method, path: &'a str, ip: &str) -> Facts<'a> {
        Facts { method, path, client_ip: ip.parse().ok(), host: None, cost: 1 }
    }

    #[test]
    fn restrictions_refuse_other_addresses_and_routes() {
        let mut p = policy();
        let rule = |prefix: &str, methods: &[&str]| RouteRule {
            path_prefix: prefix.into(),
            methods: methods.iter().map(|m| (*m).to_owned()).collect(),
            host: None,
        };
        let routes = [rule("/v1/reports", &["GET"]), rule("/v1/orders/", &[])];
        p.restrictions = Restrictions::parse(&["10.0.0.0/8".into(), "2001:db8::/32".into()], &routes).expect("valid");
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
    fn double_encoding_overlong_utf8_and_nul_are_refused_on_restricted_keys() {
        let mut p = policy();
        let routes = [RouteRule { path_prefix: "/v1/reports".into(), methods: vec![], host: None }];
        p.restrictions = Restrictions::parse(&[], &routes).expect("valid");
        let (set, key) = set_with(p);
        let get = Method::GET;
        let d = |path: &str| set.decide(key.as_bytes(), &facts(&get, path, "10.0.0.1"), 0, None).result.map(|_| ());
        for sneaky in [
            "/v1/reports/%252e%252e/admin",
            "/v1/reports/%252E%252E%252Fadmin",
            "/v1/reports/..%252fadmin",
            "/v1/reports/%255c..",
            "/v1/reports/%25252e",
            "/v1/reports/%c0%ae%c0%ae/admin",
            "/v1/reports/%C0%AF",
            "/v1/reports/%c1%9c",
            "/v1/reports/%e0%80%ae",
            "/v1/reports/%f0%80%80%ae",
            "/v1/reports/%00",
            "/v1/reports/x%00.json",
        ] {
            assert_eq!(d(sneaky), Err(Refusal::RouteNotAllowed), "{sneaky}");
        }
        for plain in ["/v1/reports/100%25", "/v1/reports/caf%c3%a9", "/v1/reports/%e2%82%ac", "/v1/reports/%2541"] {
            assert_eq!(d(plain), Ok(()), "{plain}");
        }
        // Keys without route restrictions are not judged on their paths.
        let (open, key) = set_with(policy());
        assert!(open.decide(key.as_bytes(), &facts(&get, "/%252e%00", "10.0.0.1"), 0, None).result.is_ok());
    }

    #[test]
    fn a_route_restriction_with_a_host_holds_only_on_that_host() {
        let mut p = policy();
        let routes = [RouteRule { path_prefix: "/v1".into(), methods: vec![], host: Some("a.example".into()) }];
        p.restrictions = Restrictions::parse(&[], &routes).expect("valid");
        let (set, key) = set_with(p);
        let get = Method::GET;
        let d = |host: Option<&str>| {
            let f = Facts { host, ..facts(&get, "/v1/x", "10.0.0.1") };
            set.decide(key.as_bytes(), &f, 0, None).result.map(|_| ())
        };
        assert_eq!(d(Some("a.example")), Ok(()));
        assert_eq!(d(Some("A.EXAMPLE")), Ok(()));
        assert_eq!(d(Some("b.example")), Err(Refusal::RouteNotAllowed));
        assert_eq!(d(None), Err(Refusal::RouteNotAllowed));
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
        assert_eq!(counts.get(Outcome::ALLOWED), 3);
        assert_eq!(counts.get(Outcome::of(Err(Refusal::RateLimited)).expect("counted")), 1);
    }

    #[test]
    fn a_dry_run_spends_nothing_and_counts_nothing() {
        let mut p = policy();
        p.quota = Some(Quota { requests: 2, per_seconds: 60 });
        p.restrictions = Restrictions::parse(&["10.0.0.0/8".into()], &[]).expect("valid");
        let (set, key) = set_with(p);
        let get = Method::GET;
        let inside = facts(&get, "/", "10.0.0.1");
        for _ in 0..10 {
            assert!(set.dry_run(key.as_bytes(), &inside, 0).is_ok());
        }
        assert_eq!(set.dry_run(key.as_bytes(), &facts(&get, "/", "192.0.2.1"), 0), Err(Refusal::IpNotAllowed));
        assert_eq!(set.dry_run(b"kg_live_nope", &inside, 0), Err(Refusal::InvalidKey));
        assert!(set.usage().all().is_empty(), "nothing counted");
        assert!(set.decide(key.as_bytes(), &inside, 0, None).result.is_ok());
        assert!(set.decide(key.as_bytes(), &inside, 0, None).result.is_ok());
        assert_eq!(set.decide(key.as_bytes(), &inside, 0, None).result, Err(Refusal::RateLimited));
    }

    #[test]
    fn every_rate_limit_within_the_bounds_is_enforced() {
        // The period shrinks as requests grow and the window shortens, so
        // the corners bound every accepted value.
        for (requests, per_seconds) in
            [(1, 1), (1, MAX_PER_SECONDS), (MAX_REQUESTS, 1), (MAX_REQUESTS, MAX_PER_SECONDS)]
        {
            let quota = Quota { requests, per_seconds };
            assert!(period(quota) >= Duration::from_micros(1), "{quota:?}");
            let limiter = new_limiter(quota).expect("a limiter");
            let n = |n: u32| NonZeroU32::new(n).expect("non-zero");
            assert!(limiter.check_n(n(requests + 1)).is_err(), "{quota:?}: more than the limit is refused");
            assert!(limiter.check_n(n(requests)).is_ok_and(|r| r.is_ok()), "{quota:?}: the limit is the burst");
        }
        // Out of bounds (as a row written before the bounds): still limited.
        let huge = Quota { requests: u32::MAX, per_seconds: 1 };
        assert!(new_limiter(huge).is_some(), "the period is never zero");
        let mut p = policy();
        p.quota = Some(Quota { requests: 0, per_seconds: 60 });
        let (set, key) = set_with(p);
        let get = Method::GET;
        let refused = set.decide(key.as_bytes(), &facts(&get, "/", "127.0.0.1"), 0, None);
        assert_eq!(refused.result, Err(Refusal::RateLimited), "a limit that cannot be built refuses");
    }

    #[test]
    fn an_edit_that_keeps_the_limit_keeps_the_bucket() {
        let (set, key) = set_with(KeyPolicy { quota: Some(Quota { requests: 1, per_seconds: 60 }), ..policy() });
        let get = Method::GET;
        let f = facts(&get, "/", "127.0.0.1");
        assert!(set.decide(key.as_bytes(), &f, 0, None).result.is_ok());
        let hash = crate::keys::KeyHash::of(key.as_bytes());
        let edit = |set: &KeySet, p: KeyPolicy| {
            set.apply(Changes {
                revision: 2,
                keys: vec![PolicyRow { hash, policy: p }],
                retired: vec![],
                accounts: vec![],
                ..Default::default()
            })
        };
        let renamed = edit(&set, KeyPolicy { permission: Permission::Read, ..set_policy(&set) });
        assert_eq!(renamed.decide(key.as_bytes(), &f, 0, None).result, Err(Refusal::RateLimited));
        let raised = edit(&renamed, KeyPolicy { quota: Some(Quota { requests: 2, per_seconds: 60 }), ..policy() });
        assert!(raised.decide(key.as_bytes(), &f, 0, None).result.is_ok(), "a new limit is a new bucket");
    }

    #[test]
    fn keys_of_an_account_share_its_plan_rate_limit() {
        use crate::keys::{AccountRow, InlineId, PlanLimits};
        let (a, b) = (generate("kg_live"), generate("kg_live"));
        let account = |id: &str| AccountRow {
            account_id: InlineId::new(id).expect("id"),
            plan: Some(PlanLimits {
                plan_id: "plan_1".into(),
                rate_limit: Some(Quota { requests: 10, per_seconds: 60 }),
                quota: None,
            }),
        };
        let set = KeySet::empty().apply(Changes {
            revision: 1,
            keys: vec![
                PolicyRow { hash: a.hash(), policy: KeyPolicy::builder("key_a", "acc_1").build() },
                PolicyRow { hash: b.hash(), policy: KeyPolicy::builder("key_b", "acc_1").build() },
            ],
            retired: vec![],
            accounts: vec![account("acc_1")],
            ..Default::default()
        });
        let get = Method::GET;
        let f = facts(&get, "/", "127.0.0.1");
        let mut refused = Vec::new();
        let mut passed = 0;
        for _ in 0..6 {
            for key in [&a, &b] {
                let d = set.decide(key.expose().as_bytes(), &f, 0, None);
                match d.result {
                    Ok(_) => passed += 1,
                    Err(r) => refused.push((r, d.rate.map(|i| (i.scope, i.limit)))),
                }
            }
        }
        assert_eq!(passed, 10);
        assert_eq!(refused, vec![(Refusal::RateLimited, Some((RateScope::Account, 10))); 2]);
        // A tighter key limit is reported while allowed, and refuses first
        // without spending the account's pool.
        let tight = KeyPolicy { quota: Some(Quota { requests: 1, per_seconds: 60 }), ..policy() };
        let c = generate("kg_live");
        let set = KeySet::empty().apply(Changes {
            revision: 1,
            keys: vec![PolicyRow { hash: c.hash(), policy: tight }],
            retired: vec![],
            accounts: vec![account("acc_1")],
            ..Default::default()
        });
        let first = set.decide(c.expose().as_bytes(), &f, 0, None);
        assert_eq!(first.rate.map(|i| (i.scope, i.remaining)), Some((RateScope::Key, 0)));
        let second = set.decide(c.expose().as_bytes(), &f, 0, None);
        assert_eq!(second.rate.map(|i| i.scope), Some(RateScope::Key));
        let pool = set.account(&InlineId::new("acc_1").expect("id")).expect("on a plan");
        let left =
            pool.limiter.as_ref().expect("limiter").check().expect("pool not drained").remaining_burst_capacity();
        assert_eq!(left, 8, "only the allowed request and this probe took from the pool");
        // Off the plan: no pooled limit.
        let off = set.apply(Changes {
            revision: 2,
            accounts: vec![AccountRow { account_id: InlineId::new("acc_1").expect("id"), plan: None }],
            ..Changes::default()
        });
        assert!(off.account(&InlineId::new("acc_1").expect("id")).is_none());
    }

    /// A key keeps its account's plan state from its first request on
    /// (`KeySet::account_of`); a later plan, or none, still applies from the
    /// next snapshot on.
    #[test]
    fn a_key_that_kept_its_accounts_plan_sees_the_next_one() {
        use crate::keys::{AccountRow, InlineId, PlanLimits};
        let plan = |requests| AccountRow {
            account_id: InlineId::new("acc_1").expect("id"),
            plan: Some(PlanLimits {
                plan_id: "plan_1".into(),
                rate_limit: Some(Quota { requests, per_seconds: 60 }),
                quota: None,
            }),
        };
        let key = generate("kg_live");
        let v1 = KeySet::empty().apply(Changes {
            revision: 1,
            keys: vec![PolicyRow { hash: key.hash(), policy: policy() }],
            accounts: vec![plan(100)],
            ..Default::default()
        });
        let get = Method::GET;
        let f = facts(&get, "/", "127.0.0.1");
        let pooled = |set: &KeySet| {
            let d = set.decide(key.expose().as_bytes(), &f, 0, None);
            (d.result.map(|_| ()), d.rate.map(|i| (i.scope, i.limit)))
        };
        assert_eq!(pooled(&v1), (Ok(()), Some((RateScope::Account, 100))));
        assert_eq!(pooled(&v1), (Ok(()), Some((RateScope::Account, 100))));
        let v2 = v1.apply(Changes { revision: 2, accounts: vec![plan(1)], ..Changes::default() });
        assert_eq!(pooled(&v2), (Ok(()), Some((RateScope::Account, 1))));
        assert_eq!(pooled(&v2), (Err(Refusal::RateLimited), Some((RateScope::Account, 1))));
        let account = InlineId::new("acc_1").expect("id");
        let v3 = v2.apply(Changes {
            revision: 3,
            accounts: vec![AccountRow { account_id: account, plan: None }],
            ..Changes::default()
        });
        assert_eq!(pooled(&v3), (Ok(()), None));
        let v4 = v3.apply(Changes { revision: 4, accounts: vec![plan(50)], ..Changes::default() });
        assert_eq!(pooled(&v4), (Ok(()), Some((RateScope::Account, 50))));
    }

    fn set_policy(set: &KeySet) -> KeyPolicy {
        set.keys().next().expect("a key").policy.clone()
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
            accounts: vec![],
            ..Default::default()
        });
        let get = Method::GET;
        v1.decide(key.expose().as_bytes(), &facts(&get, "/", "127.0.0.1"), 5, None);
        let mut changed = policy();
        changed.permission = Permission::Read;
        let v2 = v1.apply(Changes {
            revision: 2,
            keys: vec![PolicyRow { hash: key.hash(), policy: changed }],
            retired: vec![],
            accounts: vec![],
            ..Default::default()
        });
        v2.decide(key.expose().as_bytes(), &facts(&get, "/", "127.0.0.1"), 6, None);
        let usage = v2.usage().all();
        assert_eq!(usage.len(), 1);
        assert_eq!(usage[0].get(Outcome::ALLOWED), 2);
    }
}
