//! Bodies and limits (docs/proxy.md#limits-and-timeouts): bodies stream intact both ways, 413
//! for bodies over the route's limit (declared or streamed), 431 for large
//! heads, slow clients cut off; and routing by prefix and host.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use keygate::config::RouteConfig;

use crate::kit::http::{chunked, empty, full, raw, send};
use crate::kit::upstream::Upstream;
use crate::kit::{config, ProxyGateway};
use crate::{assert_problem, gateway};

#[tokio::test]
async fn eight_mib_body_round_trips_intact() {
    let (_, gw) = gateway().await;
    let chunks: Vec<Bytes> = (0..128u32)
        .map(|i| Bytes::from((0..64 * 1024u32).map(|j| (i.wrapping_mul(31) ^ j) as u8).collect::<Vec<u8>>()))
        .collect();
    let mut hasher = blake3::Hasher::new();
    chunks.iter().for_each(|c| {
        hasher.update(c);
    });
    let sent = hasher.finalize();
    let req = gw.request(Method::POST, "/echo-body", &gw.keys.write).body(chunked(chunks.clone()));
    let reply = send(req.expect("request")).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body.len(), 8 * 1024 * 1024);
    assert_eq!(blake3::hash(&reply.body), sent, "streamed back intact");
    let req = gw.request(Method::PUT, "/hash", &gw.keys.write).body(chunked(chunks));
    let seen = send(req.expect("request")).await.json();
    assert_eq!(seen["body_len"], 8 * 1024 * 1024);
    assert_eq!(seen["body_blake3"], sent.to_hex().as_str());
}

async fn small_body_limit() -> (Upstream, ProxyGateway) {
    let upstream = Upstream::start().await;
    let mut cfg = config(&upstream.url(""));
    cfg.proxy.max_body_bytes = 64 * 1024;
    (upstream, ProxyGateway::start(cfg).await)
}

#[tokio::test]
async fn body_too_large_by_content_length_before_the_upstream() {
    let (upstream, gw) = small_body_limit().await;
    let head = format!(
        "POST /x HTTP/1.1\r\nHost: gw\r\nX-API-Key: {}\r\nContent-Length: {}\r\n\r\n",
        gw.keys.write.expose(),
        64 * 1024 + 1
    );
    let answer = raw(gw.addr, head.as_bytes(), Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("\"code\":\"body_too_large\""), "{answer}");
    assert_eq!(upstream.hits(), 0);
    let fits = gw.request(Method::POST, "/x", &gw.keys.write).body(full(vec![7u8; 64 * 1024]));
    assert_eq!(send(fits.expect("request")).await.json()["body_len"], 64 * 1024);
}

#[tokio::test]
async fn chunked_body_over_the_limit_is_cut_with_413() {
    let (_, gw) = small_body_limit().await;
    let chunks: Vec<Bytes> = (0..5).map(|_| Bytes::from(vec![b'z'; 16 * 1024])).collect();
    let req = gw.request(Method::POST, "/x", &gw.keys.write).body(chunked(chunks));
    assert_problem(&send(req.expect("request")).await, 413, "body_too_large");
}

#[tokio::test]
async fn header_too_large() {
    let (upstream, gw) = gateway().await;
    let big = "a".repeat(40 * 1024);
    let req = gw.request(Method::GET, "/x", &gw.keys.write).header("x-big", big.as_str());
    assert_problem(&send(req.body(empty()).expect("request")).await, 431, "header_too_large");
    // Authentication comes first: without a key the answer is 401.
    let req = Request::get(gw.url("/x")).header("x-big", big.as_str()).body(empty()).expect("request");
    assert_problem(&send(req).await, 401, "missing_key");
    // Far past the limit, hyper cuts the connection with a bare 431.
    let huge = format!("GET /x HTTP/1.1\r\nHost: gw\r\nX-Huge: {}\r\n\r\n", "b".repeat(200 * 1024));
    let answer = raw(gw.addr, huge.as_bytes(), Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
    assert_eq!(upstream.hits(), 0);
}

#[tokio::test]
async fn slow_client_is_cut_off_by_the_header_read_timeout() {
    let upstream = Upstream::start().await;
    let mut cfg = config(&upstream.url(""));
    cfg.proxy.header_read_timeout_ms = 300;
    let gw = ProxyGateway::start(cfg).await;
    let started = Instant::now();
    raw(gw.addr, b"GET /x HTTP/1.1\r\nHost: gw\r\n", Duration::from_secs(10)).await;
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(250) && waited < Duration::from_secs(3), "closed after {waited:?}");
}

#[tokio::test]
async fn routes_by_prefix_and_host_to_other_upstreams() {
    let default = Upstream::start().await;
    let second = Upstream::start().await;
    let mut cfg = config(&default.url(""));
    let route = |prefix: &str, host: Option<&str>, upstream: String| RouteConfig {
        path_prefix: prefix.into(),
        host: host.map(str::to_owned),
        upstream,
        max_body_bytes: None,
        http2: None,
        cost: None,
    };
    cfg.routes = vec![route("/v2", None, second.url("/base")), route("/tenant", Some("api.example"), second.url(""))];
    let gw = ProxyGateway::start(cfg).await;
    let seen = send(gw.get("/v2/things?x=1")).await.json();
    assert_eq!(seen["path"], "/base/v2/things");
    assert_eq!(seen["query"], "x=1");
    assert_eq!(second.hits(), 1);
    send(gw.get("/v20")).await;
    send(gw.get("/tenant")).await;
    assert_eq!((default.hits(), second.hits()), (2, 1), "/v20 and another host's /tenant go to the default");
    let req = gw.request(Method::GET, "/tenant/a", &gw.keys.write).header("host", "API.example:8080");
    assert_eq!(send(req.body(empty()).expect("request")).await.json()["path"], "/tenant/a");
    assert_eq!(second.hits(), 2);
}
