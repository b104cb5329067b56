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
