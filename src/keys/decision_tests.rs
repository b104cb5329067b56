//! `KeySet::decide`: restrictions, rate limits, plans and usage counts.

use super::*;
use crate::keys::format::generate;
use crate::keys::policy::KeyPolicy;
use crate::keys::restrictions::{Restrictions, RouteRule};
use crate::keys::snapshot::PolicyRow;
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
    p.set_restrictions(Restrictions::parse(&["10.0.0.0/8".into(), "2001:db8::/32".into()], &routes).expect("valid"));
    let (set, key) = set_with(p);
    let d =
        |m: &Method, path: &str, ip: &str| set.decide(key.as_bytes(), &facts(m, path, ip), 0, None).result.map(|_| ());
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
    p.set_restrictions(Restrictions::parse(&[], &routes).expect("valid"));
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
    p.set_restrictions(Restrictions::parse(&[], &routes).expect("valid"));
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
    let counts = &set.usage().all()[0].1;
    assert_eq!(counts.get(Outcome::ALLOWED), 3);
    assert_eq!(counts.get(Outcome::of(Err(Refusal::RateLimited)).expect("counted")), 1);
}

#[test]
fn a_dry_run_spends_nothing_and_counts_nothing() {
    let mut p = policy();
    p.quota = Some(Quota { requests: 2, per_seconds: 60 });
    p.set_restrictions(Restrictions::parse(&["10.0.0.0/8".into()], &[]).expect("valid"));
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
    for (requests, per_seconds) in [(1, 1), (1, MAX_PER_SECONDS), (MAX_REQUESTS, 1), (MAX_REQUESTS, MAX_PER_SECONDS)] {
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
    let left = pool.limiter.as_ref().expect("limiter").check().expect("pool not drained").remaining_burst_capacity();
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
    assert_eq!(usage[0].1.get(Outcome::ALLOWED), 2);
}
