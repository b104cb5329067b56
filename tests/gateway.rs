//! The whole gateway end to end: real store file, real listeners, real
//! upstream. Key lifecycle changes made through the admin API are felt by
//! the proxy at once; changes made by another process arrive by polling.

mod kit;

use std::time::{Duration, Instant};

use http::{Method, StatusCode};
use kit::http::{fetch, get_with_key};
use kit::AdminCalls;
use kit::Gateway;
use serde_json::json;

#[tokio::test]
async fn valid_key_reaches_the_upstream_with_its_identity() {
    let gw = Gateway::start().await;
    let acc = gw.admin.account("Acme").await;
    let (id, secret) = gw.admin.key(&acc, "write").await;
    let r = get_with_key(gw.proxy(), "/orders?x=1", &secret).await;
    assert_eq!(r.status, StatusCode::OK);
    let seen = r.json();
    assert_eq!(seen["path"], "/orders");
    assert_eq!(seen["query"], "x=1");
    assert_eq!(seen["headers"]["x-keygate-key-id"][0], id.as_str());
    assert_eq!(seen["headers"]["x-keygate-account-id"][0], acc.as_str());
    assert_eq!(seen["headers"]["x-keygate-permission"][0], "write");
    assert!(seen["headers"].get("authorization").is_none(), "credential stripped");
}

#[tokio::test]
async fn rotation_without_grace_refuses_the_old_secret_at_once() {
    let gw = Gateway::start().await;
    let acc = gw.admin.account("Acme").await;
    let (id, old) = gw.admin.key(&acc, "read").await;
    let (s, v) = gw.admin.call(Method::POST, &format!("/v1/keys/{id}/rotate"), None).await;
    assert_eq!(s, StatusCode::OK);
    let new = v["secret"].as_str().expect("secret");
    let r = get_with_key(gw.proxy(), "/", &old).await;
    assert_eq!((r.status, r.code().as_str()), (StatusCode::UNAUTHORIZED, "key_revoked"));
    assert_eq!(get_with_key(gw.proxy(), "/", new).await.status, StatusCode::OK);
}

#[tokio::test]
async fn rotation_with_grace_keeps_the_old_secret_until_the_grace_ends() {
    let gw = Gateway::start().await;
    let acc = gw.admin.account("Acme").await;
    let (id, old) = gw.admin.key(&acc, "read").await;
    let (_, v) =
        gw.admin.call(Method::POST, &format!("/v1/keys/{id}/rotate"), Some(json!({ "grace_period_seconds": 1 }))).await;
    let new = v["secret"].as_str().expect("secret").to_owned();
    assert_eq!(get_with_key(gw.proxy(), "/", &old).await.status, StatusCode::OK, "old secret inside its grace");
    assert_eq!(get_with_key(gw.proxy(), "/", &new).await.status, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let r = get_with_key(gw.proxy(), "/", &old).await;
    assert_eq!((r.status, r.code().as_str()), (StatusCode::UNAUTHORIZED, "key_revoked"), "grace over");
    assert_eq!(get_with_key(gw.proxy(), "/", &new).await.status, StatusCode::OK);
}

#[tokio::test]
async fn revoked_key_is_refused_by_the_next_request() {
    let gw = Gateway::start().await;
    let acc = gw.admin.account("Acme").await;
    let (id, secret) = gw.admin.key(&acc, "read").await;
    assert_eq!(get_with_key(gw.proxy(), "/", &secret).await.status, StatusCode::OK);
    let (s, _) = gw.admin.call(Method::DELETE, &format!("/v1/keys/{id}"), None).await;
    assert_eq!(s, StatusCode::OK);
    let r = get_with_key(gw.proxy(), "/", &secret).await;
    assert_eq!((r.status, r.code().as_str()), (StatusCode::UNAUTHORIZED, "key_revoked"));
    assert!(r.headers.get("www-authenticate").is_some());
}

#[tokio::test]
async fn disabled_key_is_refused_until_enabled_again() {
    let gw = Gateway::start().await;
    let acc = gw.admin.account("Acme").await;
    let (id, secret) = gw.admin.key(&acc, "read").await;
    gw.admin.call(Method::PATCH, &format!("/v1/keys/{id}"), Some(json!({ "enabled": false }))).await;
    let r = get_with_key(gw.proxy(), "/", &secret).await;
    assert_eq!((r.status, r.code().as_str()), (StatusCode::UNAUTHORIZED, "key_disabled"));
    gw.admin.call(Method::PATCH, &format!("/v1/keys/{id}"), Some(json!({ "enabled": true }))).await;
    assert_eq!(get_with_key(gw.proxy(), "/", &secret).await.status, StatusCode::OK);
}

#[tokio::test]
async fn permission_change_applies_at_once() {
    let gw = Gateway::start().await;
    let acc = gw.admin.account("Acme").await;
    let (id, secret) = gw.admin.key(&acc, "read").await;
    let auth = format!("Bearer {secret}");
    let url = format!("http://{}/orders", gw.proxy());
    let headers = [("authorization", auth.as_str())];
    let post = || fetch(Method::POST, &url, &headers, "{}");
    let r = post().await;
    assert_eq!((r.status, r.code().as_str()), (StatusCode::FORBIDDEN, "insufficient_permission"));
    gw.admin.call(Method::PATCH, &format!("/v1/keys/{id}"), Some(json!({ "permission": "write" }))).await;
    assert_eq!(post().await.status, StatusCode::OK);
}

#[tokio::test]
async fn account_without_api_access_is_refused() {
    let gw = Gateway::start().await;
    let acc = gw.admin.account("Acme").await;
    let (_, secret) = gw.admin.key(&acc, "read").await;
    gw.admin.call(Method::PATCH, &format!("/v1/accounts/{acc}"), Some(json!({ "api_access": false }))).await;
    let r = get_with_key(gw.proxy(), "/", &secret).await;
    assert_eq!((r.status, r.code().as_str()), (StatusCode::FORBIDDEN, "api_access_disabled"));
    gw.admin.call(Method::PATCH, &format!("/v1/accounts/{acc}"), Some(json!({ "api_access": true }))).await;
    assert_eq!(get_with_key(gw.proxy(), "/", &secret).await.status, StatusCode::OK);
}

#[tokio::test]
async fn expiry_is_checked_against_the_clock_on_every_request() {
    let gw = Gateway::start().await;
    let acc = gw.admin.account("Acme").await;
    let expires = keygate::clock::rfc3339(keygate::clock::now_ms() + 800);
    let body = json!({ "account_id": acc, "name": "short", "permission": "read", "expires_at": expires });
    let (s, v) = gw.admin.call(Method::POST, "/v1/keys", Some(body)).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let secret = v["secret"].as_str().expect("secret");
    assert_eq!(get_with_key(gw.proxy(), "/", secret).await.status, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(900)).await;
    let r = get_with_key(gw.proxy(), "/", secret).await;
    assert_eq!((r.status, r.code().as_str()), (StatusCode::UNAUTHORIZED, "key_expired"));
    let (_, shown) =
        gw.admin.call(Method::GET, &format!("/v1/keys/{}", v["key"]["id"].as_str().expect("id")), None).await;
    assert_eq!(shown["status"], "expired");
}

#[tokio::test]
async fn admin_routes_are_not_reachable_through_the_proxy() {
    let gw = Gateway::start().await;
    let r = fetch(
        Method::GET,
        &format!("http://{}/v1/keys", gw.proxy()),
        &[("authorization", &format!("Bearer {}", kit::TOKEN))],
        "",
    )
    .await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::UNAUTHORIZED, "invalid_key"),
        "an admin token is no API key"
    );
    let acc = gw.admin.account("Acme").await;
    let (_, secret) = gw.admin.key(&acc, "read").await;
    let r = get_with_key(gw.proxy(), "/v1/keys", &secret).await;
    assert_eq!(r.json()["path"], "/v1/keys", "the proxy forwards it to the upstream; it never serves the admin API");
}

#[tokio::test]
async fn a_change_made_by_another_process_is_picked_up_by_polling() {
    let gw = Gateway::start().await;
    let dir = gw.dir.path();
    let yaml = kit::process::yaml(dir, &format!("http://{}", gw.upstream));
    let other_dir = tempfile::tempdir().expect("tempdir");
    let other = kit::process::spawn(other_dir.path(), &yaml, &[("KEYGATE_ADMIN_TOKEN", kit::TOKEN)]);
    let other_admin = kit::admin_client(other.admin);
    let acc = other_admin.account("Made elsewhere").await;
    let (id, secret) = other_admin.key(&acc, "read").await;
    let started = Instant::now();
    while get_with_key(gw.proxy(), "/", &secret).await.status != StatusCode::OK {
        assert!(started.elapsed() < Duration::from_secs(3), "the poller did not pick up the new key");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    other_admin.call(Method::POST, &format!("/v1/keys/{id}/revoke"), None).await;
    let started = Instant::now();
    while get_with_key(gw.proxy(), "/", &secret).await.code() != "key_revoked" {
        assert!(started.elapsed() < Duration::from_secs(3), "the poller did not pick up the revocation");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
