//! What the reloader reads: every key whose row (or whose account) changed
//! after a revision, with all of those keys' retired secrets, and every
//! account whose row or whose plan changed, with its plan's limits. A key
//! imported as a sha256 hash and not used since goes to `Changes::foreign`;
//! one that moved to blake3 since names its sha256 in `Changes::moved`.
//!
//! The revision is read first, in the same transaction as the rows: every
//! row at or below it is committed (writers serialise on the counter), so
//! nothing is skipped. On PostgreSQL (READ COMMITTED) rows committed just
//! after the counter was read may come along too; they are read again, to the
//! same effect, by the next reload.
//!
//! SQLite's full load (at start-up) takes another road: sqlx hands SQLite
//! rows over one at a time from its worker thread, copying every value, which
//! costs ~5 µs a row — five seconds at a million keys. There SQLite itself
//! packs the keys into one JSON array per page of `FULL_LOAD_PAGE` rows, read
//! back in a few hundred round trips; at a million keys that is ~4× faster.

use std::collections::HashMap;

use futures_util::TryStreamExt;
use serde::Deserialize;
use sqlx::SqlitePool;

use super::{on_pool, Pool, Result, RouteRule, Store, StoreError};
use crate::keys::{
    AccountRow, Changes, Extras, InlineId, KeyHash, KeyPolicy, PackedQuota, Period, Permission, PlanLimits, PolicyRow,
    Quota, QuotaSpec, Restrictions, RetiredRow,
};

/// A key's row as the reloader needs it: read by column name through sqlx,
/// or, in SQLite's full load, from a JSON array in field order (the account's
/// `api_access` is not in it; it is looked up afterwards).
#[derive(sqlx::FromRow, Deserialize)]
struct PolicyDbRow {
    id: String,
    account_id: String,
    permission: String,
    enabled: bool,
    revoked_at: Option<i64>,
    #[serde(skip)]
    api_access: bool,
    expires_at: Option<i64>,
    #[serde(deserialize_with = "from_hex")]
    secret_hash: Vec<u8>,
    rate_limit_requests: Option<i64>,
    rate_limit_per_seconds: Option<i64>,
    allowed_ips: String,
    allowed_routes: String,
    metadata: String,
    quota_limit: Option<i64>,
    quota_period: Option<String>,
    /// `blake3`, or `sha256` for a key imported by hash not used since.
    hash_algorithm: String,
    /// The sha256 of an imported secret (`hex()` in SQLite's JSON, empty
    /// for none).
    #[serde(deserialize_with = "from_hex_or_empty")]
    import_sha256: Option<Vec<u8>>,
}

#[derive(sqlx::FromRow)]
struct RetiredDbRow {
    secret_hash: Vec<u8>,
    key_id: String,
    valid_until: i64,
}

const POLICY_SQL: &str = "\
    SELECT k.id, k.account_id, k.permission, k.enabled, k.revoked_at, a.api_access, k.expires_at, k.secret_hash, \
    k.rate_limit_requests, k.rate_limit_per_seconds, k.allowed_ips, k.allowed_routes, k.metadata, k.quota_limit, k.quota_period, k.hash_algorithm, k.import_sha256 \
    FROM api_keys k JOIN accounts a ON a.id = k.account_id WHERE k.revision > $1 \
    UNION ALL \
    SELECT k.id, k.account_id, k.permission, k.enabled, k.revoked_at, a.api_access, k.expires_at, k.secret_hash, \
    k.rate_limit_requests, k.rate_limit_per_seconds, k.allowed_ips, k.allowed_routes, k.metadata, k.quota_limit, k.quota_period, k.hash_algorithm, k.import_sha256 \
    FROM accounts a JOIN api_keys k ON k.account_id = a.id WHERE a.revision > $1 AND k.revision <= $1";

const RETIRED_SQL: &str = "\
    SELECT r.secret_hash, r.key_id, r.valid_until \
    FROM retired_secrets r JOIN api_keys k ON k.id = r.key_id JOIN accounts a ON a.id = k.account_id \
    WHERE k.revision > $1 OR a.revision > $1";

/// Keys per JSON page of SQLite's full load: large enough that the round
/// trips don't count, small enough that a page is under a megabyte.
const FULL_LOAD_PAGE: i64 = 4096;

/// One page of SQLite's full load, in rowid order after `$1`: the last rowid
/// (NULL when there is nothing left) and the keys as a JSON array of arrays
/// in `PolicyDbRow`'s field order.
const SQLITE_KEY_PAGE_SQL: &str = "\
    SELECT max(n), json_group_array(json_array(id, account_id, permission, \
    iif(enabled, json('true'), json('false')), revoked_at, expires_at, hex(secret_hash), \
    rate_limit_requests, rate_limit_per_seconds, allowed_ips, allowed_routes, metadata, quota_limit, quota_period, hash_algorithm, hex(import_sha256))) \
    FROM (SELECT rowid AS n, id, account_id, permission, enabled, revoked_at, expires_at, secret_hash, \
    rate_limit_requests, rate_limit_per_seconds, allowed_ips, allowed_routes, metadata, quota_limit, quota_period, hash_algorithm, import_sha256 \
    FROM api_keys WHERE rowid > $1 ORDER BY rowid LIMIT $2)";

/// Accounts changed after `$1`, or whose plan did, with the plan's limits
/// (all NULL for an account without a plan). A plan edit thus reaches the
/// snapshot without re-reading any key.
const ACCOUNTS_SQL: &str = "\
    SELECT a.id, p.id AS plan_id, p.rate_limit_requests, p.rate_limit_per_seconds, p.quota_limit, p.quota_period \
    FROM accounts a LEFT JOIN plans p ON p.id = a.plan_id WHERE a.revision > $1 OR p.revision > $1";

#[derive(sqlx::FromRow)]
struct AccountDbRow {
    id: String,
    plan_id: Option<String>,
    rate_limit_requests: Option<i64>,
    rate_limit_per_seconds: Option<i64>,
    quota_limit: Option<i64>,
    quota_period: Option<String>,
}

const REVISION_SQL: &str = "SELECT value FROM revision WHERE id = 1";

impl Store {
    /// Everything that changed after `since` (0 reads everything).
    pub async fn changes_since(&self, since: i64) -> Result<Changes> {
        if let (0, Pool::Sqlite(pool)) = (since, &self.pool) {
            return sqlite_full_load(pool).await;
        }
        // Rows are converted as they stream in, so a full load of a million
        // keys never holds the database rows and the policies at once.
        let changes = on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let revision: i64 = sqlx::query_scalar(REVISION_SQL).fetch_one(&mut *tx).await?;
            let mut changes = Changes { revision, ..Changes::default() };
            if revision > since {
                let mut rows = sqlx::query_as::<_, PolicyDbRow>(POLICY_SQL).bind(since).fetch(&mut *tx);
                while let Some(row) = rows.try_next().await? {
                    push_policy(&mut changes, row)?;
                }
                drop(rows);
                let retired: Vec<RetiredDbRow> = sqlx::query_as(RETIRED_SQL).bind(since).fetch_all(&mut *tx).await?;
                changes.retired = retired.into_iter().map(retired_row).collect::<Result<_>>()?;
                let accounts: Vec<AccountDbRow> = sqlx::query_as(ACCOUNTS_SQL).bind(since).fetch_all(&mut *tx).await?;
                changes.accounts = accounts.into_iter().map(account_row).collect::<Result<_>>()?;
            }
            tx.commit().await?;
            changes
        });
        Ok(changes)
    }
}

/// Every key of a SQLite store, in one read transaction (a consistent
/// snapshot in WAL mode), a JSON page at a time. SQLite builds the next page
/// on its worker thread while this one is decoded.
async fn sqlite_full_load(pool: &SqlitePool) -> Result<Changes> {
    let mut tx = pool.begin().await?;
    let revision: i64 = sqlx::query_scalar(REVISION_SQL).fetch_one(&mut *tx).await?;
    let access: HashMap<String, bool> =
        sqlx::query_as("SELECT id, api_access FROM accounts").fetch_all(&mut *tx).await?.into_iter().collect();
    let mut changes = Changes { revision, ..Changes::default() };
    let mut page = key_page(&mut tx, 0).await?;
    while let (Some(last), json) = page {
        // `join` polls the fetch first, so the query is on its way before
        // the decoding (which never yields) runs.
        let (next, decoded) =
            futures_util::future::join(key_page(&mut tx, last), async { decode_page(&json, &access, &mut changes) })
                .await;
        decoded?;
        page = next?;
    }
    let retired: Vec<RetiredDbRow> = sqlx::query_as(RETIRED_SQL).bind(0i64).fetch_all(&mut *tx).await?;
    changes.retired = retired.into_iter().map(retired_row).collect::<Result<_>>()?;
    let accounts: Vec<AccountDbRow> = sqlx::query_as(ACCOUNTS_SQL).bind(0i64).fetch_all(&mut *tx).await?;
    changes.accounts = accounts.into_iter().map(account_row).collect::<Result<_>>()?;
    tx.commit().await?;
    Ok(changes)
}

/// The page of keys after rowid `after`: its last rowid (`None` past the
/// end) and its JSON.
async fn key_page(tx: &mut sqlx::SqliteConnection, after: i64) -> Result<(Option<i64>, String)> {
    Ok(sqlx::query_as(SQLITE_KEY_PAGE_SQL).bind(after).bind(FULL_LOAD_PAGE).fetch_one(tx).await?)
}

fn decode_page(json: &str, access: &HashMap<String, bool>, changes: &mut Changes) -> Result<()> {
    let rows: Vec<PolicyDbRow> =
        serde_json::from_str(json).map_err(|e| StoreError::Other(format!("a key is invalid in the store: {e}")))?;
    changes.keys.reserve(rows.len());
    for mut row in rows {
        row.api_access = *access.get(&row.account_id).ok_or_else(|| corrupt(&row.id, "account"))?;
        push_policy(changes, row)?;
    }
    Ok(())
}

/// Files a key row where the snapshot looks for it: by blake3, or (imported
/// as a sha256 and not used since) by that sha256.
fn push_policy(changes: &mut Changes, row: PolicyDbRow) -> Result<()> {
    let foreign = match row.hash_algorithm.as_str() {
        "blake3" => false,
        "sha256" => true,
        _ => return Err(corrupt(&row.id, "hash algorithm")),
    };
    let moved = match (&row.import_sha256, foreign) {
        (Some(sha), false) => Some(KeyHash::from_slice(sha).ok_or_else(|| corrupt(&row.id, "imported hash"))?),
        _ => None,
    };
    let policy = policy_row(row)?;
    if foreign {
        changes.foreign.push(policy);
    } else {
        changes.keys.push(policy);
        changes.moved.extend(moved);
    }
    Ok(())
}

/// `from_hex` for a nullable column: SQLite's `hex(NULL)` is `''` (and a
/// JSON null would do too).
fn from_hex_or_empty<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> std::result::Result<Option<Vec<u8>>, D::Error> {
    match <Option<&str>>::deserialize(deserializer)? {
        None | Some("") => Ok(None),
        Some(text) => hex_bytes(text).map(Some).ok_or_else(|| serde::de::Error::custom("invalid hex")),
    }
}

/// `hex(blob)` as SQLite writes it (upper case) back to bytes.
fn from_hex<'de, D: serde::Deserializer<'de>>(deserializer: D) -> std::result::Result<Vec<u8>, D::Error> {
    let text = <&str>::deserialize(deserializer)?;
    hex_bytes(text).ok_or_else(|| serde::de::Error::custom("invalid hex"))
}

fn hex_bytes(text: &str) -> Option<Vec<u8>> {
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'A'..=b'F' => Some(c - b'A' + 10),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    text.as_bytes()
        .chunks(2)
        .map(|pair| match pair {
            [high, low] => Some(digit(*high)? << 4 | digit(*low)?),
            _ => None,
        })
        .collect()
}

fn retired_row(row: RetiredDbRow) -> Result<RetiredRow> {
    let hash = KeyHash::from_slice(&row.secret_hash).ok_or_else(|| corrupt(&row.key_id, "retired hash"))?;
    Ok(RetiredRow { hash, key_id: row.key_id, valid_until: row.valid_until })
}

fn account_row(row: AccountDbRow) -> Result<AccountRow> {
    let account_id = InlineId::new(&row.id).ok_or_else(|| corrupt_plan(&row.id, "account id"))?;
    let Some(plan_id) = row.plan_id else { return Ok(AccountRow { account_id, plan: None }) };
    let rate_limit = match (row.rate_limit_requests, row.rate_limit_per_seconds) {
        (Some(requests), Some(per)) => Some(Quota {
            requests: u32::try_from(requests).map_err(|_| corrupt_plan(&plan_id, "rate limit"))?,
            per_seconds: u32::try_from(per).map_err(|_| corrupt_plan(&plan_id, "rate limit"))?,
        }),
        _ => None,
    };
    let quota = match (row.quota_limit, row.quota_period) {
        (Some(limit), Some(period)) => Some(QuotaSpec {
            limit: u64::try_from(limit).map_err(|_| corrupt_plan(&plan_id, "quota"))?,
            period: Period::parse(&period).ok_or_else(|| corrupt_plan(&plan_id, "quota period"))?,
        }),
        _ => None,
    };
    Ok(AccountRow { account_id, plan: Some(PlanLimits { plan_id, rate_limit, quota }) })
}

fn corrupt_plan(id: &str, what: &str) -> StoreError {
    StoreError::Other(format!("{id} has an invalid {what} in the store"))
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
    let restrictions = Restrictions::parse(&ips, &routes).map_err(|e| corrupt(&row.id, &e.field))?;
    // Most keys have none: no parsing, no allocation.
    let metadata = if matches!(row.metadata.as_str(), "{}" | "null" | "") {
        None
    } else {
        let map: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(&row.metadata).map_err(|_| corrupt(&row.id, "metadata"))?;
        (!map.is_empty()).then(|| std::sync::Arc::new(map))
    };
    let usage_quota = match (row.quota_limit, row.quota_period.as_deref()) {
        (Some(limit), Some(period)) => Some(
            PackedQuota::new(QuotaSpec {
                limit: u64::try_from(limit).map_err(|_| corrupt(&row.id, "quota"))?,
                period: Period::parse(period).ok_or_else(|| corrupt(&row.id, "quota period"))?,
            })
            .ok_or_else(|| corrupt(&row.id, "quota"))?,
        ),
        _ => None,
    };
    let policy = KeyPolicy {
        id: InlineId::new(&row.id).ok_or_else(|| corrupt(&row.id, "id"))?,
        account_id: InlineId::new(&row.account_id).ok_or_else(|| corrupt(&row.id, "account id"))?,
        permission: Permission::parse(&row.permission).ok_or_else(|| corrupt(&row.id, "permission"))?,
        enabled: row.enabled,
        revoked: row.revoked_at.is_some(),
        api_access: row.api_access,
        expires_at: row.expires_at.unwrap_or(KeyPolicy::NEVER),
        quota,
        usage_quota,
        extras: Extras::of(restrictions, metadata),
    };
    Ok(PolicyRow { hash, policy })
}
