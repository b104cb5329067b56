//! The vocabulary of a key decision: permission, environment, status and the
//! refusal codes of docs/proxy.md#refusals, each with its stable `code` and HTTP status,
//! and `KeyPolicy`, what the snapshot holds of each key to decide on it.
//! Shared by the proxy, the admin API and the store; owns no I/O.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::decision::Quota;
use super::quota::PackedQuota;
use super::restrictions::Restrictions;
use super::snapshot::{Identity, InlineId};

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

/// What the gateway needs to decide on one key. Each key of the snapshot
/// holds one, so its size is a million keys' memory: 88 bytes, with what
/// most keys leave unset behind one pointer (`extras`), so that a key of
/// the snapshot (`Arc<KeyState>`) is a 128-byte allocation
/// (`a_key_stays_in_128_bytes`).
#[derive(Debug, Clone, PartialEq)]
pub struct KeyPolicy {
    pub id: InlineId,
    pub account_id: InlineId,
    pub permission: Permission,
    pub enabled: bool,
    pub revoked: bool,
    /// The key's account has API access (the plan gate).
    pub api_access: bool,
    /// Unix milliseconds; checked per request against the clock.
    /// `KeyPolicy::NEVER` for a key that does not expire.
    pub expires_at: i64,
    /// This key's rate limit, overriding the configured default.
    pub quota: Option<Quota>,
    /// This key's own quota (units per calendar period), counted by the
    /// quota book (`crate::quota`).
    pub usage_quota: Option<PackedQuota>,
    /// Restrictions and metadata; `None` when the key has neither.
    pub extras: Option<Arc<Extras>>,
}

/// The key's `metadata` object.
pub type Metadata = serde_json::Map<String, serde_json::Value>;

/// The parts of a key's policy most keys leave unset.
#[derive(Debug, PartialEq)]
pub struct Extras {
    /// Allowed client ranges and routes.
    restrictions: Option<Arc<Restrictions>>,
    /// The source of the identity token's allowlisted `metadata` claim
    /// (`crate::identity`); never empty.
    metadata: Option<Arc<Metadata>>,
}

impl Extras {
    /// `None` when the key has neither.
    pub fn of(restrictions: Option<Arc<Restrictions>>, metadata: Option<Arc<Metadata>>) -> Option<Arc<Extras>> {
        (restrictions.is_some() || metadata.is_some()).then(|| Arc::new(Extras { restrictions, metadata }))
    }
}

impl KeyPolicy {
    /// `expires_at` of a key that does not expire.
    pub const NEVER: i64 = i64::MAX;

    /// Allowed client ranges and routes; `None` when the key has neither.
    pub fn restrictions(&self) -> Option<&Restrictions> {
        self.extras.as_ref()?.restrictions.as_deref()
    }

    /// The key's `metadata` object; `None` when empty.
    pub fn metadata(&self) -> Option<&Arc<Metadata>> {
        self.extras.as_ref()?.metadata.as_ref()
    }

    pub fn set_restrictions(&mut self, restrictions: Option<Arc<Restrictions>>) {
        self.extras = Extras::of(restrictions, self.metadata().cloned());
    }

    /// `metadata` replaces the key's object; an empty one is none.
    pub fn set_metadata(&mut self, metadata: Metadata) {
        let restrictions = self.extras.as_ref().and_then(|e| e.restrictions.clone());
        self.extras = Extras::of(restrictions, (!metadata.is_empty()).then(|| Arc::new(metadata)));
    }

    pub fn identity(&self) -> Identity {
        Identity { key_id: self.id, account_id: self.account_id, permission: self.permission }
    }
}
