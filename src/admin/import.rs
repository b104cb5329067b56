//! `POST /v1/keys/import`: keys made elsewhere, by plaintext secret or by
//! sha256 hash, up to 1,000 per call, each imported or refused by its
//! index. Who may import into which account is checked here; reading and
//! writing the keys is the service's (`service::import`).

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::State;
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::error::ApiError;
use super::json::{JsonBody, KeyView};
use super::openapi::{Forbidden, Internal, InvalidJson, StoreUnavailable, TooLarge, Unauthorized, ValidationFailed};
use super::{Actor, AdminState};
use crate::clock::now_ms;
use crate::keys::QuotaSpec;
use crate::service::import::read_item;
use crate::service::{ImportFailure, MAX_IMPORT};
use crate::store::{AuditContext, RateLimit};

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "account_id": "acc_7Lk2PqW9xZr4Tn8VbM1s",
    "keys": [
        { "secret": "sk_live_4eC39HqLyjWDarjtT1zdp7dc", "name": "billing export", "permission": "read" },
        {
            "hash": { "algorithm": "sha256", "encoding": "hex", "value": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08" },
            "name": "partner sync", "permission": "write", "expires_at": "2027-06-30T00:00:00Z"
        }
    ]
}))]
pub struct ImportKeys {
    /// `acc_…`: every key goes to this account (API access on).
    account_id: String,
    /// 1 to 1000 keys. Each has `secret` (the plaintext: 16 to 256
    /// printable ASCII characters without spaces; a key in keygate's own
    /// format must have its checksum right) or `hash` (`{ "algorithm":
    /// "sha256", "encoding": "hex" | "base64", "value" }`), plus the fields
    /// of a created key: `name`, `permission`, and optionally
    /// `description`, `environment`, `expires_at`, `enabled`, `rate_limit`,
    /// `allowed_ips`, `allowed_routes`, `metadata`.
    #[schema(value_type = Vec<Object>)]
    keys: Vec<Value>,
}

/// One key imported, or found already imported.
#[derive(Serialize, ToSchema)]
pub struct Imported {
    /// Position of the key in `keys`, from 0.
    index: usize,
    key: KeyView,
    /// `false`: a key already had this secret (or hash); it is answered
    /// unchanged.
    created: bool,
}

/// What the import did, each list in the order of `keys`.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({
    "imported": [{ "index": 0, "created": true, "key": super::json::key_example() }],
    "failed": [{ "index": 1, "code": "validation_failed", "detail": "hash.value: must be 64 hexadecimal digits (a sha256)", "field": "hash.value" }]
}))]
pub struct ImportedKeys {
    imported: Vec<Imported>,
    failed: Vec<ImportFailure>,
}

/// Import keys
///
/// Admin or owner; a confined token into its own account only. Keys made
/// elsewhere, by their plaintext secret or the sha256 of it, 1 to 1000 per
/// call, in one transaction. Idempotent: a secret (or hash) imported before
/// answers the key that has it, unchanged. Each key that cannot be imported
/// is listed in `failed` with its index and a `code` (`validation_failed`,
/// `conflict`: its secret is another account's key, a rotated-out secret,
/// or an earlier key of this call; `forbidden`: limits beyond the plan for a
/// confined token); the others are imported. A key imported by hash moves to
/// blake3 the first time the gateway sees its secret. Audited as
/// `key.import`, one entry per key created.
#[utoipa::path(
    post,
    path = "/keys/import",
    tag = "keys",
    operation_id = "import_keys",
    security(("admin_token" = [])),
    request_body = ImportKeys,
    responses(
        (status = 200, description = "What was imported and what was not, by index", body = ImportedKeys),
        (status = 400, response = InvalidJson),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 413, response = TooLarge),
        (status = 422, response = ValidationFailed),
        (status = 500, response = Internal),
        (status = 503, response = StoreUnavailable),
    )
)]
pub async fn import(
    State(state): State<Arc<AdminState>>,
    Extension(actor): Extension<Actor>,
    Extension(audit): Extension<AuditContext>,
    JsonBody(body): JsonBody<ImportKeys>,
) -> Result<Json<ImportedKeys>, ApiError> {
    actor.require_write()?;
    actor.require_account(&body.account_id).map_err(|_| ApiError::invalid("account_id", "no such account"))?;
    if body.keys.is_empty() || body.keys.len() > MAX_IMPORT {
        return Err(ApiError::invalid(
            "keys",
            format!("must hold 1 to {MAX_IMPORT} keys; import more in several calls"),
        ));
    }
    let account_id = body.account_id;
    // A confined token cannot give a key limits beyond its account's plan
    // (as on create): asked once per distinct limit.
    let mut beyond: HashMap<PlanAsk, Option<&'static str>> = HashMap::new();
    let mut items = Vec::with_capacity(body.keys.len());
    for (index, value) in body.keys.into_iter().enumerate() {
        let mut item = read_item(index, &account_id, value);
        if let (Some(_), Ok(read)) = (&actor.account_id, &item) {
            let (rate_limit, quota) = (read.fields.rate_limit, read.fields.quota);
            if rate_limit.is_some() || quota.is_some() {
                if let Some(field) = over_plan(&state, &mut beyond, &account_id, rate_limit, quota).await? {
                    item = Err(ImportFailure::forbidden(
                        index,
                        format!("a token confined to an account cannot give a key a {field} beyond its plan's"),
                    ));
                }
            }
        }
        items.push(item);
    }
    let report = state.service.import_keys(&account_id, items, &audit).await?;
    let now = now_ms();
    let imported = report
        .imported
        .into_iter()
        .map(|(index, record, created)| Imported { index, key: KeyView::new(record, now), created })
        .collect();
    Ok(Json(ImportedKeys { imported, failed: report.failed }))
}

/// The limits one import item asks for, as `over_plan` caches its answers.
type PlanAsk = (Option<(u32, u32)>, Option<(u64, &'static str)>);

/// The field (`rate_limit`, `quota`) that goes beyond the account's plan,
/// asked of the store once per distinct pair of limits in a call.
async fn over_plan(
    state: &AdminState,
    cache: &mut HashMap<PlanAsk, Option<&'static str>>,
    account_id: &str,
    rate_limit: Option<RateLimit>,
    quota: Option<QuotaSpec>,
) -> Result<Option<&'static str>, ApiError> {
    let key = (rate_limit.map(|l| (l.requests, l.per_seconds)), quota.map(|q| (q.limit, q.period.as_str())));
    let verdict = match cache.get(&key) {
        Some(v) => *v,
        None => {
            let v = state.service.beyond_plan(account_id, rate_limit, quota).await?;
            cache.insert(key, v);
            v
        }
    };
    Ok(verdict)
}
