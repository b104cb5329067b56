//! Upstreams that misbehave: reset the connection mid-response, answer
//! garbage, or hang. The client gets a 502/504 problem+json while no
//! response head has been passed on, and a cut connection (never a
//! complete-looking answer) once one has.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use http::Method;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::exchange;
use crate::kit::http::{empty, send};
use crate::kit::upstream::{read_head, serve};
use crate::kit::{config, ProxyGateway};

#[derive(Clone, Copy)]
enum Fault {
    /// Half a status line, then a reset.
    ResetInHead,
    /// A whole head promising 1000 bytes, 10 of them, then a reset.
    ResetInBody,
    /// Bytes that are not HTTP.
    Garbage,
    /// Reads the request and never answers.
    Hang,
}

/// An upstream that reads each request head and then commits `fault`.
async fn faulty_upstream(fault: Fault) -> SocketAddr {
    serve(move |stream, _| commit(stream, fault)).await.addr
}

async fn commit(mut stream: TcpStream, fault: Fault) {
    if read_head(&mut stream).await.is_none() {
        return;
    }
    let reset = |stream: TcpStream| {
        // SO_LINGER 0: close() sends RST instead of FIN.
        let _ = stream.set_zero_linger();
        drop(stream);
    };
    match fault {
        Fault::ResetInHead => {
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Le").await;
            tokio::time::sleep(Duration::from_millis(50)).await;
            reset(stream);
        }
        Fault::ResetInBody => {
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n0123456789").await;
            tokio::time::sleep(Duration::from_millis(50)).await;
            reset(stream);
        }
        Fault::Garbage => {
            let _ = stream.write_all(b"\x16\x03\x01\x00\xa5garbage \xff\xfe not http\r\n\r\n").await;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Fault::Hang => tokio::time::sleep(Duration::from_secs(30)).await,
    }
}

async fn gateway_before(fault: Fault) -> ProxyGateway {
    let upstream = faulty_upstream(fault).await;
    let mut cfg = config(&format!("http://{upstream}"));
    cfg.upstream.response_timeout_ms = 500;
    ProxyGateway::start(cfg).await
}

async fn assert_problem(gw: &ProxyGateway, status: u16, code: &str) {
    let reply = send(gw.request(Method::GET, "/x", &gw.keys.write).body(empty()).expect("request")).await;
    assert_eq!(reply.status.as_u16(), status, "{}", String::from_utf8_lossy(&reply.body));
    assert_eq!(reply.header("content-type"), Some("application/problem+json"));
    assert_eq!(reply.json()["code"], code);
    assert_eq!(reply.json()["status"], status);
}

#[tokio::test]
async fn upstream_reset_inside_the_head_gets_502() {
    let gw = gateway_before(Fault::ResetInHead).await;
    assert_problem(&gw, 502, "upstream_unavailable").await;
}

#[tokio::test]
async fn upstream_reset_inside_the_body_cuts_the_client_connection() {
    let gw = gateway_before(Fault::ResetInBody).await;
    let head = format!("GET /x HTTP/1.1\r\nHost: gw\r\nX-API-Key: {}\r\n\r\n", gw.keys.write.expose());
    let answer = exchange(gw.addr, head.as_bytes(), Duration::from_secs(5)).await;
    // The head was already passed on: the only honest signal left is to cut
    // the connection short of the promised length.
    assert!(answer.text.starts_with("HTTP/1.1 200"), "{answer:?}");
    assert!(answer.closed, "connection left hanging: {answer:?}");
    let body = answer.text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    assert!(body.len() < 1000, "{answer:?}");
}

#[tokio::test]
async fn upstream_garbage_gets_502() {
    let gw = gateway_before(Fault::Garbage).await;
    assert_problem(&gw, 502, "upstream_unavailable").await;
}

#[tokio::test]
async fn hanging_upstream_gets_504_after_the_response_timeout() {
    let gw = gateway_before(Fault::Hang).await;
    let started = Instant::now();
    assert_problem(&gw, 504, "upstream_timeout").await;
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(450) && waited < Duration::from_secs(5), "{waited:?}");
}
