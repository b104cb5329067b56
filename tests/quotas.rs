//! Quotas (issue 15), black-box through the real gateway, on SQLite and
//! PostgreSQL: a key's quota and its refusal headers, route costs, the
//! adjustment route, `total` credits, spending that survives a restart, an
//! account's pooled quota, forward auth and verify spending like the proxy.
//! `quotas/fleet.rs`: two replicas sharing a quota, and a store outage;
//! `quotas/cli.rs`: the quota commands of the real binary;
//! `quotas/ledger.rs`: the quota book's sync against a real store.

mod kit;

#[path = "quotas/cli.rs"]
mod cli;
#[path = "quotas/fleet.rs"]
mod fleet;
#[path = "quotas/ledger.rs"]
mod ledger;

use std::time::{Duration, Instant};

use http::{Method, StatusCode};
use keygate::config::{Config, HeaderRule, RouteConfig};
use kit::http::{fetch, get_with_key, Reply};
use kit::upstream::Upstream;
use kit::{pg, AdminCalls, Gateway, TestGateway};
use serde_json::{json, Value};

/// A gateway whose `/costly` route costs 5 units, in front of an echo
/// upstream, on SQLite or on `postgres`.
pub async fn gateway(postgres: Option<&pg::Database>) -> Gateway {
    gateway_with(postgres, |_| {}).await
}

/// [`gateway`] with `edit` made to its configuration.
async fn gateway_with(postgres: Option<&pg::Database>, edit: impl FnOnce(&mut Config) + 'static) -> Gateway {
    let upstream = Upstream::start().await;
    let url = upstream.url("");
    let builder = TestGateway::new().upstream(url.clone()).config(move |c| {
        c.usage.flush_interval_ms = 600_000;
        c.authz.listen = Some("127.0.0.1:0".parse().expect("addr"));
        c.routes =
            vec![RouteConfig { path_prefix: "/costly".into(), upstream: url, cost: Some(5), ..Default::default() }];
        edit(c);
    });
    let builder = match postgres {
        Some(db) => builder.postgres(db.url()),
        None => builder,
    };
    let gw = builder.start().await;
    // The echo upstream lives as long as the test.
    std::mem::forget(upstream);
    gw
}

/// The store URL `gw` runs on.
fn store_url(gw: &Gateway, postgres: Option<&pg::Database>) -> String {
    match postgres {
        Some(db) => db.url(),
        None => format!("sqlite://{}", gw.dir.path().join("keygate.db").display()),
    }
}

async fn key_with_quota(admin: &impl AdminCalls, account: &str, quota: Value) -> (String, String) {
    let (key, secret) = admin
        .create_key(json!({ "account_id": account, "name": "metered", "permission": "read", "quota": quota }))
        .await;
    assert_eq!(key["quota"], quota, "{key}");
    (key["id"].as_str().expect("id").to_owned(), secret)
}

/// Waits until `check` holds, up to `limit`.
pub async fn within<F, Fut>(limit: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while !check().await {
        assert!(started.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn seconds(value: Option<&str>, prefix: &str) -> u64 {
    let v = value.unwrap_or_default();
    v.strip_prefix(prefix).and_then(|t| t.parse().ok()).unwrap_or_else(|| panic!("{v:?} after {prefix:?}"))
}

async fn quota_usage(admin: &impl AdminCalls, key_id: &str) -> Value {
    let (s, key) = admin.call(Method::GET, &format!("/v1/keys/{key_id}"), None).await;
    assert_eq!(s, StatusCode::OK);
    key["quota_usage"].clone()
}

/// Quota 10 a day, cost 5: two requests pass, the third is refused whole
/// with the quota's headers; an increment of 5 lets the next one through.
async fn quota_refusal_headers_and_increment(db: Option<&pg::Database>) {
    let gw = gateway(db).await;
    let acc = gw.admin.account("Metered").await;
    let (id, secret) = key_with_quota(&gw.admin, &acc, json!({ "limit": 10, "period": "day" })).await;
    let usage = quota_usage(&gw.admin, &id).await;
    assert_eq!((usage["used"].as_u64(), usage["remaining"].as_u64()), (Some(0), Some(10)), "{usage}");
    assert!(usage["resets_at"].as_str().is_some_and(|t| t.ends_with("T00:00:00Z")), "{usage}");

    let first = get_with_key(gw.proxy(), "/costly/a", &secret).await;
    assert_eq!(first.status, StatusCode::OK);
    assert_eq!(first.header("ratelimit-policy"), Some("\"quota\";q=10;w=86400"));
    let t = seconds(first.header("ratelimit"), "\"quota\";r=5;t=");
    assert!((1..=86_400).contains(&t), "{t}");
    assert_eq!(get_with_key(gw.proxy(), "/costly/b", &secret).await.status, StatusCode::OK);
    let refused = get_with_key(gw.proxy(), "/costly/c", &secret).await;
    assert_eq!((refused.status, refused.code().as_str()), (StatusCode::TOO_MANY_REQUESTS, "quota_exceeded"));
    assert_eq!(refused.header("ratelimit-policy"), Some("\"quota\";q=10;w=86400"));
    let t = seconds(refused.header("ratelimit"), "\"quota\";r=0;t=");
    assert_eq!(refused.header("retry-after").and_then(|r| r.parse::<u64>().ok()), Some(t));
    // A cost-1 request does not fit either: nothing is left.
    assert_eq!(get_with_key(gw.proxy(), "/cheap", &secret).await.code(), "quota_exceeded");

    within(Duration::from_secs(2), "spending reaches the ledger", || async {
        quota_usage(&gw.admin, &id).await == json!({ "used": 10, "remaining": 0, "resets_at": usage["resets_at"] })
    })
    .await;

    let path = format!("/v1/keys/{id}/quota");
    let (s, key) = gw.admin.call(Method::POST, &path, Some(json!({ "operation": "increment", "amount": 5 }))).await;
    assert_eq!(s, StatusCode::OK, "{key}");
    assert_eq!((key["quota_usage"]["used"].as_u64(), key["quota_usage"]["remaining"].as_u64()), (Some(10), Some(5)));
    within(Duration::from_secs(2), "the increment in force", || async {
        get_with_key(gw.proxy(), "/costly/d", &secret).await.status == StatusCode::OK
    })
    .await;
    assert_eq!(get_with_key(gw.proxy(), "/cheap", &secret).await.code(), "quota_exceeded");
    let (_, audit) = gw.admin.call(Method::GET, &format!("/v1/audit?action=key.quota&key_id={id}"), None).await;
    let entry = &audit["items"][0];
    assert_eq!(
        (entry["changes"]["operation"].as_str(), entry["changes"]["amount"].as_u64()),
        (Some("increment"), Some(5))
    );
    assert_eq!(entry["changes"]["remaining"], json!({ "from": 0, "to": 5 }), "{audit}");
    gw.gateway.stop().await;
}

#[tokio::test]
async fn quota_refusal_headers_and_increment_on_sqlite() {
    quota_refusal_headers_and_increment(None).await;
}

#[tokio::test]
async fn quota_refusal_headers_and_increment_on_postgres() {
    let Some(db) = pg::fresh().await else { return };
    quota_refusal_headers_and_increment(Some(&db)).await;
}

/// Every operation of the adjustment route, and its codes.
async fn adjustments_and_their_codes(db: Option<&pg::Database>) {
    let gw = gateway(db).await;
    let acc = gw.admin.account("Adjusted").await;
    let (id, secret) = key_with_quota(&gw.admin, &acc, json!({ "limit": 100, "period": "month" })).await;
    for _ in 0..3 {
        assert_eq!(get_with_key(gw.proxy(), "/", &secret).await.status, StatusCode::OK);
    }
    let path = format!("/v1/keys/{id}/quota");
    let adjust = |body: Value| {
        let (admin, path) = (&gw.admin, path.clone());
        async move { admin.call(Method::POST, &path, Some(body)).await }
    };
    let usage = |v: &Value| (v["quota_usage"]["used"].as_u64(), v["quota_usage"]["remaining"].as_u64());
    // The replica's own spending is in before the adjustment reads the ledger.
    let (s, v) = adjust(json!({ "operation": "set", "amount": 50 })).await;
    assert_eq!((s, usage(&v)), (StatusCode::OK, (Some(3), Some(50))), "{v}");
    let (_, v) = adjust(json!({ "operation": "decrement", "amount": 20 })).await;
    assert_eq!(usage(&v), (Some(3), Some(30)));
    let (_, v) = adjust(json!({ "operation": "decrement", "amount": 1000 })).await;
    assert_eq!(usage(&v), (Some(3), Some(0)), "never below 0");
    within(Duration::from_secs(2), "the decrement in force", || async {
        get_with_key(gw.proxy(), "/", &secret).await.code() == "quota_exceeded"
    })
    .await;
    let (_, v) = adjust(json!({ "operation": "reset" })).await;
    assert_eq!(usage(&v), (Some(0), Some(100)), "a fresh period");
    within(Duration::from_secs(2), "the reset in force", || async {
        get_with_key(gw.proxy(), "/", &secret).await.status == StatusCode::OK
    })
    .await;

    for (bad, field) in [
        (json!({ "operation": "set" }), "amount"),
        (json!({ "operation": "reset", "amount": 1 }), "amount"),
        (json!({ "operation": "double", "amount": 1 }), "operation"),
        (json!({ "operation": "set", "amount": -1 }), "amount"),
        (json!({ "operation": "set", "amount": 1_000_000_000_001_u64 }), "amount"),
        (json!({ "operation": "set", "amount": 1, "extra": true }), "extra"),
    ] {
        let (s, v) = adjust(bad.clone()).await;
        assert_eq!(
            (s, v["code"].as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, Some("validation_failed")),
            "{bad}: {v}"
        );
        assert_eq!(v["field"], field, "{bad}: {v}");
    }
    let (plain, _) = gw.admin.key(&acc, "read").await;
    let (s, v) =
        gw.admin.call(Method::POST, &format!("/v1/keys/{plain}/quota"), Some(json!({ "operation": "reset" }))).await;
    assert_eq!((s, v["code"].as_str()), (StatusCode::CONFLICT, Some("conflict")), "no quota to adjust: {v}");
    let (s, _) = gw.admin.call(Method::POST, "/v1/keys/key_nope/quota", Some(json!({ "operation": "reset" }))).await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // PATCH: a quota set, changed and cleared; a bad one names its field.
    let key_path = format!("/v1/keys/{plain}");
    let (s, v) =
        gw.admin.call(Method::PATCH, &key_path, Some(json!({ "quota": { "limit": 0, "period": "day" } }))).await;
    assert_eq!((s, v["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("quota.limit")), "{v}");
    let (s, v) =
        gw.admin.call(Method::PATCH, &key_path, Some(json!({ "quota": { "limit": 7, "period": "total" } }))).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["quota_usage"], json!({ "used": 0, "remaining": 7, "resets_at": null }));
    let (s, v) = gw.admin.call(Method::PATCH, &key_path, Some(json!({ "quota": null }))).await;
    assert_eq!((s, &v["quota"], &v["quota_usage"]), (StatusCode::OK, &Value::Null, &Value::Null), "{v}");
    gw.gateway.stop().await;
}

#[tokio::test]
async fn adjustments_and_their_codes_on_sqlite() {
    adjustments_and_their_codes(None).await;
}

#[tokio::test]
async fn adjustments_and_their_codes_on_postgres() {
    let Some(db) = pg::fresh().await else { return };
    adjustments_and_their_codes(Some(&db)).await;
}

#[tokio::test]
async fn who_may_adjust_a_quota() {
    let gw = gateway(None).await;
    let acc = gw.admin.account("Mine").await;
    let other = gw.admin.account("Theirs").await;
    let (id, _) = key_with_quota(&gw.admin, &acc, json!({ "limit": 10, "period": "day" })).await;
    let (theirs, _) = key_with_quota(&gw.admin, &other, json!({ "limit": 10, "period": "day" })).await;
    let token = |role: &str, account: Option<&str>| {
        let body = json!({ "name": role, "role": role, "account_id": account });
        let admin = &gw.admin;
        async move {
            let (s, v) = admin.call(Method::POST, "/v1/admin-tokens", Some(body)).await;
            assert_eq!(s, StatusCode::CREATED, "{v}");
            v["secret"].as_str().expect("secret").to_owned()
        }
    };
    let viewer = token("viewer", None).await;
    let confined = token("admin", Some(&acc)).await;
    let adjust = |token: String, key: String| {
        let url = format!("http://{}/v1/keys/{key}/quota", gw.gateway.admin_addr);
        async move {
            let auth = format!("Bearer {token}");
            let headers = [("authorization", auth.as_str()), ("content-type", "application/json")];
            fetch(Method::POST, &url, &headers, r#"{"operation":"increment","amount":1}"#).await
        }
    };
    let r = adjust(viewer.clone(), id.clone()).await;
    assert_eq!((r.status, r.code().as_str()), (StatusCode::FORBIDDEN, "forbidden"));
    assert_eq!(adjust(confined.clone(), id.clone()).await.status, StatusCode::OK);
    assert_eq!(adjust(confined.clone(), theirs.clone()).await.status, StatusCode::NOT_FOUND, "another tenant's key");
    assert_eq!(quota_usage(&gw.admin, &theirs).await["remaining"], 10, "untouched");

    // A confined token cannot give a key a quota beyond its plan's.
    let (s, plan) = gw
        .admin
        .call(Method::POST, "/v1/plans", Some(json!({ "name": "Free", "quota": { "limit": 100, "period": "month" } })))
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, _) =
        gw.admin.call(Method::PATCH, &format!("/v1/accounts/{acc}"), Some(json!({ "plan_id": plan["id"] }))).await;
    assert_eq!(s, StatusCode::OK);
    let url = format!("http://{}/v1/keys/{id}", gw.gateway.admin_addr);
    let auth = format!("Bearer {confined}");
    let headers = [("authorization", auth.as_str()), ("content-type", "application/json")];
    let r = fetch(Method::PATCH, &url, &headers, r#"{"quota":{"limit":101,"period":"month"}}"#).await;
    assert_eq!((r.status, r.code().as_str()), (StatusCode::FORBIDDEN, "forbidden"));
    let r = fetch(Method::PATCH, &url, &headers, r#"{"quota":{"limit":100,"period":"month"}}"#).await;
    assert_eq!(r.status, StatusCode::OK);
    gw.gateway.stop().await;
}

/// Prepaid credits: `total` never resets, so its headers carry no window,
/// no reset time and no `Retry-After`.
#[tokio::test]
async fn total_credits_never_reset_and_say_so() {
    let gw = gateway(None).await;
    let acc = gw.admin.account("Prepaid").await;
    let (id, secret) = key_with_quota(&gw.admin, &acc, json!({ "limit": 2, "period": "total" })).await;
    let ok = get_with_key(gw.proxy(), "/", &secret).await;
    assert_eq!((ok.header("ratelimit-policy"), ok.header("ratelimit")), (Some("\"quota\";q=2"), Some("\"quota\";r=1")));
    assert_eq!(get_with_key(gw.proxy(), "/", &secret).await.status, StatusCode::OK);
    let refused = get_with_key(gw.proxy(), "/", &secret).await;
    assert_eq!((refused.status, refused.code().as_str()), (StatusCode::TOO_MANY_REQUESTS, "quota_exceeded"));
    assert_eq!(refused.header("ratelimit-policy"), Some("\"quota\";q=2"));
    assert_eq!(refused.header("ratelimit"), Some("\"quota\";r=0"));
    assert_eq!(refused.header("retry-after"), None);
    within(Duration::from_secs(2), "spent in the ledger", || async {
        quota_usage(&gw.admin, &id).await == json!({ "used": 2, "remaining": 0, "resets_at": null })
    })
    .await;
    gw.gateway.stop().await;
}

/// What was spent lives in the store: a restarted gateway goes on from it.
async fn restart_keeps_spending(db: Option<&pg::Database>) {
    let gw = gateway(db).await;
    let acc = gw.admin.account("Durable").await;
    let (_, secret) = key_with_quota(&gw.admin, &acc, json!({ "limit": 3, "period": "week" })).await;
    for _ in 0..3 {
        assert_eq!(get_with_key(gw.proxy(), "/", &secret).await.status, StatusCode::OK);
    }
    let url = store_url(&gw, db);
    gw.gateway.stop().await;
    let again = TestGateway::new().config(move |c| c.store.url = url).start().await;
    let r = get_with_key(again.proxy(), "/", &secret).await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::TOO_MANY_REQUESTS, "quota_exceeded"),
        "spent before the restart"
    );
    again.gateway.stop().await;
    drop(gw.dir);
}

#[tokio::test]
async fn restart_keeps_spending_on_sqlite() {
    restart_keeps_spending(None).await;
}

#[tokio::test]
async fn restart_keeps_spending_on_postgres() {
    let Some(db) = pg::fresh().await else { return };
    restart_keeps_spending(Some(&db)).await;
}

/// A plan's quota is pooled over all of the account's keys, on top of each
/// key's own; the refusal names `account_quota`.
async fn account_quota_is_pooled_over_its_keys(db: Option<&pg::Database>) {
    let gw = gateway(db).await;
    let body = json!({ "name": "Five a day", "quota": { "limit": 5, "period": "day" } });
    let (s, plan) = gw.admin.call(Method::POST, "/v1/plans", Some(body)).await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, account) =
        gw.admin.call(Method::POST, "/v1/accounts", Some(json!({ "name": "Pooled", "plan_id": plan["id"] }))).await;
    assert_eq!(s, StatusCode::CREATED, "{account}");
    let acc = account["id"].as_str().expect("id").to_owned();
    assert_eq!(account["quota_usage"]["remaining"], 5, "{account}");
    let (_, a) = gw.admin.key(&acc, "read").await;
    let (_, b) = key_with_quota(&gw.admin, &acc, json!({ "limit": 100, "period": "day" })).await;
    let mut passed = 0;
    for key in [&a, &b, &a, &b, &a] {
        let r = get_with_key(gw.proxy(), "/", key).await;
        assert_eq!(r.status, StatusCode::OK);
        passed += 1;
    }
    let ok = get_with_key(gw.proxy(), "/costly", &b).await;
    assert_eq!(ok.code(), "quota_exceeded");
    for key in [&a, &b] {
        let r = get_with_key(gw.proxy(), "/", key).await;
        assert_eq!((r.status, r.code().as_str()), (StatusCode::TOO_MANY_REQUESTS, "quota_exceeded"));
        assert_eq!(r.header("ratelimit-policy"), Some("\"account_quota\";q=5;w=86400"));
        assert!(r.header("ratelimit").is_some_and(|v| v.starts_with("\"account_quota\";r=0;t=")), "{r:?}");
    }
    assert_eq!(passed, 5);
    within(Duration::from_secs(2), "the pool's usage on the account", || async {
        let (_, v) = gw.admin.call(Method::GET, &format!("/v1/accounts/{acc}"), None).await;
        v["quota_usage"]["used"] == 5 && v["quota_usage"]["remaining"] == 0
    })
    .await;
    // Another account is not touched by this one's pool.
    let other = gw.admin.account("Other").await;
    let (_, c) = gw.admin.key(&other, "read").await;
    assert_eq!(get_with_key(gw.proxy(), "/", &c).await.status, StatusCode::OK);
    gw.gateway.stop().await;
}

#[tokio::test]
async fn account_quota_is_pooled_over_its_keys_on_sqlite() {
    account_quota_is_pooled_over_its_keys(None).await;
}

#[tokio::test]
async fn account_quota_is_pooled_over_its_keys_on_postgres() {
    let Some(db) = pg::fresh().await else { return };
    account_quota_is_pooled_over_its_keys(Some(&db)).await;
}

/// Forward auth decides through the proxy's own admission: it spends the
/// same quota, at the route's cost, and refuses the same way.
#[tokio::test]
async fn forward_auth_spends_the_quota_too() {
    let gw = gateway(None).await;
    let acc = gw.admin.account("Ingress").await;
    let (_, secret) = key_with_quota(&gw.admin, &acc, json!({ "limit": 7, "period": "day" })).await;
    let authz = gw.gateway.authz_addr.expect("forward auth on");
    let ask = |uri: &'static str| {
        let secret = secret.clone();
        async move {
            let headers = [("x-forwarded-method", "GET"), ("x-forwarded-uri", uri), ("x-api-key", secret.as_str())];
            fetch(Method::GET, &format!("http://{authz}/"), &headers, "").await
        }
    };
    let r = ask("/costly/x").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.header("ratelimit").is_some_and(|v| v.starts_with("\"quota\";r=2;")), "{:?}", r.header("ratelimit"));
    assert_eq!(get_with_key(gw.proxy(), "/", &secret).await.status, StatusCode::OK, "1 left after 5 + 1");
    let r = ask("/costly/y").await;
    assert_eq!((r.status, r.code().as_str()), (StatusCode::TOO_MANY_REQUESTS, "quota_exceeded"));
    assert_eq!(ask("/cheap").await.status, StatusCode::OK);
    assert_eq!(get_with_key(gw.proxy(), "/", &secret).await.code(), "quota_exceeded");
    gw.gateway.stop().await;
}

/// With `proxy.override_headers: pass`, a request spends the cost of the
/// route the override header names (what the upstream serves), on the
/// proxy and in forward auth: a request line's cheap path does not make a
/// costly one cheap. Several paths: the costliest.
#[tokio::test]
async fn an_overridden_path_spends_its_own_route_cost() {
    let gw = gateway_with(None, |c| c.proxy.override_headers = HeaderRule::Pass).await;
    let acc = gw.admin.account("Overrides").await;
    let (_, secret) = key_with_quota(&gw.admin, &acc, json!({ "limit": 16, "period": "day" })).await;
    let remaining = |r: &Reply| r.header("ratelimit").map(str::to_owned).unwrap_or_default();
    let proxy = format!("http://{}", gw.proxy());
    let key = ("x-api-key", secret.as_str());

    let r = fetch(Method::GET, &format!("{proxy}/cheap"), &[key, ("x-original-url", "/costly/a")], "").await;
    assert_eq!(r.status, StatusCode::OK, "{}", describe(&r));
    assert!(remaining(&r).starts_with("\"quota\";r=11;"), "5 spent, not 1: {}", remaining(&r));
    let r = fetch(Method::GET, &format!("{proxy}/costly/b"), &[key, ("x-rewrite-url", "/cheap")], "").await;
    assert!(remaining(&r).starts_with("\"quota\";r=6;"), "the request line's 5: {}", remaining(&r));

    let authz = gw.gateway.authz_addr.expect("forward auth on");
    let headers = [("x-forwarded-method", "GET"), ("x-forwarded-uri", "/cheap"), ("x-original-url", "/costly/c"), key];
    let r = fetch(Method::GET, &format!("http://{authz}/"), &headers, "").await;
    assert_eq!(r.status, StatusCode::OK, "{}", describe(&r));
    assert!(remaining(&r).starts_with("\"quota\";r=1;"), "forward auth spends 5 too: {}", remaining(&r));
    // One unit left: the cheap request line fits, the costly override does not.
    let r = fetch(Method::GET, &format!("{proxy}/cheap"), &[key, ("x-original-url", "/costly/d")], "").await;
    assert_eq!(r.code(), "quota_exceeded", "{}", describe(&r));
    assert_eq!(get_with_key(gw.proxy(), "/cheap", &secret).await.status, StatusCode::OK);
    gw.gateway.stop().await;
}

/// verify answers the tightest quota's `remaining` and `resets_at`, spends
/// like the proxy, and spends nothing on a dry run.
#[tokio::test]
async fn verify_answers_the_quota_and_spends_unless_a_dry_run() {
    let gw = gateway(None).await;
    let acc = gw.admin.account("Verified").await;
    let (_, secret) = key_with_quota(&gw.admin, &acc, json!({ "limit": 2, "period": "month" })).await;
    let verify = |body: Value| {
        let admin = &gw.admin;
        async move {
            let (s, v) = admin.call(Method::POST, "/v1/keys/verify", Some(body)).await;
            assert_eq!(s, StatusCode::OK, "{v}");
            v
        }
    };
    let dry = json!({ "secret": secret, "dry_run": true });
    for _ in 0..3 {
        let v = verify(dry.clone()).await;
        assert_eq!((v["valid"].as_bool(), v["remaining"].as_u64()), (Some(true), Some(2)), "{v}");
        assert!(v["resets_at"].as_str().is_some_and(|t| t.contains("-01T00:00:00")), "{v}");
    }
    let v = verify(json!({ "secret": secret })).await;
    assert_eq!((v["code"].as_str(), v["remaining"].as_u64()), (Some("allowed"), Some(1)));
    assert_eq!(get_with_key(gw.proxy(), "/", &secret).await.status, StatusCode::OK);
    let v = verify(json!({ "secret": secret })).await;
    assert_eq!(
        (v["valid"].as_bool(), v["code"].as_str(), v["remaining"].as_u64()),
        (Some(false), Some("quota_exceeded"), Some(0))
    );
    let v = verify(dry).await;
    assert_eq!(v["code"], "quota_exceeded", "a dry run reads the quota: {v}");
    let (_, plain) = gw.admin.key(&acc, "read").await;
    let v = verify(json!({ "secret": plain })).await;
    assert_eq!((&v["remaining"], &v["resets_at"]), (&Value::Null, &Value::Null), "no quota applies");
    gw.gateway.stop().await;
}

/// The reply a test prints when an assertion fails.
fn describe(r: &Reply) -> String {
    format!("{} {:?}", r.status, String::from_utf8_lossy(&r.body))
}
