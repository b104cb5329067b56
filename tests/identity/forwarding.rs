//! Forwarding headers: from a peer that is not a trusted proxy, the client's
//! `X-Forwarded-For` is replaced and the other forwarding headers removed;
//! from a trusted proxy they pass, and `X-Forwarded-For` entries with a
//! port are read as the address they carry.

use http::Method;

use crate::kit::config;
use crate::kit::upstream::Upstream;
use crate::{assert_refused, KeySpec, OneKeyGateway};

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

/// A key allowed only from the load balancer's own range (127.0.0.0/8 here)
/// must not pass for a client behind it, whatever form the entry takes.
#[tokio::test]
async fn forwarded_for_entries_with_a_port_name_the_client() {
    let upstream = Upstream::start().await;
    let mut cfg = config(&upstream.url(""));
    cfg.proxy.trusted_proxies = vec!["127.0.0.0/8".into()];
    let spec = KeySpec { allowed_ips: vec!["127.0.0.0/8".into()], ..KeySpec::read() };
    let gw = OneKeyGateway::start(cfg, spec).await;
    assert_eq!(gw.send(Method::GET, "/x", &[]).await.status.as_u16(), 200, "the balancer itself passes");
    assert_eq!(gw.send(Method::GET, "/x", &[("x-forwarded-for", "127.0.0.9:443")]).await.status.as_u16(), 200);
    for entry in ["203.0.113.7:443", "[2001:db8::1]:443", "[2001:db8::1]", "not-an-address", "203.0.113.7:x"] {
        let reply = gw.send(Method::GET, "/x", &[("x-forwarded-for", entry)]).await;
        assert_refused(&reply, 403, "ip_not_allowed");
    }
    assert_eq!(upstream.hits(), 2);
}
