//! Signed identity on the admin port: the public keys at `GET
//! /.well-known/jwks.json` (no token: they are public, and upstreams fetch
//! them), and `POST /v1/identity/rotate` (owner only, audited) to replace
//! the stored signing key. No private key is ever in an answer.

use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::{Extension, Json};
use serde::Serialize;
use utoipa::ToSchema;

use super::error::ApiError;
use super::openapi::StoreUnavailable;
use super::openapi::{Conflict, Forbidden, Internal, Unauthorized};
use super::{Actor, AdminState};
use crate::clock::{now_ms, rfc3339};
use crate::identity::RotateError;
use crate::store::AuditContext;

/// A JSON Web Key Set (RFC 7517) of Ed25519 public keys (RFC 8037).
#[derive(Serialize, ToSchema)]
#[schema(example = json!({ "keys": [{
    "kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo",
    "kid": "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k", "use": "sig", "alg": "EdDSA"
}] }))]
pub struct Jwks {
    /// The key that signs now first, then retired keys whose tokens may
    /// still be valid. Empty when identity tokens are off.
    #[schema(value_type = Vec<Object>)]
    pub keys: Vec<serde_json::Value>,
}

/// Identity token public keys
///
/// The keys that verify `X-Keygate-Identity` (EdDSA). No token. Empty
/// when `proxy.identity_token` is off.
#[utoipa::path(
    get,
    path = "/.well-known/jwks.json",
    tag = "identity",
    operation_id = "jwks",
    responses((status = 200, description = "The public keys", body = Jwks))
)]
pub async fn jwks(State(state): State<Arc<AdminState>>) -> impl IntoResponse {
    let body = match &state.identity {
        Some(issuer) => issuer.jwks(now_ms()),
        None => serde_json::json!({ "keys": [] }),
    };
    // Short: a verifier that meets an unknown `kid` fetches again anyway.
    ([(header::CACHE_CONTROL, "public, max-age=60")], Json(body))
}

/// What a rotation did.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({
    "kid": "Q2x5c2l0ZS1leGFtcGxlLWtpZC1mb3ItZG9jcy0wMDAx",
    "previous_kid": "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k",
    "rotated_at": "2026-12-03T16:00:00Z"
}))]
pub struct RotatedView {
    /// The key that signs from now on.
    pub kid: String,
    /// The key it replaces; it stays in the JWKS while its tokens may be
    /// valid.
    pub previous_kid: Option<String>,
    pub rotated_at: String,
}

/// Rotate the identity signing key
///
/// Owner only. Replaces the stored Ed25519 key that signs
/// `X-Keygate-Identity`: this replica signs with the new key at once,
/// others when they hear of the change (NOTIFY on PostgreSQL, else within
/// `store.poll_interval_ms`). The old key stays in the JWKS for the token
/// lifetime plus a minute. Audited as `identity.rotate`. 409 when tokens
/// are off or signed with `signing_key_file`.
#[utoipa::path(
    post,
    path = "/identity/rotate",
    tag = "identity",
    operation_id = "rotate_identity_key",
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "Rotated", body = RotatedView),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 409, response = Conflict),
        (status = 500, response = Internal),
        (status = 503, response = StoreUnavailable),
    )
)]
pub async fn rotate(
    State(state): State<Arc<AdminState>>,
    Extension(actor): Extension<Actor>,
    Extension(audit): Extension<AuditContext>,
) -> Result<Json<RotatedView>, ApiError> {
    // The key signs for every account: an owner confined to one may not
    // rotate it under the others.
    if actor.role != super::Role::Owner || actor.account_id.is_some() {
        return Err(ApiError::Forbidden(
            "only owner tokens not confined to an account rotate the identity signing key",
        ));
    }
    let Some(issuer) = &state.identity else {
        return Err(ApiError::Conflict("identity tokens are off (proxy.identity_token)".into()));
    };
    let rotated = issuer.rotate(&audit).await.map_err(|e| match e {
        RotateError::KeyFile => ApiError::Conflict(e.to_string()),
        RotateError::Store(e) => ApiError::from(e),
        RotateError::Other(m) => ApiError::Internal(m),
    })?;
    // This node's snapshot catches up with the revision the rotation took,
    // as after any admin write; the keys themselves are already in force.
    if let Err(e) = state.reloader.reload().await {
        tracing::warn!(error = %e, "reload after the identity key rotation failed; the poller will retry");
    }
    Ok(Json(RotatedView { kid: rotated.kid, previous_kid: rotated.previous_kid, rotated_at: rfc3339(now_ms()) }))
}
