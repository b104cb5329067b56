//! The records the store reads and writes: accounts, keys, patches, filters
//! and pages. Plain data: no SQL and no JSON shape of the admin API here.

use serde::{Deserialize, Serialize};

pub use crate::keys::QuotaSpec;
pub use crate::keys::RouteRule;
use crate::keys::{Environment, KeyHash, Permission, Status};

/// What an admin token may do. Stored as its lowercase name; the same
/// names on the wire and on the command line (`--role`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything, admin tokens included.
    Owner,
    /// Manage accounts and keys.
    Admin,
    /// Read only.
    Viewer,
}

impl Role {
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "owner" => Some(Role::Owner),
            "admin" => Some(Role::Admin),
            "viewer" => Some(Role::Viewer),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Admin => "admin",
            Role::Viewer => "viewer",
        }
    }
}

/// A role column holding a name no version of keygate wrote.
#[derive(Debug, thiserror::Error)]
#[error("unknown admin token role {0:?}")]
pub struct UnknownRole(String);

/// Decodes the `role` column.
impl TryFrom<String> for Role {
    type Error = UnknownRole;

    fn try_from(s: String) -> Result<Role, UnknownRole> {
        Role::parse(&s).ok_or(UnknownRole(s))
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Account {
    pub id: String,
    pub name: String,
    pub api_access: bool,
    /// `plan_…`, or `None`: no plan.
    pub plan_id: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone, Default)]
pub struct AccountPatch {
    pub name: Option<String>,
    pub api_access: Option<bool>,
    /// `Some(None)` takes the account off its plan.
    pub plan_id: Option<Option<String>>,
}

/// A plan: limits pooled over all of an account's keys.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub id: String,
    pub name: String,
    pub rate_limit: Option<RateLimit>,
    pub quota: Option<QuotaSpec>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A plan to create.
#[derive(Debug, Clone)]
pub struct NewPlan {
    pub name: String,
    pub rate_limit: Option<RateLimit>,
    pub quota: Option<QuotaSpec>,
}

/// An edit: `None` leaves a field alone; `Some(None)` clears a limit.
#[derive(Debug, Clone, Default)]
pub struct PlanPatch {
    pub name: Option<String>,
    pub rate_limit: Option<Option<RateLimit>>,
    pub quota: Option<Option<QuotaSpec>>,
}

/// A per-key rate limit: `requests` per `per_seconds`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({ "requests": 100, "per_seconds": 60 }))]
pub struct RateLimit {
    #[schema(minimum = 1, maximum = 1000000)]
    pub requests: u32,
    #[schema(minimum = 1, maximum = 86400)]
    pub per_seconds: u32,
}

pub type Metadata = serde_json::Map<String, serde_json::Value>;

#[derive(Debug, Clone, PartialEq)]
pub struct KeyRecord {
    pub id: String,
    pub account_id: String,
    pub name: String,
    pub description: Option<String>,
    pub permission: Permission,
    pub enabled: bool,
    pub environment: Environment,
    pub prefix: String,
    pub preview: String,
    pub created_at: i64,
    pub updated_at: i64,
    pub expires_at: Option<i64>,
    pub last_used_at: Option<i64>,
    pub usage_count: i64,
    pub rotated_at: Option<i64>,
    pub revoked_at: Option<i64>,
    pub rate_limit: Option<RateLimit>,
    pub allowed_ips: Vec<String>,
    pub allowed_routes: Vec<RouteRule>,
    pub metadata: Metadata,
    /// The key's own quota.
    pub quota: Option<QuotaSpec>,
    /// The quota's current period as the ledger has it (what replicas
    /// flushed); `None` without a quota.
    pub quota_usage: Option<QuotaUsage>,
}

/// A quota's state in its current period: `remaining` is the limit plus
/// the adjustments made through the API, minus `used` (never below 0);
/// `resets_at` (unix ms) is `None` for `total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct QuotaUsage {
    pub used: u64,
    pub remaining: u64,
    #[schema(value_type = Option<String>, format = DateTime)]
    #[serde(serialize_with = "rfc3339_opt")]
    pub resets_at: Option<i64>,
}

fn rfc3339_opt<S: serde::Serializer>(at: &Option<i64>, s: S) -> Result<S::Ok, S::Error> {
    match at {
        Some(ms) => s.serialize_str(&crate::clock::rfc3339(*ms)),
        None => s.serialize_none(),
    }
}

/// A change to a quota's current period through the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuotaOp {
    /// `remaining` becomes n.
    Set(u64),
    /// `remaining` grows by n.
    Increment(u64),
    /// `remaining` shrinks by n, never below 0.
    Decrement(u64),
    /// The period starts afresh: `used` 0, no adjustment.
    Reset,
}

impl KeyRecord {
    pub fn status(&self, now_ms: i64) -> Status {
        Status::of(self.revoked_at.is_some(), self.expires_at, self.enabled, now_ms)
    }
}

/// A key to create. The secret itself never reaches the store: only its
/// hash, prefix and preview.
#[derive(Debug, Clone)]
pub struct NewKey {
    pub account_id: String,
    pub name: String,
    pub description: Option<String>,
    pub permission: Permission,
    pub environment: Environment,
    pub prefix: String,
    pub preview: String,
    pub hash: KeyHash,
    pub expires_at: Option<i64>,
    pub enabled: bool,
    pub rate_limit: Option<RateLimit>,
    pub allowed_ips: Vec<String>,
    pub allowed_routes: Vec<RouteRule>,
    pub metadata: Metadata,
    pub quota: Option<QuotaSpec>,
}

/// An edit: `None` leaves a field alone; `Some(None)` clears a nullable one.
#[derive(Debug, Clone, Default)]
pub struct KeyPatch {
    pub name: Option<String>,
    pub description: Option<Option<String>>,
    pub permission: Option<Permission>,
    pub enabled: Option<bool>,
    pub expires_at: Option<Option<i64>>,
    pub rate_limit: Option<Option<RateLimit>>,
    pub allowed_ips: Option<Vec<String>>,
    pub allowed_routes: Option<Vec<RouteRule>>,
    pub metadata: Option<Metadata>,
    pub quota: Option<Option<QuotaSpec>>,
}

impl KeyPatch {
    /// Applies the patch to a record; returns the names of the fields that
    /// actually changed.
    pub fn apply(&self, key: &mut KeyRecord) -> Vec<&'static str> {
        let mut changed = Vec::new();
        macro_rules! set {
            ($field:ident) => {
                if let Some(v) = &self.$field {
                    if key.$field != *v {
                        key.$field = v.clone();
                        changed.push(stringify!($field));
                    }
                }
            };
        }
        set!(name);
        set!(description);
        set!(permission);
        set!(enabled);
        set!(expires_at);
        set!(rate_limit);
        set!(allowed_ips);
        set!(allowed_routes);
        set!(metadata);
        set!(quota);
        changed
    }
}

/// Where a newest-first listing resumes: after (created_at, id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub created_at: i64,
    pub id: String,
}

impl Cursor {
    pub fn encode(&self) -> String {
        format!("{}.{}", self.created_at, self.id)
    }

    pub fn decode(text: &str) -> Option<Cursor> {
        let (at, id) = text.split_once('.')?;
        let created_at = at.parse().ok()?;
        if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return None;
        }
        Some(Cursor { created_at, id: id.to_owned() })
    }
}

#[derive(Debug, Clone, Default)]
pub struct KeyFilter {
    pub account_id: Option<String>,
    /// Case-insensitive substring of name, description or preview.
    pub q: Option<String>,
    pub permission: Option<Permission>,
    pub status: Option<Status>,
    pub limit: u32,
    pub cursor: Option<Cursor>,
}

#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}
