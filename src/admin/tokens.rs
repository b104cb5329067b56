//! `/v1/admin-tokens` (owner only) and `GET /v1/audit`.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::error::ApiError;
use super::json::{JsonBody, ListView};
use super::keys::page_params;
use super::{validate, Actor, AdminState, Role};
use crate::clock::{parse_rfc3339, rfc3339};
use crate::keys::format;
use crate::store::{AdminToken, AuditContext, AuditEntry, AuditFilter, StoreError};

/// Prefix of admin tokens, so people and secret scanners can tell them from
/// API keys.
pub const ADMIN_TOKEN_PREFIX: &str = "kga";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    name: String,
    role: Role,
    #[serde(default)]
    account_id: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct TokenView {
    pub id: String,
    pub name: String,
    pub role: String,
    pub account_id: Option<String>,
    pub preview: String,
    pub created_at: String,
}

impl From<AdminToken> for TokenView {
    fn from(t: AdminToken) -> Self {
        TokenView { id: t.id, name: t.name, role: t.role, account_id: t.account_id, preview: t.preview, created_at: rfc3339(t.created_at) }
    }
}

#[derive(Serialize)]
pub struct CreatedToken {
    token: TokenView,
    secret: String,
}

#[derive(Debug, Serialize)]
pub struct AuditView {
    pub id: String,
    pub at: String,
    pub actor_id: String,
    pub actor_name: String,
    pub action: String,
    pub target_id: Option<String>,
    pub account_id: Option<String>,
    pub request_id: Option<String>,
    pub source_ip: Option<String>,
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

#[derive(Deserialize)]
pub struct AuditQuery {
    account_id: Option<String>,
    key_id: Option<String>,
    actor_id: Option<String>,
    action: Option<String>,
    since: Option<String>,
    until: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

pub async fn create(
    State(state): State<Arc<AdminState>>,
    Extension(actor): Extension<Actor>,
    Extension(audit): Extension<AuditContext>,
    JsonBody(body): JsonBody<CreateToken>,
) -> Result<(StatusCode, Json<CreatedToken>), ApiError> {
    actor.require_owner()?;
    let name = validate::name("name", &body.name)?;
    // A confined owner mints tokens for its own account only.
    let account_id = match (&actor.account_id, body.account_id.filter(|a| !a.is_empty())) {
        (Some(own), Some(asked)) if *own != asked => return Err(ApiError::invalid("account_id", "no such account")),
        (Some(own), _) => Some(own.clone()),
        (None, asked) => asked,
    };
    let secret = format::generate(ADMIN_TOKEN_PREFIX);
    let token = match state
        .store
        .create_admin_token(&name, body.role.as_str(), account_id.as_deref(), &secret.hash(), &secret.preview(), &audit)
        .await
    {
        Err(StoreError::NotFound) => return Err(ApiError::invalid("account_id", "no such account")),
        other => other?,
    };
    tracing::info!(token_id = %token.id, role = %token.role, "admin token created");
    Ok((StatusCode::CREATED, Json(CreatedToken { token: token.into(), secret: secret.expose().to_owned() })))
}

pub async fn list(
    State(state): State<Arc<AdminState>>,
    Extension(actor): Extension<Actor>,
) -> Result<Json<ListView<TokenView>>, ApiError> {
    actor.require_owner()?;
    let tokens = state.store.list_admin_tokens(actor.account_id.as_deref()).await?;
    Ok(Json(ListView { items: tokens.into_iter().map(TokenView::from).collect(), next_cursor: None }))
}

pub async fn delete(
    State(state): State<Arc<AdminState>>,
    Extension(actor): Extension<Actor>,
    Extension(audit): Extension<AuditContext>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    actor.require_owner()?;
    state.store.delete_admin_token(&id, actor.account_id.as_deref(), &audit).await?;
    tracing::info!(token_id = %id, "admin token deleted");
    Ok(StatusCode::NO_CONTENT)
}

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
    let account_id = match (&actor.account_id, nonempty(q.account_id)) {
        (Some(own), Some(asked)) if *own != asked => return Ok(Json(ListView { items: Vec::new(), next_cursor: None })),
        (Some(own), _) => Some(own.clone()),
        (None, asked) => asked,
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
