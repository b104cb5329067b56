//! Accounts (tenants): create, read, list newest first, edit. Changing an
//! account's `api_access` or `plan_id` bumps its revision, so the snapshot
//! rebuilds the account's keys and reads its plan again.

use serde_json::json;

use super::audit::{record_audit, AuditContext};
use super::{bump_revision, on_pool, Account, AccountPatch, Cursor, Page, Result, Store, StoreError};
use crate::clock::now_ms;
use crate::keys::format::new_id;

#[derive(sqlx::FromRow)]
struct AccountRow {
    id: String,
    name: String,
    api_access: bool,
    plan_id: Option<String>,
    created_at: i64,
    updated_at: i64,
}

impl From<AccountRow> for Account {
    fn from(r: AccountRow) -> Self {
        Account {
            id: r.id,
            name: r.name,
            api_access: r.api_access,
            plan_id: r.plan_id,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

const COLUMNS: &str = "id, name, api_access, plan_id, created_at, updated_at";

impl Store {
    /// A plan that does not exist is `NotFound` (the foreign key).
    pub async fn create_account(
        &self,
        name: &str,
        api_access: bool,
        plan_id: Option<&str>,
        audit: &AuditContext,
    ) -> Result<Account> {
        let now = now_ms();
        let account = Account {
            id: new_id("acc"),
            name: name.to_owned(),
            api_access,
            plan_id: plan_id.map(str::to_owned),
            created_at: now,
            updated_at: now,
        };
        on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let rev = bump_revision!(tx);
            sqlx::query("INSERT INTO accounts (id, name, api_access, plan_id, created_at, updated_at, revision) VALUES ($1, $2, $3, $4, $5, $6, $7)")
                .bind(&account.id)
                .bind(&account.name)
                .bind(account.api_access)
                .bind(&account.plan_id)
                .bind(now)
                .bind(now)
                .bind(rev)
                .execute(&mut *tx)
                .await?;
            let changes = json!({ "name": account.name, "api_access": account.api_access, "plan_id": account.plan_id });
            record_audit!(tx, audit, now, "account.create", Some(&account.id), Some(&account.id), changes);
            tx.commit().await?;
        });
        Ok(account)
    }

    pub async fn get_account(&self, id: &str) -> Result<Account> {
        let sql = format!("SELECT {COLUMNS} FROM accounts WHERE id = $1");
        let row: Option<AccountRow> = on_pool!(self, pool => {
            sqlx::query_as(&sql).bind(id).fetch_optional(pool).await?
        });
        row.map(Account::from).ok_or(StoreError::NotFound)
    }

    /// Newest first. `only` confines the listing to one account id.
    pub async fn list_accounts(
        &self,
        limit: u32,
        cursor: Option<&Cursor>,
        only: Option<&str>,
    ) -> Result<Page<Account>> {
        let (at, id) = cursor.map(|c| (c.created_at, c.id.as_str())).unwrap_or((i64::MAX, ""));
        let sql = format!(
            "SELECT {COLUMNS} FROM accounts \
             WHERE (created_at < $1 OR (created_at = $1 AND id < $2) OR $2 = '') \
             AND ($3 = '' OR id = $3) \
             ORDER BY created_at DESC, id DESC LIMIT $4"
        );
        let rows: Vec<AccountRow> = on_pool!(self, pool => {
            sqlx::query_as(&sql)
                .bind(at)
                .bind(id)
                .bind(only.unwrap_or(""))
                .bind(i64::from(limit) + 1)
                .fetch_all(pool)
                .await?
        });
        let mut items: Vec<Account> = rows.into_iter().map(Account::from).collect();
        let next_cursor = if items.len() > limit as usize {
            items.truncate(limit as usize);
            items.last().map(|a| Cursor { created_at: a.created_at, id: a.id.clone() }.encode())
        } else {
            None
        };
        Ok(Page { items, next_cursor })
    }

    /// Applies the patch; returns the account before and after.
    pub async fn update_account(
        &self,
        id: &str,
        patch: &AccountPatch,
        audit: &AuditContext,
    ) -> Result<(Account, Account)> {
        let sql = format!("SELECT {COLUMNS} FROM accounts WHERE id = $1");
        let result = on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let rev = bump_revision!(tx);
            let row: Option<AccountRow> = sqlx::query_as(&sql).bind(id).fetch_optional(&mut *tx).await?;
            let before = Account::from(row.ok_or(StoreError::NotFound)?);
            let mut after = before.clone();
            if let Some(name) = &patch.name {
                after.name = name.clone();
            }
            if let Some(access) = patch.api_access {
                after.api_access = access;
            }
            if let Some(plan_id) = &patch.plan_id {
                after.plan_id = plan_id.clone();
            }
            after.updated_at = now_ms();
            sqlx::query("UPDATE accounts SET name = $1, api_access = $2, plan_id = $3, updated_at = $4, revision = $5 WHERE id = $6")
                .bind(&after.name)
                .bind(after.api_access)
                .bind(&after.plan_id)
                .bind(after.updated_at)
                .bind(rev)
                .bind(id)
                .execute(&mut *tx)
                .await?;
            let mut changes = serde_json::Map::new();
            if before.name != after.name {
                changes.insert("name".into(), json!({ "from": before.name, "to": after.name }));
            }
            if before.api_access != after.api_access {
                changes.insert("api_access".into(), json!({ "from": before.api_access, "to": after.api_access }));
            }
            if before.plan_id != after.plan_id {
                changes.insert("plan_id".into(), json!({ "from": before.plan_id, "to": after.plan_id }));
            }
            record_audit!(tx, audit, after.updated_at, "account.update", Some(id), Some(id), changes);
            tx.commit().await?;
            (before, after)
        });
        Ok(result)
    }
}
