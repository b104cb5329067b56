//! Secrets replaced by rotation, as the snapshot holds them: each points at
//! its key's newest policy and says until when it works. Sharded twice (by
//! secret hash for the request path, by key id for `apply`), copy-on-write
//! per shard, so that a change to one key copies a shard or two, never the
//! whole map, whatever the rotation history of other keys.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;

use super::format::KeyHash;
use super::snapshot::{InlineId, KeyState};

const SHARDS: usize = 256;

type ByHash = HashMap<KeyHash, (Arc<KeyState>, i64)>;
type ByKey = HashMap<InlineId, Vec<KeyHash>>;

#[derive(Clone)]
pub(super) struct Retired {
    by_hash: Arc<[Arc<ByHash>]>,
    by_key: Arc<[Arc<ByKey>]>,
    len: usize,
}

/// A retired secret of a changed key, for `Retired::replace`.
pub(super) struct Entry {
    pub hash: KeyHash,
    pub state: Arc<KeyState>,
    pub valid_until: i64,
}

fn key_shard(id: &InlineId) -> usize {
    let mut h = DefaultHasher::new();
    id.hash(&mut h);
    (h.finish() as usize) % SHARDS
}

impl Retired {
    pub fn empty() -> Self {
        Retired {
            by_hash: (0..SHARDS).map(|_| Arc::default()).collect(),
            by_key: (0..SHARDS).map(|_| Arc::default()).collect(),
            len: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn get(&self, hash: &KeyHash) -> Option<&(Arc<KeyState>, i64)> {
        if self.len == 0 {
            return None;
        }
        self.by_hash[hash.shard()].get(hash)
    }

    /// The next version: each key of `changed` keeps exactly its secrets in
    /// `entries` (those the store still holds); the secrets it had here and
    /// the store pruned are forgotten. Other keys' shards are shared.
    pub fn replace(&self, changed: &[InlineId], entries: Vec<Entry>) -> Retired {
        if self.len == 0 && entries.is_empty() {
            return self.clone();
        }
        let mut by_hash: Vec<Arc<ByHash>> = self.by_hash.to_vec();
        let mut by_key: Vec<Arc<ByKey>> = self.by_key.to_vec();
        let mut len = self.len;
        if self.len > 0 {
            for id in changed {
                let shard = key_shard(id);
                if !by_key[shard].contains_key(id) {
                    continue;
                }
                let Some(hashes) = Arc::make_mut(&mut by_key[shard]).remove(id) else { continue };
                for hash in hashes {
                    if Arc::make_mut(&mut by_hash[hash.shard()]).remove(&hash).is_some() {
                        len -= 1;
                    }
                }
            }
        }
        for entry in entries {
            let id = entry.state.policy.id;
            let hashes = Arc::make_mut(&mut by_key[key_shard(&id)]).entry(id).or_default();
            if !hashes.contains(&entry.hash) {
                hashes.push(entry.hash);
            }
            if Arc::make_mut(&mut by_hash[entry.hash.shard()])
                .insert(entry.hash, (entry.state, entry.valid_until))
                .is_none()
            {
                len += 1;
            }
        }
        Retired { by_hash: by_hash.into(), by_key: by_key.into(), len }
    }

    /// How many shards the two versions share (not copied), for tests.
    #[cfg(test)]
    pub fn shared_shards(&self, other: &Retired) -> usize {
        let by_hash = self.by_hash.iter().zip(other.by_hash.iter()).filter(|(a, b)| Arc::ptr_eq(a, b)).count();
        by_hash + self.by_key.iter().zip(other.by_key.iter()).filter(|(a, b)| Arc::ptr_eq(a, b)).count()
    }
}

#[cfg(test)]
mod tests {
    use http::Method;

    use crate::keys::format::generate;
    use crate::keys::snapshot::tests::policy;
    use crate::keys::{Changes, KeyHash, KeySet, PolicyRow, Refusal, RetiredRow};

    fn rotated(id: &str, current: &KeyHash, old: &[(&KeyHash, i64)], revision: i64) -> Changes {
        Changes {
            revision,
            keys: vec![PolicyRow { hash: *current, policy: policy(id) }],
            retired: old
                .iter()
                .map(|(h, until)| RetiredRow { hash: **h, key_id: id.into(), valid_until: *until })
                .collect(),
            accounts: vec![],
            ..Default::default()
        }
    }

    #[test]
    fn secrets_the_store_pruned_are_forgotten() {
        let s: Vec<_> = (0..4).map(|_| generate("kg_live")).collect();
        let h: Vec<KeyHash> = s.iter().map(|s| s.hash()).collect();
        let at = |set: &KeySet, i: usize| set.check(s[i].expose().as_bytes(), &Method::GET, 50);
        let v1 = KeySet::empty().apply(rotated("key_1", &h[0], &[], 1));
        let v2 = v1.apply(rotated("key_1", &h[1], &[(&h[0], 100)], 2));
        assert!(at(&v2, 0).is_ok(), "in its grace");
        // The store pruned h0 at the next rotation: this snapshot forgets it.
        let v3 = v2.apply(rotated("key_1", &h[2], &[(&h[1], 10)], 3));
        assert_eq!(at(&v3, 0), Err(Refusal::InvalidKey));
        assert_eq!(at(&v3, 1), Err(Refusal::KeyRevoked), "past its grace, still known");
        assert_eq!(v3.len(), 2);
        // A snapshot that missed those rotations (h0 was current in it)
        // drops h0 even though the store no longer names it.
        let missed = v1.apply(rotated("key_1", &h[3], &[(&h[2], 10)], 4));
        assert_eq!(at(&missed, 0), Err(Refusal::InvalidKey), "the lost current secret is dropped");
        assert!(at(&missed, 3).is_ok());
        assert_eq!(missed.len(), 2);
    }

    #[test]
    fn a_change_to_one_key_copies_no_other_keys_retired_secrets() {
        let keys: Vec<_> = (0..2_000).map(|i| (format!("key_{i}"), generate("kg_live"), generate("kg_live"))).collect();
        let rows = keys.iter().map(|(id, new, _)| PolicyRow { hash: new.hash(), policy: policy(id) }).collect();
        let retired =
            keys.iter().map(|(id, _, old)| RetiredRow { hash: old.hash(), key_id: id.clone(), valid_until: 100 });
        let set = KeySet::empty().apply(Changes {
            revision: 1,
            keys: rows,
            retired: retired.collect(),
            accounts: vec![],
            ..Default::default()
        });
        assert_eq!(set.len(), 4_000);
        let (id, new, old) = &keys[7];
        let next = set.apply(rotated(id, &new.hash(), &[(&old.hash(), 0)], 2));
        // One shard by hash and one by key id are copied; the 510 others
        // (holding the other 1,999 keys' retired secrets) are shared.
        assert!(next.retired().shared_shards(set.retired()) >= 510, "{}", next.retired().shared_shards(set.retired()));
        assert_eq!(next.check(old.expose().as_bytes(), &Method::GET, 0), Err(Refusal::KeyRevoked));
        assert_eq!(next.len(), 4_000);
    }
}
