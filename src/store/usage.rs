//! Usage write-behind: increments of request counts and last-used times.
//! These writes do not bump the revision: usage is not policy, and the
//! snapshot never needs to reload for it.

use super::{on_pool, Result, Store};

/// Requests counted in memory since the last flush, for one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageDelta {
    pub key_id: String,
    pub requests: i64,
    pub last_used_ms: i64,
}

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
            }
            tx.commit().await?;
        });
        Ok(())
    }
}
