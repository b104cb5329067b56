//! Webhook writes: create (with a new signing secret) and delete. The
//! checks a receiver URL must pass live here; who may ask is the admin
//! API's to decide. Webhooks are not part of the key snapshot: nothing to
//! publish.

use serde::Deserialize;
use utoipa::ToSchema;

use super::{Issued, Result, Service, ServiceError};
use crate::store::{AuditContext, EventType, NewWebhook, StoreError, Webhook};
use crate::webhooks::sign;

/// Longest receiver URL taken.
const MAX_URL: usize = 2_048;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "url": "https://hooks.example.com/keygate",
    "events": ["key.created", "key.revoked", "key.leaked"],
    "account_id": null
}))]
pub struct CreateWebhook {
    /// `http://` or `https://`, with no user or password in it.
    pub url: String,
    /// One or more of `key.created`, `key.rotated`, `key.revoked`,
    /// `key.leaked`, `key.expiring`, `quota.threshold`.
    pub events: Vec<EventType>,
    /// `acc_…`: only this account's events; `null`: every account's.
    #[serde(default)]
    pub account_id: Option<String>,
}

/// Checks a receiver URL: absolute http(s), a host, no credentials, no
/// fragment. The message never repeats the URL (it may hold a token in
/// its query).
pub fn url(text: &str) -> Result<String> {
    let invalid = |m: &str| ServiceError::invalid("url", m);
    if text.is_empty() || text.len() > MAX_URL {
        return Err(invalid("must be 1 to 2048 characters"));
    }
    if text.contains('#') {
        return Err(invalid("must not have a fragment"));
    }
    let uri: http::Uri = text.parse().map_err(|_| invalid("not a valid URL"))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        _ => return Err(invalid("must be an http:// or https:// URL")),
    }
    let authority = uri.authority().ok_or_else(|| invalid("must name a host"))?;
    if authority.as_str().contains('@') {
        return Err(invalid("must not hold a user name or password"));
    }
    if authority.host().is_empty() {
        return Err(invalid("must name a host"));
    }
    Ok(text.to_owned())
}

impl Service {
    /// Creates a webhook with a new secret, shown to the caller this once.
    pub async fn create_webhook(&self, req: CreateWebhook, audit: &AuditContext) -> Result<Issued<Webhook>> {
        let url = url(req.url.trim())?;
        let mut events = req.events;
        if events.is_empty() {
            return Err(ServiceError::invalid("events", "name at least one event"));
        }
        events.sort();
        events.dedup();
        let account_id = req.account_id.filter(|a| !a.is_empty());
        let secret = sign::new_secret();
        let new = NewWebhook { url, events, account_id, secret: secret.expose().to_owned() };
        let hook = match self.store.create_webhook(&new, audit).await {
            Err(StoreError::NotFound) => return Err(ServiceError::invalid("account_id", "no such account")),
            other => other?,
        };
        tracing::info!(webhook_id = %hook.id, "webhook created");
        Ok(Issued { record: hook, secret })
    }

    /// Deletes a webhook with its pending deliveries and its log.
    pub async fn delete_webhook(&self, id: &str, audit: &AuditContext) -> Result<Webhook> {
        let hook = self.store.delete_webhook(id, audit).await?;
        tracing::info!(webhook_id = %hook.id, "webhook deleted");
        Ok(hook)
    }
}

#[cfg(test)]
mod tests {
    use super::url;

    #[test]
    fn urls_are_checked_without_being_echoed() {
        for good in ["https://hooks.example.com/k?x=1", "http://127.0.0.1:8080/", "http://[::1]:9/h"] {
            assert!(url(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "ftp://example.com/",
            "example.com/hook",
            "/hook",
            "https://user:hunter2@example.com/",
            "https://example.com/#frag",
            "http:///x",
        ] {
            let e = url(bad).expect_err(bad).to_string();
            assert!(e.starts_with("url: "), "{e}");
            assert!(!e.contains("hunter2"), "{e}");
        }
    }
}
