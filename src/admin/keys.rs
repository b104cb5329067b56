//! `/v1/keys`: create (the secret shown once), list and search, show, edit,
//! rotate (with an optional grace period for the old secret) and revoke.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::Deserialize;

use super::error::ApiError;
use super::json::{nullable, JsonBody, KeyView, ListView, SecretView};
use super::{validate, Actor, AdminState};
use crate::clock::now_ms;
use crate::keys::{format, Environment, Permission, Status};
use crate::store::{AuditContext, Cursor, KeyFilter, KeyPatch, KeyRecord, Metadata, NewKey, RateLimit, RouteRule, StoreError};

pub const DEFAULT_LIMIT: u32 = 50;
pub const MAX_LIMIT: u32 = 200;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    account_id: String,
    name: String,
    permission: Permission,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    environment: Option<Environment>,
    #[serde(default)]
    expires_at: Option<String>,
    #[serde(default)]
    enabled: Option<bool>,
    #[serde(default)]
    rate_limit: Option<RateLimit>,
    #[serde(default)]
    allowed_ips: Vec<String>,
    #[serde(default)]
    allowed_routes: Vec<RouteRule>,
    #[serde(default)]
    metadata: Option<Metadata>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct UpdateKey {
    #[serde(default)]
    name: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    description: Option<Option<String>>,
    #[serde(default)]
    permission: Option<Permission>,
    #[serde(default)]
    enabled: Option<bool>,
    #[serde(default, deserialize_with = "nullable")]
    expires_at: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    rate_limit: Option<Option<RateLimit>>,
    #[serde(default)]
    allowed_ips: Option<Vec<String>>,
    #[serde(default)]
    allowed_routes: Option<Vec<RouteRule>>,
    #[serde(default)]
    metadata: Option<Metadata>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RotateKey {
    #[serde(default)]
    grace_period_seconds: Option<u64>,
}

#[derive(Deserialize)]
pub struct ListKeys {
    account_id: Option<String>,
    q: Option<String>,
    permission: Option<String>,
    status: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

/// Parses `limit` and `cursor` query parameters, naming the one at fault.
pub fn page_params(limit: Option<&str>, cursor: Option<&str>) -> Result<(u32, Option<Cursor>), ApiError> {
    let limit = match limit {
        None | Some("") => DEFAULT_LIMIT,
        Some(l) => l
            .parse::<u32>()
            .ok()
            .filter(|l| (1..=MAX_LIMIT).contains(l))
            .ok_or_else(|| ApiError::invalid("limit", format!("must be a whole number from 1 to {MAX_LIMIT}")))?,
    };
    let cursor = match cursor {
        None | Some("") => None,
        Some(c) => Some(Cursor::decode(c).ok_or_else(|| ApiError::invalid("cursor", "not a cursor this API returned"))?),
    };
    Ok((limit, cursor))
}

/// Loads a key the actor may see; other accounts' keys are `NotFound`.
async fn visible_key(state: &AdminState, actor: &Actor, id: &str) -> Result<KeyRecord, ApiError> {
    let key = state.store.get_key(id).await?;
    actor.require_account(&key.account_id)?;
    Ok(key)
}

pub async fn create(
    State(state): State<Arc<AdminState>>,
    Extension(actor): Extension<Actor>,
    Extension(audit): Extension<AuditContext>,
    JsonBody(body): JsonBody<CreateKey>,
) -> Result<(StatusCode, Json<SecretView>), ApiError> {
    actor.require_write()?;
    let now = now_ms();
    actor.require_account(&body.account_id).map_err(|_| ApiError::invalid("account_id", "no such account"))?;
    let account = match state.store.get_account(&body.account_id).await {
        Err(StoreError::NotFound) => return Err(ApiError::invalid("account_id", "no such account")),
        other => other?,
    };
    if !account.api_access {
        return Err(ApiError::Refused {
            code: "api_access_disabled",
            message: "API access is disabled for this account".into(),
        });
    }
    let environment = body.environment.unwrap_or(Environment::Live);
    let prefix = match environment {
        Environment::Live => &state.live_prefix,
        Environment::Test => &state.test_prefix,
    };
    let secret = format::generate(prefix);
    let new = NewKey {
        name: validate::name("name", &body.name)?,
        description: validate::description(body.description)?,
        expires_at: body.expires_at.as_deref().map(|e| validate::expires_at(e, now)).transpose()?,
        rate_limit: validate::rate_limit(body.rate_limit)?,
        allowed_ips: validate::allowed_ips(body.allowed_ips)?,
        allowed_routes: validate::allowed_routes(body.allowed_routes)?,
        metadata: validate::metadata(body.metadata.unwrap_or_default())?,
        account_id: account.id,
        permission: body.permission,
        environment,
        prefix: prefix.clone(),
        preview: secret.preview(),
        hash: secret.hash(),
        enabled: body.enabled.unwrap_or(true),
    };
    let key = state.store.create_key(&new, &audit).await?;
    state.publish().await;
    tracing::info!(key_id = %key.id, account_id = %key.account_id, "key created");
    Ok((StatusCode::CREATED, Json(SecretView { key: KeyView::new(key, now), secret: secret.expose().to_owned() })))
}

pub async fn list(
    State(state): State<Arc<AdminState>>,
    Extension(actor): Extension<Actor>,
    Query(q): Query<ListKeys>,
) -> Result<Json<ListView<KeyView>>, ApiError> {
    let (limit, cursor) = page_params(q.limit.as_deref(), q.cursor.as_deref())?;
    let permission = match q.permission.as_deref() {
        None | Some("") => None,
        Some(p) => Some(Permission::parse(p).ok_or_else(|| ApiError::invalid("permission", "must be read or write"))?),
    };
    let status = match q.status.as_deref() {
        None | Some("") => None,
        Some(s) => Some(
            Status::parse(s).ok_or_else(|| ApiError::invalid("status", "must be active, disabled, expired or revoked"))?,
        ),
    };
    let account_id = match (&actor.account_id, q.account_id.filter(|a| !a.is_empty())) {
        (Some(own), Some(asked)) if *own != asked => return Ok(Json(ListView { items: Vec::new(), next_cursor: None })),
        (Some(own), _) => Some(own.clone()),
        (None, asked) => asked,
    };
    let filter = KeyFilter { account_id, q: q.q.filter(|s| !s.trim().is_empty()), permission, status, limit, cursor };
    let page = state.store.list_keys(&filter).await?;
    let now = now_ms();
    Ok(Json(ListView::from_page(page, |k| KeyView::new(k, now))))
}

pub async fn show(
    State(state): State<Arc<AdminState>>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<String>,
) -> Result<Json<KeyView>, ApiError> {
    Ok(Json(KeyView::new(visible_key(&state, &actor, &id).await?, now_ms())))
}

pub async fn update(
    State(state): State<Arc<AdminState>>,
    Extension(actor): Extension<Actor>,
    Extension(audit): Extension<AuditContext>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<UpdateKey>,
) -> Result<Json<KeyView>, ApiError> {
    visible_key(&state, &actor, &id).await?;
    actor.require_write()?;
    let now = now_ms();
    let patch = KeyPatch {
        name: body.name.as_deref().map(|n| validate::name("name", n)).transpose()?,
        description: body.description.map(validate::description).transpose()?,
        permission: body.permission,
        enabled: body.enabled,
        expires_at: body.expires_at.map(|e| e.map(|e| validate::expires_at(&e, now)).transpose()).transpose()?,
        rate_limit: body.rate_limit.map(validate::rate_limit).transpose()?,
        allowed_ips: body.allowed_ips.map(validate::allowed_ips).transpose()?,
        allowed_routes: body.allowed_routes.map(validate::allowed_routes).transpose()?,
        metadata: body.metadata.map(validate::metadata).transpose()?,
    };
    let (_, after) = state.store.update_key(&id, &patch, &audit).await?;
    state.publish().await;
    Ok(Json(KeyView::new(after, now_ms())))
}

pub async fn rotate(
    State(state): State<Arc<AdminState>>,
    Extension(actor): Extension<Actor>,
    Extension(audit): Extension<AuditContext>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<RotateKey>,
) -> Result<Json<SecretView>, ApiError> {
    let key = visible_key(&state, &actor, &id).await?;
    actor.require_write()?;
    let grace = body.grace_period_seconds.unwrap_or(0);
    if grace > validate::MAX_GRACE_SECONDS {
        return Err(ApiError::invalid(
            "grace_period_seconds",
            format!("must be at most {} (30 days)", validate::MAX_GRACE_SECONDS),
        ));
    }
    let prefix = match key.environment {
        Environment::Live => &state.live_prefix,
        Environment::Test => &state.test_prefix,
    };
    let secret = format::generate(prefix);
    let now = now_ms();
    let old_valid_until = now + (grace as i64) * 1000;
    let key = state.store.rotate_key(&id, &secret.hash(), &secret.preview(), old_valid_until, &audit).await?;
    state.publish().await;
    tracing::info!(key_id = %key.id, grace_seconds = grace, "key rotated");
    Ok(Json(SecretView { key: KeyView::new(key, now), secret: secret.expose().to_owned() }))
}

/// `POST /v1/keys/{id}/revoke` and `DELETE /v1/keys/{id}`: final, idempotent.
pub async fn revoke(
    State(state): State<Arc<AdminState>>,
    Extension(actor): Extension<Actor>,
    Extension(audit): Extension<AuditContext>,
    Path(id): Path<String>,
) -> Result<Json<KeyView>, ApiError> {
    visible_key(&state, &actor, &id).await?;
    actor.require_write()?;
    let key = state.store.revoke_key(&id, &audit).await?;
    state.publish().await;
    tracing::info!(key_id = %key.id, "key revoked");
    Ok(Json(KeyView::new(key, now_ms())))
}
