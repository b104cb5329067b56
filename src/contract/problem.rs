//! The problem+json document (RFC 9457) both planes answer errors with, and
//! the CLI reads: `type`, `title`, `status`, the stable `code`, an optional
//! `detail` for people, `field` on validation errors and the `request_id`.
//!
//! One type, one serializer (`to_json`), one reader (`from_response`). The
//! fields borrow, so the proxy builds a refusal from its static titles and
//! codes without copying them.

use std::borrow::Cow;
use std::fmt;

use http::StatusCode;
use serde::{Deserialize, Serialize};

/// Where the `type` URIs of problems live; the code is appended.
pub const TYPE_BASE: &str = "https://keygate.dev/problems/";
/// The media type of a problem (RFC 9457 §3).
pub const PROBLEM_JSON: &str = "application/problem+json";

/// RFC 9457 problem details, as the proxy and the admin API send them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default)]
#[schema(example = json!({
    "type": "https://keygate.dev/problems/validation_failed",
    "title": "Unprocessable Entity",
    "status": 422,
    "code": "validation_failed",
    "detail": "expires_at: must be in the future",
    "field": "expires_at",
    "request_id": "4f1c0a7e9b2d4c6a8e0f1a2b3c4d5e6f"
}))]
pub struct Problem<'a> {
    /// `https://keygate.dev/problems/{code}`.
    #[serde(rename = "type")]
    #[schema(format = "uri")]
    pub kind: Cow<'a, str>,
    /// A short summary: the proxy's says what happened, the admin API's is
    /// the reason phrase of `status`.
    pub title: Cow<'a, str>,
    /// The HTTP status, repeated.
    pub status: u16,
    /// Stable, machine-readable: match on this, not on `detail`.
    pub code: Cow<'a, str>,
    /// For people; the wording may change.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub detail: Option<Cow<'a, str>>,
    /// Only on `validation_failed`: the body field or query parameter at
    /// fault, e.g. `expires_at` or `.allowed_routes[0].path_prefix`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub field: Option<Cow<'a, str>>,
    /// The request's `X-Request-Id`, also in the response headers.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub request_id: Option<Cow<'a, str>>,
}

impl<'a> Problem<'a> {
    /// A problem of `code` with its `type` URI.
    pub fn new(status: StatusCode, code: &'a str, title: &'a str) -> Self {
        Problem {
            kind: Cow::Owned(format!("{TYPE_BASE}{code}")),
            title: Cow::Borrowed(title),
            status: status.as_u16(),
            code: Cow::Borrowed(code),
            detail: None,
            field: None,
            request_id: None,
        }
    }

    pub fn detail(mut self, detail: Option<&'a str>) -> Self {
        self.detail = detail.map(Cow::Borrowed);
        self
    }

    pub fn field(mut self, field: Option<&'a str>) -> Self {
        self.field = field.map(Cow::Borrowed);
        self
    }

    pub fn request_id(mut self, request_id: Option<&'a str>) -> Self {
        self.request_id = request_id.map(Cow::Borrowed);
        self
    }

    /// The document's bytes.
    pub fn to_json(&self) -> Vec<u8> {
        // Serializing strings and integers cannot fail; the fallback keeps
        // the code meaningful even so.
        serde_json::to_vec(self).unwrap_or_else(|_| format!("{{\"code\":\"{}\"}}", self.code).into_bytes())
    }
}

impl Problem<'static> {
    /// Reads a problem from an error answer; a body that is not problem+json
    /// (a proxy in between, a wrong URL) still yields a readable line.
    pub fn from_response(status: StatusCode, body: &[u8]) -> Self {
        let mut problem: Problem<'static> = serde_json::from_slice(body).unwrap_or_default();
        problem.status = status.as_u16();
        if problem.code.is_empty() && problem.title.is_empty() && problem.detail.is_none() {
            let raw = String::from_utf8_lossy(body);
            let raw = raw.trim();
            // A short plain-text body is usually the reason; a long one is an HTML page.
            problem.detail = if !raw.is_empty() && raw.len() <= 200 {
                Some(Cow::Owned(raw.to_owned()))
            } else {
                status.canonical_reason().map(Cow::Borrowed)
            };
        }
        problem
    }
}

/// `422 validation_failed: expires_at: must be in the future` — one line a
/// person can act on, with the stable code scripts can match.
impl fmt::Display for Problem<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.status)?;
        if !self.code.is_empty() {
            write!(f, " {}", self.code)?;
        }
        let title = Some(self.title.as_ref()).filter(|t| !t.is_empty());
        let reason = self.detail.as_deref().or(title);
        match (self.field.as_deref(), reason) {
            // The server may already name the field in its detail; say it once.
            (Some(field), Some(reason)) if reason.starts_with(field) => write!(f, ": {reason}"),
            (Some(field), Some(reason)) => write!(f, ": {field}: {reason}"),
            (Some(field), None) => write!(f, ": {field}"),
            (None, Some(reason)) => write!(f, ": {reason}"),
            (None, None) => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problem_serializes_the_rfc_9457_fields_and_skips_absent_ones() {
        let doc = Problem::new(StatusCode::UNAUTHORIZED, "key_revoked", "The API key has been revoked")
            .request_id(Some("abc"));
        let json: serde_json::Value = serde_json::from_slice(&doc.to_json()).expect("json");
        assert_eq!(
            json,
            serde_json::json!({
                "type": "https://keygate.dev/problems/key_revoked",
                "title": "The API key has been revoked",
                "status": 401,
                "code": "key_revoked",
                "request_id": "abc"
            })
        );
    }

    #[test]
    fn problem_with_field_and_detail_reads_back_the_same() {
        let doc = Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed", "Unprocessable Entity")
            .detail(Some("expires_at: must be in the future"))
            .field(Some("expires_at"));
        let read = Problem::from_response(StatusCode::UNPROCESSABLE_ENTITY, &doc.to_json());
        assert_eq!(read, doc);
        assert_eq!(read.to_string(), "422 validation_failed: expires_at: must be in the future");
    }

    #[test]
    fn validation_problem_names_status_code_field_and_detail() {
        let line = |body: &str, status: u16| {
            let status = StatusCode::from_u16(status).expect("status");
            Problem::from_response(status, body.as_bytes()).to_string()
        };
        let body = r#"{"type":"https://keygate.dev/problems/validation_failed","title":"Unprocessable Entity","status":422,
            "code":"validation_failed","detail":"must be in the future","field":"expires_at"}"#;
        assert_eq!(line(body, 422), "422 validation_failed: expires_at: must be in the future");
        let body = r#"{"status":422,"code":"validation_failed","detail":"expires_at must be in the future","field":"expires_at"}"#;
        assert_eq!(line(body, 422), "422 validation_failed: expires_at must be in the future");
        let body = r#"{"type":"about:blank","title":"Key not found","status":404,"code":"not_found"}"#;
        assert_eq!(line(body, 404), "404 not_found: Key not found");
    }

    #[test]
    fn non_problem_bodies_still_give_a_line() {
        let line = |body: &str, status: StatusCode| Problem::from_response(status, body.as_bytes()).to_string();
        assert_eq!(line("", StatusCode::NOT_FOUND), "404: Not Found");
        assert_eq!(line("Method Not Allowed", StatusCode::METHOD_NOT_ALLOWED), "405: Method Not Allowed");
        assert_eq!(line(&"<html>".repeat(100), StatusCode::BAD_GATEWAY), "502: Bad Gateway");
        assert_eq!(line("[1,2]", StatusCode::BAD_GATEWAY), "502: [1,2]");
    }
}
