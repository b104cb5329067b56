//! Webhook delivery: the worker that sends the outbox's events to their
//! webhooks, and the scanner that emits `key.expiring`.
//!
//! Events are written by the store, in the transaction of the change they
//! report (`crate::store::webhooks`); this module only reads them. The
//! worker claims due deliveries with a lease (`FOR UPDATE SKIP LOCKED` on
//! PostgreSQL), makes one attempt each with at most
//! `webhooks.concurrency` in flight, and writes the outcome back: done on a
//! 2xx, else due again after an exponential backoff with jitter. The state
//! is in the store, so a restart (or a crash) resumes where it stopped: an
//! attempt cut short is made again once its lease runs out, which is why
//! delivery is at least once and receivers deduplicate by event `id`.
//!
//! It runs beside the proxy and the admin API on its own tasks and
//! connection pool: a slow receiver holds one of its slots until
//! `webhooks.timeout_ms`, nothing else.

pub mod client;
pub mod sign;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use prometheus::core::Collector;
use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts};
use rand::Rng;
use serde_json::{json, Value};
use tokio::sync::Semaphore;
use tokio::task::{JoinHandle, JoinSet};

use crate::clock::{now_ms, rfc3339};
use crate::config::WebhooksConfig;
use crate::shutdown::Shutdown;
use crate::store::{Claimed, Outcome, Store};

/// `key.expiring` is sent this long before a key expires.
pub const EXPIRING_WITHIN_MS: i64 = 7 * 86_400_000;

/// A claimed delivery is a worker's for the attempt's deadline plus this
/// margin (the time to write its outcome back).
const LEASE_MARGIN_MS: i64 = 5_000;

/// Pruning of the deliveries log and of the `quota.threshold` marks of
/// ended periods runs this often (and once at start).
const PRUNE_EVERY_MS: i64 = 3_600_000;

/// The delivery worker and the `key.expiring` scanner.
pub struct Webhooks {
    store: Store,
    config: WebhooksConfig,
    sender: client::Sender,
    /// `keygate_webhook_deliveries_total{result}`: delivered, failed, given_up.
    results: [IntCounter; 3],
    results_vec: IntCounterVec,
    pending: IntGauge,
}

impl std::fmt::Debug for Webhooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Webhooks")
    }
}

impl Webhooks {
    pub fn new(store: Store, config: &WebhooksConfig) -> anyhow::Result<Arc<Webhooks>> {
        let results_vec = IntCounterVec::new(
            Opts::new(
                "keygate_webhook_deliveries_total",
                "Webhook delivery attempts, by result: delivered (2xx), failed (retried later), given_up.",
            ),
            &["result"],
        )?;
        let results = ["delivered", "failed", "given_up"].map(|r| results_vec.with_label_values(&[r]));
        let pending = IntGauge::new(
            "keygate_webhook_outbox_pending",
            "Webhook deliveries neither delivered nor given up yet (all replicas').",
        )?;
        Ok(Arc::new(Webhooks {
            store,
            config: config.clone(),
            sender: client::Sender::new(Duration::from_millis(config.timeout_ms))?,
            results,
            results_vec,
            pending,
        }))
    }

    /// The worker's metrics, to register with the scrape.
    pub fn collectors(&self) -> Vec<Box<dyn Collector>> {
        vec![Box::new(self.results_vec.clone()), Box::new(self.pending.clone())]
    }

    /// Starts the delivery worker (unless `webhooks.deliver` is off) and the
    /// `key.expiring` scanner; both stop when `shutdown` fires.
    pub fn spawn(self: &Arc<Self>, shutdown: Shutdown) -> Vec<JoinHandle<()>> {
        let mut tasks = vec![tokio::spawn(Arc::clone(self).scan_expiring(shutdown.clone()))];
        if self.config.deliver {
            tasks.push(tokio::spawn(Arc::clone(self).deliver(shutdown)));
        }
        tasks
    }

    async fn deliver(self: Arc<Self>, shutdown: Shutdown) {
        let slots = Arc::new(Semaphore::new(self.config.concurrency));
        let mut in_flight = JoinSet::new();
        let poll = Duration::from_millis(self.config.poll_interval_ms);
        let lease = i64::try_from(self.config.timeout_ms).unwrap_or(i64::MAX / 2) + LEASE_MARGIN_MS;
        let mut last_prune = 0;
        let mut failing = false;
        while !shutdown.is_triggered() {
            while in_flight.try_join_next().is_some() {}
            // A read first: with nothing pending (no webhook, or all
            // delivered) the claim, a write, is skipped.
            let pending = self.store.pending_deliveries().await;
            if let Ok(n) = pending {
                self.pending.set(n);
            }
            let free = slots.available_permits();
            let mut full_batch = false;
            if free > 0 && !matches!(pending, Ok(0)) {
                let now = now_ms();
                match self.store.claim_deliveries(now, now + lease, free as u32).await {
                    Ok(claimed) => {
                        failing = false;
                        full_batch = claimed.len() == free;
                        for delivery in claimed {
                            let Ok(permit) = Arc::clone(&slots).acquire_owned().await else { break };
                            let this = Arc::clone(&self);
                            in_flight.spawn(async move {
                                this.attempt(delivery).await;
                                drop(permit);
                            });
                        }
                    }
                    Err(e) => {
                        if !failing {
                            tracing::warn!(error = %e, "cannot claim webhook deliveries; retrying");
                        }
                        failing = true;
                    }
                }
            }
            let now = now_ms();
            if now - last_prune > PRUNE_EVERY_MS {
                last_prune = now;
                let before = now - i64::from(self.config.retention_days) * 86_400_000;
                if let Err(e) = self.store.prune_webhook_log(before).await {
                    tracing::warn!(error = %e, "cannot prune the webhook deliveries log");
                }
                if let Err(e) = self.store.prune_quota_marks(now).await {
                    tracing::warn!(error = %e, "cannot prune the quota.threshold marks");
                }
            }
            // A full batch may mean more are due: claim again as soon as a
            // slot is free (at once if one is), not a poll interval later —
            // else a backlog drains at `concurrency` events per poll.
            if full_batch {
                tokio::select! {
                    // A permit, not a finished task: a task may finish (its
                    // permit already counted as free) before it is reaped.
                    permit = slots.acquire() => drop(permit),
                    _ = tokio::time::sleep(poll) => {}
                    _ = shutdown.wait() => {}
                }
                continue;
            }
            tokio::select! {
                _ = tokio::time::sleep(poll) => {}
                _ = shutdown.wait() => {}
            }
        }
        // Attempts in flight get a few seconds to finish; one cut short is
        // made again once its lease runs out, so a hanging receiver cannot
        // hold the shutdown for a whole timeout.
        let _ = tokio::time::timeout(Duration::from_millis(self.config.timeout_ms.min(5_000)), async {
            while in_flight.join_next().await.is_some() {}
        })
        .await;
    }

    /// Makes attempt `delivery.attempt` and records what it came to.
    async fn attempt(&self, delivery: Claimed) {
        let body = body(&delivery);
        let t = now_ms() / 1000;
        let signature = sign::signature(&delivery.secret, t, &body);
        let answer = self.sender.post(&delivery.url, body, &signature).await;
        let at = now_ms();
        let (status_code, error, delivered) = match answer {
            Ok(status) if status.is_success() => (Some(status.as_u16()), None, true),
            Ok(status) => (Some(status.as_u16()), Some(format!("answered {status}")), false),
            Err(e) => (None, Some(e), false),
        };
        let next_attempt_at = (!delivered).then(|| self.next_attempt(&delivery, at)).flatten();
        let result = match (delivered, next_attempt_at) {
            (true, _) => 0,
            (false, Some(_)) => 1,
            (false, None) => 2,
        };
        self.results[result].inc();
        if !delivered {
            tracing::debug!(
                webhook_id = %delivery.webhook_id,
                event_id = %delivery.event_id,
                attempt = delivery.attempt,
                status = ?status_code,
                error = error.as_deref().unwrap_or(""),
                given_up = next_attempt_at.is_none(),
                "webhook delivery failed"
            );
        }
        let outcome = Outcome { status_code, error, delivered, next_attempt_at };
        // The store may be briefly away: a few tries, then the lease runs
        // out and the attempt is made again.
        for wait in [0, 200, 1_000, 5_000] {
            tokio::time::sleep(Duration::from_millis(wait)).await;
            match self.store.record_attempt(&delivery, at, &outcome).await {
                Ok(()) => return,
                Err(e) => tracing::warn!(error = %e, event_id = %delivery.event_id, "cannot record a webhook attempt"),
            }
        }
    }

    fn next_attempt(&self, delivery: &Claimed, now: i64) -> Option<i64> {
        let jitter = rand::thread_rng().gen_range(0.75..1.25);
        next_attempt_at(&self.config, delivery.attempt, delivery.event_created_at, now, jitter)
    }

    /// Every `webhooks.expiring_scan_interval_ms`, emits `key.expiring` for
    /// keys that expire within 7 days and have not been reported for that
    /// expiry.
    async fn scan_expiring(self: Arc<Self>, shutdown: Shutdown) {
        let mut tick = tokio::time::interval(Duration::from_millis(self.config.expiring_scan_interval_ms));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.wait() => return,
            }
            // Batches of 500: go on while batches come back full.
            loop {
                match self.store.emit_expiring(now_ms(), EXPIRING_WITHIN_MS).await {
                    Ok(n) if n >= 500 => continue,
                    Ok(n) => {
                        if n > 0 {
                            tracing::info!(keys = n, "key.expiring events emitted");
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot scan for expiring keys"),
                }
                break;
            }
        }
    }
}

/// When the attempt after failed attempt `attempt` (1, 2, …) is due,
/// `None` once the delivery is given up: the initial wait doubled per
/// failed attempt, capped at `retry_max_ms`, times `jitter` (0.75–1.25).
fn next_attempt_at(config: &WebhooksConfig, attempt: i64, event_at: i64, now: i64, jitter: f64) -> Option<i64> {
    let give_up = config.give_up_after_hours;
    if give_up > 0 && now - event_at >= i64::try_from(give_up.saturating_mul(3_600_000)).unwrap_or(i64::MAX) {
        return None;
    }
    let doublings = u32::try_from(attempt.saturating_sub(1).clamp(0, 30)).unwrap_or(30);
    let base = config.retry_initial_ms.saturating_mul(1u64 << doublings).min(config.retry_max_ms);
    let wait = ((base as f64 * jitter) as u64).min(config.retry_max_ms).max(1);
    Some(now + i64::try_from(wait).unwrap_or(i64::MAX / 2))
}

/// The body of a delivery: `{ id, type, created_at, data }`, the same bytes
/// at every attempt (keys sorted).
pub fn body(delivery: &Claimed) -> Bytes {
    let data: Value = serde_json::from_str(&delivery.data).unwrap_or(Value::Null);
    let body = json!({
        "id": delivery.event_id,
        "type": delivery.kind,
        "created_at": rfc3339(delivery.event_created_at),
        "data": data,
    });
    Bytes::from(body.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_doubling_to_the_cap_then_give_up() {
        let config = WebhooksConfig::default();
        let waits: Vec<i64> = (1..=12).map(|n| next_attempt_at(&config, n, 0, 0, 1.0).expect("retried")).collect();
        assert_eq!(&waits[..5], [5_000, 10_000, 20_000, 40_000, 80_000]);
        assert_eq!(waits[11], 3_600_000, "capped at retry_max_ms");
        assert_eq!(next_attempt_at(&config, 3, 0, 0, 0.75), Some(15_000), "jitter below");
        assert_eq!(next_attempt_at(&config, 12, 0, 0, 1.25), Some(3_600_000), "jitter never passes the cap");
        assert_eq!(next_attempt_at(&config, i64::MAX, 0, 0, 1.0), Some(3_600_000), "no overflow");
        let day = 86_400_000;
        assert!(next_attempt_at(&config, 70, 0, 3 * day - 1, 1.0).is_some());
        assert_eq!(next_attempt_at(&config, 71, 0, 3 * day, 1.0), None, "given up after 72 h");
        let forever = WebhooksConfig { give_up_after_hours: 0, ..config };
        assert!(next_attempt_at(&forever, 1_000, 0, 365 * day, 1.0).is_some(), "0: never given up");
    }
}
