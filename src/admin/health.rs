//! `/healthz` (the process answers) and `/readyz` (a snapshot is loaded and
//! the store answers), both without a token; and the problem for unknown
//! paths.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use super::error::ApiError;
use super::AdminState;
use crate::clock::now_ms;

#[derive(Serialize, ToSchema)]
#[schema(example = json!({ "status": "ok" }))]
pub struct Health {
    /// Always `ok`.
    status: &'static str,
}

#[derive(Serialize, ToSchema)]
#[schema(example = json!({
    "status": "ready",
    "store": "up",
    "snapshot_revision": 42,
    "snapshot_keys": 1200,
    "snapshot_age_seconds": 0.8
}))]
pub struct Readiness {
    /// `ready` or `not_ready`.
    status: &'static str,
    /// `up` or `down`.
    store: &'static str,
    /// The store revision this node's key snapshot was built from.
    snapshot_revision: i64,
    snapshot_keys: usize,
    /// Since the last successful reload; -1 before the first.
    snapshot_age_seconds: f64,
}

/// Liveness
///
/// The process answers. No token.
#[utoipa::path(get, path = "/healthz", tag = "health", operation_id = "healthz", responses((status = 200, description = "Alive", body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// Readiness
///
/// A key snapshot is loaded and the store answers within a second. No token.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "health",
    operation_id = "readyz",
    responses(
        (status = 200, description = "Ready to serve", body = Readiness),
        (status = 503, description = "Not ready: no snapshot yet, or the store is down", body = Readiness,
            example = json!({ "status": "not_ready", "store": "down", "snapshot_revision": 42, "snapshot_keys": 1200, "snapshot_age_seconds": 31.5 })),
    )
)]
pub async fn readyz(State(state): State<Arc<AdminState>>) -> (StatusCode, Json<Readiness>) {
    let store_up = tokio::time::timeout(Duration::from_secs(1), state.store.ping()).await.unwrap_or(false);
    let snapshot = state.reloader.keyset().load_full();
    let last = state.reloader.last_success_ms();
    let age = if last > 0 { (now_ms() - last) as f64 / 1000.0 } else { -1.0 };
    let ready = store_up && last > 0;
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let body = Readiness {
        status: if ready { "ready" } else { "not_ready" },
        store: if store_up { "up" } else { "down" },
        snapshot_revision: snapshot.revision(),
        snapshot_keys: snapshot.len(),
        snapshot_age_seconds: age,
    };
    (status, Json(body))
}

pub async fn not_found() -> ApiError {
    ApiError::NotFound
}
