//! Every stable `code` a problem can carry, with its HTTP status: the
//! proxy's (`ProxyCode`: the key refusals of `Refusal`, then the proxy's own)
//! and the admin API's (`AdminCode`). Clients match on these strings, so
//! each is spelled here and nowhere else; the list is in `docs/`.

use http::StatusCode;

use crate::keys::Refusal;

/// `body_too_large` means the same on both planes.
const BODY_TOO_LARGE: &str = "body_too_large";

/// Everything the proxy answers itself instead of the upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyCode {
    /// The key decision said no (401, 403, 429).
    Refused(Refusal),
    /// The request head is larger than `proxy.max_header_bytes`.
    HeaderTooLarge,
    /// The request body is larger than the route allows.
    BodyTooLarge,
    /// The client sent nothing more of its body for
    /// `proxy.body_read_timeout_ms`.
    BodyTimeout,
    /// The request could not be read or forwarded as sent.
    BadRequest,
    /// The upstream could not be reached or broke the exchange.
    UpstreamUnavailable,
    /// The upstream did not answer within `upstream.response_timeout_ms`.
    UpstreamTimeout,
}

impl From<Refusal> for ProxyCode {
    fn from(refusal: Refusal) -> Self {
        ProxyCode::Refused(refusal)
    }
}

impl ProxyCode {
    /// The stable machine-readable code.
    pub fn code(self) -> &'static str {
        match self {
            ProxyCode::Refused(r) => r.code(),
            ProxyCode::HeaderTooLarge => "header_too_large",
            ProxyCode::BodyTooLarge => BODY_TOO_LARGE,
            ProxyCode::BodyTimeout => "body_timeout",
            ProxyCode::BadRequest => "bad_request",
            ProxyCode::UpstreamUnavailable => "upstream_unavailable",
            ProxyCode::UpstreamTimeout => "upstream_timeout",
        }
    }

    pub fn status(self) -> StatusCode {
        match self {
            ProxyCode::Refused(r) => r.status(),
            ProxyCode::HeaderTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ProxyCode::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ProxyCode::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            ProxyCode::BadRequest => StatusCode::BAD_REQUEST,
            ProxyCode::UpstreamUnavailable => StatusCode::BAD_GATEWAY,
            ProxyCode::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    /// The problem's title. Never names the key or the upstream.
    pub fn title(self) -> &'static str {
        match self {
            ProxyCode::Refused(r) => r.title(),
            ProxyCode::HeaderTooLarge => "The request headers are too large",
            ProxyCode::BodyTooLarge => "The request body is too large",
            ProxyCode::BodyTimeout => "The request body was sent too slowly",
            ProxyCode::BadRequest => "The request could not be forwarded as sent",
            ProxyCode::UpstreamUnavailable => "The upstream service is unavailable",
            ProxyCode::UpstreamTimeout => "The upstream service did not answer in time",
        }
    }
}

/// The admin API's codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminCode {
    /// The body is not JSON.
    InvalidJson,
    /// A path or query parameter that cannot be read.
    InvalidParameter,
    /// JSON of the wrong shape or a value out of range; `field` names it.
    ValidationFailed,
    MissingToken,
    InvalidToken,
    /// The token's role may not do this.
    Forbidden,
    /// A key for an account whose API access is off: the proxy's refusal
    /// of the same name, given at creation time.
    ApiAccessDisabled,
    NotFound,
    /// The record's state forbids the change.
    Conflict,
    BodyTooLarge,
    /// The store cannot be reached; nothing was written.
    StoreUnavailable,
    /// A fault of keygate's.
    Internal,
}

impl AdminCode {
    pub const ALL: [AdminCode; 12] = [
        AdminCode::InvalidJson,
        AdminCode::InvalidParameter,
        AdminCode::ValidationFailed,
        AdminCode::MissingToken,
        AdminCode::InvalidToken,
        AdminCode::Forbidden,
        AdminCode::ApiAccessDisabled,
        AdminCode::NotFound,
        AdminCode::Conflict,
        AdminCode::BodyTooLarge,
        AdminCode::StoreUnavailable,
        AdminCode::Internal,
    ];

    /// The stable machine-readable code.
    pub fn code(self) -> &'static str {
        match self {
            AdminCode::InvalidJson => "invalid_json",
            AdminCode::InvalidParameter => "invalid_parameter",
            AdminCode::ValidationFailed => "validation_failed",
            AdminCode::MissingToken => "missing_token",
            AdminCode::InvalidToken => "invalid_token",
            AdminCode::Forbidden => "forbidden",
            AdminCode::ApiAccessDisabled => Refusal::ApiAccessDisabled.code(),
            AdminCode::NotFound => "not_found",
            AdminCode::Conflict => "conflict",
            AdminCode::BodyTooLarge => BODY_TOO_LARGE,
            AdminCode::StoreUnavailable => "store_unavailable",
            AdminCode::Internal => "internal",
        }
    }

    pub fn status(self) -> StatusCode {
        match self {
            AdminCode::InvalidJson | AdminCode::InvalidParameter => StatusCode::BAD_REQUEST,
            AdminCode::ValidationFailed => StatusCode::UNPROCESSABLE_ENTITY,
            AdminCode::MissingToken | AdminCode::InvalidToken => StatusCode::UNAUTHORIZED,
            AdminCode::Forbidden => StatusCode::FORBIDDEN,
            AdminCode::ApiAccessDisabled => Refusal::ApiAccessDisabled.status(),
            AdminCode::NotFound => StatusCode::NOT_FOUND,
            AdminCode::Conflict => StatusCode::CONFLICT,
            AdminCode::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            AdminCode::StoreUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            AdminCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_code_shared_by_both_planes_has_one_status() {
        for admin in AdminCode::ALL {
            let proxy = Refusal::ALL.map(ProxyCode::Refused).into_iter().chain([
                ProxyCode::HeaderTooLarge,
                ProxyCode::BodyTooLarge,
                ProxyCode::BodyTimeout,
                ProxyCode::BadRequest,
                ProxyCode::UpstreamUnavailable,
                ProxyCode::UpstreamTimeout,
            ]);
            for p in proxy.filter(|p| p.code() == admin.code()) {
                assert_eq!(p.status(), admin.status(), "{}", admin.code());
            }
        }
    }

    #[test]
    fn admin_codes_are_distinct_snake_case() {
        let mut seen = std::collections::HashSet::new();
        for c in AdminCode::ALL {
            assert!(seen.insert(c.code()), "{} twice", c.code());
            assert!(c.code().bytes().all(|b| b.is_ascii_lowercase() || b == b'_'), "{}", c.code());
        }
    }
}
