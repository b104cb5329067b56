//! Forward auth: keygate's decision for an ingress that already proxies
//! the traffic (nginx `auth_request`, Caddy `forward_auth`, Traefik
//! `forwardAuth`, Envoy's HTTP `ext_authz`). The ingress asks with the
//! client's headers and the original method and URI (`original`); the
//! answer is 200 with the identity (and `RateLimit`) headers for the
//! ingress to pass upstream (with `proxy.identity_token`, the signed
//! `X-Keygate-Identity` too), or the proxy's own refusal.
//!
//! Nothing is decided here: the original request goes through
//! `Proxy::admit`, the proxy's own entry point, so forward auth counts,
//! limits, records usage and metrics exactly as the proxy does, and gains
//! whatever the proxy's decision gains. The peer is the ingress: its
//! `X-Forwarded-For` and `X-Forwarded-Host` count only if it is one of
//! `proxy.trusted_proxies`, as for the proxy.
//!
//! Refusals are always problem+json, never a gRPC status, even for an
//! original gRPC request: a gRPC refusal is an HTTP 200, which an ingress
//! would read as "allowed".

pub mod grpc;
pub mod original;
pub mod proto;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use http::header::{HeaderName, HeaderValue};
use http::{Request, Response, StatusCode};
use tokio::net::TcpListener;

use crate::config::Config;
use crate::contract::{ProxyCode, RequestId, X_REQUEST_ID};
use crate::listener::{self, ListenerOptions};
use crate::proxy::fields::View;
use crate::proxy::{headers, problem, Admitted, Proxy, ProxyBody};
use crate::shutdown::Shutdown;

/// The refusal's problem+json, repeated as a header for nginx.
pub const X_KEYGATE_PROBLEM: HeaderName = HeaderName::from_static("x-keygate-problem");

/// The forward-auth listener's state.
#[derive(Debug)]
pub struct ForwardAuth {
    proxy: Arc<Proxy>,
    options: ListenerOptions,
}

impl ForwardAuth {
    /// Forward auth deciding through `proxy`, with the proxy's timeouts and
    /// head limits and a connection limit of its own.
    pub fn new(config: &Config, proxy: Arc<Proxy>) -> Arc<Self> {
        let options = ListenerOptions {
            name: "authz",
            http2_cleartext: false,
            connections: listener::connection_limit(config.proxy.max_connections),
            ..proxy.listener_options().clone()
        };
        Arc::new(ForwardAuth { proxy, options })
    }

    /// Serves forward auth on `listener` until `shutdown` fires and the
    /// requests in flight have been answered.
    pub async fn serve(self: Arc<Self>, listener: TcpListener, shutdown: Shutdown) {
        let options = self.options.clone();
        let make_service = move |peer: SocketAddr, _tls: bool| {
            let this = Arc::clone(&self);
            hyper::service::service_fn(move |request| {
                let response = this.handle(request, peer);
                async move { Ok::<_, Infallible>(response) }
            })
        };
        listener::serve(listener, None, make_service, options, shutdown).await;
    }

    /// Decides the original request an auth subrequest from `peer`
    /// describes, and records it like a proxied request. The subrequest's
    /// body, if any, is never read.
    pub fn handle<B>(&self, request: Request<B>, peer: SocketAddr) -> Response<ProxyBody> {
        let started = Instant::now();
        // Loaded once: the whole decision uses one configuration even if a
        // reload lands meanwhile, as for a proxied request.
        let live = self.proxy.live_guard();
        let (mut parts, _body) = request.into_parts();
        let request_id = RequestId::from_headers(&parts.headers);
        let (route, response) = match original::restore(&mut parts, Proxy::trusts(&live, peer.ip())) {
            Err(unusable) => {
                tracing::debug!(request_id = %request_id, peer = %peer.ip(), "forward auth without a usable original request");
                (0, problem::answer(ProxyCode::BadRequest, Some(unusable.detail()), &request_id, false))
            }
            Ok(()) => match self.proxy.admit(&live, View::of(&parts), peer, &request_id, false, None) {
                Ok((admitted, target)) => (target.index, allowed(&admitted, &request_id)),
                Err(refused) => *refused,
            },
        };
        Proxy::observe(&live, route, response.status(), started);
        if response.status().is_success() {
            response
        } else {
            with_problem_header(response)
        }
    }
}

/// nginx's `auth_request` keeps only the status and headers of the auth
/// answer (and turns any status but 401 and 403 into 500): the problem
/// also goes in `X-Keygate-Problem`, one line of JSON, so an nginx
/// `error_page` can answer the client with it (docs/authz.md).
fn with_problem_header(response: Response<ProxyBody>) -> Response<ProxyBody> {
    let (mut parts, body) = response.into_parts();
    if let ProxyBody::Full(Some(bytes)) = &body {
        if let Ok(value) = HeaderValue::from_bytes(bytes.trim_ascii()) {
            parts.headers.insert(X_KEYGATE_PROBLEM, value);
        }
    }
    Response::from_parts(parts, body)
}

/// The answer to an allowed request: 200, no body, the identity (and
/// identity token) and the `RateLimit` headers (what the proxy would have added upstream and to the
/// response) and the request id.
pub fn allowed(admitted: &Admitted, request_id: &RequestId) -> Response<ProxyBody> {
    let mut response = Response::new(ProxyBody::Full(None));
    *response.status_mut() = StatusCode::OK;
    let headers = response.headers_mut();
    headers::identity_headers(headers, &admitted.identity);
    if let Some(token) = &admitted.identity_token {
        headers.insert(crate::identity::X_KEYGATE_IDENTITY, token.clone());
    }
    headers::limits(headers, admitted.rate.as_ref(), admitted.quota.as_ref());
    headers.insert(X_REQUEST_ID, request_id.header_value());
    response
}
