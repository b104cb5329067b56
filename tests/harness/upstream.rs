//! A real upstream for tests: an HTTP/1.1 server on 127.0.0.1:0 that answers
//! every request with JSON describing what it received (method, path,
//! headers, body length and blake3), after `/slow/<ms>` sleeps that long.
#![allow(dead_code)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

pub async fn start() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind upstream");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            tokio::spawn(async move {
                let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service_fn(answer)).await;
            });
        }
    });
    addr
}

async fn answer(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_owned();
    if let Some(ms) = path.strip_prefix("/slow/").and_then(|ms| ms.parse::<u64>().ok()) {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    let method = req.method().to_string();
    let query = req.uri().query().unwrap_or("").to_owned();
    let mut headers = serde_json::Map::new();
    for (name, value) in req.headers() {
        let v = String::from_utf8_lossy(value.as_bytes()).into_owned();
        headers
            .entry(name.as_str().to_owned())
            .and_modify(|e| {
                if let serde_json::Value::String(s) = e {
                    s.push_str(", ");
                    s.push_str(&v);
                }
            })
            .or_insert(serde_json::Value::String(v));
    }
    let mut body = req.into_body();
    let mut hasher = blake3::Hasher::new();
    let mut len = 0u64;
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else { break };
        if let Some(data) = frame.data_ref() {
            len += data.len() as u64;
            hasher.update(data);
        }
    }
    let json = serde_json::json!({
        "method": method,
        "path": path,
        "query": query,
        "headers": headers,
        "body_len": len,
        "body_blake3": hasher.finalize().to_hex().to_string(),
    });
    Ok(Response::builder()
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(json.to_string())))
        .expect("response"))
}
