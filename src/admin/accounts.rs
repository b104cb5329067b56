//! `/v1/accounts`: tenants, their `api_access` flag and their plan.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::Deserialize;
use utoipa::IntoParams;

use super::error::ApiError;
use super::extract::{Path, Query};
use super::json::{AccountView, JsonBody, ListView};
use super::keys::page_params;
use super::openapi::{
    Forbidden, Internal, InvalidInput, InvalidJson, InvalidParameter, NotFound, StoreUnavailable, TooLarge,
    Unauthorized, ValidationFailed,
};
use super::quotas::{account_view, account_views};
use super::{Actor, AdminState};
use crate::service::{CreateAccount, UpdateAccount};
use crate::store::AuditContext;

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListAccounts {
    /// Page size, default 50.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 200)]
    limit: Option<String>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// Create an account
///
/// Admin or owner, not confined to an account.
#[utoipa::path(
    post,
    path = "/accounts",
    tag = "accounts",
    operation_id = "create_account",
    security(("admin_token" = [])),
    request_body = CreateAccount,
    responses(
        (status = 201, description = "Created", body = AccountView),
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
    JsonBody(body): JsonBody<CreateAccount>,
) -> Result<(StatusCode, Json<AccountView>), ApiError> {
    actor.require_write()?;
    if actor.account_id.is_some() {
        return Err(ApiError::Forbidden("a token confined to an account cannot create accounts"));
    }
    let account = state.service.create_account(body, &audit).await?;
    Ok((StatusCode::CREATED, Json(account_view(&state, account).await?)))
}

/// List accounts
///
/// A token confined to an account sees only that account.
#[utoipa::path(
    get,
    path = "/accounts",
    tag = "accounts",
    operation_id = "list_accounts",
    params(ListAccounts),
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "A page of accounts", body = ListView<AccountView>),
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
    Query(q): Query<ListAccounts>,
) -> Result<Json<ListView<AccountView>>, ApiError> {
    let (limit, cursor) = page_params(q.limit.as_deref(), q.cursor.as_deref())?;
    let page = state.store.list_accounts(limit, cursor.as_ref(), actor.account_id.as_deref()).await?;
    let items = account_views(&state, page.items).await?;
    Ok(Json(ListView { items, next_cursor: page.next_cursor }))
}

/// Show an account
#[utoipa::path(
    get,
    path = "/accounts/{id}",
    tag = "accounts",
    operation_id = "show_account",
    params(("id" = String, Path, description = "`acc_…`", example = "acc_7Lk2PqW9xZr4Tn8VbM1s")),
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "The account", body = AccountView),
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
) -> Result<Json<AccountView>, ApiError> {
    actor.require_account(&id)?;
    Ok(Json(account_view(&state, state.store.get_account(&id).await?).await?))
}

/// Edit an account
///
/// Admin or owner. Turning `api_access` off refuses all the account's keys
/// (`api_access_disabled`) until it is turned on again. A token confined to
/// the account may rename it; `api_access` and `plan_id` are 403 for it.
/// `plan_id: null` takes the account off its plan; an unknown plan is 422.
#[utoipa::path(
    patch,
    path = "/accounts/{id}",
    tag = "accounts",
    operation_id = "update_account",
    params(("id" = String, Path, description = "`acc_…`", example = "acc_7Lk2PqW9xZr4Tn8VbM1s")),
    security(("admin_token" = [])),
    request_body = UpdateAccount,
    responses(
        (status = 200, description = "The account after the edit", body = AccountView),
        (status = 400, response = InvalidInput),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
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
    JsonBody(body): JsonBody<UpdateAccount>,
) -> Result<Json<AccountView>, ApiError> {
    actor.require_account(&id)?;
    actor.require_write()?;
    // The gate is the operator's term for the tenant: a tenant's own token
    // may rename its account, never lift (or set) its gate.
    if actor.account_id.is_some() && body.api_access.is_some() {
        return Err(ApiError::Forbidden("a token confined to an account cannot change its api_access"));
    }
    // The same for the plan, even one naming the plan it is on: the answer
    // does not depend on what the tenant guessed.
    if actor.account_id.is_some() && body.plan_id.is_some() {
        return Err(ApiError::Forbidden("a token confined to an account cannot change its plan"));
    }
    let after = state.service.update_account(&id, body, &audit).await?;
    Ok(Json(account_view(&state, after).await?))
}
