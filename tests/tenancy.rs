//! What a tenant's admin token may and may not do to the operator's terms,
//! and what the admin plane gives away (issue 14): account gates, PATCH
//! `null`, `/metrics` for confined tokens, dry-run verify, enforceable rate
//! limits, retired-secret pruning and passwords kept out of messages.

mod kit;

use http::{Method, StatusCode};
use keygate::cli::client::AdminClient;
use kit::http::{fetch, get_with_key};
use kit::{Admin, AdminCalls, Gateway, TestGateway};
use serde_json::{json, Value};

/// An admin token with `role`, confined to `account` when given.
async fn token(admin: &Admin, role: &str, account: Option<&str>) -> String {
    let body = json!({ "name": format!("{role} token"), "role": role, "account_id": account });
    let (s, v) = admin.call(Method::POST, "/v1/admin-tokens", Some(body)).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    v["secret"].as_str().expect("secret").to_owned()
}

async fn call_as(admin: &Admin, token: &str, method: Method, path: &str, body: Value) -> (StatusCode, Value) {
    admin.call_as(Some(token), method, path, Some(body.to_string())).await
}

#[tokio::test]
async fn confined_admin_cannot_reopen_its_account() {
    let admin = Admin::new().await;
    let (s, acc) =
        admin.call(Method::POST, "/v1/accounts", Some(json!({ "name": "Tenant", "api_access": false }))).await;
    assert_eq!(s, StatusCode::CREATED, "{acc}");
    let id = acc["id"].as_str().expect("id").to_owned();
    let confined = token(&admin, "admin", Some(&id)).await;
    let path = format!("/v1/accounts/{id}");

    let (s, v) = call_as(&admin, &confined, Method::PATCH, &path, json!({ "api_access": true })).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    assert_eq!(v["code"], "forbidden");
    let (s, v) =
        call_as(&admin, &confined, Method::PATCH, &path, json!({ "name": "Renamed", "api_access": true })).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "a rename does not carry a gate change along: {v}");
    let (_, v) = admin.call(Method::GET, &path, None).await;
    assert_eq!((v["name"].as_str(), v["api_access"].as_bool()), (Some("Tenant"), Some(false)), "{v}");

    // Renaming is the tenant's; the gate is the operator's.
    let (s, v) = call_as(&admin, &confined, Method::PATCH, &path, json!({ "name": "Renamed" })).await;
    assert_eq!((s, v["name"].as_str()), (StatusCode::OK, Some("Renamed")), "{v}");
    let (s, v) = admin.call(Method::PATCH, &path, Some(json!({ "api_access": true }))).await;
    assert_eq!((s, v["api_access"].as_bool()), (StatusCode::OK, Some(true)), "{v}");
}

#[tokio::test]
async fn metrics_need_an_unconfined_token() {
    let gw = TestGateway::new().config(|c| c.admin.public_metrics = false).start().await;
    let acc = gw.admin.account("Tenant").await;
    let mut tokens = Vec::new();
    for (role, account) in [("viewer", Some(&acc)), ("admin", Some(&acc)), ("viewer", None)] {
        let body = json!({ "name": "t", "role": role, "account_id": account });
        let (s, v) = gw.admin.call(Method::POST, "/v1/admin-tokens", Some(body)).await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        tokens.push(v["secret"].as_str().expect("secret").to_owned());
    }
    let url = format!("http://{}/metrics", gw.gateway.admin_addr);
    let scrape = |token: Option<String>| {
        let url = url.clone();
        async move {
            let auth = token.map(|t| format!("Bearer {t}"));
            let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("authorization", a.as_str())).collect();
            fetch(Method::GET, &url, &headers, "").await
        }
    };
    for confined in &tokens[..2] {
        let r = scrape(Some(confined.clone())).await;
        assert_eq!((r.status, r.code()), (StatusCode::FORBIDDEN, "forbidden".to_owned()));
        assert!(!String::from_utf8_lossy(&r.body).contains("keygate_"), "no series for a confined token");
    }
    assert_eq!(scrape(Some(tokens[2].clone())).await.status, StatusCode::OK, "an unconfined viewer may scrape");
    assert_eq!(scrape(Some(kit::TOKEN.to_owned())).await.status, StatusCode::OK);
    assert_eq!(scrape(None).await.status, StatusCode::UNAUTHORIZED);
    gw.gateway.stop().await;
}

fn secret_run(args: &[&str], yaml: &str) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("k.yaml");
    std::fs::write(&file, yaml).expect("write");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_keygate"))
        .args(args)
        .arg("--config")
        .arg(&file)
        .output()
        .expect("run");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code(), text)
}

#[test]
fn check_config_never_prints_the_store_password() {
    for url in
        ["postgresq://u:S3cret@h/db", "mysql://u:S3cret@h/db?password=S3cret", "postgres://u:S3cret@h:notaport/db"]
    {
        let yaml = format!("store: {{ url: \"{url}\" }}\n");
        let (code, text) = secret_run(&["check-config"], &yaml);
        assert_ne!(code, Some(0), "{url}: {text}");
        assert!(text.contains("store.url"), "{url}: the field is named: {text}");
        assert!(!text.contains("S3cret"), "{url}: the password is printed: {text}");
    }
    let (code, text) = secret_run(&["check-config"], "store: { url: \"postgresq://u:S3cret@h/db\" }\n");
    assert_eq!(code, Some(2));
    assert!(text.contains("postgresq://u:***@h/db"), "the URL is shown with its password masked: {text}");
}

#[test]
fn serve_never_prints_the_store_password() {
    for url in ["postgres://u:S3cret@127.0.0.1:1/db", "postgres://u@127.0.0.1:1/db?password=S3cret"] {
        let yaml = format!(
            "proxy: {{ listen: 127.0.0.1:0 }}\nadmin: {{ listen: 127.0.0.1:0 }}\nstore: {{ url: \"{url}\", connect_timeout_ms: 500 }}\n"
        );
        let (code, text) = secret_run(&["serve"], &yaml);
        assert_ne!(code, Some(0), "{text}");
        assert!(text.contains("cannot connect to the store"), "{text}");
        assert!(!text.contains("S3cret"), "{url}: the password is printed: {text}");
    }
}

async fn full_key(admin: &Admin, acc: &str) -> Value {
    let (key, _) = admin
        .create_key(json!({
            "account_id": acc, "name": "k", "permission": "read",
            "description": "d", "expires_at": "2099-01-01T00:00:00Z",
            "rate_limit": { "requests": 5, "per_seconds": 60 },
            "allowed_ips": ["10.0.0.0/8"],
            "allowed_routes": [{ "path_prefix": "/v1", "methods": ["GET"] }],
            "metadata": { "team": "a" }
        }))
        .await;
    key
}

#[tokio::test]
async fn patch_null_clears_every_optional_field() {
    let admin = Admin::new().await;
    let acc = admin.account("A").await;
    let cleared = [
        ("description", Value::Null),
        ("expires_at", Value::Null),
        ("rate_limit", Value::Null),
        ("allowed_ips", json!([])),
        ("allowed_routes", json!([])),
        ("metadata", json!({})),
    ];
    for (field, empty) in &cleared {
        let key = full_key(&admin, &acc).await;
        let path = format!("/v1/keys/{}", key["id"].as_str().expect("id"));
        let (s, after) = admin.call(Method::PATCH, &path, Some(json!({ *field: null }))).await;
        assert_eq!(s, StatusCode::OK, "{field}: {after}");
        assert_eq!(after[*field], *empty, "{field}: null clears it");
        for (other, _) in cleared.iter().filter(|(o, _)| o != field) {
            assert_eq!(after[*other], key[*other], "{field}: {other} is left alone");
        }
        let (_, shown) = admin.call(Method::GET, &path, None).await;
        assert_eq!(shown[*field], *empty, "{field}: the store kept the clear");
    }
    // A field left out is left as it is.
    let key = full_key(&admin, &acc).await;
    let path = format!("/v1/keys/{}", key["id"].as_str().expect("id"));
    let (s, after) = admin.call(Method::PATCH, &path, Some(json!({ "name": "renamed" }))).await;
    assert_eq!(s, StatusCode::OK, "{after}");
    for (field, _) in &cleared {
        assert_eq!(after[*field], key[*field], "{field} is left alone");
    }
}

#[tokio::test]
async fn patch_null_on_a_required_field_names_it() {
    let admin = Admin::new().await;
    let acc = admin.account("A").await;
    let key = full_key(&admin, &acc).await;
    let path = format!("/v1/keys/{}", key["id"].as_str().expect("id"));
    for field in ["name", "permission", "enabled"] {
        let (s, v) = admin.call(Method::PATCH, &path, Some(json!({ field: null }))).await;
        assert_eq!((s, v["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some(field)), "{v}");
    }
    for field in ["name", "api_access"] {
        let (s, v) = admin.call(Method::PATCH, &format!("/v1/accounts/{acc}"), Some(json!({ field: null }))).await;
        assert_eq!((s, v["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some(field)), "{v}");
    }
}

#[tokio::test]
async fn openapi_says_which_patch_fields_null_clears() {
    let admin = Admin::new().await;
    let (s, doc) = admin.call(Method::GET, "/openapi.json", None).await;
    assert_eq!(s, StatusCode::OK);
    let nullable = |schema: &str, field: &str| {
        let p = &doc["components"]["schemas"][schema]["properties"][field];
        assert!(!p.is_null(), "{schema}.{field} is documented");
        p["type"].as_array().is_some_and(|t| t.contains(&json!("null")))
            || p["oneOf"].as_array().is_some_and(|o| o.contains(&json!({ "type": "null" })))
    };
    for field in ["description", "expires_at", "rate_limit", "allowed_ips", "allowed_routes", "metadata"] {
        assert!(nullable("UpdateKey", field), "UpdateKey.{field}: null clears it");
    }
    for (schema, field) in [("UpdateKey", "name"), ("UpdateKey", "permission"), ("UpdateKey", "enabled")] {
        assert!(!nullable(schema, field), "{schema}.{field} cannot be null");
    }
    for field in ["name", "api_access"] {
        assert!(!nullable("UpdateAccount", field), "UpdateAccount.{field} cannot be null");
    }
}

#[tokio::test]
async fn a_viewers_verify_is_a_dry_run() {
    let gw = Gateway::start().await;
    let acc = gw.admin.account("A").await;
    let body = json!({ "account_id": acc, "name": "k", "permission": "read", "rate_limit": { "requests": 2, "per_seconds": 60 } });
    let (s, v) = gw.admin.call(Method::POST, "/v1/keys", Some(body)).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (id, secret) = (v["key"]["id"].as_str().expect("id").to_owned(), v["secret"].as_str().expect("s").to_owned());
    let mut viewers = Vec::new();
    for account in [None, Some(&acc)] {
        let body = json!({ "name": "v", "role": "viewer", "account_id": account });
        let (_, v) = gw.admin.call(Method::POST, "/v1/admin-tokens", Some(body)).await;
        let url = format!("http://{}", gw.gateway.admin_addr);
        viewers.push(AdminClient::new(&url, v["secret"].as_str()).expect("viewer client"));
    }
    for viewer in &viewers {
        for dry_run in [None, Some(false)] {
            for _ in 0..5 {
                let mut body = json!({ "secret": secret });
                if let Some(d) = dry_run {
                    body["dry_run"] = json!(d);
                }
                let (s, v) = viewer.call(Method::POST, "/v1/keys/verify", Some(body)).await;
                assert_eq!(
                    (s, v["valid"].as_bool(), v["code"].as_str()),
                    (StatusCode::OK, Some(true), Some("allowed"))
                );
            }
        }
    }
    // `dry_run: true` makes anyone's verify one.
    for _ in 0..5 {
        let (_, v) =
            gw.admin.call(Method::POST, "/v1/keys/verify", Some(json!({ "secret": secret, "dry_run": true }))).await;
        assert_eq!(v["code"], "allowed", "{v}");
    }
    let used = |gw: &Gateway| {
        let set = gw.gateway.reloader.keyset().load_full();
        set.usage().all().iter().filter(|(key_id, _)| key_id.as_str() == id).map(|(_, c)| c.total()).sum::<u64>()
    };
    assert_eq!(used(&gw), 0, "a dry run counts no usage");
    for _ in 0..2 {
        assert_eq!(get_with_key(gw.proxy(), "/", &secret).await.status, StatusCode::OK, "the bucket is whole");
    }
    assert_eq!(get_with_key(gw.proxy(), "/", &secret).await.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(used(&gw), 3);
    // A real verify by a writer still spends.
    let (_, v) = gw.admin.call(Method::POST, "/v1/keys/verify", Some(json!({ "secret": secret }))).await;
    assert_eq!(v["code"], "rate_limited", "{v}");
    assert_eq!(used(&gw), 4);
    gw.gateway.stop().await;
}

/// The code a verify answers for `secret`; a dry run unless `spend`.
async fn verify(admin: &Admin, secret: &str, spend: bool) -> String {
    let (s, v) =
        admin.call(Method::POST, "/v1/keys/verify", Some(json!({ "secret": secret, "dry_run": !spend }))).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v["code"].as_str().expect("code").to_owned()
}

#[tokio::test]
async fn rate_limits_are_bounded_to_what_can_be_enforced() {
    let admin = Admin::new().await;
    let acc = admin.account("A").await;
    let confined = token(&admin, "admin", Some(&acc)).await;
    let create = |limit: Value| json!({ "account_id": acc, "name": "k", "permission": "read", "rate_limit": limit });
    let refused = [
        (json!({ "requests": 4_294_967_295u32, "per_seconds": 1 }), "rate_limit.requests"),
        (json!({ "requests": 1_000_001, "per_seconds": 60 }), "rate_limit.requests"),
        (json!({ "requests": 0, "per_seconds": 60 }), "rate_limit.requests"),
        (json!({ "requests": 10, "per_seconds": 0 }), "rate_limit.per_seconds"),
        (json!({ "requests": 10, "per_seconds": 86_401 }), "rate_limit.per_seconds"),
    ];
    for (limit, field) in &refused {
        let (s, v) = call_as(&admin, &confined, Method::POST, "/v1/keys", create(limit.clone())).await;
        assert_eq!((s, v["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some(*field)), "{limit}: {v}");
    }
    let (key, secret) = admin.create_key(create(json!({ "requests": 1, "per_seconds": 86_400 }))).await;
    let path = format!("/v1/keys/{}", key["id"].as_str().expect("id"));
    for (limit, field) in &refused {
        let (s, v) = call_as(&admin, &confined, Method::PATCH, &path, json!({ "rate_limit": limit })).await;
        assert_eq!((s, v["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some(*field)), "{limit}: {v}");
    }
    // The corners of the bounds are accepted and enforced.
    for (requests, per_seconds) in [(1_000_000, 1), (1_000_000, 86_400), (1, 1)] {
        let limit = json!({ "requests": requests, "per_seconds": per_seconds });
        let (s, v) = call_as(&admin, &confined, Method::POST, "/v1/keys", create(limit)).await;
        assert_eq!(s, StatusCode::CREATED, "{requests}/{per_seconds}: {v}");
    }
    let verify = json!({ "secret": secret });
    let (_, first) = admin.call(Method::POST, "/v1/keys/verify", Some(verify.clone())).await;
    let (_, second) = admin.call(Method::POST, "/v1/keys/verify", Some(verify)).await;
    assert_eq!((first["code"].as_str(), second["code"].as_str()), (Some("allowed"), Some("rate_limited")));
}

#[tokio::test]
async fn a_patch_that_keeps_the_limit_keeps_the_bucket() {
    let admin = Admin::new().await;
    let acc = admin.account("A").await;
    let limit = json!({ "requests": 3, "per_seconds": 60 });
    let (key, secret) =
        admin.create_key(json!({ "account_id": acc, "name": "k", "permission": "read", "rate_limit": limit })).await;
    let path = format!("/v1/keys/{}", key["id"].as_str().expect("id"));
    for _ in 0..3 {
        assert_eq!(verify(&admin, &secret, true).await, "allowed");
    }
    assert_eq!(verify(&admin, &secret, true).await, "rate_limited");
    for edit in
        [json!({ "description": "still limited" }), json!({ "rate_limit": limit }), json!({ "permission": "write" })]
    {
        let (s, v) = admin.call(Method::PATCH, &path, Some(edit.clone())).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(verify(&admin, &secret, true).await, "rate_limited", "{edit} refilled the bucket");
    }
    // A new limit is a new bucket.
    let (s, _) =
        admin.call(Method::PATCH, &path, Some(json!({ "rate_limit": { "requests": 4, "per_seconds": 60 } }))).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(verify(&admin, &secret, true).await, "allowed");
}

async fn retired_rows(admin: &Admin) -> i64 {
    use sqlx::Connection;
    let url = format!("sqlite://{}", admin.dir.path().join("keygate.db").display());
    let mut c = sqlx::SqliteConnection::connect(&url).await.expect("open");
    let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM retired_secrets").fetch_one(&mut c).await.expect("count");
    n
}

#[tokio::test(flavor = "multi_thread")]
async fn rotations_do_not_pile_up_retired_secrets() {
    let admin = Admin::new().await;
    let acc = admin.account("A").await;
    let (key, first) = admin.create_key(json!({ "account_id": acc, "name": "k", "permission": "read" })).await;
    let rotate = format!("/v1/keys/{}/rotate", key["id"].as_str().expect("id"));
    let (s, v) = admin.call(Method::POST, &rotate, Some(json!({}))).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let second = v["secret"].as_str().expect("secret").to_owned();
    assert_eq!(
        verify(&admin, &first, false).await,
        "key_revoked",
        "an old secret past its grace is refused as revoked"
    );
    let mut previous = second;
    for _ in 0..200 {
        let (s, v) = admin.call(Method::POST, &rotate, Some(json!({ "grace_period_seconds": 3600 }))).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(verify(&admin, &previous, false).await, "allowed", "the old secret works in its grace");
        previous = v["secret"].as_str().expect("secret").to_owned();
    }
    let rows = retired_rows(&admin).await;
    assert!(rows <= 2, "{rows} retired rows after 200 rotations");
    assert!(admin.reloader.keyset().load().len() <= 3, "the snapshot forgets pruned secrets too");
    assert_eq!(verify(&admin, &previous, false).await, "allowed");
    // Pruned: no more a secret of this key than any other unknown secret.
    assert_eq!(verify(&admin, &first, false).await, "invalid_key");
}
