//! The `limits` section: per-key rate limits, the failed-authentication
//! guard, and the Redis that shares rate limits (keys' own and plans'
//! pooled ones) across a fleet. Types and defaults only; `validate.rs`
//! checks the values.

use serde::{Deserialize, Serialize};

use super::QuotaConfig;
use crate::fleet::{FleetOptions, RedisUrl};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Rate limit of keys that have none of their own (`null`: unlimited).
    pub default_per_key: Option<QuotaConfig>,
    /// Failed authentications allowed per client address per minute before
    /// that address gets 429 without any key lookup (0 disables the guard).
    pub failed_auth_per_minute: u32,
    /// Failures allowed at once before the per-minute rate applies.
    pub failed_auth_burst: u32,
    /// IPv6 clients are counted by network of this many bits (32–128),
    /// not by address: one holder of a /64 is one client.
    pub failed_auth_ipv6_prefix: u8,
    /// Share every key's `rate_limit` and every plan's pooled account limit
    /// with the other replicas through this Redis
    /// (`redis://[user:password@]host[:port][/db]`); `null`: each replica
    /// counts alone. Requests never wait on Redis: replicas lease tokens
    /// ahead (docs/architecture.md#fleet-wide-rate-limits).
    pub redis_url: Option<String>,
    /// Put in front of every key keygate writes in Redis, so several
    /// gateways (or tests) can share one Redis.
    pub redis_prefix: String,
    /// How often a replica tops up its leases and hands back idle ones
    /// (10–1000 ms).
    pub redis_sync_interval_ms: u64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            default_per_key: None,
            failed_auth_per_minute: 1_000,
            failed_auth_burst: 200,
            failed_auth_ipv6_prefix: 64,
            redis_url: None,
            redis_prefix: "keygate:".into(),
            redis_sync_interval_ms: 50,
        }
    }
}

impl LimitsConfig {
    /// The fleet limiter's options, `None` without `redis_url`; an invalid
    /// URL is `fleet_errors`'s to report.
    pub fn fleet(&self) -> Option<FleetOptions> {
        let url = RedisUrl::parse(self.redis_url.as_deref()?).ok()?;
        Some(FleetOptions { url, prefix: self.redis_prefix.clone(), sync_interval_ms: self.redis_sync_interval_ms })
    }

    /// What is wrong with the Redis fields, by field path.
    pub(super) fn fleet_errors(&self) -> Vec<(&'static str, String)> {
        let mut errors = Vec::new();
        if let Some(url) = &self.redis_url {
            // The parser's messages never repeat the URL: it may hold a password.
            if let Err(e) = RedisUrl::parse(url) {
                errors.push(("limits.redis_url", format!("{e}, got {:?}", super::redact(url))));
            }
        }
        if self.redis_prefix.len() > 64 || self.redis_prefix.chars().any(|c| c.is_whitespace() || c.is_control()) {
            errors.push(("limits.redis_prefix", "must be at most 64 characters, without spaces".into()));
        }
        if !(10..=1000).contains(&self.redis_sync_interval_ms) {
            errors.push((
                "limits.redis_sync_interval_ms",
                format!("must be between 10 and 1000, got {}", self.redis_sync_interval_ms),
            ));
        }
        errors
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    fn errors(yaml: &str) -> Vec<(String, String)> {
        match Config::from_yaml(yaml, Vec::new()) {
            Ok(_) => Vec::new(),
            Err(e) => {
                e.errors.into_iter().filter(|e| e.path.starts_with("limits.")).map(|e| (e.path, e.message)).collect()
            }
        }
    }

    #[test]
    fn redis_fields_are_checked_and_named() {
        assert!(errors("limits:\n  redis_url: redis://127.0.0.1:6379/0\n").is_empty());
        let e = errors("limits:\n  redis_url: http://u:hunter2@cache:6379\n");
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!(e[0].0, "limits.redis_url");
        assert!(e[0].1.contains("redis://") && !e[0].1.contains("hunter2"), "{}", e[0].1);
        let e = errors("limits:\n  redis_url: redis://cache:70000\n  redis_sync_interval_ms: 0\n  redis_prefix: a b\n");
        let paths: Vec<&str> = e.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(paths, ["limits.redis_url", "limits.redis_prefix", "limits.redis_sync_interval_ms"]);
    }

    #[test]
    fn without_a_url_there_is_no_fleet() {
        assert!(Config::default().limits.fleet().is_none());
        let mut config = Config::default();
        config.limits.redis_url = Some("redis://127.0.0.1".into());
        let fleet = config.limits.fleet().expect("fleet");
        assert_eq!((fleet.url.port, fleet.prefix.as_str(), fleet.sync_interval_ms), (6379, "keygate:", 50));
    }
}
