//! The proxy: authenticate every request against the current `KeySet`,
//! apply the head and body limits, and forward what passes to its upstream
//! with rewritten headers, streaming bodies both ways.
//!
//! The decision order is fixed: credential and key decision first (so an
//! unauthenticated client learns nothing about routes or limits), then the
//! head size (431), the route and its body limit (413), then the upstream.
//! Every answer the proxy gives itself goes through `problem::answer`
//! (problem+json, or a gRPC status for gRPC requests). HTTP/1.1 upgrades
//! (WebSocket) are decided here like any request, then tunnelled by
//! `upgrade`.
//! Keys never reach a log line: refusals log the code and request id only.
//! Traces and the access log are `telemetry`'s: the proxy hands it a
//! `Record` to fill only when one of them is on.
//!
//! What a configuration reload may change lives in `live::Live`, behind one
//! `ArcSwap`: each request loads it once (a guard, not a new `Arc`) and
//! decides and forwards with that one, so a reload applies from the next
//! request on and never to half of one.

pub mod auth;
pub mod body;
pub mod client_headers;
pub mod client_ip;
mod decision;
mod failed;
pub mod fast;
pub mod fields;
pub mod forward;
pub mod guard;
pub mod headers;
pub mod live;
pub mod overrides;
pub mod pool;
pub mod problem;
pub mod routing;
pub mod upgrade;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use http::request::Parts;
use http::{Request, Response, StatusCode, Version};
use hyper::body::Incoming;
use tokio::net::TcpListener;

use self::auth::FoundIn;
use self::body::LimitedBody;
use self::decision::request_host;
use self::fields::{Fields, View};
use self::headers::Forwarding;
use self::live::Live;
use crate::config::Config;
use crate::contract::{ProxyCode, RequestId};
use crate::identity::{Issuer, X_KEYGATE_IDENTITY};
use crate::keys::{Identity, KeySet, RateInfo, Refusal};
use crate::listener::{self, ListenerOptions};
use crate::metrics::{Metrics, UpstreamError};
use crate::quota::QuotaInfo;
use crate::shutdown::Shutdown;
use crate::telemetry::{Record, Telemetry};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

pub use self::body::ProxyBody;

/// The proxy's state, shared by every connection.
#[derive(Debug)]
pub struct Proxy {
    keyset: Arc<ArcSwap<KeySet>>,
    /// Everything a configuration reload replaces.
    live: ArcSwap<Live>,
    /// Also the listener's limit, which is fixed at start: not reloaded.
    max_header_bytes: usize,
    listener: ListenerOptions,
    metrics: Arc<Metrics>,
    /// Traces and the access log; `None` when both are off.
    telemetry: Option<Telemetry>,
    /// Signs `X-Keygate-Identity` (`proxy.identity_token`); `None` when off,
    /// which costs the request path this one check.
    identity: Option<Arc<Issuer>>,
    /// `proxy.fast_http1`: plain HTTP/1.1 connections take the fast path.
    fast_http1: bool,
}

/// What the proxy knows of the connection a request came on.
#[derive(Debug)]
pub struct ClientConn {
    pub peer: SocketAddr,
    pub tls: bool,
    forwarding: Forwarding,
}

impl ClientConn {
    /// `trusted`: the peer is one of `proxy.trusted_proxies`.
    pub fn new(peer: SocketAddr, tls: bool, trusted: bool) -> Self {
        ClientConn { peer, tls, forwarding: Forwarding::new(peer.ip(), tls, trusted) }
    }

    /// The rewrite of a request on this connection, allowed for `identity`,
    /// on its way to `upstream`.
    fn rewrite<'a>(
        &'a self,
        live: &'a Live,
        identity: &'a Identity,
        request_id: &'a RequestId,
        upstream: &'a routing::Upstream,
    ) -> headers::Rewrite<'a> {
        let (forwarding, upstream_host, client_headers) = (&self.forwarding, &upstream.host, &live.client_headers);
        headers::Rewrite { identity, forwarding, request_id, upstream_host, client_headers }
    }
}

/// A request the proxy's decision let through, and who made it.
#[derive(Debug)]
pub struct Admitted {
    pub identity: Identity,
    /// Where the credential was, to strip it before forwarding.
    pub found_in: FoundIn,
    pub rate: Option<RateInfo>,
    /// The signed identity token, with `proxy.identity_token`.
    pub identity_token: Option<http::HeaderValue>,
    /// The tightest quota after this request's spending.
    pub quota: Option<QuotaInfo>,
}

/// A request the proxy let through (`Proxy::decide_forward`): its upstream
/// URI; its headers are still as the client sent them.
struct Decided<'a> {
    uri: http::Uri,
    target: routing::Target<'a>,
    request_id: RequestId,
    grpc: bool,
    admitted: Admitted,
}

/// A request ready to go upstream (`Proxy::prepare_forward`).
struct Prepared<'a> {
    parts: Parts,
    target: routing::Target<'a>,
    request_id: RequestId,
    grpc: bool,
    rate: Option<RateInfo>,
    quota: Option<QuotaInfo>,
    upgrade: Option<upgrade::ClientUpgrade>,
}

/// A refusal from `Proxy::admit`: the route index (for metrics) and the answer.
pub type RefusedAnswer = (usize, Response<ProxyBody>);

/// A refusal, with what its response needs beyond the problem itself.
struct Refused {
    problem: ProxyCode,
    detail: Option<&'static str>,
    rate: Option<RateInfo>,
    /// Boxed: a quota's state is large, and only quota refusals carry it.
    quota: Option<Box<QuotaInfo>>,
}

impl Proxy {
    /// Builds the proxy from a validated config; `keyset` is the snapshot
    /// the reloader publishes into.
    pub fn new(config: &Config, keyset: Arc<ArcSwap<KeySet>>, metrics: Arc<Metrics>) -> anyhow::Result<Arc<Proxy>> {
        Self::with_identity(config, keyset, metrics, None)
    }

    /// `new`, signing identity tokens with `identity` (`proxy.identity_token`).
    pub fn with_identity(
        config: &Config,
        keyset: Arc<ArcSwap<KeySet>>,
        metrics: Arc<Metrics>,
        identity: Option<Arc<Issuer>>,
    ) -> anyhow::Result<Arc<Proxy>> {
        let proxy = &config.proxy;
        let settings = config.settings()?;
        Ok(Arc::new(Proxy {
            keyset,
            live: ArcSwap::from_pointee(Live::build(config, &settings, None, &metrics)?),
            max_header_bytes: proxy.max_header_bytes,
            listener: ListenerOptions {
                name: "proxy",
                header_read_timeout: Duration::from_millis(proxy.header_read_timeout_ms),
                max_header_bytes: proxy.max_header_bytes,
                drain_timeout: Duration::from_millis(proxy.drain_timeout_ms),
                http2_cleartext: proxy.http2_cleartext,
                strict_http1: Some(problem::framing_refusal),
                connections: listener::connection_limit(proxy.max_connections),
            },
            telemetry: Telemetry::new(config, &metrics)?,
            metrics,
            identity,
            fast_http1: proxy.fast_http1,
        }))
    }

    /// The identity token issuer, when `proxy.identity_token` is on.
    pub fn identity(&self) -> Option<&Arc<Issuer>> {
        self.identity.as_ref()
    }

    /// The state `config` calls for, built off the request path and sharing
    /// what did not change with the running one; `reconfigure` publishes it.
    pub fn prepare(&self, config: &Config) -> anyhow::Result<Live> {
        let settings = config.settings()?;
        Live::build(config, &settings, Some(&self.live.load()), &self.metrics)
    }

    /// Publishes `next`: requests that start from now on use it; those under
    /// way finish with the state they started with. Returns the old state.
    pub fn reconfigure(&self, next: Live) -> Arc<Live> {
        self.live.swap(Arc::new(next))
    }

    /// `limits.quota_block`, from a configuration reload.
    pub fn set_quota_block(&self, block: u64) {
        if let Some(book) = self.keyset.load().quotas() {
            book.set_block(block);
        }
    }

    /// The state requests start with now.
    pub fn live(&self) -> Arc<Live> {
        self.live.load_full()
    }

    /// Serves the proxy on `listener` (HTTPS if `tls` is given) until
    /// `shutdown` fires and in-flight requests have drained, with the
    /// failed-auth guard's sweeper alongside.
    pub async fn serve(
        self: Arc<Self>,
        listener: TcpListener,
        tls: Option<Arc<rustls::ServerConfig>>,
        shutdown: Shutdown,
    ) {
        let background = self.spawn_sweeper(shutdown.clone());
        self.serve_listener(listener, tls, shutdown).await;
        let _ = background.await;
    }

    /// The proxy's background work, once per process however many
    /// listeners serve it: the failed-auth guard's periodic sweep (of
    /// whichever guard the live state holds at the time) and the span
    /// exporter. The handle ends when both have.
    pub fn spawn_sweeper(self: &Arc<Self>, shutdown: Shutdown) -> tokio::task::JoinHandle<()> {
        let this = Arc::clone(self);
        let exporter = self.telemetry.as_ref().and_then(|t| t.spawn(shutdown.clone()));
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(30)) => this.live.load().guard.sweep(),
                    _ = shutdown.wait() => break,
                }
            }
            if let Some(exporter) = exporter {
                let _ = exporter.await;
            }
        })
    }

    /// Serves connections from `listener` and nothing else: one of several
    /// listeners, one per runtime thread (see `server::ProxyRuntime`).
    pub async fn serve_listener(
        self: Arc<Self>,
        listener: TcpListener,
        tls: Option<Arc<rustls::ServerConfig>>,
        shutdown: Shutdown,
    ) {
        let options = self.listener.clone();
        let fast: Option<listener::FastPath> = match (self.fast_http1, &tls) {
            (true, None) => {
                let proxy = Arc::clone(&self);
                Some(Arc::new(move |stream, peer, read, drain| {
                    Box::pin(Arc::clone(&proxy).serve_fast(stream, peer, read, drain))
                }))
            }
            _ => None,
        };
        let make_service = move |peer: SocketAddr, tls: bool| {
            // Decided per connection: one open across a reload keeps it.
            let trusted = client_ip::is_trusted(peer.ip(), &self.live.load().trusted_proxies);
            let conn = Arc::new((Arc::clone(&self), ClientConn::new(peer, tls, trusted)));
            hyper::service::service_fn(move |request| {
                let conn = Arc::clone(&conn);
                async move { Ok::<_, Infallible>(conn.0.handle(request, &conn.1).await) }
            })
        };
        listener::serve_with(listener, tls, make_service, fast, options, shutdown).await;
    }

    /// Decides on one request and answers it, from the upstream or with a
    /// problem, and records its duration.
    pub async fn handle(&self, request: Request<Incoming>, conn: &ClientConn) -> Response<ProxyBody> {
        let started = Instant::now();
        let live = self.live.load();
        let Some(telemetry) = &self.telemetry else {
            let (route, response) = self.answer(&live, request, conn, started, None).await;
            live.durations.observe(route, response.status().as_u16(), started.elapsed());
            return response;
        };
        let mut record = telemetry.begin(&request);
        let (route, response) = self.answer(&live, request, conn, started, Some(&mut record)).await;
        let elapsed = started.elapsed();
        live.durations.observe(route, response.status().as_u16(), elapsed);
        telemetry.finish(record, &response, elapsed);
        response
    }

    /// `record`: what telemetry wants to know, when it is on.
    async fn answer(
        &self,
        live: &Live,
        request: Request<Incoming>,
        conn: &ClientConn,
        started: Instant,
        mut record: Option<&mut Record>,
    ) -> (usize, Response<ProxyBody>) {
        let peer = conn.peer;
        let (parts, body) = request.into_parts();
        let Prepared { parts, target, request_id, grpc, rate, quota, upgrade } =
            match self.prepare_forward(live, parts, conn, record.as_deref_mut()) {
                Ok(prepared) => prepared,
                Err(refused) => return *refused,
            };
        let route = target.index;
        let upstream_request =
            Request::from_parts(parts, LimitedBody::new(body, target.body_limit, live.body_read_timeout));

        let sent = match upgrade {
            None => live.forwarder.send(route, target.upstream, upstream_request, started).await,
            Some(_) => live.forwarder.send_upgrade(target.upstream, upstream_request).await,
        };
        if let Some(record) = record {
            record.upstream_answered(sent.as_ref().ok().map(|r| r.status().as_u16()));
        }
        let response = match sent {
            Ok(response) => {
                let (mut parts, body) = response.into_parts();
                match upgrade {
                    Some(client) if parts.status == StatusCode::SWITCHING_PROTOCOLS => {
                        let switched = upgrade::switch(client, &mut parts, &request_id, |headers| {
                            headers::prepare_response(headers, &request_id)
                        });
                        if switched.is_err() {
                            self.metrics.upstream_error(UpstreamError::Broken);
                            let detail = "The upstream switched protocols without a usable upgrade.";
                            return (
                                route,
                                refuse(ProxyCode::UpstreamUnavailable, Some(detail), &request_id, peer, grpc),
                            );
                        }
                    }
                    _ => headers::prepare_response(&mut parts.headers, &request_id),
                }
                headers::limits(&mut parts.headers, rate.as_ref(), quota.as_ref());
                // Answer as HTTP/1.1 even to an HTTP/1.0 upstream, so the
                // client connection stays keep-alive.
                parts.version = Version::HTTP_11;
                Response::from_parts(parts, ProxyBody::Upstream(body))
            }
            Err(error) => self.upstream_failed(live, error, route, &request_id, peer, grpc),
        };
        (route, response)
    }

    /// The decision on a request and where it goes, for hyper's path and
    /// the fast path alike: the key (`admit`), the request id, the upstream
    /// URI (with the credential's query parameter dropped). The headers are
    /// not touched yet: hyper's path rewrites them (`prepare_forward`), the
    /// fast path writes the rewritten head as bytes (`fast::rewrite`).
    fn decide_forward<'a, F: Fields>(
        &self,
        live: &'a Live,
        head: View<'_, F>,
        conn: &ClientConn,
        record: Option<&mut Record>,
    ) -> Result<Decided<'a>, Box<RefusedAnswer>> {
        let peer = conn.peer;
        let request_id = head.fields.request_id();
        let grpc = problem::is_grpc(head.fields);
        let (admitted, target) = self.admit(live, head, peer, &request_id, grpc, record)?;
        let found_in = admitted.found_in;
        let strip_param = if live.strip_credentials { live.credentials.query_param_to_strip(found_in) } else { None };
        let uri = match forward::upstream_uri(target.upstream, head.uri.clone(), strip_param) {
            Ok(uri) => uri,
            Err(_) => {
                let answer = refuse(ProxyCode::BadRequest, None, &request_id, peer, grpc);
                return Err(Box::new((target.index, answer)));
            }
        };
        Ok(Decided { uri, target, request_id, grpc, admitted })
    }

    /// Everything before a request goes upstream on hyper's path: the
    /// decision (`decide_forward`), the credential stripped, the upgrade
    /// set aside, the request headers rewritten (`headers::prepare_request`,
    /// the identity token, the trace context) and the version the upstream
    /// gets.
    fn prepare_forward<'a>(
        &self,
        live: &'a Live,
        mut parts: Parts,
        conn: &ClientConn,
        mut record: Option<&mut Record>,
    ) -> Result<Prepared<'a>, Box<RefusedAnswer>> {
        let peer = conn.peer;
        let Decided { uri, target, request_id, grpc, admitted } =
            self.decide_forward(live, View::of(&parts), conn, record.as_deref_mut())?;
        parts.uri = uri;
        let Admitted { identity, found_in, rate, quota, identity_token } = admitted;
        let route = target.index;
        if live.strip_credentials {
            live.credentials.strip(&mut parts.headers, found_in);
        }
        let upgrade = upgrade::requested(&mut parts);
        // Upgrades always go over HTTP/1.1; gRPC needs `te: trailers` on
        // HTTP/2, which `prepare_request` drops with the other hop-by-hop
        // headers.
        let http2 = target.upstream.http2 && upgrade.is_none();
        let te_trailers = http2 && headers::te_trailers(&parts.headers);
        headers::prepare_request(&mut parts.headers, &conn.rewrite(live, &identity, &request_id, target.upstream));
        if let Some(token) = identity_token {
            parts.headers.insert(X_KEYGATE_IDENTITY, token);
        }
        if let Some(upgrade) = &upgrade {
            upgrade.restore_headers(&mut parts.headers);
        }
        if let Some(record) = record {
            record.forwarding(&mut parts.headers);
        }
        if http2 {
            if forward::to_http2(&mut parts, target.upstream, te_trailers).is_err() {
                return Err(Box::new((route, refuse(ProxyCode::BadRequest, None, &request_id, peer, grpc))));
            }
        } else {
            // The upstream connection is HTTP/1.1 whatever the client spoke.
            parts.version = Version::HTTP_11;
        }
        Ok(Prepared { parts, target, request_id, grpc, rate, quota, upgrade })
    }

    /// The proxy's whole decision on a request head, before anything is
    /// forwarded: the failed-auth guard, the credential and the key
    /// decision (counted, like every decision), the head size and the
    /// route's body limit. The proxy and forward auth (`crate::authz`) both
    /// decide through here, so the two cannot drift apart. A refusal comes
    /// back as its answer, with the route index for metrics (boxed: a
    /// refusal allocates its body anyway, and an allowed request moves less).
    ///
    /// `live` is the state the request loaded once (`Proxy::live_guard`);
    /// `record`, telemetry's, learns the identity as soon as the key
    /// decision allows it, so a request refused after that (431, 413) is
    /// still logged with its key.
    pub fn admit<'a, F: Fields>(
        &self,
        live: &'a Live,
        head: View<'_, F>,
        peer: SocketAddr,
        request_id: &RequestId,
        grpc: bool,
        record: Option<&mut Record>,
    ) -> Result<(Admitted, routing::Target<'a>), Box<RefusedAnswer>> {
        // An unknown client (an unreadable forwarded entry) passes no
        // address restriction; the guard then counts its failures against
        // the peer that forwarded it.
        let client = client_ip::resolve(peer.ip(), head.fields, &live.trusted_proxies);
        let guarded = client.unwrap_or(peer.ip());
        if let Some(wait) = live.guard.blocked_for(guarded) {
            self.metrics.auth_failure(Refusal::RateLimited);
            let mut response = refuse(
                ProxyCode::Refused(Refusal::RateLimited),
                Some("Too many failed authentications from this address."),
                request_id,
                peer,
                grpc,
            );
            headers::retry_after(response.headers_mut(), wait);
            return Err(Box::new((0, response)));
        }
        // The route is known before the key decision (its `cost` is what
        // the decision spends), but refusals about it come after.
        let host = request_host(head);
        let target = live.routes.resolve(head.uri.path(), host);
        let admitted = match self.authenticate(live, head, client, host, target.cost) {
            Ok(admitted) => admitted,
            Err(refused) => return Err(Box::new((0, self.refused(live, refused, guarded, request_id, peer, grpc)))),
        };
        if let Some(record) = record {
            record.identity(&admitted.identity);
        }
        if head.head_size() > self.max_header_bytes {
            let detail = format!("The request head may be at most {} bytes.", self.max_header_bytes);
            return Err(Box::new((0, refuse(ProxyCode::HeaderTooLarge, Some(&detail), request_id, peer, grpc))));
        }
        if let Err(limit) = body::check_content_length(head.fields, target.body_limit) {
            let detail = format!("The request body may be at most {limit} bytes on this route.");
            return Err(Box::new((
                target.index,
                refuse(ProxyCode::BodyTooLarge, Some(&detail), request_id, peer, grpc),
            )));
        }
        Ok((admitted, target))
    }

    /// The state a request outside the proxy's own listener (forward auth)
    /// decides with: loaded once per request and passed to `admit`,
    /// `trusts` and `observe`, so a reload never applies to half of one.
    pub fn live_guard(&self) -> arc_swap::Guard<Arc<Live>> {
        self.live.load()
    }

    /// Whether `peer` is one of `live`'s `proxy.trusted_proxies`, whose
    /// forwarded headers are believed.
    pub fn trusts(live: &Live, peer: std::net::IpAddr) -> bool {
        client_ip::is_trusted(peer, &live.trusted_proxies)
    }

    /// The proxy listener's options (timeouts, head limits), which forward
    /// auth shares.
    pub fn listener_options(&self) -> &ListenerOptions {
        &self.listener
    }

    /// Records one answered request in the request metrics (`live`'s
    /// per-route durations, as `handle` does).
    pub fn observe(live: &Live, route: usize, status: StatusCode, started: Instant) {
        live.durations.observe(route, status.as_u16(), started.elapsed());
    }

    /// Answers a refused request; failed authentications count against the
    /// client's address.
    fn refused(
        &self,
        live: &Live,
        refused: Refused,
        client: std::net::IpAddr,
        request_id: &RequestId,
        peer: SocketAddr,
        grpc: bool,
    ) -> Response<ProxyBody> {
        if let ProxyCode::Refused(refusal) = refused.problem {
            self.metrics.auth_failure(refusal);
            if refusal.status() == http::StatusCode::UNAUTHORIZED && refusal != Refusal::MissingKey {
                live.guard.failure(client);
            }
        }
        let detail = match (refused.problem, refused.detail) {
            (ProxyCode::Refused(Refusal::MissingKey), _) => Some(live.credentials.missing_detail()),
            (_, detail) => detail,
        };
        let mut response = refuse(refused.problem, detail, request_id, peer, grpc);
        match (refused.problem, refused.quota) {
            // The quota refused: its numbers are the answer's.
            (ProxyCode::Refused(Refusal::QuotaExceeded), Some(quota)) => {
                headers::quota_refusal(response.headers_mut(), &quota);
            }
            _ => {
                if let Some(rate) = refused.rate {
                    headers::rate_limit(response.headers_mut(), &rate);
                }
            }
        }
        response
    }
}

/// Logs a problem at debug (code and request id, never the credential) and
/// builds its response (a gRPC status when `grpc`).
fn refuse(
    problem: ProxyCode,
    detail: Option<&str>,
    request_id: &RequestId,
    peer: SocketAddr,
    grpc: bool,
) -> Response<ProxyBody> {
    tracing::debug!(code = problem.code(), request_id = %request_id, peer = %peer.ip(), "request refused");
    let mut response = problem::answer(problem, detail, request_id, grpc);
    // What `telemetry` reports as the request's decision.
    response.extensions_mut().insert(problem);
    response
}
