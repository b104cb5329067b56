//! Rate limits that hold for the whole fleet (`limits.redis_url`), with the
//! decision kept local: no request waits on Redis.
//!
//! Each replica leases tokens from a fleet-wide token bucket kept in Redis
//! (one GCRA "theoretical arrival time" per limit) and spends them on the
//! request path with one atomic decrement. A background task (`sync.rs`)
//! tops a lease up when half of it is spent, when the fleet's free tokens
//! run short, and at least every second while the limit is in use (every
//! 5 s while its bucket is more than half full, every 30 s while nine
//! tenths full; checked every
//! `limits.redis_sync_interval_ms`): in one Lua call per batch it
//! hands back what the replica holds, and leases it `ceil(free / replicas)`
//! of what is free. Tokens are only ever spent after
//! Redis has counted them, so while Redis answers the fleet admits no more
//! than one bucket allows, apart from the few requests a replica lets
//! through on a limit it holds no lease for (see `FleetScope::admit` and
//! docs/architecture.md#fleet-wide-rate-limits for the bound).
//!
//! The local limiter (governor's GCRA, per replica) still runs: it is what
//! counts alone when Redis cannot be reached, and it gives the headers.
//! This module owns the leases and the Redis side; it does not know what a
//! key or an account is — a limit is named by its `RateScope` and an id
//! (`key:<id>`, `account:<id>`).

mod resp;
mod sync;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};

use tokio::sync::Notify;

use crate::keys::{Quota, RateInfo, RateScope};
pub use resp::RedisUrl;

/// A limit this replica has no lease for, and has not asked one for.
const DORMANT: u8 = 0;
/// It lets requests through on credit and asked for a lease.
const WARMING: u8 = 1;
/// It holds a lease (possibly used up) that the sync keeps topped up.
const ACTIVE: u8 = 2;

/// What the fleet limiter is told by the config.
#[derive(Debug, Clone)]
pub struct FleetOptions {
    pub url: RedisUrl,
    /// Put in front of every Redis key (`keygate:`).
    pub prefix: String,
    pub sync_interval_ms: u64,
}

/// State every scope shares with the sync task.
#[derive(Debug, Default)]
struct Shared {
    /// Redis answered the last sync round; when not, every limit counts alone.
    up: AtomicBool,
    /// Wakes the sync task early for a limit that needs its first lease,
    /// or whose lease is half spent.
    wake: Notify,
    /// Replicas Redis counted in the fleet at the last sync.
    replicas: AtomicI64,
    /// Limits that woke the sync (a first lease, half spent): the rounds
    /// between two full scans look at these, not at every limit.
    urgent: Mutex<Vec<Arc<FleetScope>>>,
}

/// The fleet-wide limits of this replica: one `FleetScope` per limit in use.
#[derive(Debug)]
pub struct FleetLimiter {
    options: FleetOptions,
    shared: Arc<Shared>,
    scopes: RwLock<HashMap<Box<str>, Arc<FleetScope>>>,
    /// Failed sync rounds (connects, timeouts, error replies) since start.
    sync_errors: AtomicU64,
    /// Local unix ms of the last successful sync round.
    last_sync_ms: AtomicI64,
    /// This process among the fleet's replicas in Redis.
    replica_id: String,
}

impl FleetLimiter {
    pub fn new(options: FleetOptions) -> Arc<FleetLimiter> {
        let replica_id = format!("{}-{}-{:x}", hostname(), std::process::id(), rand::random::<u64>());
        Arc::new(FleetLimiter {
            options,
            shared: Arc::default(),
            scopes: RwLock::default(),
            sync_errors: AtomicU64::new(0),
            last_sync_ms: AtomicI64::new(0),
            replica_id,
        })
    }

    /// Whether the last sync round reached Redis.
    pub fn is_up(&self) -> bool {
        self.shared.up.load(Ordering::Relaxed)
    }

    pub fn sync_errors(&self) -> u64 {
        self.sync_errors.load(Ordering::Relaxed)
    }

    /// The fleet-wide state of the limit of `kind` for `id` (a key's own
    /// limit, `key:<id>`, or an account's pooled one, `account:<id>`) with
    /// this quota, created on first use. Callers keep the `Arc` (the key
    /// snapshot does, per key version and per account), so the request path
    /// does not come here.
    pub fn scope(&self, kind: RateScope, id: &str, quota: Quota) -> Arc<FleetScope> {
        let name = format!("{}:{id}", kind.as_str());
        if let Some(s) =
            self.scopes.read().ok().and_then(|m| m.get(name.as_str()).filter(|s| s.quota == quota).cloned())
        {
            return s;
        }
        let fresh = || Arc::new_cyclic(|me| FleetScope::new(me.clone(), &name, kind, quota, Arc::clone(&self.shared)));
        match self.scopes.write() {
            Ok(mut m) => {
                let entry = m.entry(name.as_str().into()).or_insert_with(fresh);
                if entry.quota != quota {
                    // A new limit starts its own lease; the old one's tokens
                    // go back to the fleet when its last user drops it.
                    *entry = fresh();
                }
                Arc::clone(entry)
            }
            Err(_) => fresh(),
        }
    }

    #[cfg(test)]
    fn all(&self) -> Vec<Arc<FleetScope>> {
        self.scopes.read().map(|m| m.values().cloned().collect()).unwrap_or_default()
    }

    /// Forgets limits no snapshot or caller holds any more.
    fn prune(&self) {
        if let Ok(mut m) = self.scopes.write() {
            m.retain(|_, s| Arc::strong_count(s) > 1 || s.allowance.load(Ordering::Relaxed) != 0);
        }
    }
}

/// Requests one replica lets through on credit while its first lease of a
/// limit is on its way: a twentieth of the limit's share per replica, at
/// least one. Charged to the bucket at the sync, like any credit; so the
/// fleet's overshoot stays within max(N, L / 20) of the bound without
/// credit, and a limit below 20 × N requests gets the single request.
fn warm_credit(quota: Quota, replicas: i64) -> i64 {
    (i64::from(quota.requests) / (20 * replicas.max(1))).max(1)
}

/// Credit left at which a first lease stops waiting its turn behind the
/// refreshes (`sync::pick`): half of `warm_credit`.
fn half_credit(quota: Quota, replicas: i64) -> i64 {
    warm_credit(quota, replicas) / 2
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_owned()).unwrap_or_default()
}

/// One fleet-wide limit as this replica sees it: the tokens it holds.
#[derive(Debug)]
pub struct FleetScope {
    /// Itself, to hand to the sync when it wakes it.
    me: Weak<FleetScope>,
    name: Box<str>,
    /// Which limit this is, for the headers of a refusal.
    kind: RateScope,
    quota: Quota,
    shared: Arc<Shared>,
    state: AtomicU8,
    /// Tokens leased to this replica and not yet spent; below 0 when it
    /// spent on credit (the next sync reports that as spent).
    allowance: AtomicI64,
    /// A request came since this limit was last synced.
    touched: AtomicBool,
    /// In the sync's urgent list already (pushed once a round).
    queued: AtomicBool,
    /// In the sync's queue of refreshes and give-backs owed (`sync::pick`).
    owed: AtomicBool,
    /// Tokens of the last lease Redis gave: at half of them spent, the
    /// sync tops the lease up.
    leased: AtomicI64,
    /// Local unix ms this limit was last synced.
    synced_ms: AtomicI64,
    last_used_ms: AtomicI64,
    /// Local unix ms before which the fleet had no free token (last sync).
    empty_until_ms: AtomicI64,
    /// Local unix ms when the fleet's bucket is whole again (last sync).
    full_at_ms: AtomicI64,
    /// Free fleet tokens nobody holds, at the last sync.
    fleet_free: AtomicI64,
    /// Requests still allowed on credit while the first lease is on its
    /// way (`warm_credit`).
    credit: AtomicI64,
}

impl FleetScope {
    fn new(me: Weak<FleetScope>, name: &str, kind: RateScope, quota: Quota, shared: Arc<Shared>) -> FleetScope {
        FleetScope {
            me,
            name: name.into(),
            kind,
            quota,
            shared,
            state: AtomicU8::new(DORMANT),
            allowance: AtomicI64::new(0),
            touched: AtomicBool::new(false),
            queued: AtomicBool::new(false),
            owed: AtomicBool::new(false),
            leased: AtomicI64::new(0),
            synced_ms: AtomicI64::new(0),
            last_used_ms: AtomicI64::new(0),
            empty_until_ms: AtomicI64::new(0),
            full_at_ms: AtomicI64::new(0),
            fleet_free: AtomicI64::new(i64::from(quota.requests)),
            credit: AtomicI64::new(0),
        }
    }

    /// One request: allowed when the replica holds a token of the fleet's
    /// and `local` (the replica's own limiter) allows it too. While Redis
    /// is unreachable, `local` decides alone. Atomics only, no lock, no
    /// allocation, never a wait on Redis.
    ///
    /// A limit with no lease yet (first use on this replica, or idle long
    /// enough to have handed its lease back) lets requests through on
    /// credit until the lease comes — `warm_credit` of them, one for any
    /// limit below 20 × the replicas — unless the fleet was known to be
    /// empty, and wakes the sync: refusing would refuse the first requests
    /// of every quiet key, however far below its limit.
    pub fn admit(&self, now_ms: i64, local: impl FnOnce() -> (bool, Option<RateInfo>)) -> (bool, Option<RateInfo>) {
        if !self.shared.up.load(Ordering::Relaxed) {
            return local();
        }
        if !self.touched.load(Ordering::Relaxed) {
            self.touched.store(true, Ordering::Relaxed);
        }
        if self.last_used_ms.load(Ordering::Relaxed) < now_ms {
            self.last_used_ms.store(now_ms, Ordering::Relaxed);
        }
        if self.take() {
            let (allowed, info) = local();
            if !allowed {
                self.allowance.fetch_add(1, Ordering::Relaxed);
            }
            return (allowed, info.map(|i| self.cap(i)));
        }
        let on_credit = self.state.load(Ordering::Acquire) == DORMANT
            && now_ms >= self.empty_until_ms.load(Ordering::Relaxed)
            && self.state.compare_exchange(DORMANT, WARMING, Ordering::AcqRel, Ordering::Relaxed).is_ok();
        if on_credit {
            let credit = warm_credit(self.quota, self.replicas()) - 1;
            self.credit.store(credit, Ordering::Relaxed);
            // The next round (every `limits.redis_sync_interval_ms`) leases;
            // the sync is woken now only when no credit is left to wait on.
            self.wake(credit == 0);
            let (allowed, info) = local();
            if allowed {
                self.allowance.fetch_sub(1, Ordering::Relaxed);
            } else {
                self.state.store(DORMANT, Ordering::Release);
            }
            return (allowed, info.map(|i| self.cap(i)));
        }
        let warming = self.state.load(Ordering::Acquire) == WARMING;
        let credit = if warming {
            self.credit.fetch_update(Ordering::AcqRel, Ordering::Relaxed, |c| (c > 0).then(|| c - 1))
        } else {
            Err(0)
        };
        if warming && !credit.is_ok_and(|before| before > 1) {
            // The credit ran out before the lease came: lease now.
            self.wake(true);
        } else if warming && credit.is_ok_and(|before| before - 1 == half_credit(self.quota, self.replicas())) {
            // Half of it spent: the next round leases, whatever it owes.
            self.wake(false);
        }
        if credit.is_ok() {
            let (allowed, info) = local();
            if allowed {
                self.allowance.fetch_sub(1, Ordering::Relaxed);
            } else {
                self.credit.fetch_add(1, Ordering::Relaxed);
            }
            return (allowed, info.map(|i| self.cap(i)));
        }
        if self.state.load(Ordering::Relaxed) == ACTIVE && now_ms >= self.empty_until_ms.load(Ordering::Relaxed) {
            // The lease ran out (or went back) with tokens possibly free in
            // the fleet: top it up now, not at the next full scan.
            self.wake(true);
        }
        (false, Some(self.refusal(now_ms)))
    }

    fn replicas(&self) -> i64 {
        self.shared.replicas.load(Ordering::Relaxed)
    }

    /// Puts this limit in the next round (a first lease, once per lease at
    /// half of it, a lease run dry); with `now`, wakes the sync for it
    /// rather than waiting for its next round. Waking costs the request's
    /// thread a syscall when the sync sleeps: requests that still have
    /// credit to spend leave it asleep.
    fn wake(&self, now: bool) {
        if !self.queued.swap(true, Ordering::AcqRel) {
            if let Some(me) = self.me.upgrade() {
                self.shared.urgent.lock().unwrap_or_else(|p| p.into_inner()).push(me);
            }
        }
        if now {
            self.shared.wake.notify_one();
        }
    }

    /// Takes one leased token if there is one; the one that leaves half
    /// of the last lease wakes the sync to top it up.
    fn take(&self) -> bool {
        match self.allowance.fetch_update(Ordering::AcqRel, Ordering::Relaxed, |a| (a > 0).then(|| a - 1)) {
            Ok(before) => {
                if before - 1 == self.leased.load(Ordering::Relaxed) / 2 {
                    self.wake(true);
                }
                true
            }
            Err(_) => false,
        }
    }

    /// The local limiter's view, with `remaining` no more than the fleet's.
    fn cap(&self, mut info: RateInfo) -> RateInfo {
        let fleet = self.fleet_free.load(Ordering::Relaxed) + self.allowance.load(Ordering::Relaxed).max(0);
        info.remaining = info.remaining.min(u32::try_from(fleet.max(0)).unwrap_or(u32::MAX));
        info
    }

    /// The headers of a refusal by the fleet.
    fn refusal(&self, now_ms: i64) -> RateInfo {
        let secs = |until: i64| u64::try_from((until - now_ms).max(0)).unwrap_or(0).div_ceil(1000);
        RateInfo {
            limit: self.quota.requests,
            window_seconds: self.quota.per_seconds,
            remaining: 0,
            reset_seconds: secs(self.full_at_ms.load(Ordering::Relaxed)).max(1),
            retry_after_seconds: Some(secs(self.empty_until_ms.load(Ordering::Relaxed)).max(1)),
            scope: self.kind,
        }
    }
}

#[cfg(test)]
mod tests;
