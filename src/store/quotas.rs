//! The quota ledger: per owner (`key_…` or `acc_…`) and period, what was
//! spent and the adjustments made through the API, and the units each
//! replica has reserved ahead (its lease). Every replica spends through
//! here, so spending survives restarts and is shared by the fleet.
//!
//! Spending does not bump the revision (it is not policy); adjustments do,
//! and touch the key's row, so every replica's reloader re-reads the key and
//! its quota book resyncs it at once (NOTIFY on PostgreSQL).
//!
//! A sync runs in one transaction per batch: the upsert of the ledger row
//! locks it (PostgreSQL) or the database (SQLite), so two replicas never
//! reserve the same units.

use std::collections::{BTreeMap, HashMap};

use serde_json::json;

use super::audit::{record_audit, AuditContext};
use super::webhooks::emit_quota_threshold;
use super::QuotaThreshold;
use super::{bump_revision, on_pool, Backend, KeyRecord, QuotaOp, QuotaUsage, Result, Store, StoreError};
use crate::clock::now_ms;
use crate::keys::{QuotaSpec, MAX_QUOTA};

/// A lease not refreshed for this long belongs to a replica that went away:
/// its units are free again.
pub const LEASE_TTL_MS: i64 = 15_000;

/// One owner's sync: flush `spent` into the period's ledger row and ask to
/// hold `want` units ahead.
#[derive(Debug, Clone)]
pub struct QuotaSync {
    pub owner_id: String,
    pub spec: QuotaSpec,
    pub period_start: i64,
    pub spent: u64,
    pub want: u64,
}

/// What the ledger answered to a sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaLedger {
    /// Spent in the period, this sync's units included.
    pub used: u64,
    /// Added to the limit through the API (negative: taken away).
    pub adjust: i64,
    /// Units other replicas hold ahead.
    pub others_held: u64,
    /// Units this replica now holds ahead.
    pub granted: u64,
}

/// What remains of `limit` after `used` and `adjust`, never below 0.
pub fn remaining(limit: u64, used: u64, adjust: i64) -> u64 {
    let allowance = i128::from(limit) + i128::from(adjust);
    u64::try_from((allowance - i128::from(used)).max(0)).unwrap_or(u64::MAX)
}

/// The usage a record shows for `spec` at `now_ms`.
pub fn usage(spec: QuotaSpec, used: u64, adjust: i64, now_ms: i64) -> QuotaUsage {
    QuotaUsage { used, remaining: remaining(spec.limit, used, adjust), resets_at: spec.period.window(now_ms).end_ms }
}

fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl Store {
    /// `(used, adjust)` of each owner's current period (owners without a
    /// row have spent nothing).
    pub async fn quota_ledger(&self, owners: &[(&str, QuotaSpec)], now: i64) -> Result<HashMap<String, (u64, i64)>> {
        let mut out = HashMap::new();
        if owners.is_empty() {
            return Ok(out);
        }
        on_pool!(self, pool => {
            for chunk in owners.chunks(500) {
                let mut qb = sqlx::QueryBuilder::new(
                    "SELECT l.owner_id, l.used, l.adjust FROM quota_ledger l JOIN (",
                );
                qb.push_values(chunk, |mut row, (id, spec)| {
                    row.push_bind(*id).push_bind(spec.period.window(now).start_ms);
                });
                qb.push(") AS v ON l.owner_id = v.column1 AND l.period_start = v.column2");
                let rows: Vec<(String, i64, i64)> = qb.build_query_as().fetch_all(pool).await?;
                out.extend(rows.into_iter().map(|(id, used, adjust)| (id, (to_u64(used), adjust))));
            }
        });
        Ok(out)
    }

    /// Fills `quota_usage` on the records that have a quota.
    pub(super) async fn fill_quota_usage(&self, keys: &mut [KeyRecord]) -> Result<()> {
        let now = now_ms();
        let owners: Vec<(&str, QuotaSpec)> = keys.iter().filter_map(|k| Some((k.id.as_str(), k.quota?))).collect();
        let ledger = self.quota_ledger(&owners, now).await?;
        for key in keys {
            key.quota_usage = key.quota.map(|spec| {
                let (used, adjust) = ledger.get(&key.id).copied().unwrap_or((0, 0));
                usage(spec, used, adjust, now)
            });
        }
        Ok(())
    }

    /// Flushes spending and sets this replica's leases, all owners in one
    /// transaction of a few multi-row statements (whatever the number of
    /// owners); answers in the order asked. A sync for an earlier period
    /// (spending carried over a period's end) is flushed and reserves
    /// nothing. On SQLite (one node, the ledger's only spender) there is no
    /// other replica to hold units or to read this one's leases: the
    /// spending alone is written and read back as one row: two statements
    /// instead of four, and one hand-over from SQLite's worker thread
    /// instead of one per owner (the flush shares the proxy's core).
    pub async fn sync_quotas(&self, replica_id: &str, syncs: &[QuotaSync]) -> Result<Vec<QuotaLedger>> {
        if syncs.is_empty() {
            return Ok(Vec::new());
        }
        let leases = self.backend() == Backend::Postgres;
        let now = now_ms();
        let stale = now - LEASE_TTL_MS;
        // One row per owner and period, in one order: two replicas' batches
        // share owners, and row locks taken in different orders deadlock.
        let mut rows: BTreeMap<(&str, i64), u64> = BTreeMap::new();
        // Each owner's latest period: the one it reserves in.
        let mut current: BTreeMap<&str, &QuotaSync> = BTreeMap::new();
        for s in syncs {
            *rows.entry((s.owner_id.as_str(), s.period_start)).or_default() += s.spent;
            let latest = current.entry(s.owner_id.as_str()).or_insert(s);
            if s.period_start > latest.period_start {
                *latest = s;
            }
        }
        let mut ledger: HashMap<(String, i64), (u64, i64)> = HashMap::with_capacity(rows.len());
        let mut others: HashMap<String, u64> = HashMap::new();
        let mut granted: HashMap<&str, u64> = HashMap::new();
        on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let mut qb = sqlx::QueryBuilder::new(
                "INSERT INTO quota_ledger (owner_id, period_start, used, adjust, updated_at) ",
            );
            qb.push_values(&rows, |mut row, ((owner, period_start), spent)| {
                row.push_bind(*owner).push_bind(*period_start).push_bind(to_i64(*spent)).push_bind(0_i64).push_bind(now);
            });
            qb.push(
                " ON CONFLICT (owner_id, period_start) DO UPDATE SET used = quota_ledger.used + excluded.used, \
                 updated_at = excluded.updated_at",
            );
            let answered: Vec<(String, i64, i64, i64)> = if leases {
                qb.push(" RETURNING owner_id, period_start, used, adjust");
                qb.build_query_as().fetch_all(&mut *tx).await?
            } else {
                // SQLite's worker thread hands each row of an answer over
                // on its own, and each woke the syncer (from the
                // `SCHED_IDLE` worker of the bulk flushes, at once): two
                // switches of the proxy's core per owner. The rows come
                // back as one.
                qb.build().execute(&mut *tx).await?;
                // The asked rows first (`CROSS JOIN` keeps that order): one
                // primary-key lookup each, not a scan of the ledger.
                let mut qb = sqlx::QueryBuilder::new(
                    "SELECT json_group_array(json_array(l.owner_id, l.period_start, l.used, l.adjust)) FROM (",
                );
                qb.push_values(rows.keys(), |mut row, (owner, period_start)| {
                    row.push_bind(*owner).push_bind(*period_start);
                });
                qb.push(
                    ") AS v CROSS JOIN quota_ledger l ON l.owner_id = v.column1 AND l.period_start = v.column2",
                );
                let text: String = qb.build_query_scalar().fetch_one(&mut *tx).await?;
                serde_json::from_str(&text).map_err(|e| StoreError::Other(format!("quota ledger rows: {e}")))?
            };
            ledger.extend(answered.into_iter().map(|(o, p, used, adjust)| ((o, p), (to_u64(used), adjust))));

            // What the other live replicas hold of each owner's current period.
            if leases {
                let mut qb = sqlx::QueryBuilder::new(
                    "SELECT l.owner_id, CAST(SUM(l.held) AS BIGINT) FROM quota_leases l JOIN (",
                );
                qb.push_values(current.values(), |mut row, s| {
                    row.push_bind(s.owner_id.as_str()).push_bind(s.period_start);
                });
                qb.push(") AS v ON l.owner_id = v.column1 AND l.period_start = v.column2 WHERE l.replica_id <> ");
                qb.push_bind(replica_id).push(" AND l.seen_at >= ").push_bind(stale).push(" GROUP BY l.owner_id");
                let held: Vec<(String, i64)> = qb.build_query_as().fetch_all(&mut *tx).await?;
                others.extend(held.into_iter().map(|(o, n)| (o, to_u64(n))));
            }

            // `quota.threshold` (80 and 100 % of the limit with its
            // adjustments), in this transaction: the event is written with
            // the spending that crossed it, once per period however many
            // replicas cross it.
            for s in current.values() {
                let Some(&(used, adjust)) = ledger.get(&(s.owner_id.clone(), s.period_start)) else { continue };
                let spent = rows.get(&(s.owner_id.as_str(), s.period_start)).copied().unwrap_or(0);
                let limit = remaining(s.spec.limit, 0, adjust);
                for threshold in QuotaThreshold::crossed(limit, used.saturating_sub(spent), used) {
                    let account_id: Option<String> = if s.owner_id.starts_with("acc_") {
                        Some(s.owner_id.clone())
                    } else {
                        sqlx::query_scalar("SELECT account_id FROM api_keys WHERE id = $1")
                            .bind(&s.owner_id)
                            .fetch_optional(&mut *tx)
                            .await?
                    };
                    let Some(account_id) = account_id else { continue };
                    let key_id = (!s.owner_id.starts_with("acc_")).then(|| s.owner_id.clone());
                    let crossing = QuotaThreshold {
                        account_id,
                        key_id,
                        period: s.spec.period,
                        period_start: s.period_start,
                        limit,
                        used,
                        threshold,
                    };
                    emit_quota_threshold!(tx, &crossing, now);
                }
                let free = remaining(s.spec.limit, used, adjust)
                    .saturating_sub(others.get(&s.owner_id).copied().unwrap_or(0));
                granted.insert(s.owner_id.as_str(), s.want.min(free));
            }

            // This replica's leases: the old ones of these owners go (an
            // earlier period's with them), the new ones are written.
            if leases {
                let mut qb = sqlx::QueryBuilder::new("DELETE FROM quota_leases WHERE replica_id = ");
                qb.push_bind(replica_id).push(" AND owner_id IN (");
                let mut ids = qb.separated(", ");
                for owner in current.keys() {
                    ids.push_bind(*owner);
                }
                qb.push(")");
                qb.build().execute(&mut *tx).await?;
                let held: Vec<(&QuotaSync, u64)> = current
                    .values()
                    .filter_map(|s| Some((*s, *granted.get(s.owner_id.as_str()).filter(|g| **g > 0)?)))
                    .collect();
                if !held.is_empty() {
                    let mut qb = sqlx::QueryBuilder::new(
                        "INSERT INTO quota_leases (owner_id, period_start, replica_id, held, seen_at) ",
                    );
                    qb.push_values(&held, |mut row, (s, held)| {
                        row.push_bind(s.owner_id.as_str())
                            .push_bind(s.period_start)
                            .push_bind(replica_id)
                            .push_bind(to_i64(*held))
                            .push_bind(now);
                    });
                    qb.push(
                        " ON CONFLICT (owner_id, period_start, replica_id) \
                         DO UPDATE SET held = excluded.held, seen_at = excluded.seen_at",
                    );
                    qb.build().execute(&mut *tx).await?;
                }
            }
            tx.commit().await?;
        });
        Ok(syncs
            .iter()
            .map(|s| {
                let (used, adjust) = ledger.get(&(s.owner_id.clone(), s.period_start)).copied().unwrap_or((0, 0));
                let latest = current.get(s.owner_id.as_str()).is_some_and(|c| c.period_start == s.period_start);
                QuotaLedger {
                    used,
                    adjust,
                    others_held: if latest { others.get(&s.owner_id).copied().unwrap_or(0) } else { 0 },
                    granted: if latest { granted.get(s.owner_id.as_str()).copied().unwrap_or(0) } else { 0 },
                }
            })
            .collect())
    }

    /// Keeps this replica's leases alive (one statement, however many it
    /// holds) and removes the leases of replicas that went away.
    pub async fn renew_quota_leases(&self, replica_id: &str) -> Result<()> {
        let now = now_ms();
        on_pool!(self, pool => {
            sqlx::query("UPDATE quota_leases SET seen_at = $1 WHERE replica_id = $2")
                .bind(now)
                .bind(replica_id)
                .execute(pool)
                .await?;
            sqlx::query("DELETE FROM quota_leases WHERE seen_at < $1").bind(now - LEASE_TTL_MS).execute(pool).await?;
        });
        Ok(())
    }

    /// Gives back every unit this replica holds ahead (at shutdown).
    pub async fn release_quota_leases(&self, replica_id: &str) -> Result<()> {
        on_pool!(self, pool => {
            sqlx::query("DELETE FROM quota_leases WHERE replica_id = $1").bind(replica_id).execute(pool).await?;
        });
        Ok(())
    }

    /// Changes the current period of a key's quota, audited as `key.quota`,
    /// and re-arms its `quota.threshold` events for the period.
    /// `Conflict` when the key has no quota or is revoked.
    pub async fn adjust_key_quota(&self, id: &str, op: QuotaOp, audit: &AuditContext) -> Result<KeyRecord> {
        let key = self.get_key(id).await?;
        if key.revoked_at.is_some() {
            return Err(StoreError::Conflict("the key is revoked".into()));
        }
        let Some(spec) = key.quota else {
            return Err(StoreError::Conflict("the key has no quota to adjust".into()));
        };
        let now = now_ms();
        let period_start = spec.period.window(now).start_ms;
        on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let rev = bump_revision!(tx);
            // The key's revision moves so every replica's reloader re-reads
            // it and its quota book resyncs this owner.
            sqlx::query("UPDATE api_keys SET revision = $1 WHERE id = $2").bind(rev).bind(id).execute(&mut *tx).await?;
            let (used, adjust): (i64, i64) = sqlx::query_as(
                "INSERT INTO quota_ledger (owner_id, period_start, used, adjust, updated_at) VALUES ($1, $2, 0, 0, $3) \
                 ON CONFLICT (owner_id, period_start) DO UPDATE SET updated_at = excluded.updated_at \
                 RETURNING used, adjust",
            )
            .bind(id)
            .bind(period_start)
            .bind(now)
            .fetch_one(&mut *tx)
            .await?;
            let used = to_u64(used);
            let before = remaining(spec.limit, used, adjust);
            // remaining = limit + adjust - used, so each operation is a new
            // `adjust`; `used` stays what was spent, except on reset.
            let limit = i128::from(spec.limit);
            let (new_used, new_adjust) = match op {
                QuotaOp::Set(n) => (used, i128::from(n) + i128::from(used) - limit),
                QuotaOp::Increment(n) => {
                    (used, i128::from(before) + i128::from(n) + i128::from(used) - limit)
                }
                QuotaOp::Decrement(n) => {
                    (used, i128::from(before.saturating_sub(n)) + i128::from(used) - limit)
                }
                QuotaOp::Reset => (0, 0),
            };
            let bound = i128::from(MAX_QUOTA) * 2;
            let new_adjust = i64::try_from(new_adjust.clamp(-bound, bound)).unwrap_or(0);
            sqlx::query("UPDATE quota_ledger SET used = $1, adjust = $2, updated_at = $3 WHERE owner_id = $4 AND period_start = $5")
                .bind(to_i64(new_used))
                .bind(new_adjust)
                .bind(now)
                .bind(id)
                .bind(period_start)
                .execute(&mut *tx)
                .await?;
            let (operation, amount) = match op {
                QuotaOp::Set(n) => ("set", Some(n)),
                QuotaOp::Increment(n) => ("increment", Some(n)),
                QuotaOp::Decrement(n) => ("decrement", Some(n)),
                QuotaOp::Reset => ("reset", None),
            };
            let changes = json!({
                "operation": operation, "amount": amount,
                "remaining": { "from": before, "to": remaining(spec.limit, new_used, new_adjust) },
                "used": { "from": used, "to": new_used },
            });
            record_audit!(tx, audit, now, "key.quota", Some(id), Some(&key.account_id), changes);
            // What is left changed: the period's `quota.threshold` marks
            // go, so 80 % and 100 % are reported again when crossed again.
            sqlx::query("DELETE FROM webhook_quota_marks WHERE scope = $1 AND period_start = $2")
                .bind(super::webhooks::key_scope(id))
                .bind(period_start)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
        });
        self.get_key(id).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remaining_is_the_limit_plus_adjustments_minus_use_never_negative() {
        assert_eq!(remaining(10, 3, 0), 7);
        assert_eq!(remaining(10, 10, 5), 5);
        assert_eq!(remaining(10, 12, 0), 0);
        assert_eq!(remaining(10, 0, -20), 0);
        assert_eq!(remaining(u64::MAX, 0, i64::MAX), u64::MAX);
    }
}
