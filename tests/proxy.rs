//! The proxy contract of docs/proxy.md, black-box: a real gateway on
//! 127.0.0.1:0, a real upstream, real HTTP clients. This file holds one test
//! per row of the refusal table; `proxy/` holds headers, bodies and limits,
//! and serving (TLS, certificate reload, shutdown).

mod kit;

#[path = "proxy/fast.rs"]
mod fast;
#[path = "proxy/headers.rs"]
mod headers;
#[path = "proxy/limits.rs"]
mod limits;
#[path = "proxy/serving.rs"]
mod serving;

use std::time::{Duration, Instant};

use http::{Method, Request, StatusCode};
use keygate::keys::Secret;
use kit::http::{empty, send, Reply};
use kit::upstream::{closed_port_url, Upstream};
use kit::{config, ProxyGateway};

async fn gateway() -> (Upstream, ProxyGateway) {
    let upstream = Upstream::start().await;
    let gateway = ProxyGateway::start(config(&upstream.url(""))).await;
    (upstream, gateway)
}

/// Asserts a problem+json answer with `status` and `code`.
fn assert_problem(reply: &Reply, status: u16, code: &str) {
    assert_eq!(reply.status.as_u16(), status, "{}", String::from_utf8_lossy(&reply.body));
    assert_eq!(reply.header("content-type"), Some("application/problem+json"));
    let doc = reply.json();
    assert_eq!(doc["code"], code);
    assert_eq!(doc["status"], status);
    assert_eq!(doc["type"], format!("https://keygate.dev/problems/{code}"));
    assert!(doc["title"].as_str().is_some_and(|t| !t.is_empty()));
    assert_eq!(doc["request_id"].as_str(), reply.header("x-request-id"));
}

async fn with_key(gw: &ProxyGateway, method: Method, key: &Secret) -> Reply {
    send(gw.request(method, "/x", key).body(empty()).expect("request")).await
}

#[tokio::test]
async fn missing_key() {
    let (upstream, gw) = gateway().await;
    let reply = send(Request::get(gw.url("/x")).body(empty()).expect("request")).await;
    assert_problem(&reply, 401, "missing_key");
    assert_eq!(reply.header("www-authenticate"), Some("Bearer realm=\"keygate\""));
    let detail = reply.json()["detail"].as_str().expect("detail").to_ascii_lowercase();
    assert!(detail.contains("x-api-key") && detail.contains("bearer"), "says where to put the key: {detail}");
    assert_eq!(upstream.hits(), 0);
}

#[tokio::test]
async fn invalid_key_malformed_bad_checksum_or_unknown() {
    let (upstream, gw) = gateway().await;
    let mut bad_checksum = gw.keys.write.expose().to_owned().into_bytes();
    bad_checksum[12] = if bad_checksum[12] == b'a' { b'b' } else { b'a' };
    let bad_checksum = Secret::new(String::from_utf8(bad_checksum).expect("ascii"));
    let unknown = keygate::keys::generate("kg_live");
    for key in [Secret::new("kg_live_short".into()), bad_checksum, unknown] {
        let reply = with_key(&gw, Method::GET, &key).await;
        assert_problem(&reply, 401, "invalid_key");
        assert_eq!(reply.header("www-authenticate"), Some("Bearer realm=\"keygate\", error=\"invalid_token\""));
        assert!(!String::from_utf8_lossy(&reply.body).contains(key.expose()), "the key is not echoed");
    }
    let two_keys = gw.get("/x");
    let (mut parts, body) = two_keys.into_parts();
    parts.headers.insert("authorization", format!("Bearer {}", gw.keys.read.expose()).parse().expect("value"));
    assert_problem(&send(Request::from_parts(parts, body)).await, 401, "invalid_key");
    assert_eq!(upstream.hits(), 0);
}

#[tokio::test]
async fn key_expired() {
    let (_, gw) = gateway().await;
    assert_problem(&with_key(&gw, Method::GET, &gw.keys.expired).await, 401, "key_expired");
}

#[tokio::test]
async fn key_disabled() {
    let (_, gw) = gateway().await;
    assert_problem(&with_key(&gw, Method::GET, &gw.keys.disabled).await, 401, "key_disabled");
}

#[tokio::test]
async fn key_revoked() {
    let (_, gw) = gateway().await;
    assert_problem(&with_key(&gw, Method::GET, &gw.keys.revoked).await, 401, "key_revoked");
}

#[tokio::test]
async fn api_access_disabled() {
    let (_, gw) = gateway().await;
    let reply = with_key(&gw, Method::GET, &gw.keys.no_access).await;
    assert_problem(&reply, 403, "api_access_disabled");
    assert_eq!(reply.header("www-authenticate"), None);
}

#[tokio::test]
async fn read_key_cannot_post() {
    let (upstream, gw) = gateway().await;
    assert_problem(&with_key(&gw, Method::POST, &gw.keys.read).await, 403, "insufficient_permission");
    assert_problem(&with_key(&gw, Method::DELETE, &gw.keys.read).await, 403, "insufficient_permission");
    assert_eq!(upstream.hits(), 0);
    for method in [Method::GET, Method::HEAD, Method::OPTIONS] {
        assert_eq!(with_key(&gw, method, &gw.keys.read).await.status, StatusCode::OK);
    }
    assert_eq!(with_key(&gw, Method::POST, &gw.keys.write).await.status, StatusCode::OK);
}

#[tokio::test]
async fn upstream_unavailable_on_closed_port() {
    let gw = ProxyGateway::start(config(&closed_port_url())).await;
    assert_problem(&send(gw.get("/x")).await, 502, "upstream_unavailable");
}

#[tokio::test]
async fn upstream_timeout_on_slow_upstream() {
    let upstream = Upstream::start().await;
    let mut cfg = config(&upstream.url(""));
    cfg.upstream.response_timeout_ms = 300;
    let gw = ProxyGateway::start(cfg).await;
    let started = Instant::now();
    let req = gw.request(Method::GET, "/slow", &gw.keys.write).header("x-delay-ms", "5000");
    assert_problem(&send(req.body(empty()).expect("request")).await, 504, "upstream_timeout");
    assert!(started.elapsed() < Duration::from_secs(3), "took {:?}", started.elapsed());
}

#[tokio::test]
async fn bearer_and_x_api_key_both_work() {
    let (_, gw) = gateway().await;
    let key = gw.keys.write.expose();
    for authorization in [format!("Bearer {key}"), format!("bearer  {key}"), format!("BEARER {key}")] {
        let req = Request::get(gw.url("/x")).header("authorization", authorization).body(empty()).expect("request");
        assert_eq!(send(req).await.status, StatusCode::OK);
    }
    assert_eq!(send(gw.get("/x")).await.status, StatusCode::OK);
    let basic =
        Request::get(gw.url("/x")).header("authorization", "Basic dXNlcjpwdw==").body(empty()).expect("request");
    assert_problem(&send(basic).await, 401, "missing_key");
}

#[tokio::test]
async fn query_parameter_key_only_when_configured() {
    let upstream = Upstream::start().await;
    let gw = ProxyGateway::start(config(&upstream.url(""))).await;
    let key = gw.keys.write.expose().to_owned();
    let url = |gw: &ProxyGateway| gw.url(&format!("/q?x=1&api_key={key}"));
    assert_problem(&send(Request::get(url(&gw)).body(empty()).expect("request")).await, 401, "missing_key");
    let mut cfg = config(&upstream.url(""));
    cfg.proxy.key_query_param = Some("api_key".into());
    let gw = ProxyGateway::start(cfg).await;
    let key = gw.keys.write.expose().to_owned();
    let reply = send(Request::get(gw.url(&format!("/q?x=1&api_key={key}"))).body(empty()).expect("request")).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.json()["query"], "x=1", "the key is not forwarded");
}
