//! `/v1/plans`: limits pooled over all of an account's keys. Every token
//! reads plans (a tenant may see the terms it is on and what it could move
//! to); owners and unconfined admins write them, since a plan is the
//! operator's term for tenants, never a tenant's own.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::Deserialize;
use utoipa::IntoParams;

use super::error::ApiError;
use super::extract::{Path, Query};
use super::json::{JsonBody, ListView, PlanView};
use super::keys::page_params;
use super::openapi::{
    Conflict, Forbidden, Internal, InvalidInput, InvalidJson, InvalidParameter, NotFound, StoreUnavailable, TooLarge,
    Unauthorized, ValidationFailed,
};
use super::{Actor, AdminState};
use crate::service::{CreatePlan, UpdatePlan};
use crate::store::AuditContext;

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListPlans {
    /// Page size, default 50.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 200)]
    limit: Option<String>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

impl Actor {
    /// Refuses viewers and tokens confined to an account: plans are the
    /// operator's terms for every tenant.
    fn require_plan_writer(&self) -> Result<(), ApiError> {
        self.require_write()?;
        if self.account_id.is_some() {
            return Err(ApiError::Forbidden("a token confined to an account cannot write plans"));
        }
        Ok(())
    }
}

/// Create a plan
///
/// Owner, or admin not confined to an account.
#[utoipa::path(
    post,
    path = "/plans",
    tag = "plans",
    operation_id = "create_plan",
    security(("admin_token" = [])),
    request_body = CreatePlan,
    responses(
        (status = 201, description = "Created", body = PlanView),
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
    JsonBody(body): JsonBody<CreatePlan>,
) -> Result<(StatusCode, Json<PlanView>), ApiError> {
    actor.require_plan_writer()?;
    let plan = state.service.create_plan(body, &audit).await?;
    Ok((StatusCode::CREATED, Json(plan.into())))
}

/// List plans
///
/// Every token, newest first.
#[utoipa::path(
    get,
    path = "/plans",
    tag = "plans",
    operation_id = "list_plans",
    params(ListPlans),
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "A page of plans", body = ListView<PlanView>),
        (status = 400, response = InvalidParameter),
        (status = 401, response = Unauthorized),
        (status = 422, response = ValidationFailed),
        (status = 500, response = Internal),
        (status = 503, response = StoreUnavailable),
    )
)]
pub async fn list(
    State(state): State<Arc<AdminState>>,
    Query(q): Query<ListPlans>,
) -> Result<Json<ListView<PlanView>>, ApiError> {
    let (limit, cursor) = page_params(q.limit.as_deref(), q.cursor.as_deref())?;
    let page = state.store.list_plans(limit, cursor.as_ref()).await?;
    Ok(Json(ListView::from_page(page, PlanView::from)))
}

/// Show a plan
#[utoipa::path(
    get,
    path = "/plans/{id}",
    tag = "plans",
    operation_id = "show_plan",
    params(("id" = String, Path, description = "`plan_…`", example = "plan_9QwE3rT5yU7iO1pA2sD4")),
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "The plan", body = PlanView),
        (status = 400, response = InvalidParameter),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
        (status = 500, response = Internal),
        (status = 503, response = StoreUnavailable),
    )
)]
pub async fn show(State(state): State<Arc<AdminState>>, Path(id): Path<String>) -> Result<Json<PlanView>, ApiError> {
    Ok(Json(state.store.get_plan(&id).await?.into()))
}

/// Edit a plan
///
/// Owner, or admin not confined to an account. `null` clears a limit; a
/// field left out stays as it is. In force for every account on the plan
/// when the answer arrives.
#[utoipa::path(
    patch,
    path = "/plans/{id}",
    tag = "plans",
    operation_id = "update_plan",
    params(("id" = String, Path, description = "`plan_…`", example = "plan_9QwE3rT5yU7iO1pA2sD4")),
    security(("admin_token" = [])),
    request_body = UpdatePlan,
    responses(
        (status = 200, description = "The plan after the edit", body = PlanView),
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
    JsonBody(body): JsonBody<UpdatePlan>,
) -> Result<Json<PlanView>, ApiError> {
    actor.require_plan_writer()?;
    Ok(Json(state.service.update_plan(&id, body, &audit).await?.into()))
}

/// Delete a plan
///
/// Owner, or admin not confined to an account. A plan some account is on
/// cannot be deleted (409 `conflict`): move the accounts first.
#[utoipa::path(
    delete,
    path = "/plans/{id}",
    tag = "plans",
    operation_id = "delete_plan",
    params(("id" = String, Path, description = "`plan_…`", example = "plan_9QwE3rT5yU7iO1pA2sD4")),
    security(("admin_token" = [])),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, response = InvalidParameter),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
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
    actor.require_plan_writer()?;
    state.service.delete_plan(&id, &audit).await?;
    Ok(StatusCode::NO_CONTENT)
}
