//! `/healthz` (the process answers) and `/readyz` (a snapshot is loaded and
//! the store answers), both without a token; and the problem for unknown
//! paths.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};

use super::error::ApiError;
use super::AdminState;
use crate::clock::now_ms;

pub async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

pub async fn readyz(State(state): State<Arc<AdminState>>) -> (StatusCode, Json<Value>) {
    let store_up = tokio::time::timeout(Duration::from_secs(1), state.store.ping()).await.unwrap_or(false);
    let snapshot = state.reloader.keyset().load_full();
    let last = state.reloader.last_success_ms();
    let age = if last > 0 { (now_ms() - last) as f64 / 1000.0 } else { -1.0 };
    let ready = store_up && last > 0;
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let body = json!({
        "status": if ready { "ready" } else { "not_ready" },
        "store": if store_up { "up" } else { "down" },
        "snapshot_revision": snapshot.revision(),
        "snapshot_keys": snapshot.len(),
        "snapshot_age_seconds": age,
    });
    (status, Json(body))
}

pub async fn not_found() -> ApiError {
    ApiError::NotFound
}
