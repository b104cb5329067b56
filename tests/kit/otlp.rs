//! A real OTLP/HTTP trace receiver for tests: accepts `POST /v1/traces`
//! with `application/x-protobuf` (anything else: 404 or 415), keeps every
//! body, and decodes them with prost over message structs written from the
//! OTLP `.proto` files — a decoder independent of keygate's encoder.
//! `fail_with` makes it refuse batches, to test the exporter's accounting.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use prost::Message as _;

/// `opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ExportTraceServiceRequest {
    #[prost(message, repeated, tag = "1")]
    pub resource_spans: Vec<ResourceSpans>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ResourceSpans {
    #[prost(message, optional, tag = "1")]
    pub resource: Option<Resource>,
    #[prost(message, repeated, tag = "2")]
    pub scope_spans: Vec<ScopeSpans>,
    #[prost(string, tag = "3")]
    pub schema_url: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Resource {
    #[prost(message, repeated, tag = "1")]
    pub attributes: Vec<KeyValue>,
    #[prost(uint32, tag = "2")]
    pub dropped_attributes_count: u32,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ScopeSpans {
    #[prost(message, optional, tag = "1")]
    pub scope: Option<InstrumentationScope>,
    #[prost(message, repeated, tag = "2")]
    pub spans: Vec<Span>,
    #[prost(string, tag = "3")]
    pub schema_url: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct InstrumentationScope {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub version: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Span {
    #[prost(bytes = "vec", tag = "1")]
    pub trace_id: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    pub span_id: Vec<u8>,
    #[prost(string, tag = "3")]
    pub trace_state: String,
    #[prost(bytes = "vec", tag = "4")]
    pub parent_span_id: Vec<u8>,
    #[prost(string, tag = "5")]
    pub name: String,
    #[prost(int32, tag = "6")]
    pub kind: i32,
    #[prost(fixed64, tag = "7")]
    pub start_time_unix_nano: u64,
    #[prost(fixed64, tag = "8")]
    pub end_time_unix_nano: u64,
    #[prost(message, repeated, tag = "9")]
    pub attributes: Vec<KeyValue>,
    #[prost(message, optional, tag = "15")]
    pub status: Option<Status>,
    #[prost(fixed32, tag = "16")]
    pub flags: u32,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Status {
    #[prost(string, tag = "2")]
    pub message: String,
    #[prost(int32, tag = "3")]
    pub code: i32,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct KeyValue {
    #[prost(string, tag = "1")]
    pub key: String,
    #[prost(message, optional, tag = "2")]
    pub value: Option<AnyValue>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct AnyValue {
    #[prost(oneof = "Value", tags = "1, 2, 3, 4")]
    pub value: Option<Value>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
pub enum Value {
    #[prost(string, tag = "1")]
    Str(String),
    #[prost(bool, tag = "2")]
    Bool(bool),
    #[prost(int64, tag = "3")]
    Int(i64),
    #[prost(double, tag = "4")]
    Double(f64),
}

impl Span {
    /// The attribute `key`'s value, if the span has it.
    pub fn attr(&self, key: &str) -> Option<&Value> {
        self.attributes.iter().find(|kv| kv.key == key).and_then(|kv| kv.value.as_ref()?.value.as_ref())
    }

    /// The string attribute `key` ("" when absent or not a string).
    pub fn str(&self, key: &str) -> &str {
        match self.attr(key) {
            Some(Value::Str(s)) => s,
            _ => "",
        }
    }

    pub fn int(&self, key: &str) -> Option<i64> {
        match self.attr(key) {
            Some(Value::Int(i)) => Some(*i),
            _ => None,
        }
    }
}

/// The receiver and everything it was sent.
pub struct Collector {
    pub addr: SocketAddr,
    bodies: Arc<Mutex<Vec<Bytes>>>,
    status: Arc<AtomicU16>,
}

impl Collector {
    pub async fn start() -> Collector {
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let status = Arc::new(AtomicU16::new(200));
        let (kept, answer) = (Arc::clone(&bodies), Arc::clone(&status));
        let upstream = super::upstream::serve(move |tcp, _| {
            let (kept, answer) = (Arc::clone(&kept), Arc::clone(&answer));
            async move {
                let service = service_fn(move |req| receive(req, Arc::clone(&kept), Arc::clone(&answer)));
                let _ = http1::Builder::new().serve_connection(TokioIo::new(tcp), service).await;
            }
        })
        .await;
        Collector { addr: upstream.addr, bodies, status }
    }

    /// The base URL for `telemetry.otlp_endpoint`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Answers every later batch with `status` (after keeping it).
    pub fn fail_with(&self, status: u16) {
        self.status.store(status, Ordering::SeqCst);
    }

    /// Every body received, concatenated (to search for what must not be
    /// there).
    pub fn raw(&self) -> Vec<u8> {
        self.bodies.lock().expect("bodies").iter().flat_map(|b| b.iter().copied()).collect()
    }

    /// Every request decoded.
    pub fn requests(&self) -> Vec<ExportTraceServiceRequest> {
        let bodies = self.bodies.lock().expect("bodies").clone();
        bodies.iter().map(|b| ExportTraceServiceRequest::decode(b.as_ref()).expect("valid OTLP protobuf")).collect()
    }

    /// Every span received.
    pub fn spans(&self) -> Vec<Span> {
        self.requests()
            .into_iter()
            .flat_map(|r| r.resource_spans)
            .flat_map(|rs| rs.scope_spans)
            .flat_map(|ss| ss.spans)
            .collect()
    }

    /// Waits (at most 10 s) until `n` spans have arrived; returns them all.
    pub async fn wait_for(&self, n: usize) -> Vec<Span> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let spans = self.spans();
            if spans.len() >= n {
                return spans;
            }
            assert!(Instant::now() < deadline, "{} of {n} spans arrived", spans.len());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

async fn receive(
    req: Request<Incoming>,
    kept: Arc<Mutex<Vec<Bytes>>>,
    answer: Arc<AtomicU16>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let reply = |status: u16| {
        let mut response = Response::new(Full::new(Bytes::new()));
        *response.status_mut() = StatusCode::from_u16(status).expect("status");
        Ok(response)
    };
    if req.method() != http::Method::POST || req.uri().path() != "/v1/traces" {
        return reply(404);
    }
    if req.headers().get("content-type").and_then(|v| v.to_str().ok()) != Some("application/x-protobuf") {
        return reply(415);
    }
    let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    kept.lock().expect("bodies").push(body);
    reply(answer.load(Ordering::SeqCst))
}
