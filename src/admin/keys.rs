//! `/v1/keys`: create (the secret shown once), list and search, show, edit,
//! rotate (with an optional grace period for the old secret) and revoke.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use super::error::ApiError;
use super::extract::{Path, Query};
use super::json::{not_null, nullable, JsonBody, KeyView, ListView, SecretView};
use super::openapi::{
    Conflict, Forbidden, Internal, InvalidInput, InvalidJson, InvalidParameter, NotFound, StoreUnavailable, TooLarge,
    Unauthorized, ValidationFailed,
};
use super::{validate, Actor, AdminState};
use crate::clock::now_ms;
use crate::keys::{format, Environment, Permission, Status};
use crate::store::{
    AuditContext, Cursor, KeyFilter, KeyPatch, KeyRecord, Metadata, NewKey, RateLimit, RouteRule, StoreError,
};

pub const DEFAULT_LIMIT: u32 = 50;
pub const MAX_LIMIT: u32 = 200;

/// A new key. Unset fields take the defaults shown.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "account_id": "acc_7Lk2PqW9xZr4Tn8VbM1s",
    "name": "reporting service",
    "permission": "read",
    "description": "nightly export job",
    "expires_at": "2026-03-01T00:00:00Z",
    "rate_limit": { "requests": 100, "per_seconds": 60 },
    "allowed_ips": ["10.0.0.0/8"],
    "allowed_routes": [{ "path_prefix": "/v1/reports", "methods": ["GET"] }],
    "metadata": { "team": "billing" }
}))]
pub struct CreateKey {
    /// `acc_…`: an account the token may see, with API access on.
    account_id: String,
    name: String,
    permission: Permission,
    #[serde(default)]
    description: Option<String>,
    /// Default `live`.
    #[serde(default)]
    environment: Option<Environment>,
    /// In the future; `null`: never expires.
    #[serde(default)]
    #[schema(format = DateTime)]
    expires_at: Option<String>,
    /// Default `true`.
    #[serde(default)]
    enabled: Option<bool>,
    #[serde(default)]
    rate_limit: Option<RateLimit>,
    /// CIDR ranges; empty: anywhere.
    #[serde(default)]
    allowed_ips: Vec<String>,
    /// Empty: every route.
    #[serde(default)]
    allowed_routes: Vec<RouteRule>,
    /// Free-form JSON object, at most 4 KiB.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    metadata: Option<Metadata>,
}

/// An edit: absent fields stay as they are; `null` clears an optional field
/// (`description`, `expires_at`, `rate_limit`, `allowed_ips`,
/// `allowed_routes`, `metadata`) and is refused for the others. Lists and
/// `metadata` are replaced whole.
#[derive(Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({ "enabled": false, "expires_at": null, "metadata": { "team": "billing", "ticket": "OPS-42" } }))]
pub struct UpdateKey {
    #[serde(default, deserialize_with = "not_null")]
    #[schema(nullable = false)]
    name: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    description: Option<Option<String>>,
    #[serde(default, deserialize_with = "not_null")]
    #[schema(nullable = false)]
    permission: Option<Permission>,
    #[serde(default, deserialize_with = "not_null")]
    #[schema(nullable = false)]
    enabled: Option<bool>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(format = DateTime)]
    expires_at: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    rate_limit: Option<Option<RateLimit>>,
    /// `null` or `[]`: any client address.
    #[serde(default, deserialize_with = "nullable")]
    allowed_ips: Option<Option<Vec<String>>>,
    /// `null` or `[]`: every route.
    #[serde(default, deserialize_with = "nullable")]
    allowed_routes: Option<Option<Vec<RouteRule>>>,
    /// Free-form JSON object, at most 4 KiB; `null` or `{}`: none.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<Object>)]
    metadata: Option<Option<Metadata>>,
}

/// The body may be empty: the old secret then stops working at once.
#[derive(Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({ "grace_period_seconds": 3600 }))]
pub struct RotateKey {
    /// How long the old secret keeps working; at most 2592000 (30 days).
    #[serde(default)]
    #[schema(maximum = 2592000)]
    grace_period_seconds: Option<u64>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListKeys {
    /// Only this account's keys.
    #[param(example = "acc_7Lk2PqW9xZr4Tn8VbM1s")]
    account_id: Option<String>,
    /// Search in name, description and prefix.
    q: Option<String>,
    #[param(value_type = Option<Permission>)]
    permission: Option<String>,
    #[param(value_type = Option<Status>)]
    status: Option<String>,
    /// Page size, default 50.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 200)]
    limit: Option<String>,
    /// `next_cursor` of the previous page.
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
        Some(c) => {
            Some(Cursor::decode(c).ok_or_else(|| ApiError::invalid("cursor", "not a cursor this API returned"))?)
        }
    };
    Ok((limit, cursor))
}

/// Loads a key the actor may see; other accounts' keys are `NotFound`.
pub(super) async fn visible_key(state: &AdminState, actor: &Actor, id: &str) -> Result<KeyRecord, ApiError> {
    let key = state.store.get_key(id).await?;
    actor.require_account(&key.account_id)?;
    Ok(key)
}

/// Create a key
///
/// Admin or owner. The answer holds the secret, shown this once; a key is in
/// force on this node when the answer arrives.
#[utoipa::path(
    post,
    path = "/keys",
    tag = "keys",
    operation_id = "create_key",
    security(("admin_token" = [])),
    request_body = CreateKey,
    responses(
        (status = 201, description = "Created; `secret` is shown this once", body = SecretView),
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
        return Err(ApiError::api_access_disabled());
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

/// List and search keys
///
/// Newest first. A token confined to an account sees only that account's
/// keys.
#[utoipa::path(
    get,
    path = "/keys",
    tag = "keys",
    operation_id = "list_keys",
    params(ListKeys),
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "A page of keys", body = ListView<KeyView>),
        (status = 400, response = InvalidParameter),
        (status = 401, response = Unauthorized),
        (status = 422, response = ValidationFailed),
        (status = 500, response = Internal),
        (status = 503, response = StoreUnavailable),
    )
)]
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
            Status::parse(s)
                .ok_or_else(|| ApiError::invalid("status", "must be active, disabled, expired or revoked"))?,
        ),
    };
    let Some(account_id) = actor.scope(q.account_id) else {
        return Ok(Json(ListView { items: Vec::new(), next_cursor: None }));
    };
    let filter = KeyFilter { account_id, q: q.q.filter(|s| !s.trim().is_empty()), permission, status, limit, cursor };
    let page = state.store.list_keys(&filter).await?;
    let now = now_ms();
    Ok(Json(ListView::from_page(page, |k| KeyView::new(k, now))))
}

/// Show a key
#[utoipa::path(
    get,
    path = "/keys/{id}",
    tag = "keys",
    operation_id = "show_key",
    security(("admin_token" = [])),
    params(("id" = String, Path, description = "`key_…`", example = "key_4hQ2vX9TzLmN0pRsYb7c")),
    responses(
        (status = 200, description = "The key", body = KeyView),
        (status = 400, response = InvalidParameter),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
        (status = 500, response = Internal),
        (status = 503, response = StoreUnavailable),
    )
)]
pub async fn show(
    State(state): State<Arc<AdminState>>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<String>,
) -> Result<Json<KeyView>, ApiError> {
    Ok(Json(KeyView::new(visible_key(&state, &actor, &id).await?, now_ms())))
}

/// Edit a key
///
/// Admin or owner. A revoked key cannot be edited (409).
#[utoipa::path(
    patch,
    path = "/keys/{id}",
    tag = "keys",
    operation_id = "update_key",
    security(("admin_token" = [])),
    params(("id" = String, Path, description = "`key_…`", example = "key_4hQ2vX9TzLmN0pRsYb7c")),
    request_body = UpdateKey,
    responses(
        (status = 200, description = "The key after the edit", body = KeyView),
        (status = 400, response = InvalidInput),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 413, response = TooLarge),
        (status = 422, response = ValidationFailed),
        (status = 500, response = Internal),
        (status = 503, response = StoreUnavailable),
    )
)]
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
        // `null` clears a list or the metadata: the empty value is "none".
        allowed_ips: body.allowed_ips.map(|v| validate::allowed_ips(v.unwrap_or_default())).transpose()?,
        allowed_routes: body.allowed_routes.map(|v| validate::allowed_routes(v.unwrap_or_default())).transpose()?,
        metadata: body.metadata.map(|v| validate::metadata(v.unwrap_or_default())).transpose()?,
    };
    let (_, after) = state.store.update_key(&id, &patch, &audit).await?;
    state.publish().await;
    Ok(Json(KeyView::new(after, now_ms())))
}

/// Rotate a key's secret
///
/// Admin or owner. The new secret is in the answer, shown this once; the old
/// one keeps working for `grace_period_seconds`.
#[utoipa::path(
    post,
    path = "/keys/{id}/rotate",
    tag = "keys",
    operation_id = "rotate_key",
    security(("admin_token" = [])),
    params(("id" = String, Path, description = "`key_…`", example = "key_4hQ2vX9TzLmN0pRsYb7c")),
    request_body = RotateKey,
    responses(
        (status = 200, description = "The key with its new secret", body = SecretView),
        (status = 400, response = InvalidInput),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 413, response = TooLarge),
        (status = 422, response = ValidationFailed),
        (status = 500, response = Internal),
        (status = 503, response = StoreUnavailable),
    )
)]
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

/// Revoke a key
///
/// Admin or owner. Final and idempotent: revoking a revoked key answers the
/// record again. Same as `DELETE /v1/keys/{id}`.
#[utoipa::path(
    post,
    path = "/keys/{id}/revoke",
    tag = "keys",
    operation_id = "revoke_key",
    security(("admin_token" = [])),
    params(("id" = String, Path, description = "`key_…`", example = "key_4hQ2vX9TzLmN0pRsYb7c")),
    responses(
        (status = 200, description = "The revoked key", body = KeyView),
        (status = 400, response = InvalidParameter),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 500, response = Internal),
        (status = 503, response = StoreUnavailable),
    )
)]
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

/// Revoke a key (DELETE)
///
/// The same as `POST /v1/keys/{id}/revoke`, answering the revoked record.
#[utoipa::path(
    delete,
    path = "/keys/{id}",
    tag = "keys",
    operation_id = "delete_key",
    security(("admin_token" = [])),
    params(("id" = String, Path, description = "`key_…`", example = "key_4hQ2vX9TzLmN0pRsYb7c")),
    responses(
        (status = 200, description = "The revoked key", body = KeyView),
        (status = 400, response = InvalidParameter),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 500, response = Internal),
        (status = 503, response = StoreUnavailable),
    )
)]
pub async fn delete(
    state: State<Arc<AdminState>>,
    actor: Extension<Actor>,
    audit: Extension<AuditContext>,
    id: Path<String>,
) -> Result<Json<KeyView>, ApiError> {
    revoke(state, actor, audit, id).await
}
