//! PostgreSQL store and several replicas (issue 6), against the real server
//! on 127.0.0.1:5432 with a fresh database per test. Outside CI these skip
//! when the server is unreachable; with CI=true they fail instead.

mod kit;

use std::time::{Duration, Instant};

use http::{Method, StatusCode};
use kit::http::{fetch, get_with_key};
use kit::pg::{self, Relay};
use kit::AdminCalls;
use kit::{Gateway, TestGateway};
use serde_json::json;

async fn replica(url: String, poll_ms: u64) -> Gateway {
    TestGateway::new()
        .postgres(url)
        .config(move |c| {
            c.store.poll_interval_ms = poll_ms;
            c.store.connect_timeout_ms = 1_000;
            c.usage.flush_interval_ms = 600_000;
        })
        .start()
        .await
}

/// Waits until `check` holds, up to `limit`; returns how long it took.
async fn within<F, Fut>(limit: Duration, mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while !check().await {
        assert!(started.elapsed() < limit, "not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    started.elapsed()
}

#[tokio::test]
async fn the_admin_api_works_the_same_on_postgres() {
    let Some(db) = pg::fresh().await else { return };
    let url = db.url();
    let admin = TestGateway::new().postgres(url).admin().await;
    let acc = admin.account("Acme").await;
    let (key, secret) = admin
        .create_key(json!({ "account_id": acc, "name": "Billing", "permission": "read", "description": "Nightly JOB" }))
        .await;
    let id = key["id"].as_str().expect("id").to_owned();
    for i in 0..4 {
        admin.create_key(json!({ "account_id": acc, "name": format!("k{i}"), "permission": "write", "allowed_ips": ["10.0.0.0/8"] })).await;
    }
    let (_, found) = admin.call(Method::GET, "/v1/keys?q=job", None).await;
    assert_eq!(found["items"].as_array().expect("items").len(), 1, "search is case-insensitive on PostgreSQL too");
    let (_, page) = admin.call(Method::GET, "/v1/keys?limit=2&permission=write", None).await;
    let cursor = page["next_cursor"].as_str().expect("cursor").to_owned();
    let (_, next) = admin.call(Method::GET, &format!("/v1/keys?limit=2&permission=write&cursor={cursor}"), None).await;
    assert_eq!(next["items"].as_array().expect("items").len(), 2);
    let (s, v) = admin
        .call(Method::PATCH, &format!("/v1/keys/{id}"), Some(json!({ "enabled": false, "description": null })))
        .await;
    assert_eq!((s, v["status"].as_str()), (StatusCode::OK, Some("disabled")));
    let (_, disabled) = admin.call(Method::GET, "/v1/keys?status=disabled", None).await;
    assert_eq!(disabled["items"].as_array().expect("items").len(), 1);
    admin.call(Method::PATCH, &format!("/v1/keys/{id}"), Some(json!({ "enabled": true }))).await;
    let (s, rotated) =
        admin.call(Method::POST, &format!("/v1/keys/{id}/rotate"), Some(json!({ "grace_period_seconds": 60 }))).await;
    assert_eq!(s, StatusCode::OK);
    let keyset = admin.reloader.keyset();
    let now = keygate::clock::now_ms();
    assert!(keyset.load().check(secret.as_bytes(), &Method::GET, now).is_ok(), "old secret in its grace");
    assert!(keyset.load().check(rotated["secret"].as_str().expect("secret").as_bytes(), &Method::GET, now).is_ok());
    let (s, bulk) = admin.call(Method::POST, "/v1/keys/bulk-revoke", Some(json!({ "ids": [id, "key_nope"] }))).await;
    assert_eq!((s, bulk["not_found"].clone()), (StatusCode::OK, json!(["key_nope"])));
    assert!(keyset.load().check(secret.as_bytes(), &Method::GET, now).is_err());
    let (_, audit) = admin.call(Method::GET, &format!("/v1/audit?key_id={id}"), None).await;
    let actions: Vec<&str> =
        audit["items"].as_array().expect("items").iter().map(|e| e["action"].as_str().expect("a")).collect();
    assert_eq!(actions, ["key.revoke", "key.rotate", "key.enable", "key.update", "key.create"]);
    let (s, _) = admin
        .call(Method::POST, "/v1/admin-tokens", Some(json!({ "name": "ci", "role": "viewer", "account_id": acc })))
        .await;
    assert_eq!(s, StatusCode::CREATED);
}

#[tokio::test]
async fn two_replicas_share_keys_and_revocations_within_1s() {
    let Some(db) = pg::fresh().await else { return };
    // B polls only every minute: what reaches it in time came by NOTIFY.
    let (a, b) = tokio::join!(replica(db.url(), 1_000), replica(db.url(), 60_000));
    let acc = a.admin.account("Acme").await;
    let (id, secret) = a.admin.key(&acc, "read").await;
    let took = within(Duration::from_secs(1), || async {
        get_with_key(b.proxy(), "/", &secret).await.status == StatusCode::OK
    })
    .await;
    eprintln!("key created on A usable on B after {took:?}");
    a.admin.call(Method::POST, &format!("/v1/keys/{id}/revoke"), None).await;
    let took = within(Duration::from_secs(1), || async {
        get_with_key(b.proxy(), "/", &secret).await.code() == "key_revoked"
    })
    .await;
    eprintln!("revocation on A reached B after {took:?}");
}

#[tokio::test]
async fn a_revocation_made_while_the_listener_was_cut_reaches_the_replica() {
    let Some(db) = pg::fresh().await else { return };
    let (a, b) = tokio::join!(replica(db.url(), 1_000), replica(db.url(), 60_000));
    let acc = a.admin.account("Acme").await;
    let (id, secret) = a.admin.key(&acc, "read").await;
    within(Duration::from_secs(2), || async { get_with_key(b.proxy(), "/", &secret).await.status == StatusCode::OK })
        .await;
    // Both replicas' listeners die; the revocation is committed before B's
    // listener is back, so its NOTIFY is lost to B.
    assert!(pg::terminate(&db, "LISTEN").await >= 1, "no listener connection found");
    a.admin.call(Method::POST, &format!("/v1/keys/{id}/revoke"), None).await;
    within(Duration::from_secs(3), || async { get_with_key(b.proxy(), "/", &secret).await.code() == "key_revoked" })
        .await;
}

#[tokio::test]
async fn a_replica_serves_from_its_snapshot_and_stays_ready_while_the_store_is_down_then_resyncs() {
    let Some(db) = pg::fresh().await else { return };
    let relay = Relay::start().await;
    let a = replica(db.url(), 200).await;
    let b = replica(db.url_via(&relay.addr.to_string()), 200).await;
    let acc = a.admin.account("Acme").await;
    let (_, secret) = a.admin.key(&acc, "read").await;
    let (doomed, doomed_secret) = a.admin.key(&acc, "read").await;
    within(Duration::from_secs(2), || async {
        get_with_key(b.proxy(), "/", &doomed_secret).await.status == StatusCode::OK
    })
    .await;

    relay.down();
    let admin_b = b.gateway.admin_addr;
    within(Duration::from_secs(5), || async {
        let r = fetch(Method::GET, &format!("http://{}/healthz", admin_b), &[], "").await;
        r.status == StatusCode::OK && r.json()["store"] == "down"
    })
    .await;
    // Fail static: an outage must not pull every replica out of service.
    let r = fetch(Method::GET, &format!("http://{}/readyz", admin_b), &[], "").await;
    assert_eq!((r.status, r.json()["status"].as_str()), (StatusCode::OK, Some("ready")), "readyz with the store down");
    assert_eq!(r.json()["store"], "down");
    for _ in 0..20 {
        let r = get_with_key(b.proxy(), "/", &secret).await;
        assert_eq!(r.status, StatusCode::OK, "no 5xx for a valid key while the store is down");
    }
    let (s, v) = b.admin.call(Method::POST, "/v1/accounts", Some(json!({ "name": "x" }))).await;
    assert_eq!((s, v["code"].as_str()), (StatusCode::SERVICE_UNAVAILABLE, Some("store_unavailable")));
    within(Duration::from_secs(5), || async {
        let metrics = fetch(Method::GET, &format!("http://{}/metrics", admin_b), &[], "").await;
        String::from_utf8_lossy(&metrics.body).contains("keygate_store_up 0")
    })
    .await;
    // Meanwhile another replica revokes a key.
    a.admin.call(Method::POST, &format!("/v1/keys/{doomed}/revoke"), None).await;
    assert_eq!(get_with_key(b.proxy(), "/", &doomed_secret).await.status, StatusCode::OK, "B cannot know yet");

    relay.up();
    within(Duration::from_secs(5), || async {
        get_with_key(b.proxy(), "/", &doomed_secret).await.code() == "key_revoked"
    })
    .await;
    within(Duration::from_secs(5), || async {
        fetch(Method::GET, &format!("http://{}/readyz", admin_b), &[], "").await.status == StatusCode::OK
    })
    .await;
    // Usage counted during the outage reaches the store once it is back.
    b.gateway.flusher.flush().await.expect("flush after the outage");
    let (_, key) = a.admin.call(Method::GET, "/v1/keys?limit=200", None).await;
    let total: i64 =
        key["items"].as_array().expect("items").iter().map(|k| k["usage_count"].as_i64().expect("count")).sum();
    assert!(total >= 21, "usage during the outage was kept: {total}");
}

#[tokio::test]
async fn usage_from_two_replicas_adds_up_exactly() {
    let Some(db) = pg::fresh().await else { return };
    let (a, b) = tokio::join!(replica(db.url(), 200), replica(db.url(), 200));
    let acc = a.admin.account("Acme").await;
    let (id, secret) = a.admin.key(&acc, "read").await;
    within(Duration::from_secs(2), || async { get_with_key(b.proxy(), "/", &secret).await.status == StatusCode::OK })
        .await;
    for _ in 0..13 {
        get_with_key(a.proxy(), "/", &secret).await;
    }
    for _ in 0..8 {
        get_with_key(b.proxy(), "/", &secret).await;
    }
    a.gateway.flusher.flush().await.expect("flush a");
    b.gateway.flusher.flush().await.expect("flush b");
    a.gateway.flusher.flush().await.expect("flush a again");
    let (_, key) = a.admin.call(Method::GET, &format!("/v1/keys/{id}"), None).await;
    // 13 on A, 8 on B plus the one request that saw the key arrive on B.
    assert_eq!(key["usage_count"], 22, "{key}");
}

#[tokio::test]
async fn replicas_starting_at_once_migrate_once() {
    let Some(db) = pg::fresh().await else { return };
    let (a, b, c) = tokio::join!(replica(db.url(), 1_000), replica(db.url(), 1_000), replica(db.url(), 1_000));
    let acc = a.admin.account("A").await;
    let (_, secret) = c.admin.key(&acc, "read").await;
    within(Duration::from_secs(2), || async { get_with_key(b.proxy(), "/", &secret).await.status == StatusCode::OK })
        .await;
}

/// Batched usage writes on PostgreSQL: deltas for one key add up (an
/// upsert may not touch a row twice there), hourly rows included.
#[tokio::test]
async fn usage_deltas_for_one_key_add_up_on_postgres() {
    let Some(db) = pg::fresh().await else { return };
    let gw = replica(db.url(), 200).await;
    let acc = gw.admin.account("Acme").await;
    let (a, _) = gw.admin.key(&acc, "read").await;
    let (b, _) = gw.admin.key(&acc, "write").await;
    let hour = 3_600_000 * 490_000;
    let delta = |id: &str, requests: i64, last: i64| keygate::store::UsageDelta {
        key_id: id.to_owned(),
        requests,
        last_used_ms: last,
        hour,
        outcomes: vec![("allowed", requests), ("rate_limited", 1)],
    };
    let store = gw.gateway.reloader.store();
    store.add_usage(&[delta(&a, 3, hour + 7), delta(&b, 1, hour), delta(&a, 4, hour + 2)]).await.expect("add usage");
    let (_, key) = gw.admin.call(Method::GET, &format!("/v1/keys/{a}"), None).await;
    assert_eq!(key["usage_count"], 7, "{key}");
    let rows = store.usage_since(&a, 0).await.expect("hourly");
    assert_eq!(rows, vec![(hour, "allowed".to_owned(), 7), (hour, "rate_limited".to_owned(), 2)]);
    assert_eq!(store.usage_since(&b, 0).await.expect("hourly").len(), 2);
}
