//! The KeySet: an immutable snapshot of every key the gateway knows, indexed
//! by the blake3 hash of its secret, and the authentication decision made
//! against it.
//!
//! The request path does one parse, one hash and one map lookup, takes no
//! lock and allocates nothing. Changes are applied copy-on-write: `apply`
//! builds the next snapshot off the request path, cloning only the shards the
//! change touches, and the reloader publishes it with one `ArcSwap::store`.

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Arc, OnceLock};

use super::decision::{Limiter, Quota, Restrictions};
use super::format::{self, KeyHash};
use super::policy::{Permission, Refusal};
use crate::usage::KeyUsage;

const SHARDS: usize = 256;

/// An id (`key_…`, `acc_…`) kept inline, so a policy is one allocation and an
/// `Identity` can be copied out of the snapshot without touching the heap.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct InlineId {
    len: u8,
    bytes: [u8; 31],
}

impl InlineId {
    /// `None` when the id is longer than 31 bytes (ids made here are 24).
    pub fn new(id: &str) -> Option<Self> {
        let len = id.len();
        if len > 31 {
            return None;
        }
        let mut bytes = [0u8; 31];
        bytes[..len].copy_from_slice(id.as_bytes());
        Some(InlineId { len: len as u8, bytes })
    }

    pub fn as_str(&self) -> &str {
        // Built from a &str in `new`, so the bytes are valid UTF-8.
        std::str::from_utf8(&self.bytes[..self.len as usize]).unwrap_or("")
    }
}

impl fmt::Debug for InlineId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for InlineId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the gateway needs to decide on one key.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyPolicy {
    pub id: InlineId,
    pub account_id: InlineId,
    pub permission: Permission,
    pub enabled: bool,
    pub revoked: bool,
    /// The key's account has API access (the plan gate).
    pub api_access: bool,
    /// Unix milliseconds; checked per request against the clock.
    pub expires_at: Option<i64>,
    /// This key's rate limit, overriding the configured default.
    pub quota: Option<Quota>,
    /// Allowed client ranges and routes; `None` when the key has neither.
    pub restrictions: Option<Arc<Restrictions>>,
}

/// A key as the snapshot holds it: its policy, and the state that outlives
/// policy changes (usage counters) or belongs to this policy (its limiter).
#[derive(Debug)]
pub struct KeyState {
    pub policy: KeyPolicy,
    pub usage: Arc<KeyUsage>,
    /// Built on the key's first request from its effective quota.
    pub(super) limiter: OnceLock<Option<Limiter>>,
}

/// Who is calling, copied out of the snapshot for the rest of the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identity {
    pub key_id: InlineId,
    pub account_id: InlineId,
    pub permission: Permission,
}

#[derive(Clone)]
pub(super) struct Entry {
    pub(super) state: Arc<KeyState>,
    /// Set for a secret replaced by rotation: it works until this time
    /// (unix ms) and is refused as revoked after it.
    pub(super) valid_until: Option<i64>,
}

/// Passes the 8 bytes `KeyHash` feeds it straight through: the key is
/// already a cryptographic hash.
#[derive(Default)]
pub struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type Shard = HashMap<KeyHash, Entry, BuildHasherDefault<PassThrough>>;

/// A key row as the store hands it to the snapshot: its current secret's hash
/// and its policy.
#[derive(Debug, Clone)]
pub struct PolicyRow {
    pub hash: KeyHash,
    pub policy: KeyPolicy,
}

/// A secret replaced by rotation, and until when it still works.
#[derive(Debug, Clone)]
pub struct RetiredRow {
    pub hash: KeyHash,
    pub key_id: String,
    pub valid_until: i64,
}

/// Everything that changed in the store after some revision. `retired` holds
/// every retired secret of every key in `keys`, so that old secrets always
/// point at their key's newest policy.
#[derive(Debug, Default)]
pub struct Changes {
    pub revision: i64,
    pub keys: Vec<PolicyRow>,
    pub retired: Vec<RetiredRow>,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty() && self.retired.is_empty()
    }
}

#[derive(Clone)]
pub struct KeySet {
    shards: Arc<[Arc<Shard>]>,
    revision: i64,
    len: usize,
}

impl Default for KeySet {
    fn default() -> Self {
        Self::empty()
    }
}

impl fmt::Debug for KeySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeySet")
            .field("revision", &self.revision)
            .field("secrets", &self.len)
            .finish()
    }
}

impl KeySet {
    pub fn empty() -> Self {
        let shards: Vec<Arc<Shard>> = (0..SHARDS).map(|_| Arc::new(Shard::default())).collect();
        KeySet { shards: shards.into(), revision: 0, len: 0 }
    }

    /// The store revision this snapshot reflects.
    pub fn revision(&self) -> i64 {
        self.revision
    }

    /// Number of secrets (current and retired) in the snapshot.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The next snapshot: this one with `changes` applied. Shards the change
    /// does not touch are shared with this snapshot, not copied. A changed
    /// key keeps its usage counters: they are found through its current or
    /// retired secrets in this snapshot.
    pub fn apply(&self, changes: Changes) -> KeySet {
        let mut shards: Vec<Arc<Shard>> = self.shards.iter().cloned().collect();
        let mut len = self.len;
        let mut retired_of: HashMap<&str, Vec<KeyHash>> = HashMap::new();
        for r in &changes.retired {
            retired_of.entry(r.key_id.as_str()).or_default().push(r.hash);
        }
        let mut by_id: HashMap<InlineId, Arc<KeyState>> = HashMap::with_capacity(changes.keys.len());
        if self.len == 0 && changes.keys.len() > SHARDS {
            let per_shard = changes.keys.len() / SHARDS + changes.keys.len() / (SHARDS * 8) + 1;
            for shard in shards.iter_mut() {
                Arc::make_mut(shard).reserve(per_shard);
            }
        }
        for row in changes.keys {
            let usage = if self.len == 0 {
                None
            } else {
                let id = row.policy.id;
                let old_hashes = retired_of.get(row.policy.id.as_str()).map(Vec::as_slice).unwrap_or(&[]);
                std::iter::once(&row.hash)
                    .chain(old_hashes)
                    .filter_map(|h| self.entry(h))
                    .find(|e| e.state.policy.id == id)
                    .map(|e| Arc::clone(&e.state.usage))
            };
            let state = Arc::new(KeyState { policy: row.policy, usage: usage.unwrap_or_default(), limiter: OnceLock::new() });
            by_id.insert(state.policy.id, Arc::clone(&state));
            let shard = Arc::make_mut(&mut shards[row.hash.shard()]);
            if shard.insert(row.hash, Entry { state, valid_until: None }).is_none() {
                len += 1;
            }
        }
        for row in changes.retired {
            let Some(state) = InlineId::new(&row.key_id).and_then(|id| by_id.get(&id)) else {
                continue;
            };
            let entry = Entry { state: Arc::clone(state), valid_until: Some(row.valid_until) };
            if Arc::make_mut(&mut shards[row.hash.shard()]).insert(row.hash, entry).is_none() {
                len += 1;
            }
        }
        KeySet { shards: shards.into(), revision: changes.revision.max(self.revision), len }
    }

    pub(super) fn entry(&self, hash: &KeyHash) -> Option<&Entry> {
        self.shards[hash.shard()].get(hash)
    }

    /// Every key once (its current secret's entry), for the usage flusher
    /// and the metrics collector.
    pub fn keys(&self) -> impl Iterator<Item = &Arc<KeyState>> {
        self.shards.iter().flat_map(|s| s.values()).filter(|e| e.valid_until.is_none()).map(|e| &e.state)
    }

    /// The key decision without side effects, in the order of DESIGN.md §3:
    /// shape and checksum, lookup, revoked (or an old secret past its grace),
    /// expired, disabled, account access, permission. `decide` adds the
    /// per-key restrictions, the rate limit and the usage count.
    pub fn check(&self, key: &[u8], method: &http::Method, now_ms: i64) -> Result<Identity, Refusal> {
        let entry = self.find(key)?;
        entry.status(method, now_ms)?;
        Ok(entry.state.policy.identity())
    }

    pub(super) fn find(&self, key: &[u8]) -> Result<&Entry, Refusal> {
        format::parse(key).map_err(|_| Refusal::InvalidKey)?;
        self.entry(&KeyHash::of(key)).ok_or(Refusal::InvalidKey)
    }

    /// The policy a hash maps to and, for a retired secret, until when it
    /// works. For the admin API's verify and leak report.
    pub fn lookup(&self, hash: &KeyHash) -> Option<(&KeyPolicy, Option<i64>)> {
        self.entry(hash).map(|e| (&e.state.policy, e.valid_until))
    }
}

impl Entry {
    pub(super) fn status(&self, method: &http::Method, now_ms: i64) -> Result<(), Refusal> {
        let policy = &self.state.policy;
        if policy.revoked || self.valid_until.is_some_and(|until| until <= now_ms) {
            return Err(Refusal::KeyRevoked);
        }
        if policy.expires_at.is_some_and(|at| at <= now_ms) {
            return Err(Refusal::KeyExpired);
        }
        if !policy.enabled {
            return Err(Refusal::KeyDisabled);
        }
        if !policy.api_access {
            return Err(Refusal::ApiAccessDisabled);
        }
        if !policy.permission.allows(method) {
            return Err(Refusal::InsufficientPermission);
        }
        Ok(())
    }
}

impl KeyPolicy {
    pub fn identity(&self) -> Identity {
        Identity { key_id: self.id, account_id: self.account_id, permission: self.permission }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::format::generate;
    use http::Method;

    fn policy(id: &str) -> KeyPolicy {
        KeyPolicy {
            id: InlineId::new(id).expect("short id"),
            account_id: InlineId::new("acc_1").expect("short id"),
            permission: Permission::Write,
            enabled: true,
            revoked: false,
            api_access: true,
            expires_at: None,
            quota: None,
            restrictions: None,
        }
    }

    #[test]
    fn decision_follows_the_documented_order() {
        let key = generate("kg_live");
        let mut p = policy("key_1");
        let set = |p: KeyPolicy| {
            KeySet::empty().apply(Changes {
                revision: 1,
                keys: vec![PolicyRow { hash: key.hash(), policy: p }],
                retired: vec![],
            })
        };
        let k = key.expose().as_bytes();
        assert!(set(p.clone()).check(k, &Method::POST, 0).is_ok());
        p.permission = Permission::Read;
        assert_eq!(set(p.clone()).check(k, &Method::POST, 0), Err(Refusal::InsufficientPermission));
        assert!(set(p.clone()).check(k, &Method::HEAD, 0).is_ok());
        p.api_access = false;
        assert_eq!(set(p.clone()).check(k, &Method::GET, 0), Err(Refusal::ApiAccessDisabled));
        p.enabled = false;
        assert_eq!(set(p.clone()).check(k, &Method::GET, 0), Err(Refusal::KeyDisabled));
        p.expires_at = Some(10);
        assert_eq!(set(p.clone()).check(k, &Method::GET, 9), Err(Refusal::KeyDisabled));
        assert_eq!(set(p.clone()).check(k, &Method::GET, 10), Err(Refusal::KeyExpired));
        p.revoked = true;
        assert_eq!(set(p.clone()).check(k, &Method::GET, 10), Err(Refusal::KeyRevoked));
        assert_eq!(set(p).check(b"kg_live_nope", &Method::GET, 0), Err(Refusal::InvalidKey));
        assert_eq!(KeySet::empty().check(k, &Method::GET, 0), Err(Refusal::InvalidKey));
    }

    #[test]
    fn retired_secret_follows_its_key_and_dies_after_grace() {
        let old = generate("kg_live");
        let new = generate("kg_live");
        let v1 = KeySet::empty().apply(Changes {
            revision: 1,
            keys: vec![PolicyRow { hash: old.hash(), policy: policy("key_1") }],
            retired: vec![],
        });
        let v2 = v1.apply(Changes {
            revision: 2,
            keys: vec![PolicyRow { hash: new.hash(), policy: policy("key_1") }],
            retired: vec![RetiredRow { hash: old.hash(), key_id: "key_1".into(), valid_until: 100 }],
        });
        assert_eq!(v2.len(), 2);
        assert!(v2.check(old.expose().as_bytes(), &Method::GET, 99).is_ok());
        assert_eq!(v2.check(old.expose().as_bytes(), &Method::GET, 100), Err(Refusal::KeyRevoked));
        // Revoking the key also stops the old secret inside its grace period.
        let mut revoked = policy("key_1");
        revoked.revoked = true;
        let v3 = v2.apply(Changes {
            revision: 3,
            keys: vec![PolicyRow { hash: new.hash(), policy: revoked }],
            retired: vec![RetiredRow { hash: old.hash(), key_id: "key_1".into(), valid_until: 100 }],
        });
        assert_eq!(v3.check(old.expose().as_bytes(), &Method::GET, 0), Err(Refusal::KeyRevoked));
        assert_eq!(v3.check(new.expose().as_bytes(), &Method::GET, 0), Err(Refusal::KeyRevoked));
        // The older snapshot is untouched.
        assert!(v1.check(old.expose().as_bytes(), &Method::GET, 0).is_ok());
        assert_eq!(v3.revision(), 3);
    }
}
