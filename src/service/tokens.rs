//! Admin token writes: mint (with a new `kga_…` secret) and delete. The
//! same checks whether the request comes from `POST /v1/admin-tokens` or
//! from `keygate admin-token create` with no server running.
//!
//! Tokens are not part of the key snapshot (the admin API looks each one up
//! in the store), so these writes have nothing to publish.

use serde::Deserialize;
use utoipa::ToSchema;

use super::{validate, Issued, Result, Service, ServiceError};
use crate::keys::format;
use crate::store::{AdminToken, AuditContext, Role, StoreError};

/// Prefix of admin tokens, so people and secret scanners can tell them from
/// API keys.
pub const ADMIN_TOKEN_PREFIX: &str = "kga";

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({ "name": "ci deploys", "role": "admin", "account_id": "acc_7Lk2PqW9xZr4Tn8VbM1s" }))]
pub struct CreateToken {
    pub name: String,
    pub role: Role,
    /// Confines the token to this account; `null`: every account.
    #[serde(default)]
    pub account_id: Option<String>,
}

impl Service {
    /// Mints an admin token; an `account_id` that does not exist is
    /// `Invalid` on `account_id`.
    pub async fn create_admin_token(&self, req: CreateToken, audit: &AuditContext) -> Result<Issued<AdminToken>> {
        let name = validate::name("name", &req.name)?;
        let secret = format::generate(ADMIN_TOKEN_PREFIX);
        let created = self
            .store
            .create_admin_token(&name, req.role, req.account_id.as_deref(), &secret.hash(), &secret.preview(), audit)
            .await;
        let token = match created {
            Err(StoreError::NotFound) => return Err(ServiceError::invalid("account_id", "no such account")),
            other => other?,
        };
        tracing::info!(token_id = %token.id, role = token.role.as_str(), "admin token created");
        Ok(Issued { record: token, secret })
    }

    /// Deletes a live token (`NotFound` if absent or outside
    /// `only_account`); it stops working at once.
    pub async fn delete_admin_token(&self, id: &str, only_account: Option<&str>, audit: &AuditContext) -> Result<()> {
        self.store.delete_admin_token(id, only_account, audit).await?;
        tracing::info!(token_id = %id, "admin token deleted");
        Ok(())
    }
}
