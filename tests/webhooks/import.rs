//! Keys brought in by `POST /v1/keys/import` are reported like keys made by
//! `POST /v1/keys`: one `key.created` per key the import creates, none for
//! a key answered as already there or for a refused one, and none when the
//! import rolls back.

use std::time::Duration;

use http::{Method, StatusCode};
use keygate::keys::foreign::sha256;
use serde_json::{json, Value};

use crate::kit::{pg, AdminCalls, TestGateway};
use crate::receiver::{Received, Receiver};
use crate::{check_delivery, events, fast, pairs, webhook};

fn sha256_hex(secret: &str) -> String {
    sha256(secret.as_bytes()).0.iter().map(|b| format!("{b:02x}")).collect()
}

/// The names of an object's fields, sorted.
fn fields(v: &Value) -> Vec<String> {
    let mut out: Vec<String> = v.as_object().map(|o| o.keys().cloned().collect()).unwrap_or_default();
    out.sort();
    out
}

async fn import(admin: &impl AdminCalls, account: &str, keys: Value) -> Value {
    let body = json!({ "account_id": account, "keys": keys });
    let (s, v) = admin.call(Method::POST, "/v1/keys/import", Some(body)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v
}

/// An earlier import of one key, then a call of three (that key again, a
/// plaintext and a sha256 one) and a refused fourth: the receiver gets
/// `key.created` for the earlier key and the two new ones only, each with
/// the payload of a key made by `POST /v1/keys` (no secret, no hash).
async fn imported_keys_are_reported_as_created(builder: TestGateway<'_>) {
    let receiver = Receiver::start().await;
    let gw = builder.config(fast).start().await;
    let admin = &gw.admin;
    let acc = admin.account("Migrated").await;
    let (_, secret) = webhook(admin, json!({ "url": receiver.url(), "events": ["key.created"] })).await;

    let (repeated, plain, hashed) = (
        "legacy-0001-5f4dcc3b5aa765d61d8327de",
        "legacy-0002-e99a18c428cb38d5f2608536",
        "legacy-0003-8621ffdbc5698829397d9748",
    );
    let repeat = json!({ "secret": repeated, "name": "repeated", "permission": "read" });
    let earlier = import(admin, &acc, json!([repeat])).await;
    let earlier = earlier["imported"][0]["key"]["id"].as_str().expect("id").to_owned();
    let answer = import(
        admin,
        &acc,
        json!([
            repeat,
            { "secret": plain, "name": "plain", "permission": "read" },
            { "hash": { "algorithm": "sha256", "encoding": "hex", "value": sha256_hex(hashed) }, "name": "hashed", "permission": "write" },
            { "secret": "legacy-0004-d8578edf8458ce06fbc5bb76", "name": "refused", "permission": "admin" },
        ]),
    )
    .await;
    let created: Vec<bool> = (0..3).map(|n| answer["imported"][n]["created"].as_bool().expect("created")).collect();
    assert_eq!(created, [false, true, true], "{answer}");
    assert_eq!(answer["imported"][0]["key"]["id"], earlier.as_str(), "{answer}");
    assert_eq!(answer["failed"][0]["index"], 3, "{answer}");
    let id = |n: usize| answer["imported"][n]["key"]["id"].as_str().expect("id").to_owned();
    let (plain_id, hashed_id) = (id(1), id(2));
    // A key made by POST /v1/keys, for the payload's shape.
    let (made, made_secret) = admin.key(&acc, "read").await;

    let expected = pairs(&[
        ("key.created", &earlier),
        ("key.created", &plain_id),
        ("key.created", &hashed_id),
        ("key.created", &made),
    ]);
    receiver.wait_for("four key.created", |got| got.len() >= expected.len()).await;
    // Nothing more comes: the repeat and the refused key send nothing.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let got = receiver.received();
    assert_eq!(events(&got), expected);

    let hashes = [sha256_hex(repeated), sha256_hex(plain), sha256_hex(hashed)];
    let mut secrets = vec![repeated, plain, hashed, made_secret.as_str()];
    secrets.extend(hashes.iter().map(String::as_str));
    for r in &got {
        check_delivery(r, &secret, &secrets);
    }
    let of = |key: &str| -> &Received { got.iter().find(|r| r.json["data"]["key"]["id"] == key).expect("event") };
    let normal = &of(&made).json["data"];
    for key in [&earlier, &plain_id, &hashed_id] {
        let data = &of(key).json["data"];
        assert_eq!(fields(data), fields(normal), "{data} against {normal}");
        assert_eq!(fields(&data["key"]), fields(&normal["key"]), "{data} against {normal}");
        assert_eq!(data["key"]["account_id"], acc.as_str(), "{data}");
    }
    assert_eq!(of(&hashed_id).json["data"]["key"]["permission"], "write");
    assert_eq!(of(&plain_id).json["data"]["key"]["name"], "plain");
}

#[tokio::test]
async fn imported_keys_are_reported_as_created_sqlite() {
    imported_keys_are_reported_as_created(TestGateway::new()).await;
}

#[tokio::test]
async fn imported_keys_are_reported_as_created_postgres() {
    let Some(db) = pg::fresh().await else { return };
    imported_keys_are_reported_as_created(TestGateway::new().postgres(db.url())).await;
}

/// An import that fails in the store writes no event: its keys and their
/// `key.created` roll back together.
#[tokio::test]
async fn a_rolled_back_import_sends_no_event() {
    let receiver = Receiver::start().await;
    let gw = TestGateway::new().config(fast).start().await;
    let admin = &gw.admin;
    let acc = admin.account("Migrated").await;
    webhook(admin, json!({ "url": receiver.url(), "events": ["key.created"] })).await;
    let db = gw.dir.path().join("keygate.db");
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display())).await.expect("db");
    sqlx::query("CREATE TRIGGER fail_second BEFORE INSERT ON api_keys WHEN NEW.name = 'second' BEGIN SELECT RAISE(ABORT, 'boom'); END")
        .execute(&pool)
        .await
        .expect("trigger");
    let keys = json!([
        { "secret": "legacy-0005-0cc175b9c0f1b6a831c399e2", "name": "first", "permission": "read" },
        { "secret": "legacy-0006-92eb5ffee6ae2fec3ad71c77", "name": "second", "permission": "read" },
    ]);
    let (s, _) = admin.call(Method::POST, "/v1/keys/import", Some(json!({ "account_id": acc, "keys": keys }))).await;
    assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR);
    let stored: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM webhook_events").fetch_one(&pool).await.expect("count");
    assert_eq!(stored, 0, "no event without its key");
    let (made, _) = admin.key(&acc, "read").await;
    receiver.wait_for("the key made after it", |got| !got.is_empty()).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(events(&receiver.received()), pairs(&[("key.created", &made)]));
}
