//! Usage write-behind: increments of request counts and last-used times,
//! and hourly buckets per outcome for usage over time.
//! These writes do not bump the revision: usage is not policy, and the
//! snapshot never needs to reload for it.

use std::collections::BTreeMap;

use sqlx::QueryBuilder;

use super::{on_pool, Result, Store};

/// Rows per statement of `add_usage`: 4 parameters a row stays far below
/// SQLite's 32,766 and PostgreSQL's 65,535.
const USAGE_BATCH: usize = 500;

/// Per key (requests, latest use) and per (key, hour, outcome) requests,
/// each row once: PostgreSQL refuses an upsert touching a row twice, and
/// an `UPDATE … FROM` would apply only one of two matching rows.
type Merged<'a> = (Vec<(&'a str, i64, i64)>, Vec<((&'a str, i64, &'static str), i64)>);

fn merge(deltas: &[UsageDelta]) -> Merged<'_> {
    let mut keys: BTreeMap<&str, (i64, i64)> = BTreeMap::new();
    let mut hourly: BTreeMap<(&str, i64, &'static str), i64> = BTreeMap::new();
    for d in deltas {
        let key = keys.entry(&d.key_id).or_insert((0, d.last_used_ms));
        key.0 += d.requests;
        key.1 = key.1.max(d.last_used_ms);
        for (outcome, n) in &d.outcomes {
            *hourly.entry((&d.key_id, d.hour, outcome)).or_insert(0) += n;
        }
    }
    (keys.into_iter().map(|(id, (requests, last))| (id, requests, last)).collect(), hourly.into_iter().collect())
}

/// Requests counted in memory since the last flush, for one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageDelta {
    pub key_id: String,
    /// Allowed requests: what `usage_count` counts.
    pub requests: i64,
    pub last_used_ms: i64,
    /// Start of the hour (unix ms) the outcomes are booked to.
    pub hour: i64,
    /// Requests per outcome (`allowed` or a refusal code).
    pub outcomes: Vec<(&'static str, i64)>,
}

/// One key's hourly usage rows since some time: (hour, outcome, requests).
pub type UsageRows = Vec<(i64, String, i64)>;

impl Store {
    /// Adds the deltas in one transaction: all or none. A key may appear in
    /// several deltas (their counts add up).
    ///
    /// The rows go in batches of `USAGE_BATCH` per statement — one
    /// `UPDATE … FROM (VALUES …)` and one multi-row upsert each — not one
    /// statement per key and outcome: a flush of 10,000 keys is ~40
    /// statements instead of 20,000, which matters because the flusher
    /// shares the proxy's cores.
    pub async fn add_usage(&self, deltas: &[UsageDelta]) -> Result<()> {
        let (keys, hourly) = merge(deltas);
        on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            for chunk in keys.chunks(USAGE_BATCH) {
                // VALUES columns are column1.. in SQLite and PostgreSQL alike.
                let mut qb = QueryBuilder::new(
                    "UPDATE api_keys SET usage_count = usage_count + v.column2, \
                     last_used_at = CASE WHEN api_keys.last_used_at IS NULL OR api_keys.last_used_at < v.column3 \
                     THEN v.column3 ELSE api_keys.last_used_at END FROM (",
                );
                qb.push_values(chunk, |mut row, (key_id, requests, last_used)| {
                    row.push_bind(*key_id).push_bind(*requests).push_bind(*last_used);
                });
                qb.push(") AS v WHERE api_keys.id = v.column1");
                qb.build().execute(&mut *tx).await?;
            }
            for chunk in hourly.chunks(USAGE_BATCH) {
                let mut qb = QueryBuilder::new("INSERT INTO usage_hourly (key_id, hour, outcome, requests) ");
                qb.push_values(chunk, |mut row, ((key_id, hour, outcome), n)| {
                    row.push_bind(*key_id).push_bind(*hour).push_bind(*outcome).push_bind(*n);
                });
                qb.push(
                    " ON CONFLICT (key_id, hour, outcome) DO UPDATE SET requests = usage_hourly.requests + excluded.requests",
                );
                qb.build().execute(&mut *tx).await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// A key's hourly usage rows from `since` (unix ms) on, oldest first.
    pub async fn usage_since(&self, key_id: &str, since: i64) -> Result<UsageRows> {
        let rows = on_pool!(self, pool => {
            sqlx::query_as::<_, (i64, String, i64)>(
                "SELECT hour, outcome, requests FROM usage_hourly WHERE key_id = $1 AND hour >= $2 ORDER BY hour",
            )
            .bind(key_id)
            .bind(since)
            .fetch_all(pool)
            .await?
        });
        Ok(rows)
    }

    /// Deletes hourly usage older than `before`; returns the rows deleted.
    pub async fn prune_usage(&self, before: i64) -> Result<u64> {
        let done = on_pool!(self, pool => {
            sqlx::query("DELETE FROM usage_hourly WHERE hour < $1").bind(before).execute(pool).await?.rows_affected()
        });
        Ok(done)
    }
}
