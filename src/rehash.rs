//! Moves keys imported as a sha256 hash to blake3, off the request path.
//!
//! The request path only notes a key's first use (`keys::foreign`); this
//! task wakes on the note, writes the blake3 of the secret the gateway saw
//! to the store (with a preview of its last four characters) and reloads,
//! so the key leaves the sha256 index here and, through the revision, on
//! every replica. A failed write is logged and forgotten: the next use of
//! the key notes it again. At most `BATCH` keys per store transaction.

use std::sync::Arc;
use std::time::Duration;

use crate::keys::foreign::Sighting;
use crate::reload::Reloader;
use crate::shutdown::Shutdown;
use crate::store::Rehash;

/// Keys moved per store transaction.
const BATCH: usize = 500;
/// After a write, first uses noted meanwhile wait this long to be
/// batched: a burst of first uses becomes a few transactions, not one each.
const GATHER: Duration = Duration::from_millis(50);

/// Runs until shutdown.
pub fn spawn(reloader: Arc<Reloader>, shutdown: Shutdown) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let sightings = Arc::clone(reloader.keyset().load().sightings());
        loop {
            tokio::select! {
                _ = sightings.wait() => {}
                _ = shutdown.wait() => return,
            }
            move_once(&reloader).await;
            tokio::time::sleep(GATHER).await;
        }
    })
}

/// Writes every first use noted so far; returns how many keys moved.
pub async fn move_once(reloader: &Reloader) -> u64 {
    let keyset = reloader.keyset().load_full();
    let sightings = keyset.sightings();
    // A key that left the sha256 index since it was noted (moved by another
    // replica, or by the last round) needs nothing.
    let pending: Vec<Sighting> = sightings.take().into_iter().filter(|s| keyset.foreign_pending(&s.foreign)).collect();
    let mut moved = 0;
    for batch in pending.chunks(BATCH) {
        let moves: Vec<Rehash> = batch
            .iter()
            .map(|s| Rehash { key_id: s.key_id.to_string(), foreign: s.foreign, hash: s.hash, preview: s.preview() })
            .collect();
        match reloader.store().rehash_keys(&moves).await {
            Ok(n) => moved += n,
            Err(e) => {
                tracing::warn!(error = %e, keys = moves.len(), "moving keys imported by hash to blake3 failed; their next use retries")
            }
        }
    }
    if moved > 0 {
        sightings.moved(moved);
        tracing::info!(keys = moved, "keys imported by hash moved to blake3 on first use");
    }
    // Also when nothing moved here: another replica may have moved them.
    if !pending.is_empty() {
        if let Err(e) = reloader.reload().await {
            tracing::warn!(error = %e, "reload after moving keys to blake3 failed; the poller will retry");
        }
    }
    moved
}
