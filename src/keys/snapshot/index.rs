//! The index of the snapshot: 256 shards (by the hash's first byte) of
//! sorted hashes, each with its key, searched by interpolation, and the
//! copy-on-write merge that makes the next version of a shard. It knows
//! nothing of what a key means.

use std::cmp::Ordering;
use std::collections::HashSet;
use std::sync::Arc;

use super::KeyState;
use crate::keys::format::KeyHash;

/// One shard of the index: hashes in ascending order, and each hash's key.
#[derive(Default, Clone)]
pub(super) struct Shard {
    pub(super) hashes: Vec<KeyHash>,
    pub(super) states: Vec<Arc<KeyState>>,
}

impl Shard {
    pub(super) fn get(&self, hash: &KeyHash) -> Option<&Arc<KeyState>> {
        position(&self.hashes, hash).map(|i| &self.states[i])
    }
}

/// Interpolation search: the hashes are uniform, so the first guess is near;
/// gallop from it to a bracket, then binary-search the bracket.
fn position(hashes: &[KeyHash], target: &KeyHash) -> Option<usize> {
    let n = hashes.len();
    if n == 0 {
        return None;
    }
    let mut word = [0u8; 8];
    word.copy_from_slice(&target.0[1..9]);
    let guess = ((u128::from(u64::from_be_bytes(word)) * n as u128) >> 64) as usize;
    let (lo, hi) = match hashes[guess].cmp(target) {
        Ordering::Equal => return Some(guess),
        // The target is after the guess: double the distance until a hash
        // at or past it, then search between the last two probes.
        Ordering::Less => {
            let mut b = 1;
            while guess + b < n && hashes[guess + b] < *target {
                b *= 2;
            }
            (guess + b / 2 + 1, (guess + b + 1).min(n))
        }
        Ordering::Greater => {
            let mut b = 1;
            while b <= guess && hashes[guess - b] > *target {
                b *= 2;
            }
            (guess.saturating_sub(b), guess - b / 2)
        }
    };
    hashes[lo..hi].binary_search(target).ok().map(|i| lo + i)
}

/// `old` with `added` put in (replacing equal hashes) and `removed` taken
/// out, still sorted.
pub(super) fn merge(old: &Shard, mut added: Vec<(KeyHash, Arc<KeyState>)>, removed: &HashSet<KeyHash>) -> Shard {
    added.sort_unstable_by_key(|a| a.0);
    added.dedup_by(|later, earlier| later.0 == earlier.0);
    let capacity = old.hashes.len() + added.len();
    let mut out = Shard { hashes: Vec::with_capacity(capacity), states: Vec::with_capacity(capacity) };
    let mut push = |hash: KeyHash, state: Arc<KeyState>| {
        if !removed.contains(&hash) {
            out.hashes.push(hash);
            out.states.push(state);
        }
    };
    let (mut i, mut new) = (0, added.into_iter().peekable());
    while i < old.hashes.len() || new.peek().is_some() {
        let take_new = match new.peek() {
            None => false,
            Some((h, _)) => i >= old.hashes.len() || *h <= old.hashes[i],
        };
        if take_new {
            let Some((h, state)) = new.next() else { break };
            if i < old.hashes.len() && old.hashes[i] == h {
                i += 1;
            }
            push(h, state);
        } else {
            push(old.hashes[i], Arc::clone(&old.states[i]));
            i += 1;
        }
    }
    out.hashes.shrink_to_fit();
    out.states.shrink_to_fit();
    out
}
