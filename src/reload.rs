//! Keeps the KeySet snapshot in step with the store.
//!
//! Admin writes on this node call `reload` before they answer, so their
//! change is in force at once. Changes made elsewhere arrive two ways: on
//! PostgreSQL, every commit NOTIFYs `keygate_changes` with the new revision
//! and a listener reloads at once (after any reconnect it resyncs from the
//! snapshot's watermark, since notifications sent while it was away are
//! lost); on both stores, a poller compares the revision counter with the
//! snapshot's every `store.poll_interval_ms` as the fallback. Each reload reads only what changed after
//! the snapshot's revision, builds the next snapshot off the request path and
//! publishes it with one `ArcSwap::store`. A failed reload keeps the old
//! snapshot and marks the store down.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;

use crate::clock::now_ms;
use crate::keys::{Changes, InlineId, KeySet, QuotaSpec};
use crate::quota::QuotaBook;
use crate::shutdown::Shutdown;
use crate::store::{Store, StoreError};

/// The channel the store's revision trigger notifies.
pub const CHANNEL: &str = "keygate_changes";

/// Pause between attempts to re-establish the listener.
const LISTEN_RETRY: Duration = Duration::from_millis(500);

/// Changes bigger than this are applied on a blocking thread.
const INLINE_APPLY_LIMIT: usize = 1_000;

pub struct Reloader {
    store: Store,
    keyset: Arc<ArcSwap<KeySet>>,
    lock: tokio::sync::Mutex<()>,
    store_up: AtomicBool,
    last_success_ms: AtomicI64,
    failures: AtomicU64,
    /// The revision of each snapshot published, for what else follows the
    /// store (the identity signing keys).
    published: tokio::sync::watch::Sender<i64>,
    /// Where the snapshot's quotas are counted; refreshed after each reload
    /// for the quotas it changed.
    quotas: Arc<QuotaBook>,
}

impl Reloader {
    /// Loads the whole key set; fails if the store cannot be read.
    pub async fn start(store: Store) -> Result<Arc<Reloader>, StoreError> {
        let quotas = QuotaBook::new(crate::config::LimitsConfig::default().quota_block);
        // SQLite serves one node: its book is the ledger's only spender.
        quotas.set_sole(store.backend() == crate::store::Backend::Sqlite);
        let reloader = Arc::new(Reloader {
            store,
            keyset: Arc::new(ArcSwap::from_pointee(KeySet::empty().with_quotas(Arc::clone(&quotas)))),
            quotas,
            lock: tokio::sync::Mutex::new(()),
            store_up: AtomicBool::new(false),
            last_success_ms: AtomicI64::new(0),
            failures: AtomicU64::new(0),
            published: tokio::sync::watch::channel(0).0,
        });
        reloader.reload().await?;
        Ok(reloader)
    }

    /// The published snapshot, for the proxy and the admin API to read.
    pub fn keyset(&self) -> Arc<ArcSwap<KeySet>> {
        Arc::clone(&self.keyset)
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The quota book the snapshot spends through.
    pub fn quotas(&self) -> &Arc<QuotaBook> {
        &self.quotas
    }

    /// Whether the last contact with the store succeeded.
    pub fn store_up(&self) -> bool {
        self.store_up.load(Ordering::Relaxed)
    }

    /// Unix ms of the last successful reload (or check that found nothing new).
    pub fn last_success_ms(&self) -> i64 {
        self.last_success_ms.load(Ordering::Relaxed)
    }

    /// Wakes whenever a new snapshot is published (a change on this node
    /// or one heard of by NOTIFY or the poll), with its revision.
    pub fn published(&self) -> tokio::sync::watch::Receiver<i64> {
        self.published.subscribe()
    }

    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// Brings the snapshot up to the store's current revision. Returns
    /// whether anything changed.
    pub async fn reload(&self) -> Result<bool, StoreError> {
        let _one_at_a_time = self.lock.lock().await;
        let current = self.keyset.load_full();
        let changes = match self.store.changes_since(current.revision()).await {
            Ok(c) => c,
            Err(e) => {
                self.failures.fetch_add(1, Ordering::Relaxed);
                if self.store_up.swap(false, Ordering::Relaxed) {
                    tracing::warn!(error = %e, "store unreachable: serving the last snapshot");
                }
                return Err(e);
            }
        };
        if !self.store_up.swap(true, Ordering::Relaxed) && current.revision() > 0 {
            tracing::info!("store reachable again");
        }
        self.last_success_ms.store(now_ms(), Ordering::Relaxed);
        if changes.revision <= current.revision() {
            return Ok(false);
        }
        let (keys, revision) = (changes.keys.len(), changes.revision);
        let owners = quota_owners(&changes);
        let next = if keys + changes.retired.len() + changes.foreign.len() > INLINE_APPLY_LIMIT {
            tokio::task::spawn_blocking(move || current.apply(changes))
                .await
                .map_err(|e| StoreError::Other(format!("snapshot build failed: {e}")))?
        } else {
            current.apply(changes)
        };
        let secrets = next.len();
        self.keyset.store(Arc::new(next));
        self.published.send_replace(revision);
        tracing::debug!(revision, changed_keys = keys, secrets, "snapshot published");
        // The quota book catches up with quotas that changed (new ones,
        // edits, adjustments); requests meanwhile count on what it knew.
        if let Err(e) = self.quotas.refresh(&self.store, owners).await {
            tracing::warn!(error = %e, "quota ledger unreadable after a reload; the quota syncer will retry");
        }
        Ok(true)
    }

    /// Flushes and renews `owners`' quotas now (an admin adjustment waits
    /// on it so it reads the ledger with this replica's spending in).
    pub async fn sync_quotas(&self, owners: &[InlineId]) {
        self.quotas.sync(&self.store, owners).await;
    }

    /// Polls the store's revision and reloads when it moved, until shutdown.
    pub fn spawn_poller(self: &Arc<Self>, interval: Duration, shutdown: Shutdown) -> tokio::task::JoinHandle<()> {
        let this = Arc::clone(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = shutdown.wait() => return,
                }
                let behind = match this.store.revision().await {
                    Ok(rev) => rev > this.keyset.load().revision(),
                    Err(e) => {
                        this.failures.fetch_add(1, Ordering::Relaxed);
                        if this.store_up.swap(false, Ordering::Relaxed) {
                            tracing::warn!(error = %e, "store unreachable: serving the last snapshot");
                        }
                        continue;
                    }
                };
                if behind {
                    if let Err(e) = this.reload().await {
                        tracing::warn!(error = %e, "reload failed: keeping the last snapshot");
                    }
                } else {
                    if !this.store_up.swap(true, Ordering::Relaxed) {
                        tracing::info!("store reachable again");
                    }
                    this.last_success_ms.store(now_ms(), Ordering::Relaxed);
                }
            }
        })
    }

    /// On PostgreSQL, listens for change notifications until shutdown;
    /// `None` on SQLite.
    pub fn spawn_listener(self: &Arc<Self>, shutdown: Shutdown) -> Option<tokio::task::JoinHandle<()>> {
        let pool = self.store.postgres_pool()?.clone();
        let this = Arc::clone(self);
        Some(tokio::spawn(async move {
            tokio::select! {
                _ = this.listen(pool) => {}
                _ = shutdown.wait() => {}
            }
        }))
    }

    async fn listen(&self, pool: sqlx::PgPool) {
        let mut connected_before = false;
        loop {
            let mut listener = match sqlx::postgres::PgListener::connect_with(&pool).await {
                Ok(l) => l,
                Err(e) => {
                    tracing::debug!(error = %e, "change listener cannot connect; retrying");
                    tokio::time::sleep(LISTEN_RETRY).await;
                    continue;
                }
            };
            listener.eager_reconnect(false);
            if let Err(e) = listener.listen(CHANNEL).await {
                tracing::debug!(error = %e, "LISTEN failed; retrying");
                tokio::time::sleep(LISTEN_RETRY).await;
                continue;
            }
            if connected_before {
                tracing::info!("change listener reconnected; resyncing");
            }
            connected_before = true;
            // Whatever was committed before LISTEN took effect is read here;
            // everything after it is notified.
            if let Err(e) = self.reload().await {
                tracing::warn!(error = %e, "resync after LISTEN failed; the poller will retry");
            }
            loop {
                match listener.try_recv().await {
                    Ok(Some(note)) => {
                        let behind =
                            note.payload().parse::<i64>().map_or(true, |rev| rev > self.keyset.load().revision());
                        if behind {
                            if let Err(e) = self.reload().await {
                                tracing::warn!(error = %e, "reload on notification failed; the poller will retry");
                            }
                        }
                    }
                    Ok(None) => {
                        tracing::warn!("change listener lost its connection");
                        break;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "change listener failed");
                        break;
                    }
                }
            }
        }
    }
}

/// Every quota `changes` brings in: keys' own (not revoked) and accounts'
/// pooled ones.
fn quota_owners(changes: &Changes) -> Vec<(InlineId, QuotaSpec)> {
    let keys = changes
        .keys
        .iter()
        .filter(|r| !r.policy.revoked)
        .filter_map(|r| Some((r.policy.id, r.policy.usage_quota?.spec())));
    let accounts = changes.accounts.iter().filter_map(|a| Some((a.account_id, a.plan.as_ref()?.quota?)));
    keys.chain(accounts).collect()
}
