//! `/v1/webhooks`: shapes, validation naming the field, who may manage
//! webhooks, the audit trail, and a secret shown once — on both stores.

use http::{Method, StatusCode};
use serde_json::{json, Value};

use super::kit::{pg, Admin, AdminCalls, TestGateway, TOKEN};
use super::{webhook, ALL};

async fn token(admin: &Admin, role: &str, account: Option<&str>) -> String {
    let body = json!({ "name": format!("{role} token"), "role": role, "account_id": account });
    let (s, v) = admin.call(Method::POST, "/v1/admin-tokens", Some(body)).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    v["secret"].as_str().expect("secret").to_owned()
}

async fn webhook_routes_and_codes(admin: Admin) {
    let acc = admin.account("A").await;
    let body = json!({ "url": "https://hooks.example.com/k?x=1", "events": ["key.revoked", "key.created", "key.revoked"], "account_id": acc });
    let (s, created) = admin.call(Method::POST, "/v1/webhooks", Some(body)).await;
    assert_eq!(s, StatusCode::CREATED, "{created}");
    let mut fields: Vec<&str> = created["webhook"].as_object().expect("object").keys().map(String::as_str).collect();
    fields.sort_unstable();
    assert_eq!(fields, ["account_id", "created_at", "events", "id", "url"]);
    let id = created["webhook"]["id"].as_str().expect("id").to_owned();
    assert!(id.starts_with("wh_"), "{id}");
    assert_eq!(created["webhook"]["events"], json!(["key.created", "key.revoked"]), "sorted, once each");
    assert_eq!(created["webhook"]["account_id"], acc);
    let secret = created["secret"].as_str().expect("secret").to_owned();
    assert!(secret.starts_with("whsec_") && secret.len() == 38, "{secret}");

    // Reads never show the secret again.
    let (s, one) = admin.call(Method::GET, &format!("/v1/webhooks/{id}"), None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(one, created["webhook"]);
    let (every, _) = webhook(&admin, json!({ "url": "http://127.0.0.1:9/h", "events": ALL })).await;
    let (s, list) = admin.call(Method::GET, "/v1/webhooks?limit=1", None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(list["items"].as_array().map(Vec::len), Some(1));
    assert_eq!(list["items"][0]["id"], every, "newest first");
    let cursor = list["next_cursor"].as_str().expect("a second page");
    let (_, rest) = admin.call(Method::GET, &format!("/v1/webhooks?limit=1&cursor={cursor}"), None).await;
    assert_eq!(rest["items"][0]["id"], id);
    assert_eq!(rest["next_cursor"], Value::Null);
    for text in [one.to_string(), list.to_string(), rest.to_string()] {
        assert!(!text.contains(&secret) && !text.contains("whsec_"), "{text}");
    }
    let (s, log) = admin.call(Method::GET, &format!("/v1/webhooks/{id}/deliveries"), None).await;
    assert_eq!((s, log), (StatusCode::OK, json!({ "items": [], "next_cursor": null })));

    for (bad, field) in [
        (json!({ "url": "ftp://example.com/", "events": ["key.created"] }), "url"),
        (json!({ "url": "https://user:hunter2@example.com/", "events": ["key.created"] }), "url"),
        (json!({ "url": "example.com/hook", "events": ["key.created"] }), "url"),
        (json!({ "url": "https://example.com/", "events": [] }), "events"),
        (json!({ "url": "https://example.com/", "events": ["key.created", "key.exploded"] }), "events[1]"),
        (json!({ "url": "https://example.com/", "events": ["key.created"], "account_id": "acc_nope" }), "account_id"),
        (json!({ "url": "https://example.com/", "events": ["key.created"], "secret": "mine" }), "secret"),
        (json!({ "events": ["key.created"] }), "url"),
    ] {
        let (s, v) = admin.call(Method::POST, "/v1/webhooks", Some(bad.clone())).await;
        assert_eq!(
            (s, v["code"].as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, Some("validation_failed")),
            "{bad}: {v}"
        );
        assert_eq!(v["field"], field, "{bad}: {v}");
        assert!(!v.to_string().contains("hunter2"), "{v}");
    }

    for path in ["/v1/webhooks/wh_none", "/v1/webhooks/wh_none/deliveries"] {
        let (s, v) = admin.call(Method::GET, path, None).await;
        assert_eq!((s, v["code"].as_str()), (StatusCode::NOT_FOUND, Some("not_found")), "{path}");
    }
    let (s, _) = admin.call(Method::DELETE, &format!("/v1/webhooks/{id}"), None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = admin.call(Method::DELETE, &format!("/v1/webhooks/{id}"), None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = admin.call(Method::GET, &format!("/v1/webhooks/{id}"), None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // Audited, without the secret.
    let (_, audit) = admin.call(Method::GET, &format!("/v1/audit?key_id={id}"), None).await;
    let actions: Vec<&str> =
        audit["items"].as_array().expect("items").iter().filter_map(|e| e["action"].as_str()).collect();
    assert_eq!(actions, ["webhook.delete", "webhook.create"]);
    assert!(!audit.to_string().contains(&secret), "{audit}");
}

#[tokio::test]
async fn webhook_routes_and_codes_sqlite() {
    webhook_routes_and_codes(Admin::new().await).await;
}

#[tokio::test]
async fn webhook_routes_and_codes_postgres() {
    let Some(db) = pg::fresh().await else { return };
    webhook_routes_and_codes(TestGateway::new().postgres(db.url()).admin().await).await;
}

/// Owner and admin tokens not confined to an account manage webhooks;
/// viewers and confined tokens get 403 `forbidden` on every route, reads
/// included.
#[tokio::test]
async fn only_owners_and_unconfined_admins_manage_webhooks() {
    let admin = Admin::new().await;
    let acc = admin.account("A").await;
    let (existing, _) = webhook(&admin, json!({ "url": "https://example.com/h", "events": ["key.created"] })).await;
    let owner_token = token(&admin, "owner", None).await;
    let unconfined_admin = token(&admin, "admin", None).await;
    let confined_admin = token(&admin, "admin", Some(&acc)).await;
    let confined_owner = token(&admin, "owner", Some(&acc)).await;
    let viewer = token(&admin, "viewer", None).await;
    let body = || Some(json!({ "url": "https://example.com/h", "events": ["key.created"] }).to_string());
    for (who, token, allowed) in [
        ("env owner", TOKEN.to_owned(), true),
        ("owner", owner_token, true),
        ("admin", unconfined_admin, true),
        // A webhook can see every account's events: no confined token,
        // even an owner's, may have one.
        ("confined owner", confined_owner, false),
        ("confined admin", confined_admin, false),
        ("viewer", viewer, false),
    ] {
        let (s, v) = admin.call_as(Some(&token), Method::POST, "/v1/webhooks", body()).await;
        let created = v["webhook"]["id"].as_str().map(str::to_owned);
        let routes = [
            (Method::GET, "/v1/webhooks".to_owned(), StatusCode::OK),
            (Method::GET, format!("/v1/webhooks/{existing}"), StatusCode::OK),
            (Method::GET, format!("/v1/webhooks/{existing}/deliveries"), StatusCode::OK),
        ];
        if allowed {
            assert_eq!(s, StatusCode::CREATED, "{who}: {v}");
            for (method, path, status) in routes {
                assert_eq!(admin.call_as(Some(&token), method, &path, None).await.0, status, "{who} {path}");
            }
            let path = format!("/v1/webhooks/{}", created.expect("id"));
            assert_eq!(admin.call_as(Some(&token), Method::DELETE, &path, None).await.0, StatusCode::NO_CONTENT);
        } else {
            assert_eq!((s, v["code"].as_str()), (StatusCode::FORBIDDEN, Some("forbidden")), "{who}: {v}");
            for (method, path, _) in routes {
                let (s, v) = admin.call_as(Some(&token), method, &path, None).await;
                assert_eq!((s, v["code"].as_str()), (StatusCode::FORBIDDEN, Some("forbidden")), "{who} {path}");
            }
            let path = format!("/v1/webhooks/{existing}");
            assert_eq!(admin.call_as(Some(&token), Method::DELETE, &path, None).await.0, StatusCode::FORBIDDEN);
        }
    }
    let (s, _) = admin.call_as(None, Method::GET, "/v1/webhooks", None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
}
