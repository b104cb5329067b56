//! What the reloader reads: every key whose row (or whose account) changed
//! after a revision, with all of those keys' retired secrets.
//!
//! The revision is read first, in the same transaction as the rows: every
//! row at or below it is committed (writers serialise on the counter), so
//! nothing is skipped. On PostgreSQL (READ COMMITTED) rows committed just
//! after the counter was read may come along too; they are read again, to the
//! same effect, by the next reload.

use futures_util::TryStreamExt;

use super::{on_pool, Result, RouteRule, Store, StoreError};
use crate::keys::decision::compile_restrictions;
use crate::keys::{Changes, InlineId, KeyHash, KeyPolicy, Permission, PolicyRow, Quota, RetiredRow};

#[derive(sqlx::FromRow)]
struct PolicyDbRow {
    id: String,
    account_id: String,
    permission: String,
    enabled: bool,
    revoked_at: Option<i64>,
    api_access: bool,
    expires_at: Option<i64>,
    secret_hash: Vec<u8>,
    rate_limit_requests: Option<i64>,
    rate_limit_per_seconds: Option<i64>,
    allowed_ips: String,
    allowed_routes: String,
}

#[derive(sqlx::FromRow)]
struct RetiredDbRow {
    secret_hash: Vec<u8>,
    key_id: String,
    valid_until: i64,
}

const POLICY_SQL: &str = "\
    SELECT k.id, k.account_id, k.permission, k.enabled, k.revoked_at, a.api_access, k.expires_at, k.secret_hash, \
    k.rate_limit_requests, k.rate_limit_per_seconds, k.allowed_ips, k.allowed_routes \
    FROM api_keys k JOIN accounts a ON a.id = k.account_id WHERE k.revision > $1 \
    UNION ALL \
    SELECT k.id, k.account_id, k.permission, k.enabled, k.revoked_at, a.api_access, k.expires_at, k.secret_hash, \
    k.rate_limit_requests, k.rate_limit_per_seconds, k.allowed_ips, k.allowed_routes \
    FROM accounts a JOIN api_keys k ON k.account_id = a.id WHERE a.revision > $1 AND k.revision <= $1";

const RETIRED_SQL: &str = "\
    SELECT r.secret_hash, r.key_id, r.valid_until \
    FROM retired_secrets r JOIN api_keys k ON k.id = r.key_id JOIN accounts a ON a.id = k.account_id \
    WHERE k.revision > $1 OR a.revision > $1";

impl Store {
    /// Everything that changed after `since` (0 reads everything).
    pub async fn changes_since(&self, since: i64) -> Result<Changes> {
        // Rows are converted as they stream in, so a full load of a million
        // keys never holds the database rows and the policies at once.
        let changes = on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let revision: i64 = sqlx::query_scalar("SELECT value FROM revision WHERE id = 1").fetch_one(&mut *tx).await?;
            let mut changes = Changes { revision, keys: Vec::new(), retired: Vec::new() };
            if revision > since {
                let mut rows = sqlx::query_as::<_, PolicyDbRow>(POLICY_SQL).bind(since).fetch(&mut *tx);
                while let Some(row) = rows.try_next().await? {
                    changes.keys.push(policy_row(row)?);
                }
                drop(rows);
                let retired: Vec<RetiredDbRow> = sqlx::query_as(RETIRED_SQL).bind(since).fetch_all(&mut *tx).await?;
                for row in retired {
                    let hash = KeyHash::from_slice(&row.secret_hash).ok_or_else(|| corrupt(&row.key_id, "retired hash"))?;
                    changes.retired.push(RetiredRow { hash, key_id: row.key_id, valid_until: row.valid_until });
                }
            }
            tx.commit().await?;
            changes
        });
        Ok(changes)
    }
}

fn corrupt(id: &str, what: &str) -> StoreError {
    StoreError::Other(format!("key {id} has an invalid {what} in the store"))
}

fn policy_row(row: PolicyDbRow) -> Result<PolicyRow> {
    let hash = KeyHash::from_slice(&row.secret_hash).ok_or_else(|| corrupt(&row.id, "secret hash"))?;
    let quota = match (row.rate_limit_requests, row.rate_limit_per_seconds) {
        (Some(requests), Some(per)) => Some(Quota {
            requests: u32::try_from(requests).map_err(|_| corrupt(&row.id, "rate limit"))?,
            per_seconds: u32::try_from(per).map_err(|_| corrupt(&row.id, "rate limit"))?,
        }),
        _ => None,
    };
    // Most keys have neither list: skip JSON parsing for them.
    let ips: Vec<String> = if row.allowed_ips == "[]" {
        Vec::new()
    } else {
        serde_json::from_str(&row.allowed_ips).map_err(|_| corrupt(&row.id, "allowed_ips"))?
    };
    let routes: Vec<RouteRule> = if row.allowed_routes == "[]" {
        Vec::new()
    } else {
        serde_json::from_str(&row.allowed_routes).map_err(|_| corrupt(&row.id, "allowed_routes"))?
    };
    let routes: Vec<(String, Vec<String>)> = routes.into_iter().map(|r| (r.path_prefix, r.methods)).collect();
    let restrictions =
        compile_restrictions(&ips, &routes).map_err(|e| corrupt(&row.id, &format!("restriction ({e})")))?;
    let policy = KeyPolicy {
        id: InlineId::new(&row.id).ok_or_else(|| corrupt(&row.id, "id"))?,
        account_id: InlineId::new(&row.account_id).ok_or_else(|| corrupt(&row.id, "account id"))?,
        permission: Permission::parse(&row.permission).ok_or_else(|| corrupt(&row.id, "permission"))?,
        enabled: row.enabled,
        revoked: row.revoked_at.is_some(),
        api_access: row.api_access,
        expires_at: row.expires_at,
        quota,
        restrictions,
    };
    Ok(PolicyRow { hash, policy })
}
