//! The brute-force guard: failed authentications are counted per client
//! address (governor, keyed GCRA); an address past its allowance is blocked
//! for as long as the limiter says, and a blocked address gets 429 before
//! any key lookup. Requests from unblocked addresses pay one relaxed atomic
//! load. Idle addresses are dropped from the limiter's memory periodically.
//!
//! IPv6 clients are counted by network (`limits.failed_auth_ipv6_prefix`,
//! /64 by default), not by address: whoever holds a /64 has 2^64 addresses
//! to rotate through.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
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
    /// IPv6 addresses are counted by their first this many bits.
    ipv6_mask: u128,
}

impl std::fmt::Debug for FailureGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FailureGuard").field("blocked", &self.blocked_count.load(Ordering::Relaxed)).finish()
    }
}

impl FailureGuard {
    /// `per_minute` failures a minute, `burst` at once; 0 turns it off.
    /// IPv6 clients are counted per network of `ipv6_prefix` bits (0–128).
    pub fn new(per_minute: u32, burst: u32, ipv6_prefix: u8) -> Arc<FailureGuard> {
        let limiter = NonZeroU32::new(per_minute).map(|rate| {
            let burst = NonZeroU32::new(burst).unwrap_or(rate);
            RateLimiter::keyed(Quota::per_minute(rate).allow_burst(burst))
        });
        let ipv6_mask = u128::MAX.checked_shl(128 - u32::from(ipv6_prefix.min(128))).unwrap_or(0);
        Arc::new(FailureGuard {
            limiter,
            blocked: RwLock::new(HashMap::new()),
            blocked_count: AtomicUsize::new(0),
            ipv6_mask,
        })
    }

    /// The key `ip`'s failures are counted under: IPv4 as is, IPv6 by its
    /// network.
    fn bucket(&self, ip: IpAddr) -> IpAddr {
        match ip.to_canonical() {
            IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & self.ipv6_mask)),
            v4 => v4,
        }
    }

    /// Seconds the address must still wait, if it is blocked.
    pub fn blocked_for(&self, ip: IpAddr) -> Option<u64> {
        if self.blocked_count.load(Ordering::Relaxed) == 0 {
            return None;
        }
        let until = *self.blocked.read().ok()?.get(&self.bucket(ip))?;
        let left = until.checked_duration_since(Instant::now())?;
        Some(left.as_secs_f64().ceil().max(1.0) as u64)
    }

    /// Counts one failed authentication; blocks the address when it has
    /// used its allowance.
    pub fn failure(&self, ip: IpAddr) {
        let Some(limiter) = &self.limiter else { return };
        let ip = self.bucket(ip);
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
        let guard = FailureGuard::new(60, 3, 64);
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
    fn addresses_in_one_ipv6_64_share_a_bucket() {
        let guard = FailureGuard::new(60, 3, 64);
        let ip: IpAddr = "2001:db8:1:2::1".parse().expect("ip");
        let same_64: IpAddr = "2001:db8:1:2:ffff:ffff:ffff:fffe".parse().expect("ip");
        let other_64: IpAddr = "2001:db8:1:3::1".parse().expect("ip");
        for _ in 0..2 {
            guard.failure(ip);
        }
        for _ in 0..2 {
            guard.failure(same_64);
        }
        assert!(guard.blocked_for(ip).is_some(), "four failures from one /64 pass a burst of three");
        assert!(guard.blocked_for(same_64).is_some());
        assert_eq!(guard.blocked_for(other_64), None);
    }

    #[test]
    fn zero_turns_the_guard_off() {
        let guard = FailureGuard::new(0, 0, 64);
        let ip: IpAddr = "192.0.2.7".parse().expect("ip");
        for _ in 0..1000 {
            guard.failure(ip);
        }
        assert_eq!(guard.blocked_for(ip), None);
    }
}
