//! Who is calling the admin API. Tokens are compared by their blake3 hash in
//! constant time; the token itself is never logged or stored.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::Response;
use subtle::ConstantTimeEq;

use super::error::ApiError;
use super::AdminState;
use crate::contract::{bearer, RequestId, X_REQUEST_ID};
use crate::keys::KeyHash;
use crate::store::{AuditContext, Role};

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
    /// Refuses everyone but owners.
    pub fn require_owner(&self) -> Result<(), ApiError> {
        if self.role == Role::Owner {
            Ok(())
        } else {
            Err(ApiError::Forbidden("only owner tokens manage admin tokens"))
        }
    }

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

    /// The account a request may act on, from the one it asked for (empty
    /// means none): a confined actor always gets its own; `None` when a
    /// confined actor asked for another account, which it cannot see.
    pub fn scope(&self, asked: Option<String>) -> Option<Option<String>> {
        match (&self.account_id, asked.filter(|a| !a.is_empty())) {
            (Some(own), Some(asked)) if *own != asked => None,
            (Some(own), _) => Some(Some(own.clone())),
            (None, asked) => Some(asked),
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

/// Authenticates the admin token (the `KEYGATE_ADMIN_TOKEN` owner token, or
/// a token from the store) and puts the `Actor` and the `AuditContext` of
/// this request in its extensions.
pub async fn require_token(
    State(state): State<Arc<AdminState>>,
    mut req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let header = req.headers().get(AUTHORIZATION).ok_or(ApiError::MissingToken)?;
    let token = bearer::token(header.as_bytes()).filter(|t| !t.is_empty()).ok_or(ApiError::InvalidToken)?;
    let hash = KeyHash::of(token);
    let actor = match &state.owner_token {
        Some(owner) if bool::from(owner.as_bytes().ct_eq(hash.as_bytes())) => {
            Actor { id: "env".into(), name: "KEYGATE_ADMIN_TOKEN".into(), role: Role::Owner, account_id: None }
        }
        // The store lookup is by hash: equal hashes are found by the index,
        // so no byte of the token is compared in variable time.
        _ => match state.store.admin_token_by_hash(&hash).await? {
            Some(t) => Actor { role: t.role, id: t.id, name: t.name, account_id: t.account_id },
            None => return Err(ApiError::InvalidToken),
        },
    };
    let audit = AuditContext {
        actor_id: actor.id.clone(),
        actor_name: actor.name.clone(),
        request_id: req.extensions().get::<RequestId>().map(|r| r.as_str().to_owned()),
        source_ip: req.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip().to_string()),
    };
    req.extensions_mut().insert(actor);
    req.extensions_mut().insert(audit);
    Ok(next.run(req).await)
}

/// After `require_token`: refuses a token confined to an account, for
/// routes that show every account (`/metrics` when it needs a token).
pub async fn require_unconfined(req: Request, next: Next) -> Result<Response, ApiError> {
    match req.extensions().get::<Actor>() {
        Some(actor) if actor.account_id.is_none() => Ok(next.run(req).await),
        _ => Err(ApiError::Forbidden("this shows every account: a token confined to one cannot read it")),
    }
}

tokio::task_local! {
    /// The id of the admin request this task serves, for the problems it
    /// answers with (`ApiError` has no request to read it from).
    static REQUEST_ID: RequestId;
}

/// The request id of the admin request being served, if any.
pub fn current_request_id() -> Option<RequestId> {
    REQUEST_ID.try_with(RequestId::clone).ok()
}

/// Gives every admin request its id (`crate::contract::RequestId`, the
/// proxy's rule): in its extensions, in its problems and on its response.
pub async fn request_id(mut req: Request, next: Next) -> Response {
    let id = RequestId::from_headers(req.headers());
    req.extensions_mut().insert(id.clone());
    let mut response = REQUEST_ID.scope(id.clone(), next.run(req)).await;
    response.headers_mut().insert(X_REQUEST_ID, id.header_value());
    response
}
