//! The index of the snapshot: 256 shards (by the hash's first byte) of
//! sorted hashes, each beside its key, with a directory of where each bucket
//! of hashes starts, and the copy-on-write merge that makes the next version
//! of a shard. It knows nothing of what a key means.
//!
//! A lookup reads two directory slots and scans one bucket (about four
//! entries, adjacent in memory, each hash next to its key's pointer): at a
//! million keys, where every read outside the hot set is a cache miss, that
//! is two or three misses before the key itself, against the eight or so of
//! a search that probes the shard.

use std::collections::HashSet;
use std::sync::Arc;

use super::KeyState;
use crate::keys::format::KeyHash;

/// Entries per bucket of the directory, on average: the directory costs 4
/// bytes per bucket (1 byte a key), a lookup scans about half a bucket.
const PER_BUCKET: usize = 4;

/// One shard of the index: hashes in ascending order, each with its key,
/// and the directory over them. The snapshot holds its 256 shards inline
/// (a lookup goes from the snapshot straight to the directory, no pointer
/// to a shard in between); both arrays are shared by every version of the
/// snapshot the shard is unchanged in.
#[derive(Clone)]
pub(super) struct Shard {
    entries: Arc<[(KeyHash, Arc<KeyState>)]>,
    /// `starts[b]..starts[b + 1]` are the entries of bucket `b` (`bucket`);
    /// one slot more than there are buckets, none for an empty shard.
    starts: Arc<[u32]>,
}

impl Default for Shard {
    fn default() -> Shard {
        Shard { entries: Arc::from(Vec::new()), starts: Arc::from(Vec::new()) }
    }
}

/// Bytes 1..9 of a hash (byte 0 picks the shard), as a number: uniformly
/// distributed, and in the order of the hashes within a shard.
fn word(hash: &KeyHash) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&hash.0[1..9]);
    u64::from_be_bytes(word)
}

/// The bucket of `word` among `buckets`: buckets split the range of words
/// evenly, so a bucket's entries are contiguous in a sorted shard.
fn bucket(word: u64, buckets: usize) -> usize {
    ((u128::from(word) * buckets as u128) >> 64) as usize
}

impl Shard {
    /// A shard of `entries` (sorted by hash, no hash twice), with its
    /// directory.
    fn new(entries: Vec<(KeyHash, Arc<KeyState>)>) -> Shard {
        if entries.is_empty() {
            return Shard::default();
        }
        let buckets = (entries.len() / PER_BUCKET).max(1);
        let mut starts = Vec::with_capacity(buckets + 1);
        // A shard of 2^32 entries would hold 160 GB of keys.
        for (i, (hash, _)) in entries.iter().enumerate() {
            let b = bucket(word(hash), buckets);
            while starts.len() <= b {
                starts.push(i as u32);
            }
        }
        starts.resize(buckets + 1, entries.len() as u32);
        Shard { entries: entries.into(), starts: starts.into() }
    }

    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Every hash with its key, in hash order.
    pub(super) fn iter(&self) -> impl Iterator<Item = (&KeyHash, &Arc<KeyState>)> {
        self.entries.iter().map(|(hash, state)| (hash, state))
    }

    pub(super) fn states(&self) -> impl Iterator<Item = &Arc<KeyState>> {
        self.entries.iter().map(|(_, state)| state)
    }

    pub(super) fn get(&self, hash: &KeyHash) -> Option<&Arc<KeyState>> {
        let buckets = self.starts.len().checked_sub(1)?;
        let target = word(hash);
        let b = bucket(target, buckets);
        let (from, to) = (self.starts[b] as usize, self.starts[b + 1] as usize);
        for (candidate, state) in &self.entries[from..to] {
            let w = word(candidate);
            if w > target {
                break;
            }
            if w == target && candidate == hash {
                return Some(state);
            }
        }
        None
    }
}

/// `old` with `added` put in (replacing equal hashes) and `removed` taken
/// out, still sorted.
pub(super) fn merge(old: &Shard, mut added: Vec<(KeyHash, Arc<KeyState>)>, removed: &HashSet<KeyHash>) -> Shard {
    added.sort_unstable_by_key(|a| a.0);
    added.dedup_by(|later, earlier| later.0 == earlier.0);
    let old = &old.entries;
    let mut out = Vec::with_capacity(old.len() + added.len());
    let mut push = |hash: KeyHash, state: Arc<KeyState>| {
        if !removed.contains(&hash) {
            out.push((hash, state));
        }
    };
    let (mut i, mut new) = (0, added.into_iter().peekable());
    while i < old.len() || new.peek().is_some() {
        let take_new = match new.peek() {
            None => false,
            Some((h, _)) => i >= old.len() || *h <= old[i].0,
        };
        if take_new {
            let Some((h, state)) = new.next() else { break };
            if i < old.len() && old[i].0 == h {
                i += 1;
            }
            push(h, state);
        } else {
            push(old[i].0, Arc::clone(&old[i].1));
            i += 1;
        }
    }
    Shard::new(out)
}

/// Every shard of an index with its `added` and `removed` applied; a shard
/// neither touches is shared, not copied.
pub(super) fn merge_all(
    old: &[Shard],
    added: Vec<Vec<(KeyHash, Arc<KeyState>)>>,
    removed: Vec<HashSet<KeyHash>>,
) -> Vec<Shard> {
    old.iter()
        .zip(added.into_iter().zip(removed))
        .map(
            |(old, (added, removed))| {
                if added.is_empty() && removed.is_empty() {
                    old.clone()
                } else {
                    merge(old, added, &removed)
                }
            },
        )
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use rand::{Rng, SeedableRng};

    use super::*;
    use crate::keys::snapshot::tests::policy;

    fn state(i: usize) -> Arc<KeyState> {
        Arc::new(KeyState::new(policy(&format!("key_{i}"))))
    }

    /// Checks `shard` against the model: every hash in it found with its
    /// key, in order; `absent` hashes not found.
    fn agrees(shard: &Shard, model: &BTreeMap<KeyHash, Arc<KeyState>>, absent: &[KeyHash]) {
        assert_eq!(shard.len(), model.len());
        assert!(shard.iter().map(|(h, _)| *h).eq(model.keys().copied()), "sorted, nothing lost");
        for (hash, state) in model {
            let found = shard.get(hash).unwrap_or_else(|| panic!("{hash:?} not found among {}", model.len()));
            assert!(Arc::ptr_eq(found, state));
        }
        for hash in absent.iter().filter(|h| !model.contains_key(h)) {
            assert!(shard.get(hash).is_none(), "{hash:?} found but absent");
        }
    }

    #[test]
    fn every_hash_is_found_through_the_directory_and_no_other() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut random = |shard: u8| {
            let mut h = [0u8; 32];
            rng.fill(&mut h[..]);
            h[0] = shard;
            KeyHash(h)
        };
        // Neighbours the scan must tell apart: the same bytes 1..9 (the
        // directory's word) with another tail, and the words at both ends.
        let twin = |h: &KeyHash, last: u8| {
            let mut t = *h;
            t.0[31] = last;
            t
        };
        let edge = |fill: u8, last: u8| {
            let mut h = [fill; 32];
            h[0] = 9;
            h[31] = last;
            KeyHash(h)
        };
        for n in [0, 1, 2, 3, 4, 5, 7, 100, 5_000] {
            let mut model = BTreeMap::new();
            let mut hashes: Vec<KeyHash> = (0..n).map(|_| random(9)).collect();
            if n >= 4 {
                hashes.extend([twin(&hashes[0], 0), twin(&hashes[0], 255), edge(0, 1), edge(255, 1)]);
            }
            let added: Vec<_> = hashes.iter().enumerate().map(|(i, h)| (*h, state(i))).collect();
            model.extend(added.iter().cloned());
            let shard = merge(&Shard::default(), added, &HashSet::new());
            let mut absent: Vec<KeyHash> = (0..200).map(|_| random(9)).collect();
            absent.extend(
                hashes.iter().flat_map(|h| [twin(h, h.0[31].wrapping_add(1)), twin(h, h.0[31].wrapping_sub(1))]),
            );
            absent.extend([edge(0, 0), edge(0, 2), edge(255, 0), edge(255, 2)]);
            agrees(&shard, &model, &absent);

            // The next version: a third out, some replaced, some new.
            let removed: HashSet<KeyHash> = hashes.iter().step_by(3).copied().collect();
            let mut added: Vec<_> = hashes.iter().skip(1).step_by(5).map(|h| (*h, state(n + 1))).collect();
            added.extend((0..n / 2 + 1).map(|i| (random(9), state(n + 2 + i))));
            for (h, s) in &added {
                model.insert(*h, Arc::clone(s));
            }
            model.retain(|h, _| !removed.contains(h));
            let next = merge(&shard, added, &removed);
            absent.extend(removed.iter().copied());
            agrees(&next, &model, &absent);
            assert_eq!(shard.len(), hashes.len(), "the old version is untouched");
        }
    }
}
