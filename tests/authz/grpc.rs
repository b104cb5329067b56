//! Envoy's gRPC `ext_authz` (`authz.grpc_listen`) called by a real gRPC
//! client: hyper's HTTP/2 client with length-prefixed messages, encoding
//! `CheckRequest` and decoding `CheckResponse` with this file's own
//! protobuf code (written from the .proto field numbers, apart from
//! keygate's).

use bytes::{BufMut, Bytes, BytesMut};
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use keygate::keys::{generate, KeyPolicy, Restrictions};
use tokio::net::TcpStream;

use crate::kit::upstream::Upstream;
use crate::kit::{ProxyGateway, TestGateway};

const CHECK: &str = "/envoy.service.auth.v3.Authorization/Check";

fn varint(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn field(number: u64, bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    varint(&mut out, number << 3 | 2);
    varint(&mut out, bytes.len() as u64);
    out.extend_from_slice(bytes);
    out
}

/// `CheckRequest { attributes: { source: { address: { socket_address: {
/// address } } }, request: { http: { method, headers, path, host } } } }`.
fn check_request(source: &str, method: &str, path: &str, host: &str, headers: &[(&str, &str)]) -> Vec<u8> {
    let socket = field(2, source.as_bytes());
    let peer = field(1, &field(1, &socket));
    let mut http = field(2, method.as_bytes());
    for (k, v) in headers {
        http.extend(field(3, &[field(1, k.as_bytes()), field(2, v.as_bytes())].concat()));
    }
    http.extend(field(4, path.as_bytes()));
    http.extend(field(5, host.as_bytes()));
    let request = field(2, &http);
    let attributes = [field(1, &peer), field(4, &request)].concat();
    field(1, &attributes)
}

/// Every field of a message: `(number, value)`, values of wire type 2 as
/// bytes and varints as their little-endian bytes.
fn fields(mut buf: &[u8]) -> Vec<(u64, Vec<u8>)> {
    fn read(buf: &mut &[u8]) -> u64 {
        let mut v = 0;
        let mut shift = 0;
        loop {
            let b = buf[0];
            *buf = &buf[1..];
            v |= u64::from(b & 0x7f) << shift;
            shift += 7;
            if b & 0x80 == 0 {
                return v;
            }
        }
    }
    let mut out = Vec::new();
    while !buf.is_empty() {
        let key = read(&mut buf);
        match key & 7 {
            0 => out.push((key >> 3, read(&mut buf).to_le_bytes().to_vec())),
            2 => {
                let len = read(&mut buf) as usize;
                out.push((key >> 3, buf[..len].to_vec()));
                buf = &buf[len..];
            }
            other => panic!("unexpected wire type {other}"),
        }
    }
    out
}

fn get(message: &[u8], number: u64) -> Vec<Vec<u8>> {
    fields(message).into_iter().filter(|(n, _)| *n == number).map(|(_, v)| v).collect()
}

fn number(bytes: &[u8]) -> u64 {
    let mut le = [0u8; 8];
    le[..bytes.len()].copy_from_slice(bytes);
    u64::from_le_bytes(le)
}

/// `HeaderValueOption`s as `(key, value)`.
fn header_options(options: Vec<Vec<u8>>) -> Headers {
    options
        .iter()
        .map(|o| {
            let h = &get(o, 1)[0];
            let text = |n| String::from_utf8(get(h, n).first().cloned().unwrap_or_default()).expect("utf-8");
            (text(1), text(2))
        })
        .collect()
}

type Headers = Vec<(String, String)>;

/// The decoded answer of one Check call.
#[derive(Debug)]
struct Answer {
    grpc_status: String,
    rpc_code: u64,
    /// `Some` when OK.
    ok_headers: Option<Headers>,
    /// `(http status, headers, body)` when denied.
    denied: Option<(u64, Headers, serde_json::Value)>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        let list = self.ok_headers.as_ref().or(self.denied.as_ref().map(|d| &d.1))?;
        list.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

async fn call(addr: std::net::SocketAddr, message: Vec<u8>) -> Answer {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp)).await.expect("h2 handshake");
    tokio::spawn(conn);
    let mut framed = BytesMut::new();
    framed.put_u8(0);
    framed.put_u32(message.len() as u32);
    framed.extend_from_slice(&message);
    let req = Request::post(format!("http://{addr}{CHECK}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(Full::new(framed.freeze()))
        .expect("request");
    let response = sender.send_request(req).await.expect("call");
    assert_eq!(response.status(), StatusCode::OK);
    let headers = response.headers().clone();
    let collected = response.into_body().collect().await.expect("body");
    let trailers = collected.trailers().cloned().unwrap_or_default();
    let body: Bytes = collected.to_bytes();
    let grpc_status = trailers
        .get("grpc-status")
        .or(headers.get("grpc-status"))
        .map(|v| v.to_str().expect("text").to_owned())
        .expect("grpc-status");
    if body.is_empty() {
        return Answer { grpc_status, rpc_code: 0, ok_headers: None, denied: None };
    }
    let len = u32::from_be_bytes(body[1..5].try_into().expect("length")) as usize;
    let message = &body[5..5 + len];
    let rpc_code = get(message, 1).first().map_or(0, |s| get(s, 1).first().map_or(0, |c| number(c)));
    let ok_headers = get(message, 3).first().map(|ok| header_options(get(ok, 2)));
    let denied = get(message, 2).first().map(|d| {
        let status = get(&get(d, 1)[0], 1).first().map_or(0, |c| number(c));
        let body = get(d, 3).first().cloned().unwrap_or_default();
        (status, header_options(get(d, 2)), serde_json::from_slice(&body).expect("problem JSON"))
    });
    Answer { grpc_status, rpc_code, ok_headers, denied }
}

async fn grpc_gateway(trusted: &[&str], extra: Option<keygate::keys::PolicyRow>) -> ProxyGateway {
    let upstream = Upstream::start().await;
    let trusted: Vec<String> = trusted.iter().map(|s| s.to_string()).collect();
    let mut builder = TestGateway::new().upstream(upstream.url("")).config(move |c| {
        c.authz.grpc_listen = Some("127.0.0.1:0".parse().expect("addr"));
        c.proxy.trusted_proxies = trusted;
    });
    if let Some(row) = extra {
        builder = builder.key(row);
    }
    builder.proxy().await
}

#[tokio::test]
async fn grpc_check_allows_with_the_identity_headers_to_set() {
    let gw = grpc_gateway(&[], None).await;
    let addr = gw.authz_grpc.expect("grpc on");
    let key = gw.keys.write.expose();
    let message = check_request("198.51.100.1", "GET", "/v1/x?y=1", "api.example.com", &[("x-api-key", key)]);
    let answer = call(addr, message).await;
    assert_eq!((answer.grpc_status.as_str(), answer.rpc_code), ("0", 0), "{answer:?}");
    assert!(answer.denied.is_none(), "{answer:?}");
    assert_eq!(answer.header("x-keygate-key-id"), Some("key_write"), "{answer:?}");
    assert_eq!(answer.header("x-keygate-account-id"), Some("acc_main"));
    assert_eq!(answer.header("x-keygate-permission"), Some("write"));
}

#[tokio::test]
async fn grpc_check_denies_with_the_proxys_status_problem_and_challenge() {
    let gw = grpc_gateway(&[], None).await;
    let addr = gw.authz_grpc.expect("grpc on");
    let answer = call(addr, check_request("198.51.100.1", "GET", "/v1/x", "h", &[])).await;
    let (status, headers, problem) = answer.denied.clone().expect("denied");
    assert_eq!((answer.rpc_code, status, problem["code"].as_str()), (16, 401, Some("missing_key")), "{answer:?}");
    assert!(headers.iter().any(|(k, v)| k == "www-authenticate" && v.starts_with("Bearer")), "{headers:?}");
    assert!(headers.iter().any(|(k, v)| k == "content-type" && v == "application/problem+json"));
    let read = gw.keys.read.expose();
    let answer = call(
        addr,
        check_request("198.51.100.1", "DELETE", "/v1/x", "h", &[("authorization", &format!("Bearer {read}"))]),
    )
    .await;
    let (status, _, problem) = answer.denied.clone().expect("denied");
    assert_eq!((answer.rpc_code, status, problem["code"].as_str()), (7, 403, Some("insufficient_permission")));
    // Not a CheckRequest: a gRPC error, not a crash or an HTTP 5xx.
    let answer = call(addr, vec![0x0a, 0x7f, 0x01]).await;
    assert_eq!(answer.grpc_status, "3", "{answer:?}");
}

#[tokio::test]
async fn grpc_source_address_counts_only_from_a_trusted_envoy() {
    let secret = generate("kg_live");
    let restrictions = Restrictions::parse(&["203.0.113.7/32".to_string()], &[]).expect("parse").expect("some");
    let row = || KeyPolicy::builder("key_ip", "acc_main").restrictions((*restrictions).clone()).row(secret.hash());
    let message = || check_request("203.0.113.7", "GET", "/", "h", &[("x-api-key", secret.expose())]);

    let untrusted = grpc_gateway(&[], Some(row())).await;
    let answer = call(untrusted.authz_grpc.expect("on"), message()).await;
    let (status, _, problem) = answer.denied.expect("denied: the source is the untrusted peer's word");
    assert_eq!((status, problem["code"].as_str()), (403, Some("ip_not_allowed")));

    let trusted = grpc_gateway(&["127.0.0.1/32"], Some(row())).await;
    let answer = call(trusted.authz_grpc.expect("on"), message()).await;
    assert!(answer.ok_headers.is_some(), "{answer:?}");
}

/// With `proxy.identity_token`, OK carries the signed token among the
/// headers to set; a token the client sent is not the one handed back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_check_allows_with_the_identity_token_to_set() {
    use crate::kit::AdminCalls;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;

    let gw = TestGateway::new()
        .config(|c| {
            c.authz.grpc_listen = Some("127.0.0.1:0".parse().expect("addr"));
            c.proxy.identity_token = Some(keygate::config::IdentityTokenConfig::default());
        })
        .start()
        .await;
    let account = gw.admin.account("Acme").await;
    let (key, secret) = gw.admin.key(&account, "read").await;
    let headers = [("x-api-key", secret.as_str()), ("x-keygate-identity", "forged")];
    let answer = call(
        gw.gateway.authz_grpc_addr.expect("grpc on"),
        check_request("198.51.100.1", "GET", "/v1/x", "h", &headers),
    )
    .await;
    assert_eq!((answer.grpc_status.as_str(), answer.rpc_code), ("0", 0), "{answer:?}");
    let token = answer.header("x-keygate-identity").expect("a token to set");
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "{token}");
    let claims: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).expect("b64")).expect("json");
    assert_eq!(claims["sub"].as_str(), Some(key.as_str()));
    // The signature, against the JWKS the admin port publishes.
    let jwks = crate::kit::http::fetch(
        http::Method::GET,
        &format!("http://{}/.well-known/jwks.json", gw.gateway.admin_addr),
        &[],
        "",
    )
    .await
    .json();
    let x = URL_SAFE_NO_PAD.decode(jwks["keys"][0]["x"].as_str().expect("x")).expect("b64");
    ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, x)
        .verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &URL_SAFE_NO_PAD.decode(parts[2]).expect("b64"))
        .expect("the signature verifies");
}
