//! Webhooks and the outbox's writing side: the subscriptions, the event
//! types, and the events written in the same transaction as the change they
//! report ([`emit_event!`]), with one delivery per subscribed webhook — also
//! for `key.expiring` (a scan with a durable mark on each key) and
//! `quota.threshold` (called by the quota ledger, marked once per period).
//! Claiming and logging deliveries is `deliveries.rs`; the HTTP is
//! `crate::webhooks`'s.
//!
//! A webhook's secret is the HMAC key of its signatures, so it is stored as
//! it is (unlike API keys and admin tokens, kept as hashes): it is read only
//! by the worker, never returned by a read of a webhook. Event payloads hold
//! ids, names and times, never a secret.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::audit::{record_audit, AuditContext};
use super::{on_pool, Cursor, KeyRecord, Page, Result, Store, StoreError};
use crate::clock::rfc3339;
use crate::keys::Period;

/// The events a webhook can subscribe to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
pub enum EventType {
    #[serde(rename = "key.created")]
    KeyCreated,
    #[serde(rename = "key.rotated")]
    KeyRotated,
    #[serde(rename = "key.revoked")]
    KeyRevoked,
    #[serde(rename = "key.leaked")]
    KeyLeaked,
    #[serde(rename = "key.expiring")]
    KeyExpiring,
    #[serde(rename = "quota.threshold")]
    QuotaThreshold,
}

impl EventType {
    pub const ALL: [EventType; 6] = [
        EventType::KeyCreated,
        EventType::KeyRotated,
        EventType::KeyRevoked,
        EventType::KeyLeaked,
        EventType::KeyExpiring,
        EventType::QuotaThreshold,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::KeyCreated => "key.created",
            EventType::KeyRotated => "key.rotated",
            EventType::KeyRevoked => "key.revoked",
            EventType::KeyLeaked => "key.leaked",
            EventType::KeyExpiring => "key.expiring",
            EventType::QuotaThreshold => "quota.threshold",
        }
    }

    pub fn parse(s: &str) -> Option<EventType> {
        EventType::ALL.into_iter().find(|e| e.as_str() == s)
    }

    /// The `LIKE` pattern that finds this type in a webhook's `events`
    /// column (a JSON array of names; no name holds `%` or `_`).
    pub(crate) fn like(self) -> String {
        format!("%\"{}\"%", self.as_str())
    }
}

/// One event for the outbox.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// `evt_…`, sortable by time.
    pub id: String,
    pub kind: EventType,
    /// Webhooks of this account, and those of every account, get it.
    pub account_id: Option<String>,
    pub created_at: i64,
    pub data: Value,
}

impl Event {
    pub fn new(kind: EventType, account_id: Option<&str>, at: i64, data: Value) -> Event {
        Event {
            id: crate::keys::format::sortable_id("evt", at),
            kind,
            account_id: account_id.map(str::to_owned),
            created_at: at,
            data,
        }
    }

    /// A key event: `{ "key": {…}, …extra }`. The key's fields are ids,
    /// names and times: no secret and no preview of one.
    pub fn key(kind: EventType, key: &KeyRecord, at: i64, extra: Value) -> Event {
        let mut data = json!({
            "key": {
                "id": key.id,
                "account_id": key.account_id,
                "name": key.name,
                "permission": key.permission,
                "environment": key.environment,
                "enabled": key.enabled,
                "created_at": rfc3339(key.created_at),
                "expires_at": key.expires_at.map(rfc3339),
                "rotated_at": key.rotated_at.map(rfc3339),
                "revoked_at": key.revoked_at.map(rfc3339),
            }
        });
        if let (Some(out), Value::Object(extra)) = (data.as_object_mut(), extra) {
            out.extend(extra);
        }
        Event::new(kind, Some(&key.account_id), at, data)
    }
}

/// Writes `$event` (an [`Event`]) to the outbox inside the caller's
/// transaction: the event and one delivery per webhook subscribed to its
/// type (the event's account's, or every account's); nothing when no
/// webhook is. The deliveries only reference an event this transaction
/// sees, so a webhook committed between the two statements cannot leave a
/// dangling delivery.
macro_rules! emit_event {
    ($tx:expr, $event:expr) => {{
        let event: &$crate::store::Event = &$event;
        let pattern = event.kind.like();
        sqlx::query(
            "INSERT INTO webhook_events (id, type, account_id, created_at, data) SELECT $1, $2, $3, $4, $5 \
             WHERE EXISTS (SELECT 1 FROM webhooks WHERE (account_id IS NULL OR account_id = $3) AND events LIKE $6)",
        )
        .bind(&event.id)
        .bind(event.kind.as_str())
        .bind(&event.account_id)
        .bind(event.created_at)
        .bind(event.data.to_string())
        .bind(&pattern)
        .execute(&mut *$tx)
        .await?;
        sqlx::query(
            "INSERT INTO webhook_deliveries (webhook_id, event_id, next_attempt_at, created_at) \
             SELECT id, $1, $2, $2 FROM webhooks WHERE (account_id IS NULL OR account_id = $3) AND events LIKE $4 \
             AND EXISTS (SELECT 1 FROM webhook_events WHERE id = $1)",
        )
        .bind(&event.id)
        .bind(event.created_at)
        .bind(&event.account_id)
        .bind(&pattern)
        .execute(&mut *$tx)
        .await?;
    }};
}
pub(crate) use emit_event;

/// In a transaction of either store: marks `$crossing` (a
/// [`QuotaThreshold`]) as sent for its scope, period and threshold and, the
/// first time only, writes its `quota.threshold` event and forgets the
/// scope's marks of earlier periods (they ended when this one began).
/// Evaluates to whether it was the first time.
macro_rules! emit_quota_threshold {
    ($tx:expr, $crossing:expr, $now:expr) => {{
        let crossing: &$crate::store::QuotaThreshold = $crossing;
        let marked = sqlx::query(
            "INSERT INTO webhook_quota_marks (scope, period_start, threshold, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT DO NOTHING",
        )
        .bind(crossing.scope())
        .bind(crossing.period_start)
        .bind(i64::from(crossing.threshold))
        .bind($now)
        .execute(&mut *$tx)
        .await?
        .rows_affected()
            == 1;
        if marked {
            $crate::store::webhooks::emit_event!($tx, crossing.event($now));
            sqlx::query("DELETE FROM webhook_quota_marks WHERE scope = $1 AND period_start < $2")
                .bind(crossing.scope())
                .bind(crossing.period_start)
                .execute(&mut *$tx)
                .await?;
        }
        marked
    }};
}
pub(crate) use emit_quota_threshold;

/// Whether any webhook (of any account) takes events of type `$kind`,
/// asked inside the caller's transaction: writes skip building events no
/// one receives.
macro_rules! subscribed {
    ($tx:expr, $kind:expr) => {{
        let kind: $crate::store::EventType = $kind;
        sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM (SELECT 1 FROM webhooks WHERE events LIKE $1 LIMIT 1) s")
            .bind(kind.like())
            .fetch_one(&mut *$tx)
            .await?
            > 0
    }};
}
pub(crate) use subscribed;

/// A webhook as the API shows it: its secret is not part of it.
#[derive(Debug, Clone, PartialEq)]
pub struct Webhook {
    pub id: String,
    pub url: String,
    pub events: Vec<EventType>,
    pub account_id: Option<String>,
    pub created_at: i64,
}

/// A validated new webhook.
#[derive(Debug, Clone)]
pub struct NewWebhook {
    pub url: String,
    pub events: Vec<EventType>,
    pub account_id: Option<String>,
    /// The whole `whsec_…` string: the HMAC key.
    pub secret: String,
}

#[derive(sqlx::FromRow)]
struct WebhookRow {
    id: String,
    url: String,
    events: String,
    account_id: Option<String>,
    created_at: i64,
}

impl TryFrom<WebhookRow> for Webhook {
    type Error = StoreError;

    fn try_from(r: WebhookRow) -> Result<Webhook> {
        let events = serde_json::from_str(&r.events)
            .map_err(|_| StoreError::Other(format!("webhook {} has invalid events in the store", r.id)))?;
        Ok(Webhook { id: r.id, url: r.url, events, account_id: r.account_id, created_at: r.created_at })
    }
}

const WEBHOOK_COLUMNS: &str = "id, url, events, account_id, created_at";

/// A quota crossing one of its thresholds (80 or 100 % of the limit), for
/// [`Store::emit_quota_threshold`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaThreshold {
    pub account_id: String,
    /// The key whose own quota it is; `None` for the account's pooled quota
    /// (its plan's).
    pub key_id: Option<String>,
    pub period: Period,
    /// Start of the period the usage counts in (unix ms).
    pub period_start: i64,
    pub limit: u64,
    pub used: u64,
    /// 80 or 100.
    pub threshold: u8,
}

/// The thresholds `quota.threshold` reports, in percent of the limit.
pub const QUOTA_THRESHOLDS: [u8; 2] = [80, 100];

/// The scope of a key's own quota in `webhook_quota_marks`.
pub(crate) fn key_scope(key_id: &str) -> String {
    format!("key:{key_id}")
}

impl QuotaThreshold {
    /// The thresholds a count moving from `before` to `after` (of `limit`)
    /// has crossed: what the quota ledger reports after adding usage.
    pub fn crossed(limit: u64, before: u64, after: u64) -> Vec<u8> {
        QUOTA_THRESHOLDS
            .into_iter()
            .filter(|t| {
                // ceil(limit × t / 100) units reach the threshold.
                let at = (u128::from(limit) * u128::from(*t)).div_ceil(100);
                u128::from(before) < at && u128::from(after) >= at
            })
            .collect()
    }

    /// The mark that makes it once per period: one per scope, period and
    /// threshold.
    pub(crate) fn scope(&self) -> String {
        match &self.key_id {
            Some(key) => key_scope(key),
            None => format!("account:{}", self.account_id),
        }
    }

    pub(crate) fn event(&self, at: i64) -> Event {
        let data = json!({
            "scope": if self.key_id.is_some() { "key" } else { "account" },
            "account_id": self.account_id,
            "key_id": self.key_id,
            "period": self.period,
            "period_start": rfc3339(self.period_start),
            "limit": self.limit,
            "used": self.used,
            "threshold": self.threshold,
        });
        Event::new(EventType::QuotaThreshold, Some(&self.account_id), at, data)
    }
}

impl Store {
    /// Creates a webhook; `NotFound` when its account does not exist.
    pub async fn create_webhook(&self, new: &NewWebhook, audit: &AuditContext) -> Result<Webhook> {
        let now = crate::clock::now_ms();
        let hook = Webhook {
            id: crate::keys::format::new_id("wh"),
            url: new.url.clone(),
            events: new.events.clone(),
            account_id: new.account_id.clone(),
            created_at: now,
        };
        let events = serde_json::to_string(&hook.events).map_err(|e| StoreError::Other(e.to_string()))?;
        on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            // The insert comes first, so SQLite takes its write lock before
            // any read; the foreign key finds a missing account.
            sqlx::query(
                "INSERT INTO webhooks (id, url, events, account_id, secret, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(&hook.id)
            .bind(&hook.url)
            .bind(&events)
            .bind(&hook.account_id)
            .bind(&new.secret)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            let changes = json!({ "url": hook.url, "events": hook.events, "account_id": hook.account_id });
            record_audit!(tx, audit, now, "webhook.create", Some(&hook.id), hook.account_id.as_deref(), changes);
            tx.commit().await?;
        });
        Ok(hook)
    }

    pub async fn get_webhook(&self, id: &str) -> Result<Webhook> {
        let sql = format!("SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE id = $1");
        let row: Option<WebhookRow> = on_pool!(self, pool => {
            sqlx::query_as(&sql).bind(id).fetch_optional(pool).await?
        });
        row.ok_or(StoreError::NotFound)?.try_into()
    }

    /// Newest first.
    pub async fn list_webhooks(&self, limit: u32, cursor: Option<&Cursor>) -> Result<Page<Webhook>> {
        let (at, id) = cursor.map(|c| (c.created_at, c.id.as_str())).unwrap_or((i64::MAX, ""));
        let sql = format!(
            "SELECT {WEBHOOK_COLUMNS} FROM webhooks \
             WHERE (created_at < $1 OR (created_at = $1 AND id < $2) OR $2 = '') \
             ORDER BY created_at DESC, id DESC LIMIT $3"
        );
        let rows: Vec<WebhookRow> = on_pool!(self, pool => {
            sqlx::query_as(&sql).bind(at).bind(id).bind(i64::from(limit) + 1).fetch_all(pool).await?
        });
        let items = rows.into_iter().map(Webhook::try_from).collect::<Result<Vec<_>>>()?;
        Ok(page(items, limit, |w| Cursor { created_at: w.created_at, id: w.id.clone() }))
    }

    /// Deletes a webhook, its pending deliveries and its log.
    pub async fn delete_webhook(&self, id: &str, audit: &AuditContext) -> Result<Webhook> {
        let now = crate::clock::now_ms();
        let sql = format!("DELETE FROM webhooks WHERE id = $1 RETURNING {WEBHOOK_COLUMNS}");
        let hook = on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            // The deliveries first, then the webhook: the order the worker
            // locks them in when it records an attempt (the delivery's row,
            // then the webhook's through the attempt's foreign key). The
            // cascade alone took the webhook's row first, and a deletion
            // racing an attempt's outcome deadlocked on PostgreSQL (a 500).
            // An attempt recorded after this finds its delivery gone.
            sqlx::query("DELETE FROM webhook_deliveries WHERE webhook_id = $1").bind(id).execute(&mut *tx).await?;
            let row: Option<WebhookRow> = sqlx::query_as(&sql).bind(id).fetch_optional(&mut *tx).await?;
            let hook = Webhook::try_from(row.ok_or(StoreError::NotFound)?)?;
            let changes = json!({ "url": hook.url, "events": hook.events });
            record_audit!(tx, audit, now, "webhook.delete", Some(id), hook.account_id.as_deref(), changes);
            tx.commit().await?;
            hook
        });
        Ok(hook)
    }

    /// Marks the keys expiring in `(now, now + within]` that have not been
    /// told about for their current expiry, and emits `key.expiring` for
    /// each, in one transaction: the mark and the event commit together, and
    /// replicas scanning at once mark (and report) each key once.
    /// Returns how many keys it reported.
    pub async fn emit_expiring(&self, now: i64, within_ms: i64) -> Result<usize> {
        let sql = format!(
            "UPDATE api_keys SET expiring_sent_for = expires_at WHERE id IN (SELECT id FROM api_keys \
             WHERE revoked_at IS NULL AND expires_at IS NOT NULL AND expires_at > $1 AND expires_at <= $2 \
             AND (expiring_sent_for IS NULL OR expiring_sent_for <> expires_at) LIMIT 500) \
             AND (expiring_sent_for IS NULL OR expiring_sent_for <> expires_at) RETURNING {}",
            super::keys::KEY_COLUMNS
        );
        let n = on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let rows: Vec<super::keys::KeyRow> =
                sqlx::query_as(&sql).bind(now).bind(now + within_ms).fetch_all(&mut *tx).await?;
            let n = rows.len();
            for row in rows {
                let key = KeyRecord::try_from(row)?;
                let extra = json!({ "expires_in_seconds": (key.expires_at.unwrap_or(now) - now) / 1000 });
                emit_event!(tx, Event::key(EventType::KeyExpiring, &key, now, extra));
            }
            tx.commit().await?;
            n
        });
        Ok(n)
    }

    /// Reports a quota crossing a threshold, once per scope, period and
    /// threshold: the mark and the event commit together, so a crossing
    /// reported by two replicas (or twice) is sent once. Returns whether
    /// this call emitted it. The quota ledger calls this when an addition
    /// crosses a threshold (see [`QuotaThreshold::crossed`]).
    pub async fn emit_quota_threshold(&self, crossing: &QuotaThreshold) -> Result<bool> {
        let now = crate::clock::now_ms();
        let emitted = on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let marked = emit_quota_threshold!(tx, crossing, now);
            tx.commit().await?;
            marked
        });
        Ok(emitted)
    }

    /// Forgets the `quota.threshold` marks of periods that ended: those
    /// that started before both the current week and the current month
    /// (every day, week or month that began then is over, whatever the
    /// quota's period), never a `total` quota's (it never ends). A scope
    /// still in use loses its older marks sooner, when its next period
    /// writes one. Housekeeping for the webhook worker; returns how many
    /// marks went.
    pub async fn prune_quota_marks(&self, now: i64) -> Result<u64> {
        let before = Period::Week.window(now).start_ms.min(Period::Month.window(now).start_ms);
        let n = on_pool!(self, pool => {
            sqlx::query("DELETE FROM webhook_quota_marks WHERE period_start > 0 AND period_start < $1")
                .bind(before)
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(n)
    }
}

/// The page of `items` (fetched `limit + 1`) and the cursor after it.
pub(super) fn page<T>(mut items: Vec<T>, limit: u32, cursor: impl Fn(&T) -> Cursor) -> Page<T> {
    let next_cursor = if items.len() > limit as usize {
        items.truncate(limit as usize);
        items.last().map(|i| cursor(i).encode())
    } else {
        None
    };
    Page { items, next_cursor }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_crossed_once_each() {
        assert_eq!(QuotaThreshold::crossed(100, 0, 79), Vec::<u8>::new());
        assert_eq!(QuotaThreshold::crossed(100, 79, 80), vec![80]);
        assert_eq!(QuotaThreshold::crossed(100, 80, 99), Vec::<u8>::new());
        assert_eq!(QuotaThreshold::crossed(100, 50, 150), vec![80, 100]);
        // 80 % of 3 is 2.4: the third unit reaches it, like the 100 %.
        assert_eq!(QuotaThreshold::crossed(3, 2, 3), vec![80, 100]);
    }

    #[test]
    fn event_types_round_trip() {
        for kind in EventType::ALL {
            assert_eq!(EventType::parse(kind.as_str()), Some(kind));
            assert_eq!(serde_json::to_value(kind).ok(), Some(json!(kind.as_str())));
        }
        assert_eq!(EventType::parse("key.create"), None);
    }
}
