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
use super::json::{JsonBody, KeyView, ListView, SecretView};
use super::openapi::{
    Conflict, Forbidden, Internal, InvalidInput, InvalidJson, InvalidParameter, NotFound, StoreUnavailable, TooLarge,
    Unauthorized, ValidationFailed,
};
use super::{Actor, AdminState};
use crate::clock::now_ms;
use crate::keys::{Permission, Status};
use crate::service::{CreateKey, Issued, UpdateKey};
use crate::store::{AuditContext, Cursor, KeyFilter, KeyRecord, QuotaSpec, RateLimit};

pub const DEFAULT_LIMIT: u32 = 50;
pub const MAX_LIMIT: u32 = 200;

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

/// A confined token manages its tenant's keys within the terms the operator
/// set: a key's own limit beyond its account's plan is 403 for it (an
/// unconfined admin may grant one). Checked on the limits being written.
async fn within_plan(
    state: &AdminState,
    actor: &Actor,
    account_id: &str,
    rate_limit: Option<RateLimit>,
    quota: Option<QuotaSpec>,
) -> Result<(), ApiError> {
    if actor.account_id.is_none() || (rate_limit.is_none() && quota.is_none()) {
        return Ok(());
    }
    match state.service.beyond_plan(account_id, rate_limit, quota).await? {
        None => Ok(()),
        Some("quota") => {
            Err(ApiError::Forbidden("a token confined to an account cannot give a key a quota beyond its plan's"))
        }
        Some(_) => {
            Err(ApiError::Forbidden("a token confined to an account cannot give a key a rate_limit beyond its plan's"))
        }
    }
}

/// The answer to a create or a rotation: the record and its new secret.
fn secret_view(issued: Issued<KeyRecord>) -> SecretView {
    SecretView { key: KeyView::new(issued.record, now_ms()), secret: issued.secret.expose().to_owned() }
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
    // Another account's id reads as unknown, so a confined token learns
    // nothing about it.
    actor.require_account(&body.account_id).map_err(|_| ApiError::invalid("account_id", "no such account"))?;
    within_plan(&state, &actor, &body.account_id, body.rate_limit, body.quota).await?;
    let issued = state.service.create_key(body, &audit).await?;
    Ok((StatusCode::CREATED, Json(secret_view(issued))))
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
    let key = visible_key(&state, &actor, &id).await?;
    actor.require_write()?;
    within_plan(&state, &actor, &key.account_id, body.rate_limit.flatten(), body.quota.flatten()).await?;
    let after = state.service.update_key(&id, body, &audit).await?;
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
    let issued = state.service.rotate_key(&key, body.grace_period_seconds, &audit).await?;
    Ok(Json(secret_view(issued)))
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
    let key = state.service.revoke_key(&id, &audit).await?;
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
