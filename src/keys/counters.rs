//! Per-key usage counters: requests by `Outcome` and the last-used time,
//! counted with atomics on the request path and shared by every snapshot
//! version of a key, so edits, rotations and reloads never drop a count.
//!
//! The outcomes are derived from the refusal list (`Refusal::ALL`): `allowed`
//! and every refusal that names a key, in that order — adding a refusal adds
//! its counter. This module only counts; writing counts to the store is the
//! usage flusher's, reading them for Prometheus is the metrics
//! collector's. The request path takes no lock here.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use super::id_hash::IdMap;
use super::policy::Refusal;
use super::snapshot::InlineId;

/// What one request of a known key came to: allowed, or a refusal that
/// names the key. Refusals without a key (missing, unknown) have no outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Outcome {
    index: u8,
}

const REFUSALS: usize = Refusal::ALL.len();

/// `OUTCOME_OF[r as usize]`: the outcome index of refusal `r`, 0 if none.
const OUTCOME_OF: [u8; REFUSALS] = {
    let mut table = [0u8; REFUSALS];
    let mut next = 1u8;
    let mut i = 0;
    while i < REFUSALS {
        let r = Refusal::ALL[i];
        assert!(r as usize == i, "Refusal::ALL lists the refusals in declaration order");
        if r.names_a_key() {
            table[i] = next;
            next += 1;
        }
        i += 1;
    }
    table
};

const COUNT: usize = {
    let mut n = 1;
    let mut i = 0;
    while i < REFUSALS {
        if Refusal::ALL[i].names_a_key() {
            n += 1;
        }
        i += 1;
    }
    n
};

const CODES: [&str; COUNT] = {
    let mut codes = ["allowed"; COUNT];
    let mut i = 0;
    while i < REFUSALS {
        if OUTCOME_OF[i] > 0 {
            codes[OUTCOME_OF[i] as usize] = Refusal::ALL[i].code();
        }
        i += 1;
    }
    codes
};

impl Outcome {
    /// How many outcomes are counted per key.
    pub const COUNT: usize = COUNT;
    pub const ALLOWED: Outcome = Outcome { index: 0 };
    /// Every outcome, in index order.
    pub const ALL: [Outcome; COUNT] = {
        let mut all = [Outcome::ALLOWED; COUNT];
        let mut i = 0;
        while i < COUNT {
            all[i] = Outcome { index: i as u8 };
            i += 1;
        }
        all
    };

    /// The outcome of a decision; `None` for refusals that name no key.
    pub fn of(result: Result<(), Refusal>) -> Option<Outcome> {
        match result {
            Ok(()) => Some(Outcome::ALLOWED),
            Err(r) => match OUTCOME_OF[r as usize] {
                0 => None,
                index => Some(Outcome { index }),
            },
        }
    }

    /// The stable label: `allowed` or the refusal's code.
    pub fn code(self) -> &'static str {
        CODES[self.index()]
    }

    /// The position in `Outcome::ALL` and in per-outcome arrays.
    pub fn index(self) -> usize {
        usize::from(self.index)
    }
}

/// One count per outcome.
pub type PerOutcome = [u64; Outcome::COUNT];

/// One key's counters, created on the key's first request and shared by
/// every snapshot version of the key through the `UsageTable`, which holds
/// the key's id beside them (one copy per key in use: at a million keys in
/// use, each byte here is a megabyte).
#[derive(Debug)]
pub struct Counts {
    pub account_id: InlineId,
    /// Monotonic totals per outcome, for metrics.
    outcomes: [AtomicU64; Outcome::COUNT],
    /// Unix ms of the last allowed request.
    last_used_ms: AtomicI64,
    /// How many requests of each outcome the store already has (flusher only).
    flushed: [AtomicU64; Outcome::COUNT],
}

impl Counts {
    fn new(account_id: InlineId) -> Self {
        Counts {
            account_id,
            outcomes: Default::default(),
            last_used_ms: AtomicI64::new(0),
            flushed: Default::default(),
        }
    }

    /// Counts one request; allowed requests also set the last-used time.
    pub fn record(&self, outcome: Outcome, now_ms: i64) {
        self.outcomes[outcome.index()].fetch_add(1, Ordering::Relaxed);
        if outcome == Outcome::ALLOWED {
            self.last_used_ms.fetch_max(now_ms, Ordering::Relaxed);
        }
    }

    /// Requests of this outcome since the process started.
    pub fn get(&self, outcome: Outcome) -> u64 {
        self.outcomes[outcome.index()].load(Ordering::Relaxed)
    }

    pub fn total(&self) -> u64 {
        self.outcomes.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    /// Unix ms of the last allowed request, 0 if none.
    pub fn last_used_ms(&self) -> i64 {
        self.last_used_ms.load(Ordering::Relaxed)
    }

    /// Requests of each outcome not yet in the store.
    pub fn pending(&self) -> PerOutcome {
        std::array::from_fn(|i| {
            self.outcomes[i].load(Ordering::Relaxed).saturating_sub(self.flushed[i].load(Ordering::Relaxed))
        })
    }

    /// Notes that the store now has `written` more requests of each outcome.
    pub fn mark_flushed(&self, written: &PerOutcome) {
        for (flushed, n) in self.flushed.iter().zip(written) {
            flushed.fetch_add(*n, Ordering::Relaxed);
        }
    }
}

/// The counters of every key used since the process started, by key id.
/// Looked up once per key and policy version (the snapshot's key keeps the
/// `Arc`), so the request path does not come here; the flusher and the
/// metrics collector walk it instead of the whole snapshot, so their work
/// follows the keys in use, not the keys that exist.
#[derive(Debug, Default)]
pub struct UsageTable {
    map: RwLock<IdMap<Arc<Counts>>>,
}

impl UsageTable {
    /// The key's counters, created on first use.
    pub fn counts(&self, key_id: InlineId, account_id: InlineId) -> Arc<Counts> {
        if let Some(c) = self.map.read().ok().and_then(|m| m.get(&key_id).cloned()) {
            return c;
        }
        match self.map.write() {
            Ok(mut m) => Arc::clone(m.entry(key_id).or_insert_with(|| Arc::new(Counts::new(account_id)))),
            // A poisoned table still counts, just not for the flusher.
            Err(_) => Arc::new(Counts::new(account_id)),
        }
    }

    /// Every key's id and counters.
    pub fn all(&self) -> Vec<(InlineId, Arc<Counts>)> {
        self.map.read().map(|m| m.iter().map(|(id, c)| (*id, Arc::clone(c))).collect()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate_limited() -> Outcome {
        Outcome::of(Err(Refusal::RateLimited)).expect("counted")
    }

    #[test]
    fn counts_are_shared_by_key_id() {
        let table = UsageTable::default();
        let id = InlineId::new("key_1").expect("id");
        let acc = InlineId::new("acc_1").expect("id");
        let c = table.counts(id, acc);
        c.record(Outcome::ALLOWED, 10);
        table.counts(id, acc).record(Outcome::ALLOWED, 5);
        c.record(rate_limited(), 20);
        assert_eq!(table.all().len(), 1);
        assert_eq!(c.get(Outcome::ALLOWED), 2);
        assert_eq!(c.total(), 3);
        assert_eq!(c.pending()[Outcome::ALLOWED.index()], 2);
        assert_eq!(c.pending()[rate_limited().index()], 1);
        assert_eq!(c.last_used_ms(), 10, "refusals don't count as use");
        c.mark_flushed(&c.pending());
        assert!(c.pending().iter().all(|n| *n == 0));
        assert_eq!(c.total(), 3, "flushing keeps the totals for metrics");
    }

    #[test]
    fn every_key_refusal_has_an_outcome() {
        for r in Refusal::ALL {
            match Outcome::of(Err(r)) {
                None => assert!(!r.names_a_key(), "{r:?}"),
                Some(o) => assert_eq!(o.code(), r.code()),
            }
        }
        assert_eq!(Outcome::of(Ok(())).map(Outcome::code), Some("allowed"));
    }

    #[test]
    fn outcomes_are_allowed_then_the_key_refusals_in_order() {
        let keyed = Refusal::ALL.iter().filter(|r| r.names_a_key()).map(|r| r.code());
        let expected: Vec<&str> = std::iter::once("allowed").chain(keyed).collect();
        let codes: Vec<&str> = Outcome::ALL.iter().map(|o| o.code()).collect();
        assert_eq!(codes, expected);
        assert!(Outcome::ALL.iter().enumerate().all(|(i, o)| o.index() == i));
    }
}
