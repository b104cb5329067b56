//! Keys brought in from elsewhere: the import of up to 1,000 keys in one
//! transaction, idempotent by secret, and the move of a key imported as a
//! sha256 hash to blake3 once the gateway has seen its secret.
//!
//! Takes hashes, never secrets: a plaintext import arrives as the blake3
//! (what the gateway looks up) and the sha256 (what makes importing the
//! same secret as a hash later answer the same key) of its secret.

use std::collections::HashMap;

use serde_json::json;
use sqlx::QueryBuilder;

use super::audit::{record_audit, AuditContext};
use super::keys::{emit_key_event, json as json_text, KeyRow, KEY_COLUMNS};
use super::webhooks::{emit_event, subscribed, Event, EventType};
use super::{bump_revision, on_pool, KeyRecord, NewKey, Result, Store, StoreError};
use crate::clock::now_ms;
use crate::keys::format::new_id;
use crate::keys::KeyHash;

/// How an imported key's secret is known to the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportedSecret {
    /// The plaintext was given: its blake3 and its sha256.
    Plain { hash: KeyHash, sha256: KeyHash },
    /// Only the sha256 of the secret was given.
    Sha256(KeyHash),
}

impl ImportedSecret {
    pub fn sha256(&self) -> &KeyHash {
        match self {
            ImportedSecret::Plain { sha256, .. } | ImportedSecret::Sha256(sha256) => sha256,
        }
    }
}

/// One key to import: the record to create (its `hash` is ignored: the
/// secret says what is stored) and how its secret is known.
#[derive(Debug, Clone)]
pub struct NewImport {
    pub key: NewKey,
    pub secret: ImportedSecret,
}

/// What became of one imported key.
#[derive(Debug, Clone, PartialEq)]
pub enum ImportOutcome {
    Created(KeyRecord),
    /// The same secret (or hash) was imported before: that key, unchanged.
    Existing(KeyRecord),
    /// The secret is taken by a key this import may not answer with.
    Conflict(&'static str),
}

/// A key imported by hash, seen with its secret: what it becomes.
#[derive(Debug, Clone)]
pub struct Rehash {
    pub key_id: String,
    /// The sha256 it was imported as.
    pub foreign: KeyHash,
    /// The blake3 of its secret.
    pub hash: KeyHash,
    /// `…` and the secret's last four characters.
    pub preview: String,
}

/// What a lookup of an imported secret found: id, account, hash algorithm.
type Found = (String, String, String);

impl Store {
    /// Imports `keys` into `account_id` in one transaction, in order: each
    /// is created, answered as the key that already has its secret (in
    /// this account), or refused as a conflict (a key of another account,
    /// or a secret retired by a rotation). `NotFound` when the account is
    /// not there. One `key.import` audit entry and one `key.created` event
    /// per key created, in the same transaction; none for a key answered
    /// as already there.
    pub async fn import_keys(
        &self,
        account_id: &str,
        keys: &[NewImport],
        audit: &AuditContext,
    ) -> Result<Vec<ImportOutcome>> {
        let now = now_ms();
        // What each key became: its id and whether it was created, or a conflict.
        let mut done: Vec<std::result::Result<(String, bool), &'static str>> = Vec::with_capacity(keys.len());
        on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let rev = bump_revision!(tx);
            let exists: Option<String> = sqlx::query_scalar("SELECT id FROM accounts WHERE id = $1")
                .bind(account_id)
                .fetch_optional(&mut *tx)
                .await?;
            if exists.is_none() {
                return Err(StoreError::NotFound);
            }
            // Asked once for the whole call: each key created is then
            // reported as `key.created` like one made by `POST /v1/keys`.
            let hooked = subscribed!(tx, EventType::KeyCreated);
            for import in keys {
                let (stored, algorithm) = match import.secret {
                    ImportedSecret::Plain { hash, .. } => (hash, "blake3"),
                    ImportedSecret::Sha256(sha) => (sha, "sha256"),
                };
                let sha = import.secret.sha256();
                let found: Option<Found> = sqlx::query_as(
                    "SELECT id, account_id, hash_algorithm FROM api_keys WHERE secret_hash = $1 OR import_sha256 = $2 \
                     ORDER BY id LIMIT 1",
                )
                .bind(stored.as_bytes().as_slice())
                .bind(sha.as_bytes().as_slice())
                .fetch_optional(&mut *tx)
                .await?;
                if let Some((id, owner, found_algorithm)) = found {
                    if owner != account_id {
                        done.push(Err("a key of another account already has this secret"));
                        continue;
                    }
                    // Imported by hash before and now as plaintext: the
                    // key moves to blake3 at once.
                    if let (ImportedSecret::Plain { hash, .. }, "sha256") = (import.secret, found_algorithm.as_str()) {
                        sqlx::query(
                            "UPDATE api_keys SET secret_hash = $1, hash_algorithm = 'blake3', preview = $2, revision = $3 \
                             WHERE id = $4",
                        )
                        .bind(hash.as_bytes().as_slice())
                        .bind(&import.key.preview)
                        .bind(rev)
                        .bind(&id)
                        .execute(&mut *tx)
                        .await?;
                    }
                    done.push(Ok((id, false)));
                    continue;
                }
                let retired: Option<String> = sqlx::query_scalar("SELECT key_id FROM retired_secrets WHERE secret_hash = $1")
                    .bind(stored.as_bytes().as_slice())
                    .fetch_optional(&mut *tx)
                    .await?;
                if retired.is_some() {
                    done.push(Err("this secret was replaced by a rotation of another key"));
                    continue;
                }
                let new = &import.key;
                let id = new_id("key");
                sqlx::query(
                    "INSERT INTO api_keys (id, account_id, name, description, permission, enabled, environment, prefix, preview, \
                     secret_hash, created_at, updated_at, expires_at, usage_count, rate_limit_requests, rate_limit_per_seconds, \
                     allowed_ips, allowed_routes, metadata, revision, hash_algorithm, import_sha256, quota_limit, quota_period) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11, $12, 0, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22)",
                )
                .bind(&id)
                .bind(account_id)
                .bind(&new.name)
                .bind(&new.description)
                .bind(new.permission.as_str())
                .bind(new.enabled)
                .bind(new.environment.as_str())
                .bind(&new.prefix)
                .bind(&new.preview)
                .bind(stored.as_bytes().as_slice())
                .bind(now)
                .bind(new.expires_at)
                .bind(new.rate_limit.map(|r| i64::from(r.requests)))
                .bind(new.rate_limit.map(|r| i64::from(r.per_seconds)))
                .bind(json_text(&new.allowed_ips))
                .bind(json_text(&new.allowed_routes))
                .bind(json_text(&new.metadata))
                .bind(rev)
                .bind(algorithm)
                .bind(sha.as_bytes().as_slice())
                .bind(new.quota.map(|q| i64::try_from(q.limit).unwrap_or(i64::MAX)))
                .bind(new.quota.map(|q| q.period.as_str()))
                .execute(&mut *tx)
                .await?;
                let changes = json!({
                    "name": new.name, "permission": new.permission, "environment": new.environment,
                    "expires_at": new.expires_at.map(crate::clock::rfc3339), "preview": new.preview,
                    "quota": new.quota,
                    "imported_as": if algorithm == "sha256" { "sha256" } else { "secret" },
                });
                record_audit!(tx, audit, now, "key.import", Some(&id), Some(account_id), changes);
                emit_key_event!(tx, EventType::KeyCreated, &id, now, json!({}), hooked);
                done.push(Ok((id, true)));
            }
            tx.commit().await?;
        });
        let ids: Vec<&str> = done.iter().filter_map(|d| d.as_ref().ok().map(|(id, _)| id.as_str())).collect();
        let records = self.keys_by_id(&ids).await?;
        done.into_iter()
            .map(|d| match d {
                Err(why) => Ok(ImportOutcome::Conflict(why)),
                Ok((id, created)) => {
                    let record = records.get(&id).cloned().ok_or(StoreError::NotFound)?;
                    Ok(if created { ImportOutcome::Created(record) } else { ImportOutcome::Existing(record) })
                }
            })
            .collect()
    }

    /// Key records by id, in one query per 500 ids.
    async fn keys_by_id(&self, ids: &[&str]) -> Result<HashMap<String, KeyRecord>> {
        let mut out = HashMap::with_capacity(ids.len());
        for chunk in ids.chunks(500) {
            let rows: Vec<KeyRow> = on_pool!(self, pool => {
                let mut qb = QueryBuilder::new(format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE id IN ("));
                let mut list = qb.separated(", ");
                for id in chunk {
                    list.push_bind(*id);
                }
                qb.push(")");
                qb.build_query_as().fetch_all(pool).await?
            });
            for row in rows {
                let record = KeyRecord::try_from(row)?;
                out.insert(record.id.clone(), record);
            }
        }
        Ok(out)
    }

    /// Moves keys imported by hash to the blake3 of their secret, seen by a
    /// gateway. A key already moved (by another replica), or whose blake3 is
    /// another key's, is left as it is. Not audited: nobody changed the
    /// key; its `preview` changes from `…` to the secret's last four
    /// characters. Returns how many keys moved.
    pub async fn rehash_keys(&self, moves: &[Rehash]) -> Result<u64> {
        let mut moved = 0;
        on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let rev = bump_revision!(tx);
            for m in moves {
                let taken: Option<String> = sqlx::query_scalar("SELECT id FROM api_keys WHERE secret_hash = $1")
                    .bind(m.hash.as_bytes().as_slice())
                    .fetch_optional(&mut *tx)
                    .await?;
                if taken.is_some() {
                    continue;
                }
                moved += sqlx::query(
                    "UPDATE api_keys SET secret_hash = $1, hash_algorithm = 'blake3', preview = $2, revision = $3 \
                     WHERE id = $4 AND hash_algorithm = 'sha256' AND secret_hash = $5",
                )
                .bind(m.hash.as_bytes().as_slice())
                .bind(&m.preview)
                .bind(rev)
                .bind(&m.key_id)
                .bind(m.foreign.as_bytes().as_slice())
                .execute(&mut *tx)
                .await?
                .rows_affected();
            }
            tx.commit().await?;
        });
        Ok(moved)
    }
}
