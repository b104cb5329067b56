//! The proxy: authenticate every request against the current `KeySet`,
//! apply the head and body limits, and forward what passes to its upstream
//! with rewritten headers, streaming bodies both ways.
//!
//! The decision order is fixed: credential and key decision first (so an
//! unauthenticated client learns nothing about routes or limits), then the
//! head size (431), the route and its body limit (413), then the upstream.
//! Every answer the proxy gives itself goes through `problem::response`.
//! Keys never reach a log line: refusals log the code and request id only.

pub mod auth;
pub mod body;
pub mod forward;
pub mod headers;
pub mod problem;
pub mod routing;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::header::HOST;
use http::request::Parts;
use http::{Request, Response, Version};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::net::TcpListener;

use self::auth::{CredentialSources, FoundIn};
use self::body::LimitedBody;
use self::forward::{ForwardError, Forwarder};
use self::headers::RequestId;
use self::problem::Problem;
use self::routing::Routes;
use crate::config::Config;
use crate::keys::{Identity, KeySet};
use crate::listener::{self, ListenerOptions};
use crate::shutdown::Shutdown;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Every response body the proxy sends: the upstream's, streamed, or a
/// problem document.
pub type ProxyBody = UnsyncBoxBody<Bytes, BoxError>;

/// The proxy's state, shared by every connection.
#[derive(Debug)]
pub struct Proxy {
    keyset: Arc<ArcSwap<KeySet>>,
    credentials: CredentialSources,
    routes: Routes,
    forwarder: Forwarder,
    strip_credentials: bool,
    max_header_bytes: usize,
    listener: ListenerOptions,
}

impl Proxy {
    /// Builds the proxy from a validated config; `keyset` is the snapshot
    /// the reloader publishes into.
    pub fn new(config: &Config, keyset: Arc<ArcSwap<KeySet>>) -> anyhow::Result<Arc<Proxy>> {
        let proxy = &config.proxy;
        Ok(Arc::new(Proxy {
            keyset,
            credentials: CredentialSources::new(
                &proxy.key_headers,
                proxy.key_query_param.as_deref(),
            )?,
            routes: Routes::new(config)?,
            forwarder: Forwarder::new(&config.upstream)?,
            strip_credentials: proxy.strip_credentials,
            max_header_bytes: proxy.max_header_bytes,
            listener: ListenerOptions {
                name: "proxy",
                header_read_timeout: Duration::from_millis(proxy.header_read_timeout_ms),
                max_header_bytes: proxy.max_header_bytes,
                drain_timeout: Duration::from_millis(proxy.drain_timeout_ms),
            },
        }))
    }

    /// Serves the proxy on `listener` (HTTPS if `tls` is given) until
    /// `shutdown` fires and in-flight requests have drained.
    pub async fn serve(
        self: Arc<Self>,
        listener: TcpListener,
        tls: Option<Arc<rustls::ServerConfig>>,
        shutdown: Shutdown,
    ) {
        let options = self.listener.clone();
        let make_service = move |peer: SocketAddr, tls: bool| {
            let proxy = Arc::clone(&self);
            hyper::service::service_fn(move |request| {
                let proxy = Arc::clone(&proxy);
                async move { Ok::<_, Infallible>(proxy.handle(request, peer, tls).await) }
            })
        };
        listener::serve(listener, tls, make_service, options, shutdown).await;
    }

    /// Decides on one request and answers it, from the upstream or with a
    /// problem.
    pub async fn handle(
        &self,
        request: Request<Incoming>,
        peer: SocketAddr,
        tls: bool,
    ) -> Response<ProxyBody> {
        let (mut parts, body) = request.into_parts();
        let request_id = RequestId::from_headers(&parts.headers);
        let (identity, found_in) = match self.authenticate(&parts) {
            Ok(decision) => decision,
            Err((problem, detail)) => return refuse(problem, detail, &request_id, peer),
        };
        if head_size(&parts) > self.max_header_bytes {
            let detail = format!(
                "The request head may be at most {} bytes.",
                self.max_header_bytes
            );
            return refuse(Problem::HeaderTooLarge, Some(&detail), &request_id, peer);
        }
        let host = parts
            .headers
            .get(HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| parts.uri.host());
        let target = self.routes.resolve(parts.uri.path(), host);
        if let Err(limit) = body::check_content_length(&parts.headers, target.body_limit) {
            let detail = format!("The request body may be at most {limit} bytes on this route.");
            return refuse(Problem::BodyTooLarge, Some(&detail), &request_id, peer);
        }

        let strip_param = if self.strip_credentials {
            self.credentials.query_param_to_strip(found_in)
        } else {
            None
        };
        parts.uri =
            match forward::upstream_uri(target.upstream, parts.uri.path_and_query(), strip_param) {
                Ok(uri) => uri,
                Err(_) => return refuse(Problem::BadRequest, None, &request_id, peer),
            };
        if self.strip_credentials {
            self.credentials.strip(&mut parts.headers, found_in);
        }
        headers::prepare_request(
            &mut parts.headers,
            &identity,
            peer.ip(),
            tls,
            &request_id,
            &target.upstream.host,
        );
        // The upstream connection is HTTP/1.1 whatever the client spoke.
        parts.version = Version::HTTP_11;
        let upstream_request =
            Request::from_parts(parts, LimitedBody::new(body, target.body_limit));

        match self.forwarder.send(upstream_request).await {
            Ok(response) => {
                let (mut parts, body) = response.into_parts();
                headers::prepare_response(&mut parts.headers, &request_id);
                Response::from_parts(parts, body.map_err(BoxError::from).boxed_unsync())
            }
            Err(error) => self.upstream_failed(error, &request_id, peer),
        }
    }

    /// The credential and the key decision. The snapshot guard lives only
    /// inside this synchronous call, never across an await.
    fn authenticate(&self, parts: &Parts) -> Result<(Identity, FoundIn), (Problem, Option<&str>)> {
        let credential = self
            .credentials
            .extract(&parts.headers, &parts.uri)
            .map_err(|e| {
                let detail = match e {
                    auth::CredentialError::Missing => Some(self.credentials.missing_detail()),
                    auth::CredentialError::Conflicting => {
                        Some("The request carries two different API keys.")
                    }
                    auth::CredentialError::Empty => Some("The API key is empty."),
                };
                (Problem::Refused(e.refusal()), detail)
            })?;
        let identity = self
            .keyset
            .load()
            .check(credential.key, &parts.method, now_ms())
            .map_err(|refusal| (Problem::Refused(refusal), None))?;
        Ok((identity, credential.found_in))
    }

    fn upstream_failed(
        &self,
        error: ForwardError,
        request_id: &RequestId,
        peer: SocketAddr,
    ) -> Response<ProxyBody> {
        let (problem, detail) = match &error {
            ForwardError::Connect(e) => {
                tracing::warn!(request_id = %request_id, error = %error_chain(e), "upstream connect failed");
                (
                    Problem::UpstreamUnavailable,
                    "The upstream service could not be reached.".to_owned(),
                )
            }
            ForwardError::Timeout(after) => {
                tracing::warn!(request_id = %request_id, after_ms = after.as_millis() as u64, "upstream timed out");
                (
                    Problem::UpstreamTimeout,
                    format!(
                        "No answer from the upstream service within {} ms.",
                        after.as_millis()
                    ),
                )
            }
            ForwardError::Upstream(e) => {
                tracing::warn!(request_id = %request_id, error = %error_chain(e), "upstream exchange failed");
                (
                    Problem::UpstreamUnavailable,
                    "The upstream service broke the connection.".to_owned(),
                )
            }
            ForwardError::BodyTooLarge { limit } => (
                Problem::BodyTooLarge,
                format!("The request body may be at most {limit} bytes on this route."),
            ),
            ForwardError::ClientBody => (
                Problem::BadRequest,
                "The request body could not be read.".to_owned(),
            ),
        };
        refuse(problem, Some(&detail), request_id, peer)
    }
}

/// Logs a problem at debug (code and request id, never the credential) and
/// builds its response.
fn refuse(
    problem: Problem,
    detail: Option<&str>,
    request_id: &RequestId,
    peer: SocketAddr,
) -> Response<ProxyBody> {
    tracing::debug!(code = problem.code(), request_id = %request_id, peer = %peer.ip(), "request refused");
    problem::response(problem, detail, request_id)
}

/// The request head's size as the limit counts it: method, target and
/// header names and values, without framing.
fn head_size(parts: &Parts) -> usize {
    let target = parts.uri.path_and_query().map_or(0, |pq| pq.as_str().len())
        + parts.uri.authority().map_or(0, |a| a.as_str().len());
    let headers: usize = parts
        .headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum();
    parts.method.as_str().len() + target + headers
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// An error and its causes on one line (hyper's top-level messages alone
/// say little, e.g. "client error (Connect)").
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}
