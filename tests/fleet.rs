//! Rate limits shared by a fleet through Redis (`limits.redis_url`, issue
//! 15): replicas on one PostgreSQL store and one real Redis hold a key to
//! its limit in total; with Redis unreachable each replica counts alone and
//! says so; a Redis that comes back is shared again. The same for a plan's
//! limit pooled over an account's keys (`fleet/accounts.rs`). Real Redis on
//! 127.0.0.1:6379 (a unique prefix per test) or a private `redis-server`.

#[path = "fleet/accounts.rs"]
mod accounts;
mod kit;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{Method, StatusCode};
use keygate::clock::now_ms;
use keygate::fleet::{FleetLimiter, FleetOptions, RedisUrl};
use keygate::keys::{Quota, RateScope};
use keygate::shutdown::Shutdown;
use kit::http::{fetch, get_with_key};
use kit::redis::{self, Private};
use kit::{pg, AdminCalls, Gateway, TestGateway};
use serde_json::{json, Value};

async fn within<F, Fut>(limit: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while !check().await {
        assert!(started.elapsed() < limit, "not within {limit:?}: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn health(admin: std::net::SocketAddr) -> Value {
    fetch(Method::GET, &format!("http://{admin}/healthz"), &[], "").await.json()
}

async fn replica(store: &str, redis_url: &str, prefix: &str) -> Gateway {
    let (redis_url, prefix) = (redis_url.to_owned(), prefix.to_owned());
    TestGateway::new()
        .postgres(store)
        .config(move |c| {
            c.limits.redis_url = Some(redis_url);
            c.limits.redis_prefix = prefix;
            c.usage.flush_interval_ms = 600_000;
        })
        .start()
        .await
}

/// A key with `rate_limit` created on the first replica, once every
/// replica's snapshot holds it (waiting by request would spend the limit).
async fn limited_key(fleet: &[Gateway], requests: u32, per_seconds: u32) -> String {
    let account = fleet[0].admin.account("acme").await;
    let before: Vec<usize> = fleet.iter().map(|g| g.gateway.reloader.keyset().load().len()).collect();
    let body = json!({ "account_id": account, "name": "fleet", "permission": "read",
        "rate_limit": { "requests": requests, "per_seconds": per_seconds } });
    let (_, secret) = fleet[0].admin.create_key(body).await;
    within(Duration::from_secs(10), "every replica has the key", || async {
        fleet.iter().zip(&before).all(|(g, n)| g.gateway.reloader.keyset().load().len() > *n)
    })
    .await;
    secret
}

/// Sends `total` requests round-robin over the replicas, `gap` apart;
/// answers how many were allowed (and asserts every other one was 429).
async fn hammer(fleet: &[Gateway], secret: &str, total: usize, gap: Duration) -> usize {
    let mut allowed = 0;
    for i in 0..total {
        let reply = get_with_key(fleet[i % fleet.len()].proxy(), "/x", secret).await;
        match reply.status {
            StatusCode::OK => allowed += 1,
            StatusCode::TOO_MANY_REQUESTS => {
                assert_eq!(reply.code(), "rate_limited");
                assert!(reply.header("retry-after").is_some(), "a refusal says when to come back");
            }
            other => panic!("request {i}: {other} {}", String::from_utf8_lossy(&reply.body)),
        }
        tokio::time::sleep(gap).await;
    }
    allowed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_leasing_from_one_bucket_admit_one_bucket() {
    if !redis::available() {
        return;
    }
    let prefix = redis::prefix();
    let shutdown = Shutdown::new();
    let options = FleetOptions { url: RedisUrl::parse(redis::SHARED).expect("url"), prefix, sync_interval_ms: 50 };
    let replicas: Vec<Arc<FleetLimiter>> = (0..2).map(|_| FleetLimiter::new(options.clone())).collect();
    let tasks: Vec<_> = replicas.iter().map(|f| f.spawn(shutdown.clone())).collect();
    within(Duration::from_secs(5), "both replicas reach redis", || async { replicas.iter().all(|f| f.is_up()) }).await;
    // 40 at once, then 20 a second: a perfect bucket admits 40 + 20 × 3.
    let quota = Quota { requests: 40, per_seconds: 2 };
    let run = Duration::from_secs(3);
    let admitted = Arc::new(AtomicU64::new(0));
    let threads: Vec<_> = replicas
        .iter()
        .map(|f| {
            let (scope, admitted) = (f.scope(RateScope::Key, "k1", quota), Arc::clone(&admitted));
            std::thread::spawn(move || {
                let started = Instant::now();
                while started.elapsed() < run {
                    if scope.admit(now_ms(), || (true, None)).0 {
                        admitted.fetch_add(1, Ordering::Relaxed);
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("hammer");
    }
    let admitted = admitted.load(Ordering::Relaxed);
    eprintln!("two replicas admitted {admitted} (one bucket: 100)");
    // Bound: one bucket over the run, plus one request on credit per replica.
    assert!(admitted <= 40 + 60 + 2, "admitted {admitted}: more than one bucket");
    assert!(admitted >= 80, "admitted {admitted}: the leases should pass most of the bucket");
    shutdown.trigger();
    for t in tasks {
        t.await.expect("sync task");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_hold_a_key_to_its_limit_in_total() {
    let Some(db) = pg::fresh().await else { return };
    if !redis::available() {
        return;
    }
    let prefix = redis::prefix();
    let mut fleet = Vec::new();
    for _ in 0..3 {
        fleet.push(replica(&db.url(), redis::SHARED, &prefix).await);
    }
    for g in &fleet {
        within(Duration::from_secs(5), "redis up", || async { health(g.gateway.admin_addr).await["redis"] == "up" })
            .await;
    }
    let secret = limited_key(&fleet, 20, 60).await;
    // Alone, each replica would let 20 through: 60 in all.
    let allowed = hammer(&fleet, &secret, 90, Duration::from_millis(20)).await;
    eprintln!("three replicas allowed {allowed} of 20");
    assert!((18..=20 + 1 + 3).contains(&allowed), "the fleet allowed {allowed} of a limit of 20");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_redis_leaves_each_replica_counting_alone_and_says_so() {
    let dir = tempfile::tempdir().expect("tempdir");
    let upstream = kit::upstream::Upstream::start().await;
    let closed = redis::free_port();
    let yaml = format!(
        "{}limits: {{ redis_url: \"redis://127.0.0.1:{closed}/0\" }}\nadmin: {{ listen: 127.0.0.1:0, public_metrics: true }}\n",
        kit::process::yaml(dir.path(), &upstream.url("")).replace("admin: { listen: 127.0.0.1:0 }\n", "")
    );
    let p = kit::process::spawn(dir.path(), &yaml, &[("KEYGATE_ADMIN_TOKEN", kit::TOKEN)]);
    let admin = kit::admin_client(p.admin);
    let account = admin.account("acme").await;
    let body = json!({ "account_id": account, "name": "k", "permission": "read",
        "rate_limit": { "requests": 3, "per_seconds": 60 } });
    let (_, secret) = admin.create_key(body).await;
    within(Duration::from_secs(10), "the key is in the snapshot", || async {
        let ready = fetch(Method::GET, &format!("http://{}/readyz", p.admin), &[], "").await;
        ready.json()["snapshot_keys"].as_u64() >= Some(1)
    })
    .await;
    let mut codes = Vec::new();
    for _ in 0..5 {
        codes.push(get_with_key(p.proxy, "/x", &secret).await.status.as_u16());
    }
    assert_eq!(codes, [200, 200, 200, 429, 429], "the replica's own limit, never a 5xx");
    let h = health(p.admin).await;
    assert_eq!((h["status"].as_str(), h["redis"].as_str()), (Some("ok"), Some("down")), "{h}");
    let ready = fetch(Method::GET, &format!("http://{}/readyz", p.admin), &[], "").await;
    assert_eq!(ready.status, StatusCode::OK, "Redis down is no reason to be pulled from service");
    let metrics = fetch(Method::GET, &format!("http://{}/metrics", p.admin), &[], "").await;
    let text = String::from_utf8_lossy(&metrics.body).into_owned();
    assert!(text.lines().any(|l| l == "keygate_redis_up 0"), "{text}");
    let errors = text.lines().find_map(|l| l.strip_prefix("keygate_redis_sync_errors_total ")).expect("errors");
    assert!(errors.parse::<u64>().expect("number") >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_that_comes_back_is_shared_again() {
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
    let before = limited_key(&fleet, 10, 60).await;

    server.down();
    redis_is("down").await;
    // Alone, each replica lets its own 10 through (a few less: what it
    // leased while Redis was up is already spent on nothing).
    let alone = hammer(&fleet, &before, 40, Duration::from_millis(5)).await;
    assert!(alone > 10 + 3, "each replica counts alone while Redis is down: {alone}");

    server.up();
    redis_is("up").await;
    let after = limited_key(&fleet, 10, 60).await;
    let shared = hammer(&fleet, &after, 40, Duration::from_millis(20)).await;
    eprintln!("alone {alone} (2 × 10), shared again {shared} of 10");
    assert!((8..=10 + 1 + 2).contains(&shared), "shared again: the fleet allowed {shared} of 10");
}

#[test]
fn a_bad_redis_url_is_refused_naming_the_field() {
    let dir = tempfile::tempdir().expect("tempdir");
    let yaml = format!(
        "{}limits: {{ redis_url: \"rediss://app:hunter2@cache:6380\" }}\n",
        kit::process::yaml(dir.path(), "http://127.0.0.1:9")
    );
    let file = dir.path().join("keygate.yaml");
    std::fs::write(&file, yaml).expect("write");
    let run = kit::process::run(&["check-config", "--config", file.to_str().expect("path")], &[], None);
    assert_ne!(run.code, Some(0));
    assert!(run.stderr.contains("limits.redis_url"), "{}", run.stderr);
    assert!(!run.stderr.contains("hunter2"), "{}", run.stderr);
}
