//! The admin listener: the REST API under `/v1`, `/healthz` and `/readyz`.
//!
//! `router(state)` is a value, testable with `oneshot`; `serve` runs it on
//! the shared listener. Every `/v1` route takes `Authorization: Bearer
//! <admin token>`. Writes go to the store and then reload this node's
//! snapshot before answering, so they are in force when the caller sees 2xx.

mod accounts;
mod auth;
pub mod error;
mod health;
pub mod json;
mod keys;
mod lifecycle;
pub mod tokens;
pub mod validate;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, post};
use axum::Router;

pub use auth::{Actor, Role};

use crate::config::Config;
use crate::keys::KeyHash;
use crate::reload::Reloader;
use crate::store::Store;

/// What every admin handler can reach.
pub struct AdminState {
    pub store: Store,
    pub reloader: Arc<Reloader>,
    pub live_prefix: String,
    pub test_prefix: String,
    /// Hash of `KEYGATE_ADMIN_TOKEN`, an owner token, when set.
    pub owner_token: Option<KeyHash>,
}

impl AdminState {
    pub fn new(config: &Config, reloader: Arc<Reloader>, owner_token: Option<&str>) -> Arc<AdminState> {
        Arc::new(AdminState {
            store: reloader.store().clone(),
            reloader,
            live_prefix: config.keys.live_prefix.clone(),
            test_prefix: config.keys.test_prefix.clone(),
            owner_token: owner_token.filter(|t| !t.is_empty()).map(|t| KeyHash::of(t.as_bytes())),
        })
    }

    /// Brings this node's snapshot up to date after a write. A failure is
    /// logged, not returned: the write is committed and the poller retries.
    pub async fn publish(&self) {
        if let Err(e) = self.reloader.reload().await {
            tracing::warn!(error = %e, "reload after an admin write failed; the poller will retry");
        }
    }
}

pub fn router(state: Arc<AdminState>, max_body_bytes: usize) -> Router {
    let v1 = Router::new()
        .route("/accounts", post(accounts::create).get(accounts::list))
        .route("/accounts/{id}", get(accounts::show).patch(accounts::update))
        .route("/keys", post(keys::create).get(keys::list))
        .route("/keys/{id}", get(keys::show).patch(keys::update).delete(keys::revoke))
        .route("/keys/{id}/rotate", post(keys::rotate))
        .route("/keys/{id}/revoke", post(keys::revoke))
        .route("/keys/bulk-revoke", post(lifecycle::bulk_revoke))
        .route("/keys/report-leak", post(lifecycle::report_leak))
        .route("/keys/verify", post(lifecycle::verify))
        .route("/admin-tokens", post(tokens::create).get(tokens::list))
        .route("/admin-tokens/{id}", delete(tokens::delete))
        .route("/audit", get(tokens::audit))
        .route_layer(axum::middleware::from_fn_with_state(Arc::clone(&state), auth::require_token));
    Router::new()
        .nest("/v1", v1)
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .fallback(health::not_found)
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(axum::middleware::from_fn(auth::request_id))
        .with_state(state)
}
