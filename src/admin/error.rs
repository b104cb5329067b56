//! The admin API's one error type and its one mapping to an
//! `application/problem+json` response (`crate::contract::Problem`) with a
//! stable `code` (`AdminCode`) and the request id. Handlers return
//! `Result<_, ApiError>`; causes are logged here, never sent.

use std::borrow::Cow;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::auth::current_request_id;
use crate::contract::{AdminCode, Problem, RequestId, PROBLEM_JSON};
use crate::keys::Refusal;
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
    Refused(AdminCode, String),
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

    /// The API access refusal, in the proxy's words.
    pub fn api_access_disabled() -> Self {
        ApiError::Refused(AdminCode::ApiAccessDisabled, Refusal::ApiAccessDisabled.title().to_owned())
    }

    fn parts(&self) -> (AdminCode, Cow<'_, str>) {
        match self {
            ApiError::BadRequest(m) => (AdminCode::InvalidJson, Cow::Borrowed(m)),
            ApiError::InvalidParameter(m) => (AdminCode::InvalidParameter, Cow::Borrowed(m)),
            ApiError::Invalid { field, message } => {
                (AdminCode::ValidationFailed, Cow::Owned(format!("{field}: {message}")))
            }
            ApiError::MissingToken => (AdminCode::MissingToken, Cow::Borrowed("An admin token is required")),
            ApiError::InvalidToken => (AdminCode::InvalidToken, Cow::Borrowed("The admin token is not valid")),
            ApiError::Forbidden(m) => (AdminCode::Forbidden, Cow::Borrowed(m)),
            ApiError::Refused(code, m) => (*code, Cow::Borrowed(m)),
            ApiError::NotFound => (AdminCode::NotFound, Cow::Borrowed("No such record")),
            ApiError::Conflict(m) => (AdminCode::Conflict, Cow::Borrowed(m)),
            ApiError::TooLarge => (AdminCode::BodyTooLarge, Cow::Borrowed("The request body is too large")),
            ApiError::StoreUnavailable => {
                (AdminCode::StoreUnavailable, Cow::Borrowed("The store is unreachable; nothing was changed"))
            }
            ApiError::Internal(_) => (AdminCode::Internal, Cow::Borrowed("Internal error")),
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
            ServiceError::Refused(Refusal::ApiAccessDisabled) => ApiError::api_access_disabled(),
            // No other refusal is a service's today; should one be, it is the
            // caller's to mend, never a fault of keygate's.
            ServiceError::Refused(refusal) => ApiError::Refused(AdminCode::Forbidden, refusal.title().to_owned()),
            ServiceError::Store(e) => e.into(),
        }
    }
}

impl ApiError {
    /// The status and the problem body this error answers with.
    fn problem(&self, request_id: Option<&str>) -> (StatusCode, Vec<u8>) {
        let (code, detail) = self.parts();
        let status = code.status();
        let field = match self {
            ApiError::Invalid { field, .. } => Some(field.as_str()),
            _ => None,
        };
        let problem = Problem::new(status, code.code(), status.canonical_reason().unwrap_or("Error"))
            .detail(Some(&detail))
            .field(field)
            .request_id(request_id);
        (status, problem.to_json())
    }

    /// The body this error answers with, as JSON: the examples of the
    /// OpenAPI document are made with it, so they cannot drift from the wire.
    pub fn example(&self) -> serde_json::Value {
        serde_json::from_slice(&self.problem(None).1).unwrap_or_default()
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Internal(cause) = &self {
            tracing::error!(cause = %cause, "admin request failed");
        }
        let request_id = current_request_id();
        let (status, body) = self.problem(request_id.as_ref().map(RequestId::as_str));
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"keygate-admin\""));
        }
        response
    }
}
