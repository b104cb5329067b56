//! What a write through the service can answer besides success. Plain data
//! with no HTTP in it: the admin API maps it to problem+json (in
//! `admin/error.rs`), the CLI to a message naming its option.

use crate::keys::Refusal;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// A field of the request that cannot be taken as it is; `field` is its
    /// name in the request (`expires_at`, `allowed_ips[1]`).
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    /// The proxy would refuse the record for this reason, so the write is
    /// refused too (a key for an account whose API access is off).
    #[error("{}", .0.title())]
    Refused(Refusal),
    /// The store refused or failed; nothing was written.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ServiceError {
    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        ServiceError::Invalid { field: field.to_owned(), message: message.into() }
    }
}
