//! Per-key route restrictions against paths that say one thing and mean
//! another: dot segments, percent-encoded dots and slashes, `;` parameters.
//! A key allowed `/v1/reports` must not reach anything an upstream would
//! resolve outside `/v1/reports`.

use std::time::Duration;

use keygate::keys::decision::RouteRestriction;
use keygate::keys::{generate, KeyPolicy, Permission, Restrictions, Secret};

use crate::exchange;
use crate::kit::upstream::Upstream;
use crate::kit::TestGateway;

/// A proxy whose one key may only GET under `/v1/reports`.
async fn restricted_gateway(upstream: &Upstream) -> (std::net::SocketAddr, Secret) {
    let key = generate("kg_live");
    let reports = RouteRestriction { path_prefix: "/v1/reports".into(), methods: vec![] };
    let row = KeyPolicy::builder("key_reports", "acc_main")
        .permission(Permission::Read)
        .restrictions(Restrictions { ips: vec![], routes: vec![reports] })
        .row(key.hash());
    let gw = TestGateway::new().upstream(upstream.url("")).key(row).proxy().await;
    (gw.addr, key)
}

async fn get(addr: std::net::SocketAddr, key: &Secret, target: &str) -> crate::Answer {
    let head = format!("GET {target} HTTP/1.1\r\nHost: gw\r\nX-API-Key: {}\r\nConnection: close\r\n\r\n", key.expose());
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
