//! The write-behind usage flusher: writes the per-key counters the request
//! path keeps (`crate::keys::counters`) to the store in batches.
//!
//! It writes increments (`usage_count + n`), never absolute values, so
//! replicas sharing a store add up; a failed flush leaves the counts in
//! memory and the next one retries them. Counting itself is not done here.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;

use crate::clock::now_ms;
use crate::keys::counters::PerOutcome;
use crate::keys::{Counts, InlineId, KeySet, Outcome};
use crate::shutdown::Shutdown;
use crate::store::{Store, UsageDelta};

const HOUR_MS: i64 = 3_600_000;

/// Keys written per usage transaction, see `Flusher::flush`. Few: the
/// flush's connection runs on an idle thread
/// (`Store::for_background_writes`), which on a saturated core finishes a
/// transaction slowly while an admin write waits for its lock.
const FLUSH_CHUNK: usize = 250;
/// The pause between two chunks of one flush: where an admin write waiting
/// for SQLite's write lock gets it.
const FLUSH_PAUSE: Duration = Duration::from_millis(1);

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

/// The row a key's pending counts make, booked to `hour`.
fn delta(key_id: &InlineId, counts: &Counts, pending: &PerOutcome, hour: i64) -> UsageDelta {
    UsageDelta {
        key_id: key_id.to_string(),
        requests: pending[Outcome::ALLOWED.index()] as i64,
        last_used_ms: counts.last_used_ms(),
        hour,
        outcomes: Outcome::ALL
            .iter()
            .filter(|o| pending[o.index()] > 0)
            .map(|o| (o.code(), pending[o.index()] as i64))
            .collect(),
    }
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
    /// a short pause between them, so no other writer waits long for
    /// SQLite's write lock. A chunk's counts are marked flushed only once it
    /// is committed; on failure the rest stays pending for the next call.
    /// Each chunk's deltas are built when it is written, so a flush holds
    /// one chunk's rows however many keys were used: a busy interval over a
    /// million keys must not leave the heap grown by a row per key.
    pub async fn flush(&self) -> Result<usize, crate::store::StoreError> {
        let _one_at_a_time = self.busy.lock().await;
        let used = self.keyset.load().usage().all();
        let hour = now_ms() / HOUR_MS * HOUR_MS;
        let mut pending = used.iter().filter_map(|(key_id, counts)| {
            let pending = counts.pending();
            pending.iter().any(|n| *n > 0).then_some((key_id, counts, pending))
        });
        let mut written = 0;
        loop {
            let marks: Vec<_> = pending.by_ref().take(FLUSH_CHUNK).collect();
            if marks.is_empty() {
                break;
            }
            if written > 0 {
                tokio::time::sleep(FLUSH_PAUSE).await;
            }
            let deltas: Vec<UsageDelta> =
                marks.iter().map(|(key_id, counts, pending)| delta(key_id, counts, pending, hour)).collect();
            if let Err(e) = self.store.add_usage(&deltas).await {
                self.failures.fetch_add(1, Ordering::Relaxed);
                if self.healthy.swap(false, Ordering::Relaxed) {
                    let keys = marks.len() + pending.count();
                    tracing::warn!(error = %e, keys, "usage flush failed; counts kept in memory for the next try");
                }
                return Err(e);
            }
            for (_, counts, pending) in &marks {
                counts.mark_flushed(pending);
            }
            written += marks.len();
        }
        self.last_success_ms.store(now_ms(), Ordering::Relaxed);
        if written > 0 && !self.healthy.swap(true, Ordering::Relaxed) {
            tracing::info!("usage flush recovered");
        }
        Ok(written)
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
