//! Lifecycle extras for keys: bulk revocation, leak reports from secret
//! scanners, and verification of a secret without proxying.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::error::ApiError;
use super::json::JsonBody;
use super::{Actor, AdminState};
use crate::clock::now_ms;
use crate::keys::{KeyHash, Permission, Refusal};
use crate::store::{AuditContext, Leak};

/// Most ids one bulk revocation takes.
pub const MAX_BULK: usize = 1_000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BulkRevoke {
    ids: Vec<String>,
}

#[derive(Serialize)]
pub struct BulkRevoked {
    revoked: Vec<String>,
    not_found: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretBody {
    secret: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifyBody {
    secret: String,
    #[serde(default)]
    method: Option<String>,
    #[serde(default)]
    path: Option<String>,
}

/// The verify answer: the proxy's decision without the proxying.
#[derive(Debug, Serialize)]
pub struct Verdict {
    pub valid: bool,
    /// `allowed` or the refusal code the proxy would answer.
    pub code: &'static str,
    pub key_id: Option<String>,
    pub account_id: Option<String>,
    pub permission: Option<Permission>,
}

/// `POST /v1/keys/bulk-revoke`: one transaction; ids not found (or outside
/// a confined token's account) are reported, the rest revoked together.
pub async fn bulk_revoke(
    State(state): State<Arc<AdminState>>,
    Extension(actor): Extension<Actor>,
    Extension(audit): Extension<AuditContext>,
    JsonBody(body): JsonBody<BulkRevoke>,
) -> Result<Json<BulkRevoked>, ApiError> {
    actor.require_write()?;
    if body.ids.is_empty() || body.ids.len() > MAX_BULK {
        return Err(ApiError::invalid("ids", format!("must hold 1 to {MAX_BULK} key ids")));
    }
    let mut ids = body.ids;
    ids.sort();
    ids.dedup();
    let (revoked, not_found) = state.store.revoke_keys(&ids, actor.account_id.as_deref(), "key.revoke", &audit).await?;
    state.publish().await;
    tracing::info!(revoked = revoked.len(), not_found = not_found.len(), "bulk revocation");
    Ok(Json(BulkRevoked { revoked, not_found }))
}

/// `POST /v1/keys/report-leak`: 202 whatever was found, so the answer tells
/// a caller nothing about which secrets exist.
pub async fn report_leak(
    State(state): State<Arc<AdminState>>,
    Extension(actor): Extension<Actor>,
    Extension(audit): Extension<AuditContext>,
    JsonBody(body): JsonBody<SecretBody>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    actor.require_write()?;
    if body.secret.is_empty() || body.secret.len() > 1024 {
        return Err(ApiError::invalid("secret", "must be 1 to 1024 characters"));
    }
    let hash = KeyHash::of(body.secret.as_bytes());
    let leak = state.store.report_leak(&hash, actor.account_id.as_deref(), &audit).await?;
    if leak != Leak::Nothing {
        state.publish().await;
        tracing::warn!(outcome = ?leak, "leaked secret reported and disabled");
    }
    Ok((StatusCode::ACCEPTED, Json(json!({ "status": "accepted" }))))
}

/// `POST /v1/keys/verify`: the same decision and codes as the proxy.
pub async fn verify(
    State(state): State<Arc<AdminState>>,
    Extension(actor): Extension<Actor>,
    JsonBody(body): JsonBody<VerifyBody>,
) -> Result<Json<Verdict>, ApiError> {
    let method = match body.method.as_deref() {
        None | Some("") => http::Method::GET,
        Some(m) => http::Method::from_bytes(m.to_ascii_uppercase().as_bytes())
            .map_err(|_| ApiError::invalid("method", "not an HTTP method"))?,
    };
    if body.path.as_deref().is_some_and(|p| !p.starts_with('/')) {
        return Err(ApiError::invalid("path", "must start with \"/\""));
    }
    let keyset = state.reloader.keyset().load_full();
    let secret = body.secret.as_bytes();
    let decision = keyset.check(secret, &method, now_ms());
    let policy = keyset.lookup(&KeyHash::of(secret)).map(|(p, _)| p.clone());
    // A token confined to an account learns nothing about other accounts' keys.
    let visible = policy.filter(|p| actor.account_id.as_deref().is_none_or(|own| own == p.account_id.as_str()));
    let verdict = match (decision, visible) {
        (Ok(id), _) if actor.account_id.as_deref().is_none_or(|own| own == id.account_id.as_str()) => Verdict {
            valid: true,
            code: "allowed",
            key_id: Some(id.key_id.to_string()),
            account_id: Some(id.account_id.to_string()),
            permission: Some(id.permission),
        },
        (Err(refusal), Some(p)) => Verdict {
            valid: false,
            code: refusal.code(),
            key_id: Some(p.id.to_string()),
            account_id: Some(p.account_id.to_string()),
            permission: Some(p.permission),
        },
        _ => Verdict { valid: false, code: Refusal::InvalidKey.code(), key_id: None, account_id: None, permission: None },
    };
    Ok(Json(verdict))
}
