//! What the fuzzers found on the admin API, kept as tests: every refusal is
//! problem+json (DESIGN.md §4), including the ones axum's extractors make,
//! and a 422 names the field at fault.

use axum::body::Body;
use http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

use crate::harness::{Admin, TOKEN};

/// Calls the router; returns the status, the content type and the body.
async fn call(admin: &Admin, method: Method, uri: &str, body: &str) -> (StatusCode, String, String) {
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .header("authorization", format!("Bearer {TOKEN}"))
        .header("content-type", "application/json")
        .body(Body::from(body.to_owned()))
        .expect("request");
    let res = admin.router.clone().oneshot(req).await.expect("infallible");
    let status = res.status();
    let content_type = res.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let bytes = res.into_body().collect().await.expect("body").to_bytes();
    (status, content_type, String::from_utf8_lossy(&bytes).into_owned())
}

#[tokio::test]
#[ignore = "bug: axum Path/Query rejections (id not UTF-8 after decoding, a query parameter given twice) answer 400 text/plain, not problem+json, and 400 is undocumented on the list routes"]
async fn path_and_query_rejections_are_problem_json() {
    let admin = Admin::new().await;
    for (method, uri) in [
        (Method::GET, "/v1/keys/%FF"),
        (Method::POST, "/v1/keys/%FF/revoke"),
        (Method::GET, "/v1/accounts/%C3%28"),
        (Method::GET, "/v1/keys?status=active&status=revoked"),
        (Method::GET, "/v1/accounts?limit=1&limit=2"),
        (Method::GET, "/v1/audit?since=x&since=y"),
    ] {
        let (status, content_type, body) = call(&admin, method.clone(), uri, "").await;
        assert!(status.is_client_error(), "{method} {uri}: {status}");
        assert_eq!(content_type, "application/problem+json", "{method} {uri}: {status} {body}");
    }
}

#[tokio::test]
async fn unknown_field_with_an_empty_name_is_named() {
    let admin = Admin::new().await;
    let (status, _, body) = call(&admin, Method::POST, "/v1/accounts", r#"{"name": "x", "": 1}"#).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let doc: Value = serde_json::from_str(&body).expect("json");
    assert!(doc["field"].as_str().is_some_and(|f| !f.is_empty()), "{body}");
}
