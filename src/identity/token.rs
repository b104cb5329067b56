//! The token itself (a compact JWS, RFC 7515/7519, EdDSA over Ed25519) and
//! the per-thread cache that makes it cheap.
//!
//! Signing costs tens of µs; a cache hit costs a map lookup and a few
//! compares. A cached token is handed out again while it is younger than
//! half its lifetime and everything it says still holds: same signing
//! state (`generation`: key, lifetime and allowlist), same permission,
//! account and plan, and the same metadata object (a key edit or reload
//! makes a new one, so pointer equality is a version check; the entry holds
//! its `Arc`, so the address cannot be reused by another). Each proxy
//! thread has its own cache, as it has its own upstream pool: no lock on
//! the request path. A cache is bounded: when full, stale entries go, and
//! if that is not enough, all of them.

use std::cell::RefCell;
use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use bytes::Bytes;
use http::HeaderValue;
use serde::Serialize;
use serde_json::{Map, Value};

use super::key::SigningKey;
use crate::keys::{IdMap, InlineId, KeyPolicy, Permission};

/// Tokens kept per thread at most (each a few hundred bytes).
const MAX_ENTRIES: usize = 32_768;

/// The claims, in the order they are written.
#[derive(Serialize)]
struct Claims<'a> {
    sub: &'a str,
    account_id: &'a str,
    permission: &'a str,
    plan_id: Option<&'a str>,
    metadata: Map<String, Value>,
    iat: i64,
    exp: i64,
}

/// What a token is signed with and for how long: one `generation` of the
/// issuer's state.
pub(super) struct Signing<'a> {
    pub generation: u64,
    pub key: &'a SigningKey,
    pub ttl_seconds: i64,
    pub metadata: &'a [String],
}

struct Entry {
    generation: u64,
    permission: Permission,
    account_id: InlineId,
    plan_id: Option<Box<str>>,
    metadata: Option<Arc<Map<String, Value>>>,
    /// Unix ms after which the token is signed again.
    refresh_at: i64,
    token: HeaderValue,
}

impl Entry {
    fn holds_for(&self, signing: &Signing<'_>, policy: &KeyPolicy, plan_id: Option<&str>, now_ms: i64) -> bool {
        self.generation == signing.generation
            && now_ms < self.refresh_at
            && self.permission == policy.permission
            && self.account_id == policy.account_id
            && self.plan_id.as_deref() == plan_id
            && match (&self.metadata, policy.metadata()) {
                (None, None) => true,
                (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                _ => false,
            }
    }
}

thread_local! {
    static CACHE: RefCell<IdMap<Entry>> = RefCell::new(IdMap::default());
}

/// The token for the key `policy` (on plan `plan_id`) at `now_ms`, from
/// this thread's cache or newly signed.
pub(super) fn token(signing: &Signing<'_>, policy: &KeyPolicy, plan_id: Option<&str>, now_ms: i64) -> HeaderValue {
    CACHE.with(|cache| {
        let mut cache = cache.borrow_mut();
        if let Some(entry) = cache.get(&policy.id) {
            if entry.holds_for(signing, policy, plan_id, now_ms) {
                return entry.token.clone();
            }
        }
        let iat = now_ms.div_euclid(1000);
        let token = sign(signing, policy, plan_id, iat);
        if cache.len() >= MAX_ENTRIES && !cache.contains_key(&policy.id) {
            cache.retain(|_, e| e.generation == signing.generation && now_ms < e.refresh_at);
            if cache.len() >= MAX_ENTRIES {
                cache.clear();
            }
        }
        let entry = Entry {
            generation: signing.generation,
            permission: policy.permission,
            account_id: policy.account_id,
            plan_id: plan_id.map(Box::from),
            metadata: policy.metadata().cloned(),
            // Half the lifetime, so the upstream always gets at least half.
            refresh_at: iat * 1000 + signing.ttl_seconds * 500,
            token: token.clone(),
        };
        cache.insert(policy.id, entry);
        token
    })
}

/// Signs a new token issued at `iat` (unix seconds).
pub(super) fn sign(signing: &Signing<'_>, policy: &KeyPolicy, plan_id: Option<&str>, iat: i64) -> HeaderValue {
    let metadata = match policy.metadata() {
        Some(all) => signing.metadata.iter().filter_map(|k| all.get(k).map(|v| (k.clone(), v.clone()))).collect(),
        None => Map::new(),
    };
    let claims = Claims {
        sub: policy.id.as_str(),
        account_id: policy.account_id.as_str(),
        permission: policy.permission.as_str(),
        plan_id,
        metadata,
        iat,
        exp: iat + signing.ttl_seconds,
    };
    // Serializing plain strings, numbers and JSON values cannot fail.
    let payload = serde_json::to_vec(&claims).unwrap_or_default();
    let header = signing.key.header();
    let mut jws = String::with_capacity(header.len() + payload.len() * 4 / 3 + 92);
    jws.push_str(header);
    jws.push('.');
    URL_SAFE_NO_PAD.encode_string(&payload, &mut jws);
    let signature = signing.key.sign(jws.as_bytes());
    jws.push('.');
    URL_SAFE_NO_PAD.encode_string(signature.as_ref(), &mut jws);
    // base64url and dots only: always a valid header value.
    HeaderValue::from_maybe_shared(Bytes::from(jws)).unwrap_or(HeaderValue::from_static(""))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(part: &str) -> Value {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).expect("base64url")).expect("json")
    }

    fn policy(metadata: Option<Value>) -> KeyPolicy {
        let mut policy = KeyPolicy::builder("key_tok", "acc_tok").permission(Permission::Read).build();
        if let Some(m) = metadata.and_then(|m| m.as_object().cloned()) {
            policy.set_metadata(m);
        }
        policy
    }

    #[test]
    fn the_token_says_who_called_and_only_allowlisted_metadata() {
        let (key, _) = SigningKey::generate().expect("key");
        let allow = vec!["team".to_owned(), "tier".to_owned()];
        let signing = Signing { generation: 1, key: &key, ttl_seconds: 60, metadata: &allow };
        let p = policy(Some(serde_json::json!({ "team": "billing", "secret_note": "x", "tier": 2 })));
        let token = sign(&signing, &p, Some("plan_1"), 1_700_000_000);
        let parts: Vec<&str> = token.to_str().expect("text").split('.').collect();
        assert_eq!(parts.len(), 3);
        assert_eq!(decode(parts[0]), serde_json::json!({ "alg": "EdDSA", "typ": "JWT", "kid": key.kid() }));
        let claims = decode(parts[1]);
        assert_eq!(
            claims,
            serde_json::json!({
                "sub": "key_tok", "account_id": "acc_tok", "permission": "read", "plan_id": "plan_1",
                "metadata": { "team": "billing", "tier": 2 }, "iat": 1_700_000_000, "exp": 1_700_000_060,
            })
        );
        let signature = URL_SAFE_NO_PAD.decode(parts[2]).expect("signature");
        let public = key.jwk()["x"].as_str().map(|x| URL_SAFE_NO_PAD.decode(x).expect("x")).expect("x");
        let message = format!("{}.{}", parts[0], parts[1]);
        ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, public)
            .verify(message.as_bytes(), &signature)
            .expect("the signature verifies");
        let none = sign(&signing, &policy(None), None, 1);
        let claims = decode(none.to_str().expect("text").split('.').nth(1).expect("claims"));
        assert_eq!((claims["plan_id"].clone(), claims["metadata"].clone()), (Value::Null, serde_json::json!({})));
    }

    #[test]
    fn a_cached_token_is_reused_until_half_its_life_or_a_change() {
        let (key, _) = SigningKey::generate().expect("key");
        let signing = Signing { generation: 7, key: &key, ttl_seconds: 60, metadata: &[] };
        let p = policy(None);
        let first = token(&signing, &p, None, 1_000_000);
        assert_eq!(token(&signing, &p, None, 1_029_999), first, "younger than ttl/2: the same token");
        let later = token(&signing, &p, None, 1_030_000);
        assert_ne!(later, first, "at ttl/2: signed again");
        assert_ne!(token(&signing, &p, Some("plan_x"), 1_030_001), later, "another plan");
        let read = KeyPolicy { permission: Permission::Write, ..p.clone() };
        assert_ne!(token(&signing, &read, Some("plan_x"), 1_030_002), later, "another permission");
        let (other, _) = SigningKey::generate().expect("key");
        let next = Signing { generation: 8, key: &other, ..signing };
        let renewed = token(&next, &read, Some("plan_x"), 1_030_003);
        assert!(renewed.to_str().expect("text").starts_with(other.header()), "a new generation signs again");
        assert_eq!(token(&next, &read, Some("plan_x"), 1_030_004), renewed);
    }
}
