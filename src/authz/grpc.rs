//! Envoy's gRPC `ext_authz` on `authz.grpc_listen`:
//! `envoy.service.auth.v3.Authorization/Check` over HTTP/2 without TLS.
//! The `CheckRequest` names the original request; it is decided through
//! `Proxy::admit` like any other, and answered OK with the identity
//! headers (and, with `proxy.identity_token`, `X-Keygate-Identity`) to set
//! upstream, or Denied with the proxy's HTTP status,
//! problem+json body and headers (`WWW-Authenticate`, `Retry-After`,
//! `RateLimit`).
//!
//! The client address: when Envoy (the gRPC peer) is one of
//! `proxy.trusted_proxies`, the request's source address stands where the
//! TCP peer stands on the proxy (and `X-Forwarded-For` past it counts if
//! that source is trusted too), and the request's host counts for host
//! routes; from an untrusted peer, the peer's own address is the client's
//! and no host is believed.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use bytes::{BufMut, Bytes, BytesMut};
use futures_util::stream;
use http::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE, HOST};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited, StreamBody};
use hyper::body::{Frame, Incoming};
use tokio::net::TcpListener;

use super::proto::{self, Verdict};
use crate::config::Config;
use crate::contract::{ProxyCode, RequestId};
use crate::listener::{self, ListenerOptions};
use crate::proxy::fields::View;
use crate::proxy::live::Live;
use crate::proxy::{headers, problem, Proxy, ProxyBody};
use crate::shutdown::Shutdown;

pub const CHECK_PATH: &str = "/envoy.service.auth.v3.Authorization/Check";

/// A `CheckRequest` larger than this is refused (Envoy sends headers, and
/// the body only if configured to).
const MAX_MESSAGE: usize = 1024 * 1024;

type Frames = stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, Infallible>>>;
pub type GrpcBody = StreamBody<Frames>;

/// gRPC status codes used here.
const OK: u32 = 0;
const INVALID_ARGUMENT: u32 = 3;
const UNIMPLEMENTED: u32 = 12;

#[derive(Debug)]
pub struct GrpcAuthz {
    proxy: Arc<Proxy>,
    options: ListenerOptions,
}

impl GrpcAuthz {
    pub fn new(config: &Config, proxy: Arc<Proxy>) -> Arc<Self> {
        let options = ListenerOptions {
            name: "authz_grpc",
            http2_cleartext: true,
            connections: listener::connection_limit(config.proxy.max_connections),
            ..proxy.listener_options().clone()
        };
        Arc::new(GrpcAuthz { proxy, options })
    }

    pub async fn serve(self: Arc<Self>, listener: TcpListener, shutdown: Shutdown) {
        let options = self.options.clone();
        let make_service = move |peer: SocketAddr, _tls: bool| {
            let this = Arc::clone(&self);
            hyper::service::service_fn(move |request| {
                let this = Arc::clone(&this);
                async move { Ok::<_, Infallible>(this.handle(request, peer).await) }
            })
        };
        listener::serve(listener, None, make_service, options, shutdown).await;
    }

    /// Answers one gRPC call.
    pub async fn handle(&self, request: Request<Incoming>, peer: SocketAddr) -> Response<GrpcBody> {
        if request.method() != Method::POST || request.uri().path() != CHECK_PATH {
            return status_only(UNIMPLEMENTED, "keygate serves envoy.service.auth.v3.Authorization/Check only");
        }
        let body = match Limited::new(request.into_body(), MAX_MESSAGE + 5).collect().await {
            Ok(body) => body.to_bytes(),
            Err(_) => return status_only(INVALID_ARGUMENT, "the request message could not be read"),
        };
        let check = match unframe(&body).map(proto::decode_check) {
            Some(Ok(check)) => check,
            _ => return status_only(INVALID_ARGUMENT, "not a CheckRequest"),
        };
        let started = Instant::now();
        // Loaded once, after the last await: the whole decision uses one
        // configuration even if a reload lands meanwhile.
        let live = self.proxy.live_guard();
        let (route, verdict) = self.decide(&live, check, peer);
        Proxy::observe(&live, route, verdict.status(), started);
        verdict.into_grpc()
    }

    fn decide(&self, live: &Live, check: proto::Check, peer: SocketAddr) -> (usize, Decided) {
        let trusted = Proxy::trusts(live, peer.ip());
        // From a trusted Envoy, the downstream address is the peer the
        // proxy's rules start from.
        let client = match check.source.as_deref().map(str::parse::<IpAddr>) {
            Some(Ok(source)) if trusted => SocketAddr::new(source.to_canonical(), 0),
            _ => peer,
        };
        let mut headers = HeaderMap::with_capacity(check.headers.len() + 1);
        for (name, value) in &check.headers {
            // Pseudo-headers (`:path`, …) are in the message's own fields.
            if name.starts_with(':') {
                continue;
            }
            if let (Ok(name), Ok(value)) = (HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_bytes(value)) {
                headers.append(name, value);
            }
        }
        headers.remove(HOST);
        if trusted {
            if let Ok(host) = HeaderValue::from_str(&check.host) {
                headers.insert(HOST, host);
            }
        }
        let request_id = RequestId::from_headers(&headers);
        let request = Method::from_bytes(check.method.as_bytes())
            .ok()
            .zip(http::Uri::try_from(check.path.as_str()).ok().filter(|u| u.path().starts_with('/')));
        let Some((method, uri)) = request else {
            let detail = "The CheckRequest names no usable method and path.";
            return (0, Decided::Refused(problem::answer(ProxyCode::BadRequest, Some(detail), &request_id, false)));
        };
        let mut builder = Request::builder().method(method).uri(uri);
        if let Some(h) = builder.headers_mut() {
            *h = headers;
        }
        let Ok(request) = builder.body(()) else {
            return (0, Decided::Refused(problem::answer(ProxyCode::BadRequest, None, &request_id, false)));
        };
        let (parts, ()) = request.into_parts();
        match self.proxy.admit(live, View::of(&parts), client, &request_id, false, None) {
            Ok((admitted, target)) => {
                let mut headers = HeaderMap::new();
                headers::identity_headers(&mut headers, &admitted.identity);
                if let Some(token) = admitted.identity_token {
                    headers.insert(crate::identity::X_KEYGATE_IDENTITY, token);
                }
                (target.index, Decided::Allowed(headers))
            }
            Err(refused) => {
                let (route, response) = *refused;
                (route, Decided::Refused(response))
            }
        }
    }
}

enum Decided {
    /// The headers to set on the upstream request.
    Allowed(HeaderMap),
    Refused(Response<ProxyBody>),
}

impl Decided {
    fn status(&self) -> StatusCode {
        match self {
            Decided::Allowed(_) => StatusCode::OK,
            Decided::Refused(r) => r.status(),
        }
    }

    fn into_grpc(self) -> Response<GrpcBody> {
        let message = match self {
            Decided::Allowed(headers) => {
                let pairs: Vec<(&str, &[u8])> = headers.iter().map(|(n, v)| (n.as_str(), v.as_bytes())).collect();
                proto::encode_response(&Verdict::Ok { headers: &pairs })
            }
            Decided::Refused(response) => {
                let status = response.status();
                let (parts, body) = response.into_parts();
                let body = match body {
                    ProxyBody::Full(Some(bytes)) => bytes,
                    _ => Bytes::new(),
                };
                let pairs: Vec<(&str, &[u8])> = parts
                    .headers
                    .iter()
                    .filter(|(n, _)| *n != http::header::CONTENT_LENGTH && *n != http::header::CONNECTION)
                    .map(|(n, v)| (n.as_str(), v.as_bytes()))
                    .collect();
                let rpc_code = match status {
                    StatusCode::UNAUTHORIZED => 16,
                    StatusCode::FORBIDDEN => 7,
                    StatusCode::TOO_MANY_REQUESTS => 8,
                    StatusCode::BAD_REQUEST => INVALID_ARGUMENT,
                    _ => 7,
                };
                proto::encode_response(&Verdict::Denied {
                    rpc_code,
                    status: status.as_u16(),
                    headers: &pairs,
                    body: &body,
                })
            }
        };
        let mut framed = BytesMut::with_capacity(message.len() + 5);
        framed.put_u8(0);
        framed.put_u32(message.len() as u32);
        framed.extend_from_slice(&message);
        let mut trailers = HeaderMap::new();
        trailers.insert(problem::GRPC_STATUS, HeaderValue::from(OK));
        let frames = vec![Ok(Frame::data(framed.freeze())), Ok(Frame::trailers(trailers))];
        grpc_response(StreamBody::new(stream::iter(frames)))
    }
}

/// One uncompressed length-prefixed gRPC message.
fn unframe(body: &[u8]) -> Option<&[u8]> {
    let (&compressed, rest) = body.split_first()?;
    let len = u32::from_be_bytes(rest.get(..4)?.try_into().ok()?) as usize;
    let message = rest.get(4..)?;
    (compressed == 0 && message.len() == len).then_some(message)
}

fn grpc_response(body: GrpcBody) -> Response<GrpcBody> {
    let mut response = Response::new(body);
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    response
}

/// A trailers-only gRPC answer with a non-OK status.
fn status_only(code: u32, message: &'static str) -> Response<GrpcBody> {
    let mut response = grpc_response(StreamBody::new(stream::iter(Vec::new())));
    response.headers_mut().insert(problem::GRPC_STATUS, HeaderValue::from(code));
    response.headers_mut().insert(problem::GRPC_MESSAGE, HeaderValue::from_static(message));
    response
}
