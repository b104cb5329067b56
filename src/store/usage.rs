//! Usage write-behind: increments of request counts and last-used times,
//! and hourly buckets per outcome for usage over time.
//! These writes do not bump the revision: usage is not policy, and the
//! snapshot never needs to reload for it.

use super::{on_pool, Result, Store};

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
    /// Adds the deltas in one transaction: all or none.
    pub async fn add_usage(&self, deltas: &[UsageDelta]) -> Result<()> {
        on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            for d in deltas {
                sqlx::query(
                    "UPDATE api_keys SET usage_count = usage_count + $1, \
                     last_used_at = CASE WHEN last_used_at IS NULL OR last_used_at < $2 THEN $2 ELSE last_used_at END \
                     WHERE id = $3",
                )
                .bind(d.requests)
                .bind(d.last_used_ms)
                .bind(&d.key_id)
                .execute(&mut *tx)
                .await?;
                for (outcome, n) in &d.outcomes {
                    sqlx::query(
                        "INSERT INTO usage_hourly (key_id, hour, outcome, requests) VALUES ($1, $2, $3, $4) \
                         ON CONFLICT (key_id, hour, outcome) DO UPDATE SET requests = usage_hourly.requests + excluded.requests",
                    )
                    .bind(&d.key_id)
                    .bind(d.hour)
                    .bind(*outcome)
                    .bind(*n)
                    .execute(&mut *tx)
                    .await?;
                }
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
