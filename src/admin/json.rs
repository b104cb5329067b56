//! JSON in and out of the admin API: the body extractor that turns every
//! rejection into a problem naming the field, and the views (the JSON shapes
//! of docs/admin-api.md#shapes) built from store records.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};
use utoipa::ToSchema;

use super::error::ApiError;
use crate::clock::rfc3339;
use crate::keys::{Environment, Permission, Status};
use crate::store::{Account, KeyRecord, Metadata, Page, Plan, QuotaSpec, QuotaUsage, RateLimit, RouteRule};

/// A JSON request body. An empty body reads as `{}`, so routes whose fields
/// are all optional (rotate) can be called with none.
pub struct JsonBody<T>(pub T);

impl<S, T> FromRequest<S> for JsonBody<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::TooLarge
            } else {
                ApiError::BadRequest(e.body_text())
            }
        })?;
        parse(&bytes).map(JsonBody)
    }
}

/// Deserializes, reporting the path of the field at fault.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let bytes: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) { b"{}" } else { bytes };
    let mut de = serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            return ApiError::BadRequest(format!("the body is not valid JSON: {inner}"));
        }
        let message = inner.to_string();
        let message = message.split(" at line ").next().unwrap_or(&message).to_owned();
        let named = message
            .split('`')
            .nth(1)
            .filter(|_| message.starts_with("unknown field") || message.starts_with("missing field"));
        let field = match (path.as_str(), named) {
            (".", Some(name)) => name.to_owned(),
            (p, Some(name)) if message.starts_with("missing field") => format!("{p}.{name}"),
            (".", None) => "(body)".to_owned(),
            (p, _) => p.to_owned(),
        };
        // A field with an empty name (`{"": 1}`) has no path to show.
        let field = if field.is_empty() || field.ends_with('.') { "(body)".to_owned() } else { field };
        ApiError::Invalid { field, message }
    })
}

/// A key record: every field is present, `null` when unset. Times are
/// RFC 3339 UTC. The secret itself is never part of it.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = key_example)]
pub struct KeyView {
    /// `key_…`.
    pub id: String,
    /// `acc_…`.
    pub account_id: String,
    pub name: String,
    #[schema(required = true)]
    pub description: Option<String>,
    pub permission: Permission,
    /// Derived, in this order: revoked, expired, disabled, else active.
    pub status: Status,
    pub enabled: bool,
    pub environment: Environment,
    /// The secret's prefix, e.g. `kg_live`.
    pub prefix: String,
    /// Enough of the secret to recognise it, e.g. `kg_live_Xb3f…TVzs`.
    pub preview: String,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub updated_at: String,
    #[schema(format = DateTime, required = true)]
    pub expires_at: Option<String>,
    #[schema(format = DateTime, required = true)]
    pub last_used_at: Option<String>,
    pub usage_count: i64,
    #[schema(format = DateTime, required = true)]
    pub rotated_at: Option<String>,
    #[schema(format = DateTime, required = true)]
    pub revoked_at: Option<String>,
    /// `null`: no per-key rate limit.
    #[schema(required = true)]
    pub rate_limit: Option<RateLimit>,
    /// CIDR ranges the key may be used from; empty: anywhere.
    pub allowed_ips: Vec<String>,
    /// Routes the key may call; empty: every route.
    pub allowed_routes: Vec<RouteRule>,
    /// Free-form JSON object, at most 4 KiB.
    #[schema(value_type = Object)]
    pub metadata: Metadata,
    /// `null`: no quota of its own.
    #[schema(required = true)]
    pub quota: Option<QuotaSpec>,
    /// The quota's current period, as the store has it (spending reaches
    /// it within a fraction of a second); `null` without a quota.
    #[schema(required = true)]
    pub quota_usage: Option<QuotaUsage>,
}

/// The key record of the OpenAPI examples.
pub fn key_example() -> Value {
    json!({
        "id": "key_4hQ2vX9TzLmN0pRsYb7c",
        "account_id": "acc_7Lk2PqW9xZr4Tn8VbM1s",
        "name": "reporting service",
        "description": "nightly export job",
        "permission": "read",
        "status": "active",
        "enabled": true,
        "environment": "live",
        "prefix": "kg_live",
        "preview": "kg_live_Xb3f…TVzs",
        "created_at": "2025-03-01T09:30:00Z",
        "updated_at": "2025-03-01T09:30:00Z",
        "expires_at": "2026-03-01T00:00:00Z",
        "last_used_at": null,
        "usage_count": 0,
        "rotated_at": null,
        "revoked_at": null,
        "rate_limit": { "requests": 100, "per_seconds": 60 },
        "allowed_ips": ["10.0.0.0/8"],
        "allowed_routes": [{ "path_prefix": "/v1/reports", "methods": ["GET"] }],
        "metadata": { "team": "billing" },
        "quota": { "limit": 10000, "period": "month" },
        "quota_usage": { "used": 1200, "remaining": 8800, "resets_at": "2025-04-01T00:00:00Z" }
    })
}

impl KeyView {
    pub fn new(k: KeyRecord, now_ms: i64) -> Self {
        KeyView {
            status: k.status(now_ms),
            created_at: rfc3339(k.created_at),
            updated_at: rfc3339(k.updated_at),
            expires_at: k.expires_at.map(rfc3339),
            last_used_at: k.last_used_at.map(rfc3339),
            rotated_at: k.rotated_at.map(rfc3339),
            revoked_at: k.revoked_at.map(rfc3339),
            id: k.id,
            account_id: k.account_id,
            name: k.name,
            description: k.description,
            permission: k.permission,
            enabled: k.enabled,
            environment: k.environment,
            prefix: k.prefix,
            preview: k.preview,
            usage_count: k.usage_count,
            rate_limit: k.rate_limit,
            allowed_ips: k.allowed_ips,
            allowed_routes: k.allowed_routes,
            metadata: k.metadata,
            quota: k.quota,
            quota_usage: k.quota_usage,
        }
    }
}

/// An account (tenant).
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({
    "id": "acc_7Lk2PqW9xZr4Tn8VbM1s",
    "name": "Acme Corp",
    "api_access": true,
    "plan_id": "plan_9QwE3rT5yU7iO1pA2sD4",
    "quota_usage": null,
    "created_at": "2025-03-01T09:00:00Z",
    "updated_at": "2025-03-01T09:00:00Z"
}))]
pub struct AccountView {
    /// `acc_…`.
    pub id: String,
    pub name: String,
    /// When false, the account's keys are refused (`api_access_disabled`)
    /// and no key can be created for it.
    pub api_access: bool,
    /// `plan_…`; `null`: no plan.
    #[schema(required = true)]
    pub plan_id: Option<String>,
    /// The plan's pooled quota, `{ used, remaining, resets_at }`; `null`
    /// without one.
    #[schema(required = true)]
    pub quota_usage: Option<QuotaUsage>,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub updated_at: String,
}

impl From<Account> for AccountView {
    fn from(a: Account) -> Self {
        AccountView {
            id: a.id,
            name: a.name,
            api_access: a.api_access,
            plan_id: a.plan_id,
            // Filled from the quota ledger by the handlers.
            quota_usage: None,
            created_at: rfc3339(a.created_at),
            updated_at: rfc3339(a.updated_at),
        }
    }
}

/// A plan: limits pooled over all of an account's keys, on top of each
/// key's own.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({
    "id": "plan_9QwE3rT5yU7iO1pA2sD4",
    "name": "Free",
    "rate_limit": { "requests": 10, "per_seconds": 1 },
    "quota": { "limit": 10000, "period": "month" },
    "created_at": "2025-03-01T09:00:00Z",
    "updated_at": "2025-03-01T09:00:00Z"
}))]
pub struct PlanView {
    /// `plan_…`.
    pub id: String,
    pub name: String,
    /// `null`: no pooled rate limit.
    #[schema(required = true)]
    pub rate_limit: Option<RateLimit>,
    /// `null`: no pooled quota.
    #[schema(required = true)]
    pub quota: Option<QuotaSpec>,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub updated_at: String,
}

impl From<Plan> for PlanView {
    fn from(p: Plan) -> Self {
        PlanView {
            id: p.id,
            name: p.name,
            rate_limit: p.rate_limit,
            quota: p.quota,
            created_at: rfc3339(p.created_at),
            updated_at: rfc3339(p.updated_at),
        }
    }
}

/// `{ "items": [...], "next_cursor": … }`, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct ListView<T> {
    pub items: Vec<T>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    #[schema(required = true)]
    pub next_cursor: Option<String>,
}

impl<T> ListView<T> {
    pub fn from_page<R>(page: Page<R>, view: impl FnMut(R) -> T) -> Self {
        ListView { items: page.items.into_iter().map(view).collect(), next_cursor: page.next_cursor }
    }
}

/// `{ "key": {record}, "secret": "kg_…" }`: the one response that shows a
/// secret.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = secret_example)]
pub struct SecretView {
    pub key: KeyView,
    /// The API key. Shown this once: only its hash is stored.
    pub secret: String,
}

fn secret_example() -> Value {
    json!({ "key": key_example(), "secret": "kg_live_Xb3fT9qLm2RwZ8kV1nC4pJ7sD0hY6gEa2OTVzs" })
}
