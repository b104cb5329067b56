//! The KeySet: an immutable snapshot of every key the gateway knows, indexed
//! by the blake3 hash of its secret, and the authentication decision made
//! against it.
//!
//! The request path does one parse, one hash and one lookup, takes no lock
//! and allocates nothing. The index is 256 shards (by the hash's first byte)
//! of sorted hashes, each beside its key, with a directory of where each
//! bucket of about four hashes starts — the hashes are uniformly
//! distributed, so a lookup reads two directory slots and scans one short
//! run of adjacent entries — which keeps a million keys in 41 bytes of index
//! each, with no hash-table slack (`snapshot::index`). Secrets
//! replaced by rotation sit in a side map (`retired`). Changes are applied
//! copy-on-write: `apply` builds the next snapshot off the request path,
//! rebuilding only the shards the change touches, and the reloader publishes
//! it with one `ArcSwap::store`. Beside the keys, the snapshot holds each
//! account's plan (`keys::plan`) with its pooled rate limiter, and, in an
//! index of their own by sha256, keys imported as a foreign hash and not
//! used since (`keys::foreign`).

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, OnceLock};

use super::counters::{Counts, UsageTable};
use super::decision::{Limiter, Quota, RateScope};
use super::foreign::{self, Sightings};
use super::format::{self, KeyHash};
use super::id_hash::{IdHash, IdMap};
use super::plan::{self, AccountRow, AccountState, Accounts};
use super::policy::{KeyPolicy, Permission, Refusal};
use super::retired::{Entry, Retired};
use crate::fleet::{FleetLimiter, FleetScope};
use crate::quota::{CellSlot, QuotaBook};

mod index;
use index::{merge_all, Shard};

const SHARDS: usize = 256;
const ID_LEN: usize = 24;

/// An id (`key_…`, `acc_…`: 24 bytes) kept inline, so a policy is one
/// allocation and an `Identity` can be copied out of the snapshot without
/// touching the heap.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct InlineId([u8; ID_LEN]);

impl InlineId {
    /// `None` when the id is longer than 24 bytes or holds a NUL.
    pub fn new(id: &str) -> Option<Self> {
        if id.len() > ID_LEN || id.as_bytes().contains(&0) {
            return None;
        }
        let mut bytes = [0u8; ID_LEN];
        bytes[..id.len()].copy_from_slice(id.as_bytes());
        Some(InlineId(bytes))
    }

    pub fn as_str(&self) -> &str {
        // Built from a &str in `new`, cut at a char boundary (the NUL). The
        // crate forbids `unsafe`, so the UTF-8 is checked again (about 100
        // instructions for 24 bytes); `as_bytes` skips that.
        std::str::from_utf8(self.as_bytes()).unwrap_or("")
    }

    /// The id's bytes (what `as_str` would give).
    pub fn as_bytes(&self) -> &[u8] {
        // Padded with NULs and holding none itself (`new`): an id that
        // fills all 24 bytes, as every generated one does, needs no scan.
        let len = if self.0[ID_LEN - 1] != 0 { ID_LEN } else { self.0.iter().position(|b| *b == 0).unwrap_or(ID_LEN) };
        &self.0[..len]
    }
}

/// The 24 bytes and nothing else (no length prefix: every id has 24).
impl std::hash::Hash for InlineId {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write(&self.0);
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

/// A key as the snapshot holds it: its policy, and what its first request
/// sets up (usage counters shared by every version of the key, and the
/// limiter of its rate limit, handed on to the next version of the key while
/// the limit stays the same), so idle keys cost no more than their policy.
#[derive(Debug)]
pub struct KeyState {
    pub policy: KeyPolicy,
    runtime: OnceLock<Arc<Runtime>>,
}

#[derive(Debug)]
pub(super) struct Runtime {
    pub(super) usage: Arc<Counts>,
    pub(super) limit: KeyLimit,
    /// The rate limit's fleet-wide state, with `limits.redis_url`.
    pub(super) fleet: Option<Arc<FleetScope>>,
    /// The key's own quota's cell in the quota book, once spent from.
    pub(super) quota_cell: CellSlot,
    /// The state of the key's account's plan its first request found, kept
    /// so that later ones skip the snapshot's map (`KeySet::account_of`).
    pub(super) account: OnceLock<Arc<AccountState>>,
}

/// A key's rate limit as its `Runtime` holds it: the limit and its limiter
/// side by side, so that a key without one does not also carry an unused
/// `Option<Quota>` (a used key's state is a million keys' memory).
#[derive(Debug)]
pub(super) enum KeyLimit {
    None,
    /// No limiter could be built for the limit: every request is refused.
    Broken,
    Built(Quota, Limiter),
}

impl KeyState {
    fn new(policy: KeyPolicy) -> Self {
        KeyState { policy, runtime: OnceLock::new() }
    }

    pub(super) fn runtime(
        &self,
        table: &UsageTable,
        quota: Option<Quota>,
        make: fn(Quota) -> Option<Limiter>,
        fleet: Option<&FleetLimiter>,
    ) -> &Runtime {
        self.runtime.get_or_init(|| {
            Arc::new(Runtime {
                usage: table.counts(self.policy.id, self.policy.account_id),
                limit: match quota {
                    None => KeyLimit::None,
                    Some(q) => make(q).map_or(KeyLimit::Broken, |limiter| KeyLimit::Built(q, limiter)),
                },
                fleet: fleet.zip(quota).map(|(f, q)| f.scope(RateScope::Key, self.policy.id.as_str(), q)),
                quota_cell: CellSlot::default(),
                account: OnceLock::new(),
            })
        })
    }

    /// Takes over the previous version's usage and limiter when the key's
    /// rate limit did not change, so an edit does not refill its bucket.
    fn carry_runtime(&self, previous: &KeyState) {
        if previous.policy.quota == self.policy.quota {
            if let Some(runtime) = previous.runtime.get() {
                let _ = self.runtime.set(Arc::clone(runtime));
            }
        }
    }
}

/// Who is calling, copied out of the snapshot for the rest of the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identity {
    pub key_id: InlineId,
    pub account_id: InlineId,
    pub permission: Permission,
}

/// A secret found in the snapshot.
#[derive(Clone, Copy)]
pub(super) struct Found<'a> {
    pub(super) state: &'a Arc<KeyState>,
    /// Set for a secret replaced by rotation: it works until this time
    /// (unix ms) and is refused as revoked after it.
    pub(super) valid_until: Option<i64>,
    /// Found by sha256: a key imported by hash, used for the first time.
    pub(super) foreign: bool,
}

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
    /// Accounts whose plan, or whose plan's limits, changed.
    pub accounts: Vec<AccountRow>,
    /// Keys imported as a sha256 hash and not used since: `hash` is that
    /// sha256, not a blake3.
    pub foreign: Vec<PolicyRow>,
    /// The sha256 each key imported by hash was imported as, for keys now
    /// under their blake3 (in `keys`): out of the foreign index.
    pub moved: Vec<KeyHash>,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty() && self.retired.is_empty() && self.accounts.is_empty() && self.foreign.is_empty()
    }
}

#[derive(Clone)]
pub struct KeySet {
    shards: Arc<[Shard]>,
    retired: Retired,
    usage: Arc<UsageTable>,
    accounts: Arc<Accounts>,
    /// Where rate limits are shared with the fleet (`limits.redis_url`).
    fleet: Option<Arc<FleetLimiter>>,
    /// Where quota spending is counted (`crate::quota`); `None` only in
    /// tests and tools that build a snapshot alone (quotas then go
    /// uncounted).
    quotas: Option<Arc<QuotaBook>>,
    /// Keys imported as a sha256 hash and not used since, by that sha256.
    foreign: Arc<[Shard]>,
    foreign_len: usize,
    /// First uses of those keys, shared by every version of the snapshot.
    sightings: Arc<Sightings>,
    revision: i64,
}

impl Default for KeySet {
    fn default() -> Self {
        Self::empty()
    }
}

impl fmt::Debug for KeySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeySet").field("revision", &self.revision).field("secrets", &self.len()).finish()
    }
}

impl KeySet {
    pub fn empty() -> Self {
        let shards: Vec<Shard> = (0..SHARDS).map(|_| Shard::default()).collect();
        KeySet {
            foreign: shards.clone().into(),
            shards: shards.into(),
            retired: Retired::empty(),
            usage: Arc::default(),
            accounts: Arc::default(),
            fleet: None,
            quotas: None,
            foreign_len: 0,
            sightings: Arc::default(),
            revision: 0,
        }
    }

    /// The store revision this snapshot reflects.
    pub fn revision(&self) -> i64 {
        self.revision
    }

    /// Number of secrets (current, retired and imported by hash) in the
    /// snapshot.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.len()).sum::<usize>() + self.retired.len() + self.foreign_len
    }

    /// Keys imported as a sha256 hash and not used since.
    pub fn foreign_len(&self) -> usize {
        self.foreign_len
    }

    /// First uses of keys imported by hash, for the task that moves them
    /// to blake3.
    pub fn sightings(&self) -> &Arc<Sightings> {
        &self.sightings
    }

    /// Whether the key imported as `sha256` still waits for its first use
    /// here.
    pub fn foreign_pending(&self, sha256: &KeyHash) -> bool {
        self.foreign_len > 0 && self.foreign[sha256.shard()].get(sha256).is_some()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The usage counters of every key used since the process started,
    /// shared by all snapshot versions.
    pub fn usage(&self) -> &Arc<UsageTable> {
        &self.usage
    }

    /// The fleet-wide rate limiter every later version of this snapshot
    /// shares; set once at start, before the first request.
    pub fn with_fleet(&self, fleet: Arc<FleetLimiter>) -> KeySet {
        let accounts = plan::with_fleet(&self.accounts, &fleet);
        KeySet { fleet: Some(fleet), accounts, ..self.clone() }
    }

    /// The quota book every later version of this snapshot spends through;
    /// set once at start, before the first request.
    pub fn with_quotas(&self, quotas: Arc<QuotaBook>) -> KeySet {
        KeySet { quotas: Some(quotas), ..self.clone() }
    }

    /// Where quota spending is counted.
    pub fn quotas(&self) -> Option<&Arc<QuotaBook>> {
        self.quotas.as_ref()
    }

    /// Where rate limits are shared with the fleet, if anywhere.
    pub fn fleet(&self) -> Option<&Arc<FleetLimiter>> {
        self.fleet.as_ref()
    }

    /// The next snapshot: this one with `changes` applied. Shards the change
    /// does not touch (of the index and of the retired secrets) are shared
    /// with this snapshot, not copied.
    pub fn apply(&self, changes: Changes) -> KeySet {
        let wanted: HashSet<&str> = changes.retired.iter().map(|r| r.key_id.as_str()).collect();
        let mut by_id: IdMap<Arc<KeyState>> = IdMap::with_capacity_and_hasher(wanted.len(), IdHash::default());
        let mut added: Vec<Vec<(KeyHash, Arc<KeyState>)>> = vec![Vec::new(); SHARDS];
        let mut removed: Vec<HashSet<KeyHash>> = vec![HashSet::new(); SHARDS];
        // The version of each changed key this snapshot holds: under the same
        // secret, or (rotated) under a secret now retired.
        let rotated_from: HashMap<&str, &Arc<KeyState>> = changes
            .retired
            .iter()
            .filter_map(|r| self.shards[r.hash.shard()].get(&r.hash).map(|s| (r.key_id.as_str(), s)))
            .filter(|(id, s)| s.policy.id.as_str() == *id)
            .collect();
        // Keys now under their blake3 whose version here was imported by
        // hash: it sits in the foreign index.
        let moved_from: HashMap<InlineId, &Arc<KeyState>> = if self.foreign_len == 0 {
            HashMap::new()
        } else {
            changes.moved.iter().filter_map(|h| self.foreign[h.shard()].get(h)).map(|s| (s.policy.id, s)).collect()
        };
        // Rotated keys whose version here was not found that way: its secret
        // was pruned from the store since, and must be looked for by id.
        let mut lost: HashMap<InlineId, KeyHash> = HashMap::new();
        let mut changed = Vec::with_capacity(changes.keys.len());
        for row in changes.keys {
            let state = Arc::new(KeyState::new(row.policy));
            let id = state.policy.id;
            let previous = self.shards[row.hash.shard()]
                .get(&row.hash)
                .filter(|p| p.policy.id == id)
                .or_else(|| rotated_from.get(id.as_str()).copied())
                .or_else(|| moved_from.get(&id).copied());
            match previous {
                Some(previous) => state.carry_runtime(previous),
                None if wanted.contains(id.as_str()) && !self.is_empty() => {
                    lost.insert(id, row.hash);
                }
                None => {}
            }
            if wanted.contains(id.as_str()) {
                by_id.insert(id, Arc::clone(&state));
            }
            changed.push(id);
            added[row.hash.shard()].push((row.hash, state));
        }
        if !lost.is_empty() {
            for (hash, state) in self.shards.iter().flat_map(|s| s.iter()) {
                if lost.get(&state.policy.id).is_some_and(|current| current != hash) {
                    removed[hash.shard()].insert(*hash);
                }
            }
        }
        // A rotated key's old secret leaves the index for the retired map.
        let mut entries = Vec::with_capacity(changes.retired.len());
        for row in changes.retired {
            let Some(state) = InlineId::new(&row.key_id).and_then(|id| by_id.get(&id)) else { continue };
            removed[row.hash.shard()].insert(row.hash);
            entries.push(Entry { hash: row.hash, state: Arc::clone(state), valid_until: row.valid_until });
        }
        let shards = merge_all(&self.shards, added, removed);
        let (foreign, foreign_len) = self.apply_foreign(changes.foreign, &changes.moved);
        KeySet {
            shards: shards.into(),
            retired: self.retired.replace(&changed, entries),
            usage: Arc::clone(&self.usage),
            accounts: plan::apply(&self.accounts, changes.accounts, self.fleet.as_deref()),
            fleet: self.fleet.clone(),
            quotas: self.quotas.clone(),
            foreign,
            foreign_len,
            sightings: Arc::clone(&self.sightings),
            revision: changes.revision.max(self.revision),
        }
    }

    /// The foreign index with `rows` put in and the keys that `moved` to
    /// blake3 taken out; shards nothing touches are shared.
    fn apply_foreign(&self, rows: Vec<PolicyRow>, moved: &[KeyHash]) -> (Arc<[Shard]>, usize) {
        let mut added: Vec<Vec<(KeyHash, Arc<KeyState>)>> = vec![Vec::new(); SHARDS];
        let mut removed: Vec<HashSet<KeyHash>> = vec![HashSet::new(); SHARDS];
        let mut touched = false;
        if self.foreign_len > 0 {
            for hash in moved.iter().filter(|h| self.foreign[h.shard()].get(h).is_some()) {
                removed[hash.shard()].insert(*hash);
                touched = true;
            }
        }
        for row in rows {
            let state = Arc::new(KeyState::new(row.policy));
            if let Some(previous) =
                self.foreign[row.hash.shard()].get(&row.hash).filter(|p| p.policy.id == state.policy.id)
            {
                state.carry_runtime(previous);
            }
            added[row.hash.shard()].push((row.hash, state));
            touched = true;
        }
        if !touched {
            return (Arc::clone(&self.foreign), self.foreign_len);
        }
        let shards = merge_all(&self.foreign, added, removed);
        let len = shards.iter().map(|s| s.len()).sum();
        (shards.into(), len)
    }

    /// An account's plan and pooled limiter; `None` when it has no plan.
    pub fn account(&self, id: &InlineId) -> Option<&Arc<AccountState>> {
        if self.accounts.is_empty() {
            return None;
        }
        self.accounts.get(id)
    }

    /// `account` for a key's request: the state its runtime kept while no
    /// later snapshot replaced it, else the map's (then kept, the first
    /// time). A state kept once stays kept: after its plan changes, the
    /// key's requests look the account up in the map again.
    pub(super) fn account_of<'a>(&'a self, policy: &KeyPolicy, runtime: &'a Runtime) -> Option<&'a Arc<AccountState>> {
        if let Some(kept) = runtime.account.get().filter(|a| a.current_for(&policy.account_id)) {
            return Some(kept);
        }
        let found = self.account(&policy.account_id)?;
        if runtime.account.get().is_none() {
            let _ = runtime.account.set(Arc::clone(found));
        }
        Some(found)
    }

    /// Every account on a plan.
    pub fn accounts(&self) -> impl Iterator<Item = (&InlineId, &Arc<AccountState>)> {
        self.accounts.iter()
    }

    pub(super) fn find_hash(&self, hash: &KeyHash) -> Option<Found<'_>> {
        if let Some(state) = self.shards[hash.shard()].get(hash) {
            return Some(Found { state, valid_until: None, foreign: false });
        }
        self.retired.get(hash).map(|(state, until)| Found { state, valid_until: Some(*until), foreign: false })
    }

    #[cfg(test)]
    pub(super) fn retired(&self) -> &Retired {
        &self.retired
    }

    /// Every key once, for the metrics collector and tests.
    pub fn keys(&self) -> impl Iterator<Item = &Arc<KeyState>> {
        self.shards.iter().chain(self.foreign.iter()).flat_map(|s| s.states())
    }

    /// The key decision without side effects, in the order of docs/proxy.md#refusals:
    /// shape and checksum, lookup, revoked (or an old secret past its grace),
    /// expired, disabled, account access, permission. `decide` adds the
    /// per-key restrictions, the rate limit and the usage count.
    pub fn check(&self, key: &[u8], method: &http::Method, now_ms: i64) -> Result<Identity, Refusal> {
        let found = self.find(key)?;
        found.status(method, now_ms)?;
        Ok(found.state.policy.identity())
    }

    /// Shape and checksum (`format::classify`: a key claiming to be
    /// keygate's must be one, or it is refused here, without a lookup), then
    /// the blake3 lookup, then — only when it misses and keys imported by
    /// hash exist — the sha256 lookup.
    pub(super) fn find(&self, key: &[u8]) -> Result<Found<'_>, Refusal> {
        format::classify(key).map_err(|_| Refusal::InvalidKey)?;
        if let Some(found) = self.find_hash(&KeyHash::of(key)) {
            return Ok(found);
        }
        if self.foreign_len == 0 {
            return Err(Refusal::InvalidKey);
        }
        self.sightings.looked_up();
        let sha = foreign::sha256(key);
        let state = self.foreign[sha.shard()].get(&sha).ok_or(Refusal::InvalidKey)?;
        Ok(Found { state, valid_until: None, foreign: true })
    }

    /// Notes the first use of a key imported by hash, so that it moves to
    /// blake3 (`keys::foreign`).
    pub(super) fn sighted(&self, found: &Found<'_>, key: &[u8]) {
        if found.foreign {
            self.sightings.note(found.state.policy.id, foreign::sha256(key), key);
        }
    }

    /// The policy of the key `key` is a secret of, found as the decision
    /// finds it; for what the proxy tells the upstream beyond the
    /// `Identity` (the signed identity token).
    pub fn policy_of(&self, key: &[u8]) -> Option<&KeyPolicy> {
        self.find(key).ok().map(|found| &found.state.policy)
    }

    /// The policy a hash maps to and, for a retired secret, until when it
    /// works. For the admin API's leak report.
    pub fn lookup(&self, hash: &KeyHash) -> Option<(&KeyPolicy, Option<i64>)> {
        self.find_hash(hash).map(|f| (&f.state.policy, f.valid_until))
    }

    /// The policy a secret maps to, found as the proxy finds it (keys
    /// imported by hash included), and for a retired secret until when it
    /// works. For the admin API's verify.
    pub fn lookup_secret(&self, key: &[u8]) -> Option<(&KeyPolicy, Option<i64>)> {
        self.find(key).ok().map(|f| (&f.state.policy, f.valid_until))
    }
}

impl Found<'_> {
    pub(super) fn status(&self, method: &http::Method, now_ms: i64) -> Result<(), Refusal> {
        let policy = &self.state.policy;
        if policy.revoked || self.valid_until.is_some_and(|until| until <= now_ms) {
            return Err(Refusal::KeyRevoked);
        }
        if policy.expires_at <= now_ms {
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

#[cfg(test)]
pub(super) mod tests;
