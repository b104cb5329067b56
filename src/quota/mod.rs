//! The quota book: what this replica knows of every quota in force (a key's
//! own, an account's pooled one) and the spending decision the request path
//! makes against it, without waiting on the store.
//!
//! Each owner has a cell holding the ledger's view as of the last sync
//! (`used`, `adjust`, the units this replica holds ahead: `granted`) and
//! what was spent here since (`spent`, and `in_flight` while a sync carries
//! it to the store). A request costing `c` passes when the fleet's
//! remaining as last known — `limit + adjust - used - in_flight - spent` —
//! is at least `c`: never refused merely because the local reservation ran
//! dry. Units spent beyond the reservation are spent on credit: at most
//! `limits.quota_block` of them before the store confirms, and never units
//! another replica holds (then the request is refused with `Retry-After: 1`
//! and the owner synced at once). Since reservations are counted in the
//! store before they are spent, and each replica spends at most
//! `quota_block` units that no reservation covers, a fleet overshoots a
//! quota by at most replicas × `quota_block`, however large the
//! reservations; a single replica is exact.
//!
//! When the store cannot be reached the book counts alone (no credit cap:
//! the last known remaining is the only bound) and catches up when it is
//! back. On SQLite (one node) it never waits for the store (`set_sole`):
//! there is no other replica whose units it could spend. The background
//! work (flush, reserve, refresh) is `sync`'s; this file does no I/O. Each
//! cell is a mutex held for a few arithmetic operations; keys without a
//! quota never touch the book.

mod sync;

pub use sync::Round;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use crate::keys::{IdMap, InlineId, Period, QuotaSpec};
use crate::store::quota_remaining;

/// Which quota a `QuotaInfo` is of: the name `RateLimit-Policy` gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuotaScope {
    /// The key's own quota.
    Key,
    /// The quota of the key's account's plan, pooled over its keys.
    Account,
}

impl QuotaScope {
    pub fn as_str(self) -> &'static str {
        match self {
            QuotaScope::Key => "quota",
            QuotaScope::Account => "account_quota",
        }
    }
}

/// A quota's state after a request, for the headers and `verify`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaInfo {
    pub scope: QuotaScope,
    pub limit: u64,
    /// The period's length (`w`); `None` for `total`.
    pub window_seconds: Option<u64>,
    pub remaining: u64,
    /// Seconds until the period ends (`t`); `None` for `total`.
    pub reset_seconds: Option<u64>,
    /// Unix ms the period ends; `None` for `total`.
    pub resets_at_ms: Option<i64>,
    /// Set when refused: when to try again (`None`: not before the period
    /// ends, which for `total` is never).
    pub retry_after_seconds: Option<u64>,
}

/// The book: one cell per owner with a quota.
#[derive(Debug)]
pub struct QuotaBook {
    /// Which book a `CellSlot` holds a cell of.
    id: u64,
    cells: RwLock<IdMap<Arc<Cell>>>,
    /// Owners spent from since their last sync, oldest first: each tick
    /// flushes the front batch, so a round costs the same however many
    /// owners are in use. An owner is in it once (`CellState::queued`).
    dirty: Mutex<VecDeque<InlineId>>,
    /// Owners a request found low or waiting: what a woken round syncs,
    /// without looking through every owner in `dirty`.
    urgent: Mutex<Vec<InlineId>>,
    /// `limits.quota_block`.
    block: AtomicU64,
    /// Whether the last sync with the store succeeded.
    shared: AtomicBool,
    /// This replica is the ledger's only spender (SQLite: one node), so no
    /// unit it spends can be spent elsewhere: it never waits for the store.
    sole: AtomicBool,
    wake: tokio::sync::Notify,
    /// One sync at a time (see `sync`).
    sync_lock: tokio::sync::Mutex<()>,
    /// This replica's name in the store's leases.
    replica_id: String,
}

#[derive(Debug)]
pub(crate) struct Cell {
    state: Mutex<CellState>,
}

impl Cell {
    fn lock(&self) -> std::sync::MutexGuard<'_, CellState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Where a key's or an account's cell is kept after its first spending,
/// so later requests reach it without a lookup in the book's map (a hash
/// and a lock per quota). Remembers which book it came from (`QuotaBook`'s
/// `id`): a snapshot handed to another book looks its cells up again.
#[derive(Debug, Default)]
pub struct CellSlot(OnceLock<(u64, Arc<Cell>)>);

/// Each book's `id`, never reused in a process.
static NEXT_BOOK: AtomicU64 = AtomicU64::new(1);

impl CellSlot {
    fn get<'a>(&'a self, book: &QuotaBook, owner: InlineId) -> CellRef<'a> {
        let mine = book.id;
        if let Some((from, cell)) = self.0.get() {
            if *from == mine {
                return CellRef::Slot(cell);
            }
            return CellRef::Owned(book.cell(owner));
        }
        let cell = book.cell(owner);
        let _ = self.0.set((mine, Arc::clone(&cell)));
        CellRef::Owned(cell)
    }
}

/// A cell for one request: borrowed from a slot, or looked up in the book.
enum CellRef<'a> {
    Slot(&'a Cell),
    Owned(Arc<Cell>),
}

impl std::ops::Deref for CellRef<'_> {
    type Target = Cell;
    fn deref(&self) -> &Cell {
        match self {
            CellRef::Slot(cell) => cell,
            CellRef::Owned(cell) => cell,
        }
    }
}

/// A quota a request spends from: its owner (a key, an account), the quota,
/// and where the owner keeps its cell (`None`: looked up in the book).
#[derive(Debug, Clone, Copy)]
pub struct Charge<'a> {
    pub owner: InlineId,
    pub spec: QuotaSpec,
    pub slot: Option<&'a CellSlot>,
}

impl Charge<'_> {
    fn of((owner, spec): (InlineId, QuotaSpec)) -> Charge<'static> {
        Charge { owner, spec, slot: None }
    }
}

#[derive(Debug, Clone, Default)]
struct CellState {
    spec: Option<QuotaSpec>,
    period_start: i64,
    /// The end of the period starting at `period_start` (`i64::MAX` for
    /// `total`), and which period it was worked out for: the calendar is
    /// consulted once a period, not on every request.
    period_end: i64,
    rolled: Option<Period>,
    used: u64,
    adjust: i64,
    granted: u64,
    /// Units the other replicas held ahead at the last sync: not this
    /// replica's to spend, even on credit.
    others: u64,
    spent: u64,
    in_flight: u64,
    /// Spent in an earlier period, not flushed yet: (period start, units).
    carry: Option<(i64, u64)>,
    /// Unix ms of the last spending (or of a request that waited for a
    /// reservation), so an idle reservation goes back.
    last_spent_ms: i64,
    /// Spent from since the last sync: to be flushed.
    listed: bool,
    /// Unix ms it was listed: the first spending (or wait) since the last
    /// sync, which the sync sizes the next reservation by.
    listed_ms: i64,
    /// In the book's `dirty` queue (possibly synced meanwhile by a woken
    /// round; the tick then passes over it).
    queued: bool,
    /// A request was told to wait for the store: sync at once.
    waiting: bool,
    /// In the book's `urgent` list.
    urgent: bool,
    /// Unix ms of the last sync the store answered.
    synced_ms: i64,
    /// Its last reservation was sized above one block (it spends more
    /// than a block in two seconds).
    busy: bool,
}

impl CellState {
    /// Moves to the period `now_ms` falls in; what was spent in the old one
    /// waits in `carry` for the next sync.
    fn roll(&mut self, spec: QuotaSpec, now_ms: i64) {
        self.spec = Some(spec);
        if self.rolled == Some(spec.period) && (self.period_start..self.period_end).contains(&now_ms) {
            return;
        }
        let window = spec.period.window(now_ms);
        let (start, end) = (window.start_ms, window.end_ms.unwrap_or(i64::MAX));
        (self.rolled, self.period_end) = (Some(spec.period), end);
        if start == self.period_start {
            return;
        }
        if self.spent > 0 {
            let old = self.carry.filter(|(p, _)| *p == self.period_start).map_or(0, |(_, n)| n);
            self.carry = Some((self.period_start, old + self.spent));
        }
        *self = CellState {
            spec: Some(spec),
            period_start: start,
            period_end: end,
            rolled: Some(spec.period),
            carry: self.carry,
            in_flight: self.in_flight,
            last_spent_ms: self.last_spent_ms,
            listed: self.listed,
            listed_ms: self.listed_ms,
            queued: self.queued,
            waiting: self.waiting,
            urgent: self.urgent,
            synced_ms: self.synced_ms,
            busy: self.busy,
            ..CellState::default()
        };
    }

    /// The fleet's remaining as last known, less what this replica spent
    /// since.
    fn remaining(&self, spec: QuotaSpec) -> u64 {
        quota_remaining(spec.limit, self.used, self.adjust).saturating_sub(self.in_flight + self.spent)
    }

    /// Half the reservation is spent (or, with none or a small one, half a
    /// block): time to ask for more. An owner spending a few units a
    /// minute never gets here; its spending goes with the next flush. A
    /// busy owner that gave its reservation back while idle asks at its
    /// first spending: resuming at thousands a second, half a block of
    /// credit would be gone before the store answered.
    fn low(&self, block: u64) -> bool {
        let spent = self.in_flight + self.spent;
        2 * spent > self.granted.max(block) || (self.busy && self.granted == 0 && spent > 0)
    }

    /// Whether spending `cost` more must wait for the store: it would go
    /// beyond this replica's reservation by more than `block`, or into units
    /// another replica holds. Either could be spent twice across the fleet.
    fn must_wait(&self, spec: QuotaSpec, cost: u64, block: u64) -> bool {
        self.credit_after(cost) > block || self.remaining(spec).saturating_sub(self.others) < cost
    }

    /// Units spent beyond the reservation if `cost` more were spent.
    fn credit_after(&self, cost: u64) -> u64 {
        (self.in_flight + self.spent + cost).saturating_sub(self.granted)
    }
}

/// Why a spend was refused: the quota is spent, or (shared mode) this
/// replica has spent its credit and waits for the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Spent,
    Wait,
}

impl QuotaBook {
    pub fn new(block: u64) -> Arc<QuotaBook> {
        Arc::new(QuotaBook {
            id: NEXT_BOOK.fetch_add(1, Ordering::Relaxed),
            cells: RwLock::default(),
            dirty: Mutex::default(),
            urgent: Mutex::default(),
            block: AtomicU64::new(block.max(1)),
            shared: AtomicBool::new(true),
            sole: AtomicBool::new(false),
            wake: tokio::sync::Notify::new(),
            sync_lock: tokio::sync::Mutex::const_new(()),
            replica_id: crate::keys::format::new_id("rep"),
        })
    }

    /// `limits.quota_block`, changed by a config reload.
    pub fn set_block(&self, block: u64) {
        self.block.store(block.max(1), Ordering::Relaxed);
    }

    pub fn block(&self) -> u64 {
        self.block.load(Ordering::Relaxed)
    }

    /// Marks this replica as the ledger's only spender (a SQLite store):
    /// spending is flushed to the store as before, but a request never waits
    /// for a reservation. The count is exact either way; a sole spender's
    /// does not depend on how fast the store answers, which on a saturated
    /// core with SQLite's one write lock it may not.
    pub fn set_sole(&self, sole: bool) {
        self.sole.store(sole, Ordering::Relaxed);
    }

    /// Whether spending is shared with the fleet through the store (`false`:
    /// the store is out of reach and this replica counts alone).
    pub fn shared(&self) -> bool {
        self.shared.load(Ordering::Relaxed)
    }

    fn cell(&self, owner: InlineId) -> Arc<Cell> {
        if let Some(cell) = self.cells.read().unwrap_or_else(|e| e.into_inner()).get(&owner) {
            return Arc::clone(cell);
        }
        let mut cells = self.cells.write().unwrap_or_else(|e| e.into_inner());
        Arc::clone(cells.entry(owner).or_insert_with(|| Arc::new(Cell { state: Mutex::default() })))
    }

    /// Spends `cost` units from every quota given (the key's own, the
    /// account's pooled one) or from none: a request refused by one takes
    /// nothing from the other. `Ok`: the tightest quota after spending
    /// (`None` when none was given); `Err`: the one that refused.
    pub fn spend(
        &self,
        key: Option<(InlineId, QuotaSpec)>,
        account: Option<(InlineId, QuotaSpec)>,
        cost: u64,
        now_ms: i64,
    ) -> Result<Option<QuotaInfo>, QuotaInfo> {
        self.decide([key.map(Charge::of), account.map(Charge::of)], cost, now_ms, true)
    }

    /// `spend`, reaching each owner's cell through its slot: the request
    /// path's way.
    pub fn charge(
        &self,
        key: Option<Charge<'_>>,
        account: Option<Charge<'_>>,
        cost: u64,
        now_ms: i64,
    ) -> Result<Option<QuotaInfo>, QuotaInfo> {
        self.decide([key, account], cost, now_ms, true)
    }

    /// What `spend` would answer, spending nothing (a dry run).
    pub fn peek(
        &self,
        key: Option<(InlineId, QuotaSpec)>,
        account: Option<(InlineId, QuotaSpec)>,
        cost: u64,
        now_ms: i64,
    ) -> Result<Option<QuotaInfo>, QuotaInfo> {
        self.decide([key.map(Charge::of), account.map(Charge::of)], cost, now_ms, false)
    }

    fn decide(
        &self,
        [key, account]: [Option<Charge<'_>>; 2],
        cost: u64,
        now_ms: i64,
        spend: bool,
    ) -> Result<Option<QuotaInfo>, QuotaInfo> {
        if key.is_none() && account.is_none() {
            return Ok(None);
        }
        let cost = cost.max(1);
        // Whether units beyond this replica's reservation could be another's.
        let shared = self.shared() && !self.sole.load(Ordering::Relaxed);
        let block = self.block();
        // At most two quotas apply, each written out (no arrays, no
        // allocation): this runs on every request of a key with a quota.
        let key_cell = key.map(|c| self.cell_of(&c));
        let account_cell = account.map(|c| self.cell_of(&c));
        // Always the key's cell before the account's: no two requests lock
        // in opposite orders.
        let mut key_state = key_cell.as_deref().map(Cell::lock);
        let mut account_state = account_cell.as_deref().map(Cell::lock);
        let refused = match (key, key_state.as_deref_mut()) {
            (Some(c), Some(state)) => self.refusal(QuotaScope::Key, &c, state, cost, now_ms, shared, block, spend),
            _ => None,
        }
        .or_else(|| match (account, account_state.as_deref_mut()) {
            (Some(c), Some(state)) => self.refusal(QuotaScope::Account, &c, state, cost, now_ms, shared, block, spend),
            _ => None,
        });
        if let Some((refusal, wake)) = refused {
            drop((key_state, account_state));
            if wake {
                self.wake.notify_one();
            }
            return Err(refusal);
        }
        let mut low = false;
        if spend {
            if let (Some(c), Some(state)) = (key, key_state.as_deref_mut()) {
                low |= self.take(state, c.owner, cost, now_ms, block);
            }
            if let (Some(c), Some(state)) = (account, account_state.as_deref_mut()) {
                low |= self.take(state, c.owner, cost, now_ms, block);
            }
        }
        // The tightest quota after spending (the key's on a tie): its info
        // alone is worked out.
        let own = key.zip(key_state.as_deref()).map(|(c, s)| (QuotaScope::Key, c.spec, s));
        let pooled = account.zip(account_state.as_deref()).map(|(c, s)| (QuotaScope::Account, c.spec, s));
        let tightest = match (own, pooled) {
            (Some(k), Some(a)) if a.2.remaining(a.1) < k.2.remaining(k.1) => Some(a),
            (Some(k), _) => Some(k),
            (None, a) => a,
        };
        let tightest = tightest.map(|(scope, spec, state)| info(scope, spec, state, now_ms, None));
        drop((key_state, account_state));
        if low {
            // The reservation runs low: ask for more now, not at the next tick.
            self.wake.notify_one();
        }
        Ok(tightest)
    }

    /// The cell a charge spends from: through its slot, or from the map.
    fn cell_of<'a>(&self, charge: &Charge<'a>) -> CellRef<'a> {
        match charge.slot {
            Some(slot) => slot.get(self, charge.owner),
            None => CellRef::Owned(self.cell(charge.owner)),
        }
    }

    /// Whether `state`'s quota refuses `cost` now: the refusal's info, and
    /// whether the syncer must be woken for it (a request told to wait
    /// marks the owner for a reservation).
    #[allow(clippy::too_many_arguments)]
    fn refusal(
        &self,
        scope: QuotaScope,
        charge: &Charge<'_>,
        state: &mut CellState,
        cost: u64,
        now_ms: i64,
        shared: bool,
        block: u64,
        spend: bool,
    ) -> Option<(QuotaInfo, bool)> {
        state.roll(charge.spec, now_ms);
        let verdict = if state.remaining(charge.spec) < cost {
            Verdict::Spent
        } else if shared && state.must_wait(charge.spec, cost, block) {
            Verdict::Wait
        } else {
            return None;
        };
        let refusal = info(scope, charge.spec, state, now_ms, Some(verdict));
        let mut wake = false;
        if verdict == Verdict::Wait && spend {
            // The next sync asks a reservation for this owner.
            state.last_spent_ms = now_ms;
            state.waiting = true;
            self.list(state, charge.owner, now_ms);
            wake = self.mark_urgent(state, charge.owner);
        }
        Some((refusal, wake))
    }

    /// Spends `cost` from a quota every check passed; `true` when the
    /// syncer must be woken (the owner just went low).
    fn take(&self, state: &mut CellState, owner: InlineId, cost: u64, now_ms: i64, block: u64) -> bool {
        state.spent += cost;
        state.last_spent_ms = now_ms;
        self.list(state, owner, now_ms);
        // Low, or carrying an earlier period's spending: synced by the next
        // round, not in the queue's turn.
        (state.low(block) || state.carry.is_some()) && self.mark_urgent(state, owner)
    }

    /// Marks an owner as having spending to flush, queued once: the
    /// queue's lock is taken once per sync, not on every request.
    fn list(&self, state: &mut CellState, owner: InlineId, now_ms: i64) {
        if state.listed {
            return;
        }
        state.listed = true;
        state.listed_ms = now_ms;
        if !state.queued {
            state.queued = true;
            self.dirty.lock().unwrap_or_else(|p| p.into_inner()).push_back(owner);
        }
    }

    /// Puts an owner in the next woken round, once per sync; `true` when
    /// it was not there yet (then the syncer must be woken).
    fn mark_urgent(&self, state: &mut CellState, owner: InlineId) -> bool {
        if state.urgent {
            return false;
        }
        state.urgent = true;
        self.urgent.lock().unwrap_or_else(|p| p.into_inner()).push(owner);
        true
    }

    /// What this replica knows of an owner's quota: (used, remaining) with
    /// its own unflushed spending; `None` for an owner never seen.
    pub fn usage(&self, owner: &InlineId, now_ms: i64) -> Option<(u64, u64)> {
        let cell = Arc::clone(self.cells.read().unwrap_or_else(|e| e.into_inner()).get(owner)?);
        let mut state = cell.lock();
        let spec = state.spec?;
        state.roll(spec, now_ms);
        Some((state.used + state.in_flight + state.spent, state.remaining(spec)))
    }

    /// Every owner the book counts, with (used, remaining), for metrics.
    pub fn all_usage(&self, now_ms: i64) -> Vec<(InlineId, u64, u64)> {
        let owners: Vec<InlineId> = self.cells.read().unwrap_or_else(|e| e.into_inner()).keys().copied().collect();
        owners.into_iter().filter_map(|o| self.usage(&o, now_ms).map(|(u, r)| (o, u, r))).collect()
    }
}

fn info(scope: QuotaScope, spec: QuotaSpec, state: &CellState, now_ms: i64, refused: Option<Verdict>) -> QuotaInfo {
    // The period `roll` worked out for this request's moment.
    let end = (state.period_end != i64::MAX).then_some(state.period_end);
    let reset_seconds = end.map(|end| ((end - now_ms).max(1) as u64).div_ceil(1000));
    let retry_after_seconds = match refused {
        Some(Verdict::Wait) => Some(1),
        Some(_) => reset_seconds,
        None => None,
    };
    QuotaInfo {
        scope,
        limit: spec.limit,
        window_seconds: end.map(|end| ((end - state.period_start) / 1000) as u64),
        remaining: if refused == Some(Verdict::Spent) { 0 } else { state.remaining(spec) },
        reset_seconds,
        resets_at_ms: end,
        retry_after_seconds,
    }
}

#[cfg(test)]
mod tests;
