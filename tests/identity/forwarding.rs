//! Forwarding headers: from a peer that is not a trusted proxy, the client's
//! `X-Forwarded-For` is replaced and the other forwarding headers removed;
//! from a trusted proxy they pass, and `X-Forwarded-For` entries with a
//! port are read as the address they carry.

use http::Method;

use crate::support::config;
use crate::support::upstream::Upstream;
use crate::{KeySpec, OneKeyGateway};

const SPOOFED: [(&str, &str); 5] = [
    ("x-forwarded-for", "203.0.113.9"),
    ("forwarded", "for=203.0.113.9;host=internal.example;proto=https"),
    ("x-real-ip", "203.0.113.9"),
    ("x-forwarded-host", "internal.example"),
    ("x-forwarded-port", "8443"),
];

#[tokio::test]
async fn untrusted_peer_forwarding_headers_are_replaced_or_removed() {
    let upstream = Upstream::start().await;
    let gw = OneKeyGateway::start(config(&upstream.url("")), KeySpec::read()).await;
    let seen = gw.send(Method::GET, "/x", &SPOOFED).await.json()["headers"].clone();
    assert_eq!(seen["x-forwarded-for"], serde_json::json!(["127.0.0.1"]), "replaced, not appended: {seen}");
    for gone in ["forwarded", "x-real-ip", "x-forwarded-host", "x-forwarded-port"] {
        assert!(seen.get(gone).is_none(), "{gone} reached the upstream: {seen}");
    }
}

#[tokio::test]
async fn trusted_proxy_forwarding_headers_pass() {
    let upstream = Upstream::start().await;
    let mut cfg = config(&upstream.url(""));
    cfg.proxy.trusted_proxies = vec!["127.0.0.0/8".into()];
    let gw = OneKeyGateway::start(cfg, KeySpec::read()).await;
    let seen = gw.send(Method::GET, "/x", &SPOOFED).await.json()["headers"].clone();
    assert_eq!(seen["x-forwarded-for"], serde_json::json!(["203.0.113.9, 127.0.0.1"]), "{seen}");
    assert_eq!(seen["x-real-ip"], serde_json::json!(["203.0.113.9"]));
    assert_eq!(seen["x-forwarded-host"], serde_json::json!(["internal.example"]));
    assert_eq!(seen["x-forwarded-port"], serde_json::json!(["8443"]));
    assert!(seen.get("forwarded").is_some(), "{seen}");
}
