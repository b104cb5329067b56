//! The admin API's one error type and its one mapping to an
//! `application/problem+json` response with a stable `code`. Handlers return
//! `Result<_, ApiError>`; causes are logged here, never sent.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::service::ServiceError;
use crate::store::StoreError;

#[derive(Debug)]
pub enum ApiError {
    /// 400: the body is not JSON, or not the JSON shape the route takes.
    BadRequest(String),
    /// 400: a path or query parameter axum could not read (not UTF-8 once
    /// percent-decoded, given twice, of the wrong type); the message names
    /// the parameter when it is known.
    InvalidParameter(String),
    /// 422 naming the field at fault.
    Invalid {
        field: String,
        message: String,
    },
    /// 401: no admin token.
    MissingToken,
    /// 401: an admin token that is not valid.
    InvalidToken,
    /// 403: the token's role may not do this.
    Forbidden(&'static str),
    /// 403 with a specific code, e.g. `api_access_disabled`.
    Refused {
        code: &'static str,
        message: String,
    },
    NotFound,
    /// 409: the record is in a state that forbids the change.
    Conflict(String),
    /// 413.
    TooLarge,
    /// 503: the store cannot be reached; nothing was written.
    StoreUnavailable,
    /// 500: a fault of ours, logged with its cause.
    Internal(String),
}

impl ApiError {
    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        ApiError::Invalid { field: field.to_owned(), message: message.into() }
    }

    fn parts(&self) -> (StatusCode, &'static str, String) {
        match self {
            ApiError::BadRequest(m) => (StatusCode::BAD_REQUEST, "invalid_json", m.clone()),
            ApiError::InvalidParameter(m) => (StatusCode::BAD_REQUEST, "invalid_parameter", m.clone()),
            ApiError::Invalid { field, message } => {
                (StatusCode::UNPROCESSABLE_ENTITY, "validation_failed", format!("{field}: {message}"))
            }
            ApiError::MissingToken => (StatusCode::UNAUTHORIZED, "missing_token", "An admin token is required".into()),
            ApiError::InvalidToken => {
                (StatusCode::UNAUTHORIZED, "invalid_token", "The admin token is not valid".into())
            }
            ApiError::Forbidden(m) => (StatusCode::FORBIDDEN, "forbidden", (*m).to_owned()),
            ApiError::Refused { code, message } => (StatusCode::FORBIDDEN, code, message.clone()),
            ApiError::NotFound => (StatusCode::NOT_FOUND, "not_found", "No such record".into()),
            ApiError::Conflict(m) => (StatusCode::CONFLICT, "conflict", m.clone()),
            ApiError::TooLarge => {
                (StatusCode::PAYLOAD_TOO_LARGE, "body_too_large", "The request body is too large".into())
            }
            ApiError::StoreUnavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "store_unavailable",
                "The store is unreachable; nothing was changed".into(),
            ),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal", "Internal error".into()),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => ApiError::NotFound,
            StoreError::Conflict(m) => ApiError::Conflict(m),
            StoreError::Unavailable(cause) => {
                tracing::warn!(error = %cause, "admin write refused: store unavailable");
                ApiError::StoreUnavailable
            }
            StoreError::Other(m) => ApiError::Internal(m),
        }
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::Invalid { field, message } => ApiError::Invalid { field, message },
            ServiceError::Refused(refusal) => {
                ApiError::Refused { code: refusal.code(), message: refusal.title().to_owned() }
            }
            ServiceError::Store(e) => e.into(),
        }
    }
}

/// RFC 9457 problem details, as on the proxy.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(example = json!({
    "type": "https://keygate.dev/problems/validation_failed",
    "title": "Unprocessable Entity",
    "status": 422,
    "code": "validation_failed",
    "detail": "expires_at: must be in the future",
    "field": "expires_at"
}))]
pub struct Problem<'a> {
    /// `https://keygate.dev/problems/{code}`.
    #[serde(rename = "type")]
    #[schema(format = "uri")]
    pub kind: String,
    /// The reason phrase of `status`.
    pub title: &'a str,
    /// The HTTP status, repeated.
    pub status: u16,
    /// Stable, machine-readable: match on this, not on `detail`.
    pub code: &'a str,
    /// For people; the wording may change.
    pub detail: &'a str,
    /// Only on `validation_failed`: the body field or query parameter at
    /// fault, e.g. `expires_at` or `.allowed_routes[0].path_prefix`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub field: Option<&'a str>,
}

impl ApiError {
    /// The status and the problem body this error answers with.
    fn problem(&self) -> (StatusCode, Vec<u8>) {
        let (status, code, detail) = self.parts();
        let field = match self {
            ApiError::Invalid { field, .. } => Some(field.as_str()),
            _ => None,
        };
        let problem = Problem {
            kind: format!("https://keygate.dev/problems/{code}"),
            title: status.canonical_reason().unwrap_or("Error"),
            status: status.as_u16(),
            code,
            detail: &detail,
            field,
        };
        (status, serde_json::to_vec(&problem).unwrap_or_default())
    }

    /// The body this error answers with, as JSON: the examples of the
    /// OpenAPI document are made with it, so they cannot drift from the wire.
    pub fn example(&self) -> serde_json::Value {
        serde_json::from_slice(&self.problem().1).unwrap_or_default()
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Internal(cause) = &self {
            tracing::error!(cause = %cause, "admin request failed");
        }
        let (status, body) = self.problem();
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        if status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"keygate-admin\""));
        }
        response
    }
}
