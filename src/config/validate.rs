//! What types alone cannot check and no typed value holds: ranges, names,
//! files. (Upstream URLs, route prefixes and hosts and CIDR ranges are
//! parsed into `Settings` by `settings.rs`.) Every problem is collected with
//! its field path, none stops the others.

use super::redact;
use super::{Config, FieldError};
use crate::keys::decision::{MAX_PER_SECONDS, MAX_REQUESTS};

impl Config {
    /// Checks what types alone cannot: ranges, names, files.
    pub(super) fn validate(&self) -> Vec<FieldError> {
        let mut errors = Vec::new();
        let mut err = |path: &str, message: String| errors.push(FieldError { path: path.into(), message });

        let url = &self.store.url;
        if !(url.starts_with("sqlite:") || url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            err("store.url", format!("must start with sqlite:// or postgres://, got {:?}", redact(url)));
        } else if url.starts_with("postgres") {
            // sqlx's parse errors name the part at fault, never its value.
            if let Err(e) = <sqlx::postgres::PgConnectOptions as std::str::FromStr>::from_str(url) {
                err("store.url", format!("not a PostgreSQL URL ({e}): {:?}", redact(url)));
            }
        }
        if self.proxy.max_connections == 0 || self.proxy.max_connections < self.proxy.workers {
            // Each thread's socket takes its own share of new connections:
            // a thread that can never hold a slot would leave its share
            // waiting.
            err("proxy.max_connections", "must be at least 1 and at least proxy.workers".into());
        }
        if self.store.max_connections == 0 {
            err("store.max_connections", "must be at least 1".into());
        }
        if self.store.poll_interval_ms < 10 {
            err("store.poll_interval_ms", "must be at least 10".into());
        }
        for (path, v) in [
            ("proxy.header_read_timeout_ms", self.proxy.header_read_timeout_ms),
            ("proxy.body_read_timeout_ms", self.proxy.body_read_timeout_ms),
            ("proxy.drain_timeout_ms", self.proxy.drain_timeout_ms),
            ("store.connect_timeout_ms", self.store.connect_timeout_ms),
            ("upstream.connect_timeout_ms", self.upstream.connect_timeout_ms),
            ("upstream.response_timeout_ms", self.upstream.response_timeout_ms),
            ("upstream.pool_idle_timeout_ms", self.upstream.pool_idle_timeout_ms),
        ] {
            if v == 0 {
                err(path, "must be greater than 0".into());
            }
        }
        if self.proxy.http2_cleartext && self.proxy.tls.is_some() {
            err(
                "proxy.http2_cleartext",
                "must be false when proxy.tls is set (over TLS, HTTP/2 is offered by ALPN)".into(),
            );
        }
        if !(1024..=1024 * 1024).contains(&self.proxy.max_header_bytes) {
            err(
                "proxy.max_header_bytes",
                format!("must be between 1024 and 1048576, got {}", self.proxy.max_header_bytes),
            );
        }
        if self.proxy.key_headers.is_empty() && self.proxy.key_query_param.is_none() {
            err("proxy.key_headers", "name at least one header (or set proxy.key_query_param)".into());
        }
        for (i, name) in self.proxy.key_headers.iter().enumerate() {
            if http::HeaderName::from_bytes(name.as_bytes()).is_err() || name.to_ascii_lowercase() != *name {
                err(&format!("proxy.key_headers[{i}]"), format!("not a lowercase header name: {name:?}"));
            }
        }
        if self.proxy.key_query_param.as_deref().is_some_and(str::is_empty) {
            err("proxy.key_query_param", "must not be empty".into());
        }
        for (path, prefix) in
            [("keys.live_prefix", &self.keys.live_prefix), ("keys.test_prefix", &self.keys.test_prefix)]
        {
            let ok = !prefix.is_empty()
                && prefix.len() <= 32
                && prefix.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
                && !prefix.starts_with('_')
                && !prefix.ends_with('_');
            if !ok {
                err(path, format!("must be 1-32 of a-z, 0-9 and inner \"_\", got {prefix:?}"));
            }
        }
        if let Some(q) = self.limits.default_per_key {
            // The bounds a key's own limit has: every value in them is enforced.
            if !(1..=MAX_REQUESTS).contains(&q.requests) {
                err("limits.default_per_key.requests", format!("must be between 1 and {MAX_REQUESTS}"));
            }
            if !(1..=MAX_PER_SECONDS).contains(&q.per_seconds) {
                err("limits.default_per_key.per_seconds", format!("must be between 1 and {MAX_PER_SECONDS}"));
            }
        }
        if self.limits.failed_auth_per_minute > 0 && self.limits.failed_auth_burst == 0 {
            err("limits.failed_auth_burst", "must be at least 1 when the guard is on".into());
        }
        if !(32..=128).contains(&self.limits.failed_auth_ipv6_prefix) {
            err(
                "limits.failed_auth_ipv6_prefix",
                format!("must be between 32 and 128, got {}", self.limits.failed_auth_ipv6_prefix),
            );
        }
        for (path, message) in self.limits.fleet_errors() {
            err(path, message);
        }
        if self.usage.flush_interval_ms < 10 {
            err("usage.flush_interval_ms", "must be at least 10".into());
        }
        if self.usage.retention_days == 0 {
            err("usage.retention_days", "must be at least 1".into());
        }
        if self.metrics.per_key_limit == 0 {
            err("metrics.per_key_limit", "must be at least 1".into());
        }
        if self.keys.live_prefix == self.keys.test_prefix {
            err("keys.test_prefix", "must differ from keys.live_prefix".into());
        }
        if tracing_subscriber::EnvFilter::try_new(&self.log.level).is_err() {
            err("log.level", format!("not a log filter: {:?}", self.log.level));
        }
        if let Some(file) = &self.upstream.ca_file {
            if let Err(e) = std::fs::metadata(file) {
                err("upstream.ca_file", format!("cannot read {file:?}: {e}"));
            }
        }
        for (section, tls) in [("proxy", &self.proxy.tls), ("admin", &self.admin.tls)] {
            if let Some(tls) = tls {
                for (field, file) in [("cert_file", &tls.cert_file), ("key_file", &tls.key_file)] {
                    if let Err(e) = std::fs::metadata(file) {
                        err(&format!("{section}.tls.{field}"), format!("cannot read {file:?}: {e}"));
                    }
                }
            }
        }
        if let Some(identity) = &self.proxy.identity_token {
            identity.check(&mut errors);
        }
        errors.extend(self.authz.check(self.proxy.listen, self.admin.listen));
        self.telemetry.check(&mut errors);
        self.webhooks.check(&mut errors);
        errors
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, QuotaConfig};

    #[test]
    fn a_default_limit_beyond_the_bounds_of_a_keys_own_is_refused() {
        let paths = |requests, per_seconds| {
            let mut config = Config::default();
            config.limits.default_per_key = Some(QuotaConfig { requests, per_seconds });
            config.validate().into_iter().map(|e| e.path).collect::<Vec<_>>()
        };
        assert!(paths(1_000_000, 86_400).is_empty());
        assert_eq!(paths(4_294_967_295, 1), ["limits.default_per_key.requests"]);
        assert_eq!(paths(0, 0), ["limits.default_per_key.requests", "limits.default_per_key.per_seconds"]);
    }
}
