//! The service against a real SQLite store and a real reloader: what it
//! writes is in the snapshot when it returns, what it refuses is not
//! written at all.

use std::sync::Arc;

use http::Method;
use tempfile::TempDir;

use super::*;
use crate::clock::now_ms;
use crate::config::StoreConfig;
use crate::keys::{KeyHash, Permission, Refusal};
use crate::store::{AuditContext, KeyRecord, Role, StoreError};

async fn store(dir: &TempDir) -> Store {
    let url = format!("sqlite://{}", dir.path().join("k.db").display());
    Store::connect(&StoreConfig { url, ..StoreConfig::default() }).await.expect("open the store")
}

/// A service on a running node's reloader, with one account ("Acme").
struct Online {
    service: Service,
    reloader: Arc<Reloader>,
    account_id: String,
    _dir: TempDir,
}

impl Online {
    async fn start() -> Online {
        let dir = tempfile::tempdir().expect("tempdir");
        let reloader = Reloader::start(store(&dir).await).await.expect("reloader");
        let service = Service::new(Arc::clone(&reloader), &KeysConfig::default());
        let account = service.create_account(account("Acme"), &audit()).await.expect("account");
        Online { service, reloader, account_id: account.id, _dir: dir }
    }

    /// A new key on the account.
    async fn key(&self) -> Issued<KeyRecord> {
        self.service.create_key(key(&self.account_id), &audit()).await.expect("key")
    }
}

fn audit() -> AuditContext {
    AuditContext { actor_id: "test".into(), actor_name: "service tests".into(), ..AuditContext::default() }
}

fn account(name: &str) -> CreateAccount {
    CreateAccount { name: name.into(), api_access: None, plan_id: None }
}

fn key(account_id: &str) -> CreateKey {
    CreateKey {
        account_id: account_id.into(),
        name: "reports".into(),
        permission: Permission::Read,
        description: None,
        environment: None,
        expires_at: None,
        enabled: None,
        rate_limit: None,
        quota: None,
        allowed_ips: Vec::new(),
        allowed_routes: Vec::new(),
        metadata: None,
    }
}

/// What the proxy on this node would answer for `secret` right now.
fn check(reloader: &Reloader, secret: &Secret) -> std::result::Result<(), Refusal> {
    reloader.keyset().load().check(secret.expose().as_bytes(), &Method::GET, now_ms()).map(|_| ())
}

#[tokio::test]
async fn key_writes_are_in_the_snapshot_when_the_call_returns() {
    let node = Online::start().await;
    let created = node.key().await;
    assert_eq!(check(&node.reloader, &created.secret), Ok(()), "a new key works at once");

    let rotated = node.service.rotate_key(&created.record, None, &audit()).await.expect("rotate");
    assert_eq!(check(&node.reloader, &rotated.secret), Ok(()), "the new secret works at once");
    assert!(check(&node.reloader, &created.secret).is_err(), "the old secret stops at once without grace");

    let edit = UpdateKey { enabled: Some(false), ..UpdateKey::default() };
    node.service.update_key(&rotated.record.id, edit, &audit()).await.expect("disable");
    assert_eq!(check(&node.reloader, &rotated.secret), Err(Refusal::KeyDisabled));

    node.service.revoke_key(&rotated.record.id, &audit()).await.expect("revoke");
    assert_eq!(check(&node.reloader, &rotated.secret), Err(Refusal::KeyRevoked));
}

#[tokio::test]
async fn api_access_off_is_in_force_at_once_and_refuses_new_keys() {
    let node = Online::start().await;
    let created = node.key().await;

    let off = UpdateAccount { api_access: Some(false), ..UpdateAccount::default() };
    node.service.update_account(&node.account_id, off, &audit()).await.expect("api_access off");
    assert_eq!(check(&node.reloader, &created.secret), Err(Refusal::ApiAccessDisabled));
    let refused = node.service.create_key(key(&node.account_id), &audit()).await;
    assert!(matches!(refused, Err(ServiceError::Refused(Refusal::ApiAccessDisabled))), "{refused:?}");
}

#[tokio::test]
async fn bulk_revoke_and_leak_report_are_in_force_at_once() {
    let node = Online::start().await;
    let a = node.key().await;
    let b = node.key().await;

    let ids = vec![a.record.id.clone(), "key_none".into()];
    let (revoked, not_found) = node.service.revoke_keys(ids, None, &audit()).await.expect("bulk revoke");
    assert_eq!((revoked, not_found), (vec![a.record.id.clone()], vec!["key_none".to_owned()]));
    assert_eq!(check(&node.reloader, &a.secret), Err(Refusal::KeyRevoked));

    node.service.report_leak(b.secret.expose(), None, &audit()).await.expect("leak");
    assert_eq!(check(&node.reloader, &b.secret), Err(Refusal::KeyRevoked));
}

#[tokio::test]
async fn an_invalid_request_writes_nothing() {
    let node = Online::start().await;
    let before = node.service.store().revision().await.expect("revision");
    let cases: Vec<(CreateKey, &str)> = vec![
        (
            CreateKey { allowed_ips: vec!["10.0.0.0/8".into(), "nope".into()], ..key(&node.account_id) },
            "allowed_ips[1]",
        ),
        (CreateKey { name: " \t ".into(), ..key(&node.account_id) }, "name"),
        (CreateKey { expires_at: Some("2000-01-01T00:00:00Z".into()), ..key(&node.account_id) }, "expires_at"),
        (key("acc_none"), "account_id"),
    ];
    for (req, field) in cases {
        match node.service.create_key(req, &audit()).await {
            Err(ServiceError::Invalid { field: f, .. }) => assert_eq!(f, field),
            other => panic!("{field}: {other:?}"),
        }
    }
    assert!(matches!(
        node.service.revoke_keys(Vec::new(), None, &audit()).await,
        Err(ServiceError::Invalid { field, .. }) if field == "ids"
    ));
    assert_eq!(node.service.store().revision().await.expect("revision"), before, "a refused write bumped the revision");
}

#[tokio::test]
async fn offline_token_create_refuses_an_invalid_name_and_account() {
    let dir = tempfile::tempdir().expect("tempdir");
    let service = Service::offline(store(&dir).await, &KeysConfig::default());
    for name in ["", "   ", "ci\u{7}"] {
        let req = CreateToken { name: name.into(), role: Role::Owner, account_id: None };
        let refused = service.create_admin_token(req, &audit()).await;
        assert!(
            matches!(&refused, Err(ServiceError::Invalid { field, .. }) if field == "name"),
            "{name:?}: {refused:?}"
        );
    }
    let req = CreateToken { name: "ci".into(), role: Role::Admin, account_id: Some("acc_none".into()) };
    let refused = service.create_admin_token(req, &audit()).await;
    assert!(matches!(&refused, Err(ServiceError::Invalid { field, .. }) if field == "account_id"), "{refused:?}");
    assert_eq!(service.store().list_admin_tokens(None).await.expect("list"), Vec::new());
}

#[tokio::test]
async fn token_role_round_trips_through_the_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let service = Service::offline(store(&dir).await, &KeysConfig::default());
    for role in [Role::Owner, Role::Admin, Role::Viewer] {
        let req = CreateToken { name: format!(" {} ", role.as_str()), role, account_id: None };
        let issued = service.create_admin_token(req, &audit()).await.expect("token");
        assert_eq!(issued.record.name, role.as_str(), "the name is trimmed");
        assert!(issued.secret.expose().starts_with("kga_"));
        let found = service.store().admin_token_by_hash(&KeyHash::of(issued.secret.expose().as_bytes())).await;
        assert_eq!(found.expect("lookup").map(|t| t.role), Some(role));
        service.delete_admin_token(&issued.record.id, None, &audit()).await.expect("delete");
        let again = service.delete_admin_token(&issued.record.id, None, &audit()).await;
        assert!(matches!(again, Err(ServiceError::Store(StoreError::NotFound))), "{again:?}");
    }
}
