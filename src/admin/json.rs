//! JSON in and out of the admin API: the body extractor that turns every
//! rejection into a problem naming the field, and the views (the JSON shapes
//! of DESIGN.md §4) built from store records.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};

use super::error::ApiError;
use crate::clock::rfc3339;
use crate::keys::{Environment, Permission, Status};
use crate::store::{Account, KeyRecord, Metadata, Page, RateLimit, RouteRule};

/// A JSON request body. An empty body reads as `{}`, so routes whose fields
/// are all optional (rotate) can be called with none.
pub struct JsonBody<T>(pub T);

impl<S, T> FromRequest<S> for JsonBody<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::TooLarge
            } else {
                ApiError::BadRequest(e.body_text())
            }
        })?;
        parse(&bytes).map(JsonBody)
    }
}

/// Deserializes, reporting the path of the field at fault.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let bytes: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) { b"{}" } else { bytes };
    let mut de = serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            return ApiError::BadRequest(format!("the body is not valid JSON: {inner}"));
        }
        let message = inner.to_string();
        let message = message.split(" at line ").next().unwrap_or(&message).to_owned();
        let named = message.split('`').nth(1).filter(|_| message.starts_with("unknown field") || message.starts_with("missing field"));
        let field = match (path.as_str(), named) {
            (".", Some(name)) => name.to_owned(),
            (p, Some(name)) if message.starts_with("missing field") => format!("{p}.{name}"),
            (".", None) => "(body)".to_owned(),
            (p, _) => p.to_owned(),
        };
        ApiError::Invalid { field, message }
    })
}

/// For PATCH bodies: a field that is absent stays `None`, a field set to
/// `null` becomes `Some(None)`.
pub fn nullable<'de, T, D>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    T: Deserialize<'de>,
    D: Deserializer<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

#[derive(Debug, Serialize)]
pub struct KeyView {
    pub id: String,
    pub account_id: String,
    pub name: String,
    pub description: Option<String>,
    pub permission: Permission,
    pub status: Status,
    pub enabled: bool,
    pub environment: Environment,
    pub prefix: String,
    pub preview: String,
    pub created_at: String,
    pub updated_at: String,
    pub expires_at: Option<String>,
    pub last_used_at: Option<String>,
    pub usage_count: i64,
    pub rotated_at: Option<String>,
    pub revoked_at: Option<String>,
    pub rate_limit: Option<RateLimit>,
    pub allowed_ips: Vec<String>,
    pub allowed_routes: Vec<RouteRule>,
    pub metadata: Metadata,
}

impl KeyView {
    pub fn new(k: KeyRecord, now_ms: i64) -> Self {
        KeyView {
            status: k.status(now_ms),
            created_at: rfc3339(k.created_at),
            updated_at: rfc3339(k.updated_at),
            expires_at: k.expires_at.map(rfc3339),
            last_used_at: k.last_used_at.map(rfc3339),
            rotated_at: k.rotated_at.map(rfc3339),
            revoked_at: k.revoked_at.map(rfc3339),
            id: k.id,
            account_id: k.account_id,
            name: k.name,
            description: k.description,
            permission: k.permission,
            enabled: k.enabled,
            environment: k.environment,
            prefix: k.prefix,
            preview: k.preview,
            usage_count: k.usage_count,
            rate_limit: k.rate_limit,
            allowed_ips: k.allowed_ips,
            allowed_routes: k.allowed_routes,
            metadata: k.metadata,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct AccountView {
    pub id: String,
    pub name: String,
    pub api_access: bool,
    pub created_at: String,
    pub updated_at: String,
}

impl From<Account> for AccountView {
    fn from(a: Account) -> Self {
        AccountView {
            id: a.id,
            name: a.name,
            api_access: a.api_access,
            created_at: rfc3339(a.created_at),
            updated_at: rfc3339(a.updated_at),
        }
    }
}

/// `{ "items": [...], "next_cursor": … }`.
#[derive(Debug, Serialize)]
pub struct ListView<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

impl<T> ListView<T> {
    pub fn from_page<R>(page: Page<R>, view: impl FnMut(R) -> T) -> Self {
        ListView { items: page.items.into_iter().map(view).collect(), next_cursor: page.next_cursor }
    }
}

/// `{ "key": {record}, "secret": "kg_…" }`: the one response that shows a
/// secret.
#[derive(Debug, Serialize)]
pub struct SecretView {
    pub key: KeyView,
    pub secret: String,
}
