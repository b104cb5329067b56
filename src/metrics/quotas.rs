//! Quota gauges from the quota book, at scrape time:
//! `keygate_key_quota_used{key_id}` / `keygate_key_quota_remaining{key_id}`
//! for at most `metrics.per_key_limit` keys (those that spent the most),
//! and `keygate_account_quota_used{account_id}` /
//! `keygate_account_quota_remaining{account_id}` for pooled quotas (capped
//! the same way). Each replica reports what it knows: the ledger as of its
//! last sync plus its own spending since.

use std::sync::Arc;

use arc_swap::ArcSwap;
use prometheus::core::{Collector, Desc};
use prometheus::proto::{Gauge, LabelPair, Metric, MetricFamily, MetricType};

use crate::clock::now_ms;
use crate::keys::{InlineId, KeySet};

const FAMILIES: [(&str, &str, &str); 4] = [
    ("keygate_key_quota_used", "key_id", "Units of the key's own quota spent in its current period."),
    ("keygate_key_quota_remaining", "key_id", "Units of the key's own quota left in its current period."),
    (
        "keygate_account_quota_used",
        "account_id",
        "Units of the account's pooled (plan) quota spent in its current period.",
    ),
    (
        "keygate_account_quota_remaining",
        "account_id",
        "Units of the account's pooled (plan) quota left in its current period.",
    ),
];

pub(super) struct QuotaCollector {
    keyset: Arc<ArcSwap<KeySet>>,
    limit: usize,
    descs: Vec<Desc>,
}

impl QuotaCollector {
    pub(super) fn new(keyset: Arc<ArcSwap<KeySet>>, limit: usize) -> prometheus::Result<Self> {
        let descs = FAMILIES
            .iter()
            .map(|(name, label, help)| {
                Desc::new((*name).into(), (*help).into(), vec![(*label).into()], Default::default())
            })
            .collect::<prometheus::Result<_>>()?;
        Ok(QuotaCollector { keyset, limit, descs })
    }
}

fn gauge(label: &str, id: &InlineId, value: u64) -> Metric {
    let mut l = LabelPair::default();
    l.set_name(label.into());
    l.set_value(id.as_str().into());
    let mut g = Gauge::default();
    g.set_value(value as f64);
    let mut m = Metric::from_label(vec![l]);
    m.set_gauge(g);
    m
}

impl Collector for QuotaCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let keyset = self.keyset.load();
        let all = keyset.quotas().map(|q| q.all_usage(now_ms())).unwrap_or_default();
        let (mut keys, mut accounts): (Vec<_>, Vec<_>) =
            all.into_iter().partition(|(id, _, _)| !id.as_str().starts_with("acc_"));
        let mut families = Vec::with_capacity(4);
        for (owners, (used_name, label, used_help), (left_name, _, left_help)) in
            [(&mut keys, FAMILIES[0], FAMILIES[1]), (&mut accounts, FAMILIES[2], FAMILIES[3])]
        {
            if owners.len() > self.limit {
                owners.select_nth_unstable_by(self.limit, |a, b| b.1.cmp(&a.1));
                owners.truncate(self.limit);
            }
            for (name, help, value) in [(used_name, used_help, 1), (left_name, left_help, 2)] {
                let mut family = MetricFamily::default();
                family.set_name(name.into());
                family.set_help(help.into());
                family.set_field_type(MetricType::GAUGE);
                let metrics = owners
                    .iter()
                    .map(|(id, used, left)| gauge(label, id, if value == 1 { *used } else { *left }))
                    .collect();
                family.set_metric(metrics);
                families.push(family);
            }
        }
        families
    }
}
