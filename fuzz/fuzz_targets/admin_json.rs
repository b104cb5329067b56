//! The admin API's request bodies, through the real router on a real
//! SQLite store (the request types are private to their handlers, so the
//! router is the way in): arbitrary bodies to every route that takes one,
//! and arbitrary query strings to the list routes, with the owner token.
//!
//! Input: byte 0 picks the route, byte 1 flags (bit 0: no
//! `Content-Type: application/json`), the rest is the body (or the query),
//! where `$ACC` and `$KEY` stand for the seeded account and key ids, and
//! `$SECRET` for the key's secret on the routes that take one.
//! Every answer must be below 500; a 4xx must be problem+json with its
//! `code` and `status`; a 2xx must be JSON; and no answer may show the
//! seeded key's secret unless the request itself carried it.

#![no_main]

use std::sync::LazyLock;

use axum::body::Body;
use axum::Router;
use http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use keygate::admin::{self, AdminState};
use keygate::config::Config;
use keygate::reload::Reloader;
use keygate::store::Store;
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Value};
use tower::ServiceExt;

const TOKEN: &str = "fuzz-owner-token-0123456789abcdef";

struct World {
    rt: tokio::runtime::Runtime,
    router: Router,
    account: String,
    key: String,
    secret: String,
    _dir: tempfile::TempDir,
}

static WORLD: LazyLock<World> = LazyLock::new(|| {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = Config::default();
    config.store.url = format!("sqlite://{}", dir.path().join("fuzz.db").display());
    let (router, account, key, secret) = rt.block_on(async {
        let store = Store::connect(&config.store).await.expect("store");
        let reloader = Reloader::start(store).await.expect("reloader");
        let state = AdminState::new(&config, reloader, Some(TOKEN));
        let router = admin::router(state, 64 * 1024);
        let (_, acc) =
            call(&router, Method::POST, "/v1/accounts", json!({ "name": "fuzz" }).to_string().into_bytes(), true).await;
        let account = serde_json::from_slice::<Value>(&acc).expect("account")["id"].as_str().expect("id").to_owned();
        let body = json!({ "account_id": account, "name": "fuzz key", "permission": "read" });
        let (_, created) = call(&router, Method::POST, "/v1/keys", body.to_string().into_bytes(), true).await;
        let created: Value = serde_json::from_slice(&created).expect("key");
        let key = created["key"]["id"].as_str().expect("key id").to_owned();
        let secret = created["secret"].as_str().expect("secret").to_owned();
        (router, account, key, secret)
    });
    World { rt, router, account, key, secret, _dir: dir }
});

async fn call(
    router: &Router,
    method: Method,
    uri: &str,
    body: Vec<u8>,
    json: bool,
) -> (http::response::Parts, Vec<u8>) {
    let mut req = Request::builder().method(method).uri(uri).header("authorization", format!("Bearer {TOKEN}"));
    if json {
        req = req.header("content-type", "application/json");
    }
    let req = req.body(Body::from(body)).expect("request");
    let res = router.clone().oneshot(req).await.expect("infallible");
    let (parts, body) = res.into_parts();
    let bytes = body.collect().await.expect("body").to_bytes().to_vec();
    (parts, bytes)
}

/// Query strings the fuzzer writes go on the URI percent-encoded, except
/// for `=` and `&`, so that parameters stay parameters.
fn query(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 3);
    for &b in bytes {
        if b.is_ascii_alphanumeric() || b"=&-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let world = &*WORLD;
    let (Some(&route), Some(&flags)) = (data.first(), data.get(1)) else { return };
    // Only the routes that take a secret get the seeded one: then a secret
    // in any answer can only have come from keygate.
    let body = substitute(&data[2..], world, matches!(route % 14, 6 | 7));
    let json = flags & 1 == 0;
    let (acc, key) = (&world.account, &world.key);
    let (method, uri, body) = match route % 14 {
        0 => (Method::POST, "/v1/accounts".to_owned(), body),
        1 => (Method::PATCH, format!("/v1/accounts/{acc}"), body),
        2 => (Method::POST, "/v1/keys".to_owned(), body),
        3 => (Method::PATCH, format!("/v1/keys/{key}"), body),
        4 => (Method::POST, format!("/v1/keys/{key}/rotate"), body),
        5 => (Method::POST, "/v1/keys/bulk-revoke".to_owned(), body),
        6 => (Method::POST, "/v1/keys/report-leak".to_owned(), body),
        7 => (Method::POST, "/v1/keys/verify".to_owned(), body),
        8 => (Method::POST, "/v1/admin-tokens".to_owned(), body),
        9 => (Method::GET, format!("/v1/keys?{}", query(&body)), Vec::new()),
        10 => (Method::GET, format!("/v1/audit?{}", query(&body)), Vec::new()),
        11 => (Method::GET, format!("/v1/accounts?{}", query(&body)), Vec::new()),
        12 => (Method::GET, format!("/v1/admin-tokens?{}", query(&body)), Vec::new()),
        _ => (Method::POST, format!("/v1/keys/{}/revoke", query(&body)), Vec::new()),
    };
    let sent_secret = contains(&body, world.secret.as_bytes()) || contains(uri.as_bytes(), world.secret.as_bytes());
    let (parts, answer) = world.rt.block_on(call(&world.router, method.clone(), &uri, body, json));
    let status = parts.status;
    let text = String::from_utf8_lossy(&answer);
    assert!(!status.is_server_error(), "{method} {uri} answered {status}: {text}");
    if !sent_secret {
        assert!(!contains(&answer, world.secret.as_bytes()), "{method} {uri} showed a secret it was not sent: {text}");
    }
    let content_type = parts.headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("");
    if known_bug(status, content_type, &text) {
        return;
    }
    if status.is_client_error() {
        assert_eq!(content_type, "application/problem+json", "{method} {uri} {status}: {text}");
        let doc: Value =
            serde_json::from_slice(&answer).unwrap_or_else(|e| panic!("{status} is not JSON ({e}): {text}"));
        assert!(doc["code"].as_str().is_some_and(|c| !c.is_empty()), "{text}");
        assert_eq!(doc["status"], status.as_u16(), "{text}");
        let empty_unknown_field = doc["detail"].as_str().is_some_and(|d| d.contains("unknown field ``"));
        if status == StatusCode::UNPROCESSABLE_ENTITY && !(empty_unknown_field && !strict()) {
            assert!(doc["field"].as_str().is_some_and(|f| !f.is_empty()), "422 without a field: {text}");
        }
    } else if status.is_success() && status != StatusCode::NO_CONTENT {
        assert!(content_type.starts_with("application/json"), "{method} {uri} {status} as {content_type:?}");
        serde_json::from_slice::<Value>(&answer).unwrap_or_else(|e| panic!("{status} is not JSON ({e}): {text}"));
    }
});

/// Symptoms of bugs already reported, skipped so that a run can find the
/// next one; `KEYGATE_FUZZ_STRICT=1` makes them fail again.
///
/// - axum's `Path` and `Query` rejections (an id with invalid UTF-8 after
///   percent-decoding, a query parameter given twice or of the wrong type)
///   are answered `text/plain`, not problem+json.
/// - An unknown field with an empty name (`{"": 1}`) gets a 422 whose
///   `field` is `""` (checked where the 422 is).
fn known_bug(status: StatusCode, content_type: &str, text: &str) -> bool {
    !strict()
        && status == StatusCode::BAD_REQUEST
        && content_type.starts_with("text/plain")
        && (text.starts_with("Invalid URL") || text.starts_with("Failed to deserialize query string"))
}

fn strict() -> bool {
    static STRICT: LazyLock<bool> = LazyLock::new(|| std::env::var_os("KEYGATE_FUZZ_STRICT").is_some_and(|v| v == "1"));
    *STRICT
}

/// `$ACC`, `$KEY` and (when `with_secret`) `$SECRET` in the input stand for
/// the seeded account's id, key id and secret, so that seeds reach past
/// "not found".
fn substitute(input: &[u8], world: &World, with_secret: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len() + 64);
    let mut rest = input;
    while let Some(at) = rest.iter().position(|&b| b == b'$') {
        out.extend_from_slice(&rest[..at]);
        rest = &rest[at..];
        let value = [("$ACC", &world.account), ("$KEY", &world.key), ("$SECRET", &world.secret)]
            .into_iter()
            .filter(|(name, _)| with_secret || *name != "$SECRET")
            .find(|(name, _)| rest.starts_with(name.as_bytes()));
        match value {
            Some((name, value)) => {
                out.extend_from_slice(value.as_bytes());
                rest = &rest[name.len()..];
            }
            None => {
                out.push(b'$');
                rest = &rest[1..];
            }
        }
    }
    out.extend_from_slice(rest);
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}
