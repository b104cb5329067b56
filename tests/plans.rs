//! Plans (issue 15): `/v1/plans` on both stores, `plan_id` on accounts,
//! what confined tokens may not do with them, the account's pooled rate
//! limit on the request path, and a plan change reaching another replica.

mod kit;

use std::time::{Duration, Instant};

use http::{Method, StatusCode};
use kit::http::get_with_key;
use kit::{pg, Admin, AdminCalls, TestGateway};
use serde_json::{json, Value};

async fn plan(admin: &impl AdminCalls, body: Value) -> String {
    let (s, v) = admin.call(Method::POST, "/v1/plans", Some(body)).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    v["id"].as_str().expect("id").to_owned()
}

async fn account_on(admin: &impl AdminCalls, name: &str, plan_id: &str) -> String {
    let (s, v) = admin.call(Method::POST, "/v1/accounts", Some(json!({ "name": name, "plan_id": plan_id }))).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["plan_id"], plan_id);
    v["id"].as_str().expect("id").to_owned()
}

/// Every route and code of `/v1/plans` and of `plan_id` on accounts; the
/// same on SQLite and PostgreSQL.
async fn plans_routes_and_codes(admin: Admin) {
    let body = json!({ "name": "Free", "rate_limit": { "requests": 10, "per_seconds": 1 }, "quota": { "limit": 10000, "period": "month" } });
    let (s, free) = admin.call(Method::POST, "/v1/plans", Some(body)).await;
    assert_eq!(s, StatusCode::CREATED, "{free}");
    let id = free["id"].as_str().expect("id").to_owned();
    assert!(id.starts_with("plan_"), "{id}");
    let mut fields: Vec<&str> = free.as_object().expect("object").keys().map(String::as_str).collect();
    fields.sort_unstable();
    assert_eq!(fields, ["created_at", "id", "name", "quota", "rate_limit", "updated_at"]);
    assert_eq!(free["quota"], json!({ "limit": 10000, "period": "month" }));

    for (bad, field) in [
        (json!({ "name": " " }), "name"),
        (json!({ "name": "x", "rate_limit": { "requests": 0, "per_seconds": 1 } }), "rate_limit.requests"),
        (json!({ "name": "x", "quota": { "limit": 0, "period": "day" } }), "quota.limit"),
        (json!({ "name": "x", "quota": { "limit": 5, "period": "year" } }), "quota.period"),
        (json!({ "name": "x", "burst": 5 }), "burst"),
    ] {
        let (s, v) = admin.call(Method::POST, "/v1/plans", Some(bad.clone())).await;
        assert_eq!((s, v["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("validation_failed")), "{bad}");
        assert_eq!(v["field"], field, "{bad}: {v}");
    }

    let pro = plan(&admin, json!({ "name": "Pro" })).await;
    let (s, page) = admin.call(Method::GET, "/v1/plans?limit=1", None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(page["items"][0]["id"], pro.as_str(), "newest first");
    assert_eq!(page["items"][0]["rate_limit"], Value::Null, "unset limits are null");
    let cursor = page["next_cursor"].as_str().expect("a next page").to_owned();
    let (_, next) = admin.call(Method::GET, &format!("/v1/plans?limit=1&cursor={cursor}"), None).await;
    assert_eq!((next["items"][0]["id"].as_str(), &next["next_cursor"]), (Some(id.as_str()), &Value::Null));
    let (s, v) = admin.call(Method::GET, "/v1/plans?limit=0", None).await;
    assert_eq!((s, v["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("limit")));

    let path = format!("/v1/plans/{id}");
    assert_eq!(admin.call(Method::GET, &path, None).await.1["name"], "Free");
    let (s, v) = admin.call(Method::GET, "/v1/plans/plan_nope", None).await;
    assert_eq!((s, v["code"].as_str()), (StatusCode::NOT_FOUND, Some("not_found")));

    // PATCH: null clears, absent leaves alone.
    let (s, v) = admin.call(Method::PATCH, &path, Some(json!({ "quota": null, "name": "Free tier" }))).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!((v["quota"].clone(), v["rate_limit"]["requests"].clone()), (Value::Null, json!(10)));
    assert_eq!(v["name"], "Free tier");
    let (s, v) = admin.call(Method::PATCH, &path, Some(json!({ "name": null }))).await;
    assert_eq!((s, v["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("name")));
    let (s, _) = admin.call(Method::PATCH, "/v1/plans/plan_nope", Some(json!({ "name": "x" }))).await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // Accounts name their plan; an unknown plan is the body's fault.
    let acc = account_on(&admin, "Acme", &id).await;
    let (_, shown) = admin.call(Method::GET, &format!("/v1/accounts/{acc}"), None).await;
    assert_eq!((shown["plan_id"].as_str(), &shown["quota_usage"]), (Some(id.as_str()), &Value::Null), "{shown}");
    let (s, v) = admin.call(Method::POST, "/v1/accounts", Some(json!({ "name": "B", "plan_id": "plan_nope" }))).await;
    assert_eq!((s, v["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("plan_id")), "{v}");
    let acc_path = format!("/v1/accounts/{acc}");
    let (s, v) = admin.call(Method::PATCH, &acc_path, Some(json!({ "plan_id": "plan_nope" }))).await;
    assert_eq!((s, v["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("plan_id")), "{v}");
    let (_, list) = admin.call(Method::GET, "/v1/accounts", None).await;
    assert_eq!(list["items"][0]["plan_id"], id.as_str());

    // A plan in use cannot go; off the plan, it can.
    let (s, v) = admin.call(Method::DELETE, &path, None).await;
    assert_eq!((s, v["code"].as_str()), (StatusCode::CONFLICT, Some("conflict")), "{v}");
    let (s, v) = admin.call(Method::PATCH, &acc_path, Some(json!({ "plan_id": null }))).await;
    assert_eq!((s, &v["plan_id"]), (StatusCode::OK, &Value::Null), "{v}");
    let (s, _) = admin.call(Method::DELETE, &path, None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert_eq!(admin.call(Method::GET, &path, None).await.0, StatusCode::NOT_FOUND);
    assert_eq!(admin.call(Method::DELETE, &path, None).await.0, StatusCode::NOT_FOUND);

    let (_, audit) = admin.call(Method::GET, "/v1/audit?action=plan.update", None).await;
    let entry = &audit["items"][0];
    assert_eq!((entry["target_id"].as_str(), &entry["account_id"]), (Some(id.as_str()), &Value::Null), "{audit}");
    assert_eq!(entry["changes"]["quota"]["to"], Value::Null);
    let (_, audit) = admin.call(Method::GET, "/v1/audit?action=plan.delete", None).await;
    assert_eq!(audit["items"][0]["target_id"], id.as_str());
    let (_, audit) = admin.call(Method::GET, &format!("/v1/audit?account_id={acc}"), None).await;
    let actions: Vec<&str> =
        audit["items"].as_array().expect("items").iter().filter_map(|e| e["action"].as_str()).collect();
    assert_eq!(actions, ["account.update", "account.create"], "{audit}");
    assert_eq!(audit["items"][0]["changes"]["plan_id"], json!({ "from": id, "to": null }));
}

#[tokio::test]
async fn plans_routes_and_codes_on_sqlite() {
    plans_routes_and_codes(Admin::new().await).await;
}

#[tokio::test]
async fn plans_routes_and_codes_on_postgres() {
    let Some(db) = pg::fresh().await else { return };
    plans_routes_and_codes(TestGateway::new().postgres(db.url()).admin().await).await;
}

async fn token(admin: &Admin, role: &str, account: Option<&str>) -> String {
    let body = json!({ "name": format!("{role} token"), "role": role, "account_id": account });
    let (s, v) = admin.call(Method::POST, "/v1/admin-tokens", Some(body)).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    v["secret"].as_str().expect("secret").to_owned()
}

#[tokio::test]
async fn confined_tokens_cannot_change_their_plan_or_go_beyond_it() {
    let admin = Admin::new().await;
    let free = plan(&admin, json!({ "name": "Free", "rate_limit": { "requests": 10, "per_seconds": 60 } })).await;
    let pro = plan(&admin, json!({ "name": "Pro", "rate_limit": { "requests": 100, "per_seconds": 1 } })).await;
    let acc = account_on(&admin, "Tenant", &free).await;
    let confined = token(&admin, "admin", Some(&acc)).await;
    let as_tenant = |method: Method, path: String, body: Value| {
        let confined = confined.clone();
        let admin = &admin;
        async move { admin.call_as(Some(&confined), method, &path, Some(body.to_string())).await }
    };
    let forbidden = |(s, v): (StatusCode, Value)| {
        assert_eq!((s, v["code"].as_str()), (StatusCode::FORBIDDEN, Some("forbidden")), "{v}");
    };

    // Its own plan: neither up, nor off, nor "to the same one".
    let acc_path = format!("/v1/accounts/{acc}");
    for body in [
        json!({ "plan_id": pro }),
        json!({ "plan_id": null }),
        json!({ "plan_id": free }),
        json!({ "name": "R", "plan_id": pro }),
    ] {
        forbidden(as_tenant(Method::PATCH, acc_path.clone(), body).await);
    }
    assert_eq!(admin.call(Method::GET, &acc_path, None).await.1["plan_id"], free.as_str(), "nothing changed");

    // Plans: read, never written.
    let (s, list) = as_tenant(Method::GET, "/v1/plans".into(), Value::Null).await;
    assert_eq!((s, list["items"].as_array().map(Vec::len)), (StatusCode::OK, Some(2)));
    assert_eq!(as_tenant(Method::GET, format!("/v1/plans/{free}"), Value::Null).await.0, StatusCode::OK);
    forbidden(as_tenant(Method::POST, "/v1/plans".into(), json!({ "name": "Mine" })).await);
    let raise = json!({ "rate_limit": { "requests": 1000000, "per_seconds": 1 } });
    forbidden(as_tenant(Method::PATCH, format!("/v1/plans/{free}"), raise).await);
    forbidden(as_tenant(Method::DELETE, format!("/v1/plans/{pro}"), Value::Null).await);
    let viewer = token(&admin, "viewer", None).await;
    let (s, v) =
        admin.call_as(Some(&viewer), Method::POST, "/v1/plans", Some(json!({ "name": "V" }).to_string())).await;
    assert_eq!((s, v["code"].as_str()), (StatusCode::FORBIDDEN, Some("forbidden")));
    assert_eq!(admin.call_as(Some(&viewer), Method::GET, "/v1/plans", None).await.0, StatusCode::OK);

    // Keys: within the plan's 10/min, never beyond it.
    let key = |rate: Value| json!({ "account_id": acc, "name": "k", "permission": "read", "rate_limit": rate });
    for looser in [json!({ "requests": 11, "per_seconds": 60 }), json!({ "requests": 1, "per_seconds": 1 })] {
        forbidden(as_tenant(Method::POST, "/v1/keys".into(), key(looser)).await);
    }
    let (s, v) = as_tenant(Method::POST, "/v1/keys".into(), key(json!({ "requests": 5, "per_seconds": 60 }))).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let key_path = format!("/v1/keys/{}", v["key"]["id"].as_str().expect("id"));
    let (s, v) = as_tenant(Method::POST, "/v1/keys".into(), key(Value::Null)).await;
    assert_eq!(s, StatusCode::CREATED, "no own limit: the pooled one binds it: {v}");
    forbidden(
        as_tenant(Method::PATCH, key_path.clone(), json!({ "rate_limit": { "requests": 20, "per_seconds": 60 } }))
            .await,
    );
    let (s, v) =
        as_tenant(Method::PATCH, key_path.clone(), json!({ "rate_limit": { "requests": 10, "per_seconds": 60 } }))
            .await;
    assert_eq!((s, v["rate_limit"]["requests"].as_i64()), (StatusCode::OK, Some(10)), "{v}");
    // The operator may grant more.
    let (s, _) =
        admin.call(Method::PATCH, &key_path, Some(json!({ "rate_limit": { "requests": 20, "per_seconds": 1 } }))).await;
    assert_eq!(s, StatusCode::OK);
}

/// Sends `n` requests with `key`; returns the statuses and the
/// `RateLimit-Policy` of each.
async fn burst(proxy: std::net::SocketAddr, key: &str, n: usize) -> Vec<(StatusCode, String)> {
    let mut out = Vec::new();
    for _ in 0..n {
        let r = get_with_key(proxy, "/", key).await;
        out.push((r.status, r.header("ratelimit-policy").unwrap_or_default().to_owned()));
    }
    out
}

#[tokio::test]
async fn two_keys_of_one_account_share_its_rate_limit() {
    let gw = TestGateway::new().start().await;
    let plan_id = plan(&gw.admin, json!({ "name": "Ten", "rate_limit": { "requests": 10, "per_seconds": 60 } })).await;
    let acc = account_on(&gw.admin, "Pooled", &plan_id).await;
    let (_, a) = gw.admin.key(&acc, "read").await;
    let (_, b) = gw.admin.key(&acc, "read").await;
    let (mut passed, mut refused) = (0, Vec::new());
    for _ in 0..6 {
        for key in [&a, &b] {
            let r = get_with_key(gw.proxy(), "/", key).await;
            match r.status {
                StatusCode::OK => passed += 1,
                _ => refused.push((r.status, r.code(), r.header("ratelimit-policy").map(str::to_owned))),
            }
        }
    }
    assert_eq!(passed, 10, "{refused:?}");
    for (status, code, policy) in &refused {
        assert_eq!((*status, code.as_str()), (StatusCode::TOO_MANY_REQUESTS, "rate_limited"));
        assert_eq!(policy.as_deref(), Some("\"account\";q=10;w=60"), "the refusal names the account's limit");
    }
    // Another account is not touched by this one's pool.
    let other = gw.admin.account("Other").await;
    let (_, c) = gw.admin.key(&other, "read").await;
    assert_eq!(get_with_key(gw.proxy(), "/", &c).await.status, StatusCode::OK);

    // A key's own, tighter limit refuses first, and says it is the key's.
    let roomy = plan(&gw.admin, json!({ "name": "Roomy", "rate_limit": { "requests": 100, "per_seconds": 60 } })).await;
    let acc2 = account_on(&gw.admin, "Own", &roomy).await;
    let (own, secret) = gw
        .admin
        .create_key(json!({ "account_id": acc2, "name": "tight", "permission": "read", "rate_limit": { "requests": 2, "per_seconds": 60 } }))
        .await;
    assert!(own["id"].is_string());
    let seen = burst(gw.proxy(), &secret, 3).await;
    assert_eq!(seen[0].0, StatusCode::OK);
    assert_eq!(seen[0].1, "\"key\";q=2;w=60", "allowed: the tighter limit's state");
    assert_eq!((seen[2].0, seen[2].1.as_str()), (StatusCode::TOO_MANY_REQUESTS, "\"key\";q=2;w=60"));
    gw.gateway.stop().await;
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
async fn a_plan_change_reaches_another_replica_within_1s() {
    let Some(db) = pg::fresh().await else { return };
    let replica = |poll_ms: u64| {
        TestGateway::new()
            .postgres(db.url())
            .config(move |c| {
                c.store.poll_interval_ms = poll_ms;
                c.usage.flush_interval_ms = 600_000;
            })
            .start()
    };
    // B polls only every minute: what reaches it in time came by NOTIFY.
    let (a, b) = tokio::join!(replica(1_000), replica(60_000));
    let plan_id =
        plan(&a.admin, json!({ "name": "Wide", "rate_limit": { "requests": 100000, "per_seconds": 60 } })).await;
    let acc = account_on(&a.admin, "Tenant", &plan_id).await;
    let (_, secret) = a.admin.key(&acc, "read").await;
    within(Duration::from_secs(1), || async { get_with_key(b.proxy(), "/", &secret).await.status == StatusCode::OK })
        .await;

    // The plan tightened on A: B refuses in the account's name.
    let tight = json!({ "rate_limit": { "requests": 1, "per_seconds": 3600 } });
    let (s, _) = a.admin.call(Method::PATCH, &format!("/v1/plans/{plan_id}"), Some(tight)).await;
    assert_eq!(s, StatusCode::OK);
    let took = within(Duration::from_secs(1), || async {
        let r = get_with_key(b.proxy(), "/", &secret).await;
        r.status == StatusCode::TOO_MANY_REQUESTS && r.header("ratelimit-policy") == Some("\"account\";q=1;w=3600")
    })
    .await;
    eprintln!("plan edit on A in force on B after {took:?}");

    // The account taken off its plan on A: B lets it through again.
    let (s, _) = a.admin.call(Method::PATCH, &format!("/v1/accounts/{acc}"), Some(json!({ "plan_id": null }))).await;
    assert_eq!(s, StatusCode::OK);
    let took = within(Duration::from_secs(1), || async {
        get_with_key(b.proxy(), "/", &secret).await.status == StatusCode::OK
    })
    .await;
    eprintln!("plan removal on A in force on B after {took:?}");
    a.gateway.stop().await;
    b.gateway.stop().await;
}
