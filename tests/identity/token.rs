//! The signed identity token (`proxy.identity_token`, docs/proxy.md#signed-identity)
//! against the real binary and a real upstream that reports the headers it
//! got, checked with PyJWT (`verify_jwt.py`), a JWT library that owes
//! nothing to keygate, fetching the JWKS from the admin port: the claims,
//! the metadata allowlist, a client's forged token, expiry, two replicas on
//! one PostgreSQL, rotation of the stored key and of a key file (SIGHUP).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use http::{Method, StatusCode};
use keygate::cli::client::AdminClient;
use serde_json::{json, Value};

use crate::kit::http::fetch;
use crate::kit::process::{self, Process};
use crate::kit::upstream::Upstream;
use crate::kit::{admin_client, config, pg, AdminCalls, TestGateway, TOKEN};
use crate::{KeySpec, OneKeyGateway};

/// PyJWT's verdict on tokens, or `None` (skip) when PyJWT is not installed
/// outside CI (`.ci/run` installs it).
struct PyJwt;

impl PyJwt {
    fn available() -> Option<PyJwt> {
        let ok = Command::new("python3").args(["-c", "import jwt, cryptography"]).status().is_ok_and(|s| s.success());
        if ok {
            return Some(PyJwt);
        }
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("PyJWT is missing: python3 -m pip install --break-system-packages pyjwt cryptography");
        }
        eprintln!("skipped: PyJWT is not installed (python3 -m pip install pyjwt cryptography)");
        None
    }

    /// `{"ok": true, "kid", "claims"}` or `{"ok": false, "error"}`.
    fn verify(&self, admin: std::net::SocketAddr, token: &str) -> Value {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/identity/verify_jwt.py");
        let out = Command::new("python3")
            .arg(script)
            .arg(format!("http://{admin}/.well-known/jwks.json"))
            .arg(token)
            .output()
            .expect("python3 runs");
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "verifier said ({e}): {} {}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        })
    }

    fn claims(&self, admin: std::net::SocketAddr, token: &str) -> Value {
        let verdict = self.verify(admin, token);
        assert_eq!(verdict["ok"], true, "{verdict}");
        verdict["claims"].clone()
    }
}

/// A config for `keygate serve` with identity tokens set to `identity` (a
/// YAML flow mapping).
fn yaml(store_url: &str, upstream: &str, identity: &str) -> String {
    format!(
        "proxy:\n  listen: 127.0.0.1:0\n  identity_token: {identity}\nadmin: {{ listen: 127.0.0.1:0 }}\n\
         store: {{ url: \"{store_url}\", poll_interval_ms: 200 }}\nupstream: {{ url: \"{upstream}\" }}\n"
    )
}

fn sqlite(dir: &Path) -> String {
    format!("sqlite://{}", dir.join("keygate.db").display())
}

/// A running binary and its admin client.
struct Node {
    process: Process,
    admin: AdminClient,
}

impl Node {
    fn spawn(dir: &Path, yaml: &str) -> Node {
        let process = process::spawn(dir, yaml, &[("KEYGATE_ADMIN_TOKEN", TOKEN)]);
        let admin = admin_client(process.admin);
        Node { process, admin }
    }

    /// The identity tokens the upstream got for one request with `key` and
    /// `headers` (all of them: there must be exactly one).
    async fn tokens(&self, key: &str, headers: &[(&str, &str)]) -> Vec<String> {
        let mut all = vec![("x-api-key", key)];
        all.extend_from_slice(headers);
        let reply = fetch(Method::GET, &format!("http://{}/orders", self.process.proxy), &all, "").await;
        assert_eq!(reply.status, StatusCode::OK, "{}", String::from_utf8_lossy(&reply.body));
        let seen = reply.json()["headers"]["x-keygate-identity"].clone();
        seen.as_array().map(|v| v.iter().filter_map(|t| t.as_str().map(str::to_owned)).collect()).unwrap_or_default()
    }

    async fn token(&self, key: &str) -> String {
        let tokens = self.tokens(key, &[]).await;
        assert_eq!(tokens.len(), 1, "{tokens:?}");
        tokens[0].clone()
    }

    async fn jwks(&self) -> Value {
        let reply = fetch(Method::GET, &format!("http://{}/.well-known/jwks.json", self.process.admin), &[], "").await;
        assert_eq!(reply.status, StatusCode::OK);
        reply.json()
    }

    async fn kids(&self) -> Vec<String> {
        let jwks = self.jwks().await;
        jwks["keys"].as_array().expect("keys").iter().map(|k| k["kid"].as_str().expect("kid").to_owned()).collect()
    }
}

/// The `kid` in a token's header (not verified: for telling keys apart).
fn kid_of(token: &str) -> String {
    use base64::Engine;
    let header = token.split('.').next().expect("header");
    let header = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(header).expect("base64url");
    serde_json::from_slice::<Value>(&header).expect("json")["kid"].as_str().expect("kid").to_owned()
}

#[tokio::test]
async fn the_upstream_gets_a_token_pyjwt_verifies_with_the_right_claims_and_no_forgery() {
    let Some(pyjwt) = PyJwt::available() else { return };
    let upstream = Upstream::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let node = Node::spawn(dir.path(), &yaml(&sqlite(dir.path()), &upstream.url(""), "{ metadata: [team, tier] }"));
    let account = node.admin.account("Acme").await;
    let (s, plan) = node.admin.call(Method::POST, "/v1/plans", Some(json!({ "name": "Pro" }))).await;
    assert_eq!(s, StatusCode::CREATED, "{plan}");
    let (s, _) = node
        .admin
        .call(Method::PATCH, &format!("/v1/accounts/{account}"), Some(json!({ "plan_id": plan["id"] })))
        .await;
    assert_eq!(s, StatusCode::OK);
    let metadata = json!({ "team": "billing", "tier": 2, "internal_note": "never to the upstream" });
    let (key, secret) = node
        .admin
        .create_key(json!({ "account_id": account, "name": "ci", "permission": "read", "metadata": metadata }))
        .await;

    // A token the client made up, in both spellings: neither arrives.
    let forged = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJrZXlfYWRtaW4ifQ.";
    let tokens = node.tokens(&secret, &[("x-keygate-identity", forged), ("x_keygate_identity", forged)]).await;
    assert_eq!(tokens.len(), 1, "one token, keygate's: {tokens:?}");
    assert_ne!(tokens[0], forged);

    let claims = pyjwt.claims(node.process.admin, &tokens[0]);
    assert_eq!(claims["sub"], key["id"]);
    assert_eq!(claims["account_id"], account.as_str());
    assert_eq!(claims["permission"], "read");
    assert_eq!(claims["plan_id"], plan["id"]);
    assert_eq!(claims["metadata"], json!({ "team": "billing", "tier": 2 }), "only allowlisted metadata");
    assert_eq!(claims["exp"].as_i64().expect("exp") - claims["iat"].as_i64().expect("iat"), 60);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs() as i64;
    assert!((claims["iat"].as_i64().expect("iat") - now).abs() <= 5, "{claims}");

    // The JWKS: one public key, nothing private.
    let jwks = node.jwks().await;
    let keys = jwks["keys"].as_array().expect("keys");
    assert_eq!(keys.len(), 1, "{jwks}");
    let mut members: Vec<&str> = keys[0].as_object().expect("jwk").keys().map(String::as_str).collect();
    members.sort_unstable();
    assert_eq!(members, ["alg", "crv", "kid", "kty", "use", "x"], "{jwks}");
    assert_eq!((keys[0]["kty"].clone(), keys[0]["crv"].clone()), (json!("OKP"), json!("Ed25519")));
    assert_eq!(keys[0]["kid"].as_str(), Some(kid_of(&tokens[0]).as_str()));

    // A metadata edit shows in the next token, cached or not.
    let (s, _) = node
        .admin
        .call(
            Method::PATCH,
            &format!("/v1/keys/{}", key["id"].as_str().expect("id")),
            Some(json!({ "metadata": null })),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let claims = pyjwt.claims(node.process.admin, &node.token(&secret).await);
    assert_eq!(claims["metadata"], json!({}));
    // No key material in the log.
    let log = node.process.log();
    assert!(log.contains("identity tokens on"), "{log}");
    assert!(!log.contains("PRIVATE KEY"), "{log}");
}

#[tokio::test]
async fn a_client_token_never_reaches_the_upstream_with_tokens_off() {
    let upstream = Upstream::start().await;
    let gw = OneKeyGateway::start(config(&upstream.url("")), KeySpec::read()).await;
    let seen =
        gw.send(Method::GET, "/x", &[("x-keygate-identity", "forged.token.value")]).await.json()["headers"].clone();
    assert!(seen.get("x-keygate-identity").is_none(), "{seen}");
}

#[tokio::test]
async fn an_expired_token_is_refused_and_the_gateway_never_hands_one_out() {
    let Some(pyjwt) = PyJwt::available() else { return };
    let upstream = Upstream::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let node = Node::spawn(dir.path(), &yaml(&sqlite(dir.path()), &upstream.url(""), "{ ttl_seconds: 2 }"));
    let account = node.admin.account("Acme").await;
    let (_, secret) = node.admin.key(&account, "write").await;
    let token = node.token(&secret).await;
    assert_eq!(pyjwt.verify(node.process.admin, &token)["ok"], true);
    tokio::time::sleep(Duration::from_millis(3_200)).await;
    assert_eq!(pyjwt.verify(node.process.admin, &token)["error"], "expired");
    let fresh = node.token(&secret).await;
    assert_ne!(fresh, token);
    assert_eq!(pyjwt.verify(node.process.admin, &fresh)["ok"], true, "a cached token is signed again in time");
}

#[tokio::test]
async fn the_stored_key_rotates_on_sqlite_and_old_tokens_still_verify() {
    let Some(pyjwt) = PyJwt::available() else { return };
    let upstream = Upstream::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let node = Node::spawn(dir.path(), &yaml(&sqlite(dir.path()), &upstream.url(""), "{}"));
    let account = node.admin.account("Acme").await;
    let (_, secret) = node.admin.key(&account, "read").await;
    let before = node.token(&secret).await;

    // Only an owner rotates.
    let (s, created) =
        node.admin.call(Method::POST, "/v1/admin-tokens", Some(json!({ "name": "ops", "role": "admin" }))).await;
    assert_eq!(s, StatusCode::CREATED, "{created}");
    let admin =
        AdminClient::new(&format!("http://{}", node.process.admin), created["secret"].as_str()).expect("client");
    let (s, refused) = admin.call(Method::POST, "/v1/identity/rotate", None).await;
    assert_eq!((s, refused["code"].as_str()), (StatusCode::FORBIDDEN, Some("forbidden")), "{refused}");
    // Nor an owner confined to one account: the key signs for all of them.
    let body = json!({ "name": "tenant owner", "role": "owner", "account_id": account });
    let (s, created) = node.admin.call(Method::POST, "/v1/admin-tokens", Some(body)).await;
    assert_eq!(s, StatusCode::CREATED, "{created}");
    let tenant =
        AdminClient::new(&format!("http://{}", node.process.admin), created["secret"].as_str()).expect("client");
    let (s, refused) = tenant.call(Method::POST, "/v1/identity/rotate", None).await;
    assert_eq!((s, refused["code"].as_str()), (StatusCode::FORBIDDEN, Some("forbidden")), "{refused}");

    let (s, rotated) = node.admin.call(Method::POST, "/v1/identity/rotate", None).await;
    assert_eq!(s, StatusCode::OK, "{rotated}");
    assert_eq!(rotated["previous_kid"].as_str(), Some(kid_of(&before).as_str()));
    let after = node.token(&secret).await;
    assert_eq!(kid_of(&after), rotated["kid"].as_str().expect("kid"), "the new key signs at once");
    assert_eq!(node.kids().await, [kid_of(&after), kid_of(&before)], "both published, the signing one first");
    assert_eq!(pyjwt.verify(node.process.admin, &before)["ok"], true, "an old token still verifies");
    assert_eq!(pyjwt.verify(node.process.admin, &after)["ok"], true);
    let (_, audit) = node.admin.call(Method::GET, "/v1/audit?action=identity.rotate", None).await;
    assert_eq!(audit["items"][0]["target_id"], rotated["kid"], "{audit}");

    // The rotated key survives a restart: it is the store's.
    drop(node);
    let node = Node::spawn(dir.path(), &yaml(&sqlite(dir.path()), &upstream.url(""), "{}"));
    assert_eq!(kid_of(&node.token(&secret).await), rotated["kid"].as_str().expect("kid"));
}

#[tokio::test]
async fn two_replicas_on_one_postgresql_sign_with_the_same_key_and_follow_a_rotation() {
    let Some(pyjwt) = PyJwt::available() else { return };
    let Some(db) = pg::fresh().await else { return };
    let upstream = Upstream::start().await;
    let (dir_a, dir_b) = (tempfile::tempdir().expect("tempdir"), tempfile::tempdir().expect("tempdir"));
    let text = yaml(&db.url(), &upstream.url(""), "{}");
    // Started together, so both may find the store without a key.
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| Node::spawn(dir_a.path(), &text));
        let b = s.spawn(|| Node::spawn(dir_b.path(), &text));
        (a.join().expect("a"), b.join().expect("b"))
    });
    assert_eq!(a.kids().await, b.kids().await, "one stored key");
    assert_eq!(a.kids().await.len(), 1);
    let account = a.admin.account("Acme").await;
    let (_, secret) = a.admin.key(&account, "read").await;
    let deadline = Instant::now() + Duration::from_secs(5);
    let from_b = loop {
        let reply = fetch(Method::GET, &format!("http://{}/x", b.process.proxy), &[("x-api-key", &secret)], "").await;
        if reply.status == StatusCode::OK {
            break reply.json()["headers"]["x-keygate-identity"][0].as_str().expect("token").to_owned();
        }
        assert!(Instant::now() < deadline, "replica b never learned of the key");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let from_a = a.token(&secret).await;
    assert_eq!(pyjwt.claims(a.process.admin, &from_b)["sub"], pyjwt.claims(b.process.admin, &from_a)["sub"]);

    let (s, rotated) = a.admin.call(Method::POST, "/v1/identity/rotate", None).await;
    assert_eq!(s, StatusCode::OK, "{rotated}");
    let new_kid = rotated["kid"].as_str().expect("kid").to_owned();
    let started = Instant::now();
    while kid_of(&b.token(&secret).await) != new_kid {
        assert!(started.elapsed() < Duration::from_secs(5), "replica b still signs with the old key");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!("replica b signed with the rotated key after {:?}", started.elapsed());
    assert_eq!(a.kids().await, b.kids().await);
    assert_eq!(b.kids().await, [new_kid.clone(), kid_of(&from_a)]);
    for admin in [a.process.admin, b.process.admin] {
        assert_eq!(pyjwt.verify(admin, &from_b)["ok"], true, "a token of the old key still verifies");
        assert_eq!(pyjwt.verify(admin, &b.token(&secret).await)["ok"], true);
    }
}

#[tokio::test]
async fn a_new_key_file_signs_after_sighup_and_the_old_key_stays_published() {
    let Some(pyjwt) = PyJwt::available() else { return };
    let upstream = Upstream::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("identity.pem");
    let new_pem = || rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).expect("ed25519").serialize_pem();
    std::fs::write(&file, new_pem()).expect("write key");
    let identity = format!("{{ signing_key_file: \"{}\" }}", file.display());
    let node = Node::spawn(dir.path(), &yaml(&sqlite(dir.path()), &upstream.url(""), &identity));
    let account = node.admin.account("Acme").await;
    let (_, secret) = node.admin.key(&account, "read").await;
    let before = node.token(&secret).await;
    assert_eq!(pyjwt.verify(node.process.admin, &before)["ok"], true);
    let (s, refused) = node.admin.call(Method::POST, "/v1/identity/rotate", None).await;
    assert_eq!((s, refused["code"].as_str()), (StatusCode::CONFLICT, Some("conflict")), "{refused}");

    std::fs::write(&file, new_pem()).expect("write key");
    node.process.signal("HUP");
    let started = Instant::now();
    let after = loop {
        let token = node.token(&secret).await;
        if kid_of(&token) != kid_of(&before) {
            break token;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "the new key file never signed: {}", node.process.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(node.kids().await, [kid_of(&after), kid_of(&before)]);
    assert_eq!(pyjwt.verify(node.process.admin, &before)["ok"], true, "the old key is still published");
    assert_eq!(pyjwt.verify(node.process.admin, &after)["ok"], true);

    // A file that is no key is refused whole: the running key keeps signing.
    std::fs::write(&file, "not a key").expect("write");
    node.process.signal("HUP");
    let started = Instant::now();
    while !node.process.log().contains("config reload failed") {
        assert!(started.elapsed() < Duration::from_secs(10), "{}", node.process.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(node.process.log().contains("proxy.identity_token.signing_key_file"), "{}", node.process.log());
    assert_eq!(kid_of(&node.token(&secret).await), kid_of(&after));
}

// Multi-threaded: the gateway runs in-process, and serves the JWKS to
// PyJWT while the test thread waits for its verdict.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forward_auth_hands_the_ingress_a_verifiable_token() {
    let Some(pyjwt) = PyJwt::available() else { return };
    let gw = TestGateway::new()
        .config(|c| {
            c.authz.listen = Some("127.0.0.1:0".parse().expect("addr"));
            c.proxy.identity_token = Some(keygate::config::IdentityTokenConfig::default());
        })
        .start()
        .await;
    let account = gw.admin.account("Acme").await;
    let (key, secret) = gw.admin.key(&account, "write").await;
    let authz = gw.gateway.authz_addr.expect("forward auth on");
    let headers = [
        ("x-forwarded-method", "POST"),
        ("x-forwarded-uri", "/orders"),
        ("x-api-key", secret.as_str()),
        ("x-keygate-identity", "forged"),
    ];
    let reply = fetch(Method::GET, &format!("http://{authz}/auth"), &headers, "").await;
    assert_eq!(reply.status, StatusCode::OK);
    let token = reply.header("x-keygate-identity").expect("a token for the ingress to pass on");
    let claims = pyjwt.claims(gw.gateway.admin_addr, token);
    assert_eq!((claims["sub"].as_str(), claims["permission"].as_str()), (Some(key.as_str()), Some("write")));
}
