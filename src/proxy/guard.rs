//! The brute-force guard: failed authentications are counted per client
//! address (governor, keyed GCRA); an address past its allowance is blocked
//! for as long as the limiter says, and a blocked address gets 429 before
//! any key lookup. Requests from unblocked addresses pay one relaxed atomic
//! load. Idle addresses are dropped from the limiter's memory periodically.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::shutdown::Shutdown;

pub struct FailureGuard {
    limiter: Option<DefaultKeyedRateLimiter<IpAddr>>,
    blocked: RwLock<HashMap<IpAddr, Instant>>,
    /// Number of entries in `blocked`, read without the lock.
    blocked_count: AtomicUsize,
}

impl std::fmt::Debug for FailureGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FailureGuard").field("blocked", &self.blocked_count.load(Ordering::Relaxed)).finish()
    }
}

impl FailureGuard {
    /// `per_minute` failures a minute, `burst` at once; 0 turns it off.
    pub fn new(per_minute: u32, burst: u32) -> Arc<FailureGuard> {
        let limiter = NonZeroU32::new(per_minute).map(|rate| {
            let burst = NonZeroU32::new(burst).unwrap_or(rate);
            RateLimiter::keyed(Quota::per_minute(rate).allow_burst(burst))
        });
        Arc::new(FailureGuard { limiter, blocked: RwLock::new(HashMap::new()), blocked_count: AtomicUsize::new(0) })
    }

    /// Seconds the address must still wait, if it is blocked.
    pub fn blocked_for(&self, ip: IpAddr) -> Option<u64> {
        if self.blocked_count.load(Ordering::Relaxed) == 0 {
            return None;
        }
        let until = *self.blocked.read().ok()?.get(&ip)?;
        let left = until.checked_duration_since(Instant::now())?;
        Some(left.as_secs_f64().ceil().max(1.0) as u64)
    }

    /// Counts one failed authentication; blocks the address when it has
    /// used its allowance.
    pub fn failure(&self, ip: IpAddr) {
        let Some(limiter) = &self.limiter else { return };
        if let Err(not_until) = limiter.check_key(&ip) {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            if let Ok(mut blocked) = self.blocked.write() {
                blocked.insert(ip, Instant::now() + wait);
                self.blocked_count.store(blocked.len(), Ordering::Relaxed);
            }
            tracing::warn!(client = %ip, block_ms = wait.as_millis() as u64, "too many failed authentications: address blocked");
        }
    }

    /// Forgets expired blocks and idle addresses so memory stays bounded.
    pub fn sweep(&self) {
        if let Some(limiter) = &self.limiter {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
        if self.blocked_count.load(Ordering::Relaxed) > 0 {
            if let Ok(mut blocked) = self.blocked.write() {
                let now = Instant::now();
                blocked.retain(|_, until| *until > now);
                self.blocked_count.store(blocked.len(), Ordering::Relaxed);
            }
        }
    }

    pub fn spawn_sweeper(self: &Arc<Self>, every: Duration, shutdown: Shutdown) -> tokio::task::JoinHandle<()> {
        let this = Arc::clone(self);
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(every) => this.sweep(),
                    _ = shutdown.wait() => return,
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_after_the_burst_and_not_before() {
        let guard = FailureGuard::new(60, 3);
        let ip: IpAddr = "192.0.2.7".parse().expect("ip");
        let other: IpAddr = "192.0.2.8".parse().expect("ip");
        for _ in 0..3 {
            assert_eq!(guard.blocked_for(ip), None);
            guard.failure(ip);
        }
        assert_eq!(guard.blocked_for(ip), None, "the burst itself is allowed");
        guard.failure(ip);
        assert!(guard.blocked_for(ip).is_some());
        assert_eq!(guard.blocked_for(other), None);
        guard.sweep();
        assert!(guard.blocked_for(ip).is_some(), "a live block survives the sweep");
    }

    #[test]
    fn zero_turns_the_guard_off() {
        let guard = FailureGuard::new(0, 0);
        let ip: IpAddr = "192.0.2.7".parse().expect("ip");
        for _ in 0..1000 {
            guard.failure(ip);
        }
        assert_eq!(guard.blocked_for(ip), None);
    }
}
