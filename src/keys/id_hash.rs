//! The hasher of the maps keyed by key and account ids (`InlineId`), which
//! the request path reads: the account of every request with a plan, the
//! quota book's cells, the identity token cache.
//!
//! std's SipHash costs a few hundred instructions for a 24-byte id; this one
//! folds the id's three words with a multiply each (the folded multiply of
//! foldhash and wyhash). Ids are 24 bytes from the store, so the seed is
//! random per process: which ids share a bucket cannot be known from
//! outside, and an admin who picks ids (imports) cannot aim at one.

use std::hash::{BuildHasher, Hasher};
use std::sync::OnceLock;

use super::InlineId;

/// A map keyed by id, hashed by `IdHash`.
pub type IdMap<V> = std::collections::HashMap<InlineId, V, IdHash>;
/// A set of ids, hashed by `IdHash`.
pub type IdSet = std::collections::HashSet<InlineId, IdHash>;

const MULTIPLIER: u64 = 0x9E37_79B9_7F4A_7C15;

fn fold(x: u64, y: u64) -> u64 {
    let full = u128::from(x) * u128::from(y);
    (full as u64) ^ ((full >> 64) as u64)
}

/// Builds `IdHasher`s seeded with this process's random seed.
#[derive(Debug, Clone, Copy)]
pub struct IdHash {
    seed: u64,
}

impl Default for IdHash {
    fn default() -> Self {
        static SEED: OnceLock<u64> = OnceLock::new();
        IdHash { seed: *SEED.get_or_init(|| rand::random::<u64>() | 1) }
    }
}

impl BuildHasher for IdHash {
    type Hasher = IdHasher;
    fn build_hasher(&self) -> IdHasher {
        IdHasher { state: self.seed }
    }
}

#[derive(Debug, Clone)]
pub struct IdHasher {
    state: u64,
}

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.state = fold(self.state ^ u64::from_le_bytes(word), MULTIPLIER);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.state = fold(self.state ^ n, MULTIPLIER);
    }

    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }

    fn finish(&self) -> u64 {
        // hashbrown takes its tag from the top bits: mix them once more.
        fold(self.state, self.state.rotate_left(29) | 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash(id: &str) -> u64 {
        IdHash::default().hash_one(InlineId::new(id).expect("an id"))
    }

    #[test]
    fn ids_that_differ_in_one_byte_hash_apart() {
        let base = hash("key_0000000000000000000x");
        let mut buckets = std::collections::HashSet::new();
        for i in 0..10_000u32 {
            let h = hash(&format!("key_{i:020}"));
            assert_ne!(h, base, "{i}");
            // The low bits pick the bucket, the top seven the tag.
            buckets.insert((h & 0xffff, h >> 57));
        }
        assert!(buckets.len() > 9_000, "ids spread over buckets and tags: {}", buckets.len());
    }

    #[test]
    fn a_map_finds_what_it_holds() {
        let mut map: IdMap<u32> = IdMap::default();
        for i in 0..1000u32 {
            map.insert(InlineId::new(&format!("acc_{i}")).expect("id"), i);
        }
        assert!((0..1000u32).all(|i| map[&InlineId::new(&format!("acc_{i}")).expect("id")] == i));
        assert!(!map.contains_key(&InlineId::new("acc_1000").expect("id")));
    }
}
