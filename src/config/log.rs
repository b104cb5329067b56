//! The `log` section: format, filter and the access log. Only values here;
//! `main` installs the subscriber and `telemetry::access` writes the
//! access lines.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// `text` or `json` (one JSON object per line).
    pub format: LogFormat,
    /// A tracing filter: `info`, `keygate=debug,info`, …
    pub level: String,
    /// One line per proxied request (target `keygate::access`): request id,
    /// key and account ids, method, path without query, status, decision
    /// code, upstream and total time. Never a secret or a query string.
    /// Written whatever `level` says.
    pub access: bool,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig { format: LogFormat::Text, level: "info".into(), access: false }
    }
}
