//! Per-key route restrictions against paths that say one thing and mean
//! another: dot segments, percent-encoded dots and slashes, `;` parameters.
//! A key allowed `/v1/reports` must not reach anything an upstream would
//! resolve outside `/v1/reports`.

use std::time::Duration;

use keygate::config::RouteConfig;
use keygate::keys::{generate, KeyPolicy, Permission, Restrictions, RouteRule, Secret};

use crate::exchange;
use crate::kit::upstream::Upstream;
use crate::kit::TestGateway;

/// A proxy whose one key may only GET under `/v1/reports`.
async fn restricted_gateway(upstream: &Upstream) -> (std::net::SocketAddr, Secret) {
    let routes = [RouteRule { path_prefix: "/v1/reports".into(), methods: vec![], host: None }];
    gateway_with(upstream.url(""), vec![], Restrictions::parse(&[], &routes).expect("valid")).await
}

/// A proxy in front of `upstream` with `routes`, whose one key has `restrictions`.
async fn gateway_with(
    upstream: String,
    routes: Vec<RouteConfig>,
    restrictions: Option<std::sync::Arc<Restrictions>>,
) -> (std::net::SocketAddr, Secret) {
    let key = generate("kg_live");
    let mut policy = KeyPolicy::builder("key_reports", "acc_main").permission(Permission::Read);
    if let Some(restrictions) = restrictions {
        policy = policy.restrictions((*restrictions).clone());
    }
    let gw = TestGateway::new()
        .upstream(upstream)
        .config(move |c| c.routes = routes)
        .key(policy.row(key.hash()))
        .proxy()
        .await;
    (gw.addr, key)
}

async fn get(addr: std::net::SocketAddr, key: &Secret, target: &str) -> crate::Answer {
    get_on(addr, key, "gw", target).await
}

async fn get_on(addr: std::net::SocketAddr, key: &Secret, host: &str, target: &str) -> crate::Answer {
    let head =
        format!("GET {target} HTTP/1.1\r\nHost: {host}\r\nX-API-Key: {}\r\nConnection: close\r\n\r\n", key.expose());
    exchange(addr, head.as_bytes(), Duration::from_secs(5)).await
}

#[tokio::test]
async fn allowed_route_is_served_and_others_refused() {
    let upstream = Upstream::start().await;
    let (addr, key) = restricted_gateway(&upstream).await;
    assert_eq!(get(addr, &key, "/v1/reports/daily").await.status(), Some(200));
    let refused = get(addr, &key, "/v1/admin").await;
    assert_eq!(refused.status(), Some(403), "{refused:?}");
    assert!(refused.text.contains("route_not_allowed"));
    assert_eq!(upstream.hits(), 1);
}

#[tokio::test]
async fn dot_segments_cannot_escape_an_allowed_route() {
    let upstream = Upstream::start().await;
    let (addr, key) = restricted_gateway(&upstream).await;
    let mut through = Vec::new();
    for target in [
        "/v1/reports/../admin",
        "/v1/reports/./../admin",
        "/v1/reports/%2e%2e/admin",
        "/v1/reports/%2E%2E%2Fadmin",
        "/v1/reports/..%2fadmin",
        "/v1/reports/..;/admin",
        "/v1/reports/%2e%2e;/admin",
    ] {
        let answer = get(addr, &key, target).await;
        if !matches!(answer.status(), Some(400 | 403)) {
            let forwarded = answer.text.split("\"path\":\"").nth(1).and_then(|p| p.split('"').next()).unwrap_or("?");
            through.push(format!("{target} (upstream saw {forwarded})"));
        }
    }
    assert!(through.is_empty(), "let through: {through:#?}");
    assert_eq!(upstream.hits(), 0, "a path outside /v1/reports reached the upstream");
}

#[tokio::test]
async fn double_encoding_overlong_utf8_and_nul_are_route_not_allowed() {
    let upstream = Upstream::start().await;
    let (addr, key) = restricted_gateway(&upstream).await;
    for target in [
        "/v1/reports/%252e%252e/admin",
        "/v1/reports/%252e%252e%252fadmin",
        "/v1/reports/%c0%ae%c0%ae/admin",
        "/v1/reports/%c0%af..%c0%afadmin",
        "/v1/reports/%e0%80%ae%e0%80%ae/admin",
        "/v1/reports/daily%00.json",
    ] {
        let answer = get(addr, &key, target).await;
        assert_eq!(answer.status(), Some(403), "{target}: {answer:?}");
        assert!(answer.text.contains("route_not_allowed"), "{target}: {answer:?}");
    }
    assert_eq!(upstream.hits(), 0, "a disguised path reached the upstream");
}

/// A gateway whose default upstream is `a` and whose host `b.example` is
/// routed to `b`, with one key restricted by `routes`.
async fn two_hosts(a: &Upstream, b: &Upstream, routes_allowed: &[RouteRule]) -> (std::net::SocketAddr, Secret) {
    let routes = vec![RouteConfig {
        path_prefix: "/".into(),
        host: Some("b.example".into()),
        upstream: b.url(""),
        ..Default::default()
    }];
    gateway_with(a.url(""), routes, Restrictions::parse(&[], routes_allowed).expect("valid")).await
}

#[tokio::test]
async fn a_key_restricted_to_one_host_cannot_reach_another_hosts_upstream() {
    let (a, b) = (Upstream::start().await, Upstream::start().await);
    let only_a = [RouteRule { path_prefix: "/".into(), methods: vec![], host: Some("a.example".into()) }];
    let (addr, key) = two_hosts(&a, &b, &only_a).await;
    assert_eq!(get_on(addr, &key, "a.example", "/v1/x").await.status(), Some(200));
    assert_eq!(get_on(addr, &key, "A.Example.:8080", "/v1/x").await.status(), Some(200));
    for host in ["b.example", "b.example.", "B.EXAMPLE:443", "other.example"] {
        let refused = get_on(addr, &key, host, "/v1/x").await;
        assert_eq!(refused.status(), Some(403), "{host}: {refused:?}");
        assert!(refused.text.contains("route_not_allowed"), "{host}: {refused:?}");
    }
    assert_eq!((a.hits(), b.hits()), (2, 0));
}

#[tokio::test]
async fn a_trailing_dot_host_reaches_its_route() {
    let (a, b) = (Upstream::start().await, Upstream::start().await);
    let (addr, key) = two_hosts(&a, &b, &[]).await;
    for host in ["b.example.", "B.Example.:8080"] {
        assert_eq!(get_on(addr, &key, host, "/v1/x").await.status(), Some(200), "{host}");
    }
    assert_eq!((a.hits(), b.hits()), (0, 2), "a trailing-dot host missed its route");
}
