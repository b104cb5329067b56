//! The HTTP/1.1 fast path (issue 18), on raw connections: pipelining,
//! chunked bodies both ways, upstream keep-alive (and a pooled connection
//! the upstream closed), 1xx answers, responses without a body or without
//! a length, and which requests go to hyper instead. Upstreams here answer
//! with raw bytes and no `Date`: hyper's server adds one, the fast path
//! never does, which tells the two paths apart.

use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::kit::upstream::{read_head, serve, Upstream};
use crate::kit::{config, ProxyGateway};

/// A request head with the write key and `extra` header lines.
fn request(gw: &ProxyGateway, line: &str, extra: &str) -> String {
    format!("{line}\r\nHost: gw\r\nX-API-Key: {}\r\n{extra}\r\n", gw.keys.write.expose())
}

/// Reads until `count` whole responses (heads and bodies, as framed) have
/// arrived, or 5 s pass; returns the raw bytes.
async fn responses(stream: &mut TcpStream, count: usize) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 16384];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while complete_responses(&out) < count {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => out.extend_from_slice(&buf[..n]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// How many whole responses `bytes` holds (Content-Length or chunked, or
/// no body for 1xx/204/304 and answers to HEAD marked `x-head: 1`).
fn complete_responses(bytes: &[u8]) -> usize {
    let text = String::from_utf8_lossy(bytes);
    let mut rest: &str = &text;
    let mut count = 0;
    loop {
        let Some(end) = rest.find("\r\n\r\n") else { return count };
        let head = rest[..end].to_ascii_lowercase();
        let mut body = &rest[end + 4..];
        let status: u16 = head.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
        if (100..200).contains(&status) {
            rest = body;
            continue;
        }
        if head.contains("transfer-encoding: chunked") {
            let Some(i) = body.find("0\r\n\r\n").filter(|&i| i == 0 || body[..i].ends_with("\r\n")) else {
                return count;
            };
            body = &body[i + 5..];
        } else if let Some(len) = head.lines().find_map(|l| l.strip_prefix("content-length: ")) {
            let len: usize = len.trim().parse().unwrap_or(0);
            if head.contains("x-head: 1") || status == 204 || status == 304 {
            } else if body.len() < len {
                return count;
            } else {
                body = &body[len..];
            }
        }
        count += 1;
        rest = body;
    }
}

/// An upstream that answers every request on a connection with `answer`
/// (raw bytes, given the request head), keeping the connection open.
async fn raw_upstream(answer: fn(&str) -> String) -> Upstream {
    serve(move |mut stream, hits| async move {
        while let Some(head) = read_head(&mut stream).await {
            hits.fetch_add(1, Ordering::SeqCst);
            let head = String::from_utf8_lossy(&head).into_owned();
            if stream.write_all(answer(&head).as_bytes()).await.is_err() {
                return;
            }
        }
    })
    .await
}

fn path_of(head: &str) -> &str {
    head.split(' ').nth(1).unwrap_or("/")
}

async fn fast_gateway(upstream: &Upstream) -> ProxyGateway {
    ProxyGateway::start(config(&upstream.url(""))).await
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order_on_one_connection() {
    let upstream = raw_upstream(|head| {
        let path = path_of(head);
        format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{path}", path.len())
    })
    .await;
    let gw = fast_gateway(&upstream).await;
    let mut stream = TcpStream::connect(gw.addr).await.expect("connect");
    let all: String =
        ["/one", "/two", "/three"].iter().map(|p| request(&gw, &format!("GET {p} HTTP/1.1"), "")).collect();
    stream.write_all(all.as_bytes()).await.expect("write");
    let text = responses(&mut stream, 3).await;
    assert_eq!(complete_responses(text.as_bytes()), 3, "{text}");
    let (one, two, three) = (text.find("/one"), text.find("/two"), text.find("/three"));
    assert!(one < two && two < three && one.is_some(), "{text}");
    assert!(!text.to_ascii_lowercase().contains("\r\ndate:"), "answered by the fast path: {text}");
    assert_eq!(upstream.connections(), 1, "one upstream connection, reused");
}

#[tokio::test]
async fn chunked_bodies_are_relayed_both_ways() {
    let upstream = Upstream::start().await;
    let gw = fast_gateway(&upstream).await;
    let mut stream = TcpStream::connect(gw.addr).await.expect("connect");
    let head = request(&gw, "POST /echo-body HTTP/1.1", "Transfer-Encoding: chunked\r\n");
    stream.write_all(head.as_bytes()).await.expect("head");
    for piece in ["5\r\nhello\r\n", "6;ext=1\r\n world\r\n", "0\r\nX-Trailer: t\r\n\r\n"] {
        stream.write_all(piece.as_bytes()).await.expect("piece");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let text = responses(&mut stream, 1).await;
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.to_ascii_lowercase().contains("transfer-encoding: chunked"), "{text}");
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or_default();
    let data: String = decode_chunked(body);
    assert_eq!(data, "hello world", "{text}");
    // The connection is still good for another request.
    stream.write_all(request(&gw, "GET /again HTTP/1.1", "").as_bytes()).await.expect("write");
    let text = responses(&mut stream, 1).await;
    assert!(text.starts_with("HTTP/1.1 200") && text.contains("/again"), "{text}");
}

fn decode_chunked(mut body: &str) -> String {
    let mut data = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let size = usize::from_str_radix(size.split(';').next().unwrap_or("0").trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        data.push_str(&rest[..size]);
        body = &rest[size + 2..];
    }
    data
}

#[tokio::test]
async fn a_pooled_connection_the_upstream_closed_is_not_used() {
    // Answers one request per connection, then closes it (without saying so).
    let upstream = serve(|mut stream, hits| async move {
        if read_head(&mut stream).await.is_some() {
            hits.fetch_add(1, Ordering::SeqCst);
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").await;
        }
    })
    .await;
    let gw = fast_gateway(&upstream).await;
    for i in 0..3 {
        let mut stream = TcpStream::connect(gw.addr).await.expect("connect");
        stream.write_all(request(&gw, "GET /x HTTP/1.1", "").as_bytes()).await.expect("write");
        let text = responses(&mut stream, 1).await;
        assert!(text.starts_with("HTTP/1.1 200"), "request {i}: {text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(upstream.hits(), 3);
    assert_eq!(upstream.connections(), 3);
}

/// An upstream that reads a second request on a connection and closes
/// without answering (it timed the connection out just then): the request
/// is sent again on a new connection only if that is safe.
#[tokio::test]
async fn a_request_lost_on_a_closing_connection_is_retried_only_when_safe() {
    let upstream = serve(|mut stream, hits| async move {
        if read_head(&mut stream).await.is_some() {
            hits.fetch_add(1, Ordering::SeqCst);
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").await;
            // The next request on this connection is read and dropped.
            let _ = read_head(&mut stream).await;
        }
    })
    .await;
    let gw = fast_gateway(&upstream).await;
    let mut client = TcpStream::connect(gw.addr).await.expect("connect");
    client.write_all(request(&gw, "GET /first HTTP/1.1", "").as_bytes()).await.expect("write");
    assert!(responses(&mut client, 1).await.starts_with("HTTP/1.1 200"));
    // A GET without a body is idempotent: retried on a new connection.
    client.write_all(request(&gw, "GET /second HTTP/1.1", "").as_bytes()).await.expect("write");
    let text = responses(&mut client, 1).await;
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert_eq!(upstream.connections(), 2);
    // A POST is not: its loss is the client's to handle (502).
    let before = upstream.connections();
    client.write_all(request(&gw, "POST /third HTTP/1.1", "Content-Length: 3\r\n").as_bytes()).await.expect("write");
    client.write_all(b"abc").await.expect("body");
    let text = responses(&mut client, 1).await;
    assert!(text.starts_with("HTTP/1.1 502"), "{text}");
    assert!(text.contains("\"code\":\"upstream_unavailable\""), "{text}");
    assert_eq!(upstream.connections(), before, "not sent again");
}

#[tokio::test]
async fn informational_answers_are_skipped_and_expect_goes_to_hyper() {
    let upstream = raw_upstream(|_| {
        "HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\ndone"
            .to_owned()
    })
    .await;
    let gw = fast_gateway(&upstream).await;
    let mut stream = TcpStream::connect(gw.addr).await.expect("connect");
    stream.write_all(request(&gw, "GET /hints HTTP/1.1", "").as_bytes()).await.expect("write");
    let text = responses(&mut stream, 1).await;
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "the 103 is not passed on: {text}");
    assert!(text.ends_with("done"), "{text}");

    // `Expect: 100-continue` is hyper's: the client gets its 100 Continue
    // once the body is wanted upstream.
    let upstream = serve(|mut stream, hits| async move {
        if read_head(&mut stream).await.is_some() {
            hits.fetch_add(1, Ordering::SeqCst);
            let _ = stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await;
            let mut body = [0u8; 4];
            let _ = stream.read_exact(&mut body).await;
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n").await;
            let _ = stream.write_all(&body).await;
        }
    })
    .await;
    let gw = fast_gateway(&upstream).await;
    let mut stream = TcpStream::connect(gw.addr).await.expect("connect");
    let head = request(&gw, "PUT /upload HTTP/1.1", "Expect: 100-continue\r\nContent-Length: 4\r\n");
    stream.write_all(head.as_bytes()).await.expect("write");
    let mut first = [0u8; 64];
    let n =
        tokio::time::timeout(Duration::from_secs(5), stream.read(&mut first)).await.expect("in time").expect("read");
    let first = String::from_utf8_lossy(&first[..n]).into_owned();
    assert!(first.starts_with("HTTP/1.1 100 Continue"), "{first}");
    stream.write_all(b"data").await.expect("body");
    let text = responses(&mut stream, 1).await;
    assert!(text.contains("HTTP/1.1 200 OK") && text.ends_with("data"), "{first}{text}");
}

#[tokio::test]
async fn head_204_and_304_answers_have_no_body_and_keep_the_connection() {
    let upstream = raw_upstream(|head| match path_of(head) {
        "/head" => "HTTP/1.1 200 OK\r\nContent-Length: 10\r\nX-Head: 1\r\n\r\n".to_owned(),
        "/nothing" => "HTTP/1.1 204 No Content\r\n\r\n".to_owned(),
        "/same" => "HTTP/1.1 304 Not Modified\r\nETag: \"a\"\r\n\r\n".to_owned(),
        path => format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{path}", path.len()),
    })
    .await;
    let gw = fast_gateway(&upstream).await;
    let mut stream = TcpStream::connect(gw.addr).await.expect("connect");
    for (line, status) in
        [("HEAD /head HTTP/1.1", "200"), ("GET /nothing HTTP/1.1", "204"), ("GET /same HTTP/1.1", "304")]
    {
        stream.write_all(request(&gw, line, "").as_bytes()).await.expect("write");
        let text = responses(&mut stream, 1).await;
        assert!(text.starts_with(&format!("HTTP/1.1 {status}")), "{line}: {text}");
        assert!(text.ends_with("\r\n\r\n"), "{line}: no body: {text:?}");
        if line.starts_with("HEAD") {
            assert!(text.to_ascii_lowercase().contains("content-length: 10"), "{text}");
        }
    }
    stream.write_all(request(&gw, "GET /after HTTP/1.1", "").as_bytes()).await.expect("write");
    let text = responses(&mut stream, 1).await;
    assert!(text.starts_with("HTTP/1.1 200") && text.ends_with("/after"), "{text}");
    assert_eq!(upstream.connections(), 1);
}

#[tokio::test]
async fn a_response_that_ends_with_the_connection_is_framed_for_the_client() {
    let upstream = serve(|mut stream, hits| async move {
        if read_head(&mut stream).await.is_some() {
            hits.fetch_add(1, Ordering::SeqCst);
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil ").await;
            tokio::time::sleep(Duration::from_millis(30)).await;
            let _ = stream.write_all(b"the end").await;
        }
    })
    .await;
    let gw = fast_gateway(&upstream).await;
    let mut stream = TcpStream::connect(gw.addr).await.expect("connect");
    for round in 0..2 {
        stream.write_all(request(&gw, "GET /x HTTP/1.1", "").as_bytes()).await.expect("write");
        let text = responses(&mut stream, 1).await;
        assert!(text.to_ascii_lowercase().contains("transfer-encoding: chunked"), "{round}: {text}");
        let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or_default();
        assert_eq!(decode_chunked(body), "until the end", "{round}: {text}");
    }
    assert_eq!(upstream.connections(), 2, "a connection read to its end is not reused");
}

/// Which connections the fast path serves and which hyper does: HTTP/1.0
/// goes to hyper from that request on, on the same connection; with
/// `proxy.fast_http1: false` everything is hyper's.
#[tokio::test]
async fn unusual_requests_and_the_switch_go_to_hyper() {
    let upstream = raw_upstream(|head| {
        let path = path_of(head);
        format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{path}", path.len())
    })
    .await;
    let gw = fast_gateway(&upstream).await;
    let mut stream = TcpStream::connect(gw.addr).await.expect("connect");
    stream.write_all(request(&gw, "GET /fast HTTP/1.1", "").as_bytes()).await.expect("write");
    let text = responses(&mut stream, 1).await;
    assert!(text.ends_with("/fast") && !text.to_ascii_lowercase().contains("\r\ndate:"), "{text}");
    stream.write_all(request(&gw, "GET /old HTTP/1.0", "Connection: keep-alive\r\n").as_bytes()).await.expect("write");
    let text = responses(&mut stream, 1).await;
    assert!(text.ends_with("/old") && text.to_ascii_lowercase().contains("\r\ndate:"), "hyper's: {text}");

    let mut cfg = config(&upstream.url(""));
    cfg.proxy.fast_http1 = false;
    let off = ProxyGateway::start(cfg).await;
    let mut stream = TcpStream::connect(off.addr).await.expect("connect");
    stream.write_all(request(&off, "GET /slow HTTP/1.1", "").as_bytes()).await.expect("write");
    let text = responses(&mut stream, 1).await;
    assert!(text.ends_with("/slow") && text.to_ascii_lowercase().contains("\r\ndate:"), "hyper's: {text}");
}

#[tokio::test]
async fn each_request_on_a_connection_gets_its_own_timeouts() {
    // The connection's timer is armed by its first request and re-armed
    // lazily: a later request must still get its whole response timeout,
    // and a slow one must still be cut at its own.
    let upstream = serve(|mut stream, _hits| async move {
        while let Some(head) = read_head(&mut stream).await {
            let head = String::from_utf8_lossy(&head).into_owned();
            let ms = head.lines().find_map(|l| l.strip_prefix("x-wait: ")).and_then(|v| v.parse().ok());
            tokio::time::sleep(Duration::from_millis(ms.unwrap_or(0))).await;
            if stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").await.is_err() {
                return;
            }
        }
    })
    .await;
    let mut cfg = config(&upstream.url(""));
    cfg.upstream.response_timeout_ms = 800;
    let gw = ProxyGateway::start(cfg).await;
    let mut stream = TcpStream::connect(gw.addr).await.expect("connect");
    stream.write_all(request(&gw, "GET /first HTTP/1.1", "").as_bytes()).await.expect("write");
    assert!(responses(&mut stream, 1).await.starts_with("HTTP/1.1 200"));
    // Past the first request's deadline by the time this one's answer comes.
    tokio::time::sleep(Duration::from_millis(500)).await;
    stream.write_all(request(&gw, "GET /second HTTP/1.1", "x-wait: 500\r\n").as_bytes()).await.expect("write");
    let text = responses(&mut stream, 1).await;
    assert!(text.starts_with("HTTP/1.1 200"), "the second request's own 800 ms held: {text}");
    assert!(!text.to_ascii_lowercase().contains("\r\ndate:"), "answered by the fast path: {text}");
    stream.write_all(request(&gw, "GET /third HTTP/1.1", "x-wait: 1500\r\n").as_bytes()).await.expect("write");
    let text = responses(&mut stream, 1).await;
    assert!(text.starts_with("HTTP/1.1 504"), "cut at its own timeout: {text}");
}

#[tokio::test]
async fn field_names_in_any_case_are_the_same_names_to_the_decision_and_the_rewrite() {
    // The upstream answers with the head it got as the body.
    let upstream =
        raw_upstream(|head| format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{head}", head.len())).await;
    let gw = fast_gateway(&upstream).await;
    let mut stream = TcpStream::connect(gw.addr).await.expect("connect");
    let head = format!(
        "GET /echo HTTP/1.1\r\nHOST: gw\r\nAUTHORIZATION: Bearer {}\r\nX-KEYGATE-KEY-ID: key_admin\r\n\
         X-Keygate-Identity: forged\r\nX-Forwarded-For: 1.1.1.1\r\nFORWARDED: for=9.9.9.9\r\n\
         Connection: keep-alive, X-Secret\r\nX-SECRET: 1\r\nX_Api_Key: kg_z\r\nX-Request-ID: client-id-1\r\n\
         X-Kept: 3\r\n\r\n",
        gw.keys.write.expose()
    );
    stream.write_all(head.as_bytes()).await.expect("write");
    let text = responses(&mut stream, 1).await;
    let (response, got) = text.split_once("\r\n\r\n").expect("a response");
    assert!(response.starts_with("HTTP/1.1 200"), "{text}");
    assert!(!response.to_ascii_lowercase().contains("\r\ndate:"), "answered by the fast path: {text}");
    assert!(response.to_ascii_lowercase().contains("\r\nx-request-id: client-id-1"), "{response}");
    let lines: Vec<&str> = got.split("\r\n").skip(1).filter(|l| !l.is_empty()).collect();
    for line in &lines {
        let name = line.split(':').next().unwrap_or("");
        assert_eq!(name, name.to_ascii_lowercase(), "names go upstream in lower case: {got}");
    }
    let values =
        |name: &str| -> Vec<&str> { lines.iter().filter_map(|l| l.strip_prefix(name)?.strip_prefix(": ")).collect() };
    assert_eq!(values("host").len(), 1, "{got}");
    assert!(values("authorization").is_empty(), "the credential is stripped: {got}");
    assert_eq!(values("x-keygate-key-id").len(), 1, "{got}");
    assert_ne!(values("x-keygate-key-id"), ["key_admin"], "{got}");
    for gone in ["x-keygate-identity", "forwarded", "connection", "x-secret", "x_api_key"] {
        assert!(values(gone).is_empty(), "{gone} must not reach the upstream: {got}");
    }
    assert_eq!(values("x-forwarded-for"), ["127.0.0.1"], "{got}");
    assert_eq!(values("x-request-id"), ["client-id-1"], "{got}");
    assert_eq!(values("x-kept"), ["3"], "{got}");
}
