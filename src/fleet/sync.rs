//! The background half of the fleet limiter: every sync interval (or at
//! once when a limit needs its first lease or has spent half of it), one
//! Lua call per batch of the limits that need it hands back what this
//! replica holds and leases it its share of what the fleet has free; reconnects with backoff when Redis goes away,
//! and hands every lease back when the gateway stops.
//!
//! Redis keeps, per limit, the GCRA "theoretical arrival time" in µs of
//! Redis's own clock (`TIME`), so replicas' clocks never have to agree; and
//! a sorted set of the replicas seen in the last few seconds, whose count
//! divides what is free. Nothing here runs on the request path.

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use super::resp::{Connection, Reply, RespError};
use super::{FleetLimiter, FleetScope, ACTIVE, DORMANT, WARMING};
use crate::clock::now_ms;
use crate::shutdown::Shutdown;

/// KEYS[1]: the replica set; KEYS[2..]: one bucket per limit.
/// ARGV[1]: this replica; ARGV[2]: how long (µs) a silent replica still
/// counts; then per limit: tokens held (negative: spent on credit),
/// 1 to lease more, µs per token, window µs.
/// Answers the replica count, then per limit: tokens leased, tokens still
/// free after that, and µs until the bucket is whole.
const SCRIPT: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[2]))
redis.call('PEXPIRE', KEYS[1], 60000)
local n = redis.call('ZCARD', KEYS[1])
local out = {n}
for i = 2, #KEYS do
  local j = 3 + (i - 2) * 4
  local held = tonumber(ARGV[j])
  local lease = ARGV[j + 1] == '1'
  local per = tonumber(ARGV[j + 2])
  local window = tonumber(ARGV[j + 3])
  local tat = tonumber(redis.call('GET', KEYS[i]) or now)
  if tat < now then tat = now end
  tat = tat - held * per
  if tat < now then tat = now end
  local free = math.floor((now + window - tat) / per + 0.000001)
  local want = 0
  if lease and free > 0 then want = math.ceil(free / n) end
  tat = tat + want * per
  redis.call('SET', KEYS[i], string.format('%.0f', tat), 'PX', math.floor((tat - now) / 1000) + 1000)
  out[#out + 1] = want
  out[#out + 1] = free - want
  out[#out + 1] = math.floor(tat - now)
end
return out
"#;

/// Redis silent this long (no successful round) is an outage.
const OUTAGE_AFTER_MS: i64 = 2_000;
/// A lease idle this long goes back to the fleet.
const IDLE_RETURN_MS: i64 = 1_000;
/// A limit in use is synced at least this often, so its lease follows the
/// fleet's bucket and `remaining` stays current, even when it is neither
/// half spent nor short.
const REFRESH_MS: i64 = 1_000;
/// How often a limit whose fleet bucket is more than half full is synced.
const STOCKED_REFRESH_MS: i64 = 5_000;
/// How often a limit whose fleet bucket is nine tenths full or more is
/// synced: the fleet spends less than a tenth of its window's worth, so no
/// replica is refused for want of a token another holds; its lease is
/// topped up when half spent, as any. Ten thousand keys far below large
/// limits then cost about 330 Lua entries a second, not 2,000 (each a
/// slice of Redis's and of the sync's time on the gateway's core).
const WHOLE_REFRESH_MS: i64 = 30_000;
/// Limits per Lua call. Each costs Redis about 7 µs, and Redis may share
/// the gateway's core: a call of 64 held it for about 0.45 ms, which a
/// request arriving meanwhile waited out (Redis is not ours to lower).
/// Calls of 16 hold it about 0.1 ms; the round sends them one after the
/// other, so requests run in between.
const BATCH: usize = 16;
/// Refreshes and give-backs per round at most (`pick`): ten thousand limits
/// that came into use together come due together, and at one request
/// every few seconds per key, each key's lease goes back idle between its
/// requests. Sent all in one round, they held Redis and this core for tens
/// of milliseconds, which requests on the same core felt as their p99. The
/// rest are owed to the next rounds, one every sync interval, oldest first,
/// so they go out in slices of well under a millisecond; a limit that runs
/// low or short, or has spent half the credit of its first lease, never
/// waits.
const DEFERRABLE_PER_ROUND: usize = 64;
/// Woken rounds are at least this far apart: the limits that want their
/// first lease meanwhile (on credit until it comes) go together in one call
/// instead of one call each.
const WAKE_GAP: Duration = Duration::from_millis(5);
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// What the sync task remembers between rounds.
#[derive(Default)]
struct Rounds {
    /// Local unix ms of the last round that looked at every limit.
    scanned_ms: i64,
    /// The limits leased in the last round.
    hot: Vec<Arc<FleetScope>>,
    /// Limits due for a refresh or a give-back that earlier rounds had no
    /// room for, oldest first.
    owed: VecDeque<Arc<FleetScope>>,
}

/// The refreshes and give-backs a round still has room for, and the limits
/// it had to leave for later (`pick`).
pub(super) struct Refreshes {
    left: usize,
    owed: Vec<Arc<FleetScope>>,
}

impl Refreshes {
    pub(super) fn new(left: usize) -> Self {
        Refreshes { left, owed: Vec::new() }
    }

    #[cfg(test)]
    pub(super) fn owed(&self) -> &[Arc<FleetScope>] {
        &self.owed
    }
}

/// One limit in a round: what was sent, to apply the answer against.
pub(super) struct Entry {
    scope: Arc<FleetScope>,
    pub(super) held: i64,
    pub(super) lease: bool,
}

impl FleetLimiter {
    /// Runs the sync until `shutdown`, then hands the leases back.
    pub fn spawn(self: &Arc<Self>, shutdown: Shutdown) -> tokio::task::JoinHandle<()> {
        let this = Arc::clone(self);
        tokio::spawn(async move { this.run(shutdown).await })
    }

    async fn run(&self, shutdown: Shutdown) {
        let interval = Duration::from_millis(self.options.sync_interval_ms);
        let mut rounds = Rounds::default();
        let limit = (interval * 20).clamp(Duration::from_secs(1), Duration::from_secs(5));
        let mut backoff = BACKOFF_MIN;
        let mut done: u64 = 0;
        while !shutdown.is_triggered() {
            let mut conn = match self.connect(limit).await {
                Ok(c) => c,
                Err(e) => {
                    self.down(&e, backoff);
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = shutdown.wait() => return,
                    }
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                    continue;
                }
            };
            loop {
                if let Err(e) = self.round(&mut conn.0, &conn.1, &mut rounds, false, limit).await {
                    self.down(&e, backoff);
                    break;
                }
                self.last_sync_ms.store(now_ms(), Ordering::Relaxed);
                if !self.shared.up.swap(true, Ordering::Relaxed) {
                    tracing::info!(redis = ?self.options.url, "redis reachable: rate limits are shared by the fleet");
                }
                backoff = BACKOFF_MIN;
                done += 1;
                if done.is_multiple_of(200) {
                    self.prune();
                }
                let woken = tokio::select! {
                    _ = tokio::time::sleep(interval) => false,
                    _ = self.shared.wake.notified() => true,
                    _ = shutdown.wait() => {
                        if let Err(e) = self.round(&mut conn.0, &conn.1, &mut rounds, true, limit).await {
                            tracing::warn!(error = %e, "cannot hand the rate-limit leases back to redis");
                        }
                        // Requests still draining count on this replica alone.
                        self.shared.up.store(false, Ordering::Relaxed);
                        return;
                    }
                };
                if woken {
                    // The limits that want a lease meanwhile come along.
                    tokio::select! {
                        _ = tokio::time::sleep(WAKE_GAP) => {}
                        _ = shutdown.wait() => {}
                    }
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = shutdown.wait() => return,
            }
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }

    async fn connect(&self, limit: Duration) -> Result<(Connection, String), RespError> {
        let mut conn = Connection::open(&self.options.url, limit).await?;
        let sha = match conn.call(&[&b"SCRIPT"[..], b"LOAD", SCRIPT.as_bytes()], limit).await? {
            Reply::Bulk(Some(sha)) => String::from_utf8(sha).map_err(|_| RespError::Protocol)?,
            _ => return Err(RespError::Protocol),
        };
        Ok((conn, sha))
    }

    /// A failed round. A slow or dropped round is no outage: the replica
    /// keeps spending the leases Redis already counted (and refuses past
    /// them) for `OUTAGE_AFTER`; only then every limit counts alone, until a
    /// round succeeds. Falling back at the first hiccup would let each
    /// replica admit a whole local bucket that no one charges.
    fn down(&self, error: &RespError, retry: Duration) {
        self.sync_errors.fetch_add(1, Ordering::Relaxed);
        let silent = now_ms() - self.last_sync_ms.load(Ordering::Relaxed);
        if silent >= OUTAGE_AFTER_MS && self.shared.up.swap(false, Ordering::Relaxed) {
            tracing::warn!(error = %error, "redis unreachable: each replica counts rate limits alone until it is back");
        } else {
            tracing::debug!(error = %error, retry_ms = retry.as_millis() as u64, "redis still unreachable");
        }
    }

    /// One round over the limits that want a lease or hold one they no
    /// longer use; `closing` hands everything back. Once a `REFRESH_MS`
    /// (and when closing) it looks at every limit; in between only at the
    /// ones that woke it and the ones that were short last time, so a round
    /// costs nothing per idle or well-stocked limit.
    async fn round(
        &self,
        conn: &mut Connection,
        sha: &str,
        rounds: &mut Rounds,
        closing: bool,
        limit: Duration,
    ) -> Result<(), RespError> {
        let now = now_ms();
        let replicas = self.shared.replicas.load(Ordering::Relaxed);
        let urgent = std::mem::take(&mut *self.shared.urgent.lock().unwrap_or_else(|p| p.into_inner()));
        for s in &urgent {
            s.queued.store(false, Ordering::Release);
        }
        let mut refreshes = Refreshes::new(DEFERRABLE_PER_ROUND);
        let entries: Vec<Entry> = if closing || now - rounds.scanned_ms >= REFRESH_MS {
            rounds.scanned_ms = now;
            match self.scopes.read() {
                Ok(m) => m.values().filter_map(|s| pick(s, now, replicas, closing, &mut refreshes)).collect(),
                Err(_) => Vec::new(),
            }
        } else {
            let mut some: Vec<Arc<FleetScope>> = urgent;
            some.append(&mut rounds.hot);
            some.sort_by_key(|s| Arc::as_ptr(s) as usize);
            some.dedup_by_key(|s| Arc::as_ptr(s) as usize);
            let mut entries: Vec<Entry> =
                some.iter().filter_map(|s| pick(s, now, replicas, closing, &mut refreshes)).collect();
            // Then the refreshes earlier rounds owe, as far as there is room;
            // a limit already in this round is not sent twice.
            if !rounds.owed.is_empty() {
                let taken: HashSet<*const FleetScope> = entries.iter().map(|e| Arc::as_ptr(&e.scope)).collect();
                while refreshes.left > 0 {
                    let Some(s) = rounds.owed.pop_front() else { break };
                    s.owed.store(false, Ordering::Release);
                    if !taken.contains(&Arc::as_ptr(&s)) {
                        entries.extend(pick(&s, now, replicas, closing, &mut refreshes));
                    }
                }
            }
            entries
        };
        rounds.owed.extend(refreshes.owed);
        // Leased this round: looked at again next round (dropped there
        // unless still short, or half spent again).
        rounds.hot = entries.iter().filter(|e| e.lease).map(|e| Arc::clone(&e.scope)).collect();
        let replicas = format!("{}replicas", self.options.prefix);
        let stale_us = (self.options.sync_interval_ms.max(100) * 50_000).to_string();
        // With no limit to sync, an empty batch still keeps this replica
        // in the replica set and finds out whether Redis answers.
        let batches: Vec<&[Entry]> = if entries.is_empty() { vec![&[]] } else { entries.chunks(BATCH).collect() };
        for batch in batches {
            let mut args: Vec<Vec<u8>> = Vec::with_capacity(5 + batch.len() * 5);
            args.extend([b"EVALSHA".to_vec(), sha.as_bytes().to_vec(), (batch.len() + 1).to_string().into_bytes()]);
            args.push(replicas.clone().into_bytes());
            for e in batch {
                args.push(format!("{}rl:{}", self.options.prefix, e.scope.name).into_bytes());
            }
            args.extend([self.replica_id.clone().into_bytes(), stale_us.clone().into_bytes()]);
            for e in batch {
                let per_us = f64::from(e.scope.quota.per_seconds) * 1e6 / f64::from(e.scope.quota.requests.max(1));
                args.push(e.held.to_string().into_bytes());
                args.push(if e.lease { b"1".to_vec() } else { b"0".to_vec() });
                args.push(format!("{per_us:.3}").into_bytes());
                args.push((u64::from(e.scope.quota.per_seconds) * 1_000_000).to_string().into_bytes());
            }
            let Reply::Array(items) = conn.call(&args, limit).await? else { return Err(RespError::Protocol) };
            let numbers: Vec<i64> = items
                .into_iter()
                .map(|r| match r {
                    Reply::Int(n) => Ok(n),
                    _ => Err(RespError::Protocol),
                })
                .collect::<Result<_, _>>()?;
            if numbers.len() != 1 + 3 * batch.len() {
                return Err(RespError::Protocol);
            }
            self.shared.replicas.store(numbers[0], Ordering::Relaxed);
            let now = now_ms();
            for (e, answer) in batch.iter().zip(numbers[1..].chunks_exact(3)) {
                apply(e, answer[0], answer[1], answer[2], now);
            }
        }
        Ok(())
    }
}

/// Whether `scope` goes in this round, and how. A limit in use is topped
/// up when half its lease is spent, when the fleet's free tokens run short
/// of what the other replicas would need (so one replica never sits on
/// tokens the others are refused for want of), and every `REFRESH_MS`;
/// otherwise it keeps its lease and costs the round nothing. With many
/// limits in use and few of them short, a round carries a few. A refresh
/// or a give-back goes while `refreshes` has room (always when closing);
/// past that the limit is owed to a later round.
pub(super) fn pick(
    scope: &Arc<FleetScope>,
    now: i64,
    replicas: i64,
    closing: bool,
    refreshes: &mut Refreshes,
) -> Option<Entry> {
    let touched = scope.touched.load(Ordering::Relaxed);
    let state = scope.state.load(Ordering::Acquire);
    let held = scope.allowance.load(Ordering::Acquire);
    let idle = now - scope.last_used_ms.load(Ordering::Relaxed) >= IDLE_RETURN_MS;
    // (A first lease's credit is judged below, by what is left of it.)
    let low = state != WARMING && held * 2 <= scope.leased.load(Ordering::Relaxed);
    let short = replicas > 1 && scope.fleet_free.load(Ordering::Relaxed) < held.max(1) * (replicas - 1);
    let since = now - scope.synced_ms.load(Ordering::Relaxed);
    // A bucket more than half full at the last sync (counting what the
    // replicas hold as this one does) is far from refusing anyone: its
    // lease is refreshed every 5 s, and every 30 s when nine tenths full,
    // so thousands of quiet limits do not cost thousands of Redis calls a
    // second.
    let unspent = scope.fleet_free.load(Ordering::Relaxed) + held.max(0) * replicas.max(1);
    let requests = i64::from(scope.quota.requests);
    let every = if unspent >= requests - requests / 10 {
        WHOLE_REFRESH_MS
    } else if unspent >= requests / 2 {
        STOCKED_REFRESH_MS
    } else {
        REFRESH_MS
    };
    let due = since >= every;
    // A first lease while more than half of the credit is left to spend
    // waits its turn with the refreshes: ten thousand keys that start
    // together (or come back after an idle second) go 64 a round, not in
    // one burst of forty Lua calls. Past half the credit it is needed.
    let warming = state == WARMING;
    let credit_low = warming && scope.credit.load(Ordering::Acquire) <= super::half_credit(scope.quota, replicas);
    // A lease wanted for more than its refresh.
    let needed = credit_low || touched && (low || short);
    let lease = !closing && (needed || warming || touched && due);
    let give_back = held != 0 && (closing || (state == ACTIVE && idle) || state == DORMANT);
    if !closing && !needed && (lease || give_back) {
        if refreshes.left == 0 {
            if !scope.owed.swap(true, Ordering::AcqRel) {
                refreshes.owed.push(Arc::clone(scope));
            }
            return None;
        }
        refreshes.left -= 1;
    }
    if !lease && held == 0 && state == ACTIVE && idle {
        // Nothing to hand back: the next request may go on credit again.
        let _ = scope.state.compare_exchange(ACTIVE, DORMANT, Ordering::AcqRel, Ordering::Relaxed);
    }
    if !(lease || give_back) {
        return None;
    }
    // Requests after this line count towards the next sync.
    scope.touched.store(false, Ordering::Relaxed);
    Some(Entry { scope: Arc::clone(scope), held, lease })
}

/// Applies Redis's answer: the lease replaces what was held (anything
/// spent meanwhile comes out of the new lease), and what the fleet has free.
pub(super) fn apply(e: &Entry, leased: i64, free: i64, whole_in_us: i64, now: i64) {
    let s = &e.scope;
    let after = s.allowance.fetch_add(leased - e.held, Ordering::AcqRel) + leased - e.held;
    s.fleet_free.store(free, Ordering::Relaxed);
    let per_ms = i64::from(s.quota.per_seconds) * 1000 / i64::from(s.quota.requests.max(1));
    let window_ms = i64::from(s.quota.per_seconds) * 1000;
    let next_token_ms = (whole_in_us / 1000 - window_ms + per_ms).max(0);
    s.empty_until_ms.store(if free > 0 || after > 0 { 0 } else { now + next_token_ms }, Ordering::Relaxed);
    s.full_at_ms.store(now + whole_in_us / 1000, Ordering::Relaxed);
    s.synced_ms.store(now, Ordering::Relaxed);
    if e.lease {
        s.leased.store(leased, Ordering::Relaxed);
        s.state.store(ACTIVE, Ordering::Release);
    } else if after <= 0 {
        // Handed back. A request that came meanwhile spent a token of the
        // lease that went (`after` below 0): that is credit, reported by
        // the next sync, and the limit starts again as a new one would,
        // not as a lease run dry (which would refuse until the next round).
        let _ = s.state.compare_exchange(ACTIVE, DORMANT, Ordering::AcqRel, Ordering::Relaxed);
    }
}
