//! What the snapshot knows of an account's plan: the limits pooled over all
//! of the account's keys, and the account's own rate limiter, shared by
//! every one of its keys and by every snapshot version while the plan's
//! rate limit stays the same — with `limits.redis_url`, together with the
//! limit's fleet-wide lease (`crate::fleet`), so the pooled limit holds for
//! the fleet like a key's own.
//!
//! Also the one rule of "beyond the plan" (docs/admin-api.md#plans): a
//! key's own limit that allows more than its account's plan. The admin API
//! refuses it to confined tokens; it is written against the limit values,
//! not the request bodies, so each new kind of limit adds one arm here.
//!
//! Nothing here reads the store or counts quota spending.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::decision::{new_limiter, Limiter, Quota, RateScope};
use super::id_hash::IdMap;
use super::quota::QuotaSpec;
use super::snapshot::InlineId;
use crate::fleet::{FleetLimiter, FleetScope};
use crate::quota::CellSlot;

/// An account's plan as the snapshot holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanLimits {
    /// `plan_…`.
    pub plan_id: String,
    /// Pooled over all of the account's keys, on top of each key's own.
    pub rate_limit: Option<Quota>,
    /// Pooled quota; counted by the quota ledger, not here.
    pub quota: Option<QuotaSpec>,
}

impl PlanLimits {
    /// Where a key's own limits go beyond this plan: the field at fault
    /// (`rate_limit`, `quota`), or `None` when they stay within it. A limit
    /// the plan does not set is not bounded by it; a key without a limit of
    /// its own is bounded by the pooled one anyway.
    pub fn exceeded_by(&self, rate_limit: Option<Quota>, quota: Option<QuotaSpec>) -> Option<&'static str> {
        if let (Some(plan), Some(key)) = (self.rate_limit, rate_limit) {
            // requests / per_seconds compared without division: u32 × u32
            // fits a u64.
            let key_rate = u64::from(key.requests) * u64::from(plan.per_seconds);
            let plan_rate = u64::from(plan.requests) * u64::from(key.per_seconds);
            if key_rate > plan_rate {
                return Some("rate_limit");
            }
        }
        if let (Some(plan), Some(key)) = (self.quota, quota) {
            if plan.period == key.period && key.limit > plan.limit {
                return Some("quota");
            }
        }
        None
    }
}

/// A row of the reloader's changes: an account whose plan (or whose plan's
/// limits) changed, with its plan now (`None`: no plan any more).
#[derive(Debug, Clone)]
pub struct AccountRow {
    pub account_id: InlineId,
    pub plan: Option<PlanLimits>,
}

/// An account with a plan, in the snapshot.
#[derive(Debug)]
pub struct AccountState {
    pub(super) id: InlineId,
    pub plan: PlanLimits,
    /// The pooled limiter of `plan.rate_limit`; `None` without one, or when
    /// none could be built (then the account's requests are refused: a limit
    /// is never dropped).
    pub(super) limiter: Option<Arc<Limiter>>,
    /// The pooled limit's fleet-wide lease, with `limits.redis_url`.
    pub(super) fleet: Option<Arc<FleetScope>>,
    /// The pooled quota's cell in the quota book, once spent from.
    pub(super) quota_cell: CellSlot,
    /// A later snapshot holds another state for this account (or none):
    /// the keys that kept this one (`Runtime::account`) look it up again.
    replaced: AtomicBool,
}

impl AccountState {
    fn new(id: InlineId, plan: PlanLimits, limiter: Option<Arc<Limiter>>, fleet: Option<Arc<FleetScope>>) -> Self {
        AccountState { id, plan, limiter, fleet, quota_cell: CellSlot::default(), replaced: AtomicBool::new(false) }
    }

    /// Whether this is still the newest state of account `id`, as far as
    /// any snapshot built so far knows.
    pub(super) fn current_for(&self, id: &InlineId) -> bool {
        !self.replaced.load(Ordering::Acquire) && self.id == *id
    }

    fn retire(&self) {
        self.replaced.store(true, Ordering::Release);
    }
}

/// The fleet-wide state of an account's pooled rate limit, if shared.
fn fleet_scope(fleet: Option<&FleetLimiter>, id: &InlineId, rate_limit: Option<Quota>) -> Option<Arc<FleetScope>> {
    fleet.zip(rate_limit).map(|(f, q)| f.scope(RateScope::Account, id.as_str(), q))
}

/// The accounts on a plan, by id. Accounts without a plan are not in it, so
/// a gateway without plans pays one lookup in an empty map per request.
pub(super) type Accounts = IdMap<Arc<AccountState>>;

/// `accounts` with `rows` applied; a limiter (and its fleet lease) is
/// handed on when its account's rate limit did not change, so a plan rename
/// does not refill the bucket.
pub(super) fn apply(accounts: &Arc<Accounts>, rows: Vec<AccountRow>, fleet: Option<&FleetLimiter>) -> Arc<Accounts> {
    if rows.is_empty() {
        return Arc::clone(accounts);
    }
    let mut next = Accounts::clone(accounts);
    for row in rows {
        if let Some(previous) = accounts.get(&row.account_id) {
            previous.retire();
        }
        let Some(plan) = row.plan else {
            next.remove(&row.account_id);
            continue;
        };
        let (limiter, shared) = match accounts.get(&row.account_id) {
            Some(previous) if previous.plan.rate_limit == plan.rate_limit => (
                previous.limiter.clone(),
                previous.fleet.clone().or_else(|| fleet_scope(fleet, &row.account_id, plan.rate_limit)),
            ),
            _ => (
                plan.rate_limit.and_then(new_limiter).map(Arc::new),
                fleet_scope(fleet, &row.account_id, plan.rate_limit),
            ),
        };
        next.insert(row.account_id, Arc::new(AccountState::new(row.account_id, plan, limiter, shared)));
    }
    Arc::new(next)
}

/// `accounts` with every pooled rate limit shared through `fleet` (at
/// start, before the first request; the local limiters are kept).
pub(super) fn with_fleet(accounts: &Arc<Accounts>, fleet: &FleetLimiter) -> Arc<Accounts> {
    let shared = accounts.iter().map(|(id, state)| {
        state.retire();
        let fleet = fleet_scope(Some(fleet), id, state.plan.rate_limit);
        (*id, Arc::new(AccountState::new(*id, state.plan.clone(), state.limiter.clone(), fleet)))
    });
    Arc::new(shared.collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::Period;

    fn plan(rate: Option<(u32, u32)>, quota: Option<(u64, Period)>) -> PlanLimits {
        PlanLimits {
            plan_id: "plan_1".into(),
            rate_limit: rate.map(|(requests, per_seconds)| Quota { requests, per_seconds }),
            quota: quota.map(|(limit, period)| QuotaSpec { limit, period }),
        }
    }

    #[test]
    fn a_key_limit_beyond_the_plan_names_its_field() {
        let p = plan(Some((10, 60)), Some((1000, Period::Month)));
        let rate = |requests, per_seconds| Some(Quota { requests, per_seconds });
        assert_eq!(p.exceeded_by(rate(10, 60), None), None);
        assert_eq!(p.exceeded_by(rate(1, 1), None), Some("rate_limit"), "1/s is more than 10/min");
        assert_eq!(p.exceeded_by(rate(11, 60), None), Some("rate_limit"));
        assert_eq!(p.exceeded_by(rate(20, 120), None), None, "the same rate over a longer window");
        assert_eq!(p.exceeded_by(rate(u32::MAX, 1), None), Some("rate_limit"));
        assert_eq!(p.exceeded_by(None, None), None, "the pooled limit still binds the key");
        let quota = |limit, period| Some(QuotaSpec { limit, period });
        assert_eq!(p.exceeded_by(None, quota(1000, Period::Month)), None);
        assert_eq!(p.exceeded_by(None, quota(1001, Period::Month)), Some("quota"));
        assert_eq!(p.exceeded_by(None, quota(5000, Period::Day)), None, "another period is not compared");
        assert_eq!(plan(None, None).exceeded_by(rate(1_000_000, 1), quota(u64::MAX, Period::Total)), None);
    }

    #[test]
    fn an_unchanged_rate_limit_keeps_its_bucket() {
        let id = InlineId::new("acc_1").expect("id");
        let row = |p: Option<PlanLimits>| AccountRow { account_id: id, plan: p };
        let v1 = apply(&Arc::default(), vec![row(Some(plan(Some((1, 60)), None)))], None);
        let limiter = v1[&id].limiter.clone().expect("a limiter");
        assert!(limiter.check().is_ok());
        let renamed = PlanLimits { plan_id: "plan_2".into(), ..plan(Some((1, 60)), None) };
        let v2 = apply(&v1, vec![row(Some(renamed))], None);
        assert!(v2[&id].limiter.as_ref().expect("kept").check().is_err(), "the spent bucket is kept");
        let v3 = apply(&v2, vec![row(Some(plan(Some((2, 60)), None)))], None);
        assert!(v3[&id].limiter.as_ref().expect("new").check().is_ok(), "a new limit is a new bucket");
        let v4 = apply(&v3, vec![row(None)], None);
        assert!(v4.is_empty());
        assert!(Arc::ptr_eq(&v4, &apply(&v4, vec![], None)), "no rows: the map is shared");
    }
    #[test]
    fn with_a_fleet_the_pooled_limit_has_a_lease_kept_while_the_limit_stays() {
        use crate::fleet::{FleetOptions, RedisUrl};
        let fleet = FleetLimiter::new(FleetOptions {
            url: RedisUrl::parse("redis://127.0.0.1:1").expect("url"),
            prefix: "t:".into(),
            sync_interval_ms: 50,
        });
        let id = InlineId::new("acc_1").expect("id");
        let row = |p: Option<PlanLimits>| AccountRow { account_id: id, plan: p };
        // Loaded before the fleet is known (start-up), then shared.
        let local = apply(&Arc::default(), vec![row(Some(plan(Some((5, 60)), None)))], None);
        assert!(local[&id].fleet.is_none());
        let shared = with_fleet(&local, &fleet);
        let lease = shared[&id].fleet.clone().expect("a lease");
        assert!(Arc::ptr_eq(
            shared[&id].limiter.as_ref().expect("limiter"),
            local[&id].limiter.as_ref().expect("limiter")
        ));
        let renamed = PlanLimits { plan_id: "plan_2".into(), ..plan(Some((5, 60)), None) };
        let v2 = apply(&shared, vec![row(Some(renamed))], Some(&fleet));
        assert!(Arc::ptr_eq(v2[&id].fleet.as_ref().expect("kept"), &lease), "a rename keeps the lease");
        let v3 = apply(&v2, vec![row(Some(plan(Some((6, 60)), None)))], Some(&fleet));
        assert!(!Arc::ptr_eq(v3[&id].fleet.as_ref().expect("new"), &lease), "a new limit is a new lease");
        let v4 = apply(&v3, vec![row(Some(plan(None, Some((10, Period::Day)))))], Some(&fleet));
        assert!(v4[&id].fleet.is_none(), "no pooled rate limit, nothing to share");
    }
}
