//! The admin listener: the REST API under `/v1`, `/healthz`, `/readyz`,
//! its OpenAPI document at `/openapi.json`, and the web dashboard at `/`.
//!
//! `router(state)` is a value, testable with `oneshot`; `serve` runs it on
//! the shared listener. Every `/v1` route takes `Authorization: Bearer
//! <admin token>`. Handlers check who may ask (`Actor`) and hand every
//! write to the `service`, which validates, writes, audits and reloads this
//! node's snapshot before answering, so a write is in force when the caller
//! sees 2xx.

mod accounts;
mod auth;
pub mod dashboard;
pub mod error;
mod extract;
mod health;
mod identity;
mod import;
pub mod json;
mod keys;
mod lifecycle;
pub mod openapi;
mod plans;
mod quotas;
pub mod tokens;
mod usage;
mod webhooks;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::{Extension, Router};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use crate::store::Role;
pub use auth::{require_token, require_unconfined, Actor};

use crate::config::Config;
use crate::identity::Issuer;
use crate::keys::{KeyHash, Quota};
use crate::reload::Reloader;
use crate::service::Service;
use crate::shutdown::Shutdown;
use crate::store::Store;

/// What every admin handler can reach.
pub struct AdminState {
    /// For reads; every write goes through `service`.
    pub store: Store,
    pub service: Service,
    pub reloader: Arc<Reloader>,
    /// Hash of `KEYGATE_ADMIN_TOKEN`, an owner token, when set.
    pub owner_token: Option<KeyHash>,
    /// `limits.default_per_key`, for verify's decision.
    pub default_quota: Option<Quota>,
    /// Triggered when the gateway starts draining: `/readyz` answers 503.
    pub draining: Shutdown,
    /// The identity token issuer (`proxy.identity_token`): the JWKS and
    /// rotation. `None` when identity tokens are off.
    pub identity: Option<Arc<Issuer>>,
}

impl AdminState {
    pub fn new(config: &Config, reloader: Arc<Reloader>, owner_token: Option<&str>) -> Arc<AdminState> {
        Self::draining_with(config, reloader, owner_token, Shutdown::new())
    }

    /// `new`, with `/readyz` following `draining` (the gateway's shutdown).
    pub fn draining_with(
        config: &Config,
        reloader: Arc<Reloader>,
        owner_token: Option<&str>,
        draining: Shutdown,
    ) -> Arc<AdminState> {
        Self::serving(config, reloader, owner_token, draining, None)
    }

    /// `draining_with`, publishing and rotating `identity`'s keys.
    pub fn serving(
        config: &Config,
        reloader: Arc<Reloader>,
        owner_token: Option<&str>,
        draining: Shutdown,
        identity: Option<Arc<Issuer>>,
    ) -> Arc<AdminState> {
        Arc::new(AdminState {
            store: reloader.store().clone(),
            service: Service::new(Arc::clone(&reloader), &config.keys),
            reloader,
            owner_token: owner_token.filter(|t| !t.is_empty()).map(|t| KeyHash::of(t.as_bytes())),
            default_quota: config
                .limits
                .default_per_key
                .map(|q| Quota { requests: q.requests, per_seconds: q.per_seconds }),
            draining,
            identity,
        })
    }
}

/// The admin API. Routes are declared here only, and only through
/// `routes!`, which registers each handler's route and its OpenAPI
/// operation together (one `routes!` per path): what is served is what is
/// documented.
pub fn router(state: Arc<AdminState>, max_body_bytes: usize) -> Router {
    let v1 = OpenApiRouter::new()
        .routes(routes!(accounts::create, accounts::list))
        .routes(routes!(accounts::show, accounts::update))
        .routes(routes!(plans::create, plans::list))
        .routes(routes!(plans::show, plans::update, plans::delete))
        .routes(routes!(keys::create, keys::list))
        .routes(routes!(keys::show, keys::update, keys::delete))
        .routes(routes!(keys::rotate))
        .routes(routes!(keys::revoke))
        .routes(routes!(quotas::adjust))
        .routes(routes!(lifecycle::bulk_revoke))
        .routes(routes!(import::import))
        .routes(routes!(lifecycle::report_leak))
        .routes(routes!(lifecycle::verify))
        .routes(routes!(tokens::create, tokens::list))
        .routes(routes!(tokens::delete))
        .routes(routes!(tokens::audit))
        .routes(routes!(usage::usage))
        .routes(routes!(usage::me))
        .routes(routes!(webhooks::create, webhooks::list))
        .routes(routes!(webhooks::show, webhooks::delete))
        .routes(routes!(webhooks::deliveries))
        .routes(routes!(identity::rotate))
        .route_layer(axum::middleware::from_fn_with_state(Arc::clone(&state), auth::require_token));
    let (router, api) = OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .nest("/v1", v1)
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
        .routes(routes!(openapi::document))
        .routes(routes!(identity::jwks))
        .split_for_parts();
    router
        .merge(dashboard::router())
        .fallback(health::not_found)
        .layer(Extension(openapi::Document::new(&api)))
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(axum::middleware::from_fn(auth::request_id))
        .layer(axum::middleware::from_fn(dashboard::security_headers))
        .with_state(state)
}
