//! The `telemetry` section: OpenTelemetry traces over OTLP/HTTP. Off unless
//! `otlp_endpoint` is set. Only values and their checks here; the exporter
//! is `crate::telemetry`.

use http::uri::{PathAndQuery, Scheme};
use http::Uri;
use serde::{Deserialize, Serialize};

use super::{redact, FieldError};

/// Spans waiting for export beyond this are dropped (and counted).
pub const DEFAULT_QUEUE_SPANS: usize = 8192;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct TelemetryConfig {
    /// The OTLP/HTTP base URL of a collector (`http://otel-collector:4318`):
    /// spans are POSTed as protobuf to `<otlp_endpoint>/v1/traces`. Unset:
    /// no traces, and the request path does no tracing work.
    pub otlp_endpoint: Option<String>,
    /// The `service.name` resource attribute of every span.
    pub service_name: String,
    /// The share of new traces (no incoming `traceparent`) that are
    /// recorded, 0.0–1.0. A request that continues a trace follows its
    /// caller's sampled flag.
    pub sample_ratio: f64,
    /// Spans held for export at most; past it, new spans are dropped and
    /// counted in `keygate_trace_spans_dropped_total`.
    pub queue_spans: usize,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        TelemetryConfig {
            otlp_endpoint: None,
            service_name: "keygate".into(),
            sample_ratio: 1.0,
            queue_spans: DEFAULT_QUEUE_SPANS,
        }
    }
}

impl TelemetryConfig {
    /// The URL spans are POSTed to, when traces are on.
    pub fn traces_url(&self) -> Result<Option<Uri>, String> {
        let Some(endpoint) = &self.otlp_endpoint else { return Ok(None) };
        let shown = || redact(endpoint);
        let uri: Uri = endpoint.parse().map_err(|e| format!("not a URL {:?}: {e}", shown()))?;
        match uri.scheme() {
            Some(s) if *s == Scheme::HTTP || *s == Scheme::HTTPS => {}
            _ => return Err(format!("must be an http:// or https:// URL, got {:?}", shown())),
        }
        if uri.host().is_none_or(str::is_empty) {
            return Err(format!("must name a host, got {:?}", shown()));
        }
        if uri.query().is_some() {
            return Err(format!("must not have a query string, got {:?}", shown()));
        }
        // The OTLP base-URL convention: the signal's path goes after the
        // base path, which may be empty.
        let path = format!("{}/v1/traces", uri.path().trim_end_matches('/'));
        let mut parts = uri.into_parts();
        parts.path_and_query = Some(PathAndQuery::try_from(path).map_err(|e| format!("{e}: {:?}", shown()))?);
        Uri::from_parts(parts).map(Some).map_err(|e| format!("{e}: {:?}", shown()))
    }

    /// Every problem with the section, each under its field.
    pub(super) fn check(&self, errors: &mut Vec<FieldError>) {
        let mut err = |field: &str, message: String| {
            errors.push(FieldError { path: format!("telemetry.{field}"), message });
        };
        if let Err(message) = self.traces_url() {
            err("otlp_endpoint", message);
        }
        if self.service_name.trim().is_empty() {
            err("service_name", "must not be empty".into());
        }
        if !(0.0..=1.0).contains(&self.sample_ratio) {
            err("sample_ratio", format!("must be between 0.0 and 1.0, got {}", self.sample_ratio));
        }
        if self.queue_spans == 0 {
            err("queue_spans", "must be at least 1".into());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_endpoint(url: &str) -> TelemetryConfig {
        TelemetryConfig { otlp_endpoint: Some(url.into()), ..TelemetryConfig::default() }
    }

    #[test]
    fn traces_go_under_the_base_path() {
        let url = |base: &str| with_endpoint(base).traces_url().expect("valid").expect("set").to_string();
        assert_eq!(url("http://collector:4318"), "http://collector:4318/v1/traces");
        assert_eq!(url("https://otel.example/base/"), "https://otel.example/base/v1/traces");
        assert_eq!(TelemetryConfig::default().traces_url(), Ok(None));
    }

    #[test]
    fn each_bad_field_is_named() {
        let config = TelemetryConfig {
            otlp_endpoint: Some("ftp://user:hunter2@x/".into()),
            service_name: " ".into(),
            sample_ratio: 1.5,
            queue_spans: 0,
        };
        let mut errors = Vec::new();
        config.check(&mut errors);
        let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            ["telemetry.otlp_endpoint", "telemetry.service_name", "telemetry.sample_ratio", "telemetry.queue_spans"]
        );
        assert!(!errors[0].message.contains("hunter2"), "{}", errors[0].message);
        for bad in ["http://x:4318/?token=1", "collector:4318", "http:///v1"] {
            assert!(with_endpoint(bad).traces_url().is_err(), "{bad}");
        }
    }
}
