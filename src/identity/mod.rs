//! Signed identity (`proxy.identity_token`, docs/proxy.md#signed-identity):
//! a short-lived EdDSA JWT in `X-Keygate-Identity` saying which key,
//! account, permission and plan made the request, with the operator's
//! allowlisted metadata, checkable by the upstream against the public keys
//! at `GET /.well-known/jwks.json` on the admin port.
//!
//! The `Issuer` owns the signing state: the key that signs now, the keys
//! that signed before and are still published (until every token they
//! signed has expired, plus a grace for replicas that learn of a rotation
//! late), the lifetime and the metadata allowlist. It is built off the
//! request path and swapped whole (one `ArcSwap`); each build is a new
//! `generation`, which invalidates every cached token (`token`).
//!
//! The key comes from `signing_key_file`, or, without one, from the store,
//! where the first replica to start generates it (insert if absent, then
//! read: every replica signs with the same key). A stored key is rotated
//! with `POST /v1/identity/rotate`; the rotation bumps the store's
//! revision, so every replica re-reads the keys when its reloader hears of
//! it (NOTIFY on PostgreSQL, else the next poll). A key file is re-read on
//! SIGHUP; a new key signs from then on and the old one stays published.
//!
//! Never logs or answers a private key: `SigningKey` shows its `kid` only.

mod key;
mod token;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use anyhow::Context;
use arc_swap::ArcSwap;
use http::{HeaderName, HeaderValue};
use serde_json::{json, Value};

pub use key::SigningKey;

use self::token::Signing;
use crate::clock::now_ms;
use crate::config::IdentityTokenConfig;
use crate::keys::KeyPolicy;
use crate::shutdown::Shutdown;
use crate::store::{AuditContext, Store, StoreError};

pub const X_KEYGATE_IDENTITY: HeaderName = HeaderName::from_static("x-keygate-identity");

/// How long past a token's lifetime a retired key stays published: a
/// replica may sign with the old key until it hears of a rotation (a poll
/// interval, or at once with NOTIFY), and clocks differ a little.
pub const PUBLISH_GRACE_MS: i64 = 60_000;

/// Unique across every issuer of the process, so two gateways in one
/// process never share a cached token.
static GENERATION: AtomicU64 = AtomicU64::new(1);

/// A key that signed before, and when it stopped (unix ms).
type Retired = (Arc<SigningKey>, i64);

/// The signing state; see the module doc.
#[derive(Debug)]
pub struct State {
    generation: u64,
    ttl_seconds: i64,
    metadata: Vec<String>,
    /// Where the key comes from: this file, or the store (`None`).
    key_file: Option<String>,
    signing: Arc<SigningKey>,
    retired: Vec<Retired>,
    /// The stored keys' kids this state was built from (current first), to
    /// tell whether a refresh found anything new.
    stored_kids: Vec<String>,
}

/// The signing keys a state is built from.
struct Material {
    key_file: Option<String>,
    signing: Arc<SigningKey>,
    retired: Vec<Retired>,
    stored_kids: Vec<String>,
}

#[derive(Debug)]
pub struct Issuer {
    store: Store,
    state: ArcSwap<State>,
    /// One change of keys at a time (SIGHUP, rotation, refresh).
    changing: tokio::sync::Mutex<()>,
}

/// What a rotation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rotated {
    pub kid: String,
    pub previous_kid: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum RotateError {
    #[error("the signing key comes from proxy.identity_token.signing_key_file: replace the file and send SIGHUP")]
    KeyFile,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Other(String),
}

impl Issuer {
    /// The issuer for `config`, its key loaded (or, in the store, made).
    pub async fn start(config: &IdentityTokenConfig, store: Store) -> anyhow::Result<Arc<Issuer>> {
        let material = material(config, &store).await?;
        let state = assemble(config.ttl_seconds, config.metadata.clone(), material, None);
        tracing::info!(kid = state.signing.kid(), stored = state.key_file.is_none(), "identity tokens on");
        Ok(Arc::new(Issuer { store, state: ArcSwap::from_pointee(state), changing: tokio::sync::Mutex::new(()) }))
    }

    /// The state `config` calls for (a configuration reload), built off the
    /// request path; the key that signs now stays published.
    pub async fn prepare(&self, config: &IdentityTokenConfig) -> anyhow::Result<State> {
        let material = material(config, &self.store).await?;
        Ok(assemble(config.ttl_seconds, config.metadata.clone(), material, Some(&self.state.load())))
    }

    /// Puts `next` in force: tokens are signed by its key from now on.
    pub fn apply(&self, next: State) {
        let previous = self.state.swap(Arc::new(next));
        let now = self.state.load();
        if previous.signing.kid() != now.signing.kid() {
            tracing::info!(
                kid = now.signing.kid(),
                previous_kid = previous.signing.kid(),
                "identity signing key changed"
            );
        }
    }

    /// `X-Keygate-Identity` for a request by the key `policy` (its account
    /// on plan `plan_id`), from this thread's cache when one still holds.
    pub fn token(&self, policy: &KeyPolicy, plan_id: Option<&str>, now_ms: i64) -> HeaderValue {
        let state = self.state.load();
        let signing = Signing {
            generation: state.generation,
            key: &state.signing,
            ttl_seconds: state.ttl_seconds,
            metadata: &state.metadata,
        };
        token::token(&signing, policy, plan_id, now_ms)
    }

    /// The JWKS: the key that signs now, then those that signed tokens
    /// that may still be valid at `now_ms`.
    pub fn jwks(&self, now_ms: i64) -> Value {
        let state = self.state.load();
        let keys: Vec<Value> = std::iter::once(state.signing.jwk())
            .chain(
                state.retired.iter().filter(|(_, at)| published(*at, state.ttl_seconds, now_ms)).map(|(k, _)| k.jwk()),
            )
            .collect();
        json!({ "keys": keys })
    }

    /// The `kid` of the key that signs now.
    pub fn kid(&self) -> String {
        self.state.load().signing.kid().to_owned()
    }

    /// Replaces the stored signing key with a new one (audited as
    /// `identity.rotate`), and signs with it at once here; other replicas
    /// follow when their reloader hears of the new revision.
    pub async fn rotate(&self, audit: &AuditContext) -> Result<Rotated, RotateError> {
        let _one = self.changing.lock().await;
        if self.state.load().key_file.is_some() {
            return Err(RotateError::KeyFile);
        }
        let (key, der) = SigningKey::generate().map_err(RotateError::Other)?;
        let previous_kid = self.store.rotate_signing_key(key.kid(), &der, audit).await?;
        self.refresh_locked().await.map_err(|e| RotateError::Other(format!("{e:#}")))?;
        Ok(Rotated { kid: key.kid().to_owned(), previous_kid })
    }

    /// Reads the stored keys again and applies them if they changed (a
    /// rotation elsewhere). Nothing to do with a key file.
    pub async fn refresh(&self) -> anyhow::Result<()> {
        let _one = self.changing.lock().await;
        self.refresh_locked().await
    }

    async fn refresh_locked(&self) -> anyhow::Result<()> {
        let state = self.state.load_full();
        if state.key_file.is_some() {
            return Ok(());
        }
        let material = stored(&self.store, state.ttl_seconds).await?;
        if material.stored_kids != state.stored_kids {
            self.apply(assemble(state.ttl_seconds as u64, state.metadata.clone(), material, Some(&state)));
        }
        Ok(())
    }

    /// Refreshes the stored keys each time the reloader publishes a new
    /// revision (`revisions`), until `shutdown`.
    pub fn spawn_refresher(
        self: &Arc<Self>,
        mut revisions: tokio::sync::watch::Receiver<i64>,
        shutdown: Shutdown,
    ) -> tokio::task::JoinHandle<()> {
        let this = Arc::clone(self);
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    changed = revisions.changed() => if changed.is_err() { return },
                    _ = shutdown.wait() => return,
                }
                if let Err(e) = this.refresh().await {
                    tracing::warn!(error = %format!("{e:#}"), "identity signing keys not refreshed; signing with the last ones");
                }
            }
        })
    }
}

/// Whether a key retired at `retired_at` may still have signed a token
/// that is valid at `now_ms`.
fn published(retired_at: i64, ttl_seconds: i64, now_ms: i64) -> bool {
    now_ms < retired_at + ttl_seconds * 1000 + PUBLISH_GRACE_MS
}

/// The keys `config` names: its key file's, or the store's.
async fn material(config: &IdentityTokenConfig, store: &Store) -> anyhow::Result<Material> {
    match &config.signing_key_file {
        Some(file) => {
            let key = SigningKey::from_pem_file(file)
                .map_err(|e| anyhow::anyhow!("proxy.identity_token.signing_key_file: {e}"))?;
            Ok(Material {
                key_file: Some(file.clone()),
                signing: Arc::new(key),
                retired: Vec::new(),
                stored_kids: Vec::new(),
            })
        }
        None => stored(store, config.ttl_seconds as i64).await,
    }
}

/// The stored keys: the current one (made now if the store has none yet)
/// and those retired recently enough to be published.
async fn stored(store: &Store, ttl_seconds: i64) -> anyhow::Result<Material> {
    let since = now_ms() - ttl_seconds * 1000 - PUBLISH_GRACE_MS;
    let load = || async { store.signing_keys(since).await.context("cannot read the identity signing keys") };
    let mut rows = load().await?;
    if rows.first().is_none_or(|r| r.retired_at.is_some()) {
        let (key, der) = SigningKey::generate().map_err(anyhow::Error::msg)?;
        store.insert_signing_key_if_absent(key.kid(), &der).await.context("cannot store an identity signing key")?;
        // Whichever replica's insert won is the key.
        rows = load().await?;
    }
    let mut rows = rows.into_iter();
    let current = rows.next().filter(|r| r.retired_at.is_none()).context("no current identity signing key")?;
    let signing = SigningKey::from_pkcs8(&current.private_key)
        .map_err(|e| anyhow::anyhow!("the stored identity signing key {}: {e}", current.kid))?;
    let mut stored_kids = vec![current.kid];
    let mut retired = Vec::new();
    for row in rows {
        stored_kids.push(row.kid);
        if let (Ok(key), Some(at)) = (SigningKey::from_pkcs8(&row.private_key), row.retired_at) {
            retired.push((Arc::new(key), at));
        }
    }
    Ok(Material { key_file: None, signing: Arc::new(signing), retired, stored_kids })
}

/// A new state from `material`; the keys `previous` signed with and still
/// publishes stay published (a key file replaced, a rotation heard of).
fn assemble(ttl_seconds: u64, metadata: Vec<String>, material: Material, previous: Option<&State>) -> State {
    let now = now_ms();
    let ttl_seconds = ttl_seconds as i64;
    let Material { key_file, signing, mut retired, stored_kids } = material;
    if let Some(previous) = previous {
        let before = std::iter::once((Arc::clone(&previous.signing), now)).chain(previous.retired.iter().cloned());
        for (key, at) in before {
            // The longer of the two lifetimes: tokens signed under the old one
            // may still be out there.
            let ttl = ttl_seconds.max(previous.ttl_seconds);
            let known = key.kid() == signing.kid() || retired.iter().any(|(k, _)| k.kid() == key.kid());
            if !known && published(at, ttl, now) {
                retired.push((key, at));
            }
        }
    }
    State {
        generation: GENERATION.fetch_add(1, Ordering::Relaxed),
        ttl_seconds,
        metadata,
        key_file,
        signing,
        retired,
        stored_kids,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from_file(key: &Arc<SigningKey>) -> Material {
        Material {
            key_file: Some("k.pem".into()),
            signing: Arc::clone(key),
            retired: Vec::new(),
            stored_kids: Vec::new(),
        }
    }

    #[test]
    fn a_replaced_key_stays_published_for_its_tokens_lifetime_and_a_grace() {
        let (a, b) = (Arc::new(SigningKey::generate().expect("a").0), Arc::new(SigningKey::generate().expect("b").0));
        let first = assemble(60, Vec::new(), from_file(&a), None);
        assert!(first.retired.is_empty());
        let second = assemble(60, vec!["team".into()], from_file(&b), Some(&first));
        assert_eq!(second.signing.kid(), b.kid());
        let kids: Vec<&str> = second.retired.iter().map(|(k, _)| k.kid()).collect();
        assert_eq!(kids, [a.kid()], "the key that signed before is still published");
        assert_ne!(first.generation, second.generation, "every state signs its tokens anew");
        // The same key again keeps the old one's retirement time, once.
        let third = assemble(60, Vec::new(), from_file(&b), Some(&second));
        assert_eq!(third.retired.len(), 1);
        assert_eq!(third.retired[0].1, second.retired[0].1);
        let retired_at = second.retired[0].1;
        assert!(published(retired_at, 60, retired_at + 60_000 + PUBLISH_GRACE_MS - 1));
        assert!(!published(retired_at, 60, retired_at + 60_000 + PUBLISH_GRACE_MS));
        // Past the window, a rebuild lets it go.
        let old = State { retired: vec![(Arc::clone(&a), now_ms() - 61_000 - PUBLISH_GRACE_MS)], ..third };
        assert!(assemble(60, Vec::new(), from_file(&b), Some(&old)).retired.is_empty());
    }
}
