//! Account writes: create, and edit the name, the `api_access` flag or the
//! plan. Turning `api_access` off, or a plan change, is in force on this
//! node when the call returns.

use serde::Deserialize;
use utoipa::ToSchema;

use super::{not_null, nullable, validate, Result, Service};
use crate::store::{Account, AccountPatch, AuditContext};

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({ "name": "Acme Corp", "api_access": true, "plan_id": "plan_9QwE3rT5yU7iO1pA2sD4" }))]
pub struct CreateAccount {
    pub name: String,
    /// Default `true`.
    #[serde(default)]
    pub api_access: Option<bool>,
    /// `plan_…`; default none.
    #[serde(default)]
    pub plan_id: Option<String>,
}

/// An edit: absent fields stay as they are; `plan_id: null` takes the
/// account off its plan, and the other fields cannot be `null`.
#[derive(Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({ "api_access": false }))]
pub struct UpdateAccount {
    #[serde(default, deserialize_with = "not_null")]
    #[schema(nullable = false)]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "not_null")]
    #[schema(nullable = false)]
    pub api_access: Option<bool>,
    /// `plan_…`; `null`: no plan.
    #[serde(default, deserialize_with = "nullable")]
    pub plan_id: Option<Option<String>>,
}

impl Service {
    pub async fn create_account(&self, req: CreateAccount, audit: &AuditContext) -> Result<Account> {
        let name = validate::name("name", &req.name)?;
        self.known_plan(req.plan_id.as_deref()).await?;
        let plan_id = req.plan_id.as_deref();
        let account = self.store.create_account(&name, req.api_access.unwrap_or(true), plan_id, audit).await?;
        self.publish().await;
        Ok(account)
    }

    pub async fn update_account(&self, id: &str, req: UpdateAccount, audit: &AuditContext) -> Result<Account> {
        let patch = AccountPatch {
            name: req.name.as_deref().map(|n| validate::name("name", n)).transpose()?,
            api_access: req.api_access,
            plan_id: req.plan_id,
        };
        if let Some(Some(plan_id)) = &patch.plan_id {
            self.known_plan(Some(plan_id)).await?;
        }
        let (_, after) = self.store.update_account(id, &patch, audit).await?;
        self.publish().await;
        Ok(after)
    }
}
