//! Per-key usage: request counts by outcome and the last-used time, counted
//! in memory with atomics on the request path, and written to the store in
//! batches (write-behind) by the flusher.
//!
//! A key's counters live in the `UsageTable`, shared by every snapshot
//! version of that key, so edits, rotations and reloads never drop a count. The flusher
//! writes increments (`usage_count + n`), never absolute values, so replicas
//! sharing a store add up; a failed flush leaves the counts in memory and the
//! next one retries them. The request path takes no lock here.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use arc_swap::ArcSwap;

use crate::clock::now_ms;
use crate::keys::{InlineId, KeySet, Refusal};
use crate::shutdown::Shutdown;
use crate::store::{Store, UsageDelta};

const HOUR_MS: i64 = 3_600_000;

/// Outcomes counted per key: `allowed` and every refusal a known key can get.
pub const OUTCOMES: [&str; 9] = [
    "allowed",
    "key_expired",
    "key_disabled",
    "key_revoked",
    "api_access_disabled",
    "insufficient_permission",
    "ip_not_allowed",
    "route_not_allowed",
    "rate_limited",
];

/// Index into `OUTCOMES`; `None` for refusals that name no key.
pub fn outcome_index(outcome: Result<(), Refusal>) -> Option<usize> {
    match outcome {
        Ok(()) => Some(0),
        Err(Refusal::KeyExpired) => Some(1),
        Err(Refusal::KeyDisabled) => Some(2),
        Err(Refusal::KeyRevoked) => Some(3),
        Err(Refusal::ApiAccessDisabled) => Some(4),
        Err(Refusal::InsufficientPermission) => Some(5),
        Err(Refusal::IpNotAllowed) => Some(6),
        Err(Refusal::RouteNotAllowed) => Some(7),
        Err(Refusal::RateLimited) => Some(8),
        Err(Refusal::MissingKey | Refusal::InvalidKey) => None,
    }
}

/// One key's counters, created on the key's first request and shared by
/// every snapshot version of the key through the `UsageTable`.
#[derive(Debug)]
pub struct Counts {
    pub key_id: InlineId,
    pub account_id: InlineId,
    /// Monotonic totals per outcome, for metrics.
    pub outcomes: [AtomicU64; 9],
    /// Unix ms of the last allowed request.
    pub last_used_ms: AtomicI64,
    /// How many requests of each outcome the store already has (flusher only).
    flushed: [AtomicU64; 9],
}

impl Counts {
    fn new(key_id: InlineId, account_id: InlineId) -> Self {
        Counts {
            key_id,
            account_id,
            outcomes: Default::default(),
            last_used_ms: AtomicI64::new(0),
            flushed: Default::default(),
        }
    }

    /// Counts one request; allowed requests also set the last-used time.
    pub fn record(&self, outcome: usize, now_ms: i64) {
        self.outcomes[outcome].fetch_add(1, Ordering::Relaxed);
        if outcome == 0 {
            self.last_used_ms.fetch_max(now_ms, Ordering::Relaxed);
        }
    }

    pub fn total(&self) -> u64 {
        self.outcomes.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    /// Requests of each outcome not yet in the store.
    fn pending(&self) -> [u64; 9] {
        std::array::from_fn(|i| {
            self.outcomes[i].load(Ordering::Relaxed).saturating_sub(self.flushed[i].load(Ordering::Relaxed))
        })
    }
}

/// The counters of every key used since the process started, by key id.
/// Looked up once per key and policy version (the snapshot's key keeps the
/// `Arc`), so the request path does not come here; the flusher and the
/// metrics collector walk it instead of the whole snapshot, so their work
/// follows the keys in use, not the keys that exist.
#[derive(Debug, Default)]
pub struct UsageTable {
    map: RwLock<HashMap<InlineId, Arc<Counts>>>,
}

impl UsageTable {
    /// The key's counters, created on first use.
    pub fn counts(&self, key_id: InlineId, account_id: InlineId) -> Arc<Counts> {
        if let Some(c) = self.map.read().ok().and_then(|m| m.get(&key_id).cloned()) {
            return c;
        }
        match self.map.write() {
            Ok(mut m) => Arc::clone(m.entry(key_id).or_insert_with(|| Arc::new(Counts::new(key_id, account_id)))),
            // A poisoned table still counts, just not for the flusher.
            Err(_) => Arc::new(Counts::new(key_id, account_id)),
        }
    }

    /// Every key's counters.
    pub fn all(&self) -> Vec<Arc<Counts>> {
        self.map.read().map(|m| m.values().cloned().collect()).unwrap_or_default()
    }
}

/// Keys written per usage transaction, see `Flusher::flush`.
const FLUSH_CHUNK: usize = 500;
/// The pause between two chunks of one flush.
const FLUSH_PAUSE: Duration = Duration::from_millis(5);

/// Writes pending usage to the store every interval and once more at
/// shutdown.
pub struct Flusher {
    keyset: Arc<ArcSwap<KeySet>>,
    store: Store,
    retention_ms: i64,
    last_prune_ms: AtomicI64,
    busy: tokio::sync::Mutex<()>,
    pub last_success_ms: AtomicI64,
    pub failures: AtomicU64,
    pub healthy: AtomicBool,
}

impl Flusher {
    /// `retention_days` bounds the hourly usage kept in the store.
    pub fn new(keyset: Arc<ArcSwap<KeySet>>, store: Store, retention_days: u32) -> Arc<Flusher> {
        Arc::new(Flusher {
            keyset,
            store,
            retention_ms: i64::from(retention_days) * 24 * HOUR_MS,
            last_prune_ms: AtomicI64::new(0),
            busy: tokio::sync::Mutex::new(()),
            last_success_ms: AtomicI64::new(now_ms()),
            failures: AtomicU64::new(0),
            healthy: AtomicBool::new(true),
        })
    }

    /// Writes every pending count, `FLUSH_CHUNK` keys per transaction with
    /// a short pause between them: the store's work (SQLite's especially)
    /// runs on the cores that serve the proxy, and a flush of 10,000 keys
    /// in one go stalls requests for tens of milliseconds. A chunk's counts
    /// are marked flushed only once it is committed; on failure the rest
    /// stays pending for the next call.
    pub async fn flush(&self) -> Result<usize, crate::store::StoreError> {
        let _one_at_a_time = self.busy.lock().await;
        let used = self.keyset.load().usage().all();
        let mut batch = Vec::new();
        let mut marks = Vec::new();
        let hour = now_ms() / HOUR_MS * HOUR_MS;
        for counts in used {
            let pending = counts.pending();
            if pending.iter().all(|n| *n == 0) {
                continue;
            }
            batch.push(UsageDelta {
                key_id: counts.key_id.to_string(),
                requests: pending[0] as i64,
                last_used_ms: counts.last_used_ms.load(Ordering::Relaxed),
                hour,
                outcomes: pending
                    .iter()
                    .enumerate()
                    .filter(|(_, n)| **n > 0)
                    .map(|(i, n)| (OUTCOMES[i], *n as i64))
                    .collect(),
            });
            marks.push((counts, pending));
        }
        for (i, (deltas, marks)) in batch.chunks(FLUSH_CHUNK).zip(marks.chunks(FLUSH_CHUNK)).enumerate() {
            if i > 0 {
                tokio::time::sleep(FLUSH_PAUSE).await;
            }
            if let Err(e) = self.store.add_usage(deltas).await {
                self.failures.fetch_add(1, Ordering::Relaxed);
                if self.healthy.swap(false, Ordering::Relaxed) {
                    tracing::warn!(error = %e, keys = batch.len() - i * FLUSH_CHUNK, "usage flush failed; counts kept in memory for the next try");
                }
                return Err(e);
            }
            for (counts, pending) in marks {
                for (flushed, n) in counts.flushed.iter().zip(pending) {
                    flushed.fetch_add(*n, Ordering::Relaxed);
                }
            }
        }
        self.last_success_ms.store(now_ms(), Ordering::Relaxed);
        if !batch.is_empty() && !self.healthy.swap(true, Ordering::Relaxed) {
            tracing::info!("usage flush recovered");
        }
        Ok(batch.len())
    }

    /// Drops hourly usage older than the retention, at most once an hour.
    async fn prune(&self) {
        let now = now_ms();
        if now - self.last_prune_ms.load(Ordering::Relaxed) < HOUR_MS {
            return;
        }
        match self.store.prune_usage(now - self.retention_ms).await {
            Ok(rows) => {
                self.last_prune_ms.store(now, Ordering::Relaxed);
                tracing::debug!(rows, "old hourly usage pruned");
            }
            Err(e) => tracing::debug!(error = %e, "pruning hourly usage failed; will retry"),
        }
    }

    /// Seconds since the last successful flush.
    pub fn lag_seconds(&self) -> f64 {
        (now_ms() - self.last_success_ms.load(Ordering::Relaxed)).max(0) as f64 / 1000.0
    }

    pub fn spawn(self: &Arc<Self>, interval: Duration, shutdown: Shutdown) -> tokio::task::JoinHandle<()> {
        let this = Arc::clone(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = shutdown.wait() => return,
                }
                let _ = this.flush().await;
                this.prune().await;
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_shared_by_key_id() {
        let table = UsageTable::default();
        let id = InlineId::new("key_1").expect("id");
        let acc = InlineId::new("acc_1").expect("id");
        let c = table.counts(id, acc);
        c.record(0, 10);
        table.counts(id, acc).record(0, 5);
        c.record(8, 20);
        assert_eq!(table.all().len(), 1);
        assert_eq!(c.outcomes[0].load(Ordering::Relaxed), 2);
        assert_eq!(c.total(), 3);
        assert_eq!(c.pending()[0], 2);
        assert_eq!(c.pending()[8], 1);
        assert_eq!(c.last_used_ms.load(Ordering::Relaxed), 10, "refusals don't count as use");
    }

    #[test]
    fn every_key_refusal_has_an_outcome() {
        for r in Refusal::ALL {
            let idx = outcome_index(Err(r));
            match r {
                Refusal::MissingKey | Refusal::InvalidKey => assert_eq!(idx, None),
                _ => assert_eq!(OUTCOMES[idx.expect("indexed")], r.code()),
            }
        }
    }
}
