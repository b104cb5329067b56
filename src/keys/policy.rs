//! The vocabulary of a key decision: permission, environment, status and the
//! refusal codes of docs/proxy.md#refusals, each with its stable `code` and HTTP status.
//! Shared by the proxy, the admin API and the store; owns no I/O.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Permission {
    /// GET, HEAD and OPTIONS only.
    Read,
    /// Every method.
    Write,
}

impl Permission {
    pub fn as_str(self) -> &'static str {
        match self {
            Permission::Read => "read",
            Permission::Write => "write",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "read" => Some(Permission::Read),
            "write" => Some(Permission::Write),
            _ => None,
        }
    }

    /// Whether this permission allows the method. Read keys get the safe
    /// methods of RFC 9110 §9.2.1 that cannot change state.
    pub fn allows(self, method: &http::Method) -> bool {
        match self {
            Permission::Write => true,
            Permission::Read => {
                method == http::Method::GET || method == http::Method::HEAD || method == http::Method::OPTIONS
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Environment {
    Live,
    Test,
}

impl Environment {
    pub fn as_str(self) -> &'static str {
        match self {
            Environment::Live => "live",
            Environment::Test => "test",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "live" => Some(Environment::Live),
            "test" => Some(Environment::Test),
            _ => None,
        }
    }
}

/// A key's status as shown to users. Precedence when several apply:
/// revoked, then expired, then disabled — the same order the proxy decides in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Active,
    Disabled,
    Expired,
    Revoked,
}

impl Status {
    pub fn of(revoked: bool, expires_at: Option<i64>, enabled: bool, now_ms: i64) -> Self {
        if revoked {
            Status::Revoked
        } else if expires_at.is_some_and(|at| at <= now_ms) {
            Status::Expired
        } else if !enabled {
            Status::Disabled
        } else {
            Status::Active
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Active => "active",
            Status::Disabled => "disabled",
            Status::Expired => "expired",
            Status::Revoked => "revoked",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "active" => Some(Status::Active),
            "disabled" => Some(Status::Disabled),
            "expired" => Some(Status::Expired),
            "revoked" => Some(Status::Revoked),
            _ => None,
        }
    }
}

/// Why the gateway refuses a request before it reaches the upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    MissingKey,
    InvalidKey,
    KeyExpired,
    KeyDisabled,
    KeyRevoked,
    ApiAccessDisabled,
    InsufficientPermission,
    IpNotAllowed,
    RouteNotAllowed,
    RateLimited,
    QuotaExceeded,
}

impl Refusal {
    pub const ALL: [Refusal; 11] = [
        Refusal::MissingKey,
        Refusal::InvalidKey,
        Refusal::KeyExpired,
        Refusal::KeyDisabled,
        Refusal::KeyRevoked,
        Refusal::ApiAccessDisabled,
        Refusal::InsufficientPermission,
        Refusal::IpNotAllowed,
        Refusal::RouteNotAllowed,
        Refusal::RateLimited,
        Refusal::QuotaExceeded,
    ];

    /// The stable machine-readable code of docs/proxy.md#refusals.
    pub const fn code(self) -> &'static str {
        match self {
            Refusal::MissingKey => "missing_key",
            Refusal::InvalidKey => "invalid_key",
            Refusal::KeyExpired => "key_expired",
            Refusal::KeyDisabled => "key_disabled",
            Refusal::KeyRevoked => "key_revoked",
            Refusal::ApiAccessDisabled => "api_access_disabled",
            Refusal::InsufficientPermission => "insufficient_permission",
            Refusal::IpNotAllowed => "ip_not_allowed",
            Refusal::RouteNotAllowed => "route_not_allowed",
            Refusal::RateLimited => "rate_limited",
            Refusal::QuotaExceeded => "quota_exceeded",
        }
    }

    /// Whether the refusal is about a key the gateway knows, and so is
    /// counted on that key's usage (missing and unknown keys name none).
    pub const fn names_a_key(self) -> bool {
        !matches!(self, Refusal::MissingKey | Refusal::InvalidKey)
    }

    pub fn status(self) -> http::StatusCode {
        use http::StatusCode as S;
        match self {
            Refusal::MissingKey
            | Refusal::InvalidKey
            | Refusal::KeyExpired
            | Refusal::KeyDisabled
            | Refusal::KeyRevoked => S::UNAUTHORIZED,
            Refusal::ApiAccessDisabled
            | Refusal::InsufficientPermission
            | Refusal::IpNotAllowed
            | Refusal::RouteNotAllowed => S::FORBIDDEN,
            Refusal::RateLimited | Refusal::QuotaExceeded => S::TOO_MANY_REQUESTS,
        }
    }

    /// The problem's human-readable title. Never names the key.
    pub fn title(self) -> &'static str {
        match self {
            Refusal::MissingKey => "An API key is required",
            Refusal::InvalidKey => "The API key is not valid",
            Refusal::KeyExpired => "The API key has expired",
            Refusal::KeyDisabled => "The API key is disabled",
            Refusal::KeyRevoked => "The API key has been revoked",
            Refusal::ApiAccessDisabled => "API access is disabled for this account",
            Refusal::InsufficientPermission => "The API key does not allow this method",
            Refusal::IpNotAllowed => "The API key is not allowed from this address",
            Refusal::RouteNotAllowed => "The API key is not allowed on this route",
            Refusal::RateLimited => "Too many requests for this API key",
            Refusal::QuotaExceeded => "The API key's quota is spent",
        }
    }
}
