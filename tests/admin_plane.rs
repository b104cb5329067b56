//! The admin plane for teams (issue 4): roles and confined admin tokens,
//! the audit trail, bulk and leak revocation, and verify.

mod kit;

use std::time::{Duration, Instant};

use http::{Method, StatusCode};
use kit::http::{fetch, get_with_key};
use kit::AdminCalls;
use kit::{Admin, Gateway};
use serde_json::{json, Value};

struct World {
    admin: Admin,
    acc_a: String,
    acc_b: String,
    key_a: String,
    key_b: String,
    tokens: Vec<(&'static str, Option<String>)>,
}

async fn token(admin: &Admin, role: &str, account: Option<&str>) -> String {
    let body = json!({ "name": format!("{role} token"), "role": role, "account_id": account });
    let (s, v) = admin.call(Method::POST, "/v1/admin-tokens", Some(body)).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let secret = v["secret"].as_str().expect("secret").to_owned();
    assert!(secret.starts_with("kga_"), "{secret}");
    secret
}

async fn world() -> World {
    let admin = Admin::new().await;
    let acc_a = admin.account("Tenant A").await;
    let acc_b = admin.account("Tenant B").await;
    let (ka, _) = admin.create_key(json!({ "account_id": acc_a, "name": "a", "permission": "read" })).await;
    let (kb, _) = admin.create_key(json!({ "account_id": acc_b, "name": "b", "permission": "read" })).await;
    let tokens = vec![
        ("owner", Some(kit::TOKEN.to_string())),
        ("admin", Some(token(&admin, "admin", None).await)),
        ("viewer", Some(token(&admin, "viewer", None).await)),
        ("confined", Some(token(&admin, "admin", Some(&acc_a)).await)),
        ("confined_viewer", Some(token(&admin, "viewer", Some(&acc_a)).await)),
        ("none", None),
    ];
    World {
        admin,
        key_a: ka["id"].as_str().expect("id").to_owned(),
        key_b: kb["id"].as_str().expect("id").to_owned(),
        acc_a,
        acc_b,
        tokens,
    }
}

#[tokio::test]
async fn role_by_route_matrix() {
    let w = world().await;
    let (a, b, ka, kb) = (&w.acc_a, &w.acc_b, &w.key_a, &w.key_b);
    let new_key = |acc: &str| json!({ "account_id": acc, "name": "n", "permission": "read" }).to_string();
    // (method, path, body, [owner, admin, viewer, confined(A) admin, confined(A) viewer, no token])
    let rows: Vec<(Method, String, Option<String>, [u16; 6])> = vec![
        (Method::POST, "/v1/accounts".into(), Some(json!({ "name": "x" }).to_string()), [201, 201, 403, 403, 403, 401]),
        (Method::GET, "/v1/accounts".into(), None, [200, 200, 200, 200, 200, 401]),
        (Method::GET, format!("/v1/accounts/{a}"), None, [200, 200, 200, 200, 200, 401]),
        (Method::GET, format!("/v1/accounts/{b}"), None, [200, 200, 200, 404, 404, 401]),
        (
            Method::PATCH,
            format!("/v1/accounts/{a}"),
            Some(json!({ "name": "A2" }).to_string()),
            [200, 200, 403, 200, 403, 401],
        ),
        (
            Method::PATCH,
            format!("/v1/accounts/{b}"),
            Some(json!({ "name": "B2" }).to_string()),
            [200, 200, 403, 404, 404, 401],
        ),
        (Method::POST, "/v1/keys".into(), Some(new_key(a)), [201, 201, 403, 201, 403, 401]),
        (Method::POST, "/v1/keys".into(), Some(new_key(b)), [201, 201, 403, 422, 403, 401]),
        (Method::GET, "/v1/keys".into(), None, [200, 200, 200, 200, 200, 401]),
        (Method::GET, format!("/v1/keys/{ka}"), None, [200, 200, 200, 200, 200, 401]),
        (Method::GET, format!("/v1/keys/{kb}"), None, [200, 200, 200, 404, 404, 401]),
        (
            Method::PATCH,
            format!("/v1/keys/{ka}"),
            Some(json!({ "name": "a2" }).to_string()),
            [200, 200, 403, 200, 403, 401],
        ),
        (
            Method::PATCH,
            format!("/v1/keys/{kb}"),
            Some(json!({ "name": "b2" }).to_string()),
            [200, 200, 403, 404, 404, 401],
        ),
        (Method::POST, format!("/v1/keys/{kb}/rotate"), None, [200, 200, 403, 404, 404, 401]),
        (
            Method::POST,
            "/v1/keys/verify".into(),
            Some(json!({ "secret": "kg_live_x" }).to_string()),
            [200, 200, 200, 200, 200, 401],
        ),
        (
            Method::POST,
            "/v1/keys/report-leak".into(),
            Some(json!({ "secret": "kg_live_x" }).to_string()),
            [202, 202, 403, 202, 403, 401],
        ),
        (
            Method::POST,
            "/v1/keys/bulk-revoke".into(),
            Some(json!({ "ids": ["key_none"] }).to_string()),
            [200, 200, 403, 200, 403, 401],
        ),
        (Method::GET, "/v1/audit".into(), None, [200, 200, 200, 200, 200, 401]),
        (Method::GET, "/v1/admin-tokens".into(), None, [200, 403, 403, 403, 403, 401]),
        (
            Method::POST,
            "/v1/admin-tokens".into(),
            Some(json!({ "name": "t", "role": "viewer" }).to_string()),
            [201, 403, 403, 403, 403, 401],
        ),
        (Method::DELETE, "/v1/admin-tokens/tok_none".into(), None, [404, 403, 403, 403, 403, 401]),
    ];
    let mut failures = Vec::new();
    for (method, path, body, expected) in rows {
        for ((role, token), want) in w.tokens.iter().zip(expected) {
            let (status, v) = w.admin.call_as(token.as_deref(), method.clone(), &path, body.clone()).await;
            if status.as_u16() != want {
                failures.push(format!("{role} {method} {path}: got {status}, want {want}: {v}"));
            }
        }
    }
    // Revocation last, since it is final.
    for ((role, token), want) in w.tokens.iter().zip([200, 200, 403, 404, 404, 401]) {
        let (status, _) = w.admin.call_as(token.as_deref(), Method::POST, &format!("/v1/keys/{kb}/revoke"), None).await;
        if status.as_u16() != want {
            failures.push(format!("{role} revoke B: got {status}, want {want}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test]
async fn confined_token_lists_only_its_account() {
    let w = world().await;
    let confined = w.tokens[3].1.clone();
    let (_, keys) = w.admin.call_as(confined.as_deref(), Method::GET, "/v1/keys", None).await;
    let accounts: Vec<&str> =
        keys["items"].as_array().expect("items").iter().map(|k| k["account_id"].as_str().expect("acc")).collect();
    assert!(!accounts.is_empty() && accounts.iter().all(|a| *a == w.acc_a), "{accounts:?}");
    let (_, accs) = w.admin.call_as(confined.as_deref(), Method::GET, "/v1/accounts", None).await;
    assert_eq!(accs["items"].as_array().expect("items").len(), 1);
    let (_, other) =
        w.admin.call_as(confined.as_deref(), Method::GET, &format!("/v1/keys?account_id={}", w.acc_b), None).await;
    assert_eq!(other["items"].as_array().expect("items").len(), 0);
    let (_, audit) = w.admin.call_as(confined.as_deref(), Method::GET, "/v1/audit", None).await;
    assert!(audit["items"].as_array().expect("items").iter().all(|e| e["account_id"] == w.acc_a.as_str()));
}

#[tokio::test]
async fn me_tells_a_token_its_role_and_account() {
    let w = world().await;
    let (s, me) = w.admin.call(Method::GET, "/v1/me", None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(me, json!({ "id": "env", "name": "KEYGATE_ADMIN_TOKEN", "role": "owner", "account_id": null }));
    let (_, me) = w.admin.call_as(w.tokens[4].1.as_deref(), Method::GET, "/v1/me", None).await;
    assert_eq!((me["role"].as_str(), me["account_id"].as_str()), (Some("viewer"), Some(w.acc_a.as_str())));
    assert!(me["id"].as_str().expect("id").starts_with("tok_"));
}

#[tokio::test]
async fn deleted_admin_token_stops_working() {
    let admin = Admin::new().await;
    let secret = token(&admin, "viewer", None).await;
    let (_, list) = admin.call(Method::GET, "/v1/admin-tokens", None).await;
    let id = list["items"][0]["id"].as_str().expect("id").to_owned();
    assert!(!list.to_string().contains(&secret[4..]), "list never shows the secret");
    assert_eq!(admin.call_as(Some(&secret), Method::GET, "/v1/keys", None).await.0, StatusCode::OK);
    let (s, _) = admin.call(Method::DELETE, &format!("/v1/admin-tokens/{id}"), None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert_eq!(admin.call_as(Some(&secret), Method::GET, "/v1/keys", None).await.0, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn every_write_is_audited_without_secrets() {
    let admin = Admin::new().await;
    let acc = admin.account("A").await;
    admin.call(Method::PATCH, &format!("/v1/accounts/{acc}"), Some(json!({ "name": "A!" }))).await;
    let (key, s1) = admin.create_key(json!({ "account_id": acc, "name": "k", "permission": "read" })).await;
    let id = key["id"].as_str().expect("id").to_owned();
    admin.call(Method::PATCH, &format!("/v1/keys/{id}"), Some(json!({ "name": "k2", "permission": "write" }))).await;
    admin.call(Method::PATCH, &format!("/v1/keys/{id}"), Some(json!({ "enabled": false }))).await;
    admin.call(Method::PATCH, &format!("/v1/keys/{id}"), Some(json!({ "enabled": true }))).await;
    let (_, rotated) =
        admin.call(Method::POST, &format!("/v1/keys/{id}/rotate"), Some(json!({ "grace_period_seconds": 60 }))).await;
    let s2 = rotated["secret"].as_str().expect("secret").to_owned();
    admin.call(Method::POST, "/v1/keys/report-leak", Some(json!({ "secret": s1 }))).await;
    admin.call(Method::POST, &format!("/v1/keys/{id}/revoke"), None).await;
    let t = token(&admin, "viewer", None).await;
    let (_, toks) = admin.call(Method::GET, "/v1/admin-tokens", None).await;
    admin
        .call(Method::DELETE, &format!("/v1/admin-tokens/{}", toks["items"][0]["id"].as_str().expect("id")), None)
        .await;

    let (s, audit) = admin.call(Method::GET, "/v1/audit?limit=200", None).await;
    assert_eq!(s, StatusCode::OK);
    let items = audit["items"].as_array().expect("items");
    let actions: Vec<&str> = items.iter().rev().map(|e| e["action"].as_str().expect("action")).collect();
    assert_eq!(
        actions,
        [
            "account.create",
            "account.update",
            "key.create",
            "key.update",
            "key.disable",
            "key.enable",
            "key.rotate",
            "key.report_leak",
            "key.revoke",
            "admin_token.create",
            "admin_token.delete"
        ]
    );
    for e in items {
        for field in [
            "id",
            "at",
            "actor_id",
            "actor_name",
            "action",
            "target_id",
            "account_id",
            "request_id",
            "source_ip",
            "changes",
        ] {
            assert!(e.get(field).is_some(), "{field} missing: {e}");
        }
        assert_eq!(e["actor_id"], "env");
        assert!(e["request_id"].as_str().is_some_and(|r| !r.is_empty()));
    }
    let text = audit.to_string();
    for secret in [&s1, &s2, &t, &kit::TOKEN.to_string()] {
        assert!(!text.contains(&secret[8..]), "a secret is in the audit trail");
    }
    let update = items.iter().find(|e| e["action"] == "key.update").expect("update");
    assert_eq!(update["changes"]["permission"], json!({ "from": "read", "to": "write" }));
    let (_, by_key) = admin.call(Method::GET, &format!("/v1/audit?key_id={id}&action=key.rotate"), None).await;
    assert_eq!(by_key["items"].as_array().expect("items").len(), 1);
    let (_, none) = admin.call(Method::GET, "/v1/audit?since=2999-01-01T00:00:00Z", None).await;
    assert_eq!(none["items"].as_array().expect("items").len(), 0);
    let (_, page) = admin.call(Method::GET, "/v1/audit?limit=4", None).await;
    assert!(page["next_cursor"].is_string());
    let (s, v) = admin.call(Method::GET, "/v1/audit?since=yesterday", None).await;
    assert_eq!((s, v["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("since")));
}

#[tokio::test]
async fn bulk_revoke_reports_each_id() {
    let admin = Admin::new().await;
    let acc = admin.account("A").await;
    let mut ids = Vec::new();
    for i in 0..3 {
        let (k, _) =
            admin.create_key(json!({ "account_id": acc, "name": format!("k{i}"), "permission": "read" })).await;
        ids.push(k["id"].as_str().expect("id").to_owned());
    }
    let body = json!({ "ids": [ids[0], ids[1], "key_missing"] });
    let (s, v) = admin.call(Method::POST, "/v1/keys/bulk-revoke", Some(body)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let mut revoked: Vec<Value> = v["revoked"].as_array().expect("revoked").clone();
    revoked.sort_by_key(|x| x.to_string());
    let mut expected = vec![json!(ids[0]), json!(ids[1])];
    expected.sort_by_key(|x| x.to_string());
    assert_eq!(revoked, expected);
    assert_eq!(v["not_found"], json!(["key_missing"]));
    let (_, still) = admin.call(Method::GET, &format!("/v1/keys/{}", ids[2]), None).await;
    assert_eq!(still["status"], "active");
    let (s, v) = admin.call(Method::POST, "/v1/keys/bulk-revoke", Some(json!({ "ids": [] }))).await;
    assert_eq!((s, v["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("ids")));
}

#[tokio::test]
async fn bulk_revoke_is_all_or_nothing_when_the_store_fails() {
    let admin = Admin::new().await;
    let acc = admin.account("A").await;
    let (k1, _) = admin.create_key(json!({ "account_id": acc, "name": "k1", "permission": "read" })).await;
    let (k2, _) = admin.create_key(json!({ "account_id": acc, "name": "k2", "permission": "read" })).await;
    // Make the second revocation fail inside the transaction.
    let db = admin.dir.path().join("keygate.db");
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display())).await.expect("db");
    let trigger = format!(
        "CREATE TRIGGER fail_second BEFORE UPDATE OF revoked_at ON api_keys WHEN NEW.id = '{}' BEGIN SELECT RAISE(ABORT, 'boom'); END",
        k2["id"].as_str().expect("id")
    );
    sqlx::query(&trigger).execute(&pool).await.expect("trigger");
    let body = json!({ "ids": [k1["id"], k2["id"]] });
    let (s, _) = admin.call(Method::POST, "/v1/keys/bulk-revoke", Some(body)).await;
    assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR);
    let (_, first) = admin.call(Method::GET, &format!("/v1/keys/{}", k1["id"].as_str().expect("id")), None).await;
    assert_eq!(first["status"], "active", "nothing partial was written");
    let (_, audit) = admin.call(Method::GET, "/v1/audit?action=key.revoke", None).await;
    assert_eq!(audit["items"].as_array().expect("items").len(), 0, "no audit row without its change");
}

#[tokio::test]
async fn leaked_key_is_refused_by_the_proxy_within_1s() {
    let gw = Gateway::start().await;
    let acc = gw.admin.account("A").await;
    let (id, secret) = gw.admin.key(&acc, "read").await;
    assert_eq!(get_with_key(gw.proxy(), "/", &secret).await.status, StatusCode::OK);
    let started = Instant::now();
    let (s, v) = gw.admin.call(Method::POST, "/v1/keys/report-leak", Some(json!({ "secret": secret }))).await;
    assert_eq!((s, v["status"].as_str()), (StatusCode::ACCEPTED, Some("accepted")));
    while get_with_key(gw.proxy(), "/", &secret).await.code() != "key_revoked" {
        assert!(started.elapsed() < Duration::from_secs(1), "leaked key still accepted after 1 s");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (_, key) = gw.admin.call(Method::GET, &format!("/v1/keys/{id}"), None).await;
    assert_eq!(key["status"], "revoked");
    // An unknown secret gets the same answer.
    let (s, _) =
        gw.admin.call(Method::POST, "/v1/keys/report-leak", Some(json!({ "secret": "kg_live_nothing" }))).await;
    assert_eq!(s, StatusCode::ACCEPTED);
}

#[tokio::test]
async fn verify_gives_the_proxys_decision_for_every_code() {
    let gw = Gateway::start().await;
    let acc = gw.admin.account("A").await;
    let (read_id, read) = gw.admin.key(&acc, "read").await;
    let (_, write) = gw.admin.key(&acc, "write").await;
    let (disabled_id, disabled) = gw.admin.key(&acc, "read").await;
    gw.admin.call(Method::PATCH, &format!("/v1/keys/{disabled_id}"), Some(json!({ "enabled": false }))).await;
    let (revoked_id, revoked) = gw.admin.key(&acc, "read").await;
    gw.admin.call(Method::POST, &format!("/v1/keys/{revoked_id}/revoke"), None).await;
    // Far enough ahead that creating it never finds it past, even on a busy
    // machine; waited out below.
    let expires_at = keygate::clock::now_ms() + 1000;
    let expiring = json!({ "account_id": acc, "name": "e", "permission": "read", "expires_at": keygate::clock::rfc3339(expires_at) });
    let (_, e) = gw.admin.call(Method::POST, "/v1/keys", Some(expiring)).await;
    let expired = e["secret"].as_str().expect("secret").to_owned();
    let closed = gw.admin.account("Closed").await;
    let (_, closed_key) = gw.admin.key(&closed, "read").await;
    gw.admin.call(Method::PATCH, &format!("/v1/accounts/{closed}"), Some(json!({ "api_access": false }))).await;
    let past = u64::try_from(expires_at + 50 - keygate::clock::now_ms()).unwrap_or(0);
    tokio::time::sleep(Duration::from_millis(past.max(100))).await;
    let mistyped = kit::mistyped(&read);

    let cases: Vec<(&str, &str)> = vec![
        (&read, "GET"),
        (&read, "POST"),
        (&write, "DELETE"),
        (&disabled, "GET"),
        (&revoked, "GET"),
        (&expired, "GET"),
        (&closed_key, "GET"),
        (&mistyped, "GET"),
        ("kg_live_short", "GET"),
    ];
    let mut codes = Vec::new();
    for (secret, method) in cases {
        let (s, v) = gw
            .admin
            .call(Method::POST, "/v1/keys/verify", Some(json!({ "secret": secret, "method": method, "path": "/x" })))
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        let headers = [("x-api-key", secret)];
        let proxied = fetch(
            Method::from_bytes(method.as_bytes()).expect("method"),
            &format!("http://{}/x", gw.proxy()),
            &headers,
            "",
        )
        .await;
        let proxy_code = if proxied.status == StatusCode::OK { "allowed".to_string() } else { proxied.code() };
        assert_eq!(v["code"].as_str(), Some(proxy_code.as_str()), "verify and proxy disagree for {method}");
        assert_eq!(v["valid"], proxied.status == StatusCode::OK);
        codes.push(proxy_code);
    }
    assert_eq!(
        codes,
        [
            "allowed",
            "insufficient_permission",
            "allowed",
            "key_disabled",
            "key_revoked",
            "key_expired",
            "api_access_disabled",
            "invalid_key",
            "invalid_key"
        ]
    );
    let (_, v) = gw.admin.call(Method::POST, "/v1/keys/verify", Some(json!({ "secret": read }))).await;
    assert_eq!((v["key_id"].as_str(), v["permission"].as_str()), (Some(read_id.as_str()), Some("read")));
    let (_, v) = gw.admin.call(Method::POST, "/v1/keys/verify", Some(json!({ "secret": mistyped }))).await;
    assert!(v["key_id"].is_null() && v["account_id"].is_null());
}
