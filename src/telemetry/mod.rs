//! What the proxy tells the outside about each request, when asked to:
//! OpenTelemetry spans over OTLP (`telemetry.otlp_endpoint`) and the access
//! log (`log.access`). Both off, the proxy holds no `Telemetry` and its
//! request path pays one `Option` check: no clock read, no allocation, no
//! header parsed.
//!
//! On, a `Record` rides along with the request: `begin` reads the caller's
//! `traceparent` and notes method, path (never the query) and start time;
//! the proxy adds the key's identity and the upstream's answer; `finish`
//! writes the access line and queues the span. The decision code comes from
//! the response itself (`proxy::refuse` tags every problem response with
//! its `ProxyCode`), so no refusal branch has to remember to report.

pub mod access;
pub mod context;
pub mod export;
pub mod otlp;
pub mod span;
pub mod throttle;

use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use http::{HeaderMap, Method, Request, Response};
use prometheus::{IntCounter, IntCounterVec, Opts};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use self::context::SpanContext;
use self::export::{ExportCounters, ExportTask};
use self::span::Span;
use crate::config::Config;
use crate::contract::request_id::X_REQUEST_ID;
use crate::contract::ProxyCode;
use crate::keys::{Identity, InlineId};
use crate::metrics::Metrics;
use crate::shutdown::Shutdown;

/// The proxy's observers; exists only when at least one is on.
#[derive(Debug)]
pub struct Telemetry {
    tracer: Option<Tracer>,
    access: bool,
    /// Taken by `spawn`.
    task: Mutex<Option<ExportTask>>,
}

#[derive(Debug)]
struct Tracer {
    queue: mpsc::Sender<Span>,
    sample_ratio: f64,
    dropped: IntCounter,
}

/// One request as the observers see it, filled in along the request path.
#[derive(Debug)]
pub struct Record {
    start_unix_nanos: u64,
    method: Method,
    path: String,
    context: Option<SpanContext>,
    key_id: Option<InlineId>,
    account_id: Option<InlineId>,
    upstream_sent: Option<Instant>,
    upstream_time: Option<Duration>,
    upstream_status: Option<u16>,
}

impl Telemetry {
    /// The observers `config` turns on (`None` when none is), with the
    /// exporter's counters registered in `metrics` either way.
    pub fn new(config: &Config, metrics: &Metrics) -> anyhow::Result<Option<Telemetry>> {
        let counters = register_counters(metrics)?;
        let telemetry = &config.telemetry;
        let url = telemetry.traces_url().map_err(|e| anyhow::anyhow!("telemetry.otlp_endpoint: {e}"))?;
        let (tracer, task) = match url {
            Some(url) => {
                let origin = otlp::Origin {
                    service_name: telemetry.service_name.clone(),
                    service_version: env!("CARGO_PKG_VERSION"),
                };
                let dropped = counters.dropped_queue_full.clone();
                let (queue, task) = export::channel(url, origin, telemetry.queue_spans, counters)?;
                (Some(Tracer { queue, sample_ratio: telemetry.sample_ratio, dropped }), Some(task))
            }
            None => (None, None),
        };
        if tracer.is_none() && !config.log.access {
            return Ok(None);
        }
        Ok(Some(Telemetry { tracer, access: config.log.access, task: Mutex::new(task) }))
    }

    /// Starts the exporter (once; later calls return `None`).
    pub fn spawn(&self, shutdown: Shutdown) -> Option<JoinHandle<()>> {
        let task = self.task.lock().ok()?.take()?;
        Some(tokio::spawn(task.run(shutdown)))
    }

    /// Starts observing `request`, before the proxy touches it.
    pub fn begin<B>(&self, request: &Request<B>) -> Record {
        let context = self.tracer.as_ref().map(|t| SpanContext::from_headers(request.headers(), t.sample_ratio));
        Record {
            start_unix_nanos: unix_nanos(),
            method: request.method().clone(),
            path: request.uri().path().to_owned(),
            context,
            key_id: None,
            account_id: None,
            upstream_sent: None,
            upstream_time: None,
            upstream_status: None,
        }
    }

    /// Reports the answered request: the access line, and the span when it
    /// is sampled. `total` runs to the response head.
    pub fn finish<B>(&self, record: Record, response: &Response<B>, total: Duration) {
        let status = response.status().as_u16();
        let decision = response.extensions().get::<ProxyCode>().map_or("allowed", |code| code.code());
        let request_id = response.headers().get(X_REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or("");
        if self.access {
            access::line(&record, request_id, status, decision, total);
        }
        let (Some(tracer), Some(context)) = (&self.tracer, record.context) else { return };
        if !context.sampled {
            return;
        }
        let span = Span {
            context,
            start_unix_nanos: record.start_unix_nanos,
            end_unix_nanos: record.start_unix_nanos.saturating_add(total.as_nanos() as u64),
            method: record.method,
            path: record.path,
            request_id: request_id.to_owned(),
            key_id: record.key_id,
            account_id: record.account_id,
            decision,
            status,
            upstream_status: record.upstream_status,
        };
        if tracer.queue.try_send(span).is_err() {
            tracer.dropped.inc();
        }
    }
}

impl Record {
    /// The key the request was allowed with.
    pub fn identity(&mut self, identity: &Identity) {
        self.key_id = Some(identity.key_id);
        self.account_id = Some(identity.account_id);
    }

    /// The request is about to go upstream with `headers`: they get
    /// keygate's span as the `traceparent` parent (replacing the caller's).
    pub fn forwarding(&mut self, headers: &mut HeaderMap) {
        if let Some(context) = &self.context {
            context.inject(headers);
        }
        self.upstream_sent = Some(Instant::now());
    }

    /// The upstream answered with `status` (`None`: it failed).
    pub fn upstream_answered(&mut self, status: Option<u16>) {
        self.upstream_time = self.upstream_sent.map(|sent| sent.elapsed());
        self.upstream_status = status;
    }
}

fn register_counters(metrics: &Metrics) -> prometheus::Result<ExportCounters> {
    let exported = IntCounter::new("keygate_trace_spans_exported_total", "Spans the OTLP collector accepted.")?;
    let dropped = IntCounterVec::new(
        Opts::new(
            "keygate_trace_spans_dropped_total",
            "Spans lost: the export queue was full (queue_full) or the collector refused or missed a batch (export_failed).",
        ),
        &["reason"],
    )?;
    let counters = ExportCounters {
        exported: exported.clone(),
        dropped_queue_full: dropped.with_label_values(&["queue_full"]),
        dropped_export_failed: dropped.with_label_values(&["export_failed"]),
    };
    metrics.register(Box::new(exported))?;
    metrics.register(Box::new(dropped))?;
    Ok(counters)
}

fn unix_nanos() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}

/// An error and its causes on one line.
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}
