//! The store's readers against a real SQLite file: the full load at
//! start-up (SQLite packs it into JSON pages) must read exactly what the
//! row-by-row change reader reads, for every kind of key and across pages;
//! usage written in batches must add up exactly.

mod kit;

use http::{Method, StatusCode};
use keygate::config::StoreConfig;
use keygate::keys::Changes;
use keygate::store::UsageDelta;
use kit::Admin;
use kit::AdminCalls;
use serde_json::json;
use sqlx::sqlite::{SqlitePool, SqlitePoolOptions};

/// Adds `n` keys `key_bulk0000000000000001`… straight into the SQLite file,
/// copies of its first key with random hashes; returns a pool on the file.
async fn bulk_keys(admin: &Admin, n: u32) -> SqlitePool {
    let url = format!("sqlite://{}", admin.dir.path().join("keygate.db").display());
    let pool = SqlitePoolOptions::new().max_connections(1).connect(&url).await.expect("sqlite");
    sqlx::query(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $1) \
         INSERT INTO api_keys (id, account_id, name, permission, enabled, environment, prefix, preview, secret_hash, \
         created_at, updated_at, revision) \
         SELECT printf('key_bulk%016d', i), account_id, name, permission, enabled, environment, prefix, preview, \
         randomblob(32), created_at, updated_at, revision FROM n, (SELECT * FROM api_keys LIMIT 1)",
    )
    .bind(n)
    .execute(&pool)
    .await
    .expect("bulk insert");
    pool
}

/// Every key and retired secret as comparable text, in a stable order.
fn listing(changes: &Changes) -> (i64, Vec<String>, Vec<String>) {
    let mut keys: Vec<String> =
        changes.keys.iter().map(|row| format!("{:?} {:?}", row.hash.as_bytes(), row.policy)).collect();
    keys.sort();
    let mut retired: Vec<String> = changes
        .retired
        .iter()
        .map(|row| format!("{:?} {} {}", row.hash.as_bytes(), row.key_id, row.valid_until))
        .collect();
    retired.sort();
    (changes.revision, keys, retired)
}

#[tokio::test]
async fn sqlite_full_load_reads_what_the_change_reader_reads() {
    let admin = Admin::new().await;
    let open = admin.account("Open").await;
    let closed = admin.account("Closed").await;
    let (_, closed_key) = admin.create_key(json!({ "account_id": closed, "name": "c", "permission": "read" })).await;
    let bodies = [
        json!({ "account_id": open, "name": "plain", "permission": "read" }),
        json!({ "account_id": open, "name": "w", "permission": "write", "expires_at": "2999-01-01T00:00:00Z" }),
        json!({ "account_id": open, "name": "quota", "permission": "read", "rate_limit": { "requests": 5, "per_seconds": 60 } }),
        json!({ "account_id": open, "name": "ips", "permission": "read", "allowed_ips": ["10.0.0.0/8", "::1/128"] }),
        json!({ "account_id": open, "name": "routes", "permission": "write",
                "allowed_routes": [{ "path_prefix": "/v1/a\"b", "methods": ["GET", "POST"] }] }),
    ];
    let mut ids = Vec::new();
    for body in bodies {
        let (key, _) = admin.create_key(body).await;
        ids.push(key["id"].as_str().expect("id").to_owned());
    }
    let (s, _) = admin.call(Method::PATCH, &format!("/v1/keys/{}", ids[0]), Some(json!({ "enabled": false }))).await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = admin.call(Method::POST, &format!("/v1/keys/{}/revoke", ids[1]), None).await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = admin
        .call(Method::POST, &format!("/v1/keys/{}/rotate", ids[2]), Some(json!({ "grace_period_seconds": 600 })))
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) =
        admin.call(Method::PATCH, &format!("/v1/accounts/{closed}"), Some(json!({ "api_access": false }))).await;
    assert_eq!(s, StatusCode::OK);

    // More keys than one page holds, written straight into the file.
    bulk_keys(&admin, 5000).await.close().await;

    let store = admin.reloader.store();
    let full = store.changes_since(0).await.expect("full load");
    // Below every revision: the row-by-row reader, over everything.
    let rows = store.changes_since(-1).await.expect("change reader");
    assert_eq!(full.keys.len(), 5000 + 6);
    assert_eq!(full.retired.len(), 1, "the rotated key's old secret");
    assert_eq!(listing(&full), listing(&rows));

    let closed_policy = full.keys.iter().find(|row| row.policy.account_id.as_str() == closed).expect("closed key");
    assert!(!closed_policy.policy.api_access, "{closed_key:?}: the account's api_access is looked up");
    let routes = full.keys.iter().find(|row| row.policy.id.as_str() == ids[4]).expect("routes key");
    assert!(routes.policy.restrictions().is_some());
}

/// A flush's worth of usage in one call: deltas for the same key add up
/// (also across statement batches), and every key's hourly rows land.
#[tokio::test]
async fn usage_deltas_add_up_across_batches_and_repeats() {
    let admin = Admin::new().await;
    let acc = admin.account("A").await;
    let (_, _) = admin.create_key(json!({ "account_id": acc, "name": "template", "permission": "read" })).await;
    let pool = bulk_keys(&admin, 1200).await;
    let store = admin.reloader.store();
    let hour = 3_600_000 * 490_000;
    let delta = |id: String, requests: i64, last: i64| UsageDelta {
        key_id: id,
        requests,
        last_used_ms: last,
        hour,
        outcomes: vec![("allowed", requests), ("invalid_key", 1)],
    };
    let mut deltas: Vec<UsageDelta> = (1..=1200).map(|i| delta(format!("key_bulk{i:016}"), 2, hour + i)).collect();
    // The first key twice more, in a later batch, with an older use.
    deltas.push(delta(format!("key_bulk{:016}", 1), 5, hour - 10));
    deltas.push(delta(format!("key_bulk{:016}", 1), 1, hour + 5000));
    store.add_usage(&deltas).await.expect("add usage");
    store.add_usage(&deltas[..1]).await.expect("add usage again");

    let counts: Vec<(String, i64, Option<i64>)> =
        sqlx::query_as("SELECT id, usage_count, last_used_at FROM api_keys WHERE id LIKE 'key_bulk%' ORDER BY id")
            .fetch_all(&pool)
            .await
            .expect("counts");
    assert_eq!(counts.len(), 1200);
    assert_eq!(counts[0], (format!("key_bulk{:016}", 1), 2 + 5 + 1 + 2, Some(hour + 5000)));
    assert_eq!(counts[1199], (format!("key_bulk{:016}", 1200), 2, Some(hour + 1200)));
    assert!(counts.iter().all(|(_, n, _)| *n >= 2));
    let rows = store.usage_since(&format!("key_bulk{:016}", 1), 0).await.expect("hourly");
    assert_eq!(rows, vec![(hour, "allowed".to_owned(), 10), (hour, "invalid_key".to_owned(), 4)]);
    let rows = store.usage_since(&format!("key_bulk{:016}", 1200), 0).await.expect("hourly");
    assert_eq!(rows, vec![(hour, "allowed".to_owned(), 2), (hour, "invalid_key".to_owned(), 1)]);
}

/// SQLite worker threads of this process on `SCHED_IDLE` (policy 5, the
/// 41st field of a task's stat, counted after the parenthesised name).
fn idle_sqlite_workers() -> usize {
    let tasks = std::fs::read_dir("/proc/self/task").expect("tasks");
    tasks
        .flatten()
        .filter(|t| std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.starts_with("sqlx-sqlite-wor")))
        .filter(|t| {
            let stat = std::fs::read_to_string(t.path().join("stat")).unwrap_or_default();
            let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
            after_name.split_whitespace().nth(38) == Some("5")
        })
        .count()
}

/// The usage flush writes through a connection of its own whose thread is
/// `SCHED_IDLE`, so its SQL never holds a core a request is waiting for;
/// what it writes, the store reads. An in-memory database has no second
/// handle: the flush shares the store's.
#[tokio::test]
async fn the_flush_writes_through_an_idle_connection_of_its_own() {
    let admin = Admin::new().await;
    let acc = admin.account("A").await;
    let (key, _) = admin.create_key(json!({ "account_id": acc, "name": "flushed", "permission": "read" })).await;
    let id = key["id"].as_str().expect("id").to_owned();
    let url = format!("sqlite://{}", admin.dir.path().join("keygate.db").display());
    let store = admin.reloader.store();
    assert_eq!(idle_sqlite_workers(), 0);
    let flush = store.for_background_writes(&StoreConfig { url, ..StoreConfig::default() }).await;
    assert_eq!(idle_sqlite_workers(), 1, "the flush's connection runs on an idle thread");
    let hour = 3_600_000 * 490_000;
    let delta =
        UsageDelta { key_id: id.clone(), requests: 3, last_used_ms: hour + 1, hour, outcomes: vec![("allowed", 3)] };
    flush.add_usage(&[delta]).await.expect("add usage");
    assert_eq!(store.usage_since(&id, 0).await.expect("hourly"), vec![(hour, "allowed".to_owned(), 3)]);
    assert_eq!(idle_sqlite_workers(), 1, "written through the idle connection, no other opened");

    let memory = StoreConfig { url: "sqlite::memory:".into(), ..StoreConfig::default() };
    let in_memory = keygate::store::Store::connect(&memory).await.expect("in-memory store");
    in_memory.for_background_writes(&memory).await;
    assert_eq!(idle_sqlite_workers(), 1, "no idle handle on an in-memory database");
}
