//! Lifecycle extras for keys: bulk revocation, leak reports from secret
//! scanners, and verification of a secret without proxying.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::ApiError;
use super::json::JsonBody;
use super::openapi::{Forbidden, Internal, InvalidJson, StoreUnavailable, TooLarge, Unauthorized, ValidationFailed};
use super::{Actor, AdminState};
use crate::clock::now_ms;
use crate::keys::{Facts, Permission, Refusal};
use crate::store::AuditContext;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({ "ids": ["key_4hQ2vX9TzLmN0pRsYb7c", "key_9sVb2Lm4Qx7Tn0Rw8Kz1"] }))]
pub struct BulkRevoke {
    /// 1 to 1000 key ids.
    ids: Vec<String>,
}

#[derive(Serialize, ToSchema)]
#[schema(example = json!({ "revoked": ["key_4hQ2vX9TzLmN0pRsYb7c"], "not_found": ["key_9sVb2Lm4Qx7Tn0Rw8Kz1"] }))]
pub struct BulkRevoked {
    /// Revoked now or before (revocation is idempotent).
    revoked: Vec<String>,
    /// Unknown, or outside a confined token's account.
    not_found: Vec<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({ "secret": "kg_live_Xb3fT9qLm2RwZ8kV1nC4pJ7sD0hY6gEa2OTVzs" }))]
pub struct SecretBody {
    /// The leaked API key, 1 to 1024 characters.
    secret: String,
}

/// The answer to a leak report, whatever was found.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({ "status": "accepted" }))]
pub struct LeakAccepted {
    /// Always `accepted`.
    status: &'static str,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({ "secret": "kg_live_Xb3fT9qLm2RwZ8kV1nC4pJ7sD0hY6gEa2OTVzs", "method": "GET", "path": "/v1/reports/daily" }))]
pub struct VerifyBody {
    /// The API key to check.
    secret: String,
    /// The method the caller would use; default `GET`.
    #[serde(default)]
    method: Option<String>,
    /// The path the caller would call (checked against `allowed_routes`);
    /// must start with `/`; default `/`.
    #[serde(default)]
    path: Option<String>,
    /// The caller's address (checked against `allowed_ips`). A key with
    /// `allowed_ips` is refused `ip_not_allowed` when it is absent.
    #[serde(default)]
    ip: Option<String>,
    /// Check without using the key: no usage counted, nothing taken from
    /// its rate limit (which a dry run does not evaluate: it never answers
    /// `rate_limited`) or its quotas (which it reads: it answers
    /// `quota_exceeded` when one is spent). A viewer's verify is always a
    /// dry run.
    #[serde(default)]
    dry_run: Option<bool>,
}

/// The verify answer: the proxy's decision without the proxying.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({
    "valid": true,
    "code": "allowed",
    "key_id": "key_4hQ2vX9TzLmN0pRsYb7c",
    "account_id": "acc_7Lk2PqW9xZr4Tn8VbM1s",
    "permission": "read"
}))]
pub struct Verdict {
    pub valid: bool,
    /// `allowed` or the refusal code the proxy would answer: `invalid_key`,
    /// `key_revoked`, `key_expired`, `key_disabled`, `api_access_disabled`,
    /// `insufficient_permission`, `ip_not_allowed`, `route_not_allowed`,
    /// `rate_limited` or `quota_exceeded`.
    pub code: &'static str,
    /// `null` when the key is unknown (or outside a confined token's account).
    #[schema(required = true)]
    pub key_id: Option<String>,
    #[schema(required = true)]
    pub account_id: Option<String>,
    #[schema(required = true)]
    pub permission: Option<Permission>,
    /// What remains of the tightest quota that applies (the key's own or
    /// its account's pooled one), after this call's spending; `null` when
    /// none applies.
    #[schema(required = true)]
    pub remaining: Option<u64>,
    /// When that quota's period ends; `null` when none applies or it is a
    /// `total` quota.
    #[schema(required = true, format = DateTime)]
    pub resets_at: Option<String>,
}

/// Revoke many keys
///
/// Admin or owner. One transaction: ids not found (or outside a confined
/// token's account) are reported, the rest revoked together.
#[utoipa::path(
    post,
    path = "/keys/bulk-revoke",
    tag = "keys",
    operation_id = "bulk_revoke_keys",
    security(("admin_token" = [])),
    request_body = BulkRevoke,
    responses(
        (status = 200, description = "What was revoked and what was not found", body = BulkRevoked),
        (status = 400, response = InvalidJson),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 413, response = TooLarge),
        (status = 422, response = ValidationFailed),
        (status = 500, response = Internal),
        (status = 503, response = StoreUnavailable),
    )
)]
pub async fn bulk_revoke(
    State(state): State<Arc<AdminState>>,
    Extension(actor): Extension<Actor>,
    Extension(audit): Extension<AuditContext>,
    JsonBody(body): JsonBody<BulkRevoke>,
) -> Result<Json<BulkRevoked>, ApiError> {
    actor.require_write()?;
    let (revoked, not_found) = state.service.revoke_keys(body.ids, actor.account_id.as_deref(), &audit).await?;
    Ok(Json(BulkRevoked { revoked, not_found }))
}

/// Report a leaked secret
///
/// Admin or owner; for secret scanners. A current secret revokes its key at
/// once; an old secret inside its rotation grace stops working. 202 whatever
/// was found, so the answer tells a caller nothing about which secrets exist.
#[utoipa::path(
    post,
    path = "/keys/report-leak",
    tag = "keys",
    operation_id = "report_leak",
    security(("admin_token" = [])),
    request_body = SecretBody,
    responses(
        (status = 202, description = "Accepted, whatever was found", body = LeakAccepted),
        (status = 400, response = InvalidJson),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 413, response = TooLarge),
        (status = 422, response = ValidationFailed),
        (status = 500, response = Internal),
        (status = 503, response = StoreUnavailable),
    )
)]
pub async fn report_leak(
    State(state): State<Arc<AdminState>>,
    Extension(actor): Extension<Actor>,
    Extension(audit): Extension<AuditContext>,
    JsonBody(body): JsonBody<SecretBody>,
) -> Result<(StatusCode, Json<LeakAccepted>), ApiError> {
    actor.require_write()?;
    state.service.report_leak(&body.secret, actor.account_id.as_deref(), &audit).await?;
    Ok((StatusCode::ACCEPTED, Json(LeakAccepted { status: "accepted" })))
}

/// Verify a secret
///
/// Any role. The same decision and codes as the proxy, without proxying (for
/// non-HTTP callers). A refusal is a 200 with `valid: false`. It counts as a
/// use of the key unless it is a dry run: `dry_run: true`, or any viewer's.
#[utoipa::path(
    post,
    path = "/keys/verify",
    tag = "keys",
    operation_id = "verify_key",
    security(("admin_token" = [])),
    request_body = VerifyBody,
    responses(
        (status = 200, description = "The decision", body = Verdict),
        (status = 400, response = InvalidJson),
        (status = 401, response = Unauthorized),
        (status = 413, response = TooLarge),
        (status = 422, response = ValidationFailed),
        (status = 500, response = Internal),
        (status = 503, response = StoreUnavailable),
    )
)]
pub async fn verify(
    State(state): State<Arc<AdminState>>,
    Extension(actor): Extension<Actor>,
    JsonBody(body): JsonBody<VerifyBody>,
) -> Result<Json<Verdict>, ApiError> {
    let method = match body.method.as_deref() {
        None | Some("") => http::Method::GET,
        Some(m) => http::Method::from_bytes(m.to_ascii_uppercase().as_bytes())
            .map_err(|_| ApiError::invalid("method", "not an HTTP method"))?,
    };
    if body.path.as_deref().is_some_and(|p| !p.starts_with('/')) {
        return Err(ApiError::invalid("path", "must start with \"/\""));
    }
    let client_ip = match body.ip.as_deref() {
        None | Some("") => None,
        Some(ip) => Some(ip.parse::<std::net::IpAddr>().map_err(|_| ApiError::invalid("ip", "not an IP address"))?),
    };
    let keyset = state.reloader.keyset().load_full();
    let secret = body.secret.as_bytes();
    let policy = keyset.lookup_secret(secret).map(|(p, _)| p.clone());
    // A token confined to an account learns nothing about other accounts'
    // keys, and its call leaves no trace on them.
    let visible = policy.filter(|p| actor.account_id.as_deref().is_none_or(|own| own == p.account_id.as_str()));
    let unknown = Verdict {
        valid: false,
        code: Refusal::InvalidKey.code(),
        key_id: None,
        account_id: None,
        permission: None,
        remaining: None,
        resets_at: None,
    };
    let Some(p) = visible else { return Ok(Json(unknown)) };
    // `verify` names no host: a route restriction bound to a host refuses it.
    let facts = Facts { method: &method, path: body.path.as_deref().unwrap_or("/"), client_ip, host: None, cost: 1 };
    // A viewer changes nothing, counters included: its verify is a dry run.
    // Otherwise the proxy's own decision: it counts as a use of the key and
    // takes from its rate limit, as a proxied request would.
    // Quotas: a dry run reads them without spending, and answers
    // `quota_exceeded` when the request would be refused for its quota.
    let now = now_ms();
    let (result, quota) = if body.dry_run.unwrap_or(false) || !actor.can_write() {
        match keyset.dry_run(secret, &facts, now) {
            Err(refusal) => (Err(refusal), None),
            Ok(_) => match keyset.peek_quota(secret, &facts, now) {
                Ok(quota) => (Ok(()), quota),
                Err(quota) => (Err(Refusal::QuotaExceeded), Some(quota)),
            },
        }
    } else {
        let decision = keyset.decide(secret, &facts, now, state.default_quota);
        (decision.result.map(|_| ()), decision.quota)
    };
    let verdict = Verdict {
        valid: result.is_ok(),
        code: result.err().map_or("allowed", Refusal::code),
        key_id: Some(p.id.to_string()),
        account_id: Some(p.account_id.to_string()),
        permission: Some(p.permission),
        remaining: quota.map(|q| q.remaining),
        resets_at: quota.and_then(|q| q.resets_at_ms).map(crate::clock::rfc3339),
    };
    Ok(Json(verdict))
}
