//! Sending a request on to its upstream over pooled keep-alive connections
//! (plain HTTP or rustls), with the connect and response timeouts, and the
//! upstream URI rewrite.
//!
//! Bodies stream both ways: the client's body is handed to the upstream
//! connection as it arrives and the upstream's response body is returned
//! unread. Failures are classified here (connect, timeout, body limit, …)
//! so that `problem` can give each its stable code.

use std::time::Duration;

use anyhow::Context;
use http::uri::PathAndQuery;
use http::{Request, Response, Uri};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use super::body::{body_error, BodyError, LimitedBody};
use super::routing::Upstream;
use crate::config::UpstreamConfig;

/// Why an upstream exchange failed.
#[derive(Debug)]
pub enum ForwardError {
    /// No connection to the upstream could be made (refused, unreachable,
    /// DNS, TLS, connect timeout).
    Connect(hyper_util::client::legacy::Error),
    /// The upstream sent no response head within the response timeout.
    Timeout(Duration),
    /// The request body passed the route's limit while streaming.
    BodyTooLarge { limit: u64 },
    /// The client's body could not be read (the client left or sent bad
    /// chunked framing).
    ClientBody,
    /// The upstream broke the exchange after connecting.
    Upstream(hyper_util::client::legacy::Error),
}

/// The pooled client shared by every route.
#[derive(Debug, Clone)]
pub struct Forwarder {
    client: Client<HttpsConnector<HttpConnector>, LimitedBody>,
    response_timeout: Duration,
}

impl Forwarder {
    pub fn new(config: &UpstreamConfig) -> anyhow::Result<Self> {
        let mut http = HttpConnector::new();
        // https:// upstreams go through the TLS layer wrapped around this.
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(Duration::from_millis(config.connect_timeout_ms)));
        http.set_keepalive(Some(Duration::from_millis(config.pool_idle_timeout_ms)));
        let tls = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_webpki_roots(crate::tls::provider())
            .context("the TLS provider supports no safe protocol version")?
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_millis(config.pool_idle_timeout_ms))
            .pool_max_idle_per_host(config.pool_max_idle_per_host)
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .build(tls);
        Ok(Forwarder {
            client,
            response_timeout: Duration::from_millis(config.response_timeout_ms),
        })
    }

    /// Sends `request` (its URI already absolute, see `upstream_uri`) and
    /// waits for the response head.
    pub async fn send(
        &self,
        request: Request<LimitedBody>,
    ) -> Result<Response<Incoming>, ForwardError> {
        let result =
            match tokio::time::timeout(self.response_timeout, self.client.request(request)).await {
                Ok(result) => result,
                Err(_) => return Err(ForwardError::Timeout(self.response_timeout)),
            };
        result.map_err(|e| {
            if e.is_connect() {
                return ForwardError::Connect(e);
            }
            match body_error(&e) {
                Some(BodyError::TooLarge { limit }) => ForwardError::BodyTooLarge { limit: *limit },
                Some(BodyError::Client(_)) => ForwardError::ClientBody,
                None => ForwardError::Upstream(e),
            }
        })
    }
}

/// The upstream URI for a request: the upstream's scheme and authority, its
/// base path in front of the request's path, and the request's query —
/// without the `strip_param` parameter if the key was sent there.
pub fn upstream_uri(
    upstream: &Upstream,
    request: Option<&PathAndQuery>,
    strip_param: Option<&str>,
) -> Result<Uri, http::Error> {
    let (path, query) = match request {
        Some(pq) => (pq.path(), pq.query()),
        None => ("/", None),
    };
    let path_and_query = match (upstream.base_path.is_empty(), strip_param, request) {
        // The common case reuses the request's own (shared) bytes.
        (true, None, Some(pq)) => pq.clone(),
        _ => {
            let mut joined = String::with_capacity(
                upstream.base_path.len() + path.len() + query.map_or(0, str::len) + 1,
            );
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
    Uri::builder()
        .scheme(upstream.scheme.clone())
        .authority(upstream.authority.clone())
        .path_and_query(path_and_query)
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uri(base: &str, request: &str, strip: Option<&str>) -> String {
        let upstream = Upstream::parse(base).expect("upstream");
        let pq = PathAndQuery::try_from(request).expect("pq");
        upstream_uri(&upstream, Some(&pq), strip)
            .expect("uri")
            .to_string()
    }

    #[test]
    fn base_path_and_query_are_joined() {
        assert_eq!(
            uri("http://up:81", "/a/b?x=1", None),
            "http://up:81/a/b?x=1"
        );
        assert_eq!(
            uri("https://up/api/", "/a?x=1", None),
            "https://up/api/a?x=1"
        );
        assert_eq!(uri("http://up/api", "/", None), "http://up/api/");
    }

    #[test]
    fn the_key_parameter_is_dropped() {
        assert_eq!(
            uri("http://up", "/a?key=k&x=1", Some("key")),
            "http://up/a?x=1"
        );
        assert_eq!(uri("http://up", "/a?key=k", Some("key")), "http://up/a");
        assert_eq!(
            uri("http://up", "/a?x&key=k&key=k&y=2", Some("key")),
            "http://up/a?x&y=2"
        );
    }
}
