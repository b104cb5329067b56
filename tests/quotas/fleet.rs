//! Quotas across replicas on one PostgreSQL: spending is shared (the fleet
//! overshoots by at most replicas × `limits.quota_block`), and a store
//! outage never answers 5xx: each replica counts alone and catches up.

use std::time::Duration;

use http::{Method, StatusCode};
use serde_json::json;

use super::kit::http::{fetch, get_with_key};
use super::kit::pg::{self, Relay};
use super::kit::{AdminCalls, Gateway, TestGateway};
use super::within;

async fn replica(url: String, block: u64) -> Gateway {
    TestGateway::new()
        .postgres(url)
        .config(move |c| {
            c.limits.quota_block = block;
            c.store.poll_interval_ms = 200;
            c.store.connect_timeout_ms = 1_000;
            c.usage.flush_interval_ms = 600_000;
        })
        .start()
        .await
}

async fn health(gw: &Gateway) -> serde_json::Value {
    fetch(Method::GET, &format!("http://{}/healthz", gw.gateway.admin_addr), &[], "").await.json()
}

#[tokio::test]
async fn two_replicas_share_a_quota_within_the_bound() {
    let Some(db) = pg::fresh().await else { return };
    const LIMIT: u64 = 60;
    const BLOCK: u64 = 5;
    let (a, b) = tokio::join!(replica(db.url(), BLOCK), replica(db.url(), BLOCK));
    let acc = a.admin.account("Fleet").await;
    let (key, secret) = a
        .admin
        .create_key(json!({ "account_id": acc, "name": "shared", "permission": "read", "quota": { "limit": LIMIT, "period": "day" } }))
        .await;
    let id = key["id"].as_str().expect("id").to_owned();
    within(Duration::from_secs(2), "the key on B", || async {
        get_with_key(b.proxy(), "/", &secret).await.status == StatusCode::OK
    })
    .await;
    let mut admitted = 1;
    let mut statuses = Vec::new();
    // Round robin, then a pause for the last syncs, then more: what the
    // fleet admits in all.
    for round in 0..2 {
        for i in 0..(LIMIT as usize + 40) {
            let proxy = if i % 2 == 0 { a.proxy() } else { b.proxy() };
            let r = get_with_key(proxy, "/", &secret).await;
            assert!(!r.status.is_server_error(), "{:?}", r.status);
            match r.status {
                StatusCode::OK => admitted += 1,
                s => {
                    assert_eq!((s, r.code().as_str()), (StatusCode::TOO_MANY_REQUESTS, "quota_exceeded"));
                    statuses.push(round);
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(800)).await;
    }
    eprintln!("fleet of 2, quota {LIMIT}, block {BLOCK}: admitted {admitted}");
    assert!(admitted >= LIMIT, "the fleet admits the whole quota: {admitted}");
    assert!(admitted <= LIMIT + 2 * BLOCK, "overshoot beyond replicas × quota_block: {admitted}");
    // The ledger holds every admitted request, from both replicas.
    within(Duration::from_secs(3), "both replicas' spending in the ledger", || async {
        let (_, v) = a.admin.call(Method::GET, &format!("/v1/keys/{id}"), None).await;
        v["quota_usage"]["used"].as_u64() == Some(admitted)
    })
    .await;
    a.gateway.stop().await;
    b.gateway.stop().await;
}

#[tokio::test]
async fn a_store_outage_counts_alone_never_5xx_and_catches_up() {
    let Some(db) = pg::fresh().await else { return };
    let relay = Relay::start().await;
    let gw = replica(db.url_via(&relay.addr.to_string()), 100).await;
    let acc = gw.admin.account("Outage").await;
    let (key, secret) = gw
        .admin
        .create_key(
            json!({ "account_id": acc, "name": "k", "permission": "read", "quota": { "limit": 8, "period": "day" } }),
        )
        .await;
    let id = key["id"].as_str().expect("id").to_owned();
    for _ in 0..2 {
        assert_eq!(get_with_key(gw.proxy(), "/", &secret).await.status, StatusCode::OK);
    }
    assert_eq!(health(&gw).await["quota"], "shared");

    relay.down();
    within(Duration::from_secs(5), "healthz says local", || async { health(&gw).await["quota"] == "local" }).await;
    let mut admitted = 2;
    for _ in 0..10 {
        let r = get_with_key(gw.proxy(), "/", &secret).await;
        assert!(!r.status.is_server_error(), "a store outage is no 5xx: {:?}", r.status);
        if r.status == StatusCode::OK {
            admitted += 1;
        } else {
            assert_eq!(r.code(), "quota_exceeded");
        }
    }
    assert_eq!(admitted, 8, "counting alone, the quota still holds");
    let scrape = fetch(Method::GET, &format!("http://{}/metrics", gw.gateway.admin_addr), &[], "").await;
    let text = String::from_utf8_lossy(&scrape.body).into_owned();
    assert!(text.lines().any(|l| l == "keygate_quota_store_up 0"), "{text}");

    relay.up();
    within(Duration::from_secs(10), "healthz says shared again", || async { health(&gw).await["quota"] == "shared" })
        .await;
    within(Duration::from_secs(5), "the spending caught up in the ledger", || async {
        let (s, v) = gw.admin.call(Method::GET, &format!("/v1/keys/{id}"), None).await;
        s == StatusCode::OK && v["quota_usage"]["used"] == 8
    })
    .await;
    gw.gateway.stop().await;
}
