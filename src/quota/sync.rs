//! The quota book's traffic with the store, off the request path: flushing
//! what was spent, reserving units ahead (`limits.quota_block` at most),
//! giving back idle reservations, and reading the ledger again when the
//! reloader says a quota changed (a new key, a plan edit, an adjustment).
//!
//! One sync at a time (the book's `sync_lock`): a sync moves a cell's `spent` to
//! `in_flight` and its answer replaces the cell's ledger view, which two
//! overlapping syncs would get wrong.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use super::{CellState, QuotaBook};
use crate::clock::now_ms;
use crate::keys::{InlineId, QuotaSpec};
use crate::shutdown::Shutdown;
use crate::store::{QuotaSync, Store, StoreError, LEASE_TTL_MS};

/// How often the syncer looks for spending to flush when nobody wakes it.
const TICK: Duration = Duration::from_millis(200);
/// A reservation is renewed this often, well inside the lease's lifetime.
const RENEW_MS: i64 = LEASE_TTL_MS / 3;
/// A cell with no spending for this long gives its reservation back.
const IDLE_MS: i64 = 2_000;
/// Owners per sync transaction, and owners flushed a round beyond those
/// that must be.
const BATCH: usize = 256;
/// A busy owner reserves up to this many `quota_block`s (two seconds of its
/// spending); only credit, never more than one block, is beyond the bound.
const MAX_BLOCKS: u64 = 64;

/// Rounds a wake starts are at least this far apart: the owners that run
/// low meanwhile go together in the next one. Short: an owner woken while
/// the syncer waits spends on its credit meanwhile.
const WAKE_GAP: Duration = Duration::from_millis(5);
/// The shortest spending a reservation is sized by: a few units spent in
/// the first milliseconds do not make a rate.
const MIN_RATE_WINDOW_MS: u64 = 20;

/// What a round does besides syncing the owners that must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Round {
    /// A request found an owner low or waiting: sync the owners that must
    /// be, flush nothing else (that is the tick's, at its own pace).
    Wake,
    /// Every `TICK`: also flush one batch of what was spent.
    Tick,
    /// Every `RENEW_MS`: also give idle reservations back and keep the
    /// leases alive.
    Renew,
    /// At shutdown: flush everything.
    Last,
}

/// A sync taken from a cell: what it sends, and where its answer goes.
struct Taken {
    owner: InlineId,
    period_start: i64,
    /// Index of the current period's entry in the batch (a carry of an
    /// earlier period comes first and its answer is not applied).
    answer: usize,
    /// The earlier period's spending sent with it, put back if the sync fails.
    carry: Option<(i64, u64)>,
}

impl QuotaBook {
    /// The syncer: a round every tick, or at once when a request finds its
    /// reservation low; every reservation goes back at shutdown. `bulk`
    /// takes the flushes of ordinary spending (`Store::for_background_writes`:
    /// on SQLite a connection whose thread yields the core to a request at
    /// once); `store` the syncs a reservation waits on.
    pub fn spawn(self: &Arc<Self>, store: Store, bulk: Store, shutdown: Shutdown) -> tokio::task::JoinHandle<()> {
        let this = Arc::clone(self);
        tokio::spawn(async move {
            let mut last_renew = now_ms();
            // Ticks keep their pace however often requests wake the syncer,
            // so the flushing of ordinary spending neither starves nor runs
            // back to back.
            let mut next_tick = tokio::time::Instant::now() + TICK;
            loop {
                let woken = tokio::select! {
                    _ = tokio::time::sleep_until(next_tick) => false,
                    _ = this.wake.notified() => true,
                    _ = shutdown.wait() => break,
                };
                if !woken {
                    next_tick = tokio::time::Instant::now() + TICK;
                }
                let now = now_ms();
                let renew = !woken && now - last_renew >= RENEW_MS;
                if renew {
                    last_renew = now;
                }
                let kind = match (woken, renew) {
                    (true, _) => Round::Wake,
                    (false, true) => Round::Renew,
                    (false, false) => Round::Tick,
                };
                this.round(&store, &bulk, kind).await;
                if woken {
                    tokio::select! {
                        _ = tokio::time::sleep(WAKE_GAP) => {}
                        _ = shutdown.wait() => break,
                    }
                }
            }
            // Flush what is left, then give back every reservation.
            this.round(&store, &bulk, Round::Last).await;
            if let Err(e) = store.release_quota_leases(&this.replica_id).await {
                tracing::warn!(error = %e, "could not give back quota reservations; they lapse on their own");
            }
        })
    }

    /// One round. The owners requests marked urgent (a reservation running
    /// low, a request told to wait, an earlier period's spending to carry)
    /// are synced first, in their own transactions, and again before each
    /// batch of the rest: a busy owner's new reservation never waits behind
    /// bulk work. A tick also flushes the oldest batch of the other
    /// spending, so a round's cost does not grow with the number of owners
    /// in use. `Renew` also gives idle reservations back and keeps this
    /// replica's leases alive (a sole spender has none); `Last` flushes
    /// everything. The bulk goes through `bulk`, the urgent through `store`.
    pub async fn round(&self, store: &Store, bulk_store: &Store, kind: Round) {
        let now = now_ms();
        self.sync_urgent(store).await;
        if kind == Round::Wake {
            return;
        }
        let due: Vec<InlineId> = {
            let mut queue = self.dirty.lock().unwrap_or_else(|p| p.into_inner());
            let n = if kind == Round::Last { queue.len() } else { queue.len().min(BATCH) };
            queue.drain(..n).collect()
        };
        let mut bulk = Vec::new();
        {
            let cells = self.cells.read().unwrap_or_else(|e| e.into_inner());
            for owner in due {
                let Some(cell) = cells.get(&owner) else { continue };
                let mut state = cell.lock();
                state.queued = false;
                // Not listed: a woken round synced it since, and nothing
                // was spent after.
                if state.listed {
                    bulk.push(owner);
                }
            }
            if matches!(kind, Round::Renew | Round::Last) {
                for (owner, cell) in cells.iter() {
                    let state = cell.lock();
                    if !state.listed && state.granted > 0 && now - state.last_spent_ms >= IDLE_MS {
                        bulk.push(*owner);
                    }
                }
            }
        }
        bulk.sort();
        bulk.dedup();
        for chunk in bulk.chunks(BATCH) {
            self.sync_urgent(store).await;
            self.sync(bulk_store, chunk).await;
        }
        if kind == Round::Renew && !self.sole.load(Ordering::Relaxed) {
            match store.renew_quota_leases(&self.replica_id).await {
                Ok(()) => self.reachable(),
                Err(e) => self.unreachable(&e),
            }
        }
    }

    /// Syncs the owners requests marked urgent since the last look that
    /// still need it.
    async fn sync_urgent(&self, store: &Store) {
        let urgent = std::mem::take(&mut *self.urgent.lock().unwrap_or_else(|p| p.into_inner()));
        if urgent.is_empty() {
            return;
        }
        let block = self.block();
        let mut owners = Vec::with_capacity(urgent.len());
        {
            let cells = self.cells.read().unwrap_or_else(|e| e.into_inner());
            for owner in urgent {
                let Some(cell) = cells.get(&owner) else { continue };
                let mut state = cell.lock();
                state.urgent = false;
                if state.carry.is_some() || state.waiting || state.low(block) {
                    owners.push(owner);
                }
            }
        }
        owners.sort();
        owners.dedup();
        for chunk in owners.chunks(BATCH) {
            self.sync(store, chunk).await;
        }
    }

    fn reachable(&self) {
        if !self.shared.swap(true, Ordering::Relaxed) {
            tracing::info!("quota store reachable again: spending is shared with the fleet");
        }
    }

    fn unreachable(&self, e: &StoreError) {
        if self.shared.swap(false, Ordering::Relaxed) {
            tracing::warn!(error = %e, "quota store unreachable: counting quotas on this replica alone");
        }
    }

    /// Flushes and re-reserves `owners` now (an admin write waits on it).
    pub async fn sync(&self, store: &Store, owners: &[InlineId]) {
        let _one = self.sync_lock.lock().await;
        let now = now_ms();
        let block = self.block();
        let mut batch = Vec::new();
        let mut taken = Vec::new();
        for owner in owners {
            let Some(cell) = self.cells.read().unwrap_or_else(|e| e.into_inner()).get(owner).cloned() else {
                continue;
            };
            let mut state = cell.lock();
            let Some(spec) = state.spec else { continue };
            state.roll(spec, now);
            state.listed = false;
            state.waiting = false;
            state.urgent = false;
            let carry = state.carry.take();
            if let Some((period_start, spent)) = carry {
                batch.push(QuotaSync { owner_id: owner.to_string(), spec, period_start, spent, want: 0 });
            }
            state.in_flight += std::mem::take(&mut state.spent);
            let want = if now - state.last_spent_ms >= IDLE_MS {
                0
            } else {
                // About two seconds of this owner's spending since it
                // started spending again (after the last sync, or after an
                // idle pause), at least one block: a busy owner comes back
                // for more about once a second (at half), not hundreds of
                // times, and one resuming after a pause is not sized by the
                // pause. A first sync reserves one block.
                let since = state.listed_ms.max(state.synced_ms);
                let elapsed = u64::try_from(now - since).unwrap_or(0).max(MIN_RATE_WINDOW_MS);
                let rate = if state.synced_ms > 0 { state.in_flight * 2_000 / elapsed } else { 0 };
                state.busy = rate > block;
                rate.clamp(block, block.saturating_mul(MAX_BLOCKS).max(block))
            };
            batch.push(QuotaSync {
                owner_id: owner.to_string(),
                spec,
                period_start: state.period_start,
                spent: state.in_flight,
                want,
            });
            taken.push(Taken { owner: *owner, period_start: state.period_start, answer: batch.len() - 1, carry });
        }
        if batch.is_empty() {
            return;
        }
        let answers = store.sync_quotas(&self.replica_id, &batch).await;
        let cells = self.cells.read().unwrap_or_else(|e| e.into_inner());
        match answers {
            Ok(answers) => {
                self.reachable();
                for t in &taken {
                    let (Some(cell), Some(answer)) = (cells.get(&t.owner), answers.get(t.answer)) else { continue };
                    let mut state = cell.lock();
                    state.in_flight = 0;
                    state.synced_ms = now;
                    if state.period_start == t.period_start {
                        state.used = answer.used;
                        state.adjust = answer.adjust;
                        state.granted = answer.granted;
                        state.others = answer.others_held;
                    }
                }
            }
            Err(e) => {
                self.unreachable(&e);
                // Nothing reached the store: what was in flight is spent
                // again, to be flushed by the next round.
                for t in &taken {
                    let Some(cell) = cells.get(&t.owner) else { continue };
                    let mut state = cell.lock();
                    state.listed = false;
                    let since = state.listed_ms;
                    self.list(&mut state, t.owner, since);
                    let in_flight = std::mem::take(&mut state.in_flight);
                    if state.period_start == t.period_start {
                        state.spent += in_flight;
                        if state.carry.is_none() {
                            state.carry = t.carry;
                        }
                    } else {
                        // The period turned meanwhile: the units belong to
                        // the one they were spent in. (An older carry
                        // still unsent after two turns is dropped.)
                        state.carry = Some((t.period_start, in_flight + state.carry.map_or(0, |(_, n)| n)));
                    }
                }
            }
        }
    }

    /// Brings the book in line with quotas the reloader just read: each
    /// owner's cell takes its (new) spec and the ledger's current period,
    /// then a sync reserves ahead for it. Waits on the store: called by the
    /// reloader, off the request path.
    pub async fn refresh(&self, store: &Store, owners: Vec<(InlineId, QuotaSpec)>) -> Result<(), StoreError> {
        if owners.is_empty() {
            return Ok(());
        }
        let now = now_ms();
        // No sync between the read and its use: its answer, applied in
        // between, would be overwritten with an older `used`.
        let one = self.sync_lock.lock().await;
        for chunk in owners.chunks(4 * BATCH) {
            let ids: Vec<(String, QuotaSpec)> = chunk.iter().map(|(id, spec)| (id.to_string(), *spec)).collect();
            let refs: Vec<(&str, QuotaSpec)> = ids.iter().map(|(id, spec)| (id.as_str(), *spec)).collect();
            let ledger = store.quota_ledger(&refs, now).await?;
            for (owner, spec) in chunk {
                // An owner with no cell yet and no ledger row has spent
                // nothing: its cell starts at zero on its first request. A
                // million keys with quotas cost no memory until used.
                let known = self.cells.read().unwrap_or_else(|e| e.into_inner()).get(owner).cloned();
                let cell = match known {
                    Some(cell) => cell,
                    None if ledger.contains_key(owner.as_str()) => self.cell(*owner),
                    None => continue,
                };
                let mut state = cell.lock();
                if state.spec.is_some_and(|s| s.period != spec.period) {
                    // Another period is another ledger row.
                    *state = CellState { carry: state.carry, ..CellState::default() };
                }
                state.spec = Some(*spec);
                state.roll(*spec, now);
                // A sync in flight answers with the ledger as it leaves it;
                // a read now could count its units twice or not at all.
                if state.in_flight == 0 {
                    let (used, adjust) = ledger.get(owner.as_str()).copied().unwrap_or((0, 0));
                    state.used = used;
                    state.adjust = adjust;
                }
            }
        }
        drop(one);
        // Small changes (an admin write) reserve at once; a full load leaves
        // it to the first requests.
        if owners.len() <= BATCH {
            let ids: Vec<InlineId> = owners.iter().map(|(id, _)| *id).collect();
            self.sync(store, &ids).await;
        }
        Ok(())
    }
}
