//! The one place where a refusal or a proxy error becomes an HTTP answer:
//! `application/problem+json` (RFC 9457) with the stable `code` of
//! DESIGN.md §3 and the request id.
//!
//! Nothing else in the proxy builds an error response. A problem never
//! names the key, the credential header's value or the upstream's address.

use http::header::{HeaderValue, CACHE_CONTROL, CONNECTION, CONTENT_TYPE, WWW_AUTHENTICATE};
use http::{Response, StatusCode};
use serde::Serialize;

use super::headers::{RequestId, X_REQUEST_ID};
use super::ProxyBody;
use crate::keys::Refusal;

/// Where the `type` URIs of problems live; the code is appended.
pub const TYPE_BASE: &str = "https://keygate.dev/problems/";

/// Everything the proxy answers itself instead of the upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Problem {
    /// The key decision said no (401, 403, 429).
    Refused(Refusal),
    /// The request head is larger than `proxy.max_header_bytes`.
    HeaderTooLarge,
    /// The request body is larger than the route allows.
    BodyTooLarge,
    /// The request could not be read or forwarded as sent.
    BadRequest,
    /// The upstream could not be reached or broke the exchange.
    UpstreamUnavailable,
    /// The upstream did not answer within `upstream.response_timeout_ms`.
    UpstreamTimeout,
}

impl From<Refusal> for Problem {
    fn from(refusal: Refusal) -> Self {
        Problem::Refused(refusal)
    }
}

impl Problem {
    /// The stable machine-readable code.
    pub fn code(self) -> &'static str {
        match self {
            Problem::Refused(r) => r.code(),
            Problem::HeaderTooLarge => "header_too_large",
            Problem::BodyTooLarge => "body_too_large",
            Problem::BadRequest => "bad_request",
            Problem::UpstreamUnavailable => "upstream_unavailable",
            Problem::UpstreamTimeout => "upstream_timeout",
        }
    }

    pub fn status(self) -> StatusCode {
        match self {
            Problem::Refused(r) => r.status(),
            Problem::HeaderTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Problem::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Problem::BadRequest => StatusCode::BAD_REQUEST,
            Problem::UpstreamUnavailable => StatusCode::BAD_GATEWAY,
            Problem::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            Problem::Refused(r) => r.title(),
            Problem::HeaderTooLarge => "The request headers are too large",
            Problem::BodyTooLarge => "The request body is too large",
            Problem::BadRequest => "The request could not be forwarded as sent",
            Problem::UpstreamUnavailable => "The upstream service is unavailable",
            Problem::UpstreamTimeout => "The upstream service did not answer in time",
        }
    }
}

#[derive(Serialize)]
struct Document<'a> {
    #[serde(rename = "type")]
    kind: String,
    title: &'static str,
    status: u16,
    code: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<&'a str>,
    request_id: &'a str,
}

/// The response for `problem`, with an optional human-readable `detail`.
///
/// 401s carry `WWW-Authenticate: Bearer realm="keygate"` (RFC 6750 §3),
/// with `error="invalid_token"` when a credential was sent but refused.
/// A 413 closes the connection: the client may still be sending a body
/// that nobody will read.
pub fn response(problem: Problem, detail: Option<&str>, request_id: &RequestId) -> Response<ProxyBody> {
    let code = problem.code();
    let status = problem.status();
    let document = Document {
        kind: format!("{TYPE_BASE}{code}"),
        title: problem.title(),
        status: status.as_u16(),
        code,
        detail,
        request_id: request_id.as_str(),
    };
    // Serializing strings and integers cannot fail; the fallback keeps the
    // status and code meaningful even so.
    let body = serde_json::to_vec(&document).unwrap_or_else(|_| format!("{{\"code\":\"{code}\"}}").into_bytes());
    let mut response = Response::new(ProxyBody::full(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(X_REQUEST_ID, request_id.header_value());
    match problem {
        Problem::Refused(Refusal::MissingKey) => {
            headers.insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"keygate\""));
        }
        Problem::Refused(_) if status == StatusCode::UNAUTHORIZED => {
            headers.insert(
                WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"keygate\", error=\"invalid_token\""),
            );
        }
        Problem::BodyTooLarge => {
            headers.insert(CONNECTION, HeaderValue::from_static("close"));
        }
        _ => {}
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    async fn json(response: Response<ProxyBody>) -> serde_json::Value {
        let bytes = response.into_body().collect().await.expect("body").to_bytes();
        serde_json::from_slice(&bytes).expect("json")
    }

    #[tokio::test]
    async fn document_has_the_rfc_9457_fields() {
        let id = RequestId::generate();
        let response = response(Problem::Refused(Refusal::KeyRevoked), None, &id);
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        let auth = response.headers().get(WWW_AUTHENTICATE).expect("challenge");
        assert!(auth.to_str().expect("ascii").contains("invalid_token"));
        let doc = json(response).await;
        assert_eq!(doc["type"], "https://keygate.dev/problems/key_revoked");
        assert_eq!(doc["status"], 401);
        assert_eq!(doc["code"], "key_revoked");
        assert_eq!(doc["request_id"], id.as_str());
        assert!(doc.get("detail").is_none());
    }

    #[tokio::test]
    async fn non_401_problems_have_no_challenge() {
        let id = RequestId::generate();
        let response = response(Problem::UpstreamTimeout, Some("after 30000 ms"), &id);
        assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);
        assert!(response.headers().get(WWW_AUTHENTICATE).is_none());
        assert_eq!(json(response).await["detail"], "after 30000 ms");
    }
}
