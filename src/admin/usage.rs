//! `GET /v1/keys/{id}/usage` (usage over time, from the hourly buckets the
//! usage flush writes) and `GET /v1/me` (who the token is, for the
//! dashboard to decide what to show).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;
use axum::{Extension, Json};
use serde::Serialize;
use utoipa::ToSchema;

use super::error::ApiError;
use super::extract::Path;
use super::keys::visible_key;
use super::openapi::{Internal, InvalidParameter, NotFound, StoreUnavailable, Unauthorized};
use super::{Actor, AdminState, Role};
use crate::clock::{now_ms, rfc3339};

const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 24 * HOUR_MS;
/// The hourly series covers the last 7 days, the daily one the last 90.
const HOURLY_DAYS: i64 = 7;
const DAILY_DAYS: i64 = 90;

/// Requests in one hour or one day.
#[derive(Debug, Serialize, ToSchema)]
pub struct Bucket {
    /// Start of the hour or day (UTC).
    #[schema(example = "2026-11-23T10:00:00Z")]
    pub start: String,
    /// Allowed requests.
    pub requests: i64,
    /// Refused requests (any refusal code).
    pub refused: i64,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({
    "key_id": "key_4hQ2vX9TzLmN0pRsYb7c",
    "hourly": [{ "start": "2026-11-23T10:00:00Z", "requests": 120, "refused": 2 }],
    "daily": [{ "start": "2026-11-23T00:00:00Z", "requests": 1200, "refused": 3 }],
    "outcomes": { "allowed": 1200, "rate_limited": 3 }
}))]
pub struct UsageView {
    pub key_id: String,
    /// The last 7 days, hours with traffic only, oldest first.
    pub hourly: Vec<Bucket>,
    /// The last 90 days, days with traffic only, oldest first.
    pub daily: Vec<Bucket>,
    /// Requests per outcome (`allowed` or a refusal code) over 90 days.
    #[schema(value_type = Object, example = json!({ "allowed": 1200, "rate_limited": 3 }))]
    pub outcomes: BTreeMap<String, i64>,
}

/// The caller's admin token.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({ "id": "tok_8Qm3ZrX1vN6bT2cLp9Wd", "name": "ci deploys", "role": "admin", "account_id": null }))]
pub struct MeView {
    /// `tok_…`, or `env` for the `KEYGATE_ADMIN_TOKEN` owner token.
    pub id: String,
    pub name: String,
    pub role: Role,
    /// The account the token is confined to; `null`: every account.
    #[schema(nullable, required)]
    pub account_id: Option<String>,
}

#[utoipa::path(
    get,
    path = "/keys/{id}/usage",
    tag = "keys",
    operation_id = "key_usage",
    security(("admin_token" = [])),
    params(("id" = String, Path, description = "`key_…`", example = "key_4hQ2vX9TzLmN0pRsYb7c")),
    responses(
        (status = 200, description = "Usage over time (flushed every `usage.flush_interval_ms`)", body = UsageView),
        (status = 400, response = InvalidParameter),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
        (status = 500, response = Internal),
        (status = 503, response = StoreUnavailable),
    )
)]
/// Usage over time of one key: requests per hour (7 days) and per day (90 days), by outcome.
pub async fn usage(
    State(state): State<Arc<AdminState>>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<String>,
) -> Result<Json<UsageView>, ApiError> {
    visible_key(&state, &actor, &id).await?;
    let now = now_ms();
    let rows = state.store.usage_since(&id, now - DAILY_DAYS * DAY_MS).await?;
    let mut hourly: BTreeMap<i64, (i64, i64)> = BTreeMap::new();
    let mut daily: BTreeMap<i64, (i64, i64)> = BTreeMap::new();
    let mut outcomes = BTreeMap::new();
    let hourly_from = now - HOURLY_DAYS * DAY_MS;
    for (hour, outcome, n) in rows {
        let allowed = outcome == "allowed";
        let add = |slot: &mut (i64, i64)| if allowed { slot.0 += n } else { slot.1 += n };
        if hour >= hourly_from {
            add(hourly.entry(hour).or_default());
        }
        add(daily.entry(hour / DAY_MS * DAY_MS).or_default());
        *outcomes.entry(outcome).or_insert(0) += n;
    }
    let buckets = |m: BTreeMap<i64, (i64, i64)>| {
        m.into_iter().map(|(start, (requests, refused))| Bucket { start: rfc3339(start), requests, refused }).collect()
    };
    Ok(Json(UsageView { key_id: id, hourly: buckets(hourly), daily: buckets(daily), outcomes }))
}

#[utoipa::path(
    get,
    path = "/me",
    tag = "admin-tokens",
    operation_id = "me",
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "The calling token's id, name, role and account", body = MeView),
        (status = 401, response = Unauthorized),
        (status = 503, response = StoreUnavailable),
    )
)]
/// Who the calling admin token is: id, name, role and account.
pub async fn me(Extension(actor): Extension<Actor>) -> Json<MeView> {
    Json(MeView { id: actor.id, name: actor.name, role: actor.role, account_id: actor.account_id })
}
