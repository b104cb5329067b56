//! `/healthz` (the process answers, with what it knows of the store, Redis
//! and its key snapshot) and `/readyz` (a snapshot is loaded and the process
//! is not draining), both without a token; and the problem for unknown paths.
//!
//! Neither touches the store: both read what the reloader last saw, so a
//! probe never waits on a database. A store outage leaves `/readyz` at 200 on
//! purpose (fail static: every replica keeps serving its last snapshot, and
//! an orchestrator must not pull them all out of service at once); it shows
//! in `/healthz`'s body and in `keygate_store_up`. Likewise Redis: when it
//! is down rate limits count per replica, which is no reason to be unready.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use super::error::ApiError;
use super::AdminState;
use crate::clock::now_ms;

#[derive(Serialize, ToSchema)]
#[schema(example = json!({ "status": "ok", "store": "up", "redis": "off", "quota": "shared", "revision": 42, "snapshot_age_seconds": 0.8 }))]
pub struct Health {
    /// Always `ok`: the process answers.
    status: &'static str,
    /// `up` when the store answered the reloader's last check, else `down`.
    store: &'static str,
    /// `off` without `limits.redis_url`; else `up` when the last sync with
    /// Redis succeeded, `down` when not (each replica then counts alone).
    redis: &'static str,
    /// `shared` when quota spending reached the store at the last sync (the
    /// fleet shares it), `local` when the store could not be reached (this
    /// replica counts alone and catches up when it is back).
    quota: &'static str,
    /// The store revision this node's key snapshot was built from.
    revision: i64,
    /// Seconds since the snapshot was last confirmed current; -1 before the first load.
    snapshot_age_seconds: f64,
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
    /// `ready`, `not_ready` (no snapshot yet) or `draining` (stopping).
    status: &'static str,
    /// `up` or `down`; informational: a store outage does not fail readiness.
    store: &'static str,
    /// The store revision this node's key snapshot was built from.
    snapshot_revision: i64,
    snapshot_keys: usize,
    /// Since the last successful reload; -1 before the first.
    snapshot_age_seconds: f64,
}

fn up_down(up: bool) -> &'static str {
    if up {
        "up"
    } else {
        "down"
    }
}

fn snapshot_age_seconds(state: &AdminState) -> f64 {
    let last = state.reloader.last_success_ms();
    if last > 0 {
        (now_ms() - last).max(0) as f64 / 1000.0
    } else {
        -1.0
    }
}

/// Liveness
///
/// The process answers; the body says whether the store answered the last
/// check and how old the key snapshot is. Always 200. No token.
#[utoipa::path(get, path = "/healthz", tag = "health", operation_id = "healthz", responses((status = 200, description = "Alive", body = Health)))]
pub async fn healthz(State(state): State<Arc<AdminState>>) -> Json<Health> {
    Json(Health {
        status: "ok",
        store: up_down(state.reloader.store_up()),
        redis: state.reloader.keyset().load().fleet().map_or("off", |f| up_down(f.is_up())),
        quota: if state.reloader.quotas().shared() { "shared" } else { "local" },
        revision: state.reloader.keyset().load().revision(),
        snapshot_age_seconds: snapshot_age_seconds(&state),
    })
}

/// Readiness
///
/// A key snapshot is loaded and the process is not draining. A store outage
/// does not fail it: the gateway serves its last snapshot. No token.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "health",
    operation_id = "readyz",
    responses(
        (status = 200, description = "Ready to serve (also while the store is down)", body = Readiness),
        (status = 503, description = "Not ready: no snapshot yet, or draining after SIGTERM", body = Readiness,
            example = json!({ "status": "draining", "store": "up", "snapshot_revision": 42, "snapshot_keys": 1200, "snapshot_age_seconds": 3.5 })),
    )
)]
pub async fn readyz(State(state): State<Arc<AdminState>>) -> (StatusCode, Json<Readiness>) {
    let snapshot = state.reloader.keyset().load_full();
    let status = if state.draining.is_triggered() {
        "draining"
    } else if state.reloader.last_success_ms() > 0 {
        "ready"
    } else {
        "not_ready"
    };
    let code = if status == "ready" { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let body = Readiness {
        status,
        store: up_down(state.reloader.store_up()),
        snapshot_revision: snapshot.revision(),
        snapshot_keys: snapshot.len(),
        snapshot_age_seconds: snapshot_age_seconds(&state),
    };
    (code, Json(body))
}

pub async fn not_found() -> ApiError {
    ApiError::NotFound
}
