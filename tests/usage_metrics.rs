//! Per-key usage, Prometheus metrics, rate limits, the failed-auth guard and
//! per-key restrictions (issue 5), end to end.

#[path = "usage_metrics/grafana.rs"]
mod grafana;
mod kit;

use std::time::Duration;

use http::{Method, StatusCode};
use keygate::cli::client::AdminClient;
use kit::http::{fetch, get_with_key};
use kit::AdminCalls;
use kit::{process, Gateway, TestGateway};
use serde_json::json;

async fn key_with(admin: &AdminClient, acc: &str, extra: serde_json::Value) -> (String, String) {
    let mut body = json!({ "account_id": acc, "name": "k", "permission": "write" });
    body.as_object_mut().expect("object").extend(extra.as_object().expect("object").clone());
    let (key, secret) = admin.create_key(body).await;
    (key["id"].as_str().expect("id").to_owned(), secret)
}

async fn metrics(gw: &Gateway) -> String {
    let r = fetch(Method::GET, &format!("http://{}/metrics", gw.gateway.admin_addr), &[], "").await;
    assert_eq!(r.status, StatusCode::OK);
    String::from_utf8(r.body.to_vec()).expect("utf-8")
}

/// `(labels, value)` of every sample of one metric.
fn samples(text: &str, name: &str) -> Vec<(String, f64)> {
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series[name.len()..].to_owned(), value.parse().ok()?))
        })
        .collect()
}

#[tokio::test]
async fn usage_count_is_exact_across_a_restart() {
    let upstream = kit::upstream::Upstream::start().await.addr;
    let dir = tempfile::tempdir().expect("tempdir");
    let yaml = process::yaml(dir.path(), &format!("http://{upstream}")) + "usage: { flush_interval_ms: 600000 }\n";
    let env = [("KEYGATE_ADMIN_TOKEN", kit::TOKEN)];
    let mut first = process::spawn(dir.path(), &yaml, &env);
    let admin = kit::admin_client(first.admin);
    let acc = admin.account("A").await;
    let (id, secret) = admin.key(&acc, "read").await;
    for _ in 0..25 {
        assert_eq!(get_with_key(first.proxy, "/", &secret).await.status, StatusCode::OK);
    }
    get_with_key(first.proxy, "/", "kg_live_not_a_key").await;
    first.sigterm();
    let status = tokio::task::spawn_blocking(move || first.wait(Duration::from_secs(10))).await.expect("join");
    assert!(status.success());

    let second = process::spawn(dir.path(), &yaml, &env);
    let admin = kit::admin_client(second.admin);
    let (_, key) = admin.call(Method::GET, &format!("/v1/keys/{id}"), None).await;
    assert_eq!(key["usage_count"], 25, "{key}");
    assert!(key["last_used_at"].is_string());
}

#[tokio::test]
async fn a_failed_flush_is_retried_without_loss() {
    let gw = TestGateway::new().config(|c| c.usage.flush_interval_ms = 600_000).start().await;
    let acc = gw.admin.account("A").await;
    let (id, secret) = gw.admin.key(&acc, "read").await;
    for _ in 0..7 {
        get_with_key(gw.proxy(), "/", &secret).await;
    }
    let db = gw.dir.path().join("keygate.db");
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display())).await.expect("db");
    sqlx::query(
        "CREATE TRIGGER no_usage BEFORE UPDATE OF usage_count ON api_keys BEGIN SELECT RAISE(ABORT, 'store down'); END",
    )
    .execute(&pool)
    .await
    .expect("trigger");
    assert!(gw.gateway.flusher.flush().await.is_err());
    for _ in 0..3 {
        get_with_key(gw.proxy(), "/", &secret).await;
    }
    let text = metrics(&gw).await;
    assert_eq!(samples(&text, "keygate_usage_flush_failures_total")[0].1, 1.0);
    sqlx::query("DROP TRIGGER no_usage").execute(&pool).await.expect("drop");
    assert_eq!(gw.gateway.flusher.flush().await.expect("flush"), 1);
    let (_, key) = gw.admin.call(Method::GET, &format!("/v1/keys/{id}"), None).await;
    assert_eq!(key["usage_count"], 10);
    assert_eq!(gw.gateway.flusher.flush().await.expect("flush"), 0, "nothing flushed twice");
}

#[tokio::test]
async fn metrics_have_per_key_series_for_used_keys_only() {
    let gw = Gateway::start().await;
    let acc = gw.admin.account("A").await;
    let (id, secret) = gw.admin.key(&acc, "read").await;
    let (unused, _) = gw.admin.key(&acc, "read").await;
    for _ in 0..3 {
        get_with_key(gw.proxy(), "/", &secret).await;
    }
    fetch(Method::POST, &format!("http://{}/", gw.proxy()), &[("x-api-key", secret.as_str())], "").await;
    get_with_key(gw.proxy(), "/", "kg_live_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA").await;
    let text = metrics(&gw).await;
    let per_key = samples(&text, "keygate_key_requests_total");
    let allowed = format!("{{key_id=\"{id}\",account_id=\"{acc}\",outcome=\"allowed\"}}");
    let denied = format!("{{key_id=\"{id}\",account_id=\"{acc}\",outcome=\"insufficient_permission\"}}");
    assert!(per_key.contains(&(allowed, 3.0)), "{per_key:?}");
    assert!(per_key.contains(&(denied, 1.0)), "{per_key:?}");
    assert_eq!(per_key.len(), 2, "no series for unknown keys or unused keys: {per_key:?}");
    assert!(!text.contains(&unused));
    let failures = samples(&text, "keygate_auth_failures_total");
    assert!(failures.contains(&("{code=\"invalid_key\"}".into(), 1.0)), "{failures:?}");
    for name in [
        "keygate_request_duration_seconds_bucket",
        "keygate_snapshot_keys",
        "keygate_snapshot_revision",
        "keygate_snapshot_age_seconds",
        "keygate_store_up",
        "keygate_usage_flush_lag_seconds",
    ] {
        assert!(!samples(&text, name).is_empty(), "{name} missing");
    }
    assert_eq!(samples(&text, "keygate_store_up")[0].1, 1.0);
    assert_eq!(samples(&text, "keygate_snapshot_keys")[0].1, 2.0);
}

#[tokio::test]
async fn per_key_series_are_capped_with_an_other_series() {
    let gw = TestGateway::new().config(|c| c.metrics.per_key_limit = 2).start().await;
    let acc = gw.admin.account("A").await;
    let mut keys = Vec::new();
    for n in 1..=4 {
        let (id, secret) = gw.admin.key(&acc, "read").await;
        for _ in 0..n {
            get_with_key(gw.proxy(), "/", &secret).await;
        }
        keys.push(id);
    }
    let per_key = samples(&metrics(&gw).await, "keygate_key_requests_total");
    assert_eq!(per_key.len(), 3, "{per_key:?}");
    assert!(per_key.iter().any(|(l, v)| l.contains(&keys[3]) && *v == 4.0), "busiest kept");
    assert!(per_key.iter().any(|(l, v)| l.contains(&keys[2]) && *v == 3.0), "second busiest kept");
    assert!(
        per_key.contains(&("{key_id=\"other\",account_id=\"other\",outcome=\"allowed\"}".into(), 3.0)),
        "{per_key:?}"
    );
}

#[tokio::test]
async fn rate_limited_key_gets_429_with_headers_then_recovers() {
    let gw = Gateway::start().await;
    let acc = gw.admin.account("A").await;
    let (_, secret) = key_with(&gw.admin, &acc, json!({ "rate_limit": { "requests": 2, "per_seconds": 1 } })).await;
    let first = get_with_key(gw.proxy(), "/", &secret).await;
    assert_eq!(first.status, StatusCode::OK);
    assert_eq!(first.headers["ratelimit-policy"], "\"key\";q=2;w=1");
    assert!(first.headers["ratelimit"].to_str().expect("ascii").starts_with("\"key\";r=1;"));
    assert_eq!(get_with_key(gw.proxy(), "/", &secret).await.status, StatusCode::OK);
    let limited = get_with_key(gw.proxy(), "/", &secret).await;
    assert_eq!((limited.status, limited.code().as_str()), (StatusCode::TOO_MANY_REQUESTS, "rate_limited"));
    assert_eq!(limited.headers["retry-after"], "1");
    assert!(limited.headers["ratelimit"].to_str().expect("ascii").starts_with("\"key\";r=0;"));
    tokio::time::sleep(Duration::from_millis(1050)).await;
    assert_eq!(get_with_key(gw.proxy(), "/", &secret).await.status, StatusCode::OK, "recovered after the window");
}

#[tokio::test]
async fn the_configured_default_limit_applies_to_keys_without_their_own() {
    let gw = TestGateway::new()
        .config(|c| c.limits.default_per_key = Some(keygate::config::QuotaConfig { requests: 1, per_seconds: 60 }))
        .start()
        .await;
    let acc = gw.admin.account("A").await;
    let (_, plain) = gw.admin.key(&acc, "read").await;
    let (_, own) = key_with(&gw.admin, &acc, json!({ "rate_limit": { "requests": 5, "per_seconds": 60 } })).await;
    assert_eq!(get_with_key(gw.proxy(), "/", &plain).await.status, StatusCode::OK);
    assert_eq!(get_with_key(gw.proxy(), "/", &plain).await.status, StatusCode::TOO_MANY_REQUESTS);
    for _ in 0..5 {
        assert_eq!(get_with_key(gw.proxy(), "/", &own).await.status, StatusCode::OK, "the key's own limit overrides");
    }
}

/// A gateway allowing 60 failed authentications a minute, `burst` at once.
async fn failed_auth_gateway(burst: u32) -> Gateway {
    TestGateway::new()
        .config(move |c| {
            c.limits.failed_auth_per_minute = 60;
            c.limits.failed_auth_burst = burst;
        })
        .start()
        .await
}

#[tokio::test]
async fn repeated_failed_authentications_block_the_address_before_lookup() {
    let gw = failed_auth_gateway(3).await;
    let acc = gw.admin.account("A").await;
    let (_, good) = gw.admin.key(&acc, "read").await;
    let bad = kit::mistyped(&good);
    for _ in 0..4 {
        assert_eq!(get_with_key(gw.proxy(), "/", &bad).await.status, StatusCode::UNAUTHORIZED);
    }
    let blocked = get_with_key(gw.proxy(), "/", &good).await;
    assert_eq!((blocked.status, blocked.code().as_str()), (StatusCode::TOO_MANY_REQUESTS, "rate_limited"));
    assert!(blocked.headers.contains_key("retry-after"));
    // A missing key is no guess and does not count.
    let other = failed_auth_gateway(1).await;
    for _ in 0..5 {
        let r = fetch(Method::GET, &format!("http://{}/", other.proxy()), &[], "").await;
        assert_eq!(r.code(), "missing_key");
    }
}

#[tokio::test]
async fn ip_and_route_restrictions_answer_403() {
    let gw = Gateway::start().await;
    let acc = gw.admin.account("A").await;
    let (_, elsewhere) = key_with(&gw.admin, &acc, json!({ "allowed_ips": ["10.0.0.0/8", "2001:db8::/32"] })).await;
    let (_, local) = key_with(&gw.admin, &acc, json!({ "allowed_ips": ["127.0.0.0/8"] })).await;
    let r = get_with_key(gw.proxy(), "/", &elsewhere).await;
    assert_eq!((r.status, r.code().as_str()), (StatusCode::FORBIDDEN, "ip_not_allowed"));
    assert_eq!(get_with_key(gw.proxy(), "/", &local).await.status, StatusCode::OK);

    let routes = json!({ "allowed_routes": [{ "path_prefix": "/v1/reports", "methods": ["GET"] }] });
    let (_, reports) = key_with(&gw.admin, &acc, routes).await;
    assert_eq!(get_with_key(gw.proxy(), "/v1/reports/7", &reports).await.status, StatusCode::OK);
    let r = get_with_key(gw.proxy(), "/v1/orders", &reports).await;
    assert_eq!((r.status, r.code().as_str()), (StatusCode::FORBIDDEN, "route_not_allowed"));
    let r =
        fetch(Method::POST, &format!("http://{}/v1/reports", gw.proxy()), &[("x-api-key", reports.as_str())], "").await;
    assert_eq!(r.code(), "route_not_allowed");
}

#[tokio::test]
async fn forwarded_for_counts_only_from_trusted_proxies() {
    let restricted = json!({ "allowed_ips": ["203.0.113.0/24"] });
    let trusting = TestGateway::new().config(|c| c.proxy.trusted_proxies = vec!["127.0.0.1/32".into()]).start().await;
    let acc = trusting.admin.account("A").await;
    let (_, secret) = key_with(&trusting.admin, &acc, restricted.clone()).await;
    let xff = [("x-api-key", secret.as_str()), ("x-forwarded-for", "203.0.113.5")];
    let r = fetch(Method::GET, &format!("http://{}/", trusting.proxy()), &xff, "").await;
    assert_eq!(r.status, StatusCode::OK, "a trusted proxy vouches for the client");
    assert_eq!(r.json()["headers"]["x-forwarded-for"][0], "203.0.113.5, 127.0.0.1");

    let plain = Gateway::start().await;
    let acc = plain.admin.account("A").await;
    let (_, secret) = key_with(&plain.admin, &acc, restricted).await;
    let xff = [("x-api-key", secret.as_str()), ("x-forwarded-for", "203.0.113.5")];
    let r = fetch(Method::GET, &format!("http://{}/", plain.proxy()), &xff, "").await;
    assert_eq!(r.code(), "ip_not_allowed", "a spoofed X-Forwarded-For from an untrusted peer is ignored");
}

#[tokio::test]
async fn usage_over_time_is_bucketed_by_hour_day_and_outcome() {
    let gw = TestGateway::new().config(|c| c.usage.flush_interval_ms = 600_000).start().await;
    let acc = gw.admin.account("A").await;
    let (id, secret) = gw.admin.key(&acc, "read").await;
    for _ in 0..5 {
        get_with_key(gw.proxy(), "/", &secret).await;
    }
    fetch(Method::DELETE, &format!("http://{}/", gw.proxy()), &[("x-api-key", secret.as_str())], "").await;
    gw.gateway.flusher.flush().await.expect("flush");
    get_with_key(gw.proxy(), "/", &secret).await;
    gw.gateway.flusher.flush().await.expect("flush");
    let (s, usage) = gw.admin.call(Method::GET, &format!("/v1/keys/{id}/usage"), None).await;
    assert_eq!(s, StatusCode::OK, "{usage}");
    assert_eq!(usage["key_id"], id.as_str());
    let hourly = usage["hourly"].as_array().expect("hourly");
    assert_eq!(hourly.len(), 1, "{usage}");
    assert_eq!((hourly[0]["requests"].as_i64(), hourly[0]["refused"].as_i64()), (Some(6), Some(1)));
    assert!(hourly[0]["start"].as_str().expect("start").ends_with(":00:00Z"));
    let daily = usage["daily"].as_array().expect("daily");
    assert_eq!((daily[0]["requests"].as_i64(), daily[0]["refused"].as_i64()), (Some(6), Some(1)));
    assert_eq!(usage["outcomes"], json!({ "allowed": 6, "insufficient_permission": 1 }));
    let (s, _) = gw.admin.call(Method::GET, "/v1/keys/key_nope/usage", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}
