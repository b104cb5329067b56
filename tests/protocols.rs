//! Protocols through the proxy (issue 9): HTTP/2 from clients (ALPN `h2`
//! over TLS, prior-knowledge h2c when configured), HTTP/2 to upstreams,
//! gRPC pass-through with trailers, gRPC-shaped refusals, and HTTP/1.1
//! upgrades (WebSocket) tunnelled after the key decision. Real servers and
//! clients only.

mod kit;

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream;
use http::{Method, Request, StatusCode, Version};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use keygate::config::{Config, QuotaConfig};
use keygate::keys::Secret;
use kit::http::{empty, send, TestBody};
use kit::protocols::{
    grpc_frame, h2_over, h2_send, h2c_client, h2c_upstream, tls_connect, tls_upstream, upgrade_upstream, H2Reply,
};
use kit::upstream::{closed_port_url, Upstream};
use kit::AdminCalls;
use kit::{config, ProxyGateway};
use rustls::pki_types::CertificateDer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

fn h2c_config(upstream_url: &str) -> Config {
    let mut cfg = config(upstream_url);
    cfg.proxy.http2_cleartext = true;
    cfg
}

/// `method path` over HTTP/2 to the gateway, with `key` in `X-API-Key`.
fn h2_request(gw: &ProxyGateway, method: Method, path: &str, key: Option<&Secret>) -> http::request::Builder {
    let mut req = Request::builder().method(method).uri(gw.url(path));
    if let Some(key) = key {
        req = req.header("x-api-key", key.expose());
    }
    req
}

// ---- HTTP/2 from clients ----------------------------------------------------

fn write_certificate(dir: &Path) -> (keygate::config::TlsConfig, CertificateDer<'static>) {
    let pair = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("certificate");
    std::fs::write(dir.join("cert.pem"), pair.cert.pem()).expect("write cert");
    std::fs::write(dir.join("key.pem"), pair.key_pair.serialize_pem()).expect("write key");
    let tls = keygate::config::TlsConfig {
        cert_file: dir.join("cert.pem").display().to_string(),
        key_file: dir.join("key.pem").display().to_string(),
    };
    (tls, pair.cert.der().clone())
}

#[tokio::test]
async fn http2_over_tls_is_chosen_by_alpn() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (tls, cert) = write_certificate(dir.path());
    let upstream = Upstream::start().await;
    let mut cfg = config(&upstream.url(""));
    cfg.proxy.tls = Some(tls.clone());
    let shutdown = keygate::shutdown::Shutdown::new();
    let alpn = keygate::tls::Alpn::Http2AndHttp1;
    let server = keygate::tls::server_config(&tls, alpn, Duration::from_secs(60), &shutdown).expect("tls config");
    let gw = ProxyGateway::start_tls(cfg, Some(server)).await;

    let (stream, picked) = tls_connect(gw.addr, std::slice::from_ref(&cert), &[b"h2", b"http/1.1"]).await;
    assert_eq!(picked.as_deref(), Some(&b"h2"[..]));
    let mut h2 = h2_over(stream).await;
    let req = Request::get(format!("https://localhost:{}/over-h2", gw.addr.port()))
        .header("x-api-key", gw.keys.write.expose())
        .body(empty())
        .expect("request");
    let reply = h2_send(&mut h2, req).await.expect("h2 exchange");
    assert_eq!((reply.status, reply.version), (StatusCode::OK, Version::HTTP_2));
    let seen = reply.json();
    assert_eq!(seen["path"], "/over-h2");
    assert_eq!(seen["headers"]["x-forwarded-proto"][0], "https");
    assert_eq!(seen["headers"]["x-keygate-key-id"][0], "key_write");
    assert_eq!(seen["headers"]["host"][0], upstream.addr.to_string(), "the upstream's Host");
    // Without a key, over HTTP/2 as over HTTP/1.1: 401 problem+json.
    let req = Request::get(format!("https://localhost:{}/x", gw.addr.port())).body(empty()).expect("request");
    let reply = h2_send(&mut h2, req).await.expect("h2 exchange");
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(reply.header("content-type"), Some("application/problem+json"));

    // A client that offers only HTTP/1.1 gets it.
    let (_, picked) = tls_connect(gw.addr, &[cert], &[b"http/1.1"]).await;
    assert_eq!(picked.as_deref(), Some(&b"http/1.1"[..]));
}

#[tokio::test]
async fn h2c_with_prior_knowledge_when_configured() {
    let upstream = Upstream::start().await;
    let gw = ProxyGateway::start(h2c_config(&upstream.url(""))).await;
    let mut h2 = h2c_client(gw.addr).await.expect("h2c handshake");
    let req = h2_request(&gw, Method::GET, "/h2c", Some(&gw.keys.write)).body(empty()).expect("request");
    let reply = h2_send(&mut h2, req).await.expect("h2c exchange");
    assert_eq!((reply.status, reply.version), (StatusCode::OK, Version::HTTP_2));
    assert_eq!(reply.json()["path"], "/h2c");
    assert_eq!(upstream.hits(), 1);

    // The head limit holds over HTTP/2: a head just over it gets the
    // proxy's own 431.
    let req = h2_request(&gw, Method::GET, "/big", Some(&gw.keys.write))
        .header("x-big", "a".repeat(33 * 1024))
        .body(empty())
        .expect("request");
    let reply = h2_send(&mut h2, req).await.expect("h2c exchange");
    assert_eq!(reply.status, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    assert_eq!(reply.json()["code"], "header_too_large");
    assert_eq!(upstream.hits(), 1);

    // HTTP/1.1 on the same port is unchanged.
    assert_eq!(send(gw.get("/h1")).await.status, StatusCode::OK);
    assert_eq!(upstream.hits(), 2);
}

#[tokio::test]
async fn h2c_is_not_spoken_unless_configured() {
    let upstream = Upstream::start().await;
    let gw = ProxyGateway::start(config(&upstream.url(""))).await;
    let refused = async {
        let mut h2 = h2c_client(gw.addr).await?;
        let req = h2_request(&gw, Method::GET, "/h2c", Some(&gw.keys.write)).body(empty()).expect("request");
        h2_send(&mut h2, req).await
    };
    assert!(refused.await.is_err(), "an HTTP/2 preface is not HTTP/1.1");
    assert_eq!(upstream.hits(), 0);
    assert_eq!(send(gw.get("/h1")).await.status, StatusCode::OK);
}

// ---- HTTP/2 to upstreams and gRPC -------------------------------------------

#[tokio::test]
async fn http2_upstream_gets_one_shared_connection_per_thread() {
    let upstream = h2c_upstream().await;
    let mut cfg = config(&upstream.url(""));
    cfg.upstream.http2 = true;
    let gw = ProxyGateway::start(cfg).await;
    let first = send(gw.get("/first")).await;
    assert_eq!(first.status, StatusCode::OK);
    let seen = first.json();
    assert_eq!(seen["version"], "HTTP/2.0");
    assert_eq!(seen["path"], "/first");
    assert_eq!(seen["headers"]["x-keygate-key-id"][0], "key_write");
    assert!(seen["headers"].get("x-api-key").is_none(), "credential stripped");
    let replies = futures_util::future::join_all((0..4).map(|i| send(gw.get(&format!("/many/{i}"))))).await;
    for (i, reply) in replies.iter().enumerate() {
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.json()["path"], format!("/many/{i}"));
    }
    assert_eq!(upstream.hits(), 5);
    assert_eq!(upstream.connections(), 1, "requests share one multiplexed connection");
}

/// A gRPC call's request body fed by hand, one message at a time.
fn grpc_call(gw: &ProxyGateway, key: Option<&Secret>, path: &str) -> (mpsc::Sender<Bytes>, Request<TestBody>) {
    let (tx, rx) = mpsc::channel::<Bytes>(4);
    let frames = stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|b| (Ok(Frame::data(b)), rx)) });
    let req = h2_request(gw, Method::POST, path, key)
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(StreamBody::new(frames).boxed())
        .expect("request");
    (tx, req)
}

#[tokio::test]
async fn grpc_streams_both_ways_and_its_trailers_arrive() {
    let upstream = h2c_upstream().await;
    let mut cfg = h2c_config(&upstream.url(""));
    cfg.upstream.http2 = true;
    let gw = ProxyGateway::start(cfg).await;
    let mut h2 = h2c_client(gw.addr).await.expect("h2c handshake");
    let (tx, req) = grpc_call(&gw, Some(&gw.keys.write), "/echo.Echo/Chat");
    tx.send(grpc_frame(b"first")).await.expect("send");
    let response = tokio::time::timeout(Duration::from_secs(10), h2.send_request(req))
        .await
        .expect("response head in time")
        .expect("response");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "application/grpc");
    assert_eq!(response.headers()["x-seen-te"], "trailers", "te: trailers reached the upstream");
    let mut body = response.into_body();
    // The first message comes back while the request is still open: the
    // bodies stream, neither side is buffered whole.
    let echoed = tokio::time::timeout(Duration::from_secs(10), body.frame())
        .await
        .expect("first echo in time")
        .expect("a frame")
        .expect("frame");
    assert_eq!(echoed.into_data().expect("data"), grpc_frame(b"first"));
    tx.send(grpc_frame(b"second")).await.expect("send");
    drop(tx);
    let mut rest = Vec::new();
    let mut trailers = None;
    while let Some(frame) = body.frame().await {
        match frame.expect("frame").into_data() {
            Ok(data) => rest.extend_from_slice(&data),
            Err(frame) => trailers = frame.into_trailers().ok(),
        }
    }
    assert_eq!(rest, grpc_frame(b"second"));
    let trailers = trailers.expect("trailers arrive at the client");
    assert_eq!(trailers["grpc-status"], "0");
    assert_eq!(trailers["grpc-message"], "echoed");
}

/// Asserts a gRPC trailers-only refusal.
fn assert_grpc_refusal(reply: &H2Reply, status: &str, code: &str) {
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    assert_eq!(reply.header("content-type"), Some("application/grpc"));
    assert_eq!(reply.header("grpc-status"), Some(status), "{reply:?}");
    let message = reply.header("grpc-message").expect("grpc-message");
    assert!(message == code || message.starts_with(&format!("{code}: ")), "{message}");
    assert!(reply.body.is_empty() && reply.trailers.is_none(), "trailers-only: {reply:?}");
    assert_eq!(reply.header("x-request-id").map(str::len), Some(32));
}

#[tokio::test]
async fn grpc_refusals_are_grpc_statuses() {
    let upstream = Upstream::start().await;
    let gw = ProxyGateway::start(h2c_config(&upstream.url(""))).await;
    let mut h2 = h2c_client(gw.addr).await.expect("h2c handshake");
    let unknown = keygate::keys::generate("kg_live");
    for (key, status, code) in [
        (None, "16", "missing_key"),
        (Some(&unknown), "16", "invalid_key"),
        (Some(&gw.keys.revoked), "16", "key_revoked"),
        (Some(&gw.keys.read), "7", "insufficient_permission"),
        (Some(&gw.keys.no_access), "7", "api_access_disabled"),
    ] {
        let (tx, req) = grpc_call(&gw, key, "/svc.Svc/Call");
        drop(tx);
        assert_grpc_refusal(&h2_send(&mut h2, req).await.expect("exchange"), status, code);
    }
    assert_eq!(upstream.hits(), 0);
    // The same refusal to a request that is not gRPC stays problem+json.
    let req = h2_request(&gw, Method::POST, "/svc", None).body(empty()).expect("request");
    let reply = h2_send(&mut h2, req).await.expect("exchange");
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(reply.header("content-type"), Some("application/problem+json"));
}

#[tokio::test]
async fn grpc_rate_limit_and_upstream_failures_are_grpc_statuses() {
    let mut cfg = h2c_config(&closed_port_url());
    cfg.limits.default_per_key = Some(QuotaConfig { requests: 1, per_seconds: 60 });
    let gw = ProxyGateway::start(cfg).await;
    let mut h2 = h2c_client(gw.addr).await.expect("h2c handshake");
    let (tx, req) = grpc_call(&gw, Some(&gw.keys.write), "/svc.Svc/Call");
    drop(tx);
    let reply = h2_send(&mut h2, req).await.expect("exchange");
    assert_grpc_refusal(&reply, "14", "upstream_unavailable");
    let (tx, req) = grpc_call(&gw, Some(&gw.keys.write), "/svc.Svc/Call");
    drop(tx);
    let reply = h2_send(&mut h2, req).await.expect("exchange");
    assert_grpc_refusal(&reply, "8", "rate_limited");
    assert!(reply.header("retry-after").is_some(), "{reply:?}");
    assert!(reply.header("ratelimit").is_some_and(|v| v.contains("r=0")), "{reply:?}");
}

// ---- Upgrades (WebSocket) ---------------------------------------------------

/// Sends an upgrade request for `path` on a new connection and reads the
/// response head (exactly: what follows stays in the stream).
async fn upgrade(addr: std::net::SocketAddr, path: &str, key: Option<&str>) -> (TcpStream, String) {
    let mut tcp = TcpStream::connect(addr).await.expect("connect");
    let key = key.map(|k| format!("X-API-Key: {k}\r\n")).unwrap_or_default();
    let head = format!(
        "GET {path} HTTP/1.1\r\nHost: gw\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{key}\r\n"
    );
    tcp.write_all(head.as_bytes()).await.expect("write");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(10), tcp.read(&mut byte)).await.expect("head in time");
        assert_eq!(n.expect("read"), 1, "closed after {:?}", String::from_utf8_lossy(&head));
        head.push(byte[0]);
    }
    (tcp, String::from_utf8(head).expect("ascii head").to_ascii_lowercase())
}

async fn read_exactly(tcp: &mut TcpStream, n: usize) -> String {
    let mut buf = vec![0u8; n];
    tokio::time::timeout(Duration::from_secs(10), tcp.read_exact(&mut buf)).await.expect("in time").expect("read");
    String::from_utf8(buf).expect("text")
}

async fn upgrade_gateway() -> (Upstream, ProxyGateway) {
    let upstream = upgrade_upstream().await;
    let gw = ProxyGateway::start(config(&upstream.url(""))).await;
    (upstream, gw)
}

#[tokio::test]
async fn websocket_upgrade_tunnels_bytes_both_ways() {
    let (upstream, gw) = upgrade_gateway().await;
    // One pooled keep-alive connection first: the upgrade must not take it.
    assert_eq!(send(gw.get("/plain")).await.body, "plain");
    assert_eq!(upstream.connections(), 1);

    let (mut tcp, head) = upgrade(gw.addr, "/ws", Some(gw.keys.write.expose())).await;
    assert!(head.starts_with("http/1.1 101 "), "{head}");
    assert!(head.contains("\r\nupgrade: websocket\r\n") && head.contains("\r\nconnection: upgrade\r\n"), "{head}");
    assert!(head.contains("\r\nx-seen-connection: upgrade\r\n"), "only `upgrade` is left in Connection: {head}");
    assert!(head.contains("\r\nx-seen-key-id: key_write\r\n"), "{head}");
    assert!(head.contains("\r\nx-request-id: "), "{head}");
    assert_eq!(read_exactly(&mut tcp, 20).await, "hello from upstream\n", "upstream to client");
    for message in ["ping 1", "a longer second message"] {
        tcp.write_all(message.as_bytes()).await.expect("write");
        assert_eq!(read_exactly(&mut tcp, message.len()).await, message, "client to upstream and back");
    }
    assert_eq!(upstream.connections(), 2, "the upgrade got a connection of its own");
    drop(tcp);

    // The pooled connection still serves; the tunnelled one never returns.
    assert_eq!(send(gw.get("/plain")).await.body, "plain");
    assert_eq!(upstream.connections(), 2);
}

#[tokio::test]
async fn upgrade_without_a_valid_key_is_refused_and_not_switched() {
    let (upstream, gw) = upgrade_gateway().await;
    for key in [None, Some("kg_live_nope"), Some(gw.keys.no_access.expose())] {
        let (mut tcp, head) = upgrade(gw.addr, "/ws", key).await;
        assert!(head.starts_with("http/1.1 401 ") || head.starts_with("http/1.1 403 "), "{head}");
        assert!(head.contains("content-type: application/problem+json"), "{head}");
        assert!(!head.contains("upgrade: websocket"), "{head}");
        // The connection stays HTTP/1.1: a plain request still works on it.
        let req = format!("GET /plain HTTP/1.1\r\nHost: gw\r\nX-API-Key: {}\r\n\r\n", gw.keys.write.expose());
        let body_len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .and_then(|v| v.trim().parse().ok())
            .expect("content-length");
        read_exactly(&mut tcp, body_len).await;
        tcp.write_all(req.as_bytes()).await.expect("write");
        let mut answer = [0u8; 12];
        tcp.read_exact(&mut answer).await.expect("read");
        assert_eq!(&answer, b"HTTP/1.1 200");
    }
    assert_eq!(upstream.hits(), 3, "only the three plain requests");
}

#[tokio::test]
async fn an_upstream_that_does_not_switch_is_passed_through() {
    let (upstream, gw) = upgrade_gateway().await;
    let (mut tcp, head) = upgrade(gw.addr, "/refuse", Some(gw.keys.write.expose())).await;
    assert!(head.starts_with("http/1.1 403 "), "{head}");
    assert!(!head.contains("upgrade:"), "{head}");
    assert_eq!(read_exactly(&mut tcp, 17).await, "no switching here");
    assert_eq!(upstream.hits(), 1);
}

#[tokio::test]
async fn an_upgrade_is_counted_once() {
    let upstream = upgrade_upstream().await;
    let url = upstream.url("");
    let gw = kit::TestGateway::new().config(|c| c.upstream.url = url).start().await;
    let account = gw.admin.account("ws").await;
    let (key_id, secret) = gw.admin.key(&account, "write").await;
    let (mut tcp, head) = upgrade(gw.proxy(), "/ws", Some(&secret)).await;
    assert!(head.starts_with("http/1.1 101 "), "{head}");
    assert_eq!(read_exactly(&mut tcp, 20).await, "hello from upstream\n");
    for _ in 0..3 {
        tcp.write_all(b"more bytes").await.expect("write");
        read_exactly(&mut tcp, 10).await;
    }
    drop(tcp);
    let metrics =
        kit::http::fetch(Method::GET, &format!("http://{}/metrics", gw.gateway.admin_addr), &[], "").await.body;
    let metrics = String::from_utf8(metrics.to_vec()).expect("utf-8");
    let line = |prefix: &str| {
        metrics
            .lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix} in\n{metrics}"))
            .to_owned()
    };
    let allowed = line(&format!(
        "keygate_key_requests_total{{key_id=\"{key_id}\",account_id=\"{account}\",outcome=\"allowed\"}}"
    ));
    assert!(allowed.ends_with(" 1"), "{allowed}");
    let switched = line("keygate_request_duration_seconds_count{route=\"default\",status_class=\"1xx\"}");
    assert!(switched.ends_with(" 1"), "{switched}");
    assert_eq!(upstream.hits(), 1);
}

#[tokio::test]
async fn an_upgrade_to_h2c_is_not_forwarded() {
    let (upstream, gw) = upgrade_gateway().await;
    let head = format!(
        "GET /h2c HTTP/1.1\r\nHost: gw\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n\
         HTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\nX-API-Key: {}\r\n\r\n",
        gw.keys.write.expose()
    );
    let answer = kit::http::raw(gw.addr, head.as_bytes(), Duration::from_millis(500)).await;
    // The upstream saw no `Upgrade` (it answers "plain"): no tunnel that
    // would carry requests keygate never decides on.
    assert!(answer.starts_with("HTTP/1.1 200") && answer.ends_with("plain"), "{answer}");
    assert_eq!(upstream.hits(), 1);
}

/// `https://` upstreams with a private CA (`upstream.ca_file`), over
/// HTTP/1.1 and, with `upstream.http2`, over HTTP/2 chosen by ALPN.
#[tokio::test]
async fn https_upstream_with_a_private_ca_over_http1_and_http2() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (tls, _) = write_certificate(dir.path());
    let cert_pem = std::fs::read(&tls.cert_file).expect("cert");
    let upstream = tls_upstream(&cert_pem, &std::fs::read(&tls.key_file).expect("key")).await;
    let url = format!("https://localhost:{}", upstream.addr.port());

    // Without the CA the upstream's certificate is not trusted: 502.
    let gw = ProxyGateway::start(config(&url)).await;
    let res = send(gw.request(Method::GET, "/x", &gw.keys.read).body(empty()).expect("request")).await;
    assert_eq!(res.status, StatusCode::BAD_GATEWAY);

    for http2 in [false, true] {
        let mut cfg = config(&url);
        cfg.upstream.ca_file = Some(tls.cert_file.clone());
        cfg.upstream.http2 = http2;
        let gw = ProxyGateway::start(cfg).await;
        let res = send(gw.request(Method::GET, "/over-tls", &gw.keys.read).body(empty()).expect("request")).await;
        assert_eq!(res.status, StatusCode::OK, "http2: {http2}");
        let seen = res.json();
        assert_eq!(seen["path"], "/over-tls");
        assert_eq!(seen["version"], if http2 { "HTTP/2.0" } else { "HTTP/1.1" });
        assert_eq!(seen["headers"]["x-keygate-key-id"][0], "key_read");
    }
}

/// An HTTP/2 connection that starts no request for a header read timeout
/// is closed (GOAWAY), as an idle HTTP/1.1 one is: idle connections cannot
/// hold `proxy.max_connections` slots. One in use stays open.
#[tokio::test]
async fn an_idle_http2_connection_is_closed_and_a_busy_one_kept() {
    let upstream = Upstream::start().await;
    let mut cfg = h2c_config(&upstream.url(""));
    cfg.proxy.header_read_timeout_ms = 300;
    let gw = ProxyGateway::start(cfg).await;
    let mut busy = h2c_client(gw.addr).await.expect("h2c handshake");
    let idle = h2c_client(gw.addr).await.expect("h2c handshake");
    // 1.2 s: four idle periods.
    for _ in 0..8 {
        let req = Request::get(format!("http://{}/x", gw.addr))
            .header("x-api-key", gw.keys.read.expose())
            .body(empty())
            .expect("request");
        let reply = h2_send(&mut busy, req).await.expect("the busy connection is still open");
        assert_eq!(reply.status, StatusCode::OK);
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    assert!(idle.is_closed(), "an idle HTTP/2 connection was kept for 1.2 s");
}

/// An open tunnel keeps its connection's slot under `proxy.max_connections`
/// (hyper hands the socket over and its connection task ends, but the slot
/// goes with the socket); closing the tunnel frees it.
#[tokio::test]
async fn an_open_tunnel_counts_against_the_connection_limit() {
    let upstream = upgrade_upstream().await;
    let mut cfg = config(&upstream.url(""));
    cfg.proxy.max_connections = 1;
    let gw = ProxyGateway::start(cfg).await;
    let (mut tunnel, head) = upgrade(gw.addr, "/ws", Some(gw.keys.write.expose())).await;
    assert!(head.starts_with("http/1.1 101 "), "{head}");
    assert_eq!(read_exactly(&mut tunnel, 20).await, "hello from upstream\n");

    let mut waiting = TcpStream::connect(gw.addr).await.expect("the kernel's backlog takes it");
    let req = format!("GET /plain HTTP/1.1\r\nHost: gw\r\nX-API-Key: {}\r\n\r\n", gw.keys.write.expose());
    waiting.write_all(req.as_bytes()).await.expect("write");
    let mut buf = [0u8; 64];
    let early = tokio::time::timeout(Duration::from_millis(400), waiting.read(&mut buf)).await;
    assert!(early.is_err(), "served while the tunnel held the only slot");

    drop(tunnel);
    let n = tokio::time::timeout(Duration::from_secs(2), waiting.read(&mut buf))
        .await
        .expect("served once the tunnel closed")
        .expect("read");
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&buf[..n]));
}
