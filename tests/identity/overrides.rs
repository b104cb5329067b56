//! Method and URL override headers (`X-HTTP-Method-Override`,
//! `X-Original-URL`, …) that make frameworks act on another method or path
//! than the one keygate decided on.

use http::Method;
use keygate::config::HeaderRule;

use crate::kit::config;
use crate::kit::upstream::Upstream;
use crate::{assert_refused, KeySpec, OneKeyGateway};

const OVERRIDES: [(&str, &str); 5] = [
    ("x-http-method-override", "DELETE"),
    ("x-http-method", "DELETE"),
    ("x-method-override", "DELETE"),
    ("x-original-url", "/admin"),
    ("x-rewrite-url", "/admin"),
];

#[tokio::test]
async fn override_headers_are_removed_by_default() {
    let upstream = Upstream::start().await;
    let gw = OneKeyGateway::start(config(&upstream.url("")), KeySpec::read()).await;
    let reply = gw.send(Method::GET, "/v1/reports", &OVERRIDES).await;
    assert_eq!(reply.status.as_u16(), 200);
    let seen = reply.json()["headers"].clone();
    for (name, _) in OVERRIDES {
        assert!(seen.get(name).is_none(), "{name} reached the upstream: {seen}");
    }
}

fn passing(upstream: &Upstream) -> keygate::config::Config {
    let mut cfg = config(&upstream.url(""));
    cfg.proxy.override_headers = HeaderRule::Pass;
    cfg
}

#[tokio::test]
async fn passed_method_override_is_decided_on() {
    let upstream = Upstream::start().await;
    let gw = OneKeyGateway::start(passing(&upstream), KeySpec::read()).await;
    for name in ["x-http-method-override", "x-http-method", "x-method-override"] {
        let reply = gw.send(Method::GET, "/v1/orders/42", &[(name, "delete")]).await;
        assert_refused(&reply, 403, "insufficient_permission");
    }
    assert_eq!(upstream.hits(), 0);
    let reply = gw.send(Method::GET, "/v1/orders/42", &[("x-http-method-override", "HEAD")]).await;
    assert_eq!(reply.status.as_u16(), 200);
    assert_eq!(reply.json()["headers"]["x-http-method-override"], serde_json::json!(["HEAD"]), "passed on");
}

#[tokio::test]
async fn passed_url_override_is_decided_on() {
    let upstream = Upstream::start().await;
    let spec = KeySpec { allowed_routes: vec![("/v1/reports".into(), vec![])], ..KeySpec::write() };
    let gw = OneKeyGateway::start(passing(&upstream), spec).await;
    for name in ["x-original-url", "x-rewrite-url"] {
        for target in ["/admin", "/v1/reports/../../admin", "http://internal/admin?x=1"] {
            let reply = gw.send(Method::GET, "/v1/reports", &[(name, target)]).await;
            assert_refused(&reply, 403, "route_not_allowed");
        }
    }
    let reply = gw.send(Method::GET, "/v1/reports", &[("x-original-url", "not a url")]).await;
    assert_refused(&reply, 400, "bad_request");
    assert_eq!(upstream.hits(), 0);
    let reply = gw.send(Method::POST, "/v1/reports", &[("x-original-url", "/v1/reports/daily")]).await;
    assert_eq!(reply.status.as_u16(), 200);
}
