//! The store: accounts, plans, keys and the revision counter, in SQLite (the
//! embedded default) or PostgreSQL, through sqlx.
//!
//! Both backends run the same SQL (`$1` placeholders work in both); the
//! `on_pool!` macro expands each query once per backend so each runs with its
//! native driver. Every write runs in one transaction that first bumps the
//! revision counter — that takes the write lock up front in SQLite and
//! serialises writers on the counter row in PostgreSQL, so revisions commit
//! in order and a reader never skips one. This module takes key hashes,
//! never secrets.

mod accounts;
pub mod audit;
mod changes;
mod deliveries;
mod identity;
mod import;
mod keys;
pub use import::{ImportOutcome, ImportedSecret, NewImport, Rehash};
pub use keys::Leak;
pub mod model;
mod plans;
mod quotas;
mod tokens;
mod usage;
pub mod webhooks;

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};
use sqlx::ConnectOptions;

pub use audit::{AuditContext, AuditEntry, AuditFilter};
pub use deliveries::{Attempt, Claimed, Outcome};
pub use identity::StoredSigningKey;
pub use model::*;
pub use quotas::{remaining as quota_remaining, usage as quota_usage, QuotaLedger, QuotaSync, LEASE_TTL_MS};
pub use tokens::AdminToken;
pub use usage::{UsageDelta, UsageRows};
pub use webhooks::{Event, EventType, NewWebhook, QuotaThreshold, Webhook, QUOTA_THRESHOLDS};

use crate::config::{redact, StoreConfig};

/// Runs `$body` with `$pool` bound to the native pool of whichever backend
/// the store uses. The body is compiled once per backend.
macro_rules! on_pool {
    ($store:expr, $pool:ident => $body:expr) => {
        match &$store.pool {
            $crate::store::Pool::Sqlite($pool) => $body,
            $crate::store::Pool::Postgres($pool) => $body,
        }
    };
}
pub(crate) use on_pool;

/// Bumps the revision counter inside a write transaction and returns the new
/// revision. Must be the first statement of every write.
macro_rules! bump_revision {
    ($tx:expr) => {
        sqlx::query_scalar::<_, i64>("UPDATE revision SET value = value + 1 WHERE id = 1 RETURNING value")
            .fetch_one(&mut *$tx)
            .await?
    };
}
pub(crate) use bump_revision;

#[derive(Debug, Clone)]
pub(crate) enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    #[error("conflict: {0}")]
    Conflict(String),
    /// The store cannot be reached (connection refused, pool timed out, …).
    #[error("store unavailable: {0}")]
    Unavailable(sqlx::Error),
    #[error("store error: {0}")]
    Other(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::RowNotFound => StoreError::NotFound,
            sqlx::Error::Io(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed
            | sqlx::Error::Tls(_) => StoreError::Unavailable(e),
            sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict(db.message().to_owned()),
            sqlx::Error::Database(db) if db.is_foreign_key_violation() => StoreError::NotFound,
            // PostgreSQL: admin shutdown / cannot connect now / connection failure classes.
            sqlx::Error::Database(db) if db.code().is_some_and(|c| c.starts_with("57P") || c.starts_with("08")) => {
                StoreError::Unavailable(e)
            }
            _ => StoreError::Other(e.to_string()),
        }
    }
}

/// Statements slower than this are logged. The full load of a large key set
/// at start-up legitimately takes a second or more: don't warn about it.
const SLOW_STATEMENT: Duration = Duration::from_secs(10);

/// Opens `pool`'s connection and waits until it is back in the pool: a
/// connection is handed back by a task on the runtime that dropped it, and
/// this runtime ends when the opening thread does.
async fn open_idle(pool: &SqlitePool) -> bool {
    if pool.acquire().await.is_err() {
        return false;
    }
    for _ in 0..1_000 {
        if pool.num_idle() > 0 {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    false
}

/// The connection options of a SQLite store at `url`.
fn sqlite_options(url: &str) -> anyhow::Result<SqliteConnectOptions> {
    Ok(SqliteConnectOptions::from_str(url)
        .map_err(|e| anyhow::anyhow!("store.url: {e}"))?
        .log_slow_statements(log::LevelFilter::Warn, SLOW_STATEMENT)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(Duration::from_secs(5))
        // A multi-row statement inside a transaction (the usage flush's,
        // the quota sync's) keeps a statement journal, and one past 64 KiB
        // spilled to a temporary file: opened, written page by page and
        // deleted, several times a second on the proxy's core. In memory
        // it is a copy.
        .pragma("temp_store", "memory")
        .foreign_keys(true))
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

#[derive(Debug, Clone)]
pub struct Store {
    pub(crate) pool: Pool,
}

impl Store {
    /// Connects and runs the migrations. An unreachable store is an error
    /// here, before anything listens.
    pub async fn connect(config: &StoreConfig) -> anyhow::Result<Store> {
        let timeout = Duration::from_millis(config.connect_timeout_ms);
        let pool = if config.url.starts_with("sqlite:") {
            let options = sqlite_options(&config.url)?;
            let pool = SqlitePoolOptions::new()
                .max_connections(config.max_connections)
                .acquire_timeout(timeout)
                .connect_with(options)
                .await
                .map_err(|e| anyhow::anyhow!("cannot open the store at {}: {e}", redact(&config.url)))?;
            sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
            Pool::Sqlite(pool)
        } else {
            let options = PgConnectOptions::from_str(&config.url)
                .map_err(|e| anyhow::anyhow!("store.url: {e}"))?
                .log_slow_statements(log::LevelFilter::Warn, SLOW_STATEMENT);
            let pool = PgPoolOptions::new()
                .max_connections(config.max_connections)
                .acquire_timeout(timeout)
                .connect_with(options)
                .await
                .map_err(|e| anyhow::anyhow!("cannot connect to the store at {}: {e}", redact(&config.url)))?;
            // The migrator takes an advisory lock, so replicas starting at
            // once run each migration exactly once.
            sqlx::migrate!("./migrations/postgres").run(&pool).await?;
            Pool::Postgres(pool)
        };
        Ok(Store { pool })
    }

    /// The store for the usage flush's writes and the quota book's flushes
    /// of ordinary spending. On a SQLite file: a second
    /// handle whose one connection's thread is `SCHED_IDLE`
    /// (`priority::idle_current_thread`), so the flush's SQL never holds
    /// the core a request needs (with nice 10 alone, a request arriving
    /// during a flush waited up to ~2 ms). Elsewhere (PostgreSQL, an
    /// in-memory database), or when the thread cannot be made idle, the
    /// store itself. If that connection is ever lost, the pool opens the
    /// next one from an ordinary background thread.
    pub async fn for_background_writes(&self, config: &StoreConfig) -> Store {
        if !matches!(self.pool, Pool::Sqlite(_))
            || config.url.contains(":memory:")
            || config.url.contains("mode=memory")
        {
            return self.clone();
        }
        let Ok(options) = sqlite_options(&config.url) else { return self.clone() };
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .acquire_timeout(Duration::from_millis(config.connect_timeout_ms))
            .connect_lazy_with(options);
        // The connection's worker thread inherits the policy of the thread
        // that opens it: open it from a thread of its own made idle.
        let opener = pool.clone();
        let (done, opened) = tokio::sync::oneshot::channel();
        let spawned = std::thread::Builder::new().name("keygate-idle-open".into()).spawn(move || {
            let ok = crate::priority::idle_current_thread()
                && tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .is_ok_and(|rt| rt.block_on(open_idle(&opener)));
            let _ = done.send(ok);
        });
        if spawned.is_ok() && opened.await == Ok(true) {
            Store { pool: Pool::Sqlite(pool) }
        } else {
            tracing::debug!("usage flush shares the store's connections: no idle connection of its own");
            self.clone()
        }
    }

    pub fn backend(&self) -> Backend {
        match self.pool {
            Pool::Sqlite(_) => Backend::Sqlite,
            Pool::Postgres(_) => Backend::Postgres,
        }
    }

    /// The PostgreSQL pool, for LISTEN/NOTIFY; `None` on SQLite.
    pub fn postgres_pool(&self) -> Option<&PgPool> {
        match &self.pool {
            Pool::Postgres(p) => Some(p),
            Pool::Sqlite(_) => None,
        }
    }

    /// The latest committed revision.
    pub async fn revision(&self) -> Result<i64> {
        let rev = on_pool!(self, pool => {
            sqlx::query_scalar::<_, i64>("SELECT value FROM revision WHERE id = 1").fetch_one(pool).await?
        });
        Ok(rev)
    }

    /// Whether the store answers a trivial query.
    pub async fn ping(&self) -> bool {
        self.revision().await.is_ok()
    }

    pub async fn close(&self) {
        on_pool!(self, pool => pool.close().await)
    }
}

/// Escapes `%`, `_` and `\` for a `LIKE … ESCAPE '\'` pattern.
pub(crate) fn like_pattern(q: &str) -> String {
    let mut out = String::with_capacity(q.len() + 2);
    out.push('%');
    for c in q.to_lowercase().chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('%');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_pattern_escapes() {
        assert_eq!(like_pattern("A_b%"), "%a\\_b\\%%");
    }
}
