//! At most one log line per slot (an upstream, an exporter) per interval,
//! counting the lines it held back so the next one can say how many.
//!
//! A failing upstream fails every request sent to it: at thousands of
//! requests a second, a warning each would bury the log (a soak once wrote
//! 439,808 lines in 180 s) and cost more than the refusal itself. The
//! metrics keep the exact counts; the log keeps one line a second.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use crate::clock::now_ms;

/// One line per second per slot.
pub const INTERVAL_MS: i64 = 1000;

#[derive(Debug)]
pub struct Throttle {
    slots: Box<[Slot]>,
}

#[derive(Debug, Default)]
struct Slot {
    /// When the next line may be written (unix ms).
    next_ms: AtomicI64,
    /// Lines held back since the last one written.
    suppressed: AtomicU64,
}

impl Throttle {
    /// `slots` independent slots (at least one).
    pub fn new(slots: usize) -> Throttle {
        Throttle { slots: (0..slots.max(1)).map(|_| Slot::default()).collect() }
    }

    /// Whether a line may be written now for `slot` (slots past the last
    /// share the last): `Some(n)` with the lines held back since the last
    /// one, or `None` when this one is to be held back.
    pub fn admit(&self, slot: usize) -> Option<u64> {
        self.admit_at(slot, now_ms())
    }

    fn admit_at(&self, slot: usize, now: i64) -> Option<u64> {
        let slot = &self.slots[slot.min(self.slots.len() - 1)];
        let next = slot.next_ms.load(Ordering::Relaxed);
        // Of the threads that see the slot open, the one whose exchange
        // wins writes; the others count themselves as held back.
        if now >= next
            && slot.next_ms.compare_exchange(next, now + INTERVAL_MS, Ordering::Relaxed, Ordering::Relaxed).is_ok()
        {
            return Some(slot.suppressed.swap(0, Ordering::Relaxed));
        }
        slot.suppressed.fetch_add(1, Ordering::Relaxed);
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_interval_then_the_count_held_back() {
        let throttle = Throttle::new(2);
        assert_eq!(throttle.admit_at(0, 10_000), Some(0));
        for t in 10_001..10_500 {
            assert_eq!(throttle.admit_at(0, t), None);
        }
        assert_eq!(throttle.admit_at(1, 10_500), Some(0), "slots are independent");
        assert_eq!(throttle.admit_at(0, 11_000), Some(499));
        assert_eq!(throttle.admit_at(0, 11_001), None);
        assert_eq!(throttle.admit_at(7, 11_600), Some(0), "past the last slot: the last");
    }

    #[test]
    fn threads_racing_write_one_line() {
        let throttle = std::sync::Arc::new(Throttle::new(1));
        let lines: Vec<u64> = (0..4)
            .map(|_| {
                let throttle = std::sync::Arc::clone(&throttle);
                std::thread::spawn(move || (0..1000).filter_map(|_| throttle.admit_at(0, 5_000)).collect::<Vec<_>>())
            })
            .collect::<Vec<_>>()
            .into_iter()
            .flat_map(|t| t.join().expect("thread"))
            .collect();
        assert_eq!(lines.len(), 1, "one line written: {lines:?}");
        // A thread held back while the winner took the count goes into the
        // winner's line or the next one: none is lost or counted twice.
        let next = throttle.admit_at(0, 6_000).expect("the next interval writes");
        assert_eq!(lines[0] + next, 3999);
    }
}
