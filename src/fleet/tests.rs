//! The request-path half of the fleet limiter, without Redis: what a
//! replica admits with a lease, on credit, and while Redis is down. The
//! sync against a real Redis is tested in tests/fleet.rs.

use super::*;

fn limiter() -> Arc<FleetLimiter> {
    FleetLimiter::new(FleetOptions {
        url: RedisUrl::parse("redis://127.0.0.1:1").expect("url"),
        prefix: "t:".into(),
        sync_interval_ms: 50,
    })
}

const Q: Quota = Quota { requests: 10, per_seconds: 60 };

fn info(remaining: u32) -> RateInfo {
    RateInfo {
        limit: 10,
        window_seconds: 60,
        remaining,
        reset_seconds: 1,
        retry_after_seconds: None,
        scope: RateScope::Key,
    }
}

fn allow() -> (bool, Option<RateInfo>) {
    (true, Some(info(9)))
}

#[test]
fn while_redis_is_down_the_local_limiter_decides_alone() {
    let f = limiter();
    let s = f.scope(RateScope::Key, "a", Q);
    for _ in 0..5 {
        assert!(s.admit(1, allow).0);
    }
    assert!(!s.admit(1, || (false, None)).0);
    assert_eq!(s.allowance.load(Ordering::Relaxed), 0, "nothing is owed to the fleet");
    assert!(!s.touched.load(Ordering::Relaxed), "nothing to sync");
}

#[test]
fn a_limit_without_a_lease_lets_one_request_through_on_credit() {
    let f = limiter();
    f.shared.up.store(true, Ordering::Relaxed);
    let s = f.scope(RateScope::Key, "a", Q);
    assert!(s.admit(1_000, allow).0);
    assert_eq!(s.allowance.load(Ordering::Relaxed), -1, "owed to the fleet");
    assert_eq!(s.state.load(Ordering::Relaxed), WARMING);
    let (allowed, info) = s.admit(1_000, || panic!("the local limiter is not asked without a token"));
    assert!(!allowed, "one on credit, then wait for the lease");
    assert_eq!(info.and_then(|i| i.retry_after_seconds), Some(1));
}

#[test]
fn a_large_limit_lets_a_twentieth_of_its_share_through_while_the_lease_comes() {
    let f = limiter();
    f.shared.up.store(true, Ordering::Relaxed);
    f.shared.replicas.store(2, Ordering::Relaxed);
    let s = f.scope(RateScope::Key, "big", Quota { requests: 4_000, per_seconds: 1 });
    // 4,000 / (20 × 2) = 100 on credit, not 1: a key far below its limit
    // is not refused while its first lease is on its way.
    for i in 0..100 {
        assert!(s.admit(1_000, allow).0, "request {i} on credit");
    }
    assert_eq!(s.allowance.load(Ordering::Relaxed), -100, "all of it owed to the fleet");
    assert!(!s.admit(1_000, allow).0, "then wait for the lease");
    // A local refusal takes no credit.
    let t = f.scope(RateScope::Key, "local", Quota { requests: 4_000, per_seconds: 1 });
    assert!(t.admit(1_000, allow).0);
    assert!(!t.admit(1_000, || (false, Some(info(0)))).0);
    assert_eq!(t.credit.load(Ordering::Relaxed), 99, "the refused request gave its credit back");
    assert_eq!(warm_credit(Q, 3), 1, "a small limit: one request, as before");
}

#[test]
fn a_lease_is_spent_one_token_a_request_and_kept_on_local_refusal() {
    let f = limiter();
    f.shared.up.store(true, Ordering::Relaxed);
    let s = f.scope(RateScope::Key, "a", Q);
    s.state.store(ACTIVE, Ordering::Relaxed);
    s.allowance.store(2, Ordering::Relaxed);
    s.fleet_free.store(0, Ordering::Relaxed);
    assert!(!s.admit(1, || (false, Some(info(0)))).0);
    assert_eq!(s.allowance.load(Ordering::Relaxed), 2, "a local refusal spends no fleet token");
    let (allowed, info) = s.admit(1, allow);
    assert!(allowed);
    assert_eq!(info.map(|i| i.remaining), Some(1), "remaining is the fleet's, not the replica's 9");
    assert!(s.admit(1, allow).0);
    assert!(!s.admit(1, allow).0, "lease spent");
    assert_eq!(s.allowance.load(Ordering::Relaxed), 0);
}

#[test]
fn no_credit_while_the_fleet_is_known_to_be_empty() {
    let f = limiter();
    f.shared.up.store(true, Ordering::Relaxed);
    let s = f.scope(RateScope::Key, "a", Q);
    s.empty_until_ms.store(5_000, Ordering::Relaxed);
    s.full_at_ms.store(61_000, Ordering::Relaxed);
    let (allowed, info) = s.admit(1_000, allow);
    assert!(!allowed);
    let info = info.expect("headers");
    assert_eq!((info.remaining, info.retry_after_seconds, info.reset_seconds), (0, Some(4), 60));
    assert!(s.touched.load(Ordering::Relaxed), "the next sync asks for a lease");
    assert!(s.admit(5_000, allow).0, "once a token is free again");
}

#[test]
fn scopes_are_shared_by_name_and_renewed_when_the_limit_changes() {
    let f = limiter();
    let a = f.scope(RateScope::Key, "a", Q);
    assert!(Arc::ptr_eq(&a, &f.scope(RateScope::Key, "a", Q)));
    let b = f.scope(RateScope::Key, "a", Quota { requests: 20, per_seconds: 60 });
    assert!(!Arc::ptr_eq(&a, &b));
    drop((a, b));
    f.prune();
    assert!(f.all().is_empty(), "unused scopes without a lease are forgotten");
}

#[test]
fn an_account_limit_is_its_own_scope_and_refuses_as_the_account() {
    let f = limiter();
    f.shared.up.store(true, Ordering::Relaxed);
    let key = f.scope(RateScope::Key, "a", Q);
    let account = f.scope(RateScope::Account, "a", Q);
    assert!(!Arc::ptr_eq(&key, &account), "a key and an account with the same id are two limits");
    assert_eq!(&*account.name, "account:a");
    account.empty_until_ms.store(5_000, Ordering::Relaxed);
    let (allowed, info) = account.admit(1_000, allow);
    assert!(!allowed);
    assert_eq!(info.map(|i| i.scope), Some(RateScope::Account), "the refusal names the pooled limit");
    assert!(key.admit(1_000, allow).0, "the key's own limit is untouched");
}

#[test]
fn a_lease_in_use_is_synced_when_half_spent_short_or_a_second_old() {
    let f = limiter();
    f.shared.up.store(true, Ordering::Relaxed);
    let s = f.scope(RateScope::Key, "a", Quota { requests: 1_000, per_seconds: 1 });
    let lease = |held: i64, free: i64, synced: i64| {
        s.state.store(ACTIVE, Ordering::Relaxed);
        s.leased.store(100, Ordering::Relaxed);
        s.allowance.store(held, Ordering::Relaxed);
        s.fleet_free.store(free, Ordering::Relaxed);
        s.synced_ms.store(synced, Ordering::Relaxed);
        s.last_used_ms.store(10_000, Ordering::Relaxed);
        s.touched.store(true, Ordering::Relaxed);
    };
    let picked = |replicas: i64| {
        sync::pick(&s, 10_000, replicas, false, &mut sync::Refreshes::new(1)).map(|e| (e.lease, e.held))
    };
    lease(60, 900, 9_500);
    assert_eq!(picked(1), None, "most of the lease left, plenty free, synced 0.5 s ago: not in the round");
    assert!(s.touched.load(Ordering::Relaxed), "still owed a sync");
    lease(50, 900, 9_500);
    assert_eq!(picked(1), Some((true, 50)), "half spent");
    assert!(!s.touched.load(Ordering::Relaxed));
    lease(60, 700, 9_000);
    assert_eq!(picked(1), None, "a second old, but the bucket more than half full: synced every 5 s");
    lease(60, 700, 5_000);
    assert_eq!(picked(1), Some((true, 60)), "five seconds old");
    lease(60, 900, 5_000);
    assert_eq!(picked(1), None, "five seconds old, but the bucket nine tenths full: synced every 30 s");
    lease(60, 900, -20_000);
    assert_eq!(picked(1), Some((true, 60)), "thirty seconds old");
    lease(60, 700, 5_000);
    let mut none_left = sync::Refreshes::new(0);
    assert!(sync::pick(&s, 10_000, 1, false, &mut none_left).is_none(), "the round's refreshes taken: a later one");
    assert!(s.touched.load(Ordering::Relaxed), "still owed its refresh");
    assert_eq!(none_left.owed().len(), 1, "owed to the next round");
    lease(50, 900, 5_000);
    assert!(sync::pick(&s, 10_000, 1, false, &mut none_left).is_some(), "half spent: never waits");
    lease(60, 300, 9_000);
    assert_eq!(picked(1), Some((true, 60)), "a second old, the bucket less than half full");
    lease(60, 100, 9_500);
    assert_eq!(picked(1), None, "alone in the fleet, nobody else needs the free tokens");
    assert_eq!(picked(3), Some((true, 60)), "two others could not each hold as much: rebalance");
    lease(60, 900, 9_500);
    s.touched.store(false, Ordering::Relaxed);
    s.synced_ms.store(0, Ordering::Relaxed);
    assert_eq!(picked(1), None, "not used since the last sync: nothing to top up");
}

#[test]
fn the_token_that_leaves_half_the_lease_wakes_the_sync() {
    let f = limiter();
    f.shared.up.store(true, Ordering::Relaxed);
    let s = f.scope(RateScope::Key, "a", Q);
    s.state.store(ACTIVE, Ordering::Relaxed);
    s.leased.store(4, Ordering::Relaxed);
    s.allowance.store(4, Ordering::Relaxed);
    let woken = || {
        let notified = f.shared.wake.notified();
        tokio::pin!(notified);
        notified.enable()
    };
    assert!(s.admit(1, allow).0);
    assert!(!woken(), "3 of 4 left");
    assert!(s.admit(1, allow).0);
    assert!(woken(), "2 of 4 left: top up now, not at the next round");
}

#[test]
fn a_request_refused_for_want_of_a_lease_puts_the_limit_in_the_next_round_once() {
    let f = limiter();
    f.shared.up.store(true, Ordering::Relaxed);
    let s = f.scope(RateScope::Key, "a", Q);
    s.state.store(ACTIVE, Ordering::Relaxed);
    for _ in 0..3 {
        assert!(!s.admit(1, allow).0, "no token held");
    }
    let urgent = f.shared.urgent.lock().expect("lock");
    assert_eq!(urgent.len(), 1, "queued once, however many requests are refused");
    assert!(Arc::ptr_eq(&urgent[0], &s));
}

fn woken(f: &FleetLimiter) -> bool {
    let notified = f.shared.wake.notified();
    tokio::pin!(notified);
    notified.enable()
}

#[test]
fn a_first_lease_wakes_the_sync_only_when_no_credit_is_left() {
    let f = limiter();
    f.shared.up.store(true, Ordering::Relaxed);
    let big = f.scope(RateScope::Key, "big", Quota { requests: 1_000_000, per_seconds: 1 });
    assert!(big.admit(1_000, allow).0);
    assert!(!woken(&f), "49,999 requests of credit left: the next round leases, no syscall now");
    assert_eq!(f.shared.urgent.lock().expect("lock").len(), 1, "but it is in that round");
    let small = f.scope(RateScope::Key, "small", Q);
    assert!(small.admit(1_000, allow).0);
    assert!(woken(&f), "its one request of credit is spent: lease now");
}

#[test]
fn first_leases_with_credit_to_spend_wait_their_turn_and_half_spent_never_waits() {
    let f = limiter();
    f.shared.up.store(true, Ordering::Relaxed);
    f.shared.replicas.store(1, Ordering::Relaxed);
    let big = Quota { requests: 100, per_seconds: 1 };
    // Five of credit each (100 / 20), one spent by the request that started each.
    let keys: Vec<_> = (0..3).map(|i| f.scope(RateScope::Key, &format!("k{i}"), big)).collect();
    for k in &keys {
        assert!(k.admit(1_000, allow).0);
    }
    assert!(!woken(&f), "credit left: nobody wakes the sync");
    let mut room = sync::Refreshes::new(2);
    let picked: Vec<_> = keys.iter().filter_map(|k| sync::pick(k, 1_000, 1, false, &mut room)).collect();
    assert_eq!(picked.len(), 2, "the round's room: two first leases");
    assert!(picked.iter().all(|e| e.lease && e.held == -1), "each charged its request on credit");
    assert_eq!(room.owed().len(), 1, "the third is owed to the next round");
    assert!(keys[2].touched.load(Ordering::Relaxed), "still to lease");
    // The third spends two more of its five: half of it (two) is left.
    f.shared.urgent.lock().expect("lock").clear();
    keys[2].queued.store(false, Ordering::Relaxed);
    assert!(keys[2].admit(1_000, allow).0);
    assert!(f.shared.urgent.lock().expect("lock").is_empty(), "three left: still waits its turn");
    assert!(keys[2].admit(1_000, allow).0);
    assert_eq!(f.shared.urgent.lock().expect("lock").len(), 1, "half spent: in the next round");
    assert!(!woken(&f), "without a syscall");
    let mut none_left = sync::Refreshes::new(0);
    let e = sync::pick(&keys[2], 1_000, 1, false, &mut none_left).expect("half its credit spent: never waits");
    assert_eq!((e.lease, e.held), (true, -3));
    // A small limit's single request of credit is spent at once: never waits.
    let small = f.scope(RateScope::Key, "small", Q);
    assert!(small.admit(1_000, allow).0);
    assert!(sync::pick(&small, 1_000, 1, false, &mut none_left).is_some());
}

#[test]
fn a_request_while_the_lease_goes_back_leaves_the_limit_on_credit_not_refused() {
    let f = limiter();
    f.shared.up.store(true, Ordering::Relaxed);
    let s = f.scope(RateScope::Key, "a", Quota { requests: 1_000, per_seconds: 1 });
    s.state.store(ACTIVE, Ordering::Relaxed);
    s.leased.store(100, Ordering::Relaxed);
    s.allowance.store(10, Ordering::Relaxed);
    s.last_used_ms.store(1_000, Ordering::Relaxed);
    let back = sync::pick(&s, 5_000, 1, false, &mut sync::Refreshes::new(1)).expect("idle for 4 s: handed back");
    assert_eq!((back.lease, back.held), (false, 10));
    // A request spends one of the ten while the round is on its way.
    assert!(s.admit(5_001, allow).0);
    sync::apply(&back, 0, 1_000, 0, 5_002);
    assert_eq!(s.allowance.load(Ordering::Relaxed), -1, "owed to the fleet, reported by the next sync");
    assert_eq!(s.state.load(Ordering::Relaxed), DORMANT, "not a lease run dry");
    assert!(s.admit(5_003, allow).0, "the next request goes on credit");
}
