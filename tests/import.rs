//! Key import (`POST /v1/keys/import`, docs/admin-api.md#import and
//! docs/keys.md#imported-keys), black-box against the whole gateway on
//! 127.0.0.1:0 in front of a real upstream, on SQLite and on PostgreSQL:
//! plaintext and sha256 imports used through the proxy and forward auth,
//! idempotency, refusals by index, the 1,000-key cap, the checksum still
//! checked before any lookup, the move of a key imported by hash to blake3
//! on its first use (the row, a restart, a second replica), tenancy, and
//! `keygate keys import` on a CSV file. `import/binary.rs` runs the real
//! binary.

mod kit;

#[path = "import/binary.rs"]
mod binary;

use std::time::{Duration, Instant};

use base64::Engine;
use http::{Method, StatusCode};
use keygate::keys::foreign::sha256;
use keygate::keys::KeyHash;
use kit::http::{fetch, get_with_key, Reply};
use kit::{AdminCalls, Gateway, TestGateway};
use serde_json::{json, Value};

/// A secret of another system: no prefix, no checksum.
pub const LEGACY: &str = "legacy_8f14e45fceea167a5a36dedd4bea2543";

pub fn sha256_hex(secret: &str) -> String {
    sha256(secret.as_bytes()).0.iter().map(|b| format!("{b:02x}")).collect()
}

fn sha256_base64(secret: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(sha256(secret.as_bytes()).0)
}

/// The whole gateway, with forward auth on, over SQLite or (`pg`) a fresh
/// PostgreSQL database; `None` when PostgreSQL is wanted and unreachable.
async fn gateway(pg: bool) -> Option<(Gateway, Option<kit::pg::Database>)> {
    let db = if pg { Some(kit::pg::fresh().await?) } else { None };
    let mut builder = TestGateway::new().config(|c| {
        c.authz.listen = Some("127.0.0.1:0".parse().expect("addr"));
        c.usage.flush_interval_ms = 600_000;
    });
    if let Some(db) = &db {
        builder = builder.postgres(db.url());
    }
    Some((builder.start().await, db))
}

/// `POST /v1/keys/import` into `account`.
async fn import(admin: &impl AdminCalls, account: &str, keys: Value) -> (StatusCode, Value) {
    admin.call(Method::POST, "/v1/keys/import", Some(json!({ "account_id": account, "keys": keys }))).await
}

/// An import that must answer 200; the answer.
async fn imported(admin: &impl AdminCalls, account: &str, keys: Value) -> Value {
    let (s, v) = import(admin, account, keys).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v
}

fn key_id(answer: &Value, n: usize) -> String {
    answer["imported"][n]["key"]["id"].as_str().unwrap_or_else(|| panic!("imported[{n}]: {answer}")).to_owned()
}

/// One sample of a metric on the admin port (0 when absent).
pub async fn metric(admin: std::net::SocketAddr, name: &str) -> f64 {
    let scrape = fetch(Method::GET, &format!("http://{admin}/metrics"), &[], "").await;
    let text = String::from_utf8_lossy(&scrape.body).into_owned();
    text.lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// Waits until `check` holds, up to `limit`.
pub async fn within<F, Fut>(limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while !check().await {
        assert!(started.elapsed() < limit, "not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// What the store holds for a key: hash algorithm, secret hash, preview.
pub async fn stored(store_url: &str, id: &str) -> (String, Vec<u8>, String) {
    let sql = "SELECT hash_algorithm, secret_hash, preview FROM api_keys WHERE id = $1";
    if store_url.starts_with("sqlite:") {
        let pool = sqlx::SqlitePool::connect(store_url).await.expect("sqlite");
        let row = sqlx::query_as(sql).bind(id).fetch_one(&pool).await.expect("row");
        pool.close().await;
        row
    } else {
        let pool = sqlx::PgPool::connect(store_url).await.expect("postgres");
        let row = sqlx::query_as(sql).bind(id).fetch_one(&pool).await.expect("row");
        pool.close().await;
        row
    }
}

fn store_url(gw: &Gateway, db: &Option<kit::pg::Database>) -> String {
    match db {
        Some(db) => db.url(),
        None => format!("sqlite://{}", gw.dir.path().join("keygate.db").display()),
    }
}

/// A forward-auth subrequest for `method uri` with `key` as a Bearer token.
async fn ask(gw: &Gateway, key: &str, method: &str, uri: &str) -> Reply {
    let addr = gw.gateway.authz_addr.expect("forward auth on");
    let auth = format!("Bearer {key}");
    let headers = [("x-forwarded-method", method), ("x-forwarded-uri", uri), ("authorization", auth.as_str())];
    fetch(Method::GET, &format!("http://{addr}/auth"), &headers, "").await
}

async fn send(gw: &Gateway, method: Method, key: &str) -> Reply {
    let auth = format!("Bearer {key}");
    fetch(method, &format!("http://{}/v1/things", gw.proxy()), &[("authorization", auth.as_str())], "").await
}

macro_rules! on_both_stores {
    ($case:ident, $sqlite:ident, $postgres:ident) => {
        #[tokio::test]
        async fn $sqlite() {
            $case(false).await;
        }

        #[tokio::test]
        async fn $postgres() {
            $case(true).await;
        }
    };
}

on_both_stores!(plaintext, imported_secrets_work_on_the_proxy_and_forward_auth, on_postgres_too);

async fn plaintext(pg: bool) {
    let Some((gw, _db)) = gateway(pg).await else { return };
    let acc = gw.admin.account("Migrated").await;
    let kg = keygate::keys::generate("kg_live");
    let answer = imported(
        &gw.admin,
        &acc,
        json!([
            { "secret": LEGACY, "name": "legacy reader", "permission": "read", "metadata": { "from": "old-gateway" } },
            { "secret": kg.expose(), "name": "from another keygate", "permission": "write", "environment": "test" },
        ]),
    )
    .await;
    assert_eq!(answer["failed"], json!([]), "{answer}");
    let legacy = &answer["imported"][0];
    assert_eq!((legacy["index"].as_u64(), legacy["created"].as_bool()), (Some(0), Some(true)));
    assert_eq!(legacy["key"]["preview"], "…2543", "an imported secret shows its last four characters");
    assert_eq!(legacy["key"]["prefix"], "");
    assert_eq!(legacy["key"]["metadata"]["from"], "old-gateway");
    assert_eq!(answer["imported"][1]["key"]["preview"], kg.preview(), "a keygate key keeps keygate's preview");
    assert_eq!(answer["imported"][1]["key"]["prefix"], "kg_live");
    let id = key_id(&answer, 0);

    let r = send(&gw, Method::GET, LEGACY).await;
    assert_eq!(r.status, StatusCode::OK, "{}", String::from_utf8_lossy(&r.body));
    let echoed = r.json();
    assert_eq!(echoed["headers"]["x-keygate-key-id"][0], id.as_str(), "{echoed}");
    assert!(echoed["headers"].get("authorization").is_none(), "the credential is stripped");
    assert_eq!(send(&gw, Method::POST, LEGACY).await.code(), "insufficient_permission");
    assert_eq!(send(&gw, Method::DELETE, kg.expose()).await.status, StatusCode::OK);

    let allowed = ask(&gw, LEGACY, "GET", "/v1/things?page=2").await;
    assert_eq!(allowed.status, StatusCode::OK);
    assert_eq!(allowed.header("x-keygate-key-id"), Some(id.as_str()));
    assert_eq!(ask(&gw, LEGACY, "PUT", "/v1/things").await.code(), "insufficient_permission");
    let (_, verdict) = gw.admin.call(Method::POST, "/v1/keys/verify", Some(json!({ "secret": LEGACY }))).await;
    assert_eq!((verdict["valid"].as_bool(), verdict["key_id"].as_str()), (Some(true), Some(id.as_str())));

    let (_, audit) = gw.admin.call(Method::GET, "/v1/audit?action=key.import", None).await;
    let entries = audit["items"].as_array().expect("items");
    assert_eq!(entries.len(), 2, "one entry per key created: {audit}");
    let text = audit.to_string();
    assert!(!text.contains(LEGACY) && !text.contains(kg.expose()), "no secret in the audit trail");
}

on_both_stores!(by_hash, sha256_hex_and_base64_imports_move_to_blake3_on_first_use, by_hash_on_postgres_too);

async fn by_hash(pg: bool) {
    let Some((gw, db)) = gateway(pg).await else { return };
    let acc = gw.admin.account("Migrated").await;
    let (hex_secret, b64_secret) = ("partner-one-secret-Qm9vYmFy-9xYz", "partner-two-secret+/=-with-punct!");
    let answer = imported(
        &gw.admin,
        &acc,
        json!([
            { "hash": { "algorithm": "sha256", "encoding": "hex", "value": sha256_hex(hex_secret).to_uppercase() }, "name": "hex", "permission": "read" },
            { "hash": { "algorithm": "sha256", "encoding": "base64", "value": sha256_base64(b64_secret) }, "name": "b64", "permission": "write" },
        ]),
    )
    .await;
    assert_eq!(answer["failed"], json!([]), "{answer}");
    let (hex_id, b64_id) = (key_id(&answer, 0), key_id(&answer, 1));
    assert_eq!(answer["imported"][0]["key"]["preview"], "…", "nothing of a secret known only by hash");
    let url = store_url(&gw, &db);
    let (algorithm, hash, _) = stored(&url, &hex_id).await;
    assert_eq!((algorithm.as_str(), hash.as_slice()), ("sha256", sha256(hex_secret.as_bytes()).0.as_slice()));
    assert_eq!(metric(gw.gateway.admin_addr, "keygate_foreign_hash_keys").await, 2.0);

    // First use: allowed at once, and moved to blake3 off the request path.
    assert_eq!(send(&gw, Method::GET, hex_secret).await.status, StatusCode::OK);
    assert_eq!(ask(&gw, b64_secret, "DELETE", "/v1/things/1").await.status, StatusCode::OK);
    for (id, secret) in [(&hex_id, hex_secret), (&b64_id, b64_secret)] {
        within(Duration::from_secs(5), || async { stored(&url, id).await.0 == "blake3" }).await;
        let (_, hash, preview) = stored(&url, id).await;
        assert_eq!(hash.as_slice(), KeyHash::of(secret.as_bytes()).0.as_slice(), "the store keeps the blake3");
        assert_eq!(preview, format!("…{}", &secret[secret.len() - 4..]));
    }
    within(Duration::from_secs(2), || async {
        metric(gw.gateway.admin_addr, "keygate_foreign_hash_keys").await == 0.0
    })
    .await;
    assert_eq!(metric(gw.gateway.admin_addr, "keygate_foreign_hash_moved_total").await, 2.0);
    // From now on found by blake3: no sha256 lookup.
    let lookups = metric(gw.gateway.admin_addr, "keygate_foreign_hash_lookups_total").await;
    assert_eq!(send(&gw, Method::GET, hex_secret).await.status, StatusCode::OK);
    assert_eq!(send(&gw, Method::POST, hex_secret).await.code(), "insufficient_permission");
    assert_eq!(metric(gw.gateway.admin_addr, "keygate_foreign_hash_lookups_total").await, lookups);
    let (_, key) = gw.admin.call(Method::GET, &format!("/v1/keys/{hex_id}"), None).await;
    assert_eq!(key["preview"], "…9xYz", "{key}");
}

on_both_stores!(idempotent, importing_again_answers_the_same_key, idempotent_on_postgres_too);

async fn idempotent(pg: bool) {
    let Some((gw, _db)) = gateway(pg).await else { return };
    let acc = gw.admin.account("Migrated").await;
    let hashed = "hashed-first-then-plain-0123456789";
    let keys = json!([
        { "secret": LEGACY, "name": "plain", "permission": "read" },
        { "hash": { "algorithm": "sha256", "encoding": "hex", "value": sha256_hex(hashed) }, "name": "hash", "permission": "read" },
    ]);
    let first = imported(&gw.admin, &acc, keys.clone()).await;
    let again = imported(&gw.admin, &acc, keys).await;
    for n in 0..2 {
        assert_eq!(key_id(&again, n), key_id(&first, n));
        assert_eq!(again["imported"][n]["created"], false, "{again}");
    }
    // The same secret in the other form is the same key too: a hash of a
    // secret imported in plaintext, and the plaintext of one imported by
    // hash (which moves it to blake3 at once).
    let other_form = imported(
        &gw.admin,
        &acc,
        json!([
            { "hash": { "algorithm": "sha256", "encoding": "base64", "value": sha256_base64(LEGACY) }, "name": "x", "permission": "write" },
            { "secret": hashed, "name": "y", "permission": "write" },
        ]),
    )
    .await;
    assert_eq!(key_id(&other_form, 0), key_id(&first, 0));
    assert_eq!(key_id(&other_form, 1), key_id(&first, 1));
    assert_eq!(other_form["imported"][1]["key"]["name"], "hash", "answered unchanged");
    assert_eq!(other_form["imported"][1]["key"]["preview"], "…6789", "moved to blake3 with the plaintext");
    let (_, list) = gw.admin.call(Method::GET, &format!("/v1/keys?account_id={acc}"), None).await;
    assert_eq!(list["items"].as_array().expect("items").len(), 2, "no duplicate: {list}");
    assert_eq!(send(&gw, Method::GET, hashed).await.status, StatusCode::OK);
    // Another account cannot take (or learn the key of) a secret in use.
    let other = gw.admin.account("Other").await;
    let taken = imported(&gw.admin, &other, json!([{ "secret": LEGACY, "name": "mine", "permission": "write" }])).await;
    assert_eq!(taken["imported"], json!([]));
    assert_eq!(taken["failed"][0]["code"], "conflict");
    assert!(!taken.to_string().contains(&key_id(&first, 0)), "{taken}");
}

on_both_stores!(partial, failures_are_reported_by_index_and_the_rest_imported, partial_on_postgres_too);

async fn partial(pg: bool) {
    let Some((gw, _db)) = gateway(pg).await else { return };
    let acc = gw.admin.account("Migrated").await;
    let mut forged = keygate::keys::generate("kg_live").expose().as_bytes().to_vec();
    forged[12] = if forged[12] == b'a' { b'b' } else { b'a' };
    let forged = String::from_utf8(forged).expect("ascii");
    let hex = |v: &str| json!({ "algorithm": "sha256", "encoding": "hex", "value": v });
    let answer = imported(
        &gw.admin,
        &acc,
        json!([
            { "secret": "good-secret-number-one-0001", "name": "ok 0", "permission": "read" },
            { "secret": "good-secret-number-two-0002", "name": "bad permission", "permission": "admin" },
            { "hash": hex("abcd"), "name": "short hash", "permission": "read" },
            { "secret": "good-secret-number-one-0001", "name": "duplicate of 0", "permission": "read" },
            { "secret": forged, "name": "bad checksum", "permission": "read" },
            { "secret": "too-short", "name": "short secret", "permission": "read" },
            { "secret": "has spaces in it 0123456789", "name": "spaces", "permission": "read" },
            { "secret": "good-secret-number-three-03", "permission": "read" },
            { "secret": "good-secret-number-four-004", "hash": hex(&"0".repeat(64)), "name": "both", "permission": "read" },
            { "secret": "good-secret-number-five-005", "name": "past", "permission": "read", "expires_at": "2001-01-01T00:00:00Z" },
            { "hash": { "algorithm": "md5", "encoding": "hex", "value": "x" }, "name": "md5", "permission": "read" },
            "not an object",
            { "hash": hex(&"ab".repeat(32)), "name": "ok 12", "permission": "write", "allowed_ips": ["10.0.0.0/8"] },
        ]),
    )
    .await;
    let indexes: Vec<u64> =
        answer["imported"].as_array().expect("imported").iter().filter_map(|i| i["index"].as_u64()).collect();
    assert_eq!(indexes, [0, 12], "{answer}");
    let failed: Vec<(u64, &str, &str)> = answer["failed"]
        .as_array()
        .expect("failed")
        .iter()
        .map(|f| {
            (f["index"].as_u64().expect("index"), f["code"].as_str().expect("code"), f["field"].as_str().unwrap_or(""))
        })
        .collect();
    assert_eq!(
        failed,
        [
            (1, "validation_failed", "permission"),
            (2, "validation_failed", "hash.value"),
            (3, "conflict", ""),
            (4, "validation_failed", "secret"),
            (5, "validation_failed", "secret"),
            (6, "validation_failed", "secret"),
            (7, "validation_failed", "name"),
            (8, "validation_failed", ""),
            (9, "validation_failed", "expires_at"),
            (10, "validation_failed", "hash.algorithm"),
            (11, "validation_failed", ""),
        ],
        "{answer}"
    );
    for f in answer["failed"].as_array().expect("failed") {
        let detail = f["detail"].as_str().expect("detail");
        assert!(!detail.is_empty() && !detail.contains("good-secret") && !detail.contains(&forged), "{detail}");
    }
    assert!(answer["failed"][2]["detail"].as_str().expect("detail").contains("key 0"), "{answer}");
    assert_eq!(send(&gw, Method::GET, "good-secret-number-one-0001").await.status, StatusCode::OK);
    assert_eq!(send(&gw, Method::GET, "good-secret-number-two-0002").await.code(), "invalid_key", "not imported");
}

#[tokio::test]
async fn more_than_1000_keys_are_refused_whole() {
    let Some((gw, _db)) = gateway(false).await else { return };
    let acc = gw.admin.account("Migrated").await;
    let keys: Vec<Value> = (0..1001)
        .map(|i| json!({ "secret": format!("bulk-secret-{i:06}-abcdefgh"), "name": format!("k{i}"), "permission": "read" }))
        .collect();
    let (s, v) = import(&gw.admin, &acc, Value::Array(keys.clone())).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!((v["code"].as_str(), v["field"].as_str()), (Some("validation_failed"), Some("keys")));
    let (s, v) = import(&gw.admin, &acc, json!([])).await;
    assert_eq!((s, v["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("keys")));
    let (_, list) = gw.admin.call(Method::GET, &format!("/v1/keys?account_id={acc}"), None).await;
    assert_eq!(list["items"], json!([]), "nothing imported");
    // 1,000 is fine, in one transaction.
    let answer = imported(&gw.admin, &acc, Value::Array(keys[..1000].to_vec())).await;
    assert_eq!(answer["imported"].as_array().expect("imported").len(), 1000);
    assert_eq!(send(&gw, Method::GET, "bulk-secret-000999-abcdefgh").await.status, StatusCode::OK);
}

#[tokio::test]
async fn a_bad_checksum_kg_key_is_refused_without_a_lookup() {
    let Some((gw, _db)) = gateway(false).await else { return };
    let acc = gw.admin.account("Migrated").await;
    // A key imported by hash and not used: unknown secrets are looked up
    // by sha256 too, and counted.
    imported(
        &gw.admin,
        &acc,
        json!([{ "hash": { "algorithm": "sha256", "encoding": "hex", "value": sha256_hex("never-used-secret-0123") }, "name": "idle", "permission": "read" }]),
    )
    .await;
    let (_, valid) = gw.admin.key(&acc, "read").await;
    let mut forged = valid.clone().into_bytes();
    let i = forged.len() - 3;
    forged[i] = if forged[i] == b'a' { b'b' } else { b'a' };
    let forged = String::from_utf8(forged).expect("ascii");
    let admin = gw.gateway.admin_addr;
    let lookups = metric(admin, "keygate_foreign_hash_lookups_total").await;
    for malformed in [forged.as_str(), "kg_live_short", "kg_live_but-not-base62-at-all-but-long-enough-xx", "tiny"] {
        let r = get_with_key(gw.proxy(), "/", malformed).await;
        assert_eq!((r.status, r.code()), (StatusCode::UNAUTHORIZED, "invalid_key".into()), "{malformed}");
        assert_eq!(ask(&gw, malformed, "GET", "/").await.code(), "invalid_key");
    }
    assert_eq!(metric(admin, "keygate_foreign_hash_lookups_total").await, lookups, "refused before any lookup");
    // The same request with an unknown secret of a foreign shape is looked up.
    assert_eq!(get_with_key(gw.proxy(), "/", "unknown-foreign-secret-0123").await.code(), "invalid_key");
    assert_eq!(metric(admin, "keygate_foreign_hash_lookups_total").await, lookups + 1.0);
    // And keygate's own keys never reach the sha256 index.
    assert_eq!(get_with_key(gw.proxy(), "/", &valid).await.status, StatusCode::OK);
    assert_eq!(metric(admin, "keygate_foreign_hash_lookups_total").await, lookups + 1.0);
}

#[tokio::test]
async fn a_moved_key_reaches_a_second_replica_and_survives_a_restart() {
    let Some(db) = kit::pg::fresh().await else { return };
    let replica = |poll_ms: u64| {
        TestGateway::new()
            .postgres(db.url())
            .config(move |c| {
                c.store.poll_interval_ms = poll_ms;
                c.usage.flush_interval_ms = 600_000;
            })
            .start()
    };
    // B polls once a minute: what reaches it in time came by NOTIFY.
    let (a, b) = tokio::join!(replica(1_000), replica(60_000));
    let acc = a.admin.account("Migrated").await;
    let secret = "replicated-partner-secret-0042";
    let answer = imported(
        &a.admin,
        &acc,
        json!([{ "hash": { "algorithm": "sha256", "encoding": "hex", "value": sha256_hex(secret) }, "name": "p", "permission": "read" }]),
    )
    .await;
    let id = key_id(&answer, 0);
    within(Duration::from_secs(2), || async { metric(b.gateway.admin_addr, "keygate_foreign_hash_keys").await == 1.0 })
        .await;
    // First used on A; B learns the move by NOTIFY and finds it by blake3.
    assert_eq!(get_with_key(a.proxy(), "/", secret).await.status, StatusCode::OK);
    within(Duration::from_secs(5), || async { stored(&db.url(), &id).await.0 == "blake3" }).await;
    within(Duration::from_secs(2), || async { metric(b.gateway.admin_addr, "keygate_foreign_hash_keys").await == 0.0 })
        .await;
    let lookups = metric(b.gateway.admin_addr, "keygate_foreign_hash_lookups_total").await;
    assert_eq!(get_with_key(b.proxy(), "/", secret).await.status, StatusCode::OK);
    assert_eq!(metric(b.gateway.admin_addr, "keygate_foreign_hash_lookups_total").await, lookups, "by blake3 on B");
    assert_eq!(metric(b.gateway.admin_addr, "keygate_foreign_hash_moved_total").await, 0.0, "A moved it");
    // A restart loads it from the store by blake3.
    a.gateway.stop().await;
    let c = replica(1_000).await;
    assert_eq!(metric(c.gateway.admin_addr, "keygate_foreign_hash_keys").await, 0.0);
    assert_eq!(get_with_key(c.proxy(), "/", secret).await.status, StatusCode::OK);
}

#[tokio::test]
async fn confined_tokens_import_only_into_their_account_and_viewers_not_at_all() {
    let Some((gw, _db)) = gateway(false).await else { return };
    let (own, other) = (gw.admin.account("Tenant").await, gw.admin.account("Neighbour").await);
    let token = |role: &'static str, account: Option<String>| {
        let admin = &gw.admin;
        async move {
            let body = json!({ "name": role, "role": role, "account_id": account });
            let (s, v) = admin.call(Method::POST, "/v1/admin-tokens", Some(body)).await;
            assert_eq!(s, StatusCode::CREATED, "{v}");
            let url = format!("http://{}", gw.gateway.admin_addr);
            keygate::cli::client::AdminClient::new(&url, v["secret"].as_str()).expect("client")
        }
    };
    let confined = token("admin", Some(own.clone())).await;
    let viewer = token("viewer", None).await;
    let key = |secret: &str| json!([{ "secret": secret, "name": "k", "permission": "read" }]);

    let (s, v) = import(&confined, &other, key("tenant-secret-into-other-01")).await;
    assert_eq!((s, v["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("account_id")), "{v}");
    let (s, v) = import(&viewer, &own, key("viewer-secret-0123456789")).await;
    assert_eq!((s, v["code"].as_str()), (StatusCode::FORBIDDEN, Some("forbidden")), "{v}");
    let answer = imported(&confined, &own, key("tenant-secret-into-own-001")).await;
    assert_eq!(answer["imported"][0]["key"]["account_id"], own.as_str());
    // A secret already the neighbour's is a conflict, and says nothing of it.
    imported(&gw.admin, &other, key("neighbour-secret-000000001")).await;
    let taken = imported(&confined, &own, key("neighbour-secret-000000001")).await;
    assert_eq!(taken["failed"][0]["code"], "conflict");
    assert!(!taken.to_string().contains(&other), "{taken}");
    // Limits beyond the account's plan are the operator's to give.
    let (_, plan) = gw
        .admin
        .call(
            Method::POST,
            "/v1/plans",
            Some(json!({ "name": "Free", "rate_limit": { "requests": 10, "per_seconds": 60 } })),
        )
        .await;
    let (s, _) =
        gw.admin.call(Method::PATCH, &format!("/v1/accounts/{own}"), Some(json!({ "plan_id": plan["id"] }))).await;
    assert_eq!(s, StatusCode::OK);
    let limited = |requests: u32| json!([{ "secret": format!("limited-secret-{requests:08}"), "name": "l", "permission": "read", "rate_limit": { "requests": requests, "per_seconds": 60 } }]);
    let beyond = imported(&confined, &own, limited(1000)).await;
    assert_eq!(beyond["failed"][0]["code"], "forbidden", "{beyond}");
    let within_plan = imported(&confined, &own, limited(5)).await;
    assert_eq!(within_plan["imported"].as_array().map(Vec::len), Some(1), "{within_plan}");
}

#[tokio::test]
async fn a_leaked_secret_of_a_key_imported_by_hash_revokes_it() {
    let Some((gw, _db)) = gateway(false).await else { return };
    let acc = gw.admin.account("Migrated").await;
    let secret = "leaked-before-first-use-0123";
    let answer = imported(
        &gw.admin,
        &acc,
        json!([{ "hash": { "algorithm": "sha256", "encoding": "hex", "value": sha256_hex(secret) }, "name": "p", "permission": "read" }]),
    )
    .await;
    let id = key_id(&answer, 0);
    let (s, _) = gw.admin.call(Method::POST, "/v1/keys/report-leak", Some(json!({ "secret": secret }))).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let (_, key) = gw.admin.call(Method::GET, &format!("/v1/keys/{id}"), None).await;
    assert_eq!(key["status"], "revoked", "{key}");
    assert_eq!(get_with_key(gw.proxy(), "/", secret).await.code(), "key_revoked");
}
