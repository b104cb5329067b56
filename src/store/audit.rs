//! The audit trail: one row per admin write, inserted in the same
//! transaction as the change it records, so neither exists without the
//! other. Rows hold ids, names and changed fields — never a secret.

use serde_json::{json, Map, Value};

use super::{on_pool, Cursor, KeyRecord, Page, Result, Store};
use crate::clock::rfc3339;

/// Who is writing, from where, in which request.
#[derive(Debug, Clone, Default)]
pub struct AuditContext {
    pub actor_id: String,
    pub actor_name: String,
    pub request_id: Option<String>,
    pub source_ip: Option<String>,
}

/// One audit row.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEntry {
    pub id: String,
    pub at: i64,
    pub actor_id: String,
    pub actor_name: String,
    pub action: String,
    pub target_id: Option<String>,
    pub account_id: Option<String>,
    pub request_id: Option<String>,
    pub source_ip: Option<String>,
    pub changes: Value,
}

#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub account_id: Option<String>,
    /// Matches the target (a key id, account id or admin token id).
    pub key_id: Option<String>,
    pub actor_id: Option<String>,
    pub action: Option<String>,
    pub since: Option<i64>,
    pub until: Option<i64>,
    pub limit: u32,
    pub cursor: Option<Cursor>,
}

#[derive(sqlx::FromRow)]
struct AuditRow {
    id: String,
    at: i64,
    actor_id: String,
    actor_name: String,
    action: String,
    target_id: Option<String>,
    account_id: Option<String>,
    request_id: Option<String>,
    source_ip: Option<String>,
    changes: String,
}

/// Inserts an audit row inside the caller's transaction.
macro_rules! record_audit {
    ($tx:expr, $ctx:expr, $at:expr, $action:expr, $target:expr, $account:expr, $changes:expr) => {
        sqlx::query(
            "INSERT INTO audit_log (id, at, actor_id, actor_name, action, target_id, account_id, request_id, source_ip, changes) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind($crate::keys::format::sortable_id("aud", $at))
        .bind($at)
        .bind(&$ctx.actor_id)
        .bind(&$ctx.actor_name)
        .bind($action)
        .bind($target)
        .bind($account)
        .bind(&$ctx.request_id)
        .bind(&$ctx.source_ip)
        .bind(serde_json::to_string(&$changes).unwrap_or_else(|_| "{}".into()))
        .execute(&mut *$tx)
        .await?
    };
}
pub(crate) use record_audit;

/// `{ field: { "from": …, "to": … } }` for each field that differs.
pub fn key_changes(before: &KeyRecord, after: &KeyRecord) -> Value {
    let mut out = Map::new();
    let time = |t: Option<i64>| t.map(rfc3339);
    let mut put = |field: &str, from: Value, to: Value| {
        if from != to {
            out.insert(field.to_owned(), json!({ "from": from, "to": to }));
        }
    };
    put("name", json!(before.name), json!(after.name));
    put("description", json!(before.description), json!(after.description));
    put("permission", json!(before.permission), json!(after.permission));
    put("enabled", json!(before.enabled), json!(after.enabled));
    put("expires_at", json!(time(before.expires_at)), json!(time(after.expires_at)));
    put("rate_limit", json!(before.rate_limit), json!(after.rate_limit));
    put("allowed_ips", json!(before.allowed_ips), json!(after.allowed_ips));
    put("allowed_routes", json!(before.allowed_routes), json!(after.allowed_routes));
    put("metadata", json!(before.metadata), json!(after.metadata));
    put("quota", json!(before.quota), json!(after.quota));
    Value::Object(out)
}

/// The action an edit is recorded as: `key.disable` / `key.enable` when
/// that is all it did, `key.update` otherwise.
pub fn key_update_action(changes: &Value) -> &'static str {
    match changes.as_object() {
        Some(map) if map.len() == 1 && map.contains_key("enabled") => {
            if map["enabled"]["to"] == json!(true) {
                "key.enable"
            } else {
                "key.disable"
            }
        }
        _ => "key.update",
    }
}

impl Store {
    /// Newest first, filtered, one page at a time.
    pub async fn list_audit(&self, filter: &AuditFilter) -> Result<Page<AuditEntry>> {
        let limit = filter.limit.max(1);
        let rows: Vec<AuditRow> = on_pool!(self, pool => {
            let mut qb = sqlx::QueryBuilder::new(
                "SELECT id, at, actor_id, actor_name, action, target_id, account_id, request_id, source_ip, changes FROM audit_log WHERE 1 = 1",
            );
            if let Some(v) = &filter.account_id {
                qb.push(" AND account_id = ").push_bind(v.clone());
            }
            if let Some(v) = &filter.key_id {
                qb.push(" AND target_id = ").push_bind(v.clone());
            }
            if let Some(v) = &filter.actor_id {
                qb.push(" AND actor_id = ").push_bind(v.clone());
            }
            if let Some(v) = &filter.action {
                qb.push(" AND action = ").push_bind(v.clone());
            }
            if let Some(v) = filter.since {
                qb.push(" AND at >= ").push_bind(v);
            }
            if let Some(v) = filter.until {
                qb.push(" AND at < ").push_bind(v);
            }
            if let Some(c) = &filter.cursor {
                qb.push(" AND (at < ").push_bind(c.created_at);
                qb.push(" OR (at = ").push_bind(c.created_at);
                qb.push(" AND id < ").push_bind(c.id.clone()).push("))");
            }
            qb.push(" ORDER BY at DESC, id DESC LIMIT ").push_bind(i64::from(limit) + 1);
            qb.build_query_as().fetch_all(pool).await?
        });
        let mut items: Vec<AuditEntry> = rows
            .into_iter()
            .map(|r| AuditEntry {
                changes: serde_json::from_str(&r.changes).unwrap_or(Value::Null),
                id: r.id,
                at: r.at,
                actor_id: r.actor_id,
                actor_name: r.actor_name,
                action: r.action,
                target_id: r.target_id,
                account_id: r.account_id,
                request_id: r.request_id,
                source_ip: r.source_ip,
            })
            .collect();
        let next_cursor = if items.len() > limit as usize {
            items.truncate(limit as usize);
            items.last().map(|e| Cursor { created_at: e.at, id: e.id.clone() }.encode())
        } else {
            None
        };
        Ok(Page { items, next_cursor })
    }
}
