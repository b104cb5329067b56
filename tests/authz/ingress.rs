//! Real ingresses in front: nginx `auth_request` and Caddy `forward_auth`
//! (Debian's packages), each proxying to the echo upstream with keygate's
//! forward auth deciding. The identity must reach the upstream and nothing
//! refused may; 401, 403 and 429 come back to the client as keygate's own
//! problem+json, through each ingress's own handling of a refusal.

use http::{Method, StatusCode};
use keygate::keys::{generate, KeyPolicy, Quota, Secret};
use serde_json::Value;

use crate::kit::http::{fetch, Reply};
use crate::kit::ingress::Ingress;
use crate::kit::upstream::Upstream;
use crate::kit::{ProxyGateway, TestGateway};

const NGINX: &str = include_str!("nginx.conf");
const CADDY: &str = include_str!("Caddyfile");

/// The echo upstream, keygate trusting the ingress on loopback, and a key
/// allowed one request a minute.
async fn keygate() -> (Upstream, ProxyGateway, Secret) {
    let upstream = Upstream::start().await;
    let once = generate("kg_live");
    let row = KeyPolicy::builder("key_once", "acc_main").quota(Quota { requests: 1, per_seconds: 60 }).row(once.hash());
    let gw = TestGateway::new()
        .upstream(upstream.url(""))
        .config(|c| {
            c.authz.listen = Some("127.0.0.1:0".parse().expect("addr"));
            c.proxy.trusted_proxies = vec!["127.0.0.1/32".into()];
        })
        .key(row)
        .proxy()
        .await;
    (upstream, gw, once)
}

async fn call(ingress: &Ingress, method: Method, path: &str, headers: &[(&str, &str)]) -> Reply {
    fetch(method, &ingress.url(path), headers, "").await
}

fn upstream_headers(reply: &Reply) -> Value {
    reply.json()["headers"].clone()
}

fn assert_refused(ingress: &Ingress, reply: &Reply, status: u16, code: &str) {
    assert_eq!(reply.status.as_u16(), status, "{}\n{}", String::from_utf8_lossy(&reply.body), ingress.logs());
    assert_eq!(reply.header("content-type"), Some("application/problem+json"), "{code}");
    assert_eq!(reply.code(), code, "{}", String::from_utf8_lossy(&reply.body));
}

/// The whole contract through one ingress.
async fn check(ingress: &Ingress, upstream: &Upstream, gw: &ProxyGateway, once: &Secret) {
    let write = gw.keys.write.expose();
    let forged = [("x-api-key", write), ("x-keygate-key-id", "key_forged"), ("x-keygate-permission", "admin")];
    let r = call(ingress, Method::GET, "/v1/things?page=2", &forged).await;
    assert_eq!(r.status, StatusCode::OK, "{}\n{}", String::from_utf8_lossy(&r.body), ingress.logs());
    let seen = upstream_headers(&r);
    assert_eq!(seen["x-keygate-key-id"], serde_json::json!(["key_write"]), "{seen}");
    assert_eq!(seen["x-keygate-account-id"], serde_json::json!(["acc_main"]), "{seen}");
    assert_eq!(seen["x-keygate-permission"], serde_json::json!(["write"]), "{seen}");
    assert_eq!((r.json()["path"].as_str(), r.json()["query"].as_str()), (Some("/v1/things"), Some("page=2")));
    let hits = upstream.hits();

    let r = call(ingress, Method::GET, "/v1/things", &[]).await;
    assert_refused(ingress, &r, 401, "missing_key");
    assert!(r.header("www-authenticate").is_some_and(|v| v.starts_with("Bearer")), "{:?}", r.headers);
    let r = call(ingress, Method::GET, "/", &[("authorization", "Bearer kg_live_0000000000000000000000000000000000")])
        .await;
    assert_refused(ingress, &r, 401, "invalid_key");
    let r = call(ingress, Method::DELETE, "/v1/things/1", &[("x-api-key", gw.keys.read.expose())]).await;
    assert_refused(ingress, &r, 403, "insufficient_permission");
    // The read key's client names a harmless method in the spelling the
    // ingress does not set: refused, not decided on the client's word.
    let spoof = [("x-api-key", gw.keys.read.expose()), ("x-original-method", "GET")];
    let r = call(ingress, Method::DELETE, "/v1/things/1", &spoof).await;
    assert!(r.status == StatusCode::BAD_REQUEST || r.status == StatusCode::FORBIDDEN, "{r:?}");

    assert_eq!(call(ingress, Method::GET, "/", &[("x-api-key", once.expose())]).await.status, StatusCode::OK);
    let r = call(ingress, Method::GET, "/", &[("x-api-key", once.expose())]).await;
    assert_refused(ingress, &r, 429, "rate_limited");
    assert!(r.header("retry-after").is_some(), "{:?}", r.headers);
    assert!(r.header("ratelimit").is_some_and(|v| v.contains("r=0")), "{:?}", r.headers);
    assert_eq!(upstream.hits(), hits + 1, "only the one allowed request reached the upstream");
}

#[tokio::test]
async fn nginx_auth_request_in_front() {
    let (upstream, gw, once) = keygate().await;
    let nginx = Ingress::nginx(NGINX, gw.authz.expect("authz"), upstream.addr);
    check(&nginx, &upstream, &gw, &once).await;
}

#[tokio::test]
async fn caddy_forward_auth_in_front() {
    let (upstream, gw, once) = keygate().await;
    let caddy = Ingress::caddy(CADDY, gw.authz.expect("authz"), upstream.addr);
    check(&caddy, &upstream, &gw, &once).await;
}
