//! `/v1/accounts`: tenants and their `api_access` flag.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::Deserialize;

use super::error::ApiError;
use super::json::{AccountView, JsonBody, ListView};
use super::keys::page_params;
use super::{validate, Actor, AdminState};
use crate::store::{AccountPatch, AuditContext};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateAccount {
    name: String,
    #[serde(default)]
    api_access: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateAccount {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    api_access: Option<bool>,
}

#[derive(Deserialize)]
pub struct ListAccounts {
    limit: Option<String>,
    cursor: Option<String>,
}

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
    let name = validate::name("name", &body.name)?;
    let account = state.store.create_account(&name, body.api_access.unwrap_or(true), &audit).await?;
    state.publish().await;
    Ok((StatusCode::CREATED, Json(account.into())))
}

pub async fn list(
    State(state): State<Arc<AdminState>>,
    Extension(actor): Extension<Actor>,
    Query(q): Query<ListAccounts>,
) -> Result<Json<ListView<AccountView>>, ApiError> {
    let (limit, cursor) = page_params(q.limit.as_deref(), q.cursor.as_deref())?;
    let page = state.store.list_accounts(limit, cursor.as_ref(), actor.account_id.as_deref()).await?;
    Ok(Json(ListView::from_page(page, AccountView::from)))
}

pub async fn show(
    State(state): State<Arc<AdminState>>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<String>,
) -> Result<Json<AccountView>, ApiError> {
    actor.require_account(&id)?;
    Ok(Json(state.store.get_account(&id).await?.into()))
}

pub async fn update(
    State(state): State<Arc<AdminState>>,
    Extension(actor): Extension<Actor>,
    Extension(audit): Extension<AuditContext>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<UpdateAccount>,
) -> Result<Json<AccountView>, ApiError> {
    actor.require_account(&id)?;
    actor.require_write()?;
    let patch = AccountPatch { name: body.name.as_deref().map(|n| validate::name("name", n)).transpose()?, api_access: body.api_access };
    let (_, after) = state.store.update_account(&id, &patch, &audit).await?;
    state.publish().await;
    Ok(Json(after.into()))
}
