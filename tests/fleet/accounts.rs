//! A plan's pooled rate limit across a fleet: replicas on one PostgreSQL
//! store and one real Redis hold an account with two keys to its plan's
//! limit in total; with Redis gone each replica counts the account alone,
//! and a Redis that comes back is shared again.

use std::time::Duration;

use http::{Method, StatusCode};
use keygate::keys::InlineId;
use serde_json::json;

use super::kit::http::get_with_key;
use super::kit::redis::{self, Private};
use super::kit::{pg, AdminCalls, Gateway};
use super::{health, replica, within};

/// A fresh account on a plan of `requests` per `per_seconds`, with two keys
/// of no limit of their own, once every replica's snapshot holds all three.
async fn pooled_account(fleet: &[Gateway], requests: u32, per_seconds: u32) -> [String; 2] {
    let admin = &fleet[0].admin;
    let body = json!({ "name": "pooled", "rate_limit": { "requests": requests, "per_seconds": per_seconds } });
    let (s, plan) = admin.call(Method::POST, "/v1/plans", Some(body)).await;
    assert_eq!(s, StatusCode::CREATED, "{plan}");
    let body = json!({ "name": "tenant", "plan_id": plan["id"] });
    let (s, account) = admin.call(Method::POST, "/v1/accounts", Some(body)).await;
    assert_eq!(s, StatusCode::CREATED, "{account}");
    let account = account["id"].as_str().expect("id").to_owned();
    let before: Vec<usize> = fleet.iter().map(|g| g.gateway.reloader.keyset().load().len()).collect();
    let mut secrets = Vec::new();
    for name in ["a", "b"] {
        let body = json!({ "account_id": account, "name": name, "permission": "read" });
        secrets.push(admin.create_key(body).await.1);
    }
    let id = InlineId::new(&account).expect("inline id");
    within(Duration::from_secs(10), "every replica has the account's plan and both keys", || async {
        fleet.iter().zip(&before).all(|(g, n)| {
            let set = g.gateway.reloader.keyset().load();
            set.len() >= n + 2 && set.account(&id).is_some()
        })
    })
    .await;
    let [a, b]: [String; 2] = secrets.try_into().expect("two keys");
    [a, b]
}

/// Sends `total` requests, `gap` apart, round-robin over the replicas and
/// alternating the two keys on each replica; answers how many were allowed
/// (and asserts every other one was refused by the account's limit).
async fn hammer_account(fleet: &[Gateway], secrets: &[String; 2], total: usize, gap: Duration) -> usize {
    let mut allowed = 0;
    for i in 0..total {
        let replica = i % fleet.len();
        let secret = &secrets[(i / fleet.len()) % 2];
        let reply = get_with_key(fleet[replica].proxy(), "/x", secret).await;
        match reply.status {
            StatusCode::OK => allowed += 1,
            StatusCode::TOO_MANY_REQUESTS => {
                assert_eq!(reply.code(), "rate_limited");
                let policy = reply.header("ratelimit-policy").unwrap_or_default();
                assert!(policy.starts_with("\"account\";"), "the refusal names the pooled limit: {policy}");
                assert!(reply.header("retry-after").is_some(), "a refusal says when to come back");
            }
            other => panic!("request {i}: {other} {}", String::from_utf8_lossy(&reply.body)),
        }
        tokio::time::sleep(gap).await;
    }
    allowed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_hold_an_accounts_pooled_limit_in_total() {
    let Some(db) = pg::fresh().await else { return };
    if !redis::available() {
        return;
    }
    let prefix = redis::prefix();
    let fleet =
        vec![replica(&db.url(), redis::SHARED, &prefix).await, replica(&db.url(), redis::SHARED, &prefix).await];
    for g in &fleet {
        within(Duration::from_secs(5), "redis up", || async { health(g.gateway.admin_addr).await["redis"] == "up" })
            .await;
    }
    let secrets = pooled_account(&fleet, 10, 60).await;
    // Alone, each replica would let the account make 10: 20 in all.
    let allowed = hammer_account(&fleet, &secrets, 40, Duration::from_millis(20)).await;
    eprintln!("two replicas allowed the account {allowed} of 10");
    // Bound: the bucket, a token refilled in the ~1 s run, one on credit per replica.
    assert!((8..=10 + 1 + 2).contains(&allowed), "the fleet allowed the account {allowed} of a limit of 10");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_accounts_pooled_limit_counts_alone_without_redis_and_is_shared_again() {
    let Some(db) = pg::fresh().await else { return };
    if !redis::available() {
        return;
    }
    let mut server = Private::start();
    let prefix = redis::prefix();
    let fleet =
        vec![replica(&db.url(), &server.url(), &prefix).await, replica(&db.url(), &server.url(), &prefix).await];
    let redis_is = |want: &'static str| {
        let fleet = &fleet;
        async move {
            within(Duration::from_secs(15), want, || async {
                for g in fleet {
                    if health(g.gateway.admin_addr).await["redis"] != want {
                        return false;
                    }
                }
                true
            })
            .await
        }
    };
    redis_is("up").await;
    let shared_before = pooled_account(&fleet, 10, 60).await;
    let before = hammer_account(&fleet, &shared_before, 30, Duration::from_millis(20)).await;
    assert!(before <= 10 + 1 + 2, "shared: the fleet allowed the account {before} of 10");

    server.down();
    redis_is("down").await;
    // Alone, each replica lets the account make its own 10: never a 5xx.
    let alone_secrets = pooled_account(&fleet, 10, 60).await;
    let alone = hammer_account(&fleet, &alone_secrets, 40, Duration::from_millis(5)).await;
    assert!(
        (10 + 3..=2 * 10 + 2).contains(&alone),
        "each replica counts the account alone while Redis is down: {alone}"
    );

    server.up();
    redis_is("up").await;
    let after = pooled_account(&fleet, 10, 60).await;
    let shared = hammer_account(&fleet, &after, 40, Duration::from_millis(20)).await;
    eprintln!("account: shared {before}, alone {alone} (2 × 10), shared again {shared} of 10");
    assert!((8..=10 + 1 + 2).contains(&shared), "shared again: the fleet allowed the account {shared} of 10");
}
