//! Deliveries: one row per (event, webhook) with its retry state, claimed
//! by the delivery worker with a lease so replicas sharing one PostgreSQL
//! never make the same attempt twice, and the log of every attempt. Only
//! the rows: the HTTP is `crate::webhooks`'s.

use sqlx::QueryBuilder;

use super::webhooks::page;
use super::{on_pool, Backend, Cursor, Page, Result, Store, StoreError};

/// One attempt to deliver an event to a webhook.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct Attempt {
    /// `wha_…`.
    pub id: String,
    pub event_id: String,
    #[sqlx(rename = "type")]
    pub kind: String,
    pub attempt: i64,
    pub at: i64,
    pub status_code: Option<i64>,
    pub error: Option<String>,
    pub delivered: bool,
    /// When the next attempt is due; `None` once delivered or given up.
    pub next_attempt_at: Option<i64>,
}

/// A delivery a worker claimed: attempt number `attempt` is its own until
/// the lease it was claimed with runs out.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Claimed {
    pub delivery_id: i64,
    pub attempt: i64,
    pub webhook_id: String,
    pub url: String,
    /// The HMAC key. Never logged.
    pub secret: String,
    pub event_id: String,
    #[sqlx(rename = "type")]
    pub kind: String,
    pub event_created_at: i64,
    /// The event's `data`, as stored (JSON text).
    pub data: String,
}

/// What one attempt came to.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub status_code: Option<u16>,
    pub error: Option<String>,
    pub delivered: bool,
    /// `None` when delivered, or given up.
    pub next_attempt_at: Option<i64>,
}

/// Claims `$limit` due deliveries; PostgreSQL skips rows another replica is
/// claiming at the same moment, SQLite serialises writers anyway.
const CLAIM_POSTGRES: &str = "UPDATE webhook_deliveries SET lease_until = $1, attempts = attempts + 1 WHERE id IN \
     (SELECT id FROM webhook_deliveries WHERE done_at IS NULL AND next_attempt_at <= $2 AND lease_until <= $2 \
     ORDER BY next_attempt_at LIMIT $3 FOR UPDATE SKIP LOCKED) RETURNING id";
const CLAIM_SQLITE: &str = "UPDATE webhook_deliveries SET lease_until = $1, attempts = attempts + 1 WHERE id IN \
     (SELECT id FROM webhook_deliveries WHERE done_at IS NULL AND next_attempt_at <= $2 AND lease_until <= $2 \
     ORDER BY next_attempt_at LIMIT $3) RETURNING id";

impl Store {
    /// A webhook's attempts, newest first.
    pub async fn list_attempts(&self, webhook_id: &str, limit: u32, cursor: Option<&Cursor>) -> Result<Page<Attempt>> {
        let (at, id) = cursor.map(|c| (c.created_at, c.id.as_str())).unwrap_or((i64::MAX, ""));
        let sql = "SELECT id, event_id, type, attempt, at, status_code, error, delivered, next_attempt_at \
                   FROM webhook_attempts WHERE webhook_id = $1 \
                   AND (at < $2 OR (at = $2 AND id < $3) OR $3 = '') \
                   ORDER BY at DESC, id DESC LIMIT $4";
        let items: Vec<Attempt> = on_pool!(self, pool => {
            sqlx::query_as(sql).bind(webhook_id).bind(at).bind(id).bind(i64::from(limit) + 1).fetch_all(pool).await?
        });
        Ok(page(items, limit, |a| Cursor { created_at: a.at, id: a.id.clone() }))
    }

    /// Claims up to `limit` deliveries due at `now` until `lease_until`,
    /// each for its next attempt.
    pub async fn claim_deliveries(&self, now: i64, lease_until: i64, limit: u32) -> Result<Vec<Claimed>> {
        let claim = match self.backend() {
            Backend::Sqlite => CLAIM_SQLITE,
            Backend::Postgres => CLAIM_POSTGRES,
        };
        let ids: Vec<i64> = on_pool!(self, pool => {
            sqlx::query_scalar(claim).bind(lease_until).bind(now).bind(i64::from(limit)).fetch_all(pool).await?
        });
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let claimed: Vec<Claimed> = on_pool!(self, pool => {
            let mut qb = QueryBuilder::new(
                "SELECT d.id AS delivery_id, d.attempts AS attempt, w.id AS webhook_id, w.url, w.secret, \
                 e.id AS event_id, e.type, e.created_at AS event_created_at, e.data \
                 FROM webhook_deliveries d JOIN webhooks w ON w.id = d.webhook_id \
                 JOIN webhook_events e ON e.id = d.event_id WHERE d.id IN (",
            );
            let mut list = qb.separated(", ");
            for id in &ids {
                list.push_bind(*id);
            }
            qb.push(")");
            qb.build_query_as().fetch_all(pool).await?
        });
        Ok(claimed)
    }

    /// Logs attempt `claimed.attempt` and moves the delivery on: done when
    /// delivered or given up, else due again at `next_attempt_at`. A
    /// delivery whose lease ran out and was claimed again meanwhile keeps
    /// the newer claim's state; the attempt is logged all the same.
    pub async fn record_attempt(&self, claimed: &Claimed, at: i64, outcome: &Outcome) -> Result<()> {
        let attempt_id = crate::keys::format::sortable_id("wha", at);
        let done_at = outcome.next_attempt_at.is_none().then_some(at);
        match self.write_attempt(&attempt_id, claimed, at, done_at, outcome).await {
            // The webhook was deleted while the attempt was in flight.
            Err(StoreError::NotFound) => Ok(()),
            other => other,
        }
    }

    async fn write_attempt(
        &self,
        attempt_id: &str,
        claimed: &Claimed,
        at: i64,
        done_at: Option<i64>,
        outcome: &Outcome,
    ) -> Result<()> {
        on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            sqlx::query(
                "UPDATE webhook_deliveries SET lease_until = 0, next_attempt_at = COALESCE($1, next_attempt_at), \
                 done_at = $2, delivered = $3 WHERE id = $4 AND attempts = $5",
            )
            .bind(outcome.next_attempt_at)
            .bind(done_at)
            .bind(outcome.delivered)
            .bind(claimed.delivery_id)
            .bind(claimed.attempt)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "INSERT INTO webhook_attempts (id, delivery_id, webhook_id, event_id, type, attempt, at, status_code, \
                 error, delivered, next_attempt_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            )
            .bind(attempt_id)
            .bind(claimed.delivery_id)
            .bind(&claimed.webhook_id)
            .bind(&claimed.event_id)
            .bind(&claimed.kind)
            .bind(claimed.attempt)
            .bind(at)
            .bind(outcome.status_code.map(i64::from))
            .bind(&outcome.error)
            .bind(outcome.delivered)
            .bind(outcome.next_attempt_at)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
        });
        Ok(())
    }

    /// Deliveries neither delivered nor given up.
    pub async fn pending_deliveries(&self) -> Result<i64> {
        let n = on_pool!(self, pool => {
            sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM webhook_deliveries WHERE done_at IS NULL")
                .fetch_one(pool)
                .await?
        });
        Ok(n)
    }

    /// Forgets finished deliveries (and their attempts) and events older
    /// than `before`; pending deliveries stay whatever their age.
    pub async fn prune_webhook_log(&self, before: i64) -> Result<()> {
        on_pool!(self, pool => {
            sqlx::query("DELETE FROM webhook_deliveries WHERE done_at IS NOT NULL AND done_at < $1")
                .bind(before)
                .execute(pool)
                .await?;
            sqlx::query(
                "DELETE FROM webhook_events WHERE created_at < $1 \
                 AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d WHERE d.event_id = webhook_events.id)",
            )
            .bind(before)
            .execute(pool)
            .await?;
        });
        Ok(())
    }
}
