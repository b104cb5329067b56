//! Clients for tests: hyper's pooled client for ordinary requests (one
//! [`Reply`] type for every answer), raw TCP for what well-behaved clients
//! cannot send (a head that never ends, a body over the limit), and a
//! rustls client that reports the certificate the server presented.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full, StreamBody};
use hyper::body::Frame;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub type TestBody = BoxBody<Bytes, Infallible>;

/// Longest any single exchange in a test may take.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(20);

/// A whole response.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    /// The body as JSON; `Null` for an empty body.
    pub fn json(&self) -> serde_json::Value {
        if self.body.is_empty() {
            return serde_json::Value::Null;
        }
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    /// The problem's `code`, or "" for a non-problem answer.
    pub fn code(&self) -> String {
        self.json()["code"].as_str().unwrap_or("").to_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().expect("text header"))
    }
}

pub fn empty() -> TestBody {
    Empty::new().boxed()
}

pub fn full(bytes: impl Into<Bytes>) -> TestBody {
    Full::new(bytes.into()).boxed()
}

/// A body sent in `chunks`, with no length declared (chunked encoding).
pub fn chunked(chunks: Vec<Bytes>) -> TestBody {
    StreamBody::new(stream::iter(chunks.into_iter().map(|c| Ok::<_, Infallible>(Frame::data(c))))).boxed()
}

/// Sends `req` (absolute URI) on a fresh client and reads the whole answer.
pub async fn send(req: Request<TestBody>) -> Reply {
    let client: Client<_, TestBody> = Client::builder(TokioExecutor::new()).build_http();
    let exchange = async {
        let response = client.request(req).await.expect("request failed");
        let (parts, body) = response.into_parts();
        let body = body.collect().await.expect("response body").to_bytes();
        Reply { status: parts.status, headers: parts.headers, body }
    };
    tokio::time::timeout(EXCHANGE_TIMEOUT, exchange).await.expect("exchange timed out")
}

/// `method url` with `headers` and `body`, on a fresh client.
pub async fn fetch(method: Method, url: &str, headers: &[(&str, &str)], body: impl Into<Bytes>) -> Reply {
    let mut req = Request::builder().method(method).uri(url);
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    send(req.body(full(body)).expect("request")).await
}

/// GET through the proxy at `proxy` with a Bearer key.
pub async fn get_with_key(proxy: SocketAddr, path: &str, key: &str) -> Reply {
    let auth = format!("Bearer {key}");
    fetch(Method::GET, &format!("http://{proxy}{path}"), &[("authorization", &auth)], Bytes::new()).await
}

/// Writes `bytes` on a new connection and reads until the server closes it
/// or `wait` passes; returns what came back as text.
pub async fn raw(addr: SocketAddr, bytes: &[u8], wait: Duration) -> String {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(bytes).await.expect("write");
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A TLS client configuration trusting only `roots`, offering `alpn`.
pub fn tls_client_config(roots: &[CertificateDer<'static>], alpn: &[&[u8]]) -> rustls::ClientConfig {
    let mut store = rustls::RootCertStore::empty();
    for root in roots {
        store.add(root.clone()).expect("add root");
    }
    let mut config = rustls::ClientConfig::builder_with_provider(keygate::tls::provider())
        .with_safe_default_protocol_versions()
        .expect("protocols")
        .with_root_certificates(store)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    config
}

/// Sends `req` (origin-form URI, `Host` set) over TLS to `addr` for
/// `localhost`, trusting `roots`; returns the answer and the certificate
/// the server presented.
pub async fn send_tls(
    addr: SocketAddr,
    roots: &[CertificateDer<'static>],
    req: Request<TestBody>,
) -> Result<(Reply, CertificateDer<'static>), String> {
    let connector = tokio_rustls::TlsConnector::from(Arc::new(tls_client_config(roots, &[b"http/1.1"])));
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let name = ServerName::try_from("localhost").expect("server name");
    let tls = connector.connect(name, tcp).await.map_err(|e| format!("handshake: {e}"))?;
    let (_, session) = tls.get_ref();
    assert_eq!(session.alpn_protocol(), Some(&b"http/1.1"[..]));
    let presented = session.peer_certificates().and_then(|c| c.first()).expect("server certificate").clone();
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(tls)).await.map_err(|e| e.to_string())?;
    tokio::spawn(connection);
    let response = sender.send_request(req).await.map_err(|e| e.to_string())?;
    let (parts, body) = response.into_parts();
    let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
    Ok((Reply { status: parts.status, headers: parts.headers, body }, presented))
}
