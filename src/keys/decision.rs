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
use super::snapshot::{Identity, KeyLimit, KeySet, KeyState};
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
            let (allowed, info) = match &runtime.limit {
                KeyLimit::Built(quota, limiter) => match &runtime.fleet {
                    Some(fleet) => fleet.admit(now_ms, || limit(limiter, *quota, RateScope::Key)),
                    None => limit(limiter, *quota, RateScope::Key),
                },
                // A limit that could not be built is never dropped: refused.
                KeyLimit::Broken => (false, None),
                KeyLimit::None => (true, None),
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
    let Some(r) = state.policy.restrictions() else { return Ok(()) };
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
            let reset = seconds_up(per_request.saturating_mul(quota.requests.saturating_sub(remaining)));
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
            let retry = seconds_up(wait).max(1);
            let reset = seconds_up(wait + per_request.saturating_mul(quota.requests.saturating_sub(1)));
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

/// Whole seconds, rounded up.
fn seconds_up(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
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
#[path = "decision_tests.rs"]
mod tests;
