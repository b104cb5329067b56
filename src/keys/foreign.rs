//! Keys imported as a foreign hash: the sha256 of a secret keygate has never
//! seen (`POST /v1/keys/import` with `hash`). The snapshot keeps them in an
//! index of their own, by that sha256, searched only when the blake3 lookup
//! misses and only while such keys exist, so the common path pays nothing.
//!
//! The first time one is used, the proxy holds its plaintext: it notes a
//! `Sighting` (the key, the blake3 of the secret, its last four characters
//! for the preview) here, and a task above (`crate::rehash`) writes the
//! blake3 hash to the store off the request path. The next reload, on every
//! replica, finds the key by blake3 like any other. This module stores no
//! secret: only hashes and the four characters a preview shows anyway.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use sha2::{Digest, Sha256};

use super::format::KeyHash;
use super::id_hash::IdMap;
use super::snapshot::InlineId;

/// Most first uses waiting to be written at once. More wait for their next
/// use: a flood of first uses cannot grow this without bound.
const MAX_PENDING: usize = 65_536;

/// The sha256 of a credential: how keys imported by hash are indexed.
pub fn sha256(key: &[u8]) -> KeyHash {
    KeyHash(Sha256::digest(key).into())
}

/// A key imported by hash, seen with its secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sighting {
    pub key_id: InlineId,
    /// The sha256 it was imported as, and is indexed by until it moves.
    pub foreign: KeyHash,
    /// The blake3 of the secret the proxy saw: what the store keeps next.
    pub hash: KeyHash,
    /// The secret's last four characters (printable ASCII), for the preview.
    tail: [u8; 4],
}

impl Sighting {
    /// The preview of an imported plaintext secret: `…` and the last four
    /// characters.
    pub fn preview(&self) -> String {
        let start = self.tail.iter().position(|b| *b != 0).unwrap_or(4);
        format!("…{}", String::from_utf8_lossy(&self.tail[start..]))
    }
}

/// First uses of keys imported by hash, waiting to be written; shared by
/// every version of the snapshot, like the usage counters.
#[derive(Debug, Default)]
pub struct Sightings {
    pending: Mutex<IdMap<Sighting>>,
    wake: tokio::sync::Notify,
    /// sha256 lookups made (the blake3 lookup missed while keys imported by
    /// hash existed): `keygate_foreign_hash_lookups_total`.
    lookups: AtomicU64,
    /// Keys moved to blake3 by this process:
    /// `keygate_foreign_hash_moved_total`.
    moved: AtomicU64,
}

impl Sightings {
    /// Records that `key` (whose sha256 is `foreign`) was used; wakes the
    /// writer the first time.
    pub(super) fn note(&self, key_id: InlineId, foreign: KeyHash, key: &[u8]) {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        if pending.contains_key(&key_id) || pending.len() >= MAX_PENDING {
            return;
        }
        let mut tail = [0u8; 4];
        let n = key.len().min(4);
        tail[4 - n..].copy_from_slice(&key[key.len() - n..]);
        pending.insert(key_id, Sighting { key_id, foreign, hash: KeyHash::of(key), tail });
        drop(pending);
        self.wake.notify_one();
    }

    /// Everything noted since the last call.
    pub fn take(&self) -> Vec<Sighting> {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        pending.drain().map(|(_, s)| s).collect()
    }

    /// Resolves once something was noted (at once if something was noted
    /// since the last wait).
    pub async fn wait(&self) {
        self.wake.notified().await;
    }

    pub(super) fn looked_up(&self) {
        self.lookups.fetch_add(1, Ordering::Relaxed);
    }

    pub fn lookups(&self) -> u64 {
        self.lookups.load(Ordering::Relaxed)
    }

    /// Counts keys this process moved to blake3.
    pub fn moved(&self, n: u64) {
        self.moved.fetch_add(n, Ordering::Relaxed);
    }

    pub fn moved_total(&self) -> u64 {
        self.moved.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::format::generate;
    use crate::keys::{Changes, Facts, KeyPolicy, KeySet, PolicyRow, Refusal};
    use http::Method;

    #[test]
    fn a_sighting_keeps_hashes_and_the_last_four_characters_only() {
        let s = Sightings::default();
        let id = InlineId::new("key_1").expect("id");
        let secret = b"legacy-secret-0123456789-wxyz";
        s.note(id, sha256(secret), secret);
        s.note(id, sha256(secret), secret);
        let taken = s.take();
        assert_eq!(taken.len(), 1, "one sighting per key");
        assert_eq!(taken[0].hash, KeyHash::of(secret));
        assert_eq!(taken[0].foreign, sha256(secret));
        assert_eq!(taken[0].preview(), "…wxyz");
        assert!(!format!("{:?}", taken[0]).contains("legacy"), "no secret in a debug print");
        assert!(s.take().is_empty());
    }

    fn row(hash: KeyHash, id: &str) -> PolicyRow {
        PolicyRow { hash, policy: KeyPolicy::builder(id, "acc_1").build() }
    }

    #[test]
    fn a_key_imported_by_hash_is_found_by_sha256_and_sighted_only_when_used() {
        let secret = b"legacy-secret-0123456789-wxyz";
        let native = generate("kg_live");
        let set = KeySet::empty().apply(Changes {
            revision: 1,
            keys: vec![row(native.hash(), "key_native")],
            foreign: vec![row(sha256(secret), "key_legacy")],
            ..Changes::default()
        });
        assert_eq!(set.foreign_len(), 1);
        assert_eq!(set.len(), 2);
        let get = Method::GET;
        let facts = Facts { method: &get, path: "/", client_ip: None, host: None, cost: 1 };
        // A check or a dry run finds it and notes nothing.
        assert!(set.check(secret, &get, 0).is_ok());
        assert!(set.dry_run(secret, &facts, 0).is_ok());
        assert!(set.sightings().take().is_empty());
        // A decision notes its first use.
        let decided = set.decide(secret, &facts, 0, None).result.expect("allowed");
        assert_eq!(decided.key_id.as_str(), "key_legacy");
        let seen = set.sightings().take();
        assert_eq!(seen.len(), 1);
        assert_eq!((seen[0].foreign, seen[0].hash), (sha256(secret), KeyHash::of(secret)));
        // keygate's own keys never reach the sha256 index; a forged one is
        // refused before any lookup.
        let lookups = set.sightings().lookups();
        assert!(set.check(native.expose().as_bytes(), &get, 0).is_ok());
        let mut forged = native.expose().as_bytes().to_vec();
        forged[12] = if forged[12] == b'a' { b'b' } else { b'a' };
        assert_eq!(set.check(&forged, &get, 0), Err(Refusal::InvalidKey));
        assert_eq!(set.sightings().lookups(), lookups, "no sha256 lookup for a hit or a bad checksum");
        assert_eq!(set.check(b"unknown-secret-0123456789", &get, 0), Err(Refusal::InvalidKey));
        assert_eq!(set.sightings().lookups(), lookups + 1, "an unknown secret is looked up by sha256 too");

        // Moved to blake3: out of the sha256 index, usage carried.
        let moved = set.apply(Changes {
            revision: 2,
            keys: vec![row(KeyHash::of(secret), "key_legacy")],
            moved: vec![sha256(secret)],
            ..Changes::default()
        });
        assert_eq!(moved.foreign_len(), 0);
        assert!(!moved.foreign_pending(&sha256(secret)));
        moved.decide(secret, &facts, 1, None).result.expect("allowed by blake3");
        assert!(moved.sightings().take().is_empty(), "found by blake3: nothing to move");
        let usage = moved.usage().all();
        assert_eq!(usage.len(), 1);
        assert_eq!(usage[0].1.total(), 2, "the use before and after the move, on one counter");
        let after = moved.sightings().lookups();
        assert_eq!(moved.check(b"unknown-secret-0123456789", &get, 0), Err(Refusal::InvalidKey));
        assert_eq!(moved.sightings().lookups(), after, "no key imported by hash left: no sha256 lookup");
    }

    #[test]
    fn sha256_matches_the_standard_digest() {
        // FIPS 180-2 test vector "abc".
        let d = sha256(b"abc");
        assert_eq!(&d.0[..4], &[0xba, 0x78, 0x16, 0xbf]);
        assert_eq!(&d.0[28..], &[0xf2, 0x00, 0x15, 0xad]);
    }
}
