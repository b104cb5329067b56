//! Forward auth asked the way Traefik's `forwardAuth` and Envoy's HTTP
//! `ext_authz` ask (neither is installable here): the exact bytes each
//! sends, written from their documentation and source, on a raw TCP
//! connection to the real forward-auth listener, and the decisions checked.
//!
//! - Traefik (`pkg/middlewares/auth/forward.go`): always `GET` to the
//!   configured address, every client header copied (hop-by-hop removed),
//!   then `X-Forwarded-Method`, `-Proto`, `-Host`, `-Uri` and `-For` set
//!   from the original request, plus what Traefik's entry point adds
//!   (`X-Forwarded-Port`, `-Server`, `X-Real-Ip`).
//! - Envoy HTTP `ext_authz` (`ext_authz_http_impl.cc`): the original method,
//!   the original path (and query) behind `path_prefix`, the original
//!   `:authority` as `Host`, `Content-Length: 0`, `Authorization` and the
//!   headers `allowed_headers` lets through, `headers_to_add` (the
//!   X-Forwarded-* of docs/authz.md) and Envoy's own `x-envoy-*` headers.

use std::net::SocketAddr;
use std::time::Duration;

use keygate::keys::{generate, KeyPolicy, Restrictions, RouteRule};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::kit::upstream::Upstream;
use crate::kit::{ProxyGateway, TestGateway};

/// A status, headers (lower-case names) and body read off the wire.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    fn code(&self) -> String {
        let json: serde_json::Value = serde_json::from_str(&self.body).unwrap_or_default();
        json["code"].as_str().unwrap_or("").to_owned()
    }

    fn assert_refused(&self, status: u16, code: &str) {
        assert_eq!((self.status, self.code().as_str()), (status, code), "{self:?}");
        assert_eq!(self.header("content-type"), Some("application/problem+json"));
    }

    fn assert_allowed(&self, key_id: &str) {
        assert_eq!(self.status, 200, "{self:?}");
        assert_eq!(self.header("x-keygate-key-id"), Some(key_id), "{self:?}");
        assert!(self.body.is_empty());
    }
}

/// Sends `request` (lines joined with CRLF, the blank line added) on a
/// keep-alive connection, as the proxies do, and reads one answer.
async fn exchange(addr: SocketAddr, request: &[String]) -> Answer {
    let mut text = request.join("\r\n");
    text.push_str("\r\n\r\n");
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(text.as_bytes()).await.expect("write");
    let mut bytes = Vec::new();
    let mut buf = [0u8; 4096];
    let read = async {
        loop {
            let n = stream.read(&mut buf).await.expect("read");
            assert!(n > 0, "closed before a whole answer: {}", String::from_utf8_lossy(&bytes));
            bytes.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&bytes).into_owned();
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let length = head
                    .lines()
                    .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_owned()))
                    .and_then(|v| v.parse::<usize>().ok())
                    .unwrap_or(0);
                if body.len() >= length {
                    return (head.to_owned(), body[..length].to_owned());
                }
            }
        }
    };
    let (head, body) = tokio::time::timeout(Duration::from_secs(10), read).await.expect("an answer");
    let mut lines = head.lines();
    let status = lines.next().and_then(|l| l.split(' ').nth(1)).and_then(|s| s.parse().ok()).expect("status");
    let headers = lines
        .filter_map(|l| l.split_once(':').map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned())))
        .collect();
    Answer { status, headers, body }
}

/// Traefik's request for the original `method uri` on `api.example.com`
/// over HTTPS from `client`, with the client's own headers `client_headers`.
fn traefik(authz: SocketAddr, method: &str, uri: &str, client: &str, client_headers: &[&str]) -> Vec<String> {
    let mut lines = vec!["GET / HTTP/1.1".to_owned(), format!("Host: {authz}")];
    // The client's headers, copied as they came (Go writes them sorted).
    lines.push("User-Agent: curl/8.5.0".into());
    lines.push("Accept: */*".into());
    lines.extend(client_headers.iter().map(|h| (*h).to_owned()));
    lines.extend([
        format!("X-Forwarded-For: {client}"),
        "X-Forwarded-Host: api.example.com".into(),
        format!("X-Forwarded-Method: {method}"),
        "X-Forwarded-Port: 443".into(),
        "X-Forwarded-Proto: https".into(),
        "X-Forwarded-Server: traefik-6c9f8d7b5-x2k4q".into(),
        format!("X-Forwarded-Uri: {uri}"),
        format!("X-Real-Ip: {client}"),
        "Accept-Encoding: gzip".into(),
    ]);
    lines
}

/// Envoy's HTTP ext_authz request for the original `method path` on
/// `api.example.com` from `client`, with `path_prefix`, the
/// `headers_to_add` of docs/authz.md when `with_added` (their `%REQ(...)%`
/// expanded from the original request), and `allowed` client headers.
fn envoy(method: &str, path: &str, prefix: &str, client: &str, allowed: &[&str], with_added: bool) -> Vec<String> {
    let mut lines = vec![
        format!("{method} {prefix}{path} HTTP/1.1"),
        "host: api.example.com".to_owned(),
        "content-length: 0".to_owned(),
    ];
    lines.extend(allowed.iter().map(|h| (*h).to_owned()));
    lines.push(format!("x-forwarded-for: {client}"));
    if with_added {
        lines.extend([
            format!("x-forwarded-method: {method}"),
            format!("x-forwarded-uri: {path}"),
            "x-forwarded-host: api.example.com".to_owned(),
        ]);
    }
    lines.extend([
        "x-envoy-internal: true".to_owned(),
        "x-envoy-expected-rq-timeout-ms: 250".to_owned(),
        "x-request-id: 2f6b5a2e-8f0c-4b6e-9a53-0f3f4d1c7a11".to_owned(),
    ]);
    lines
}

/// Forward auth over the kit's keys plus one key allowed only
/// `GET /v1/reports` on `api.example.com` from 203.0.113.0/24, the ingress
/// (127.0.0.1) trusted.
async fn gateway() -> (ProxyGateway, String, Upstream) {
    let restricted = generate("kg_live");
    let route = RouteRule {
        path_prefix: "/v1/reports".into(),
        methods: vec!["GET".into()],
        host: Some("api.example.com".into()),
    };
    let restrictions = Restrictions::parse(&["203.0.113.0/24".to_owned()], &[route]).expect("valid").expect("some");
    let row =
        KeyPolicy::builder("key_reports", "acc_main").restrictions((*restrictions).clone()).row(restricted.hash());
    let upstream = Upstream::start().await;
    let gw = TestGateway::new()
        .upstream(upstream.url(""))
        .config(|c| {
            c.authz.listen = Some("127.0.0.1:0".parse().expect("addr"));
            c.proxy.trusted_proxies = vec!["127.0.0.0/8".into()];
        })
        .key(row)
        .proxy()
        .await;
    (gw, restricted.expose().to_owned(), upstream)
}

#[tokio::test]
async fn traefik_forward_auth_requests_are_decided_on_the_original_request() {
    let (gw, reports, _upstream) = gateway().await;
    let authz = gw.authz.expect("forward auth on");
    let (read, write) = (gw.keys.read.expose(), gw.keys.write.expose());
    let api_key = |k: &str| format!("X-Api-Key: {k}");
    let bearer = |k: &str| format!("Authorization: Bearer {k}");

    let answer = exchange(authz, &traefik(authz, "GET", "/v1/orders?page=2", "203.0.113.7", &[&api_key(read)])).await;
    answer.assert_allowed("key_read");
    assert_eq!(answer.header("x-keygate-permission"), Some("read"));
    // The subrequest is a GET; the original DELETE is what is decided.
    let delete = traefik(authz, "DELETE", "/v1/orders/7?force=true", "203.0.113.7", &[&bearer(read)]);
    exchange(authz, &delete).await.assert_refused(403, "insufficient_permission");
    let delete = traefik(authz, "DELETE", "/v1/orders/7?force=true", "203.0.113.7", &[&bearer(write)]);
    exchange(authz, &delete).await.assert_allowed("key_write");
    let none = exchange(authz, &traefik(authz, "GET", "/v1/orders", "203.0.113.7", &[])).await;
    none.assert_refused(401, "missing_key");
    assert!(none.header("www-authenticate").is_some_and(|v| v.starts_with("Bearer")), "{none:?}");

    // X-Forwarded-Uri, -Host and -For are the original's: the route,
    // host and address restrictions see them, not `GET /` from 127.0.0.1.
    exchange(authz, &traefik(authz, "GET", "/v1/reports/q3", "203.0.113.7", &[&api_key(&reports)]))
        .await
        .assert_allowed("key_reports");
    exchange(authz, &traefik(authz, "GET", "/v1/orders", "203.0.113.7", &[&api_key(&reports)]))
        .await
        .assert_refused(403, "route_not_allowed");
    exchange(authz, &traefik(authz, "GET", "/v1/reports/q3", "198.51.100.9", &[&api_key(&reports)]))
        .await
        .assert_refused(403, "ip_not_allowed");

    // Traefik copies every client header: the other spelling a client adds
    // beside Traefik's own is refused, never decided.
    let spoof = traefik(authz, "DELETE", "/v1/orders/7", "203.0.113.7", &[&api_key(read), "X-Original-Method: GET"]);
    exchange(authz, &spoof).await.assert_refused(400, "bad_request");
}

#[tokio::test]
async fn envoy_http_ext_authz_requests_are_decided_on_the_original_request() {
    let (gw, reports, _upstream) = gateway().await;
    let authz = gw.authz.expect("forward auth on");
    let (read, write) = (gw.keys.read.expose(), gw.keys.write.expose());
    let api_key = |k: &str| format!("x-api-key: {k}");
    // Envoy always passes `authorization` on.
    let bearer = |k: &str| format!("authorization: Bearer {k}");

    for prefix in ["", "/ext_authz"] {
        let get = envoy("GET", "/v1/orders?page=2", prefix, "203.0.113.7", &[&api_key(read)], true);
        exchange(authz, &get).await.assert_allowed("key_read");
        let delete = envoy("DELETE", "/v1/orders/7", prefix, "203.0.113.7", &[&bearer(read)], true);
        exchange(authz, &delete).await.assert_refused(403, "insufficient_permission");
        let delete = envoy("DELETE", "/v1/orders/7", prefix, "203.0.113.7", &[&bearer(write)], true);
        exchange(authz, &delete).await.assert_allowed("key_write");
        let reports_ok = envoy("GET", "/v1/reports/q3", prefix, "203.0.113.7", &[&api_key(&reports)], true);
        exchange(authz, &reports_ok).await.assert_allowed("key_reports");
        let elsewhere = envoy("GET", "/v1/orders", prefix, "203.0.113.7", &[&api_key(&reports)], true);
        exchange(authz, &elsewhere).await.assert_refused(403, "route_not_allowed");
        let far = envoy("GET", "/v1/reports/q3", prefix, "198.51.100.9", &[&api_key(&reports)], true);
        exchange(authz, &far).await.assert_refused(403, "ip_not_allowed");
        let none = exchange(authz, &envoy("POST", "/v1/orders", prefix, "203.0.113.7", &[], true)).await;
        none.assert_refused(401, "missing_key");
        assert!(none.header("www-authenticate").is_some(), "allowed_client_headers pass it on: {none:?}");
    }

    // Without the X-Forwarded-* headers (an Envoy that does not expand
    // `%REQ(...)%` in `headers_to_add`, or a config without them), nothing
    // is guessed from the request line: a 400, which Envoy answers the
    // client with, never an allowed request.
    let bare = envoy("DELETE", "/v1/orders/7", "", "203.0.113.7", &[&bearer(read)], false);
    exchange(authz, &bare).await.assert_refused(400, "bad_request");
    let bare = envoy("GET", "/v1/orders", "", "203.0.113.7", &[&bearer(write)], false);
    exchange(authz, &bare).await.assert_refused(400, "bad_request");
}
