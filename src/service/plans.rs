//! Plan writes: create, edit, delete, and the accounts' side of plans (which
//! plan an account is on, and whether a key's own limits stay within it).
//! An edit of a plan is in force on this node, for every account on it, when
//! the call returns; other replicas take it in like a key change.

use serde::Deserialize;
use utoipa::ToSchema;

use super::{not_null, nullable, validate, Result, Service, ServiceError};
use crate::keys::{PlanLimits, Quota, QuotaSpec};
use crate::store::{AuditContext, NewPlan, Plan, PlanPatch, RateLimit, StoreError};

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "name": "Free",
    "rate_limit": { "requests": 10, "per_seconds": 1 },
    "quota": { "limit": 10000, "period": "month" }
}))]
pub struct CreatePlan {
    pub name: String,
    /// Pooled over all of an account's keys; `null`: none.
    #[serde(default)]
    pub rate_limit: Option<RateLimit>,
    /// Pooled over all of an account's keys; `null`: none.
    #[serde(default)]
    pub quota: Option<QuotaSpec>,
}

/// An edit: absent fields stay as they are; `null` clears a limit.
#[derive(Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({ "rate_limit": { "requests": 100, "per_seconds": 1 }, "quota": null }))]
pub struct UpdatePlan {
    #[serde(default, deserialize_with = "not_null")]
    #[schema(nullable = false)]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub rate_limit: Option<Option<RateLimit>>,
    #[serde(default, deserialize_with = "nullable")]
    pub quota: Option<Option<QuotaSpec>>,
}

fn quota(value: Option<QuotaSpec>) -> Result<Option<QuotaSpec>> {
    if let Some(q) = &value {
        q.validate().map_err(|m| ServiceError::invalid("quota.limit", m))?;
    }
    Ok(value)
}

impl Service {
    pub async fn create_plan(&self, req: CreatePlan, audit: &AuditContext) -> Result<Plan> {
        let new = NewPlan {
            name: validate::name("name", &req.name)?,
            rate_limit: validate::rate_limit(req.rate_limit)?,
            quota: quota(req.quota)?,
        };
        let plan = self.store.create_plan(&new, audit).await?;
        // A new plan has no account yet: nothing to publish.
        tracing::info!(plan_id = %plan.id, "plan created");
        Ok(plan)
    }

    pub async fn update_plan(&self, id: &str, req: UpdatePlan, audit: &AuditContext) -> Result<Plan> {
        let patch = PlanPatch {
            name: req.name.as_deref().map(|n| validate::name("name", n)).transpose()?,
            rate_limit: req.rate_limit.map(validate::rate_limit).transpose()?,
            quota: req.quota.map(quota).transpose()?,
        };
        let plan = self.store.update_plan(id, &patch, audit).await?;
        self.publish().await;
        tracing::info!(plan_id = %plan.id, "plan updated");
        Ok(plan)
    }

    /// Deletes a plan no account is on (else `Conflict`).
    pub async fn delete_plan(&self, id: &str, audit: &AuditContext) -> Result<Plan> {
        let plan = self.store.delete_plan(id, audit).await?;
        tracing::info!(plan_id = %plan.id, "plan deleted");
        Ok(plan)
    }

    /// Checks that a plan an account is to be put on exists: an unknown id
    /// is the caller's input at fault (422 naming `plan_id`), not a missing
    /// record at the URL.
    pub(super) async fn known_plan(&self, plan_id: Option<&str>) -> Result<()> {
        let Some(id) = plan_id else { return Ok(()) };
        match self.store.get_plan(id).await {
            Ok(_) => Ok(()),
            Err(StoreError::NotFound) => Err(ServiceError::invalid("plan_id", "no such plan")),
            Err(e) => Err(e.into()),
        }
    }

    /// Where a key's own limits would go beyond its account's plan: the
    /// field at fault (`rate_limit`, `quota`), `None` when within it (or
    /// the account has no plan). Read from the store, which has the plan as
    /// it is now, whichever node changed it.
    pub async fn beyond_plan(
        &self,
        account_id: &str,
        rate_limit: Option<RateLimit>,
        quota: Option<QuotaSpec>,
    ) -> Result<Option<&'static str>> {
        let account = self.store.get_account(account_id).await?;
        let Some(plan_id) = account.plan_id else { return Ok(None) };
        let plan = self.store.get_plan(&plan_id).await?;
        let limits = PlanLimits { plan_id, rate_limit: plan.rate_limit.map(quota_of), quota: plan.quota };
        Ok(limits.exceeded_by(rate_limit.map(quota_of), quota))
    }
}

fn quota_of(r: RateLimit) -> Quota {
    Quota { requests: r.requests, per_seconds: r.per_seconds }
}
