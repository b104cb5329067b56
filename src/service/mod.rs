//! The write side of the admin plane: every change to accounts, plans, keys
//! and admin tokens goes through [`Service`], which validates the request,
//! writes it together with its audit entry (and its webhook events) in one
//! store transaction, and brings this node's snapshot up to date before it
//! returns. So a write is
//! in force on this node when its caller answers, and no caller can forget
//! to publish. Its callers: the admin API's handlers, the CLI's offline
//! commands (`keygate admin-token create`), and any later bulk path.
//!
//! It does not decide who may ask: roles and account confinement belong to
//! the caller (the admin API's `Actor`). It knows nothing of HTTP: it
//! answers [`ServiceError`], which the admin API turns into problem+json in
//! one place. Reads go to the store directly.

mod accounts;
mod error;
pub mod import;
mod keys;
mod plans;
mod quotas;
mod tokens;
pub mod validate;
mod webhooks;

#[cfg(test)]
mod tests;

use std::sync::Arc;

pub use accounts::{CreateAccount, UpdateAccount};
pub use error::ServiceError;
pub use import::{ImportFailure, ImportItem, ImportReport, MAX_IMPORT};
pub use keys::{CreateKey, UpdateKey, MAX_BULK};
pub use plans::{CreatePlan, UpdatePlan};
pub use quotas::{AdjustQuota, QuotaOperation};
pub use tokens::{CreateToken, ADMIN_TOKEN_PREFIX};
pub use webhooks::CreateWebhook;

use crate::config::KeysConfig;
use crate::keys::{Environment, Secret};
use crate::reload::Reloader;
use crate::store::Store;

pub type Result<T, E = ServiceError> = std::result::Result<T, E>;

/// A record created with a new secret (a key, a rotation, an admin token).
/// The secret exists only here: the store keeps its hash.
#[derive(Debug)]
pub struct Issued<T> {
    pub record: T,
    pub secret: Secret,
}

/// Validates, writes, audits and publishes. Cheap to share behind an `Arc`.
pub struct Service {
    store: Store,
    /// `None` offline: there is no snapshot in this process to publish to.
    reloader: Option<Arc<Reloader>>,
    live_prefix: String,
    test_prefix: String,
}

impl Service {
    /// For a running gateway: a write is in this node's snapshot when the
    /// call returns.
    pub fn new(reloader: Arc<Reloader>, keys: &KeysConfig) -> Service {
        Service::build(reloader.store().clone(), Some(reloader), keys)
    }

    /// For the CLI with no server running: writes go to the store only, and
    /// running gateways take them in through LISTEN/NOTIFY or their poller.
    pub fn offline(store: Store, keys: &KeysConfig) -> Service {
        Service::build(store, None, keys)
    }

    fn build(store: Store, reloader: Option<Arc<Reloader>>, keys: &KeysConfig) -> Service {
        Service { store, reloader, live_prefix: keys.live_prefix.clone(), test_prefix: keys.test_prefix.clone() }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The prefix of new secrets for keys of this environment.
    fn prefix(&self, environment: Environment) -> &str {
        match environment {
            Environment::Live => &self.live_prefix,
            Environment::Test => &self.test_prefix,
        }
    }

    /// Whether keys imported by hash may be waiting for their first use.
    /// Offline (no snapshot here) the answer is yes.
    fn foreign_keys_exist(&self) -> bool {
        self.reloader.as_ref().is_none_or(|r| r.keyset().load().foreign_len() > 0)
    }

    /// Brings this node's snapshot up to date after a committed write. A
    /// failure is logged, not returned: the write is committed and the
    /// poller retries.
    async fn publish(&self) {
        let Some(reloader) = &self.reloader else { return };
        if let Err(e) = reloader.reload().await {
            tracing::warn!(error = %e, "reload after an admin write failed; the poller will retry");
        }
    }
}

/// For PATCH bodies: a field that is absent stays `None`, a field set to
/// `null` becomes `Some(None)`.
pub fn nullable<'de, T, D>(d: D) -> std::result::Result<Option<Option<T>>, D::Error>
where
    T: serde::Deserialize<'de>,
    D: serde::Deserializer<'de>,
{
    <Option<T> as serde::Deserialize>::deserialize(d).map(Some)
}

/// For PATCH bodies, fields that cannot be cleared: absent stays `None`,
/// `null` is refused naming the field (rather than read as "leave alone",
/// which is what absent means).
pub fn not_null<'de, T, D>(d: D) -> std::result::Result<Option<T>, D::Error>
where
    T: serde::Deserialize<'de>,
    D: serde::Deserializer<'de>,
{
    match <Option<T> as serde::Deserialize>::deserialize(d)? {
        Some(v) => Ok(Some(v)),
        None => Err(serde::de::Error::custom("cannot be null: leave the field out to keep it as it is")),
    }
}
