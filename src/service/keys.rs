//! Key writes: create (with a new secret), edit, rotate, revoke one or
//! many, and leak reports. The request types are the admin API's bodies
//! and what a bulk path (import) builds; they are checked here, not by
//! their callers.

use serde::Deserialize;
use utoipa::ToSchema;

use super::{not_null, nullable, validate, Issued, Result, Service, ServiceError};
use crate::clock::now_ms;
use crate::keys::foreign::sha256;
use crate::keys::{format, Environment, KeyHash, Permission, Refusal};
use crate::store::{
    AuditContext, KeyPatch, KeyRecord, Leak, Metadata, NewKey, QuotaSpec, RateLimit, RouteRule, StoreError,
};

/// Most ids one bulk revocation takes.
pub const MAX_BULK: usize = 1_000;

/// Longest leaked secret a report may carry.
const MAX_SECRET: usize = 1_024;

/// A new key. Unset fields take the defaults shown.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "account_id": "acc_7Lk2PqW9xZr4Tn8VbM1s",
    "name": "reporting service",
    "permission": "read",
    "description": "nightly export job",
    "expires_at": "2026-03-01T00:00:00Z",
    "rate_limit": { "requests": 100, "per_seconds": 60 },
    "quota": { "limit": 10000, "period": "month" },
    "allowed_ips": ["10.0.0.0/8"],
    "allowed_routes": [{ "path_prefix": "/v1/reports", "methods": ["GET"] }],
    "metadata": { "team": "billing" }
}))]
pub struct CreateKey {
    /// `acc_…`: an account the token may see, with API access on.
    pub account_id: String,
    pub name: String,
    pub permission: Permission,
    #[serde(default)]
    pub description: Option<String>,
    /// Default `live`.
    #[serde(default)]
    pub environment: Option<Environment>,
    /// In the future; `null`: never expires.
    #[serde(default)]
    #[schema(format = DateTime)]
    pub expires_at: Option<String>,
    /// Default `true`.
    #[serde(default)]
    pub enabled: Option<bool>,
    #[serde(default)]
    pub rate_limit: Option<RateLimit>,
    /// Units per calendar period (UTC); `total` never resets (prepaid
    /// credits).
    #[serde(default)]
    pub quota: Option<QuotaSpec>,
    /// CIDR ranges; empty: anywhere.
    #[serde(default)]
    pub allowed_ips: Vec<String>,
    /// Empty: every route.
    #[serde(default)]
    pub allowed_routes: Vec<RouteRule>,
    /// Free-form JSON object, at most 4 KiB.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Metadata>,
}

/// An edit: absent fields stay as they are; `null` clears an optional field
/// (`description`, `expires_at`, `rate_limit`, `quota`, `allowed_ips`,
/// `allowed_routes`, `metadata`) and is refused for the others. Lists and
/// `metadata` are replaced whole.
#[derive(Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({ "enabled": false, "expires_at": null, "metadata": { "team": "billing", "ticket": "OPS-42" } }))]
pub struct UpdateKey {
    #[serde(default, deserialize_with = "not_null")]
    #[schema(nullable = false)]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub description: Option<Option<String>>,
    #[serde(default, deserialize_with = "not_null")]
    #[schema(nullable = false)]
    pub permission: Option<Permission>,
    #[serde(default, deserialize_with = "not_null")]
    #[schema(nullable = false)]
    pub enabled: Option<bool>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(format = DateTime)]
    pub expires_at: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    pub rate_limit: Option<Option<RateLimit>>,
    /// `null`: no quota of its own (what was spent stays in the ledger).
    #[serde(default, deserialize_with = "nullable")]
    pub quota: Option<Option<QuotaSpec>>,
    /// `null` or `[]`: any client address.
    #[serde(default, deserialize_with = "nullable")]
    pub allowed_ips: Option<Option<Vec<String>>>,
    /// `null` or `[]`: every route.
    #[serde(default, deserialize_with = "nullable")]
    pub allowed_routes: Option<Option<Vec<RouteRule>>>,
    /// Free-form JSON object, at most 4 KiB; `null` or `{}`: none.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Option<Metadata>>,
}

impl Service {
    /// Creates a key for an account with API access on, with a new secret.
    pub async fn create_key(&self, req: CreateKey, audit: &AuditContext) -> Result<Issued<KeyRecord>> {
        let now = now_ms();
        let account = match self.store.get_account(&req.account_id).await {
            Err(StoreError::NotFound) => return Err(ServiceError::invalid("account_id", "no such account")),
            other => other?,
        };
        if !account.api_access {
            return Err(ServiceError::Refused(Refusal::ApiAccessDisabled));
        }
        let mut new = self.new_key(req, account.id, now)?;
        let prefix = self.prefix(new.environment);
        let secret = format::generate(prefix);
        new.prefix = prefix.to_owned();
        new.preview = secret.preview();
        new.hash = secret.hash();
        let key = self.store.create_key(&new, audit).await?;
        self.publish().await;
        tracing::info!(key_id = %key.id, account_id = %key.account_id, "key created");
        Ok(Issued { record: key, secret })
    }

    /// The key `req` asks for in `account_id`, validated; its secret's
    /// prefix, preview and hash are left for the caller to set.
    pub(super) fn new_key(&self, req: CreateKey, account_id: String, now: i64) -> Result<NewKey> {
        Ok(NewKey {
            name: validate::name("name", &req.name)?,
            description: validate::description(req.description)?,
            expires_at: req.expires_at.as_deref().map(|e| validate::expires_at(e, now)).transpose()?,
            rate_limit: validate::rate_limit(req.rate_limit)?,
            quota: validate::quota(req.quota)?,
            allowed_ips: validate::allowed_ips(req.allowed_ips)?,
            allowed_routes: validate::allowed_routes(req.allowed_routes)?,
            metadata: validate::metadata(req.metadata.unwrap_or_default())?,
            account_id,
            permission: req.permission,
            environment: req.environment.unwrap_or(Environment::Live),
            prefix: String::new(),
            preview: String::new(),
            hash: KeyHash([0; 32]),
            enabled: req.enabled.unwrap_or(true),
        })
    }

    /// Edits a key; a revoked key is a `Conflict`.
    pub async fn update_key(&self, id: &str, req: UpdateKey, audit: &AuditContext) -> Result<KeyRecord> {
        let now = now_ms();
        let patch = KeyPatch {
            name: req.name.as_deref().map(|n| validate::name("name", n)).transpose()?,
            description: req.description.map(validate::description).transpose()?,
            permission: req.permission,
            enabled: req.enabled,
            expires_at: req.expires_at.map(|e| e.map(|e| validate::expires_at(&e, now)).transpose()).transpose()?,
            rate_limit: req.rate_limit.map(validate::rate_limit).transpose()?,
            quota: req.quota.map(validate::quota).transpose()?,
            // `null` clears a list or the metadata: the empty value is "none".
            allowed_ips: req.allowed_ips.map(|v| validate::allowed_ips(v.unwrap_or_default())).transpose()?,
            allowed_routes: req.allowed_routes.map(|v| validate::allowed_routes(v.unwrap_or_default())).transpose()?,
            metadata: req.metadata.map(|v| validate::metadata(v.unwrap_or_default())).transpose()?,
        };
        let (_, after) = self.store.update_key(id, &patch, audit).await?;
        self.publish().await;
        Ok(after)
    }

    /// Gives `key` a new secret; the old one keeps working for
    /// `grace_period_seconds` (default 0, at most 30 days).
    pub async fn rotate_key(
        &self,
        key: &KeyRecord,
        grace_period_seconds: Option<u64>,
        audit: &AuditContext,
    ) -> Result<Issued<KeyRecord>> {
        let grace = validate::grace_period(grace_period_seconds.unwrap_or(0))?;
        let secret = format::generate(self.prefix(key.environment));
        let old_valid_until = now_ms() + (grace as i64) * 1000;
        let key = self.store.rotate_key(&key.id, &secret.hash(), &secret.preview(), old_valid_until, audit).await?;
        self.publish().await;
        tracing::info!(key_id = %key.id, grace_seconds = grace, "key rotated");
        Ok(Issued { record: key, secret })
    }

    /// Revokes a key: final, and idempotent.
    pub async fn revoke_key(&self, id: &str, audit: &AuditContext) -> Result<KeyRecord> {
        let key = self.store.revoke_key(id, audit).await?;
        self.publish().await;
        tracing::info!(key_id = %key.id, "key revoked");
        Ok(key)
    }

    /// Revokes 1 to [`MAX_BULK`] keys in one transaction; answers the ids
    /// revoked and those not found (or outside `only_account`).
    pub async fn revoke_keys(
        &self,
        mut ids: Vec<String>,
        only_account: Option<&str>,
        audit: &AuditContext,
    ) -> Result<(Vec<String>, Vec<String>)> {
        if ids.is_empty() || ids.len() > MAX_BULK {
            return Err(ServiceError::invalid("ids", format!("must hold 1 to {MAX_BULK} key ids")));
        }
        ids.sort();
        ids.dedup();
        let (revoked, not_found) = self.store.revoke_keys(&ids, only_account, "key.revoke", audit).await?;
        self.publish().await;
        tracing::info!(revoked = revoked.len(), not_found = not_found.len(), "bulk revocation");
        Ok((revoked, not_found))
    }

    /// Stops a leaked secret at once: a current secret revokes its key, an
    /// old one inside its rotation grace stops working.
    pub async fn report_leak(&self, secret: &str, only_account: Option<&str>, audit: &AuditContext) -> Result<Leak> {
        if secret.is_empty() || secret.len() > MAX_SECRET {
            return Err(ServiceError::invalid("secret", format!("must be 1 to {MAX_SECRET} characters")));
        }
        let mut leak = self.store.report_leak(&KeyHash::of(secret.as_bytes()), only_account, audit).await?;
        if leak == Leak::Nothing && self.foreign_keys_exist() {
            // A key imported by hash and not used since is stored under the
            // sha256 of its secret.
            leak = self.store.report_leak(&sha256(secret.as_bytes()), only_account, audit).await?;
        }
        if leak != Leak::Nothing {
            self.publish().await;
            tracing::warn!(outcome = ?leak, "leaked secret reported and disabled");
        }
        Ok(leak)
    }
}
