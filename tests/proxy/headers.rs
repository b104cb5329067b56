//! Header handling (docs/proxy.md#what-the-upstream-gets): the credential stripped, identity
//! headers set and never trusted from the client, hop-by-hop headers removed
//! both ways, forwarding headers and the request id.

use http::{Method, Request};

use crate::gateway;
use crate::kit::http::{empty, send};
use crate::kit::upstream::Upstream;
use crate::kit::{config, ProxyGateway};

#[tokio::test]
async fn credential_is_stripped_before_forwarding() {
    let (_, gw) = gateway().await;
    let req = Request::get(gw.url("/x"))
        .header("authorization", format!("Bearer {}", gw.keys.write.expose()))
        .header("x-api-key", gw.keys.write.expose())
        .body(empty())
        .expect("request");
    let seen = send(req).await.json();
    assert!(seen["headers"].get("authorization").is_none(), "{seen}");
    assert!(seen["headers"].get("x-api-key").is_none(), "{seen}");

    let upstream = Upstream::start().await;
    let mut cfg = config(&upstream.url(""));
    cfg.proxy.strip_credentials = false;
    let gw = ProxyGateway::start(cfg).await;
    let seen = send(gw.get("/x")).await.json();
    assert_eq!(seen["headers"]["x-api-key"][0], gw.keys.write.expose());
}

#[tokio::test]
async fn identity_headers_are_set_and_spoofed_ones_overwritten() {
    let (_, gw) = gateway().await;
    let req = gw
        .request(Method::GET, "/x", &gw.keys.read)
        .header("x-keygate-key-id", "key_admin")
        .header("x-keygate-account-id", "acc_other")
        .header("x-keygate-permission", "write")
        .body(empty())
        .expect("request");
    let headers = send(req).await.json()["headers"].clone();
    assert_eq!(headers["x-keygate-key-id"], serde_json::json!(["key_read"]));
    assert_eq!(headers["x-keygate-account-id"], serde_json::json!(["acc_main"]));
    assert_eq!(headers["x-keygate-permission"], serde_json::json!(["read"]));
}

#[tokio::test]
async fn hop_by_hop_headers_are_removed_both_ways() {
    let (upstream, gw) = gateway().await;
    let req = gw
        .request(Method::GET, "/x", &gw.keys.write)
        .header("connection", "keep-alive, X-Client-Private")
        .header("x-client-private", "secret")
        .header("keep-alive", "timeout=5")
        .header("te", "trailers")
        .header("proxy-authorization", "Basic eDp5")
        .header("x-respond-hop", "1")
        .header("x-client-normal", "yes")
        .body(empty())
        .expect("request");
    let reply = send(req).await;
    let seen = reply.json()["headers"].clone();
    for gone in ["connection", "x-client-private", "keep-alive", "te", "proxy-authorization"] {
        assert!(seen.get(gone).is_none(), "{gone} reached the upstream: {seen}");
    }
    assert_eq!(seen["x-client-normal"][0], "yes");
    assert_eq!(seen["host"][0], upstream.addr.to_string(), "Host is the upstream's");
    for gone in ["connection", "x-upstream-private", "keep-alive", "proxy-authenticate"] {
        assert!(reply.header(gone).is_none(), "{gone} reached the client");
    }
    assert_eq!(reply.header("x-upstream-normal"), Some("yes"));
}

#[tokio::test]
async fn forwarded_headers_and_request_id() {
    let (_, gw) = gateway().await;
    let req = gw
        .request(Method::GET, "/x", &gw.keys.write)
        .header("x-forwarded-for", "203.0.113.9")
        .header("x-forwarded-proto", "https")
        .header("x-request-id", "client-id_1.2")
        .body(empty())
        .expect("request");
    let reply = send(req).await;
    let seen = reply.json()["headers"].clone();
    assert_eq!(seen["x-forwarded-for"][0], "127.0.0.1", "an untrusted peer's chain is replaced");
    assert_eq!(seen["x-forwarded-proto"][0], "http");
    assert_eq!(seen["x-request-id"][0], "client-id_1.2");
    assert_eq!(reply.header("x-request-id"), Some("client-id_1.2"));

    let req = gw.request(Method::GET, "/x", &gw.keys.write).header("x-request-id", "not sane!");
    let reply = send(req.body(empty()).expect("request")).await;
    let generated = reply.header("x-request-id").expect("request id").to_owned();
    assert_eq!(generated.len(), 32);
    assert_eq!(reply.json()["headers"]["x-request-id"][0], generated.as_str());
    assert_eq!(reply.json()["headers"]["x-forwarded-for"][0], "127.0.0.1");
}
