//! Prometheus metrics, served on the admin port at `/metrics`.
//!
//! Per-key series (`keygate_key_requests_total{key_id,account_id,outcome}`)
//! come from a custom collector that reads the counters the request path
//! already keeps on each key — no label lookup per request — capped at
//! `metrics.per_key_limit` keys: the busiest are kept and the rest summed
//! into one `key_id="other"` series per outcome. Histograms are resolved
//! per route and status class at start-up, so recording one is a few atomic
//! adds. Gauges about the snapshot, the store and the usage flush are set
//! at scrape time, and so are the failure counters kept by the reloader and
//! the flusher: a name ending in `_total` is always a counter. Also
//! `keygate_build_info{version}` and, on Linux, the standard `process_*`
//! metrics (CPU, memory, open files). Configuration reloads (SIGHUP) are
//! counted by result, with the time of the last good one. Quota gauges
//! (`quotas`) come from the quota book, capped like the per-key series.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use prometheus::core::{Collector, Desc};
use prometheus::proto::{Counter, LabelPair, Metric, MetricFamily, MetricType};
use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

mod quotas;

use crate::clock::now_ms;
use crate::keys::{Counts, InlineId, KeySet, Outcome, Refusal};
use crate::reload::Reloader;
use crate::usage::Flusher;

const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// How an upstream exchange failed.
#[derive(Debug, Clone, Copy)]
pub enum UpstreamError {
    Connect,
    Timeout,
    Broken,
}

pub struct Metrics {
    registry: Registry,
    /// Resolved per route into `RouteDurations` for each routing table.
    durations: HistogramVec,
    /// `[ok, error]`.
    config_reloads: [IntCounter; 2],
    config_last_success: Gauge,
    auth_failures: Vec<IntCounter>,
    upstream_errors: [IntCounter; 3],
    snapshot_keys: IntGauge,
    snapshot_revision: IntGauge,
    snapshot_age: Gauge,
    store_up: IntGauge,
    quota_store_up: IntGauge,
    reload_failures: IntCounter,
    flush_lag: Gauge,
    flush_failures: IntCounter,
    /// With `limits.redis_url` only: `keygate_redis_up`, `keygate_redis_sync_errors_total`.
    redis: Option<(IntGauge, IntCounter)>,
    /// Keys imported by hash: waiting for their first use, sha256 lookups
    /// made, keys moved to blake3 (`keys::foreign`).
    foreign: (IntGauge, IntCounter, IntCounter),
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Metrics {
    pub fn new(keyset: Arc<ArcSwap<KeySet>>, per_key_limit: usize) -> prometheus::Result<Arc<Metrics>> {
        let registry = Registry::new();
        let durations_vec = HistogramVec::new(
            HistogramOpts::new(
                "keygate_request_duration_seconds",
                "Time from request head to response head through keygate (its added latency plus the upstream's), by route and status class.",
            )
            .buckets(vec![0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]),
            &["route", "status_class"],
        )?;
        let reloads_vec = IntCounterVec::new(
            Opts::new("keygate_config_reloads_total", "Configuration reloads (SIGHUP), by result (ok or error)."),
            &["result"],
        )?;
        let config_reloads = ["ok", "error"].map(|r| reloads_vec.with_label_values(&[r]));
        let config_last_success = Gauge::new(
            "keygate_config_last_reload_success_timestamp_seconds",
            "Unix time the running configuration was loaded (at start, then by each successful reload).",
        )?;
        config_last_success.set(now_ms() as f64 / 1000.0);
        let failures_vec = IntCounterVec::new(
            Opts::new("keygate_auth_failures_total", "Requests refused before reaching an upstream, by code."),
            &["code"],
        )?;
        let auth_failures = Refusal::ALL.iter().map(|r| failures_vec.with_label_values(&[r.code()])).collect();
        let upstream_vec = IntCounterVec::new(
            Opts::new("keygate_upstream_errors_total", "Failed upstream exchanges, by kind."),
            &["kind"],
        )?;
        let upstream_errors = ["connect", "timeout", "broken"].map(|k| upstream_vec.with_label_values(&[k]));
        let snapshot_keys = IntGauge::new(
            "keygate_snapshot_keys",
            "Secrets (current, retired, imported by hash) in the key snapshot.",
        )?;
        let foreign = (
            IntGauge::new("keygate_foreign_hash_keys", "Keys imported as a sha256 hash and not used since.")?,
            IntCounter::new(
                "keygate_foreign_hash_lookups_total",
                "Lookups by sha256, made when the blake3 lookup missed while keys imported by hash existed.",
            )?,
            IntCounter::new(
                "keygate_foreign_hash_moved_total",
                "Keys imported by hash that this process moved to blake3 on their first use.",
            )?,
        );
        let snapshot_revision =
            IntGauge::new("keygate_snapshot_revision", "Store revision the key snapshot reflects.")?;
        let snapshot_age = Gauge::new(
            "keygate_snapshot_age_seconds",
            "Seconds since the snapshot was last confirmed current with the store.",
        )?;
        let store_up = IntGauge::new("keygate_store_up", "1 when the store answered the last check, 0 when not.")?;
        let quota_store_up = IntGauge::new(
            "keygate_quota_store_up",
            "1 when quota spending reached the store at the last sync (shared with the fleet), 0 when this replica counts alone.",
        )?;
        let reload_failures = IntCounter::new("keygate_reload_failures_total", "Failed reloads and revision checks.")?;
        let flush_lag =
            Gauge::new("keygate_usage_flush_lag_seconds", "Seconds since usage was last written to the store.")?;
        let flush_failures =
            IntCounter::new("keygate_usage_flush_failures_total", "Failed usage flushes (their counts are retried).")?;
        let build_info = IntGaugeVec::new(
            Opts::new("keygate_build_info", "Always 1; the version of the running binary is in the label."),
            &["version"],
        )?;
        build_info.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        registry.register(Box::new(build_info))?;
        #[cfg(target_os = "linux")]
        registry.register(Box::new(prometheus::process_collector::ProcessCollector::for_self()))?;
        registry.register(Box::new(durations_vec.clone()))?;
        registry.register(Box::new(reloads_vec))?;
        registry.register(Box::new(config_last_success.clone()))?;
        registry.register(Box::new(failures_vec))?;
        registry.register(Box::new(upstream_vec))?;
        for g in [&snapshot_keys, &snapshot_revision, &store_up, &quota_store_up, &foreign.0] {
            registry.register(Box::new(g.clone()))?;
        }
        for c in [&reload_failures, &flush_failures, &foreign.1, &foreign.2] {
            registry.register(Box::new(c.clone()))?;
        }
        registry.register(Box::new(snapshot_age.clone()))?;
        registry.register(Box::new(flush_lag.clone()))?;
        let redis = match keyset.load().fleet() {
            Some(_) => {
                let up = IntGauge::new(
                    "keygate_redis_up",
                    "1 when the last sync of rate limits with Redis succeeded, 0 when not (each replica counts alone).",
                )?;
                let errors = IntCounter::new(
                    "keygate_redis_sync_errors_total",
                    "Failed syncs of rate limits with Redis (connects, timeouts, error replies).",
                )?;
                registry.register(Box::new(up.clone()))?;
                registry.register(Box::new(errors.clone()))?;
                Some((up, errors))
            }
            None => None,
        };
        registry.register(Box::new(quotas::QuotaCollector::new(Arc::clone(&keyset), per_key_limit)?))?;
        registry.register(Box::new(KeyCollector::new(keyset, per_key_limit)?))?;
        Ok(Arc::new(Metrics {
            registry,
            durations: durations_vec,
            config_reloads,
            config_last_success,
            auth_failures,
            upstream_errors,
            snapshot_keys,
            snapshot_revision,
            snapshot_age,
            store_up,
            quota_store_up,
            reload_failures,
            flush_lag,
            flush_failures,
            redis,
            foreign,
        }))
    }

    /// Adds a part's own metrics (`telemetry`'s) to the scrape.
    pub fn register(&self, collector: Box<dyn Collector>) -> prometheus::Result<()> {
        self.registry.register(collector)
    }

    /// The duration histograms of a routing table: `routes` names each
    /// route for the `route` label, index 0 being the default upstream.
    /// Resolved once per table so that recording is a few atomic adds.
    pub fn route_durations(&self, routes: &[String]) -> RouteDurations {
        RouteDurations(
            routes
                .iter()
                .map(|route| STATUS_CLASSES.map(|class| self.durations.with_label_values(&[route.as_str(), class])))
                .collect(),
        )
    }

    /// Counts one configuration reload; a good one also moves the
    /// last-success time.
    pub fn config_reloaded(&self, ok: bool) {
        if ok {
            self.config_reloads[0].inc();
            self.config_last_success.set(now_ms() as f64 / 1000.0);
        } else {
            self.config_reloads[1].inc();
        }
    }

    pub fn auth_failure(&self, refusal: Refusal) {
        if let Some(i) = Refusal::ALL.iter().position(|r| *r == refusal) {
            self.auth_failures[i].inc();
        }
    }

    pub fn upstream_error(&self, kind: UpstreamError) {
        self.upstream_errors[kind as usize].inc();
    }

    /// The text exposition, with the scrape-time gauges brought up to date.
    pub fn render(&self, reloader: &Reloader, flusher: &Flusher) -> String {
        let snapshot = reloader.keyset().load_full();
        self.snapshot_keys.set(snapshot.len() as i64);
        self.foreign.0.set(snapshot.foreign_len() as i64);
        catch_up(&self.foreign.1, snapshot.sightings().lookups());
        catch_up(&self.foreign.2, snapshot.sightings().moved_total());
        self.snapshot_revision.set(snapshot.revision());
        let last = reloader.last_success_ms();
        self.snapshot_age.set(if last > 0 { (now_ms() - last).max(0) as f64 / 1000.0 } else { -1.0 });
        self.store_up.set(i64::from(reloader.store_up()));
        self.quota_store_up.set(i64::from(reloader.quotas().shared()));
        catch_up(&self.reload_failures, reloader.failures());
        self.flush_lag.set(flusher.lag_seconds());
        catch_up(&self.flush_failures, flusher.failures.load(Ordering::Relaxed));
        if let (Some((up, errors)), Some(fleet)) = (&self.redis, snapshot.fleet()) {
            up.set(i64::from(fleet.is_up()));
            catch_up(errors, fleet.sync_errors());
        }
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::error!(error = %e, "cannot encode metrics");
        }
        String::from_utf8(out).unwrap_or_default()
    }
}

/// `keygate_request_duration_seconds` of one routing table, `[route][status
/// class]`.
#[derive(Debug, Clone)]
pub struct RouteDurations(Vec<[Histogram; 5]>);

impl RouteDurations {
    /// Records one answered request.
    pub fn observe(&self, route: usize, status: u16, elapsed: Duration) {
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        if let Some(h) = self.0.get(route).or_else(|| self.0.first()) {
            h[class].observe(elapsed.as_secs_f64());
        }
    }
}

/// Brings a counter up to the running total kept by its owner (which only
/// grows), so it is a true counter without a second increment on the path
/// that counts.
fn catch_up(counter: &IntCounter, total: u64) {
    let shown = counter.get();
    if total > shown {
        counter.inc_by(total - shown);
    }
}

/// `keygate_key_requests_total` from the per-key counters of the snapshot.
struct KeyCollector {
    keyset: Arc<ArcSwap<KeySet>>,
    limit: usize,
    desc: Desc,
}

const KEY_METRIC: &str = "keygate_key_requests_total";
const KEY_HELP: &str = "Requests per API key by outcome (allowed or a refusal code); keys beyond metrics.per_key_limit are summed into key_id=\"other\".";

impl KeyCollector {
    fn new(keyset: Arc<ArcSwap<KeySet>>, limit: usize) -> prometheus::Result<Self> {
        let desc = Desc::new(
            KEY_METRIC.into(),
            KEY_HELP.into(),
            vec!["key_id".into(), "account_id".into(), "outcome".into()],
            Default::default(),
        )?;
        Ok(KeyCollector { keyset, limit, desc })
    }
}

fn series(key_id: &str, account_id: &str, outcome: &str, value: u64) -> Metric {
    let label = |name: &str, value: &str| {
        let mut l = LabelPair::default();
        l.set_name(name.into());
        l.set_value(value.into());
        l
    };
    let mut counter = Counter::default();
    counter.set_value(value as f64);
    let mut m =
        Metric::from_label(vec![label("key_id", key_id), label("account_id", account_id), label("outcome", outcome)]);
    m.set_counter(counter);
    m
}

impl Collector for KeyCollector {
    fn desc(&self) -> Vec<&Desc> {
        vec![&self.desc]
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let mut used: Vec<(u64, InlineId, Arc<Counts>)> = self
            .keyset
            .load()
            .usage()
            .all()
            .into_iter()
            .map(|(id, c)| (c.total(), id, c))
            .filter(|(t, _, _)| *t > 0)
            .collect();
        if used.len() > self.limit {
            used.select_nth_unstable_by(self.limit, |a, b| b.0.cmp(&a.0));
        }
        let split = used.len().min(self.limit);
        let (kept, rest) = used.split_at(split);
        let mut metrics = Vec::new();
        for (_, key_id, counts) in kept {
            for outcome in Outcome::ALL {
                let v = counts.get(outcome);
                if v > 0 {
                    metrics.push(series(key_id.as_str(), counts.account_id.as_str(), outcome.code(), v));
                }
            }
        }
        if !rest.is_empty() {
            let mut sums = [0u64; Outcome::COUNT];
            for (_, _, counts) in rest {
                for outcome in Outcome::ALL {
                    sums[outcome.index()] += counts.get(outcome);
                }
            }
            for outcome in Outcome::ALL {
                if sums[outcome.index()] > 0 {
                    metrics.push(series("other", "other", outcome.code(), sums[outcome.index()]));
                }
            }
        }
        let mut family = MetricFamily::default();
        family.set_name(KEY_METRIC.into());
        family.set_help(KEY_HELP.into());
        family.set_field_type(MetricType::COUNTER);
        family.set_metric(metrics);
        vec![family]
    }
}
