//! Account writes: create, and edit the name or the `api_access` flag.
//! Turning `api_access` off is in force on this node when the call returns.

use serde::Deserialize;
use utoipa::ToSchema;

use super::{not_null, validate, Result, Service};
use crate::store::{Account, AccountPatch, AuditContext};

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({ "name": "Acme Corp", "api_access": true }))]
pub struct CreateAccount {
    pub name: String,
    /// Default `true`.
    #[serde(default)]
    pub api_access: Option<bool>,
}

/// An edit: absent fields stay as they are; neither can be `null`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({ "api_access": false }))]
pub struct UpdateAccount {
    #[serde(default, deserialize_with = "not_null")]
    #[schema(nullable = false)]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "not_null")]
    #[schema(nullable = false)]
    pub api_access: Option<bool>,
}

impl Service {
    pub async fn create_account(&self, req: CreateAccount, audit: &AuditContext) -> Result<Account> {
        let name = validate::name("name", &req.name)?;
        let account = self.store.create_account(&name, req.api_access.unwrap_or(true), audit).await?;
        self.publish().await;
        Ok(account)
    }

    pub async fn update_account(&self, id: &str, req: UpdateAccount, audit: &AuditContext) -> Result<Account> {
        let patch = AccountPatch {
            name: req.name.as_deref().map(|n| validate::name("name", n)).transpose()?,
            api_access: req.api_access,
        };
        let (_, after) = self.store.update_account(id, &patch, audit).await?;
        self.publish().await;
        Ok(after)
    }
}
