//! API key records: create, read, list with filters and cursor, edit, rotate
//! and revoke. Every write bumps the revision so the snapshot picks it up.

use serde_json::json;
use sqlx::QueryBuilder;

use super::audit::{key_changes, key_update_action, record_audit, AuditContext};
use super::webhooks::{emit_event, subscribed, Event, EventType};
use super::{
    bump_revision, like_pattern, on_pool, Cursor, KeyFilter, KeyPatch, KeyRecord, NewKey, Page, Result, Store,
    StoreError,
};
use crate::clock::now_ms;
use crate::keys::format::new_id;
use crate::keys::{Environment, KeyHash, Period, Permission, QuotaSpec, Status};

#[derive(sqlx::FromRow)]
pub(super) struct KeyRow {
    id: String,
    account_id: String,
    name: String,
    description: Option<String>,
    permission: String,
    enabled: bool,
    environment: String,
    prefix: String,
    preview: String,
    created_at: i64,
    updated_at: i64,
    expires_at: Option<i64>,
    last_used_at: Option<i64>,
    usage_count: i64,
    rotated_at: Option<i64>,
    revoked_at: Option<i64>,
    rate_limit_requests: Option<i64>,
    rate_limit_per_seconds: Option<i64>,
    allowed_ips: String,
    allowed_routes: String,
    metadata: String,
    quota_limit: Option<i64>,
    quota_period: Option<String>,
}

pub(super) const KEY_COLUMNS: &str =
    "id, account_id, name, description, permission, enabled, environment, prefix, preview, \
     created_at, updated_at, expires_at, last_used_at, usage_count, rotated_at, revoked_at, \
     rate_limit_requests, rate_limit_per_seconds, allowed_ips, allowed_routes, metadata, quota_limit, quota_period";

/// Emits a key event for key `$id` inside the caller's transaction, from
/// the key as this transaction sees it (so after the change). Reads
/// nothing more when no webhook takes the type: `$hooked`, when given, is
/// that answer already known (a bulk write asks once).
macro_rules! emit_key_event {
    ($tx:expr, $kind:expr, $id:expr, $at:expr, $extra:expr) => {{
        if subscribed!($tx, $kind) {
            emit_key_event!($tx, $kind, $id, $at, $extra, true);
        }
    }};
    ($tx:expr, $kind:expr, $id:expr, $at:expr, $extra:expr, $hooked:expr) => {{
        if $hooked {
            let row: KeyRow = sqlx::query_as(&format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE id = $1"))
                .bind($id)
                .fetch_one(&mut *$tx)
                .await?;
            let key = KeyRecord::try_from(row)?;
            emit_event!($tx, Event::key($kind, &key, $at, $extra));
        }
    }};
}
pub(super) use emit_key_event;

impl TryFrom<KeyRow> for KeyRecord {
    type Error = StoreError;

    fn try_from(r: KeyRow) -> Result<Self> {
        let bad = |what: &str| StoreError::Other(format!("key {} has an invalid {what} in the store", r.id));
        let rate_limit = match (r.rate_limit_requests, r.rate_limit_per_seconds) {
            (Some(requests), Some(per)) => Some(super::RateLimit {
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
        Ok(KeyRecord {
            quota,
            quota_usage: None,
            permission: Permission::parse(&r.permission).ok_or_else(|| bad("permission"))?,
            environment: Environment::parse(&r.environment).ok_or_else(|| bad("environment"))?,
            allowed_ips: serde_json::from_str(&r.allowed_ips).map_err(|_| bad("allowed_ips"))?,
            allowed_routes: serde_json::from_str(&r.allowed_routes).map_err(|_| bad("allowed_routes"))?,
            metadata: serde_json::from_str(&r.metadata).map_err(|_| bad("metadata"))?,
            rate_limit,
            id: r.id,
            account_id: r.account_id,
            name: r.name,
            description: r.description,
            enabled: r.enabled,
            prefix: r.prefix,
            preview: r.preview,
            created_at: r.created_at,
            updated_at: r.updated_at,
            expires_at: r.expires_at,
            last_used_at: r.last_used_at,
            usage_count: r.usage_count,
            rotated_at: r.rotated_at,
            revoked_at: r.revoked_at,
        })
    }
}

/// A quota's limit as its column holds it (validated to at most
/// `MAX_QUOTA`, well inside an i64).
fn quota_limit(quota: Option<QuotaSpec>) -> Option<i64> {
    quota.map(|q| i64::try_from(q.limit).unwrap_or(i64::MAX))
}

pub(super) fn json(value: &impl serde::Serialize) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "null".into())
}

impl Store {
    /// Creates a key in an existing account (`NotFound` if the account is
    /// not there).
    pub async fn create_key(&self, new: &NewKey, audit: &AuditContext) -> Result<KeyRecord> {
        let now = now_ms();
        let id = new_id("key");
        on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let rev = bump_revision!(tx);
            let exists: Option<String> = sqlx::query_scalar("SELECT id FROM accounts WHERE id = $1")
                .bind(&new.account_id)
                .fetch_optional(&mut *tx)
                .await?;
            if exists.is_none() {
                return Err(StoreError::NotFound);
            }
            sqlx::query(
                "INSERT INTO api_keys (id, account_id, name, description, permission, enabled, environment, prefix, preview, \
                 secret_hash, created_at, updated_at, expires_at, usage_count, rate_limit_requests, rate_limit_per_seconds, \
                 allowed_ips, allowed_routes, metadata, revision, quota_limit, quota_period) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11, $12, 0, $13, $14, $15, $16, $17, $18, $19, $20)",
            )
            .bind(&id)
            .bind(&new.account_id)
            .bind(&new.name)
            .bind(&new.description)
            .bind(new.permission.as_str())
            .bind(new.enabled)
            .bind(new.environment.as_str())
            .bind(&new.prefix)
            .bind(&new.preview)
            .bind(new.hash.as_bytes().as_slice())
            .bind(now)
            .bind(new.expires_at)
            .bind(new.rate_limit.map(|r| i64::from(r.requests)))
            .bind(new.rate_limit.map(|r| i64::from(r.per_seconds)))
            .bind(json(&new.allowed_ips))
            .bind(json(&new.allowed_routes))
            .bind(json(&new.metadata))
            .bind(rev)
            .bind(quota_limit(new.quota))
            .bind(new.quota.map(|q| q.period.as_str()))
            .execute(&mut *tx)
            .await?;
            let changes = json!({
                "name": new.name, "permission": new.permission, "environment": new.environment,
                "expires_at": new.expires_at.map(crate::clock::rfc3339), "preview": new.preview,
                "quota": new.quota,
            });
            record_audit!(tx, audit, now, "key.create", Some(&id), Some(&new.account_id), changes);
            emit_key_event!(tx, EventType::KeyCreated, &id, now, json!({}));
            tx.commit().await?;
        });
        self.get_key(&id).await
    }

    pub async fn get_key(&self, id: &str) -> Result<KeyRecord> {
        let sql = format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE id = $1");
        let row: Option<KeyRow> = on_pool!(self, pool => {
            sqlx::query_as(&sql).bind(id).fetch_optional(pool).await?
        });
        let mut key: KeyRecord = row.ok_or(StoreError::NotFound)?.try_into()?;
        self.fill_quota_usage(std::slice::from_mut(&mut key)).await?;
        Ok(key)
    }

    /// The key whose current secret has this hash, if any.
    pub async fn key_id_by_hash(&self, hash: &KeyHash) -> Result<Option<String>> {
        let id = on_pool!(self, pool => {
            sqlx::query_scalar::<_, String>(
                "SELECT id FROM api_keys WHERE secret_hash = $1 \
                 UNION ALL SELECT key_id FROM retired_secrets WHERE secret_hash = $1",
            )
            .bind(hash.as_bytes().as_slice())
            .fetch_optional(pool)
            .await?
        });
        Ok(id)
    }

    /// Newest first, filtered, one page at a time.
    pub async fn list_keys(&self, filter: &KeyFilter) -> Result<Page<KeyRecord>> {
        let now = now_ms();
        let limit = filter.limit.max(1);
        let rows: Vec<KeyRow> = on_pool!(self, pool => {
            let mut qb = QueryBuilder::new(format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE 1 = 1"));
            if let Some(account) = &filter.account_id {
                qb.push(" AND account_id = ").push_bind(account.clone());
            }
            if let Some(q) = &filter.q {
                let pattern = like_pattern(q);
                qb.push(" AND (LOWER(name) LIKE ").push_bind(pattern.clone()).push(" ESCAPE '\\'");
                qb.push(" OR LOWER(COALESCE(description, '')) LIKE ").push_bind(pattern.clone()).push(" ESCAPE '\\'");
                qb.push(" OR LOWER(preview) LIKE ").push_bind(pattern).push(" ESCAPE '\\')");
            }
            if let Some(permission) = filter.permission {
                qb.push(" AND permission = ").push_bind(permission.as_str());
            }
            match filter.status {
                None => {}
                Some(Status::Revoked) => {
                    qb.push(" AND revoked_at IS NOT NULL");
                }
                Some(Status::Expired) => {
                    qb.push(" AND revoked_at IS NULL AND expires_at IS NOT NULL AND expires_at <= ").push_bind(now);
                }
                Some(status) => {
                    qb.push(" AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > ").push_bind(now);
                    qb.push(") AND enabled = ").push_bind(status == Status::Active);
                }
            }
            if let Some(c) = &filter.cursor {
                qb.push(" AND (created_at < ").push_bind(c.created_at);
                qb.push(" OR (created_at = ").push_bind(c.created_at);
                qb.push(" AND id < ").push_bind(c.id.clone()).push("))");
            }
            qb.push(" ORDER BY created_at DESC, id DESC LIMIT ").push_bind(i64::from(limit) + 1);
            qb.build_query_as().fetch_all(pool).await?
        });
        let mut items = rows.into_iter().map(KeyRecord::try_from).collect::<Result<Vec<_>>>()?;
        let next_cursor = if items.len() > limit as usize {
            items.truncate(limit as usize);
            items.last().map(|k| Cursor { created_at: k.created_at, id: k.id.clone() }.encode())
        } else {
            None
        };
        self.fill_quota_usage(&mut items).await?;
        Ok(Page { items, next_cursor })
    }

    /// Edits a key; returns it before and after. A revoked key is final:
    /// editing it is a `Conflict`.
    pub async fn update_key(&self, id: &str, patch: &KeyPatch, audit: &AuditContext) -> Result<(KeyRecord, KeyRecord)> {
        let sql = format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE id = $1");
        let result = on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let rev = bump_revision!(tx);
            let row: Option<KeyRow> = sqlx::query_as(&sql).bind(id).fetch_optional(&mut *tx).await?;
            let before = KeyRecord::try_from(row.ok_or(StoreError::NotFound)?)?;
            if before.revoked_at.is_some() {
                return Err(StoreError::Conflict("the key is revoked".into()));
            }
            let mut after = before.clone();
            patch.apply(&mut after);
            after.updated_at = now_ms();
            sqlx::query(
                "UPDATE api_keys SET name = $1, description = $2, permission = $3, enabled = $4, expires_at = $5, \
                 rate_limit_requests = $6, rate_limit_per_seconds = $7, allowed_ips = $8, allowed_routes = $9, \
                 metadata = $10, updated_at = $11, revision = $12, quota_limit = $14, quota_period = $15 WHERE id = $13",
            )
            .bind(&after.name)
            .bind(&after.description)
            .bind(after.permission.as_str())
            .bind(after.enabled)
            .bind(after.expires_at)
            .bind(after.rate_limit.map(|r| i64::from(r.requests)))
            .bind(after.rate_limit.map(|r| i64::from(r.per_seconds)))
            .bind(json(&after.allowed_ips))
            .bind(json(&after.allowed_routes))
            .bind(json(&after.metadata))
            .bind(after.updated_at)
            .bind(rev)
            .bind(id)
            .bind(quota_limit(after.quota))
            .bind(after.quota.map(|q| q.period.as_str()))
            .execute(&mut *tx)
            .await?;
            let changes = key_changes(&before, &after);
            let action = key_update_action(&changes);
            record_audit!(tx, audit, after.updated_at, action, Some(id), Some(&after.account_id), changes);
            tx.commit().await?;
            (before, after)
        });
        let (before, mut after) = result;
        self.fill_quota_usage(std::slice::from_mut(&mut after)).await?;
        Ok((before, after))
    }

    /// Gives a key a new secret. The old secret keeps working until
    /// `old_valid_until` (unix ms; now or earlier means at once).
    pub async fn rotate_key(
        &self,
        id: &str,
        hash: &KeyHash,
        preview: &str,
        old_valid_until: i64,
        audit: &AuditContext,
    ) -> Result<KeyRecord> {
        let now = now_ms();
        on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let rev = bump_revision!(tx);
            let row: Option<RotatedRow> = sqlx::query_as(
                "SELECT secret_hash, revoked_at, account_id, preview, hash_algorithm FROM api_keys WHERE id = $1",
            )
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
            let (old_hash, revoked_at, account_id, old_preview, algorithm) = row.ok_or(StoreError::NotFound)?;
            if revoked_at.is_some() {
                return Err(StoreError::Conflict("the key is revoked".into()));
            }
            // Old secrets whose grace was already over are forgotten now, so a
            // key keeps at most two (the one this rotation retires, and the one
            // whose grace it ends) whatever its rotation history.
            sqlx::query("DELETE FROM retired_secrets WHERE key_id = $1 AND valid_until <= $2")
                .bind(id)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            // A key imported by hash and never used has no blake3 to keep in
            // grace (retired secrets are found by blake3): its old secret
            // stops at once.
            let old_in_grace = algorithm == "blake3";
            if old_in_grace {
                sqlx::query("INSERT INTO retired_secrets (secret_hash, key_id, valid_until, created_at) VALUES ($1, $2, $3, $4)")
                    .bind(&old_hash)
                    .bind(id)
                    .bind(old_valid_until)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
            }
            sqlx::query("UPDATE api_keys SET secret_hash = $1, preview = $2, rotated_at = $3, updated_at = $3, revision = $4, \
                 hash_algorithm = 'blake3' WHERE id = $5")
                .bind(hash.as_bytes().as_slice())
                .bind(preview)
                .bind(now)
                .bind(rev)
                .bind(id)
                .execute(&mut *tx)
                .await?;
            // Older retired secrets of this key die with this rotation too.
            sqlx::query("UPDATE retired_secrets SET valid_until = $1 WHERE key_id = $2 AND valid_until > $1 AND secret_hash <> $3")
                .bind(now)
                .bind(id)
                .bind(&old_hash)
                .execute(&mut *tx)
                .await?;
            let changes = json!({
                "preview": { "from": old_preview, "to": preview },
                "old_secret_valid_until": crate::clock::rfc3339(if old_in_grace { old_valid_until.max(now) } else { now }),
            });
            record_audit!(tx, audit, now, "key.rotate", Some(id), Some(&account_id), changes);
            let extra = json!({ "old_secret_valid_until": crate::clock::rfc3339(old_valid_until.max(now)) });
            emit_key_event!(tx, EventType::KeyRotated, id, now, extra);
            tx.commit().await?;
        });
        self.get_key(id).await
    }

    /// Revokes keys, all or none. Returns the ids revoked now and the ids
    /// not found; keys already revoked count as revoked (idempotent).
    pub async fn revoke_keys(
        &self,
        ids: &[String],
        only_account: Option<&str>,
        action: &str,
        audit: &AuditContext,
    ) -> Result<(Vec<String>, Vec<String>)> {
        let now = now_ms();
        let mut revoked = Vec::new();
        let mut not_found = Vec::new();
        on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let rev = bump_revision!(tx);
            let hooked = subscribed!(tx, EventType::KeyRevoked);
            for id in ids {
                let account: Option<(String, Option<i64>)> =
                    sqlx::query_as("SELECT account_id, revoked_at FROM api_keys WHERE id = $1")
                        .bind(id)
                        .fetch_optional(&mut *tx)
                        .await?;
                match account {
                    Some((a, already)) if only_account.is_none_or(|only| only == a) => {
                        sqlx::query(
                            "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, $1), updated_at = $1, revision = $2 WHERE id = $3",
                        )
                        .bind(now)
                        .bind(rev)
                        .bind(id)
                        .execute(&mut *tx)
                        .await?;
                        if already.is_none() {
                            record_audit!(tx, audit, now, action, Some(id), Some(&a), json!({ "status": { "to": "revoked" } }));
                            emit_key_event!(tx, EventType::KeyRevoked, id, now, json!({}), hooked);
                        }
                        revoked.push(id.clone());
                    }
                    _ => not_found.push(id.clone()),
                }
            }
            tx.commit().await?;
        });
        Ok((revoked, not_found))
    }

    pub async fn revoke_key(&self, id: &str, audit: &AuditContext) -> Result<KeyRecord> {
        let (revoked, _) = self.revoke_keys(&[id.to_owned()], None, "key.revoke", audit).await?;
        if revoked.is_empty() {
            return Err(StoreError::NotFound);
        }
        self.get_key(id).await
    }
}

/// A key about to be rotated: secret hash, revoked at, account, preview,
/// hash algorithm.
type RotatedRow = (Vec<u8>, Option<i64>, String, String, String);

/// What a leak report found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Leak {
    /// The key's current secret: the key was revoked.
    Revoked(String),
    /// An old secret still inside its rotation grace: its grace was ended.
    GraceEnded(String),
    /// Unknown, already dead, or outside the caller's account.
    Nothing,
}

impl Store {
    /// Kills a leaked secret at once: a current secret revokes its key; an
    /// old secret inside its grace period stops working.
    pub async fn report_leak(&self, hash: &KeyHash, only_account: Option<&str>, audit: &AuditContext) -> Result<Leak> {
        let now = now_ms();
        let leak = on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let rev = bump_revision!(tx);
            let current: Option<(String, String, Option<i64>)> =
                sqlx::query_as("SELECT id, account_id, revoked_at FROM api_keys WHERE secret_hash = $1")
                    .bind(hash.as_bytes().as_slice())
                    .fetch_optional(&mut *tx)
                    .await?;
            let retired: Option<(String, String, i64)> = sqlx::query_as(
                "SELECT r.key_id, k.account_id, r.valid_until FROM retired_secrets r JOIN api_keys k ON k.id = r.key_id \
                 WHERE r.secret_hash = $1",
            )
            .bind(hash.as_bytes().as_slice())
            .fetch_optional(&mut *tx)
            .await?;
            let allowed = |account: &str| only_account.is_none_or(|only| only == account);
            let leak = match (current, retired) {
                (Some((id, account, None)), _) if allowed(&account) => {
                    sqlx::query("UPDATE api_keys SET revoked_at = $1, updated_at = $1, revision = $2 WHERE id = $3")
                        .bind(now)
                        .bind(rev)
                        .bind(&id)
                        .execute(&mut *tx)
                        .await?;
                    let changes = json!({ "secret": "current", "status": { "to": "revoked" } });
                    record_audit!(tx, audit, now, "key.report_leak", Some(&id), Some(&account), changes);
                    // A leak that revokes is both: `key.revoked` subscribers
                    // hear of every revocation.
                    emit_key_event!(tx, EventType::KeyLeaked, &id, now, json!({ "secret": "current", "revoked": true }));
                    emit_key_event!(tx, EventType::KeyRevoked, &id, now, json!({}));
                    Leak::Revoked(id)
                }
                (None, Some((id, account, until))) if until > now && allowed(&account) => {
                    sqlx::query("UPDATE retired_secrets SET valid_until = $1 WHERE secret_hash = $2")
                        .bind(now)
                        .bind(hash.as_bytes().as_slice())
                        .execute(&mut *tx)
                        .await?;
                    // The key's revision moves so every snapshot re-reads its secrets.
                    sqlx::query("UPDATE api_keys SET revision = $1 WHERE id = $2").bind(rev).bind(&id).execute(&mut *tx).await?;
                    let changes = json!({ "secret": "previous", "grace": { "to": "ended" } });
                    record_audit!(tx, audit, now, "key.report_leak", Some(&id), Some(&account), changes);
                    let extra = json!({ "secret": "previous", "revoked": false });
                    emit_key_event!(tx, EventType::KeyLeaked, &id, now, extra);
                    Leak::GraceEnded(id)
                }
                _ => Leak::Nothing,
            };
            tx.commit().await?;
            leak
        });
        Ok(leak)
    }
}
