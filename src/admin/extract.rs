//! The admin API's `Path` and `Query` extractors: axum's, with their
//! rejections turned into problem+json (400 `invalid_parameter`, naming the
//! parameter when axum does) instead of axum's `text/plain`.
//!
//! Handlers take these, never `axum::extract::{Path, Query}`: a test greps
//! for it, since one forgotten import would bring the plain-text answer back.

use axum::extract::path::ErrorKind;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::FromRequestParts;
use axum::http::StatusCode;

use super::error::ApiError;

/// `axum::extract::Path`, rejecting with problem+json.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct Path<T>(pub T);

/// `axum::extract::Query`, rejecting with problem+json.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct Query<T>(pub T);

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        // A 500 from axum here (wrong number of parameters, an unsupported
        // type) is a mistake in a handler's signature, not the caller's.
        if rejection.status() != StatusCode::BAD_REQUEST {
            return ApiError::Internal(rejection.body_text());
        }
        let parameter = match &rejection {
            PathRejection::FailedToDeserializePathParams(e) => match e.kind() {
                ErrorKind::InvalidUtf8InPathParam { key }
                | ErrorKind::ParseErrorAtKey { key, .. }
                | ErrorKind::DeserializeError { key, .. } => Some(key.clone()),
                _ => None,
            },
            _ => None,
        };
        ApiError::InvalidParameter(match parameter {
            Some(p) => format!("path parameter `{p}`: {}", path_reason(&rejection)),
            None => format!("path: {}", path_reason(&rejection)),
        })
    }
}

/// What is wrong with the path, without axum's "Invalid URL: " and without
/// echoing a value that may not even be text.
fn path_reason(rejection: &PathRejection) -> String {
    match rejection {
        PathRejection::FailedToDeserializePathParams(e) => match e.kind() {
            ErrorKind::InvalidUtf8InPathParam { .. } => "not valid UTF-8 once percent-decoded".to_owned(),
            ErrorKind::ParseErrorAtKey { expected_type, .. } | ErrorKind::ParseError { expected_type, .. } => {
                format!("expected a {expected_type}")
            }
            kind => kind.to_string(),
        },
        other => other.body_text(),
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        // serde_urlencoded's message, e.g. "duplicate field `status`",
        // names the parameter between backticks.
        let text = rejection.body_text();
        let reason = text.strip_prefix("Failed to deserialize query string: ").unwrap_or(&text).to_owned();
        let parameter = reason.split('`').nth(1).filter(|p| !p.is_empty());
        ApiError::InvalidParameter(match parameter {
            Some(p) if reason.starts_with("duplicate field") => format!("query parameter `{p}`: given more than once"),
            Some(p) => format!("query parameter `{p}`: {reason}"),
            None => format!("query string: {reason}"),
        })
    }
}
