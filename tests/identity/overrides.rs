//! Method and URL override headers (`X-HTTP-Method-Override`,
//! `X-Original-URL`, …) that make frameworks act on another method or path
//! than the one keygate decided on.

use http::Method;

use crate::support::config;
use crate::support::upstream::Upstream;
use crate::{KeySpec, OneKeyGateway};

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
