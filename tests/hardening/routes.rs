//! Per-key route restrictions against paths that say one thing and mean
//! another: dot segments, percent-encoded dots and slashes, `;` parameters.
//! A key allowed `/v1/reports` must not reach anything an upstream would
//! resolve outside `/v1/reports`.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use keygate::config::{Config, RouteConfig};
use keygate::keys::{
    generate, Changes, InlineId, KeyPolicy, KeySet, Permission, PolicyRow, Restrictions, RouteRule, Secret,
};
use keygate::proxy::Proxy;
use keygate::shutdown::Shutdown;
use tokio::net::TcpListener;

use crate::exchange;
use crate::support::config;
use crate::support::upstream::Upstream;

/// A proxy whose one key may only GET under `/v1/reports`.
async fn restricted_gateway(upstream: &Upstream) -> (std::net::SocketAddr, Secret) {
    let routes = [RouteRule { path_prefix: "/v1/reports".into(), methods: vec![], host: None }];
    gateway_with(config(&upstream.url("")), Restrictions::parse(&[], &routes).expect("valid")).await
}

/// A proxy on `config` whose one key has `restrictions`.
async fn gateway_with(config: Config, restrictions: Option<Arc<Restrictions>>) -> (std::net::SocketAddr, Secret) {
    let key = generate("kg_live");
    let policy = KeyPolicy {
        id: InlineId::new("key_reports").expect("id"),
        account_id: InlineId::new("acc_main").expect("id"),
        permission: Permission::Read,
        enabled: true,
        revoked: false,
        api_access: true,
        expires_at: None,
        quota: None,
        restrictions,
    };
    let keyset = KeySet::empty().apply(Changes {
        revision: 1,
        keys: vec![PolicyRow { hash: key.hash(), policy }],
        retired: vec![],
    });
    let keyset = Arc::new(ArcSwap::from_pointee(keyset));
    let metrics = keygate::metrics::Metrics::new(&["default".to_string()], Arc::clone(&keyset), 10).expect("metrics");
    let proxy = Proxy::new(&config, keyset, metrics).expect("proxy");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(proxy.serve(listener, None, Shutdown::new()));
    (addr, key)
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
async fn two_hosts(a: &Upstream, b: &Upstream, routes: &[RouteRule]) -> (std::net::SocketAddr, Secret) {
    let mut config = config(&a.url(""));
    config.routes = vec![RouteConfig {
        path_prefix: "/".into(),
        host: Some("b.example".into()),
        upstream: b.url(""),
        ..Default::default()
    }];
    gateway_with(config, Restrictions::parse(&[], routes).expect("valid")).await
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
