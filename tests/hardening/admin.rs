//! What the fuzzers found on the admin API, kept as tests: every refusal is
//! problem+json (docs/admin-api.md#errors), including the ones axum's extractors make,
//! and a 422 names the field at fault.

use http::{Method, StatusCode};
use serde_json::Value;

use crate::kit::{Admin, TOKEN};

/// Calls the router; returns the status, the content type and the body.
async fn call(admin: &Admin, method: Method, uri: &str, body: &str) -> (StatusCode, String, String) {
    let auth = format!("Bearer {TOKEN}");
    let headers = [("authorization", auth.as_str()), ("content-type", "application/json")];
    let res = admin.request(method, uri, &headers, body.to_owned()).await;
    let status = res.status();
    let content_type = res.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let bytes = res.body();
    (status, content_type, String::from_utf8_lossy(bytes).into_owned())
}

/// axum's own extractor rejections (an id that is not UTF-8 once
/// percent-decoded, a query parameter given twice) answer like every other
/// refusal: 400 problem+json `invalid_parameter`, naming the parameter.
#[tokio::test]
async fn path_and_query_rejections_are_problem_json() {
    let admin = Admin::new().await;
    for (method, uri, parameter) in [
        (Method::GET, "/v1/keys/%FF", "`id`"),
        (Method::POST, "/v1/keys/%FF/revoke", "`id`"),
        (Method::PATCH, "/v1/keys/%FF", "`id`"),
        (Method::DELETE, "/v1/keys/%FF", "`id`"),
        (Method::POST, "/v1/keys/%FF/rotate", "`id`"),
        (Method::GET, "/v1/keys/%FF/usage", "`id`"),
        (Method::GET, "/v1/accounts/%C3%28", "`id`"),
        (Method::PATCH, "/v1/accounts/%C3%28", "`id`"),
        (Method::DELETE, "/v1/admin-tokens/%FF", "`id`"),
        (Method::GET, "/v1/keys?status=active&status=revoked", "`status`"),
        (Method::GET, "/v1/accounts?limit=1&limit=2", "`limit`"),
        (Method::GET, "/v1/audit?since=x&since=y", "`since`"),
    ] {
        let (status, content_type, body) = call(&admin, method.clone(), uri, "{}").await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{method} {uri}: {body}");
        assert_eq!(content_type, "application/problem+json", "{method} {uri}: {status} {body}");
        let doc: Value = serde_json::from_str(&body).expect("json");
        assert_eq!(doc["code"], "invalid_parameter", "{method} {uri}: {body}");
        assert_eq!(doc["status"], 400, "{method} {uri}: {body}");
        let detail = doc["detail"].as_str().expect("detail");
        assert!(detail.contains(parameter), "{method} {uri}: the detail names {parameter}: {body}");
    }
}

/// What keeps the test above true for handlers added later: the admin
/// handlers take `admin::extract::{Path, Query}`, never axum's own.
#[test]
fn admin_handlers_never_take_axums_path_or_query() {
    let sources = [
        ("accounts.rs", include_str!("../../src/admin/accounts.rs")),
        ("keys.rs", include_str!("../../src/admin/keys.rs")),
        ("lifecycle.rs", include_str!("../../src/admin/lifecycle.rs")),
        ("tokens.rs", include_str!("../../src/admin/tokens.rs")),
        ("usage.rs", include_str!("../../src/admin/usage.rs")),
        ("health.rs", include_str!("../../src/admin/health.rs")),
        ("openapi.rs", include_str!("../../src/admin/openapi.rs")),
        ("dashboard.rs", include_str!("../../src/admin/dashboard.rs")),
        ("auth.rs", include_str!("../../src/admin/auth.rs")),
    ];
    for (file, source) in sources {
        for line in source.lines().filter(|l| l.trim_start().starts_with("use axum::extract")) {
            assert!(
                !line.contains("Path") && !line.contains("Query"),
                "src/admin/{file}: `{line}` answers its rejections in text/plain; use super::extract::{{Path, Query}}"
            );
        }
        for bypass in ["axum::extract::Path<", "axum::extract::Query<", "extract::Path(", "extract::Query("] {
            assert!(!source.contains(bypass), "src/admin/{file} uses `{bypass}`");
        }
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

/// Sends `GET uri` with the given headers; returns the response's
/// `x-request-id`, status and body.
async fn get_with(admin: &Admin, uri: &str, headers: &[(&str, String)]) -> (String, StatusCode, Value) {
    let headers: Vec<(&str, &str)> = headers.iter().map(|(name, value)| (*name, value.as_str())).collect();
    let res = admin.raw(Method::GET, uri, &headers).await;
    let id = res.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    (id, res.status(), serde_json::from_slice(res.body()).unwrap_or(Value::Null))
}

/// The admin API keeps the proxy's request-id rule: a sane client id is
/// echoed, else a new one of 32 hex digits; its problems carry it too.
#[tokio::test]
async fn admin_problems_carry_the_request_id() {
    let admin = Admin::new().await;
    let auth = ("authorization", format!("Bearer {TOKEN}"));
    let uri = "/v1/keys/key_00000000000000000000";
    let (id, status, doc) = get_with(&admin, uri, &[auth.clone(), ("x-request-id", "client-id_1.2".into())]).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{doc}");
    assert_eq!(id, "client-id_1.2");
    assert_eq!(doc["request_id"], "client-id_1.2", "{doc}");
    let (id, _, doc) = get_with(&admin, uri, &[auth, ("x-request-id", "not sane!".into())]).await;
    assert!(id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
    assert_eq!(doc["request_id"], id.as_str(), "{doc}");
}

/// Admin tokens are read like proxy keys: `Bearer`, any case, then spaces
/// or tabs.
#[tokio::test]
async fn admin_token_after_bearer_and_a_tab_is_accepted() {
    let admin = Admin::new().await;
    for value in [format!("Bearer\t{TOKEN}"), format!("bEaReR  {TOKEN}")] {
        let (_, status, doc) = get_with(&admin, "/v1/accounts", &[("authorization", value)]).await;
        assert_eq!(status, StatusCode::OK, "{doc}");
    }
    let (_, status, doc) = get_with(&admin, "/v1/accounts", &[("authorization", "Bearer\t".into())]).await;
    assert_eq!((status, &doc["code"]), (StatusCode::UNAUTHORIZED, &Value::from("invalid_token")));
}
