//! The echo upstream every test uses: a hyper server on 127.0.0.1:0 that
//! answers with what it received — method, path, query (`null` when
//! absent), headers (each name with the list of its values), and the length
//! and blake3 hash of the body (read as a stream) — as JSON.
//!
//! Request headers steer it: `x-delay-ms: N` waits before answering,
//! `x-respond-hop: 1` adds hop-by-hop headers to the response, and paths
//! under `/echo-body` stream the request body straight back.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, Response};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};

use super::protocols::header_map;

type Body = BoxBody<Bytes, hyper::Error>;

/// A running upstream and what it has seen; it lives until the test's
/// runtime ends.
pub struct Upstream {
    pub addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    hits: Arc<AtomicUsize>,
}

impl Upstream {
    /// The echo upstream.
    pub async fn start() -> Upstream {
        serve(|tcp, hits| async move {
            let service = service_fn(move |req| {
                hits.fetch_add(1, Ordering::SeqCst);
                answer(req)
            });
            let _ = http1::Builder::new().serve_connection(TokioIo::new(tcp), service).await;
        })
        .await
    }

    /// `http://127.0.0.1:<port>` plus `base_path`.
    pub fn url(&self, base_path: &str) -> String {
        format!("http://{}{}", self.addr, base_path)
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// Requests that reached this upstream so far (as counted by `serve`'s
    /// function).
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

/// Any upstream: accepts connections on 127.0.0.1:0 and hands each, with the
/// request counter, to `serve` on a task of its own.
pub async fn serve<F, Fut>(serve: F) -> Upstream
where
    F: Fn(TcpStream, Arc<AtomicUsize>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind upstream");
    let addr = listener.local_addr().expect("upstream addr");
    let connections = Arc::new(AtomicUsize::new(0));
    let hits = Arc::new(AtomicUsize::new(0));
    let (accepted, counter) = (Arc::clone(&connections), Arc::clone(&hits));
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else { continue };
            accepted.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(serve(tcp, Arc::clone(&counter)));
        }
    });
    Upstream { addr, connections, hits }
}

/// Reads from `stream` until a whole request head (through its blank line)
/// has arrived, for upstreams that answer with raw bytes; `None` when the
/// peer closes first.
pub async fn read_head(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    Some(head)
}

/// A URL nothing listens on: a port bound and released at once.
pub fn closed_port_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    format!("http://{addr}")
}

async fn answer(req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    if let Some(ms) = req.headers().get("x-delay-ms").and_then(|v| v.to_str().ok()?.parse().ok()) {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    let hop = req.headers().contains_key("x-respond-hop");
    let mut response = if req.uri().path().starts_with("/echo-body") {
        Response::new(req.into_body().boxed())
    } else {
        describe(req).await
    };
    if hop {
        let h = response.headers_mut();
        h.insert("connection", HeaderValue::from_static("x-upstream-private"));
        h.insert("x-upstream-private", HeaderValue::from_static("secret"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("proxy-authenticate", HeaderValue::from_static("Basic realm=\"up\""));
        h.insert("x-upstream-normal", HeaderValue::from_static("yes"));
    }
    Ok(response)
}

/// The JSON description of a request, its body hashed as it streams in.
async fn describe(req: Request<Incoming>) -> Response<Body> {
    let (parts, mut body) = req.into_parts();
    let mut hasher = blake3::Hasher::new();
    let mut len = 0u64;
    let mut body_error = None;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(frame) => {
                if let Some(data) = frame.data_ref() {
                    len += data.len() as u64;
                    hasher.update(data);
                }
            }
            Err(e) => {
                body_error = Some(e.to_string());
                break;
            }
        }
    }
    let headers = header_map(&parts.headers);
    let doc = json!({
        "method": parts.method.as_str(),
        "path": parts.uri.path(),
        "query": parts.uri.query(),
        "headers": headers,
        "body_len": len,
        "body_blake3": hasher.finalize().to_hex().to_string(),
        "body_error": body_error,
    });
    let mut response = Response::new(Full::new(Bytes::from(doc.to_string())).map_err(|never| match never {}).boxed());
    response.headers_mut().insert("content-type", HeaderValue::from_static("application/json"));
    response
}
