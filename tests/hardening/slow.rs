//! Slow clients: a head dribbled a byte at a time (slowloris), the same on
//! a keep-alive connection's second request, idle connections, and a
//! small body sent very slowly (R.U.D.Y.). `proxy.header_read_timeout_ms`
//! is 1 s here, and `proxy.body_read_timeout_ms` (the longest wait between
//! two pieces of a body) a quarter of it.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::kit::upstream::Upstream;
use crate::kit::{config, ProxyGateway};
use crate::read_until_closed;

const HEADER_TIMEOUT_MS: u64 = 1_000;
const BODY_TIMEOUT_MS: u64 = HEADER_TIMEOUT_MS / 4;
const DRIBBLE: Duration = Duration::from_millis(500);

async fn slow_gateway() -> (Upstream, ProxyGateway) {
    let upstream = Upstream::start().await;
    let mut cfg = config(&upstream.url(""));
    cfg.proxy.header_read_timeout_ms = HEADER_TIMEOUT_MS;
    cfg.proxy.body_read_timeout_ms = BODY_TIMEOUT_MS;
    (upstream, ProxyGateway::start(cfg).await)
}

/// Writes `bytes` one at a time, `DRIBBLE` apart, until the server stops
/// taking them or `limit` passes; returns how long the server put up with
/// it, or `None` if it never cut the connection.
async fn dribble(stream: &mut TcpStream, bytes: &[u8], limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    for b in bytes {
        if started.elapsed() > limit {
            return None;
        }
        if stream.write_all(&[*b]).await.is_err() {
            return Some(started.elapsed());
        }
        // A closed connection shows on the read side first.
        let probe = read_until_closed(stream, DRIBBLE).await;
        if probe.closed {
            return Some(started.elapsed());
        }
    }
    None
}

fn slow_head(gw: &ProxyGateway) -> Vec<u8> {
    let mut head = format!("GET /x HTTP/1.1\r\nHost: gw\r\nX-API-Key: {}\r\n", gw.keys.write.expose()).into_bytes();
    head.extend(std::iter::repeat_n(b'a', 200));
    head
}

async fn assert_cut_off(addr: SocketAddr, before: &[u8], head: &[u8]) {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    if !before.is_empty() {
        stream.write_all(before).await.expect("write");
        let mut buf = [0u8; 4096];
        let n = tokio::io::AsyncReadExt::read(&mut stream, &mut buf).await.expect("first answer");
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&buf[..n]));
    }
    let cut = dribble(&mut stream, head, Duration::from_secs(8)).await;
    let limit = Duration::from_millis(HEADER_TIMEOUT_MS) + 3 * DRIBBLE;
    match cut {
        Some(after) => assert!(after <= limit, "cut off only after {after:?}"),
        None => panic!("a head dribbled for 8 s was never cut off"),
    }
}

#[tokio::test]
async fn slowloris_head_is_cut_off_by_the_header_read_timeout() {
    let (upstream, gw) = slow_gateway().await;
    assert_cut_off(gw.addr, b"", &slow_head(&gw)).await;
    assert_eq!(upstream.hits(), 0);
}

#[tokio::test]
async fn slowloris_on_a_keep_alive_connection_is_cut_off_too() {
    let (_, gw) = slow_gateway().await;
    let first = format!("GET /x HTTP/1.1\r\nHost: gw\r\nX-API-Key: {}\r\n\r\n", gw.keys.write.expose());
    assert_cut_off(gw.addr, first.as_bytes(), &slow_head(&gw)).await;
}

#[tokio::test]
async fn idle_connection_is_closed() {
    let (_, gw) = slow_gateway().await;
    let started = Instant::now();
    let mut stream = TcpStream::connect(gw.addr).await.expect("connect");
    let answer = read_until_closed(&mut stream, Duration::from_secs(10)).await;
    assert!(answer.closed, "an idle connection was kept for 10 s");
    assert!(started.elapsed() < Duration::from_millis(HEADER_TIMEOUT_MS) + Duration::from_secs(2));
}

#[tokio::test]
async fn idle_keep_alive_connection_is_closed_after_an_answer() {
    let (_, gw) = slow_gateway().await;
    let mut stream = TcpStream::connect(gw.addr).await.expect("connect");
    let first = format!("GET /x HTTP/1.1\r\nHost: gw\r\nX-API-Key: {}\r\n\r\n", gw.keys.write.expose());
    stream.write_all(first.as_bytes()).await.expect("write");
    let started = Instant::now();
    let answer = read_until_closed(&mut stream, Duration::from_secs(10)).await;
    assert!(answer.text.starts_with("HTTP/1.1 200"), "{answer:?}");
    assert!(answer.closed, "an idle keep-alive connection was kept for 10 s");
    assert!(started.elapsed() < Duration::from_millis(HEADER_TIMEOUT_MS) + Duration::from_secs(2));
}

/// R.U.D.Y.: a 20-byte body, one byte every 500 ms (10 s in all). Each
/// wait for the next byte is longer than `proxy.body_read_timeout_ms`, so
/// the request is cut at the first gap: 408 `body_timeout`, connection
/// closed, and the upstream connection that carried the half-sent body is
/// not reused.
#[tokio::test]
async fn slow_body_is_cut_off() {
    let (upstream, gw) = slow_gateway().await;
    let mut stream = TcpStream::connect(gw.addr).await.expect("connect");
    let head =
        format!("POST /x HTTP/1.1\r\nHost: gw\r\nX-API-Key: {}\r\nContent-Length: 20\r\n\r\n", gw.keys.write.expose());
    stream.write_all(head.as_bytes()).await.expect("head");
    let started = Instant::now();
    let mut answer = String::new();
    let mut cut = None;
    for _ in 0..20 {
        if started.elapsed() > Duration::from_secs(9) {
            break;
        }
        if stream.write_all(b"b").await.is_err() {
            cut = Some(started.elapsed());
            break;
        }
        let probe = read_until_closed(&mut stream, DRIBBLE).await;
        answer.push_str(&probe.text);
        if probe.closed {
            cut = Some(started.elapsed());
            break;
        }
    }
    let limit = Duration::from_millis(HEADER_TIMEOUT_MS) * 3;
    match cut {
        Some(after) => assert!(after <= limit, "cut off only after {after:?}"),
        None => panic!("a body dribbled for 9 s was never cut off"),
    }
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
    assert!(answer.contains("\"code\":\"body_timeout\""), "{answer:?}");
    // The gateway is still fine, and a new request does not land on the
    // upstream connection that was left with half a body.
    let before = upstream.hits();
    let mut fresh = TcpStream::connect(gw.addr).await.expect("connect");
    let get =
        format!("GET /x HTTP/1.1\r\nHost: gw\r\nX-API-Key: {}\r\nConnection: close\r\n\r\n", gw.keys.write.expose());
    fresh.write_all(get.as_bytes()).await.expect("write");
    let answer = read_until_closed(&mut fresh, Duration::from_secs(5)).await;
    assert!(answer.text.starts_with("HTTP/1.1 200"), "{answer:?}");
    assert_eq!(upstream.hits(), before + 1);
}

/// A body that keeps coming, each piece within the body read timeout, is
/// not cut however long it takes in all (the timeout is between reads).
#[tokio::test]
async fn steady_slow_body_is_not_cut_off() {
    let (_, gw) = slow_gateway().await;
    let mut stream = TcpStream::connect(gw.addr).await.expect("connect");
    let head =
        format!("POST /x HTTP/1.1\r\nHost: gw\r\nX-API-Key: {}\r\nContent-Length: 12\r\n\r\n", gw.keys.write.expose());
    stream.write_all(head.as_bytes()).await.expect("head");
    for _ in 0..12 {
        tokio::time::sleep(Duration::from_millis(BODY_TIMEOUT_MS / 2)).await;
        stream.write_all(b"b").await.expect("body byte");
    }
    let answer = read_until_closed(&mut stream, Duration::from_secs(2)).await;
    assert!(answer.text.starts_with("HTTP/1.1 200"), "{answer:?}");
    assert!(answer.text.contains("\"body_len\":12"), "{answer:?}");
}

/// `proxy.max_connections`: with every slot held by connections that send
/// nothing, a new client is neither answered nor refused — it waits in the
/// backlog — and is served as soon as one of them goes.
#[tokio::test]
async fn connection_limit_pauses_accepting_until_a_connection_closes() {
    let upstream = Upstream::start().await;
    let mut cfg = config(&upstream.url(""));
    cfg.proxy.max_connections = 2;
    let gw = ProxyGateway::start(cfg).await;
    let idle = TcpStream::connect(gw.addr).await.expect("connect");
    let _other = TcpStream::connect(gw.addr).await.expect("connect");
    tokio::time::sleep(Duration::from_millis(100)).await;

    let mut waiting = TcpStream::connect(gw.addr).await.expect("the kernel's backlog takes it");
    let request = format!("GET /x HTTP/1.1\r\nHost: gw\r\nX-API-Key: {}\r\n\r\n", gw.keys.write.expose());
    waiting.write_all(request.as_bytes()).await.expect("write");
    let early = read_until_closed(&mut waiting, Duration::from_millis(400)).await;
    assert!(early.text.is_empty() && !early.closed, "served past the limit: {early:?}");

    drop(idle);
    let answer = read_until_closed(&mut waiting, Duration::from_secs(1)).await;
    assert_eq!(answer.status(), Some(200), "{answer:?}");
}
