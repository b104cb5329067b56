//! Who is calling the admin API. Tokens are compared by their blake3 hash in
//! constant time; the token itself is never logged or stored.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::Response;
use subtle::ConstantTimeEq;

use super::error::ApiError;
use super::AdminState;
use crate::keys::KeyHash;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything, admin tokens included.
    Owner,
    /// Manage accounts and keys.
    Admin,
    /// Read only.
    Viewer,
}

/// The authenticated caller, put in the request's extensions.
#[derive(Debug, Clone)]
pub struct Actor {
    pub id: String,
    pub name: String,
    pub role: Role,
    /// Confined to this account when set.
    pub account_id: Option<String>,
}

impl Actor {
    pub fn can_write(&self) -> bool {
        matches!(self.role, Role::Owner | Role::Admin)
    }

    /// Refuses a viewer.
    pub fn require_write(&self) -> Result<(), ApiError> {
        if self.can_write() {
            Ok(())
        } else {
            Err(ApiError::Forbidden("this admin token is read-only"))
        }
    }

    /// Whether this actor may see the account. A confined actor gets
    /// `NotFound` for other accounts, so their ids don't leak.
    pub fn require_account(&self, account_id: &str) -> Result<(), ApiError> {
        match &self.account_id {
            Some(own) if own != account_id => Err(ApiError::NotFound),
            _ => Ok(()),
        }
    }
}

pub async fn require_token(State(state): State<Arc<AdminState>>, mut req: Request, next: Next) -> Result<Response, ApiError> {
    let header = req.headers().get(AUTHORIZATION).ok_or(ApiError::MissingToken)?;
    let token = bearer(header.as_bytes()).ok_or(ApiError::InvalidToken)?;
    let hash = KeyHash::of(token);
    let actor = match &state.owner_token {
        Some(owner) if bool::from(owner.as_bytes().ct_eq(hash.as_bytes())) => Actor {
            id: "env".into(),
            name: "KEYGATE_ADMIN_TOKEN".into(),
            role: Role::Owner,
            account_id: None,
        },
        _ => return Err(ApiError::InvalidToken),
    };
    req.extensions_mut().insert(actor);
    Ok(next.run(req).await)
}

/// The token of `Bearer <token>` (scheme case-insensitive).
fn bearer(value: &[u8]) -> Option<&[u8]> {
    let (scheme, rest) = value.split_at_checked(7)?;
    if !scheme.eq_ignore_ascii_case(b"bearer ") {
        return None;
    }
    let token = rest.trim_ascii();
    (!token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::bearer;

    #[test]
    fn bearer_scheme_is_case_insensitive() {
        assert_eq!(bearer(b"Bearer abc"), Some(&b"abc"[..]));
        assert_eq!(bearer(b"bearer  abc "), Some(&b"abc"[..]));
        assert_eq!(bearer(b"Basic abc"), None);
        assert_eq!(bearer(b"Bearer "), None);
    }
}
