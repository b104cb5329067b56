//! The answer to a failed upstream exchange: which problem each failure
//! is (connect, timeout, body limit, …), counted in the upstream-error
//! metrics, with a warning at most once a second per route.

use std::net::SocketAddr;

use http::Response;

use super::forward::ForwardError;
use super::live::Live;
use super::{refuse, Proxy, ProxyBody};
use crate::contract::{ProxyCode, RequestId};
use crate::metrics::UpstreamError;

impl Proxy {
    /// Answers a failed upstream exchange. Its warning is written at most
    /// once a second per route, with the count of those held back since.
    pub(super) fn upstream_failed(
        &self,
        live: &Live,
        error: ForwardError,
        route: usize,
        request_id: &RequestId,
        peer: SocketAddr,
        grpc: bool,
    ) -> Response<ProxyBody> {
        let (problem, detail) = match &error {
            ForwardError::Connect(e) => {
                self.metrics.upstream_error(UpstreamError::Connect);
                if let Some(suppressed) = live.upstream_warnings.admit(route) {
                    let error = error_chain(&**e);
                    tracing::warn!(request_id = %request_id, route, suppressed, error, "upstream connect failed");
                }
                (ProxyCode::UpstreamUnavailable, "The upstream service could not be reached.".to_owned())
            }
            ForwardError::Timeout(after) => {
                self.metrics.upstream_error(UpstreamError::Timeout);
                if let Some(suppressed) = live.upstream_warnings.admit(route) {
                    let after_ms = after.as_millis() as u64;
                    tracing::warn!(request_id = %request_id, route, suppressed, after_ms, "upstream timed out");
                }
                (
                    ProxyCode::UpstreamTimeout,
                    format!("No answer from the upstream service within {} ms.", after.as_millis()),
                )
            }
            ForwardError::Upstream(e) => {
                self.metrics.upstream_error(UpstreamError::Broken);
                if let Some(suppressed) = live.upstream_warnings.admit(route) {
                    let error = error_chain(&**e);
                    tracing::warn!(request_id = %request_id, route, suppressed, error, "upstream exchange failed");
                }
                (ProxyCode::UpstreamUnavailable, "The upstream service broke the connection.".to_owned())
            }
            ForwardError::BodyTooLarge { limit } => {
                (ProxyCode::BodyTooLarge, format!("The request body may be at most {limit} bytes on this route."))
            }
            ForwardError::BodyTimeout(after) => {
                tracing::debug!(request_id = %request_id, after_ms = after.as_millis() as u64, "request body too slow");
                (
                    ProxyCode::BodyTimeout,
                    format!("No request body data arrived for {} ms; the connection is closed.", after.as_millis()),
                )
            }
            ForwardError::ClientBody => (ProxyCode::BadRequest, "The request body could not be read.".to_owned()),
        };
        refuse(problem, Some(&detail), request_id, peer, grpc)
    }
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
