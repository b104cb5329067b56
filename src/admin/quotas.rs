//! `POST /v1/keys/{id}/quota`: adjusting a key's quota in its current
//! period; and the pooled quota's usage on account records.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::State;
use axum::{Extension, Json};

use super::error::ApiError;
use super::extract::Path;
use super::json::{AccountView, JsonBody, KeyView};
use super::keys::visible_key;
use super::openapi::{
    Conflict, Forbidden, Internal, InvalidInput, NotFound, StoreUnavailable, TooLarge, Unauthorized, ValidationFailed,
};
use super::{Actor, AdminState};
use crate::clock::now_ms;
use crate::service::AdjustQuota;
use crate::store::{quota_usage, Account, AuditContext, QuotaSpec};

/// Adjust a key's quota
///
/// Admin or owner (a confined token: keys of its account). Changes what
/// remains in the current period: `set` to `amount`, `increment` or
/// `decrement` by it (never below 0); `used` stays what was spent. `reset`
/// starts the period afresh. Audited as `key.quota`. A key without a quota
/// (or revoked) is 409 `conflict`.
#[utoipa::path(
    post,
    path = "/keys/{id}/quota",
    tag = "keys",
    operation_id = "adjust_key_quota",
    security(("admin_token" = [])),
    params(("id" = String, Path, description = "`key_…`", example = "key_4hQ2vX9TzLmN0pRsYb7c")),
    request_body = AdjustQuota,
    responses(
        (status = 200, description = "The key after the adjustment", body = KeyView),
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
pub async fn adjust(
    State(state): State<Arc<AdminState>>,
    Extension(actor): Extension<Actor>,
    Extension(audit): Extension<AuditContext>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<AdjustQuota>,
) -> Result<Json<KeyView>, ApiError> {
    visible_key(&state, &actor, &id).await?;
    actor.require_write()?;
    let key = state.service.adjust_quota(&id, &body, &audit).await?;
    Ok(Json(KeyView::new(key, now_ms())))
}

/// The account records, each with its plan's pooled quota usage.
pub(super) async fn account_views(state: &AdminState, accounts: Vec<Account>) -> Result<Vec<AccountView>, ApiError> {
    let mut plans: HashMap<String, Option<QuotaSpec>> = HashMap::new();
    for plan_id in accounts.iter().filter_map(|a| a.plan_id.as_deref()) {
        if !plans.contains_key(plan_id) {
            let quota = state.store.get_plan(plan_id).await?.quota;
            plans.insert(plan_id.to_owned(), quota);
        }
    }
    let quota_of = |a: &Account| a.plan_id.as_ref().and_then(|p| plans.get(p).copied().flatten());
    let owners: Vec<(&str, QuotaSpec)> = accounts.iter().filter_map(|a| Some((a.id.as_str(), quota_of(a)?))).collect();
    let now = now_ms();
    let ledger = state.store.quota_ledger(&owners, now).await?;
    let usage: HashMap<String, _> = owners
        .iter()
        .map(|(id, spec)| {
            let (used, adjust) = ledger.get(*id).copied().unwrap_or((0, 0));
            ((*id).to_owned(), quota_usage(*spec, used, adjust, now))
        })
        .collect();
    Ok(accounts
        .into_iter()
        .map(|a| {
            let quota_usage = usage.get(&a.id).copied();
            AccountView { quota_usage, ..AccountView::from(a) }
        })
        .collect())
}

/// One account record with its pooled quota usage.
pub(super) async fn account_view(state: &AdminState, account: Account) -> Result<AccountView, ApiError> {
    let mut views = account_views(state, vec![account]).await?;
    views.pop().ok_or_else(|| ApiError::Internal("an account view went missing".into()))
}
