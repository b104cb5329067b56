//! `/v1/webhooks`: receivers of signed events, and each one's deliveries
//! log. Owner and admin tokens not confined to an account manage them,
//! reads included: a webhook's URL and log show the activity of every
//! account it subscribes to. Its secret is shown once, by the create.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
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
use crate::clock::rfc3339;
use crate::service::CreateWebhook;
use crate::store::{Attempt, AuditContext, EventType, Webhook};

/// A webhook; its secret is never shown again.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({
    "id": "wh_3Jk8Lm2Nq5Rt7Vx9Zb1C",
    "url": "https://hooks.example.com/keygate",
    "events": ["key.created", "key.leaked", "key.revoked"],
    "account_id": null,
    "created_at": "2025-03-01T09:00:00Z"
}))]
pub struct WebhookView {
    /// `wh_…`.
    pub id: String,
    pub url: String,
    pub events: Vec<EventType>,
    /// Only this account's events; `null`: every account's.
    #[schema(required = true)]
    pub account_id: Option<String>,
    #[schema(format = DateTime)]
    pub created_at: String,
}

impl From<Webhook> for WebhookView {
    fn from(w: Webhook) -> Self {
        WebhookView {
            id: w.id,
            url: w.url,
            events: w.events,
            account_id: w.account_id,
            created_at: rfc3339(w.created_at),
        }
    }
}

#[derive(Serialize, ToSchema)]
#[schema(example = json!({
    "webhook": {
        "id": "wh_3Jk8Lm2Nq5Rt7Vx9Zb1C",
        "url": "https://hooks.example.com/keygate",
        "events": ["key.created", "key.leaked", "key.revoked"],
        "account_id": null,
        "created_at": "2025-03-01T09:00:00Z"
    },
    "secret": "whsec_Qm8Zt2Lw5Rn0Vb7Xk3Pj9Hs4Dc1Fg6Ye"
}))]
pub struct CreatedWebhook {
    webhook: WebhookView,
    /// The signing secret (`whsec_…`), the HMAC key of `Keygate-Signature`.
    /// Shown this once.
    secret: String,
}

/// One attempt to deliver an event.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({
    "id": "wha_0Nf3kQ2a0001Xy7Lp2Qw",
    "event_id": "evt_0Nf3kQ1z0000Rt5Vb8Nm",
    "type": "key.created",
    "attempt": 1,
    "at": "2025-03-02T14:05:00Z",
    "status_code": 500,
    "error": "answered 500 Internal Server Error",
    "delivered": false,
    "next_attempt_at": "2025-03-02T14:05:05Z"
}))]
pub struct DeliveryView {
    /// `wha_…`.
    pub id: String,
    /// `evt_…`: the same at every attempt of one event.
    pub event_id: String,
    #[serde(rename = "type")]
    pub kind: String,
    /// 1 for the first attempt.
    pub attempt: i64,
    #[schema(format = DateTime)]
    pub at: String,
    /// The receiver's status; `null` when it gave none (refused, timed out).
    #[schema(required = true)]
    pub status_code: Option<i64>,
    /// Why the attempt failed; `null` when delivered.
    #[schema(required = true)]
    pub error: Option<String>,
    /// Whether the receiver answered 2xx.
    pub delivered: bool,
    /// When the next attempt is due; `null` once delivered or given up.
    #[schema(format = DateTime, required = true)]
    pub next_attempt_at: Option<String>,
}

impl From<Attempt> for DeliveryView {
    fn from(a: Attempt) -> Self {
        DeliveryView {
            id: a.id,
            event_id: a.event_id,
            kind: a.kind,
            attempt: a.attempt,
            at: rfc3339(a.at),
            status_code: a.status_code,
            error: a.error,
            delivered: a.delivered,
            next_attempt_at: a.next_attempt_at.map(rfc3339),
        }
    }
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Page {
    /// Page size, default 50.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 200)]
    limit: Option<String>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

impl Actor {
    /// Owners and admins, not confined to an account: a webhook may receive
    /// every account's events, and its log shows them, so a token confined
    /// to one account (even an owner's) cannot have one.
    fn require_webhook_manager(&self) -> Result<(), ApiError> {
        match (self.role, &self.account_id) {
            (Role::Owner | Role::Admin, None) => Ok(()),
            _ => Err(ApiError::Forbidden("only owner and admin tokens not confined to an account manage webhooks")),
        }
    }
}

/// Create a webhook
///
/// Owner, or admin not confined to an account. The answer holds the
/// signing secret, shown this once.
#[utoipa::path(
    post,
    path = "/webhooks",
    tag = "webhooks",
    operation_id = "create_webhook",
    security(("admin_token" = [])),
    request_body = CreateWebhook,
    responses(
        (status = 201, description = "Created; `secret` is shown this once", body = CreatedWebhook),
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
    JsonBody(body): JsonBody<CreateWebhook>,
) -> Result<(StatusCode, Json<CreatedWebhook>), ApiError> {
    actor.require_webhook_manager()?;
    let issued = state.service.create_webhook(body, &audit).await?;
    let secret = issued.secret.expose().to_owned();
    Ok((StatusCode::CREATED, Json(CreatedWebhook { webhook: issued.record.into(), secret })))
}

/// List webhooks
///
/// Owner, or admin not confined to an account. Newest first.
#[utoipa::path(
    get,
    path = "/webhooks",
    tag = "webhooks",
    operation_id = "list_webhooks",
    params(Page),
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "A page of webhooks", body = ListView<WebhookView>),
        (status = 400, response = InvalidParameter),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 422, response = ValidationFailed),
        (status = 500, response = Internal),
        (status = 503, response = StoreUnavailable),
    )
)]
pub async fn list(
    State(state): State<Arc<AdminState>>,
    Extension(actor): Extension<Actor>,
    Query(q): Query<Page>,
) -> Result<Json<ListView<WebhookView>>, ApiError> {
    actor.require_webhook_manager()?;
    let (limit, cursor) = page_params(q.limit.as_deref(), q.cursor.as_deref())?;
    let page = state.store.list_webhooks(limit, cursor.as_ref()).await?;
    Ok(Json(ListView::from_page(page, WebhookView::from)))
}

/// Show a webhook
#[utoipa::path(
    get,
    path = "/webhooks/{id}",
    tag = "webhooks",
    operation_id = "show_webhook",
    params(("id" = String, Path, description = "`wh_…`", example = "wh_3Jk8Lm2Nq5Rt7Vx9Zb1C")),
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "The webhook", body = WebhookView),
        (status = 400, response = InvalidParameter),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 500, response = Internal),
        (status = 503, response = StoreUnavailable),
    )
)]
pub async fn show(
    State(state): State<Arc<AdminState>>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<String>,
) -> Result<Json<WebhookView>, ApiError> {
    actor.require_webhook_manager()?;
    Ok(Json(state.store.get_webhook(&id).await?.into()))
}

/// Delete a webhook
///
/// Owner, or admin not confined to an account. Its pending deliveries are
/// dropped with it.
#[utoipa::path(
    delete,
    path = "/webhooks/{id}",
    tag = "webhooks",
    operation_id = "delete_webhook",
    params(("id" = String, Path, description = "`wh_…`", example = "wh_3Jk8Lm2Nq5Rt7Vx9Zb1C")),
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
    actor.require_webhook_manager()?;
    state.service.delete_webhook(&id, &audit).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A webhook's deliveries log
///
/// Owner, or admin not confined to an account. One item per attempt,
/// newest first.
#[utoipa::path(
    get,
    path = "/webhooks/{id}/deliveries",
    tag = "webhooks",
    operation_id = "list_webhook_deliveries",
    params(("id" = String, Path, description = "`wh_…`", example = "wh_3Jk8Lm2Nq5Rt7Vx9Zb1C"), Page),
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "A page of attempts", body = ListView<DeliveryView>),
        (status = 400, response = InvalidParameter),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 422, response = ValidationFailed),
        (status = 500, response = Internal),
        (status = 503, response = StoreUnavailable),
    )
)]
pub async fn deliveries(
    State(state): State<Arc<AdminState>>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<String>,
    Query(q): Query<Page>,
) -> Result<Json<ListView<DeliveryView>>, ApiError> {
    actor.require_webhook_manager()?;
    let (limit, cursor) = page_params(q.limit.as_deref(), q.cursor.as_deref())?;
    // 404 for a webhook that does not exist, rather than an empty log.
    state.store.get_webhook(&id).await?;
    let page = state.store.list_attempts(&id, limit, cursor.as_ref()).await?;
    Ok(Json(ListView::from_page(page, DeliveryView::from)))
}
