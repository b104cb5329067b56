//! The access log: one line per proxied request at target
//! `keygate::access` (INFO; `main` lets it through whatever `log.level`
//! says), formatted by the process's subscriber, so it is JSON when the log
//! is. Fields: request id, key and account ids (when the key was allowed),
//! method, path without the query string, status, decision code, upstream
//! and total time in milliseconds; the subscriber adds the time.
//!
//! No header value and no query string is ever written: keys travel in
//! both.

use std::time::Duration;

use super::Record;

/// The tracing target of access lines.
pub const TARGET: &str = "keygate::access";

/// Writes the access line of one answered request.
pub fn line(record: &Record, request_id: &str, status: u16, decision: &str, total: Duration) {
    tracing::info!(
        target: TARGET,
        request_id,
        key_id = record.key_id.as_ref().map(|id| id.as_str()),
        account_id = record.account_id.as_ref().map(|id| id.as_str()),
        method = record.method.as_str(),
        path = record.path.as_str(),
        status,
        decision,
        upstream_ms = record.upstream_time.map(millis),
        total_ms = millis(total),
        "request"
    );
}

/// `filter`, letting access lines through when `access` is on, whatever
/// level it sets for the rest.
pub fn let_through(filter: tracing_subscriber::EnvFilter, access: bool) -> tracing_subscriber::EnvFilter {
    match (access, format!("{TARGET}=info").parse()) {
        (true, Ok(directive)) => filter.add_directive(directive),
        _ => filter,
    }
}

/// Milliseconds with microsecond precision.
fn millis(duration: Duration) -> f64 {
    duration.as_micros() as f64 / 1000.0
}
