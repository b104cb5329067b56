//! The identity-token signing keys kept in the store (`identity_keys`,
//! migrations `0006_identity` / `0007_identity`): the current one, shared by
//! every replica, and the retired ones still published. The store holds
//! the PKCS#8 bytes and never looks inside them; `crate::identity` does.

use serde_json::json;

use super::audit::{record_audit, AuditContext};
use super::{bump_revision, on_pool, Result, Store};
use crate::clock::now_ms;

/// Retired keys older than this are deleted at the next rotation: no token
/// can still need them (lifetimes are at most a day).
const KEEP_RETIRED_MS: i64 = 7 * 24 * 3600 * 1000;

/// A stored signing key. No `Debug`: it holds the private key.
#[derive(sqlx::FromRow)]
pub struct StoredSigningKey {
    pub kid: String,
    /// PKCS#8 DER.
    pub private_key: Vec<u8>,
    pub created_at: i64,
    /// `None` for the current key.
    pub retired_at: Option<i64>,
}

impl Store {
    /// Makes `kid` the current signing key unless there already is one
    /// (another replica may have won the race); either way the caller reads
    /// the current key afterwards. Not a change of the key set: no revision.
    pub async fn insert_signing_key_if_absent(&self, kid: &str, private_key: &[u8]) -> Result<()> {
        on_pool!(self, pool => {
            sqlx::query(
                "INSERT INTO identity_keys (kid, private_key, slot, created_at) VALUES ($1, $2, 'current', $3) \
                 ON CONFLICT DO NOTHING",
            )
            .bind(kid)
            .bind(private_key)
            .bind(now_ms())
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// The current key and the keys retired after `retired_after` (unix
    /// ms), current first, then newest first.
    pub async fn signing_keys(&self, retired_after: i64) -> Result<Vec<StoredSigningKey>> {
        let keys = on_pool!(self, pool => {
            sqlx::query_as::<_, StoredSigningKey>(
                "SELECT kid, private_key, created_at, retired_at FROM identity_keys \
                 WHERE slot = 'current' OR retired_at > $1 \
                 ORDER BY (retired_at IS NULL) DESC, retired_at DESC",
            )
            .bind(retired_after)
            .fetch_all(pool)
            .await?
        });
        Ok(keys)
    }

    /// Retires the current signing key and makes `kid` current, audited as
    /// `identity.rotate`; bumps the revision, so every replica's reloader
    /// (NOTIFY or poll) hears of it. Returns the retired key's kid.
    pub async fn rotate_signing_key(
        &self,
        kid: &str,
        private_key: &[u8],
        audit: &AuditContext,
    ) -> Result<Option<String>> {
        let now = now_ms();
        let previous = on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let _revision = bump_revision!(tx);
            let previous: Option<String> =
                sqlx::query_scalar("SELECT kid FROM identity_keys WHERE slot = 'current'")
                    .fetch_optional(&mut *tx)
                    .await?;
            sqlx::query("UPDATE identity_keys SET slot = NULL, retired_at = $1 WHERE slot = 'current'")
                .bind(now)
                .execute(&mut *tx)
                .await?;
            sqlx::query("DELETE FROM identity_keys WHERE retired_at < $1")
                .bind(now - KEEP_RETIRED_MS)
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "INSERT INTO identity_keys (kid, private_key, slot, created_at) VALUES ($1, $2, 'current', $3)",
            )
            .bind(kid)
            .bind(private_key)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            let changes = json!({ "kid": { "from": previous, "to": kid } });
            record_audit!(tx, audit, now, "identity.rotate", Some(kid), None::<&str>, changes);
            tx.commit().await?;
            previous
        });
        Ok(previous)
    }
}
