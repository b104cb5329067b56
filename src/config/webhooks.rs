//! The `webhooks` section: how the delivery worker sends events to
//! webhooks. Values and their checks only; the worker is `crate::webhooks`.

use serde::{Deserialize, Serialize};

use super::FieldError;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct WebhooksConfig {
    /// Whether this replica delivers events (every replica writes them).
    /// Replicas sharing one PostgreSQL may all deliver: each claims its
    /// deliveries, so none is sent twice by two of them.
    pub deliver: bool,
    /// Deliveries in flight at once, per replica (1–256).
    pub concurrency: usize,
    /// How long one attempt may take, connection to last response byte.
    pub timeout_ms: u64,
    /// How often the worker looks for due deliveries.
    pub poll_interval_ms: u64,
    /// The wait before the first retry; it doubles with every failed
    /// attempt (with ±25 % jitter) up to `retry_max_ms`.
    pub retry_initial_ms: u64,
    /// The longest wait between two attempts.
    pub retry_max_ms: u64,
    /// Hours after the event at which a delivery that never got a 2xx is
    /// given up (0: never).
    pub give_up_after_hours: u64,
    /// How often keys expiring within 7 days are looked for (`key.expiring`).
    pub expiring_scan_interval_ms: u64,
    /// Days finished deliveries and their attempts are kept for the
    /// deliveries log.
    pub retention_days: u32,
}

impl Default for WebhooksConfig {
    fn default() -> Self {
        WebhooksConfig {
            deliver: true,
            concurrency: 8,
            timeout_ms: 10_000,
            poll_interval_ms: 1_000,
            retry_initial_ms: 5_000,
            retry_max_ms: 3_600_000,
            give_up_after_hours: 72,
            expiring_scan_interval_ms: 60_000,
            retention_days: 30,
        }
    }
}

impl WebhooksConfig {
    /// Every problem with the section, each under its field.
    pub(super) fn check(&self, errors: &mut Vec<FieldError>) {
        let mut err = |field: &str, message: String| {
            errors.push(FieldError { path: format!("webhooks.{field}"), message });
        };
        if !(1..=256).contains(&self.concurrency) {
            err("concurrency", format!("must be between 1 and 256, got {}", self.concurrency));
        }
        for (field, v) in [
            ("timeout_ms", self.timeout_ms),
            ("poll_interval_ms", self.poll_interval_ms),
            ("retry_initial_ms", self.retry_initial_ms),
            ("expiring_scan_interval_ms", self.expiring_scan_interval_ms),
        ] {
            if !(10..=86_400_000).contains(&v) {
                err(field, format!("must be between 10 and 86400000, got {v}"));
            }
        }
        if self.retry_max_ms < self.retry_initial_ms || self.retry_max_ms > 7 * 86_400_000 {
            err(
                "retry_max_ms",
                format!("must be between retry_initial_ms and 604800000 (7 days), got {}", self.retry_max_ms),
            );
        }
        if self.give_up_after_hours > 24 * 365 {
            err("give_up_after_hours", format!("must be at most 8760 (a year), got {}", self.give_up_after_hours));
        }
        if self.retention_days == 0 || self.retention_days > 3650 {
            err("retention_days", format!("must be between 1 and 3650, got {}", self.retention_days));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_pass_and_each_bad_field_is_named() {
        let mut errors = Vec::new();
        WebhooksConfig::default().check(&mut errors);
        assert!(errors.is_empty(), "{errors:?}");
        let bad = WebhooksConfig {
            concurrency: 0,
            timeout_ms: 0,
            retry_max_ms: 1,
            retention_days: 0,
            ..WebhooksConfig::default()
        };
        bad.check(&mut errors);
        let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            ["webhooks.concurrency", "webhooks.timeout_ms", "webhooks.retry_max_ms", "webhooks.retention_days"]
        );
    }
}
