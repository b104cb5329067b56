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
use crate::keys::{KeySet, Outcome};
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
                requests: pending[Outcome::ALLOWED.index()] as i64,
                last_used_ms: counts.last_used_ms(),
                hour,
                outcomes: Outcome::ALL
                    .iter()
                    .filter(|o| pending[o.index()] > 0)
                    .map(|o| (o.code(), pending[o.index()] as i64))
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
                counts.mark_flushed(pending);
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
