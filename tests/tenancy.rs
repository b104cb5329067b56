//! What a tenant's admin token may and may not do to the operator's terms,
//! and what the admin plane gives away (issue 14): account gates, PATCH
//! `null`, `/metrics` for confined tokens, dry-run verify, enforceable rate
//! limits, retired-secret pruning and passwords kept out of messages.

mod harness;

use harness::client::{get_with_key, send, AdminClient};
use harness::{Admin, Gateway};
use http::{Method, StatusCode};
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
    let gw = Gateway::start_with(|c| c.admin.public_metrics = false).await;
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
            send(Method::GET, &url, &headers, "").await
        }
    };
    for confined in &tokens[..2] {
        let r = scrape(Some(confined.clone())).await;
        assert_eq!((r.status, r.code()), (StatusCode::FORBIDDEN, "forbidden".to_owned()));
        assert!(!String::from_utf8_lossy(&r.body).contains("keygate_"), "no series for a confined token");
    }
    assert_eq!(scrape(Some(tokens[2].clone())).await.status, StatusCode::OK, "an unconfined viewer may scrape");
    assert_eq!(scrape(Some(harness::TOKEN.to_owned())).await.status, StatusCode::OK);
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
