//! `/v1/admin-tokens` (owner only) and `GET /v1/audit`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use super::error::ApiError;
use super::extract::{Path, Query};
use super::json::{JsonBody, ListView};
use super::keys::page_params;
use super::openapi::{
    Forbidden, Internal, InvalidJson, InvalidParameter, NotFound, StoreUnavailable, TooLarge, Unauthorized,
    ValidationFailed,
};
use super::{Actor, AdminState, Role};
use crate::clock::{parse_rfc3339, rfc3339};
use crate::service::CreateToken;
use crate::store::{AdminToken, AuditContext, AuditEntry, AuditFilter};

/// An admin token; its secret is never shown again.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({
    "id": "tok_2Hx8Lq5Vn1Tz7Rk4Wm0P",
    "name": "ci deploys",
    "role": "admin",
    "account_id": "acc_7Lk2PqW9xZr4Tn8VbM1s",
    "preview": "kga_Qm8Z…DaPM",
    "created_at": "2025-03-01T09:00:00Z"
}))]
pub struct TokenView {
    /// `tok_…`.
    pub id: String,
    pub name: String,
    pub role: Role,
    /// The account the token is confined to; `null`: every account.
    #[schema(required = true)]
    pub account_id: Option<String>,
    pub preview: String,
    #[schema(format = DateTime)]
    pub created_at: String,
}

impl From<AdminToken> for TokenView {
    fn from(t: AdminToken) -> Self {
        TokenView {
            id: t.id,
            name: t.name,
            role: t.role,
            account_id: t.account_id,
            preview: t.preview,
            created_at: rfc3339(t.created_at),
        }
    }
}

#[derive(Serialize, ToSchema)]
#[schema(example = json!({
    "token": {
        "id": "tok_2Hx8Lq5Vn1Tz7Rk4Wm0P",
        "name": "ci deploys",
        "role": "admin",
        "account_id": "acc_7Lk2PqW9xZr4Tn8VbM1s",
        "preview": "kga_Qm8Z…DaPM",
        "created_at": "2025-03-01T09:00:00Z"
    },
    "secret": "kga_Qm8Zt2Lw5Rn0Vb7Xk3Pj9Hs4Dc1Fg6Ye3oDaPM"
}))]
pub struct CreatedToken {
    token: TokenView,
    /// The admin token (`kga_…`). Shown this once: only its hash is stored.
    secret: String,
}

/// Who did what to which record, when.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({
    "id": "aud_5Kp9Wx2Lm7Qz4Tn1Vb8R",
    "at": "2025-03-02T14:05:00Z",
    "actor_id": "tok_2Hx8Lq5Vn1Tz7Rk4Wm0P",
    "actor_name": "ci deploys",
    "action": "key.update",
    "target_id": "key_4hQ2vX9TzLmN0pRsYb7c",
    "account_id": "acc_7Lk2PqW9xZr4Tn8VbM1s",
    "request_id": "req_8Jd3Ks6Lq1Vw9Zx2Pn5T",
    "source_ip": "10.1.2.3",
    "changes": { "enabled": { "from": true, "to": false } }
}))]
pub struct AuditView {
    /// `aud_…`.
    pub id: String,
    #[schema(format = DateTime)]
    pub at: String,
    /// The admin token's id (`env` for `KEYGATE_ADMIN_TOKEN`).
    pub actor_id: String,
    pub actor_name: String,
    /// `key.create`, `key.update`, `key.rotate`, `key.revoke`, …
    pub action: String,
    #[schema(required = true)]
    pub target_id: Option<String>,
    #[schema(required = true)]
    pub account_id: Option<String>,
    #[schema(required = true)]
    pub request_id: Option<String>,
    #[schema(required = true)]
    pub source_ip: Option<String>,
    /// What changed: `{ "field": { "from": …, "to": … } }`.
    #[schema(value_type = Object)]
    pub changes: Value,
}

impl From<AuditEntry> for AuditView {
    fn from(e: AuditEntry) -> Self {
        AuditView {
            id: e.id,
            at: rfc3339(e.at),
            actor_id: e.actor_id,
            actor_name: e.actor_name,
            action: e.action,
            target_id: e.target_id,
            account_id: e.account_id,
            request_id: e.request_id,
            source_ip: e.source_ip,
            changes: e.changes,
        }
    }
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    account_id: Option<String>,
    key_id: Option<String>,
    /// An admin token's id.
    actor_id: Option<String>,
    /// E.g. `key.rotate`.
    action: Option<String>,
    /// RFC 3339; entries at or after.
    #[param(format = DateTime)]
    since: Option<String>,
    /// RFC 3339; entries before.
    #[param(format = DateTime)]
    until: Option<String>,
    /// Page size, default 50.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 200)]
    limit: Option<String>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// Create an admin token
///
/// Owner only. A confined owner mints tokens for its own account only.
#[utoipa::path(
    post,
    path = "/admin-tokens",
    tag = "admin-tokens",
    operation_id = "create_admin_token",
    security(("admin_token" = [])),
    request_body = CreateToken,
    responses(
        (status = 201, description = "Created; `secret` is shown this once", body = CreatedToken),
        (status = 400, response = InvalidJson),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 413, response = TooLarge),
        (status = 422, response = ValidationFailed),
        (status = 500, response = Internal),
        (status = 503, response = StoreUnavailable),
    )
)]
pub async fn create(
    State(state): State<Arc<AdminState>>,
    Extension(actor): Extension<Actor>,
    Extension(audit): Extension<AuditContext>,
    JsonBody(body): JsonBody<CreateToken>,
) -> Result<(StatusCode, Json<CreatedToken>), ApiError> {
    actor.require_owner()?;
    // A confined owner mints tokens for its own account only.
    let account_id = actor.scope(body.account_id).ok_or_else(|| ApiError::invalid("account_id", "no such account"))?;
    let issued = state.service.create_admin_token(CreateToken { account_id, ..body }, &audit).await?;
    let secret = issued.secret.expose().to_owned();
    Ok((StatusCode::CREATED, Json(CreatedToken { token: issued.record.into(), secret })))
}

/// List admin tokens
///
/// Owner only. One page: `next_cursor` is always `null`.
#[utoipa::path(
    get,
    path = "/admin-tokens",
    tag = "admin-tokens",
    operation_id = "list_admin_tokens",
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "The admin tokens", body = ListView<TokenView>),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 500, response = Internal),
        (status = 503, response = StoreUnavailable),
    )
)]
pub async fn list(
    State(state): State<Arc<AdminState>>,
    Extension(actor): Extension<Actor>,
) -> Result<Json<ListView<TokenView>>, ApiError> {
    actor.require_owner()?;
    let tokens = state.store.list_admin_tokens(actor.account_id.as_deref()).await?;
    Ok(Json(ListView { items: tokens.into_iter().map(TokenView::from).collect(), next_cursor: None }))
}

/// Delete an admin token
///
/// Owner only. The token stops working at once.
#[utoipa::path(
    delete,
    path = "/admin-tokens/{id}",
    tag = "admin-tokens",
    operation_id = "delete_admin_token",
    params(("id" = String, Path, description = "`tok_…`", example = "tok_2Hx8Lq5Vn1Tz7Rk4Wm0P")),
    security(("admin_token" = [])),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, response = InvalidParameter),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 500, response = Internal),
        (status = 503, response = StoreUnavailable),
    )
)]
pub async fn delete(
    State(state): State<Arc<AdminState>>,
    Extension(actor): Extension<Actor>,
    Extension(audit): Extension<AuditContext>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    actor.require_owner()?;
    state.service.delete_admin_token(&id, actor.account_id.as_deref(), &audit).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Read the audit trail
///
/// Any role; a token confined to an account sees that account's entries.
/// Newest first.
#[utoipa::path(
    get,
    path = "/audit",
    tag = "audit",
    operation_id = "list_audit",
    params(AuditQuery),
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "A page of audit entries", body = ListView<AuditView>),
        (status = 400, response = InvalidParameter),
        (status = 401, response = Unauthorized),
        (status = 422, response = ValidationFailed),
        (status = 500, response = Internal),
        (status = 503, response = StoreUnavailable),
    )
)]
pub async fn audit(
    State(state): State<Arc<AdminState>>,
    Extension(actor): Extension<Actor>,
    Query(q): Query<AuditQuery>,
) -> Result<Json<ListView<AuditView>>, ApiError> {
    let (limit, cursor) = page_params(q.limit.as_deref(), q.cursor.as_deref())?;
    let time = |field: &str, v: Option<String>| -> Result<Option<i64>, ApiError> {
        match v.filter(|s| !s.is_empty()) {
            None => Ok(None),
            Some(s) => parse_rfc3339(&s).map(Some).ok_or_else(|| ApiError::invalid(field, "not an RFC 3339 time")),
        }
    };
    let nonempty = |v: Option<String>| v.filter(|s| !s.is_empty());
    let Some(account_id) = actor.scope(q.account_id) else {
        return Ok(Json(ListView { items: Vec::new(), next_cursor: None }));
    };
    let filter = AuditFilter {
        account_id,
        key_id: nonempty(q.key_id),
        actor_id: nonempty(q.actor_id),
        action: nonempty(q.action),
        since: time("since", q.since)?,
        until: time("until", q.until)?,
        limit,
        cursor,
    };
    let page = state.store.list_audit(&filter).await?;
    Ok(Json(ListView::from_page(page, AuditView::from)))
}
