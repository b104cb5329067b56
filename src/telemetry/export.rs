//! The span exporter: a bounded queue the request path `try_send`s into
//! (full: the span is dropped and counted, never waited for) and one task
//! that batches spans (up to `BATCH_SPANS`, or whatever arrived within
//! `BATCH_INTERVAL`) and POSTs each batch as OTLP protobuf with the hyper
//! client already used for upstreams.
//!
//! A collector that is down costs the request path nothing: failed batches
//! are counted, logged at most once a second, and dropped (no retry queue
//! to grow while it stays down).

use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE};
use http::{Method, Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use prometheus::IntCounter;
use tokio::sync::mpsc;
use tokio::time::{Instant, MissedTickBehavior};

use super::otlp::{export_request, Origin};
use super::span::Span;
use super::throttle::Throttle;
use crate::shutdown::Shutdown;

/// Spans in one POST at most.
pub const BATCH_SPANS: usize = 512;
/// A batch goes out at least this often while spans arrive.
pub const BATCH_INTERVAL: Duration = Duration::from_secs(1);
/// One POST may take this long.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);
/// After shutdown, spans of requests still draining are waited for, and a
/// POST in flight, this long at most: a hung collector must not hold up a
/// stop.
const STOP_GRACE: Duration = Duration::from_secs(2);

/// The counters of the exporter (registered whether traces are on or not,
/// so dashboards find them).
#[derive(Debug, Clone)]
pub struct ExportCounters {
    pub exported: IntCounter,
    pub dropped_queue_full: IntCounter,
    pub dropped_export_failed: IntCounter,
}

/// The exporter's task, waiting to be spawned.
pub struct ExportTask {
    queue: mpsc::Receiver<Span>,
    url: Uri,
    origin: Origin,
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    counters: ExportCounters,
    warnings: Throttle,
}

impl std::fmt::Debug for ExportTask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExportTask").field("url", &self.url).finish_non_exhaustive()
    }
}

/// The queue and its task: `(sender, task)`.
pub fn channel(
    url: Uri,
    origin: Origin,
    queue_spans: usize,
    counters: ExportCounters,
) -> anyhow::Result<(mpsc::Sender<Span>, ExportTask)> {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(Duration::from_secs(2)));
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(crate::tls::upstream_client_config(None)?)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    let client = Client::builder(TokioExecutor::new()).build(https);
    let (sender, queue) = mpsc::channel(queue_spans);
    Ok((sender, ExportTask { queue, url, origin, client, counters, warnings: Throttle::new(1) }))
}

impl ExportTask {
    /// Runs until every sender is gone (the proxy has stopped), or
    /// `STOP_GRACE` after `shutdown`, sending what is queued before it ends.
    pub async fn run(mut self, shutdown: Shutdown) {
        let mut batch = Vec::with_capacity(BATCH_SPANS);
        let mut tick = tokio::time::interval(BATCH_INTERVAL);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut stop_at: Option<Instant> = None;
        loop {
            let deadline = stop_at.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
            tokio::select! {
                span = self.queue.recv() => match span {
                    Some(span) => {
                        batch.push(span);
                        if batch.len() >= BATCH_SPANS {
                            self.export(&mut batch, &shutdown).await;
                        }
                    }
                    None => break,
                },
                _ = tick.tick() => self.export(&mut batch, &shutdown).await,
                _ = shutdown.wait(), if stop_at.is_none() => stop_at = Some(Instant::now() + STOP_GRACE),
                _ = tokio::time::sleep_until(deadline), if stop_at.is_some() => break,
            }
        }
        while let Ok(span) = self.queue.try_recv() {
            batch.push(span);
            if batch.len() >= BATCH_SPANS {
                self.export(&mut batch, &shutdown).await;
            }
        }
        self.export(&mut batch, &shutdown).await;
    }

    /// POSTs `batch` (emptying it); counts what was sent or lost.
    async fn export(&self, batch: &mut Vec<Span>, shutdown: &Shutdown) {
        if batch.is_empty() {
            return;
        }
        let body = export_request(&self.origin, batch);
        let count = batch.len() as u64;
        batch.clear();
        let stopped = async {
            shutdown.wait().await;
            tokio::time::sleep(STOP_GRACE).await;
        };
        tokio::select! {
            posted = tokio::time::timeout(EXPORT_TIMEOUT, self.post(body)) => match posted {
                Ok(Ok(())) => self.counters.exported.inc_by(count),
                Ok(Err(error)) => self.failed(count, &error),
                Err(_) => self.failed(count, &format!("no answer within {} s", EXPORT_TIMEOUT.as_secs())),
            },
            _ = stopped => self.failed(count, "the gateway stopped before the collector answered"),
        }
    }

    async fn post(&self, body: Vec<u8>) -> Result<(), String> {
        let request = Request::builder()
            .method(Method::POST)
            .uri(self.url.clone())
            .header(CONTENT_TYPE, HeaderValue::from_static("application/x-protobuf"))
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| e.to_string())?;
        let response = self.client.request(request).await.map_err(|e| super::error_chain(&e))?;
        let status = response.status();
        // Read the answer to the end so the connection can be reused.
        let _ = response.into_body().collect().await;
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("the collector answered {status}"))
        }
    }

    fn failed(&self, spans: u64, error: &str) {
        self.counters.dropped_export_failed.inc_by(spans);
        if let Some(suppressed) = self.warnings.admit(0) {
            tracing::warn!(spans, suppressed, error, "trace export failed; the spans are dropped");
        }
    }
}
