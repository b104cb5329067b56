//! A webhook receiver for the tests: a real HTTP server on 127.0.0.1 that
//! keeps every request it gets and answers with the status it is told to
//! (or never answers), and checks signatures on its own, with `ring`'s HMAC
//! over `"<t>.<body>"` — not with keygate's code.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpListener;

/// One request the receiver got, and what it answered.
#[derive(Debug, Clone)]
pub struct Received {
    pub signature: String,
    pub content_type: String,
    pub body: Bytes,
    pub json: Value,
    pub answered: u16,
}

impl Received {
    pub fn id(&self) -> &str {
        self.json["id"].as_str().unwrap_or("")
    }

    pub fn kind(&self) -> &str {
        self.json["type"].as_str().unwrap_or("")
    }
}

#[derive(Clone)]
pub struct Receiver {
    pub addr: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
    status: Arc<AtomicU16>,
    hang: Arc<AtomicBool>,
    connections: Arc<AtomicUsize>,
}

impl Receiver {
    /// A receiver answering 200 on a port of its own.
    pub async fn start() -> Receiver {
        Self::start_on("127.0.0.1:0".parse().expect("addr")).await
    }

    /// A receiver on `addr` (a port a test reserved and kept closed until now).
    pub async fn start_on(addr: SocketAddr) -> Receiver {
        let listener = TcpListener::bind(addr).await.expect("bind receiver");
        let receiver = Receiver {
            addr: listener.local_addr().expect("addr"),
            received: Arc::default(),
            status: Arc::new(AtomicU16::new(200)),
            hang: Arc::default(),
            connections: Arc::default(),
        };
        let r = receiver.clone();
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else { continue };
                r.connections.fetch_add(1, Ordering::SeqCst);
                let r = r.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| {
                        let r = r.clone();
                        async move { Ok::<_, Infallible>(r.answer(req).await) }
                    });
                    let _ = http1::Builder::new().serve_connection(TokioIo::new(tcp), service).await;
                });
            }
        });
        receiver
    }

    async fn answer(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
        let (signature, content_type) = (header("keygate-signature"), header("content-type"));
        let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        if self.hang.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
        let status = self.status.load(Ordering::SeqCst);
        let json = serde_json::from_slice(&body).unwrap_or(Value::Null);
        self.received.lock().expect("lock").push(Received { signature, content_type, body, json, answered: status });
        let mut res = Response::new(Full::new(Bytes::from_static(b"ok")));
        *res.status_mut() = StatusCode::from_u16(status).expect("status");
        res
    }

    pub fn url(&self) -> String {
        format!("http://{}/hooks/keygate?source=test", self.addr)
    }

    /// Answers `status` from now on.
    pub fn answer_with(&self, status: u16) {
        self.status.store(status, Ordering::SeqCst);
    }

    /// Never answers from now on.
    pub fn hang(&self) {
        self.hang.store(true, Ordering::SeqCst);
    }

    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().expect("lock").clone()
    }

    /// The requests answered 2xx, by event id.
    pub fn delivered(&self) -> BTreeMap<String, Vec<Received>> {
        let mut out: BTreeMap<String, Vec<Received>> = BTreeMap::new();
        for r in self.received().into_iter().filter(|r| (200..300).contains(&r.answered)) {
            out.entry(r.id().to_owned()).or_default().push(r);
        }
        out
    }

    /// Waits (up to 20 s) until `done` holds for what was received.
    pub async fn wait_for(&self, what: &str, done: impl Fn(&[Received]) -> bool) -> Vec<Received> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let got = self.received();
            if done(&got) {
                return got;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}; received: {:#?}", summary(&got));
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

fn summary(got: &[Received]) -> Vec<String> {
    got.iter().map(|r| format!("{} {} -> {}", r.kind(), r.id(), r.answered)).collect()
}

/// Checks `Keygate-Signature: t=…,v1=…` of `body` with `secret`, with
/// `ring` directly, and that `t` is within a minute of now.
pub fn verify(secret: &str, header: &str, body: &[u8]) -> Result<(), String> {
    let mut t = None;
    let mut v1 = None;
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", value)) => t = Some(value),
            Some(("v1", value)) => v1 = Some(value),
            _ => return Err(format!("unexpected part {part:?} in {header:?}")),
        }
    }
    let (t, v1) = (t.ok_or("no t")?, v1.ok_or("no v1")?);
    let at: i64 = t.parse().map_err(|_| format!("t is not a number: {t:?}"))?;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs() as i64;
    if (now - at).abs() > 60 {
        return Err(format!("t={at} is not within a minute of now ({now})"));
    }
    let tag = (0..v1.len())
        .step_by(2)
        .map(|i| v1.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
        .collect::<Option<Vec<u8>>>()
        .ok_or_else(|| format!("v1 is not hex: {v1:?}"))?;
    let mut message = format!("{t}.").into_bytes();
    message.extend_from_slice(body);
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    ring::hmac::verify(&key, &message, &tag).map_err(|_| "the signature does not match".to_owned())
}

/// An address nothing listens on yet: bound and released at once, so a
/// receiver can come up on it later.
pub fn closed_addr() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr")
}
