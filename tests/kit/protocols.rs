//! Real servers and clients for the protocol tests: an HTTP/2 upstream
//! without TLS (hyper's http2 server) that echoes gRPC-shaped exchanges and
//! describes everything else, an HTTP/1.1 upstream that switches protocols
//! and echoes bytes, and HTTP/2 clients (prior knowledge, and TLS with ALPN).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::client::conn::http2::SendRequest;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::{json, Map, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use super::http::{tls_client_config, TestBody};
use super::upstream::{serve, Upstream};

type Body = BoxBody<Bytes, Infallible>;

/// An HTTP/2 upstream with prior knowledge (h2c). A gRPC request
/// (`application/grpc`) has its body echoed frame by frame as it arrives,
/// then the trailers `grpc-status: 0` and `grpc-message: echoed`; its
/// response headers say which `te` arrived (`x-seen-te`). Anything else gets
/// a JSON description: `version`, `method`, `path`, `headers`.
pub async fn h2c_upstream() -> Upstream {
    serve(|tcp, hits| async move {
        let service = service_fn(move |req| counted_answer(Arc::clone(&hits), req));
        let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
            .serve_connection(TokioIo::new(tcp), service)
            .await;
    })
    .await
}

/// [`h2_answer`], counted in `hits`.
async fn counted_answer(hits: Arc<AtomicUsize>, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    hits.fetch_add(1, Ordering::SeqCst);
    Ok(h2_answer(req).await)
}

async fn h2_answer(req: Request<Incoming>) -> Response<Body> {
    let grpc = req.headers().get("content-type").is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
    if !grpc {
        let doc = json!({
            "version": format!("{:?}", req.version()),
            "method": req.method().as_str(),
            "path": req.uri().path(),
            "headers": header_map(req.headers()),
        });
        return Response::new(Full::new(Bytes::from(doc.to_string())).boxed());
    }
    let seen_te = req.headers().get("te").cloned().unwrap_or(HeaderValue::from_static("none"));
    let (tx, rx) = mpsc::channel::<Frame<Bytes>>(4);
    let mut body = req.into_body();
    tokio::spawn(async move {
        while let Some(Ok(frame)) = body.frame().await {
            if let Ok(data) = frame.into_data() {
                if tx.send(Frame::data(data)).await.is_err() {
                    return;
                }
            }
        }
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", HeaderValue::from_static("0"));
        trailers.insert("grpc-message", HeaderValue::from_static("echoed"));
        let _ = tx.send(Frame::trailers(trailers)).await;
    });
    let frames = stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|f| (Ok(f), rx)) });
    Response::builder()
        .header("content-type", "application/grpc")
        .header("x-seen-te", seen_te)
        .body(StreamBody::new(frames).boxed())
        .expect("response")
}

/// An upstream over TLS with `cert` and `key` (PEM), offering `h2` and
/// `http/1.1` in ALPN; every request gets the JSON description of
/// `h2c_upstream`, whose `version` says which protocol it came over.
pub async fn tls_upstream(cert_pem: &[u8], key_pem: &[u8]) -> Upstream {
    let chain = CertificateDer::pem_slice_iter(cert_pem).collect::<Result<Vec<_>, _>>().expect("certificate");
    let key = PrivateKeyDer::from_pem_slice(key_pem).expect("a key");
    let mut config = rustls::ServerConfig::builder_with_provider(keygate::tls::provider())
        .with_safe_default_protocol_versions()
        .expect("protocols")
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .expect("server config");
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    serve(move |tcp, hits| {
        let acceptor = acceptor.clone();
        async move {
            let Ok(tls) = acceptor.accept(tcp).await else { return };
            let service = service_fn(move |req| counted_answer(Arc::clone(&hits), req));
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(tls), service)
                .await;
        }
    })
    .await
}

/// Header names to their values, as JSON.
pub fn header_map(headers: &HeaderMap) -> Value {
    let mut map = Map::new();
    for name in headers.keys() {
        let values = headers.get_all(name).iter().map(|v| Value::from(String::from_utf8_lossy(v.as_bytes()))).collect();
        map.insert(name.as_str().to_owned(), Value::Array(values));
    }
    Value::Object(map)
}

/// An HTTP/1.1 upstream for upgrades. A request with `Upgrade` is answered
/// `101` (naming the same protocol, and with `x-seen-connection` and
/// `x-seen-key-id` saying what arrived), then the upstream writes
/// `hello from upstream\n` and echoes every byte it reads until the client
/// closes. Under `/refuse`, an upgrade request gets `403 no switching here`
/// instead; any other request gets `200 plain`.
pub async fn upgrade_upstream() -> Upstream {
    serve(|tcp, hits| async move {
        let service = service_fn(move |mut req: Request<Incoming>| {
            hits.fetch_add(1, Ordering::SeqCst);
            async move {
                let Some(protocol) = req.headers().get("upgrade").cloned() else {
                    return Ok::<_, Infallible>(Response::new(Full::new(Bytes::from("plain")).boxed()));
                };
                if req.uri().path().starts_with("/refuse") {
                    let mut response = Response::new(Full::new(Bytes::from("no switching here")).boxed());
                    *response.status_mut() = StatusCode::FORBIDDEN;
                    return Ok(response);
                }
                let seen = |name: &str| req.headers().get(name).cloned().unwrap_or(HeaderValue::from_static("none"));
                let (connection, key_id) = (seen("connection"), seen("x-keygate-key-id"));
                let on_upgrade = hyper::upgrade::on(&mut req);
                tokio::spawn(async move {
                    let Ok(upgraded) = on_upgrade.await else { return };
                    let mut io = TokioIo::new(upgraded);
                    if io.write_all(b"hello from upstream\n").await.is_err() {
                        return;
                    }
                    let mut buf = [0u8; 1024];
                    loop {
                        match io.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => {
                                if io.write_all(&buf[..n]).await.is_err() {
                                    return;
                                }
                            }
                        }
                    }
                });
                Ok(Response::builder()
                    .status(StatusCode::SWITCHING_PROTOCOLS)
                    .header("connection", "upgrade")
                    .header("upgrade", protocol)
                    .header("x-seen-connection", connection)
                    .header("x-seen-key-id", key_id)
                    .body(Full::new(Bytes::new()).boxed())
                    .expect("response"))
            }
        });
        let _ = hyper::server::conn::http1::Builder::new()
            .serve_connection(TokioIo::new(tcp), service)
            .with_upgrades()
            .await;
    })
    .await
}

/// An HTTP/2 client with prior knowledge over plain TCP to `addr`.
pub async fn h2c_client(addr: SocketAddr) -> Result<SendRequest<TestBody>, hyper::Error> {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let (sender, connection) = hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp)).await?;
    tokio::spawn(connection);
    Ok(sender)
}

/// A TLS client to `addr` (as `localhost`, trusting `roots`) offering
/// `alpn`; returns the stream and the protocol the server picked.
pub async fn tls_connect(
    addr: SocketAddr,
    roots: &[CertificateDer<'static>],
    alpn: &[&[u8]],
) -> (tokio_rustls::client::TlsStream<TcpStream>, Option<Vec<u8>>) {
    let connector = tokio_rustls::TlsConnector::from(Arc::new(tls_client_config(roots, alpn)));
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let tls = connector.connect(ServerName::try_from("localhost").expect("name"), tcp).await.expect("handshake");
    let alpn = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
    (tls, alpn)
}

/// An HTTP/2 client over an established TLS stream.
pub async fn h2_over(tls: tokio_rustls::client::TlsStream<TcpStream>) -> SendRequest<TestBody> {
    let (sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls)).await.expect("h2 handshake");
    tokio::spawn(connection);
    sender
}

/// A whole HTTP/2 response, trailers included.
#[derive(Debug)]
pub struct H2Reply {
    pub version: http::Version,
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub trailers: Option<HeaderMap>,
}

impl H2Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().expect("text header"))
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
}

/// Sends `req` on `sender` and reads the whole answer, trailers included.
pub async fn h2_send(sender: &mut SendRequest<TestBody>, req: Request<TestBody>) -> Result<H2Reply, hyper::Error> {
    let exchange = async {
        let response = sender.send_request(req).await?;
        let (parts, mut body) = response.into_parts();
        let mut data = Vec::new();
        let mut trailers = None;
        while let Some(frame) = body.frame().await {
            let frame = frame?;
            match frame.into_data() {
                Ok(bytes) => data.extend_from_slice(&bytes),
                Err(frame) => trailers = frame.into_trailers().ok(),
            }
        }
        Ok(H2Reply {
            version: parts.version,
            status: parts.status,
            headers: parts.headers,
            body: data.into(),
            trailers,
        })
    };
    tokio::time::timeout(Duration::from_secs(20), exchange).await.expect("exchange timed out")
}

/// One gRPC message: uncompressed flag, big-endian length, payload.
pub fn grpc_frame(payload: &[u8]) -> Bytes {
    let mut frame = Vec::with_capacity(5 + payload.len());
    frame.push(0);
    frame.extend_from_slice(&u32::try_from(payload.len()).expect("small").to_be_bytes());
    frame.extend_from_slice(payload);
    frame.into()
}
