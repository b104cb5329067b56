//! A connection's timer, armed lazily: one `Sleep` per connection that
//! bounds each wait in turn, instead of a timer entry made and dropped per
//! request.
//!
//! `tokio::time::timeout` puts an entry in the runtime's timer wheel when
//! it is first polled and takes it out when it is dropped: two trips
//! through the time driver's lock, and an entry for the driver to process,
//! for each wait. Deadlines on a keep-alive connection only move later, so
//! one entry serves them all: a deadline past the armed one is only noted,
//! and when the entry fires before the deadline it is re-armed for it then
//! (once per timeout period, not per request). Against a `timeout` for each
//! of a request's two waits this saves 863 of the proxy thread's 23,668
//! instructions a request (callgrind, `scripts/bench-instructions.sh`).

use std::future::{poll_fn, Future};
use std::pin::{pin, Pin};
use std::task::Poll;

use tokio::time::{Instant, Sleep};

/// The deadline passed before the wait ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Elapsed;

/// A reusable, lazily re-armed deadline (see the module's doc).
#[derive(Debug, Default)]
pub struct Deadline {
    /// Made on the first wait, then kept; armed at or before `due`.
    sleep: Option<Pin<Box<Sleep>>>,
}

impl Deadline {
    /// Runs `fut` until it completes, or until `due` passes first.
    pub async fn bound<F: Future>(&mut self, due: Instant, fut: F) -> Result<F::Output, Elapsed> {
        let mut fut = pin!(fut);
        let sleep = self.sleep.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(due)));
        if sleep.deadline() > due {
            // Earlier than the armed one: only a move earlier re-arms now.
            sleep.as_mut().reset(due);
        }
        poll_fn(|cx| {
            if let Poll::Ready(out) = fut.as_mut().poll(cx) {
                return Poll::Ready(Ok(out));
            }
            loop {
                if sleep.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                if sleep.deadline() >= due {
                    return Poll::Ready(Err(Elapsed));
                }
                // Fired for an earlier deadline: wait on for this one.
                sleep.as_mut().reset(due);
            }
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_wait_ends_at_its_own_deadline_not_an_earlier_one() {
        let mut deadline = Deadline::default();
        let start = Instant::now();
        // Armed for 1 s by the first wait, which ends at once.
        assert_eq!(deadline.bound(start + Duration::from_secs(1), async { 7 }).await, Ok(7));
        // A later deadline: the 1 s entry fires first and is re-armed.
        let waited = deadline.bound(start + Duration::from_secs(3), std::future::pending::<()>()).await;
        assert_eq!(waited, Err(Elapsed));
        assert_eq!(Instant::now() - start, Duration::from_secs(3));
        // An earlier deadline than the armed one is kept too.
        let now = Instant::now();
        deadline.sleep.as_mut().unwrap().as_mut().reset(now + Duration::from_secs(60));
        let waited = deadline.bound(now + Duration::from_millis(500), std::future::pending::<()>()).await;
        assert_eq!(waited, Err(Elapsed));
        assert_eq!(Instant::now() - now, Duration::from_millis(500));
    }

    #[tokio::test(start_paused = true)]
    async fn what_completes_in_time_is_not_cut() {
        let mut deadline = Deadline::default();
        for round in 1..=5u64 {
            let due = Instant::now() + Duration::from_secs(2);
            let work = async move {
                tokio::time::sleep(Duration::from_millis(1_500)).await;
                round
            };
            // Each wait ends 1.5 s into its own 2 s: never cut, though the
            // entry armed by the first fires during the second.
            assert_eq!(deadline.bound(due, work).await, Ok(round));
        }
        let due = Instant::now() + Duration::from_secs(2);
        let slow = tokio::time::sleep(Duration::from_millis(2_500));
        assert_eq!(deadline.bound(due, slow).await, Err(Elapsed));
    }
}
