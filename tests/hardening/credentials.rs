//! Credentials in odd shapes: bytes that are not UTF-8, control
//! characters, two credentials at once; and headers named in `Connection`,
//! which must vanish in both directions without taking the gateway's own
//! headers with them.

use std::time::Duration;

use http::Method;
use tokio::io::AsyncWriteExt;

use crate::kit::http::{empty, send};
use crate::kit::upstream::{read_head, serve};
use crate::kit::{config, ProxyGateway};
use crate::{exchange, gateway};

/// Sends a GET for `/x` with the raw header `line` (no CRLF) and no other
/// credential; returns the answer.
async fn with_header_line(gw: &ProxyGateway, line: &[u8]) -> crate::Answer {
    let mut bytes = b"GET /x HTTP/1.1\r\nHost: gw\r\n".to_vec();
    bytes.extend_from_slice(line);
    bytes.extend_from_slice(b"\r\nConnection: close\r\n\r\n");
    exchange(gw.addr, &bytes, Duration::from_secs(5)).await
}

fn assert_invalid_key(answer: &crate::Answer, what: &str) {
    assert_eq!(answer.status(), Some(401), "{what}: {answer:?}");
    assert!(answer.text.contains("application/problem+json"), "{answer:?}");
    assert!(answer.text.contains("\"code\":\"invalid_key\""), "{answer:?}");
}

#[tokio::test]
async fn non_utf8_credentials_are_invalid_key() {
    let (upstream, gw) = gateway().await;
    let key = gw.keys.write.expose().as_bytes().to_vec();
    let mut latin1 = key.clone();
    latin1[10] = 0xe9;
    let cases: Vec<Vec<u8>> = vec![
        [b"X-API-Key: ".as_slice(), &[0xff, 0xfe, 0x80, 0x81]].concat(),
        [b"X-API-Key: ".as_slice(), &latin1].concat(),
        [b"Authorization: Bearer ".as_slice(), &[0xc3, 0x28, 0xa0, 0xa1]].concat(),
        [b"Authorization: Bearer ".as_slice(), &latin1].concat(),
        [b"X-API-Key: ".as_slice(), &key, &[0xff]].concat(),
    ];
    for line in cases {
        let what = String::from_utf8_lossy(&line).into_owned();
        assert_invalid_key(&with_header_line(&gw, &line).await, &what);
    }
    assert_eq!(upstream.hits(), 0);
}

#[tokio::test]
async fn control_characters_in_credentials_are_refused() {
    let (upstream, gw) = gateway().await;
    let key = gw.keys.write.expose();
    // Characters HTTP allows inside a field value (TAB, SP; obs-text is in
    // the test above) reach the key check and are refused there.
    for (name, prefix) in [("X-API-Key", ""), ("Authorization", "Bearer ")] {
        for (at, c) in [(10, '\t'), (10, ' '), (key.len() - 1, '\t')] {
            let mut bytes = key.as_bytes().to_vec();
            bytes.insert(at, c as u8);
            let line = [format!("{name}: {prefix}").as_bytes(), &bytes].concat();
            assert_invalid_key(&with_header_line(&gw, &line).await, &format!("{name} with {c:?} at {at}"));
        }
        // The rest (NUL, the other C0 controls, DEL, a lone CR) the HTTP
        // parser refuses before anything else runs.
        for c in [0u8, 1, 8, 0x0b, 0x0c, 0x1b, 0x7f, b'\r'] {
            let mut bytes = key.as_bytes().to_vec();
            bytes.insert(10, c);
            let line = [format!("{name}: {prefix}").as_bytes(), &bytes].concat();
            let answer = with_header_line(&gw, &line).await;
            assert_eq!(answer.status(), Some(400), "byte {c:#x}: {answer:?}");
            assert!(answer.closed);
        }
    }
    assert_eq!(upstream.hits(), 0);
}

#[tokio::test]
async fn two_different_credentials_are_refused() {
    let (upstream, gw) = gateway().await;
    let (write, read) = (gw.keys.write.expose(), gw.keys.read.expose());
    let pairs = [
        (("x-api-key", write.to_string()), ("x-api-key", read.to_string())),
        (("authorization", format!("Bearer {write}")), ("authorization", format!("Bearer {read}"))),
        (("authorization", format!("Bearer {write}")), ("x-api-key", read.to_string())),
        (("x-api-key", write.to_string()), ("x-api-key", "not-a-key".to_string())),
        (("x-api-key", write.to_string()), ("authorization", "Bearer ".to_string())),
    ];
    for ((n1, v1), (n2, v2)) in pairs {
        let req = http::Request::get(gw.url("/x"))
            .header(n1, v1.as_str())
            .header(n2, v2.as_str())
            .body(empty())
            .expect("request");
        let reply = send(req).await;
        assert_eq!(reply.status, 401, "{n1} + {n2}");
        assert_eq!(reply.json()["code"], "invalid_key", "{n1} + {n2}");
    }
    // The same, folded into one comma-separated value.
    let req = http::Request::get(gw.url("/x"))
        .header("x-api-key", format!("{write}, {read}"))
        .body(empty())
        .expect("request");
    assert_eq!(send(req).await.json()["code"], "invalid_key");
    assert_eq!(upstream.hits(), 0);
}

#[tokio::test]
async fn the_same_credential_twice_is_one_credential_and_both_are_stripped() {
    let (upstream, gw) = gateway().await;
    let key = gw.keys.write.expose();
    let req = http::Request::get(gw.url("/x"))
        .header("x-api-key", key)
        .header("x-api-key", key)
        .header("authorization", format!("Bearer {key}"))
        .body(empty())
        .expect("request");
    let reply = send(req).await;
    assert_eq!(reply.status, 200);
    let seen = reply.json()["headers"].clone();
    assert!(seen.get("x-api-key").is_none(), "{seen}");
    assert!(seen.get("authorization").is_none(), "{seen}");
    assert!(!seen.to_string().contains(key), "the key reached the upstream: {seen}");
    assert_eq!(upstream.hits(), 1);
}

/// An upstream that answers every request with `Connection: x-secret` and
/// the header it names, plus what it received as the body.
async fn connection_naming_upstream() -> std::net::SocketAddr {
    serve(|mut stream, _| async move {
        let Some(head) = read_head(&mut stream).await else { return };
        let seen = String::from_utf8_lossy(&head).to_ascii_lowercase();
        let response = format!(
            "HTTP/1.1 200 OK\r\nConnection: x-secret, x-other\r\nX-Secret: upstream-private\r\nX-Other: 1\r\nX-Kept: yes\r\nContent-Length: {}\r\n\r\n{seen}",
            seen.len()
        );
        let _ = stream.write_all(response.as_bytes()).await;
    })
    .await
    .addr
}

#[tokio::test]
async fn headers_named_in_connection_are_stripped_both_ways() {
    let upstream = connection_naming_upstream().await;
    let gw = ProxyGateway::start(config(&format!("http://{upstream}"))).await;
    let req = gw
        .request(Method::GET, "/x", &gw.keys.write)
        .header("connection", "x-secret")
        .header("x-secret", "client-private")
        .body(empty())
        .expect("request");
    let reply = send(req).await;
    assert_eq!(reply.status, 200);
    let seen = String::from_utf8_lossy(&reply.body).into_owned();
    assert!(!seen.contains("x-secret"), "reached the upstream: {seen}");
    assert!(!seen.contains("client-private"), "reached the upstream: {seen}");
    assert!(reply.header("x-secret").is_none(), "reached the client");
    assert!(reply.header("x-other").is_none(), "reached the client");
    assert_eq!(reply.header("x-kept"), Some("yes"));
}

#[tokio::test]
async fn connection_cannot_remove_the_gateways_own_headers() {
    let (_, gw) = gateway().await;
    let req = gw
        .request(Method::GET, "/x", &gw.keys.read)
        .header(
            "connection",
            "x-keygate-key-id, x-keygate-account-id, x-keygate-permission, x-forwarded-for, x-request-id, host",
        )
        .header("x-keygate-key-id", "key_admin")
        .header("x-keygate-permission", "write")
        .header("x-forwarded-for", "203.0.113.7")
        .body(empty())
        .expect("request");
    let seen = send(req).await.json()["headers"].clone();
    assert_eq!(seen["x-keygate-key-id"], serde_json::json!(["key_read"]));
    assert_eq!(seen["x-keygate-account-id"], serde_json::json!(["acc_main"]));
    assert_eq!(seen["x-keygate-permission"], serde_json::json!(["read"]));
    assert_eq!(seen["x-forwarded-for"], serde_json::json!(["127.0.0.1"]));
    assert_eq!(seen["x-request-id"].as_array().map(Vec::len), Some(1));
    assert_eq!(seen["host"].as_array().map(Vec::len), Some(1));
}
