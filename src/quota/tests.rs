//! The book's decisions with an injected clock: no store, no waiting.

use super::*;
use crate::clock::parse_rfc3339;
use crate::keys::Period;

fn at(text: &str) -> i64 {
    parse_rfc3339(text).expect("a valid time")
}

fn id(text: &str) -> InlineId {
    InlineId::new(text).expect("id")
}

fn spec(limit: u64, period: Period) -> QuotaSpec {
    QuotaSpec { limit, period }
}

fn key(limit: u64, period: Period) -> Option<(InlineId, QuotaSpec)> {
    Some((id("key_1"), spec(limit, period)))
}

#[test]
fn a_quota_of_10_at_cost_5_admits_two_and_refuses_the_third_whole() {
    let book = QuotaBook::new(100);
    let now = at("2026-12-03T12:00:00Z");
    let first = book.spend(key(10, Period::Day), None, 5, now).expect("first").expect("info");
    assert_eq!((first.scope, first.remaining, first.limit), (QuotaScope::Key, 5, 10));
    assert_eq!(first.window_seconds, Some(86_400));
    assert_eq!(first.reset_seconds, Some(12 * 3600));
    assert_eq!(book.spend(key(10, Period::Day), None, 5, now).expect("second").map(|i| i.remaining), Some(0));
    let refused = book.spend(key(10, Period::Day), None, 5, now).expect_err("third");
    assert_eq!(refused.remaining, 0);
    assert_eq!(refused.retry_after_seconds, Some(12 * 3600));
    assert_eq!(book.usage(&id("key_1"), now), Some((10, 0)), "the refused request spent nothing");
}

#[test]
fn a_cost_above_what_remains_is_refused_and_spends_nothing() {
    let book = QuotaBook::new(100);
    let now = at("2026-12-03T12:00:00Z");
    book.spend(key(10, Period::Month), None, 7, now).expect("7 of 10");
    assert!(book.spend(key(10, Period::Month), None, 4, now).is_err(), "4 > 3 left");
    assert_eq!(book.spend(key(10, Period::Month), None, 3, now).expect("3 fit").map(|i| i.remaining), Some(0));
}

#[test]
fn a_new_period_starts_afresh_at_midnight_utc() {
    let book = QuotaBook::new(100);
    let evening = at("2026-12-03T23:59:59.500Z");
    book.spend(key(2, Period::Day), None, 2, evening).expect("spent");
    assert!(book.spend(key(2, Period::Day), None, 1, evening).is_err());
    let refused = book.spend(key(2, Period::Day), None, 1, evening).expect_err("still spent");
    assert_eq!(refused.retry_after_seconds, Some(1));
    let next_day = at("2026-12-04T00:00:00Z");
    let info = book.spend(key(2, Period::Day), None, 1, next_day).expect("a new day").expect("info");
    assert_eq!((info.remaining, info.reset_seconds), (1, Some(86_400)));
    // What the old day spent waits to be flushed to the old day's row.
    let cell = book.cell(id("key_1"));
    let state = cell.state.lock().expect("lock");
    assert_eq!(state.carry, Some((at("2026-12-03T00:00:00Z"), 2)));
    assert_eq!(state.spent, 1);
}

#[test]
fn weeks_and_months_roll_on_the_calendar() {
    let book = QuotaBook::new(100);
    let sunday = at("2026-12-06T23:00:00Z");
    book.spend(key(1, Period::Week), None, 1, sunday).expect("spent");
    assert!(book.spend(key(1, Period::Week), None, 1, sunday).is_err());
    assert!(book.spend(key(1, Period::Week), None, 1, at("2026-12-07T00:00:00Z")).is_ok(), "Monday");
    let other = Some((id("key_2"), spec(1, Period::Month)));
    book.spend(other, None, 1, at("2028-02-29T10:00:00Z")).expect("leap day");
    let refused = book.spend(other, None, 1, at("2028-02-29T23:00:00Z")).expect_err("same month");
    assert_eq!(refused.window_seconds, Some(29 * 86_400));
    assert!(book.spend(other, None, 1, at("2028-03-01T00:00:00Z")).is_ok(), "March");
}

#[test]
fn a_total_quota_never_resets_and_has_no_window() {
    let book = QuotaBook::new(100);
    let info = book.spend(key(1, Period::Total), None, 1, at("2026-12-03T12:00:00Z")).expect("ok").expect("info");
    assert_eq!((info.window_seconds, info.reset_seconds, info.resets_at_ms), (None, None, None));
    let refused = book.spend(key(1, Period::Total), None, 1, at("2030-01-01T00:00:00Z")).expect_err("spent");
    assert_eq!(refused.retry_after_seconds, None, "no Retry-After: it never resets");
}

#[test]
fn key_and_account_quotas_both_hold_and_a_refusal_takes_from_neither() {
    let book = QuotaBook::new(100);
    let now = at("2026-12-03T12:00:00Z");
    let pool = Some((id("acc_1"), spec(3, Period::Day)));
    let a = Some((id("key_a"), spec(10, Period::Day)));
    let b = Some((id("key_b"), spec(1, Period::Day)));
    assert!(book.spend(a, pool, 1, now).is_ok());
    let info = book.spend(b, pool, 1, now).expect("b").expect("info");
    assert_eq!((info.scope, info.remaining), (QuotaScope::Key, 0), "the tightest is b's own");
    let refused = book.spend(b, pool, 1, now).expect_err("b's own is spent");
    assert_eq!(refused.scope, QuotaScope::Key);
    assert_eq!(book.usage(&id("acc_1"), now), Some((2, 1)), "the refusal took nothing from the pool");
    assert!(book.spend(a, pool, 1, now).is_ok());
    let refused = book.spend(a, pool, 1, now).expect_err("the pool is spent");
    assert_eq!(refused.scope, QuotaScope::Account);
    assert_eq!(book.usage(&id("key_a"), now), Some((2, 8)), "nor from the key's own");
}

#[test]
fn a_dry_run_reads_and_spends_nothing() {
    let book = QuotaBook::new(100);
    let now = at("2026-12-03T12:00:00Z");
    for _ in 0..5 {
        assert_eq!(book.peek(key(2, Period::Day), None, 1, now).expect("ok").map(|i| i.remaining), Some(2));
    }
    assert!(book.peek(key(2, Period::Day), None, 3, now).is_err(), "3 would not fit");
    book.spend(key(2, Period::Day), None, 2, now).expect("spent");
    assert!(book.peek(key(2, Period::Day), None, 1, now).is_err());
}

/// A sole spender (SQLite: one node) never waits for the store, however
/// far past its reservation it spends, and stops exactly at the limit.
#[test]
fn a_sole_spender_never_waits_and_stops_at_the_limit() {
    let book = QuotaBook::new(3);
    book.set_sole(true);
    let now = at("2026-12-03T12:00:00Z");
    let q = key(10, Period::Day);
    for left in (0..10).rev() {
        let info = book.spend(q, None, 1, now).expect("within the quota").expect("info");
        assert_eq!(info.remaining, left);
    }
    let refused = book.spend(q, None, 1, now).expect_err("spent");
    assert_eq!((refused.remaining, refused.retry_after_seconds), (0, Some(12 * 3600)));
}

#[test]
fn credit_beyond_the_reservation_is_capped_by_the_block_while_shared() {
    let book = QuotaBook::new(3);
    let now = at("2026-12-03T12:00:00Z");
    let q = key(1000, Period::Day);
    for _ in 0..3 {
        assert!(book.spend(q, None, 1, now).is_ok());
    }
    let waiting = book.spend(q, None, 1, now).expect_err("3 units unconfirmed: wait for the store");
    assert_eq!((waiting.retry_after_seconds, waiting.remaining), (Some(1), 997));
    // The store confirms a reservation: spending goes on.
    {
        let cell = book.cell(id("key_1"));
        let mut state = cell.state.lock().expect("lock");
        state.used = std::mem::take(&mut state.spent);
        state.granted = 3;
    }
    for _ in 0..6 {
        assert!(book.spend(q, None, 1, now).is_ok(), "3 reserved, then 3 on credit");
    }
    assert!(book.spend(q, None, 1, now).is_err());
    // Counting alone (the store out of reach), only the quota bounds it.
    book.shared.store(false, Ordering::Relaxed);
    assert!(book.spend(q, None, 100, now).is_ok());
}

#[test]
fn adjustments_in_the_ledger_move_what_remains() {
    let book = QuotaBook::new(100);
    let now = at("2026-12-03T12:00:00Z");
    book.spend(key(10, Period::Day), None, 10, now).expect("all of it");
    assert!(book.spend(key(10, Period::Day), None, 5, now).is_err());
    {
        // What a sync brings back after `increment 5`.
        let cell = book.cell(id("key_1"));
        let mut state = cell.state.lock().expect("lock");
        state.used = std::mem::take(&mut state.spent);
        state.adjust = 5;
    }
    assert_eq!(book.spend(key(10, Period::Day), None, 5, now).expect("5 more").map(|i| i.remaining), Some(0));
}

#[test]
fn credit_never_spends_what_another_replica_holds() {
    let book = QuotaBook::new(10);
    let now = at("2026-12-03T12:00:00Z");
    let q = key(100, Period::Day);
    {
        // A sync answered: 80 used, 5 reserved here, 12 held by others.
        let cell = book.cell(id("key_1"));
        let mut state = cell.state.lock().expect("lock");
        state.spec = q.map(|(_, s)| s);
        state.roll(q.expect("spec").1, now);
        (state.used, state.granted, state.others) = (80, 5, 12);
    }
    // 20 remain in the fleet, 12 of them someone else's: 8 are for here,
    // the 5 reserved and 3 on credit (fewer than the block of 10).
    assert!(book.spend(q, None, 8, now).is_ok());
    let waiting = book.spend(q, None, 1, now).expect_err("the rest is held elsewhere");
    assert_eq!((waiting.retry_after_seconds, waiting.remaining), (Some(1), 12), "wait, not spent");
    assert!(book.dirty.lock().expect("lock").contains(&id("key_1")), "the owner is synced at once");
    // Alone (the store out of reach) the last known remaining decides.
    book.shared.store(false, Ordering::Relaxed);
    assert!(book.spend(q, None, 12, now).is_ok());
}

#[test]
fn a_slot_reaches_the_same_cell_and_only_for_its_own_book() {
    let book = QuotaBook::new(100);
    let other = QuotaBook::new(100);
    let now = at("2026-12-03T12:00:00Z");
    let slot = CellSlot::default();
    let charge = |slot| Some(Charge { owner: id("key_1"), spec: spec(10, Period::Day), slot: Some(slot) });
    assert!(book.charge(charge(&slot), None, 3, now).is_ok());
    assert!(book.charge(charge(&slot), None, 3, now).is_ok(), "through the slot now");
    assert_eq!(book.spend(key(10, Period::Day), None, 1, now).expect("ok").map(|i| i.remaining), Some(3));
    assert_eq!(book.usage(&id("key_1"), now), Some((7, 3)), "one cell, whichever way it is reached");
    // The same key's slot handed to another book: that book's own cell.
    assert_eq!(other.charge(charge(&slot), None, 1, now).expect("ok").map(|i| i.remaining), Some(9));
    assert_eq!(book.usage(&id("key_1"), now), Some((7, 3)), "nothing spent from the first book");
}

#[test]
fn the_period_is_worked_out_again_when_the_quota_changes_its_period() {
    let book = QuotaBook::new(100);
    let now = at("2026-02-10T12:00:00Z");
    let day = book.spend(key(10, Period::Day), None, 1, now).expect("ok").expect("info");
    assert_eq!((day.window_seconds, day.reset_seconds), (Some(86_400), Some(12 * 3600)));
    // The same owner now on a monthly quota, at the same moment: February.
    let month = book.spend(key(10, Period::Month), None, 1, now).expect("ok").expect("info");
    assert_eq!(month.window_seconds, Some(28 * 86_400));
    assert_eq!(month.resets_at_ms, Some(at("2026-03-01T00:00:00Z")));
    assert_eq!(month.remaining, 10 - 1, "another period is another count");
    let total = book.spend(key(10, Period::Total), None, 1, now).expect("ok").expect("info");
    assert_eq!((total.window_seconds, total.reset_seconds, total.resets_at_ms), (None, None, None));
}

#[test]
fn a_busy_owner_that_gave_its_reservation_back_asks_again_at_its_first_spending() {
    let book = QuotaBook::new(100);
    let now = at("2026-12-03T12:00:00Z");
    for (owner, busy) in [("key_busy", true), ("key_quiet", false)] {
        let cell = book.cell(id(owner));
        let mut state = cell.state.lock().expect("lock");
        // Synced once (a reservation sized for thousands a second, then
        // given back while idle: granted 0).
        state.busy = busy;
        state.synced_ms = now - 10_000;
    }
    let quota = |owner: &str| Some((id(owner), spec(1_000_000, Period::Month)));
    book.spend(quota("key_busy"), None, 1, now).expect("spent");
    book.spend(quota("key_quiet"), None, 1, now).expect("spent");
    let urgent = book.urgent.lock().expect("lock").clone();
    assert_eq!(urgent, vec![id("key_busy")], "only the busy owner is synced at once");
    assert_eq!(book.cell(id("key_busy")).state.lock().expect("lock").listed_ms, now, "sized from now, not the pause");
}
