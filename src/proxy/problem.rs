//! The one place where a refusal or a proxy error becomes an HTTP answer:
//! `application/problem+json` (RFC 9457) with the stable `code` of
//! docs/proxy.md#refusals and the request id.
//!
//! A gRPC request (`content-type: application/grpc…`) gets the same
//! refusal as a gRPC "trailers-only" answer instead: HTTP 200, the status in
//! `grpc-status` (`ProxyCode::grpc_status` is the one mapping) and the code in
//! `grpc-message`, because gRPC clients read those and not the HTTP status.
//!
//! Nothing else in the proxy builds an error response. A problem never
//! names the key, the credential header's value or the upstream's address.

use std::fmt::Write as _;

use http::header::{HeaderName, HeaderValue, CACHE_CONTROL, CONNECTION, CONTENT_TYPE, WWW_AUTHENTICATE};
use http::{Response, StatusCode};

use super::fields::Fields;
use super::ProxyBody;
use crate::contract::{self, ProxyCode, RequestId, PROBLEM_JSON, X_REQUEST_ID};
use crate::keys::Refusal;

/// gRPC status codes (grpc/doc/statuscodes.md) the proxy answers with.
pub mod grpc {
    pub const INVALID_ARGUMENT: u8 = 3;
    pub const DEADLINE_EXCEEDED: u8 = 4;
    pub const PERMISSION_DENIED: u8 = 7;
    pub const RESOURCE_EXHAUSTED: u8 = 8;
    pub const UNAVAILABLE: u8 = 14;
    pub const UNAUTHENTICATED: u8 = 16;
}

pub const GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");
pub const GRPC_MESSAGE: HeaderName = HeaderName::from_static("grpc-message");

impl ProxyCode {
    /// The gRPC status a gRPC client gets for this problem.
    pub fn grpc_status(self) -> u8 {
        match self {
            ProxyCode::Refused(r) => match r.status() {
                StatusCode::UNAUTHORIZED => grpc::UNAUTHENTICATED,
                StatusCode::FORBIDDEN => grpc::PERMISSION_DENIED,
                // 429: rate limited, or blocked by the failed-auth guard.
                _ => grpc::RESOURCE_EXHAUSTED,
            },
            ProxyCode::HeaderTooLarge | ProxyCode::BodyTooLarge => grpc::RESOURCE_EXHAUSTED,
            ProxyCode::BadRequest => grpc::INVALID_ARGUMENT,
            ProxyCode::UpstreamUnavailable => grpc::UNAVAILABLE,
            ProxyCode::UpstreamTimeout | ProxyCode::BodyTimeout => grpc::DEADLINE_EXCEEDED,
        }
    }
}

/// Whether a request is gRPC (`application/grpc`, `application/grpc+proto`,
/// `application/grpc-web`, …), whose refusals are then `grpc_response`s.
pub fn is_grpc<F: Fields + ?Sized>(headers: &F) -> bool {
    const GRPC: &[u8] = b"application/grpc";
    headers.first(&CONTENT_TYPE).is_some_and(|v| v.get(..GRPC.len()).is_some_and(|p| p.eq_ignore_ascii_case(GRPC)))
}

/// The answer for `problem`: problem+json, or a gRPC trailers-only
/// response when the request is gRPC.
pub fn answer(problem: ProxyCode, detail: Option<&str>, request_id: &RequestId, grpc: bool) -> Response<ProxyBody> {
    if grpc {
        grpc_response(problem, detail, request_id)
    } else {
        response(problem, detail, request_id)
    }
}

/// A gRPC "trailers-only" response for `problem`: HTTP 200, no body,
/// `grpc-status` and `grpc-message: <code>` or `<code>: <detail>` (the
/// detail percent-encoded as gRPC wants).
pub fn grpc_response(problem: ProxyCode, detail: Option<&str>, request_id: &RequestId) -> Response<ProxyBody> {
    let mut message = String::from(problem.code());
    if let Some(detail) = detail {
        message.push_str(": ");
        for b in detail.bytes() {
            if (0x20..=0x7e).contains(&b) && b != b'%' {
                message.push(char::from(b));
            } else {
                let _ = write!(message, "%{b:02X}");
            }
        }
    }
    let mut response = Response::new(ProxyBody::Full(None));
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    headers.insert(GRPC_STATUS, HeaderValue::from(u16::from(problem.grpc_status())));
    // Percent-encoded printable ASCII is always a valid value.
    headers.insert(GRPC_MESSAGE, HeaderValue::from_str(&message).unwrap_or(HeaderValue::from_static("keygate")));
    headers.insert(X_REQUEST_ID, request_id.header_value());
    response
}

/// The problem+json document of `problem`.
fn document<'a>(problem: ProxyCode, detail: Option<&'a str>, request_id: &'a RequestId) -> contract::Problem<'a> {
    contract::Problem::new(problem.status(), problem.code(), problem.title())
        .detail(detail)
        .request_id(Some(request_id.as_str()))
}

/// The response for `problem`, with an optional human-readable `detail`.
///
/// 401s carry `WWW-Authenticate: Bearer realm="keygate"` (RFC 6750 §3),
/// with `error="invalid_token"` when a credential was sent but refused.
/// A 413 or 408 closes the connection: the client may still be sending a
/// body that nobody will read.
pub fn response(problem: ProxyCode, detail: Option<&str>, request_id: &RequestId) -> Response<ProxyBody> {
    let status = problem.status();
    let body = document(problem, detail, request_id).to_json();
    let mut response = Response::new(ProxyBody::full(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(X_REQUEST_ID, request_id.header_value());
    match problem {
        ProxyCode::Refused(Refusal::MissingKey) => {
            headers.insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"keygate\""));
        }
        ProxyCode::Refused(_) if status == StatusCode::UNAUTHORIZED => {
            headers.insert(
                WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"keygate\", error=\"invalid_token\""),
            );
        }
        ProxyCode::BodyTooLarge | ProxyCode::BodyTimeout => {
            headers.insert(CONNECTION, HeaderValue::from_static("close"));
        }
        _ => {}
    }
    response
}

/// The whole HTTP/1.1 response to a request whose framing the listener
/// refused before it became a request (see `listener::strict`): a 400
/// `bad_request` problem that closes the connection. Written to the socket
/// as it is, so it is built here, once per refusal.
pub fn framing_refusal() -> Vec<u8> {
    let request_id = RequestId::generate();
    let detail = Some("The request's framing is malformed or ambiguous (RFC 9112).");
    let body = document(ProxyCode::BadRequest, detail, &request_id).to_json();
    let mut response = format!(
        "HTTP/1.1 400 Bad Request\r\ncontent-type: {PROBLEM_JSON}\r\ncache-control: no-store\r\n\
         {X_REQUEST_ID}: {request_id}\r\nconnection: close\r\ncontent-length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    response.extend_from_slice(&body);
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderMap;
    use http_body_util::BodyExt;

    async fn json(response: Response<ProxyBody>) -> serde_json::Value {
        let bytes = response.into_body().collect().await.expect("body").to_bytes();
        serde_json::from_slice(&bytes).expect("json")
    }

    #[tokio::test]
    async fn document_has_the_rfc_9457_fields() {
        let id = RequestId::generate();
        let response = response(ProxyCode::Refused(Refusal::KeyRevoked), None, &id);
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

    #[test]
    fn grpc_refusals_are_trailers_only_with_the_mapped_status() {
        let id = RequestId::generate();
        for (problem, status) in [
            (ProxyCode::Refused(Refusal::MissingKey), "16"),
            (ProxyCode::Refused(Refusal::InsufficientPermission), "7"),
            (ProxyCode::Refused(Refusal::RateLimited), "8"),
            (ProxyCode::BodyTooLarge, "8"),
            (ProxyCode::HeaderTooLarge, "8"),
            (ProxyCode::BadRequest, "3"),
            (ProxyCode::UpstreamUnavailable, "14"),
            (ProxyCode::UpstreamTimeout, "4"),
            (ProxyCode::BodyTimeout, "4"),
        ] {
            let response = answer(problem, Some("50% of 100%\n"), &id, true);
            assert_eq!(response.status(), StatusCode::OK);
            assert!(hyper::body::Body::is_end_stream(response.body()), "no body: trailers-only");
            let h = response.headers();
            assert_eq!(h[CONTENT_TYPE], "application/grpc");
            assert_eq!(h[GRPC_STATUS], status, "{problem:?}");
            assert_eq!(h[GRPC_MESSAGE], format!("{}: 50%25 of 100%25%0A", problem.code()));
            assert_eq!(h[X_REQUEST_ID], id.as_str());
        }
        let mut h = HeaderMap::new();
        assert!(!is_grpc(&h));
        for (value, grpc) in [("application/grpc", true), ("Application/GRPC+proto", true), ("application/json", false)]
        {
            h.insert(CONTENT_TYPE, HeaderValue::from_static(value));
            assert_eq!(is_grpc(&h), grpc, "{value}");
        }
    }

    #[test]
    fn framing_refusal_is_a_whole_closing_response() {
        let bytes = framing_refusal();
        let text = std::str::from_utf8(&bytes).expect("utf-8");
        let (head, body) = text.split_once("\r\n\r\n").expect("head");
        assert!(head.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{head}");
        assert!(head.contains("\r\nconnection: close"), "{head}");
        assert!(head.contains(&format!("\r\ncontent-length: {}", body.len())), "{head}");
        let doc: serde_json::Value = serde_json::from_str(body).expect("json");
        assert_eq!(doc["code"], "bad_request");
        assert_eq!(doc["status"], 400);
    }

    #[tokio::test]
    async fn non_401_problems_have_no_challenge() {
        let id = RequestId::generate();
        let response = response(ProxyCode::UpstreamTimeout, Some("after 30000 ms"), &id);
        assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);
        assert!(response.headers().get(WWW_AUTHENTICATE).is_none());
        assert_eq!(json(response).await["detail"], "after 30000 ms");
    }
}
