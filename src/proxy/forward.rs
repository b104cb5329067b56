//! Sending a request on to its upstream over pooled keep-alive connections
//! (plain HTTP or rustls), with the connect and response timeouts, and the
//! upstream URI rewrite.
//!
//! Connections are hyper's HTTP/1 client connections, one task each, kept in
//! the per-thread `pool`. A request that a pooled connection could not even
//! start sending (the upstream closed it while idle) is retried on another;
//! one that was sent is never retried. Bodies stream both ways: the client's
//! body is handed to the upstream connection as it arrives and the
//! upstream's response body is returned unread (trailers included). Failures
//! are classified here (connect, timeout, body limit, …) so that `problem`
//! can give each its stable code.
//!
//! Upstreams configured for HTTP/2 get one multiplexed connection per proxy
//! thread (ALPN `h2` over TLS, prior knowledge on plain TCP), shared by every
//! request of that thread and replaced when it closes. Upgrade requests
//! always get an HTTP/1.1 connection of their own that is never pooled.

use std::sync::Arc;
use std::time::{Duration, Instant};

use http::header::{HeaderValue, HOST, TE};
use http::uri::{PathAndQuery, Scheme};
use http::{request, Request, Response, Uri, Version};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::{Connection as _, HttpConnector};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tower::ServiceExt;

use super::body::{body_error, BodyError, LimitedBody};
use super::pool::{H2Sender, Pool, Sender};
use super::routing::Upstream;
use super::BoxError;
use crate::config::UpstreamConfig;

/// Why an upstream exchange failed.
#[derive(Debug)]
pub enum ForwardError {
    /// No connection to the upstream could be made (refused, unreachable,
    /// DNS, TLS, connect timeout).
    Connect(BoxError),
    /// The upstream sent no response head within the response timeout.
    Timeout(Duration),
    /// The request body passed the route's limit while streaming.
    BodyTooLarge { limit: u64 },
    /// The client sent nothing more of its body within the body read
    /// timeout.
    BodyTimeout(Duration),
    /// The client's body could not be read (the client left or sent bad
    /// chunked framing).
    ClientBody,
    /// The upstream broke the exchange after connecting (hyper's error, or
    /// the fast path's).
    Upstream(BoxError),
}

/// The connectors and pool shared by every route.
#[derive(Debug, Clone)]
pub struct Forwarder {
    /// http:// upstreams: plain TCP, without the TLS wrapper's layer on
    /// every read and write.
    http: HttpConnector,
    https: HttpsConnector<HttpConnector>,
    /// https:// upstreams spoken to over HTTP/2: offers only `h2` in ALPN.
    https_h2: HttpsConnector<HttpConnector>,
    pool: Arc<Pool>,
    response_timeout: Duration,
    connect_timeout: Duration,
}

impl Forwarder {
    pub fn new(config: &UpstreamConfig) -> anyhow::Result<Self> {
        let mut http = HttpConnector::new();
        // https:// upstreams go through the TLS layer wrapped around this.
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(Duration::from_millis(config.connect_timeout_ms)));
        http.set_keepalive(Some(Duration::from_millis(config.pool_idle_timeout_ms)));
        let tls = crate::tls::upstream_client_config(config.ca_file.as_deref())?;
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls.clone())
            .https_or_http()
            .enable_http1()
            .wrap_connector(http.clone());
        let https_h2 = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http2()
            .wrap_connector(http.clone());
        Ok(Forwarder {
            http,
            https,
            https_h2,
            pool: Arc::new(Pool::new(
                config.pool_max_idle_per_host,
                Duration::from_millis(config.pool_idle_timeout_ms),
            )),
            response_timeout: Duration::from_millis(config.response_timeout_ms),
            connect_timeout: Duration::from_millis(config.connect_timeout_ms),
        })
    }

    /// Sends `request` (origin-form URI and `Host` already set, see
    /// `upstream_uri`) to `upstream`, route `route`'s upstream, and waits
    /// for the response head. `now` is the request's start.
    pub async fn send(
        &self,
        route: usize,
        upstream: &Upstream,
        request: Request<LimitedBody>,
        now: Instant,
    ) -> Result<Response<Incoming>, ForwardError> {
        match tokio::time::timeout(self.response_timeout, self.exchange(route, upstream, request, now)).await {
            Ok(result) => result,
            Err(_) => Err(ForwardError::Timeout(self.response_timeout)),
        }
    }

    async fn exchange(
        &self,
        route: usize,
        upstream: &Upstream,
        mut request: Request<LimitedBody>,
        now: Instant,
    ) -> Result<Response<Incoming>, ForwardError> {
        if upstream.http2 {
            return self.exchange_h2(route, upstream, request).await;
        }
        loop {
            let (mut sender, pooled) = match self.pool.checkout(route, now) {
                Some(sender) => (sender, true),
                None => (self.connect(upstream, false).await?, false),
            };
            match sender.try_send_request(request).await {
                Ok(response) => {
                    self.pool.put(route, sender, now);
                    return Ok(response);
                }
                Err(mut e) => match e.take_message() {
                    // Never written: the pooled connection had closed.
                    Some(unsent) if pooled => request = unsent,
                    _ => return Err(classify(e.into_error())),
                },
            }
        }
    }

    /// The shared HTTP/2 connection to `upstream`, made if this thread has
    /// none open. A request it could not start (the connection was going
    /// away) is retried once on a new one.
    async fn exchange_h2(
        &self,
        route: usize,
        upstream: &Upstream,
        mut request: Request<LimitedBody>,
    ) -> Result<Response<Incoming>, ForwardError> {
        loop {
            let (mut sender, shared) = match self.pool.shared_h2(route) {
                Some(sender) => (sender, true),
                None => {
                    let sender = self.connect_h2(upstream).await?;
                    self.pool.share_h2(route, sender.clone());
                    (sender, false)
                }
            };
            match sender.try_send_request(request).await {
                Ok(response) => return Ok(response),
                Err(mut e) => match e.take_message() {
                    Some(unsent) if shared => {
                        self.pool.forget_h2(route);
                        request = unsent;
                    }
                    _ => return Err(classify(e.into_error())),
                },
            }
        }
    }

    /// Sends an upgrade request (see `upgrade`) on a new HTTP/1.1
    /// connection that is never pooled: after a 101 it belongs to the
    /// tunnel, after anything else it closes with its response.
    pub async fn send_upgrade(
        &self,
        upstream: &Upstream,
        request: Request<LimitedBody>,
    ) -> Result<Response<Incoming>, ForwardError> {
        let exchange = async {
            let mut sender = self.connect(upstream, true).await?;
            sender.send_request(request).await.map_err(classify)
        };
        match tokio::time::timeout(self.response_timeout, exchange).await {
            Ok(result) => result,
            Err(_) => Err(ForwardError::Timeout(self.response_timeout)),
        }
    }

    /// A new HTTP/1.1 connection to `upstream`, its task spawned on this
    /// thread; `upgrades` lets it be taken over after a 101.
    async fn connect(&self, upstream: &Upstream, upgrades: bool) -> Result<Sender, ForwardError> {
        let uri = connect_uri(upstream)?;
        if upstream.scheme == Scheme::HTTP {
            let io = self.http.clone().oneshot(uri).await.map_err(|e| ForwardError::Connect(e.into()))?;
            handshake(io, upgrades).await
        } else {
            handshake(self.https.clone().oneshot(uri).await.map_err(ForwardError::Connect)?, upgrades).await
        }
    }

    /// A new HTTP/2 connection to `upstream`, its task spawned on this thread.
    async fn connect_h2(&self, upstream: &Upstream) -> Result<H2Sender, ForwardError> {
        let uri = connect_uri(upstream)?;
        if upstream.scheme == Scheme::HTTP {
            let io = self.http.clone().oneshot(uri).await.map_err(|e| ForwardError::Connect(e.into()))?;
            handshake_h2(io).await
        } else {
            let io = self.https_h2.clone().oneshot(uri).await.map_err(ForwardError::Connect)?;
            if !io.connected().is_negotiated_h2() {
                return Err(ForwardError::Connect("the upstream did not agree to HTTP/2 (ALPN h2)".into()));
            }
            handshake_h2(io).await
        }
    }

    /// Idle upstream connections on the calling thread (tests): hyper's
    /// and the fast path's.
    pub fn idle_connections(&self) -> usize {
        self.pool.idle_here() + self.pool.idle_tcp_here()
    }

    /// The pool, whose plain shelves the fast path uses.
    pub(super) fn pool(&self) -> &Pool {
        &self.pool
    }

    /// How long an upstream may take to answer (status and headers).
    pub(super) fn response_timeout(&self) -> Duration {
        self.response_timeout
    }

    /// How long connecting to an upstream may take.
    pub(super) fn connect_timeout(&self) -> Duration {
        self.connect_timeout
    }
}

fn connect_uri(upstream: &Upstream) -> Result<Uri, ForwardError> {
    Uri::builder()
        .scheme(upstream.scheme.clone())
        .authority(upstream.authority.clone())
        .path_and_query("/")
        .build()
        .map_err(|e| ForwardError::Connect(e.into()))
}

/// HTTP/1.1 over `io`, the connection's task spawned on this thread.
async fn handshake<T>(io: T, upgrades: bool) -> Result<Sender, ForwardError>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (sender, connection) =
        hyper::client::conn::http1::handshake(io).await.map_err(|e| ForwardError::Connect(e.into()))?;
    tokio::spawn(async move {
        let ended = if upgrades { connection.with_upgrades().await } else { connection.await };
        if let Err(e) = ended {
            tracing::debug!(error = %e, "upstream connection ended with an error");
        }
    });
    Ok(sender)
}

/// HTTP/2 over `io`, the connection's task spawned on this thread.
async fn handshake_h2<T>(io: T) -> Result<H2Sender, ForwardError>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (sender, connection) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .handshake(io)
        .await
        .map_err(|e| ForwardError::Connect(e.into()))?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "upstream HTTP/2 connection ended with an error");
        }
    });
    Ok(sender)
}

/// Readies a request for an HTTP/2 upstream: the absolute URI its
/// `:scheme` and `:authority` come from instead of `Host`, and `te:
/// trailers` when the client accepts trailers (gRPC servers require it).
pub fn to_http2(parts: &mut request::Parts, upstream: &Upstream, te_trailers: bool) -> Result<(), http::Error> {
    let origin = std::mem::take(&mut parts.uri);
    parts.uri = Uri::builder()
        .scheme(upstream.scheme.clone())
        .authority(upstream.authority.clone())
        .path_and_query(origin.path_and_query().cloned().unwrap_or_else(|| PathAndQuery::from_static("/")))
        .build()?;
    parts.version = Version::HTTP_2;
    parts.headers.remove(HOST);
    if te_trailers {
        parts.headers.insert(TE, HeaderValue::from_static("trailers"));
    }
    Ok(())
}

fn classify(e: hyper::Error) -> ForwardError {
    match body_error(&e) {
        Some(BodyError::TooLarge { limit }) => ForwardError::BodyTooLarge { limit: *limit },
        Some(BodyError::Timeout(after)) => ForwardError::BodyTimeout(*after),
        Some(BodyError::Client(_)) => ForwardError::ClientBody,
        None => ForwardError::Upstream(e.into()),
    }
}

/// The origin-form URI the upstream gets: the upstream's base path in front
/// of the request's path, and the request's query — without the
/// `strip_param` parameter if the key was sent there. The common case (no
/// base path, nothing to strip) hands the request's own URI back untouched.
pub fn upstream_uri(upstream: &Upstream, request: Uri, strip_param: Option<&str>) -> Result<Uri, http::Error> {
    if upstream.base_path.is_empty()
        && strip_param.is_none()
        && request.scheme().is_none()
        && request.authority().is_none()
    {
        return Ok(request);
    }
    let (path, query) = match request.path_and_query() {
        Some(pq) => (pq.path(), pq.query()),
        None => ("/", None),
    };
    let path_and_query = match (upstream.base_path.is_empty(), strip_param, request.path_and_query()) {
        // An absolute-form request: its own path and query, shared.
        (true, None, Some(pq)) => pq.clone(),
        _ => {
            let mut joined =
                String::with_capacity(upstream.base_path.len() + path.len() + query.map_or(0, str::len) + 1);
            joined.push_str(&upstream.base_path);
            joined.push_str(path);
            let mut first = true;
            for pair in query.into_iter().flat_map(|q| q.split('&')) {
                let name = pair.split_once('=').map_or(pair, |(name, _)| name);
                if strip_param == Some(name) {
                    continue;
                }
                joined.push(if first { '?' } else { '&' });
                joined.push_str(pair);
                first = false;
            }
            PathAndQuery::try_from(joined)?
        }
    };
    Ok(Uri::from(path_and_query))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uri(base: &str, request: &str, strip: Option<&str>) -> String {
        let upstream = Upstream::parse(base).expect("upstream");
        let request: Uri = request.parse().expect("uri");
        upstream_uri(&upstream, request, strip).expect("uri").to_string()
    }

    #[test]
    fn base_path_and_query_are_joined() {
        assert_eq!(uri("http://up:81", "/a/b?x=1", None), "/a/b?x=1");
        assert_eq!(uri("https://up/api/", "/a?x=1", None), "/api/a?x=1");
        assert_eq!(uri("http://up/api", "/", None), "/api/");
        assert_eq!(uri("http://up", "http://client.example/a?x=1", None), "/a?x=1");
    }

    #[test]
    fn the_key_parameter_is_dropped() {
        assert_eq!(uri("http://up", "/a?key=k&x=1", Some("key")), "/a?x=1");
        assert_eq!(uri("http://up", "/a?key=k", Some("key")), "/a");
        assert_eq!(uri("http://up", "/a?x&key=k&key=k&y=2", Some("key")), "/a?x&y=2");
    }
}
