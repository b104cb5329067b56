//! Adjusting a key's quota in its current period (`POST
//! /v1/keys/{id}/quota`): set, increment or decrement what remains, or
//! start the period afresh. This replica's unflushed spending goes to the
//! store first, so the adjustment reads the ledger with it in; the write
//! bumps the key's revision, so every replica's quota book reads the ledger
//! again at once.

use serde::Deserialize;
use utoipa::ToSchema;

use super::{Result, Service, ServiceError};
use crate::keys::{InlineId, MAX_QUOTA};
use crate::store::{AuditContext, KeyRecord, QuotaOp};

/// What an adjustment does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum QuotaOperation {
    /// `remaining` becomes `amount`.
    Set,
    /// `remaining` grows by `amount`.
    Increment,
    /// `remaining` shrinks by `amount`, never below 0.
    Decrement,
    /// The period starts afresh: `used` 0, `remaining` the limit.
    Reset,
}

/// `{ "operation": "increment", "amount": 500 }`; `reset` takes no amount.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({ "operation": "increment", "amount": 500 }))]
pub struct AdjustQuota {
    pub operation: QuotaOperation,
    /// Required by `set`, `increment` and `decrement` (0 to 10^12).
    #[serde(default)]
    #[schema(minimum = 0, maximum = 1_000_000_000_000_u64)]
    pub amount: Option<u64>,
}

impl AdjustQuota {
    fn op(&self) -> Result<QuotaOp> {
        let amount = || match self.amount {
            Some(n) if n <= MAX_QUOTA => Ok(n),
            Some(_) => Err(ServiceError::invalid("amount", format!("must be between 0 and {MAX_QUOTA}"))),
            None => Err(ServiceError::invalid("amount", "is required by set, increment and decrement")),
        };
        Ok(match self.operation {
            QuotaOperation::Set => QuotaOp::Set(amount()?),
            QuotaOperation::Increment => QuotaOp::Increment(amount()?),
            QuotaOperation::Decrement => QuotaOp::Decrement(amount()?),
            QuotaOperation::Reset if self.amount.is_some() => {
                return Err(ServiceError::invalid("amount", "reset takes no amount"))
            }
            QuotaOperation::Reset => QuotaOp::Reset,
        })
    }
}

impl Service {
    /// Adjusts a key's quota in its current period; a key without a quota
    /// (or revoked) is a `Conflict`.
    pub async fn adjust_quota(&self, id: &str, req: &AdjustQuota, audit: &AuditContext) -> Result<KeyRecord> {
        let op = req.op()?;
        if let (Some(reloader), Some(owner)) = (&self.reloader, InlineId::new(id)) {
            reloader.sync_quotas(&[owner]).await;
        }
        let key = self.store.adjust_key_quota(id, op, audit).await?;
        self.publish().await;
        tracing::info!(key_id = %key.id, operation = ?req.operation, amount = ?req.amount, "key quota adjusted");
        Ok(key)
    }
}
