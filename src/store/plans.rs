//! Plans: create, read, list newest first, edit, delete. Every write bumps
//! the revision and stamps the plan with it, so each replica's reloader
//! reads again the accounts on an edited plan (`changes::ACCOUNTS_SQL`).
//! A plan some account is on cannot be deleted: `Conflict`, checked inside
//! the write transaction (writers serialise on the revision counter, so no
//! account can take the plan between the check and the delete).

use serde_json::{json, Map, Value};

use super::audit::{record_audit, AuditContext};
use super::{bump_revision, on_pool, Cursor, NewPlan, Page, Plan, PlanPatch, RateLimit, Result, Store, StoreError};
use crate::clock::now_ms;
use crate::keys::format::new_id;
use crate::keys::{Period, QuotaSpec};

#[derive(sqlx::FromRow)]
struct PlanRow {
    id: String,
    name: String,
    rate_limit_requests: Option<i64>,
    rate_limit_per_seconds: Option<i64>,
    quota_limit: Option<i64>,
    quota_period: Option<String>,
    created_at: i64,
    updated_at: i64,
}

impl TryFrom<PlanRow> for Plan {
    type Error = StoreError;

    fn try_from(r: PlanRow) -> Result<Plan> {
        let bad = |what: &str| StoreError::Other(format!("plan {} has an invalid {what} in the store", r.id));
        let rate_limit = match (r.rate_limit_requests, r.rate_limit_per_seconds) {
            (Some(requests), Some(per)) => Some(RateLimit {
                requests: u32::try_from(requests).map_err(|_| bad("rate limit"))?,
                per_seconds: u32::try_from(per).map_err(|_| bad("rate limit"))?,
            }),
            _ => None,
        };
        let quota = match (r.quota_limit, r.quota_period.as_deref()) {
            (Some(limit), Some(period)) => Some(QuotaSpec {
                limit: u64::try_from(limit).map_err(|_| bad("quota"))?,
                period: Period::parse(period).ok_or_else(|| bad("quota period"))?,
            }),
            _ => None,
        };
        Ok(Plan { id: r.id, name: r.name, rate_limit, quota, created_at: r.created_at, updated_at: r.updated_at })
    }
}

const COLUMNS: &str =
    "id, name, rate_limit_requests, rate_limit_per_seconds, quota_limit, quota_period, created_at, updated_at";

/// The columns of a rate limit and a quota, as bound to the statements.
fn columns(plan: &Plan) -> (Option<i64>, Option<i64>, Option<i64>, Option<&'static str>) {
    (
        plan.rate_limit.map(|r| i64::from(r.requests)),
        plan.rate_limit.map(|r| i64::from(r.per_seconds)),
        // Validated to at most `MAX_QUOTA`, well inside an i64.
        plan.quota.map(|q| i64::try_from(q.limit).unwrap_or(i64::MAX)),
        plan.quota.map(|q| q.period.as_str()),
    )
}

/// The audit entry's view of a plan's limits.
fn limits(plan: &Plan) -> (Value, Value) {
    (json!(plan.rate_limit), json!(plan.quota))
}

impl Store {
    pub async fn create_plan(&self, new: &NewPlan, audit: &AuditContext) -> Result<Plan> {
        let now = now_ms();
        let plan = Plan {
            id: new_id("plan"),
            name: new.name.clone(),
            rate_limit: new.rate_limit,
            quota: new.quota,
            created_at: now,
            updated_at: now,
        };
        let (requests, per, limit, period) = columns(&plan);
        on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let rev = bump_revision!(tx);
            sqlx::query(
                "INSERT INTO plans (id, name, rate_limit_requests, rate_limit_per_seconds, quota_limit, quota_period, \
                 created_at, updated_at, revision) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            )
            .bind(&plan.id)
            .bind(&plan.name)
            .bind(requests)
            .bind(per)
            .bind(limit)
            .bind(period)
            .bind(now)
            .bind(now)
            .bind(rev)
            .execute(&mut *tx)
            .await?;
            let (rate_limit, quota) = limits(&plan);
            let changes = json!({ "name": plan.name, "rate_limit": rate_limit, "quota": quota });
            record_audit!(tx, audit, now, "plan.create", Some(&plan.id), None::<&str>, changes);
            tx.commit().await?;
        });
        Ok(plan)
    }

    pub async fn get_plan(&self, id: &str) -> Result<Plan> {
        let sql = format!("SELECT {COLUMNS} FROM plans WHERE id = $1");
        let row: Option<PlanRow> = on_pool!(self, pool => {
            sqlx::query_as(&sql).bind(id).fetch_optional(pool).await?
        });
        row.ok_or(StoreError::NotFound)?.try_into()
    }

    /// Newest first.
    pub async fn list_plans(&self, limit: u32, cursor: Option<&Cursor>) -> Result<Page<Plan>> {
        let (at, id) = cursor.map(|c| (c.created_at, c.id.as_str())).unwrap_or((i64::MAX, ""));
        let sql = format!(
            "SELECT {COLUMNS} FROM plans \
             WHERE (created_at < $1 OR (created_at = $1 AND id < $2) OR $2 = '') \
             ORDER BY created_at DESC, id DESC LIMIT $3"
        );
        let rows: Vec<PlanRow> = on_pool!(self, pool => {
            sqlx::query_as(&sql).bind(at).bind(id).bind(i64::from(limit) + 1).fetch_all(pool).await?
        });
        let mut items = rows.into_iter().map(Plan::try_from).collect::<Result<Vec<_>>>()?;
        let next_cursor = if items.len() > limit as usize {
            items.truncate(limit as usize);
            items.last().map(|p| Cursor { created_at: p.created_at, id: p.id.clone() }.encode())
        } else {
            None
        };
        Ok(Page { items, next_cursor })
    }

    /// Applies the patch; returns the plan after it.
    pub async fn update_plan(&self, id: &str, patch: &PlanPatch, audit: &AuditContext) -> Result<Plan> {
        let select = format!("SELECT {COLUMNS} FROM plans WHERE id = $1");
        let after = on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let rev = bump_revision!(tx);
            let row: Option<PlanRow> = sqlx::query_as(&select).bind(id).fetch_optional(&mut *tx).await?;
            let before = Plan::try_from(row.ok_or(StoreError::NotFound)?)?;
            let mut after = before.clone();
            if let Some(name) = &patch.name {
                after.name = name.clone();
            }
            if let Some(rate_limit) = patch.rate_limit {
                after.rate_limit = rate_limit;
            }
            if let Some(quota) = patch.quota {
                after.quota = quota;
            }
            after.updated_at = now_ms();
            let (requests, per, limit, period) = columns(&after);
            sqlx::query(
                "UPDATE plans SET name = $1, rate_limit_requests = $2, rate_limit_per_seconds = $3, quota_limit = $4, \
                 quota_period = $5, updated_at = $6, revision = $7 WHERE id = $8",
            )
            .bind(&after.name)
            .bind(requests)
            .bind(per)
            .bind(limit)
            .bind(period)
            .bind(after.updated_at)
            .bind(rev)
            .bind(id)
            .execute(&mut *tx)
            .await?;
            let mut changes = Map::new();
            if before.name != after.name {
                changes.insert("name".into(), json!({ "from": before.name, "to": after.name }));
            }
            let ((rate_before, quota_before), (rate_after, quota_after)) = (limits(&before), limits(&after));
            if rate_before != rate_after {
                changes.insert("rate_limit".into(), json!({ "from": rate_before, "to": rate_after }));
            }
            if quota_before != quota_after {
                changes.insert("quota".into(), json!({ "from": quota_before, "to": quota_after }));
            }
            record_audit!(tx, audit, after.updated_at, "plan.update", Some(id), None::<&str>, changes);
            tx.commit().await?;
            after
        });
        Ok(after)
    }

    /// Deletes a plan no account is on; `Conflict` naming how many are.
    pub async fn delete_plan(&self, id: &str, audit: &AuditContext) -> Result<Plan> {
        let select = format!("SELECT {COLUMNS} FROM plans WHERE id = $1");
        let plan = on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            bump_revision!(tx);
            let row: Option<PlanRow> = sqlx::query_as(&select).bind(id).fetch_optional(&mut *tx).await?;
            let plan = Plan::try_from(row.ok_or(StoreError::NotFound)?)?;
            let using: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM accounts WHERE plan_id = $1")
                .bind(id)
                .fetch_one(&mut *tx)
                .await?;
            if using > 0 {
                return Err(StoreError::Conflict(format!(
                    "the plan is in use by {using} account(s): move them to another plan first"
                )));
            }
            sqlx::query("DELETE FROM plans WHERE id = $1").bind(id).execute(&mut *tx).await?;
            let now = now_ms();
            let (rate_limit, quota) = limits(&plan);
            let changes = json!({ "name": plan.name, "rate_limit": rate_limit, "quota": quota });
            record_audit!(tx, audit, now, "plan.delete", Some(id), None::<&str>, changes);
            tx.commit().await?;
            plan
        });
        Ok(plan)
    }
}
