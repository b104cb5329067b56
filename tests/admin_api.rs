//! The admin API's key and account routes (docs/admin-api.md#routes), against the real
//! router and a real SQLite file.

mod kit;

use http::{Method, StatusCode};
use kit::Admin;
use kit::AdminCalls;
use serde_json::json;

const RECORD_FIELDS: [&str; 21] = [
    "id",
    "account_id",
    "name",
    "description",
    "permission",
    "status",
    "enabled",
    "environment",
    "prefix",
    "preview",
    "created_at",
    "updated_at",
    "expires_at",
    "last_used_at",
    "usage_count",
    "rotated_at",
    "revoked_at",
    "rate_limit",
    "allowed_ips",
    "allowed_routes",
    "metadata",
];

#[tokio::test]
async fn create_key_shows_the_secret_once_and_every_field() {
    let admin = Admin::new().await;
    let acc = admin.account("Acme").await;
    let (key, secret) = admin
        .create_key(
            json!({ "account_id": acc, "name": "CI", "permission": "read", "description": "Production access" }),
        )
        .await;
    assert!(secret.starts_with("kg_live_") && secret.len() == 46, "{secret}");
    for field in RECORD_FIELDS {
        assert!(key.get(field).is_some(), "missing {field} in {key}");
    }
    assert_eq!(key["status"], "active");
    assert_eq!(key["environment"], "live");
    assert_eq!(key["usage_count"], 0);
    assert!(key["last_used_at"].is_null() && key["expires_at"].is_null());
    let preview = key["preview"].as_str().expect("preview");
    assert!(
        preview.starts_with(&secret[..12]) && preview.ends_with(&secret[secret.len() - 4..]) && preview.contains('…')
    );
    // Reading the key back never shows the secret again.
    let (s, shown) = admin.call(Method::GET, &format!("/v1/keys/{}", key["id"].as_str().expect("id")), None).await;
    assert_eq!(s, StatusCode::OK);
    assert!(!shown.to_string().contains(&secret[8..]));
    assert!(shown.get("secret").is_none());
}

#[tokio::test]
async fn test_environment_keys_have_the_test_prefix() {
    let admin = Admin::new().await;
    let acc = admin.account("Acme").await;
    let (key, secret) = admin
        .create_key(json!({ "account_id": acc, "name": "dev", "permission": "write", "environment": "test" }))
        .await;
    assert!(secret.starts_with("kg_test_"));
    assert_eq!(key["prefix"], "kg_test");
}

#[tokio::test]
async fn list_filters_searches_and_pages_newest_first() {
    let admin = Admin::new().await;
    let a = admin.account("A").await;
    let b = admin.account("B").await;
    for i in 0..5 {
        let perm = if i % 2 == 0 { "read" } else { "write" };
        admin.create_key(json!({ "account_id": a, "name": format!("key {i}"), "permission": perm })).await;
    }
    admin
        .create_key(
            json!({ "account_id": b, "name": "Billing export", "permission": "read", "description": "Nightly JOB" }),
        )
        .await;

    let (_, all) = admin.call(Method::GET, "/v1/keys", None).await;
    assert_eq!(all["items"].as_array().expect("items").len(), 6);
    assert_eq!(all["items"][0]["name"], "Billing export", "newest first");

    let (_, only_a) = admin.call(Method::GET, &format!("/v1/keys?account_id={a}&permission=write"), None).await;
    assert_eq!(only_a["items"].as_array().expect("items").len(), 2);

    let (_, found) = admin.call(Method::GET, "/v1/keys?q=job", None).await;
    assert_eq!(found["items"].as_array().expect("items").len(), 1, "search is case-insensitive over description");

    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/keys?limit=4&cursor={c}"),
            None => "/v1/keys?limit=4".to_string(),
        };
        let (s, page) = admin.call(Method::GET, &path, None).await;
        assert_eq!(s, StatusCode::OK, "{page}");
        for item in page["items"].as_array().expect("items") {
            seen.push(item["id"].as_str().expect("id").to_owned());
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 6, "every key exactly once across pages");
}

#[tokio::test]
async fn patch_edits_disables_and_clears_fields() {
    let admin = Admin::new().await;
    let acc = admin.account("A").await;
    let (key, _) = admin
        .create_key(json!({ "account_id": acc, "name": "k", "permission": "read", "expires_at": "2999-01-01T00:00:00Z", "description": "d" }))
        .await;
    let path = format!("/v1/keys/{}", key["id"].as_str().expect("id"));
    let (s, v) = admin
        .call(
            Method::PATCH,
            &path,
            Some(json!({ "enabled": false, "permission": "write", "expires_at": null, "description": null })),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "disabled");
    assert_eq!(v["permission"], "write");
    assert!(v["expires_at"].is_null() && v["description"].is_null());
    let (_, disabled) = admin.call(Method::GET, "/v1/keys?status=disabled", None).await;
    assert_eq!(disabled["items"].as_array().expect("items").len(), 1);
    let (_, v) = admin.call(Method::PATCH, &path, Some(json!({ "enabled": true }))).await;
    assert_eq!(v["status"], "active");
}

#[tokio::test]
async fn rotate_and_revoke_change_status_and_secret() {
    let admin = Admin::new().await;
    let acc = admin.account("A").await;
    let (key, old) = admin.create_key(json!({ "account_id": acc, "name": "k", "permission": "read" })).await;
    let id = key["id"].as_str().expect("id");
    let (s, rotated) =
        admin.call(Method::POST, &format!("/v1/keys/{id}/rotate"), Some(json!({ "grace_period_seconds": 60 }))).await;
    assert_eq!(s, StatusCode::OK, "{rotated}");
    let new = rotated["secret"].as_str().expect("secret");
    assert_ne!(new, old);
    assert_eq!(rotated["key"]["id"], id, "same record");
    assert!(rotated["key"]["rotated_at"].is_string());
    // Rotating with no body at all works too (no grace).
    let (s, _) = admin.call_as(Some(kit::TOKEN), Method::POST, &format!("/v1/keys/{id}/rotate"), None).await;
    assert_eq!(s, StatusCode::OK);

    let (s, revoked) = admin.call(Method::POST, &format!("/v1/keys/{id}/revoke"), None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(revoked["status"], "revoked");
    assert!(revoked["revoked_at"].is_string());
    let (s, again) = admin.call(Method::DELETE, &format!("/v1/keys/{id}"), None).await;
    assert_eq!(s, StatusCode::OK, "revoking twice is idempotent");
    assert_eq!(again["revoked_at"], revoked["revoked_at"]);
    let (s, v) = admin.call(Method::PATCH, &format!("/v1/keys/{id}"), Some(json!({ "enabled": true }))).await;
    assert_eq!((s, v["code"].as_str()), (StatusCode::CONFLICT, Some("conflict")), "revocation is final");
    let (s, _) = admin.call(Method::POST, &format!("/v1/keys/{id}/rotate"), None).await;
    assert_eq!(s, StatusCode::CONFLICT);
}

#[tokio::test]
async fn allowed_routes_carry_a_normalised_host_or_null() {
    let admin = Admin::new().await;
    let acc = admin.account("A").await;
    let routes =
        json!([{ "path_prefix": "/v1", "host": "API.Example.com." }, { "path_prefix": "/v2", "methods": ["get"] }]);
    let (key, _) = admin
        .create_key(json!({ "account_id": acc, "name": "k", "permission": "read", "allowed_routes": routes }))
        .await;
    assert_eq!(
        key["allowed_routes"],
        json!([
            { "path_prefix": "/v1", "methods": [], "host": "api.example.com" },
            { "path_prefix": "/v2", "methods": ["GET"], "host": null }
        ])
    );
    let id = key["id"].as_str().expect("id");
    let (s, shown) = admin.call(Method::GET, &format!("/v1/keys/{id}"), None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(shown["allowed_routes"], key["allowed_routes"]);
}

#[tokio::test]
async fn validation_errors_name_the_field() {
    let admin = Admin::new().await;
    let acc = admin.account("A").await;
    let cases = [
        (json!({ "account_id": acc, "name": "k" }), "permission"),
        (json!({ "account_id": acc, "name": "k", "permission": "admin" }), "permission"),
        (json!({ "account_id": acc, "name": " ", "permission": "read" }), "name"),
        (json!({ "account_id": "acc_nope", "name": "k", "permission": "read" }), "account_id"),
        (json!({ "account_id": acc, "name": "k", "permission": "read", "expires_at": "yesterday" }), "expires_at"),
        (
            json!({ "account_id": acc, "name": "k", "permission": "read", "expires_at": "2001-01-01T00:00:00Z" }),
            "expires_at",
        ),
        (
            json!({ "account_id": acc, "name": "k", "permission": "read", "allowed_ips": ["10.0.0.0/99"] }),
            "allowed_ips[0]",
        ),
        (
            json!({ "account_id": acc, "name": "k", "permission": "read", "rate_limit": { "requests": 0, "per_seconds": 1 } }),
            "rate_limit.requests",
        ),
        (
            json!({ "account_id": acc, "name": "k", "permission": "read",
                    "allowed_routes": [{ "path_prefix": "/v1", "host": "not a host" }] }),
            "allowed_routes[0].host",
        ),
        (json!({ "account_id": acc, "name": "k", "permission": "read", "colour": "red" }), "colour"),
        (json!({ "account_id": acc, "name": "k", "permission": "read", "metadata": [1] }), "metadata"),
    ];
    for (body, field) in cases {
        let (s, v) = admin.call(Method::POST, "/v1/keys", Some(body.clone())).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body} -> {v}");
        assert_eq!(v["code"], "validation_failed");
        assert_eq!(v["field"], field, "{body} -> {v}");
    }
    let (s, v) = admin.call_as(Some(kit::TOKEN), Method::POST, "/v1/keys", Some("{not json".into())).await;
    assert_eq!((s, v["code"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_json")));
    let (s, v) = admin.call(Method::GET, "/v1/keys?limit=0", None).await;
    assert_eq!((s, v["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("limit")));
    let (s, v) = admin.call(Method::GET, "/v1/keys?status=sleeping", None).await;
    assert_eq!((s, v["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("status")));
    let (s, v) = admin.call(Method::GET, "/v1/keys?cursor=garbage", None).await;
    assert_eq!((s, v["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("cursor")));
    let big = json!({ "name": "x".repeat(70 * 1024) }).to_string();
    let (s, v) = admin.call_as(Some(kit::TOKEN), Method::POST, "/v1/accounts", Some(big)).await;
    assert_eq!((s, v["code"].as_str()), (StatusCode::PAYLOAD_TOO_LARGE, Some("body_too_large")));
    // Nothing was written by any of the refused requests.
    let (_, keys) = admin.call(Method::GET, "/v1/keys", None).await;
    assert_eq!(keys["items"].as_array().expect("items").len(), 0);
}

#[tokio::test]
async fn admin_token_is_required() {
    let admin = Admin::new().await;
    let (s, v) = admin.call_as(None, Method::GET, "/v1/keys", None).await;
    assert_eq!((s, v["code"].as_str()), (StatusCode::UNAUTHORIZED, Some("missing_token")));
    let (s, v) = admin.call_as(Some("wrong"), Method::GET, "/v1/keys", None).await;
    assert_eq!((s, v["code"].as_str()), (StatusCode::UNAUTHORIZED, Some("invalid_token")));
    let (s, v) = admin.call_as(None, Method::GET, "/healthz", None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        (v["status"].as_str(), v["store"].as_str(), v["redis"].as_str()),
        (Some("ok"), Some("up"), Some("off")),
        "{v}"
    );
    let (s, v) = admin.call_as(None, Method::GET, "/readyz", None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["store"], "up");
}

#[tokio::test]
async fn unknown_ids_are_404() {
    let admin = Admin::new().await;
    for (method, path) in [
        (Method::GET, "/v1/keys/key_nope"),
        (Method::POST, "/v1/keys/key_nope/rotate"),
        (Method::POST, "/v1/keys/key_nope/revoke"),
        (Method::DELETE, "/v1/keys/key_nope"),
        (Method::GET, "/v1/accounts/acc_nope"),
        (Method::GET, "/v1/nothing-here"),
    ] {
        let (s, v) = admin.call(method.clone(), path, None).await;
        assert_eq!((s, v["code"].as_str()), (StatusCode::NOT_FOUND, Some("not_found")), "{method} {path}");
    }
}

#[tokio::test]
async fn accounts_without_api_access_cannot_get_keys() {
    let admin = Admin::new().await;
    let (s, acc) =
        admin.call(Method::POST, "/v1/accounts", Some(json!({ "name": "Free plan", "api_access": false }))).await;
    assert_eq!(s, StatusCode::CREATED);
    assert_eq!(acc["api_access"], false);
    for field in ["id", "name", "api_access", "created_at"] {
        assert!(acc.get(field).is_some(), "{field}");
    }
    let id = acc["id"].as_str().expect("id");
    let (s, v) = admin
        .call(Method::POST, "/v1/keys", Some(json!({ "account_id": id, "name": "k", "permission": "read" })))
        .await;
    assert_eq!((s, v["code"].as_str()), (StatusCode::FORBIDDEN, Some("api_access_disabled")));
    let (s, v) = admin.call(Method::PATCH, &format!("/v1/accounts/{id}"), Some(json!({ "api_access": true }))).await;
    assert_eq!((s, v["api_access"].as_bool()), (StatusCode::OK, Some(true)));
    let (_, list) = admin.call(Method::GET, "/v1/accounts", None).await;
    assert_eq!(list["items"].as_array().expect("items").len(), 1);
    assert!(list.get("next_cursor").is_some());
}

#[tokio::test]
async fn admin_writes_reach_the_snapshot_before_the_answer() {
    let admin = Admin::new().await;
    let acc = admin.account("A").await;
    let (key, secret) = admin.create_key(json!({ "account_id": acc, "name": "k", "permission": "read" })).await;
    let keyset = admin.reloader.keyset();
    let now = keygate::clock::now_ms();
    assert!(keyset.load().check(secret.as_bytes(), &Method::GET, now).is_ok());
    admin.call(Method::POST, &format!("/v1/keys/{}/revoke", key["id"].as_str().expect("id")), None).await;
    assert_eq!(keyset.load().check(secret.as_bytes(), &Method::GET, now), Err(keygate::keys::Refusal::KeyRevoked));
}
