//! Admin tokens: stored as blake3 hashes with a preview, like API keys;
//! deleting one keeps its row (marked deleted) for the audit trail.

use serde_json::json;

use super::audit::{record_audit, AuditContext};
use super::{on_pool, Result, Role, Store, StoreError};
use crate::clock::now_ms;
use crate::keys::format::new_id;
use crate::keys::KeyHash;

#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct AdminToken {
    pub id: String,
    pub name: String,
    #[sqlx(try_from = "String")]
    pub role: Role,
    pub account_id: Option<String>,
    pub preview: String,
    pub created_at: i64,
}

const COLUMNS: &str = "id, name, role, account_id, preview, created_at";

impl Store {
    pub async fn create_admin_token(
        &self,
        name: &str,
        role: Role,
        account_id: Option<&str>,
        hash: &KeyHash,
        preview: &str,
        audit: &AuditContext,
    ) -> Result<AdminToken> {
        let now = now_ms();
        let token = AdminToken {
            id: new_id("tok"),
            name: name.to_owned(),
            role,
            account_id: account_id.map(str::to_owned),
            preview: preview.to_owned(),
            created_at: now,
        };
        on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            if let Some(account) = account_id {
                let found: Option<String> = sqlx::query_scalar("SELECT id FROM accounts WHERE id = $1")
                    .bind(account)
                    .fetch_optional(&mut *tx)
                    .await?;
                if found.is_none() {
                    return Err(StoreError::NotFound);
                }
            }
            sqlx::query(
                "INSERT INTO admin_tokens (id, name, role, account_id, token_hash, preview, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(&token.id)
            .bind(&token.name)
            .bind(token.role.as_str())
            .bind(&token.account_id)
            .bind(hash.as_bytes().as_slice())
            .bind(&token.preview)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            let changes = json!({ "name": token.name, "role": token.role, "account_id": token.account_id });
            record_audit!(tx, audit, now, "admin_token.create", Some(&token.id), token.account_id.as_deref(), changes);
            tx.commit().await?;
        });
        Ok(token)
    }

    /// Live tokens, newest first; `only_account` confines the listing.
    pub async fn list_admin_tokens(&self, only_account: Option<&str>) -> Result<Vec<AdminToken>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM admin_tokens WHERE deleted_at IS NULL AND ($1 = '' OR account_id = $1) ORDER BY created_at DESC, id DESC"
        );
        let rows = on_pool!(self, pool => {
            sqlx::query_as(&sql).bind(only_account.unwrap_or("")).fetch_all(pool).await?
        });
        Ok(rows)
    }

    /// The live token with this hash.
    pub async fn admin_token_by_hash(&self, hash: &KeyHash) -> Result<Option<AdminToken>> {
        let sql = format!("SELECT {COLUMNS} FROM admin_tokens WHERE token_hash = $1 AND deleted_at IS NULL");
        let row = on_pool!(self, pool => {
            sqlx::query_as(&sql).bind(hash.as_bytes().as_slice()).fetch_optional(pool).await?
        });
        Ok(row)
    }

    /// Deletes a live token (`NotFound` if absent, deleted, or outside
    /// `only_account`).
    pub async fn delete_admin_token(&self, id: &str, only_account: Option<&str>, audit: &AuditContext) -> Result<()> {
        let now = now_ms();
        on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let account: Option<(Option<String>,)> =
                sqlx::query_as("SELECT account_id FROM admin_tokens WHERE id = $1 AND deleted_at IS NULL")
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await?;
            let Some((account,)) = account else { return Err(StoreError::NotFound) };
            if only_account.is_some_and(|only| account.as_deref() != Some(only)) {
                return Err(StoreError::NotFound);
            }
            sqlx::query("UPDATE admin_tokens SET deleted_at = $1 WHERE id = $2").bind(now).bind(id).execute(&mut *tx).await?;
            record_audit!(tx, audit, now, "admin_token.delete", Some(id), account.as_deref(), json!({}));
            tx.commit().await?;
        });
        Ok(())
    }
}
