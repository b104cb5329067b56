//! Webhooks (issue 16): `/v1/webhooks` and its deliveries log, every event
//! type reaching a real receiver with a signature checked independently,
//! account scoping, receivers that fail, refuse or hang, a SIGKILL with
//! events still in the outbox, and replicas sharing one PostgreSQL — on
//! SQLite and PostgreSQL. `webhooks/import.rs`: imported keys reported as
//! created; `webhooks/quota_marks.rs`: `quota.threshold` re-armed by an
//! adjustment, and the marks of ended periods deleted.

mod kit;

#[path = "webhooks/api.rs"]
mod api;
#[path = "webhooks/delivery.rs"]
mod delivery;
#[path = "webhooks/import.rs"]
mod import;
#[path = "webhooks/quota_marks.rs"]
mod quota_marks;
#[path = "webhooks/receiver.rs"]
mod receiver;

use std::collections::BTreeSet;
use std::time::Duration;

use http::{Method, StatusCode};
use keygate::config::Config;
use keygate::keys::Period;
use keygate::store::QuotaThreshold;
use kit::{pg, AdminCalls, TestGateway};
use receiver::{verify, Received, Receiver};
use serde_json::{json, Value};

/// Every event type.
pub const ALL: [&str; 6] =
    ["key.created", "key.rotated", "key.revoked", "key.leaked", "key.expiring", "quota.threshold"];

/// Webhook settings fast enough for a test: claims every 25 ms, retries
/// from 100 ms, the expiry scan every 100 ms.
pub fn fast(config: &mut Config) {
    config.webhooks.poll_interval_ms = 25;
    config.webhooks.retry_initial_ms = 100;
    config.webhooks.retry_max_ms = 400;
    config.webhooks.expiring_scan_interval_ms = 100;
    config.webhooks.timeout_ms = 2_000;
}

/// Creates a webhook; returns (id, secret).
pub async fn webhook(admin: &impl AdminCalls, body: Value) -> (String, String) {
    let (s, v) = admin.call(Method::POST, "/v1/webhooks", Some(body)).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let secret = v["secret"].as_str().expect("secret").to_owned();
    assert!(secret.starts_with("whsec_"), "{secret}");
    (v["webhook"]["id"].as_str().expect("id").to_owned(), secret)
}

/// The deliveries log of a webhook (one page of up to 200 attempts).
pub async fn log(admin: &impl AdminCalls, id: &str) -> Vec<Value> {
    let (s, v) = admin.call(Method::GET, &format!("/v1/webhooks/{id}/deliveries?limit=200"), None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v["items"].as_array().expect("items").clone()
}

/// Checks what every delivery must be: JSON with exactly `id`, `type`,
/// `created_at` and `data`, signed with `secret`, holding none of
/// `secrets`.
pub fn check_delivery(r: &Received, secret: &str, secrets: &[&str]) {
    assert_eq!(r.content_type, "application/json");
    verify(secret, &r.signature, &r.body).unwrap_or_else(|e| panic!("{e}: {}", r.json));
    let mut fields: Vec<&str> = r.json.as_object().expect("object").keys().map(String::as_str).collect();
    fields.sort_unstable();
    assert_eq!(fields, ["created_at", "data", "id", "type"], "{}", r.json);
    assert!(r.id().starts_with("evt_"), "{}", r.json);
    let text = String::from_utf8_lossy(&r.body);
    for s in secrets.iter().chain([&secret, &kit::TOKEN]) {
        assert!(!text.contains(s), "a secret in a payload: {text}");
    }
}

/// `(type, key id or account id)` of each delivery, sorted.
fn events(got: &[Received]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = got
        .iter()
        .map(|r| {
            let subject = r.json["data"]["key"]["id"].as_str().or(r.json["data"]["key_id"].as_str()).unwrap_or("");
            (r.kind().to_owned(), subject.to_owned())
        })
        .collect();
    out.sort();
    out
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = list.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect();
    out.sort();
    out
}

/// Each event type, from the change that makes it to a receiver, signed;
/// a webhook of one account gets that account's events only; `key.expiring`
/// once however often the scan runs; `quota.threshold` once per period
/// through the function the quota ledger calls.
async fn every_event_type_reaches_its_webhooks(builder: TestGateway<'_>) {
    let everything = Receiver::start().await;
    let tenant = Receiver::start().await;
    let gw = builder.config(fast).start().await;
    let admin = &gw.admin;
    let a = admin.account("A").await;
    let b = admin.account("B").await;
    let (hook, secret) = webhook(admin, json!({ "url": everything.url(), "events": ALL })).await;
    let (_, tenant_secret) = webhook(admin, json!({ "url": tenant.url(), "events": ALL, "account_id": b })).await;

    let (k1, s1) = admin.key(&a, "read").await;
    let (s, rotated) = admin.call(Method::POST, &format!("/v1/keys/{k1}/rotate"), Some(json!({}))).await;
    assert_eq!(s, StatusCode::OK, "{rotated}");
    let s1b = rotated["secret"].as_str().expect("secret").to_owned();
    let (s, v) = admin.call(Method::POST, &format!("/v1/keys/{k1}/revoke"), None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (k2, s2) = admin.key(&b, "write").await;
    let (s, v) = admin.call(Method::POST, "/v1/keys/report-leak", Some(json!({ "secret": s2 }))).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    let in_3_days = keygate::clock::rfc3339(keygate::clock::now_ms() + 3 * 86_400_000);
    let body = json!({ "account_id": b, "name": "expiring", "permission": "read", "expires_at": in_3_days });
    let (k3, s3) = admin.create_key(body).await;
    let k3 = k3["id"].as_str().expect("id").to_owned();
    // A key expiring in 30 days is not reported.
    let in_30_days = keygate::clock::rfc3339(keygate::clock::now_ms() + 30 * 86_400_000);
    let body = json!({ "account_id": a, "name": "later", "permission": "read", "expires_at": in_30_days });
    let (k4, s4) = admin.create_key(body).await;
    let k4 = k4["id"].as_str().expect("id").to_owned();

    let store = gw.gateway.reloader.store();
    let crossing = QuotaThreshold {
        account_id: b.clone(),
        key_id: Some(k3.clone()),
        period: Period::Month,
        period_start: 1_764_547_200_000,
        limit: 100,
        used: 80,
        threshold: 80,
    };
    assert!(store.emit_quota_threshold(&crossing).await.expect("emit"), "the first crossing is emitted");
    assert!(!store.emit_quota_threshold(&crossing).await.expect("emit"), "once per period and threshold");

    let expected_b = [
        ("key.created", k2.as_str()),
        ("key.leaked", &k2),
        ("key.revoked", &k2),
        ("key.created", &k3),
        ("key.expiring", &k3),
        ("quota.threshold", &k3),
    ];
    let mut expected_all =
        vec![("key.created", k1.as_str()), ("key.rotated", &k1), ("key.revoked", &k1), ("key.created", &k4)];
    expected_all.extend(expected_b);
    everything.wait_for("every event", |got| got.len() >= expected_all.len()).await;
    tenant.wait_for("account B's events", |got| got.len() >= expected_b.len()).await;
    // Several more scans: nothing more arrives (key.expiring is sent once).
    tokio::time::sleep(Duration::from_millis(600)).await;
    let (got, got_b) = (everything.received(), tenant.received());
    assert_eq!(events(&got), pairs(&expected_all));
    assert_eq!(events(&got_b), pairs(&expected_b));

    let secrets = [s1.as_str(), &s1b, &s2, &s3, &s4, &tenant_secret];
    for r in &got {
        check_delivery(r, &secret, &secrets);
        assert!(r.json["data"]["key"]["preview"].is_null(), "{}", r.json);
    }
    for r in &got_b {
        check_delivery(r, &tenant_secret, &[&secret]);
        let account = r.json["data"]["key"]["account_id"].as_str().or(r.json["data"]["account_id"].as_str());
        assert_eq!(account, Some(b.as_str()), "{}", r.json);
    }
    let ids: BTreeSet<&str> = got.iter().map(Received::id).collect();
    assert_eq!(ids.len(), got.len(), "each event once");
    let leaked = got.iter().find(|r| r.kind() == "key.leaked").expect("leaked");
    assert_eq!(leaked.json["data"]["secret"], "current");
    assert!(leaked.json["data"]["key"]["revoked_at"].is_string(), "{}", leaked.json);
    let rotated = got.iter().find(|r| r.kind() == "key.rotated").expect("rotated");
    assert!(rotated.json["data"]["old_secret_valid_until"].is_string(), "{}", rotated.json);
    let quota = got.iter().find(|r| r.kind() == "quota.threshold").expect("quota");
    assert_eq!(
        quota.json["data"],
        json!({ "scope": "key", "account_id": b, "key_id": k3, "period": "month",
                "period_start": "2025-12-01T00:00:00Z", "limit": 100, "used": 80, "threshold": 80 })
    );

    // The log: one delivered attempt per event, same ids as received.
    let log = log(admin, &hook).await;
    assert_eq!(log.len(), got.len());
    for attempt in &log {
        assert_eq!(
            (
                &attempt["attempt"],
                &attempt["status_code"],
                &attempt["delivered"],
                &attempt["error"],
                &attempt["next_attempt_at"]
            ),
            (&json!(1), &json!(200), &json!(true), &Value::Null, &Value::Null),
            "{attempt}"
        );
        assert!(ids.contains(attempt["event_id"].as_str().expect("event id")), "{attempt}");
    }
}

#[tokio::test]
async fn every_event_type_reaches_its_webhooks_sqlite() {
    every_event_type_reaches_its_webhooks(TestGateway::new()).await;
}

#[tokio::test]
async fn every_event_type_reaches_its_webhooks_postgres() {
    let Some(db) = pg::fresh().await else { return };
    every_event_type_reaches_its_webhooks(TestGateway::new().postgres(db.url())).await;
}

/// No webhook subscribed: a change writes no event (the outbox only holds
/// what someone will receive), and a webhook only gets the types it named.
#[tokio::test]
async fn only_subscribed_types_are_sent() {
    let receiver = Receiver::start().await;
    let gw = TestGateway::new().config(fast).start().await;
    let admin = &gw.admin;
    let a = admin.account("A").await;
    let (before, _) = admin.key(&a, "read").await;
    let (_, secret) = webhook(admin, json!({ "url": receiver.url(), "events": ["key.revoked"] })).await;
    let (k, _) = admin.key(&a, "read").await;
    for id in [&before, &k] {
        let (s, v) = admin.call(Method::POST, &format!("/v1/keys/{id}/revoke"), None).await;
        assert_eq!(s, StatusCode::OK, "{v}");
    }
    let got = receiver.wait_for("two revocations", |got| got.len() >= 2).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(events(&receiver.received()), pairs(&[("key.revoked", &before), ("key.revoked", &k)]));
    for r in &got {
        check_delivery(r, &secret, &[]);
    }
}

/// `keygate webhooks create|list|deliveries|delete` against a running
/// gateway: the secret alone on stdout signs what the receiver gets.
#[tokio::test]
async fn the_cli_manages_webhooks() {
    let receiver = Receiver::start().await;
    let gw = TestGateway::new().config(fast).start().await;
    let admin_url = format!("http://{}", gw.gateway.admin_addr);
    let cli = |args: Vec<String>| {
        let admin_url = admin_url.clone();
        async move {
            tokio::task::spawn_blocking(move || {
                let mut full: Vec<&str> = args.iter().map(String::as_str).collect();
                full.extend(["--admin-url", &admin_url]);
                kit::process::run(&full, &[("KEYGATE_ADMIN_TOKEN", kit::TOKEN)], None)
            })
            .await
            .expect("cli")
        }
    };
    let args = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();

    let created = cli(args(&["webhooks", "create", &receiver.url(), "--event", "key.created,key.revoked"])).await;
    let created = created.ok("webhooks create");
    let secret = created.stdout.trim().to_owned();
    assert!(secret.starts_with("whsec_") && !secret.contains('\n'), "{}", created.stdout);
    assert!(created.stderr.contains("shown only once"), "{}", created.stderr);
    let listed = cli(args(&["webhooks", "list", "--json"])).await.ok("webhooks list").json();
    let id = listed["items"][0]["id"].as_str().expect("id").to_owned();
    assert_eq!(listed["items"][0]["events"], json!(["key.created", "key.revoked"]));
    assert!(!listed.to_string().contains(&secret));

    let acc = gw.admin.account("A").await;
    gw.admin.key(&acc, "read").await;
    let got = receiver.wait_for("key.created", |got| !got.is_empty()).await;
    check_delivery(&got[0], &secret, &[]);
    // The log's outcome is written just after the receiver answers.
    let mut table = String::new();
    for _ in 0..200 {
        table = cli(args(&["webhooks", "deliveries", &id])).await.ok("webhooks deliveries").stdout;
        if table.contains("delivered") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(table.starts_with("AT ") && table.contains("key.created") && table.contains("delivered"), "{table}");

    let bad = cli(args(&["webhooks", "create", "https://example.com/", "--event", "key.exploded"])).await;
    assert_eq!(bad.code, Some(1), "{}", bad.stderr);
    assert!(bad.stderr.contains("events[0]"), "{}", bad.stderr);
    cli(args(&["webhooks", "delete", &id])).await.ok("webhooks delete");
    let listed = cli(args(&["webhooks", "list", "--json"])).await.ok("webhooks list").json();
    assert_eq!(listed["items"], json!([]));
}

/// A change that rolls back leaves no event: a bulk revocation failing on
/// its second key sends nothing, and the revocation made after it is sent
/// once.
#[tokio::test]
async fn a_rolled_back_change_sends_no_event() {
    let receiver = Receiver::start().await;
    let gw = TestGateway::new().config(fast).start().await;
    let admin = &gw.admin;
    let acc = admin.account("A").await;
    webhook(admin, json!({ "url": receiver.url(), "events": ["key.revoked"] })).await;
    let (k1, _) = admin.key(&acc, "read").await;
    let (k2, _) = admin.key(&acc, "read").await;
    let db = gw.dir.path().join("keygate.db");
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display())).await.expect("db");
    let trigger = format!(
        "CREATE TRIGGER fail_second BEFORE UPDATE OF revoked_at ON api_keys WHEN NEW.id = '{k2}' BEGIN SELECT RAISE(ABORT, 'boom'); END"
    );
    sqlx::query(&trigger).execute(&pool).await.expect("trigger");
    let (s, _) = admin.call(Method::POST, "/v1/keys/bulk-revoke", Some(json!({ "ids": [k1, k2] }))).await;
    assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR);
    let stored: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM webhook_events").fetch_one(&pool).await.expect("count");
    assert_eq!(stored, 0, "no event without its change");
    let (s, _) = admin.call(Method::POST, &format!("/v1/keys/{k1}/revoke"), None).await;
    assert_eq!(s, StatusCode::OK);
    receiver.wait_for("the revocation", |got| !got.is_empty()).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(events(&receiver.received()), pairs(&[("key.revoked", &k1)]));
}

/// The quota ledger reports `quota.threshold` itself: spending through the
/// proxy that crosses 80 % and then 100 % of a key's quota sends one event
/// each, with the key, its account and the figures, and refused requests
/// past the limit send nothing more.
#[tokio::test]
async fn spending_past_80_and_100_percent_sends_quota_threshold_once_each() {
    let receiver = Receiver::start().await;
    let gw = TestGateway::new().config(fast).start().await;
    let admin = &gw.admin;
    let acc = admin.account("Metered").await;
    let (_, secret) = webhook(admin, json!({ "url": receiver.url(), "events": ["quota.threshold"] })).await;
    let body = json!({ "account_id": acc, "name": "metered", "permission": "read", "quota": { "limit": 10, "period": "day" } });
    let (key, key_secret) = admin.create_key(body).await;
    let key_id = key["id"].as_str().expect("id").to_owned();

    for _ in 0..8 {
        assert_eq!(kit::http::get_with_key(gw.proxy(), "/", &key_secret).await.status, StatusCode::OK);
    }
    let got = receiver.wait_for("the 80 % crossing", |got| !got.is_empty()).await;
    let data = &got[0].json["data"];
    assert_eq!(
        (data["scope"].as_str(), data["key_id"].as_str(), data["account_id"].as_str(), data["threshold"].as_u64()),
        (Some("key"), Some(key_id.as_str()), Some(acc.as_str()), Some(80)),
        "{data}"
    );
    assert_eq!((data["limit"].as_u64(), data["period"].as_str()), (Some(10), Some("day")), "{data}");
    assert!(data["used"].as_u64().is_some_and(|u| (8..=10).contains(&u)), "{data}");

    for _ in 0..2 {
        assert_eq!(kit::http::get_with_key(gw.proxy(), "/", &key_secret).await.status, StatusCode::OK);
    }
    for _ in 0..3 {
        assert_eq!(kit::http::get_with_key(gw.proxy(), "/", &key_secret).await.code(), "quota_exceeded");
    }
    let got = receiver.wait_for("the 100 % crossing", |got| got.len() >= 2).await;
    assert_eq!(got[1].json["data"]["threshold"].as_u64(), Some(100), "{}", got[1].json);
    for r in &got {
        check_delivery(r, &secret, &[&key_secret]);
    }
    tokio::time::sleep(Duration::from_millis(600)).await;
    let thresholds: Vec<u64> =
        receiver.received().iter().filter_map(|r| r.json["data"]["threshold"].as_u64()).collect();
    assert_eq!(thresholds, [80, 100], "once each");
    gw.gateway.stop().await;
}
