//! The process's log subscriber, with its filter (`log.level`) and format
//! (`log.format`) behind tracing-subscriber's reload layers so that a
//! configuration reload can change both without a restart.
//!
//! What the operator fixed at start keeps winning over the file: a
//! `RUST_LOG` filter over `log.level`, `--log-format` over `log.format`.
//! Installs the global subscriber once (`Logging::init`); owns no other
//! state and writes to stderr only.

use std::sync::Mutex;

use tracing_subscriber::layer::{Layered, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter, Layer, Registry};

use crate::config::{LogConfig, LogFormat};
use crate::telemetry::access;

type Filtered = Layered<reload::Layer<EnvFilter, Registry>, Registry>;
type Output = Box<dyn Layer<Filtered> + Send + Sync>;

/// Handles on the installed subscriber.
pub struct Logging {
    filter: reload::Handle<EnvFilter, Registry>,
    output: reload::Handle<Output, Filtered>,
    /// `RUST_LOG` was set at start: `log.level` is not used.
    env_filter: bool,
    /// `--log-format` was given: `log.format` is not used.
    forced_format: Option<LogFormat>,
    /// `log.access` at start: the access log's target stays let through
    /// whatever level a reload sets (turning it on or off needs a restart).
    access: bool,
    /// The level and format in force.
    current: Mutex<(String, LogFormat)>,
}

impl std::fmt::Debug for Logging {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Logging").field("env_filter", &self.env_filter).finish()
    }
}

/// A validated logging change, applied by `Logging::apply`.
pub struct PreparedLogging {
    filter: Option<(String, EnvFilter)>,
    format: Option<LogFormat>,
}

impl Logging {
    /// Installs the global subscriber: `RUST_LOG` if set, else `log.level`;
    /// `forced_format` (`--log-format`) if given, else `log.format`.
    pub fn init(log: &LogConfig, forced_format: Option<LogFormat>) -> Logging {
        let from_env = EnvFilter::try_from_default_env().ok();
        let env_filter = from_env.is_some();
        let filter = from_env.or_else(|| EnvFilter::try_new(&log.level).ok()).unwrap_or_else(|| EnvFilter::new("info"));
        let filter = access::let_through(filter, log.access);
        let format = forced_format.unwrap_or(log.format);
        let (filter_layer, filter) = reload::Layer::new(filter);
        let (output_layer, output) = reload::Layer::new(output(format));
        // A second `init` (tests calling it twice) keeps the first subscriber.
        let _ = tracing_subscriber::registry().with(filter_layer).with(output_layer).try_init();
        Logging {
            filter,
            output,
            env_filter,
            forced_format,
            access: log.access,
            current: Mutex::new((log.level.clone(), format)),
        }
    }

    /// Checks `log` and says what would change; `Err` names the field.
    pub fn prepare(&self, log: &LogConfig) -> Result<PreparedLogging, String> {
        let Ok(current) = self.current.lock().map(|c| c.clone()) else {
            return Err("log: the logging state is poisoned".into());
        };
        let filter = if self.env_filter || log.level == current.0 {
            None
        } else {
            let filter = EnvFilter::try_new(&log.level)
                .map_err(|e| format!("log.level: not a log filter {:?}: {e}", log.level))?;
            Some((log.level.clone(), access::let_through(filter, self.access)))
        };
        let format = self.forced_format.unwrap_or(log.format);
        Ok(PreparedLogging { filter, format: (format != current.1).then_some(format) })
    }

    /// Puts a prepared change in force; returns what changed, for the log.
    pub fn apply(&self, prepared: PreparedLogging) -> Vec<&'static str> {
        let mut changed = Vec::new();
        let Ok(mut current) = self.current.lock() else { return changed };
        if let Some((level, filter)) = prepared.filter {
            match self.filter.reload(filter) {
                Ok(()) => {
                    current.0 = level;
                    changed.push("log.level");
                }
                Err(e) => tracing::error!(error = %e, "cannot change the log filter"),
            }
        }
        if let Some(format) = prepared.format {
            match self.output.reload(output(format)) {
                Ok(()) => {
                    current.1 = format;
                    changed.push("log.format");
                }
                Err(e) => tracing::error!(error = %e, "cannot change the log format"),
            }
        }
        changed
    }

    /// Whether `log.level` is overridden by `RUST_LOG`.
    pub fn level_from_env(&self) -> bool {
        self.env_filter
    }
}

/// The formatting layer for `format`, writing to stderr.
fn output(format: LogFormat) -> Output {
    let layer = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    match format {
        LogFormat::Json => layer.json().flatten_event(true).boxed(),
        LogFormat::Text => layer.with_ansi(false).boxed(),
    }
}
