//! A builder for [`KeyPolicy`] values made outside the store: unit tests,
//! fuzz seeds, benches and examples. It starts from the policy of an
//! ordinary key (write, enabled, not revoked, API access, no expiry, no
//! quota, no restrictions) so a caller states only what its case is about.
//! The store builds its policies from rows (`store::changes`), not here.

use std::sync::Arc;

use super::decision::Quota;
use super::format::KeyHash;
use super::policy::KeyPolicy;
use super::policy::Permission;
use super::restrictions::Restrictions;
use super::snapshot::{InlineId, PolicyRow};

/// An ordinary key's policy, changed one field at a time.
#[derive(Debug, Clone)]
#[must_use]
pub struct KeyPolicyBuilder {
    policy: KeyPolicy,
}

impl KeyPolicy {
    /// A builder for the policy of key `id` in account `account_id`.
    ///
    /// # Panics
    ///
    /// When an id does not fit an [`InlineId`]; callers pass literals.
    pub fn builder(id: &str, account_id: &str) -> KeyPolicyBuilder {
        let inline = |id: &str| InlineId::new(id).unwrap_or_else(|| panic!("{id:?} does not fit an InlineId"));
        KeyPolicyBuilder {
            policy: KeyPolicy {
                id: inline(id),
                account_id: inline(account_id),
                permission: Permission::Write,
                enabled: true,
                revoked: false,
                api_access: true,
                expires_at: KeyPolicy::NEVER,
                quota: None,
                usage_quota: None,
                extras: None,
            },
        }
    }
}

impl KeyPolicyBuilder {
    pub fn permission(mut self, permission: Permission) -> Self {
        self.policy.permission = permission;
        self
    }

    pub fn enabled(mut self, enabled: bool) -> Self {
        self.policy.enabled = enabled;
        self
    }

    pub fn revoked(mut self, revoked: bool) -> Self {
        self.policy.revoked = revoked;
        self
    }

    /// Whether the key's account has API access (the plan gate).
    pub fn api_access(mut self, api_access: bool) -> Self {
        self.policy.api_access = api_access;
        self
    }

    /// Unix milliseconds after which the key is expired.
    pub fn expires_at(mut self, unix_ms: i64) -> Self {
        self.policy.expires_at = unix_ms;
        self
    }

    pub fn quota(mut self, quota: Quota) -> Self {
        self.policy.quota = Some(quota);
        self
    }

    /// The key's own quota (units per calendar period).
    pub fn usage_quota(mut self, quota: super::quota::QuotaSpec) -> Self {
        self.policy.usage_quota = super::quota::PackedQuota::new(quota);
        self
    }

    pub fn restrictions(mut self, restrictions: Restrictions) -> Self {
        self.policy.set_restrictions(Some(Arc::new(restrictions)));
        self
    }

    /// The key's `metadata` object (empty: none).
    pub fn metadata(mut self, metadata: serde_json::Map<String, serde_json::Value>) -> Self {
        self.policy.set_metadata(metadata);
        self
    }

    pub fn build(self) -> KeyPolicy {
        self.policy
    }

    /// The policy as a snapshot row for the key whose hash is `hash`.
    pub fn row(self, hash: KeyHash) -> PolicyRow {
        PolicyRow { hash, policy: self.policy }
    }
}
