//! Tests of the snapshot: lookup, incremental apply, retired secrets, layout.

use super::*;
use crate::keys::format::generate;
use http::Method;

pub(in crate::keys) fn policy(id: &str) -> KeyPolicy {
    KeyPolicy::builder(id, "acc_1").build()
}

#[test]
fn decision_follows_the_documented_order() {
    let key = generate("kg_live");
    let mut p = policy("key_1");
    let set = |p: KeyPolicy| {
        KeySet::empty().apply(Changes {
            revision: 1,
            keys: vec![PolicyRow { hash: key.hash(), policy: p }],
            retired: vec![],
            accounts: vec![],
            ..Default::default()
        })
    };
    let k = key.expose().as_bytes();
    assert!(set(p.clone()).check(k, &Method::POST, 0).is_ok());
    p.permission = Permission::Read;
    assert_eq!(set(p.clone()).check(k, &Method::POST, 0), Err(Refusal::InsufficientPermission));
    assert!(set(p.clone()).check(k, &Method::HEAD, 0).is_ok());
    p.api_access = false;
    assert_eq!(set(p.clone()).check(k, &Method::GET, 0), Err(Refusal::ApiAccessDisabled));
    p.enabled = false;
    assert_eq!(set(p.clone()).check(k, &Method::GET, 0), Err(Refusal::KeyDisabled));
    p.expires_at = 10;
    assert_eq!(set(p.clone()).check(k, &Method::GET, 9), Err(Refusal::KeyDisabled));
    assert_eq!(set(p.clone()).check(k, &Method::GET, 10), Err(Refusal::KeyExpired));
    p.revoked = true;
    assert_eq!(set(p.clone()).check(k, &Method::GET, 10), Err(Refusal::KeyRevoked));
    assert_eq!(set(p).check(b"kg_live_nope", &Method::GET, 0), Err(Refusal::InvalidKey));
    assert_eq!(KeySet::empty().check(k, &Method::GET, 0), Err(Refusal::InvalidKey));
}

#[test]
fn retired_secret_follows_its_key_and_dies_after_grace() {
    let old = generate("kg_live");
    let new = generate("kg_live");
    let v1 = KeySet::empty().apply(Changes {
        revision: 1,
        keys: vec![PolicyRow { hash: old.hash(), policy: policy("key_1") }],
        retired: vec![],
        accounts: vec![],
        ..Default::default()
    });
    let v2 = v1.apply(Changes {
        revision: 2,
        keys: vec![PolicyRow { hash: new.hash(), policy: policy("key_1") }],
        retired: vec![RetiredRow { hash: old.hash(), key_id: "key_1".into(), valid_until: 100 }],
        accounts: vec![],
        ..Default::default()
    });
    assert_eq!(v2.len(), 2);
    assert!(v2.check(old.expose().as_bytes(), &Method::GET, 99).is_ok());
    assert_eq!(v2.check(old.expose().as_bytes(), &Method::GET, 100), Err(Refusal::KeyRevoked));
    // Revoking the key also stops the old secret inside its grace period.
    let mut revoked = policy("key_1");
    revoked.revoked = true;
    let v3 = v2.apply(Changes {
        revision: 3,
        keys: vec![PolicyRow { hash: new.hash(), policy: revoked }],
        retired: vec![RetiredRow { hash: old.hash(), key_id: "key_1".into(), valid_until: 100 }],
        accounts: vec![],
        ..Default::default()
    });
    assert_eq!(v3.check(old.expose().as_bytes(), &Method::GET, 0), Err(Refusal::KeyRevoked));
    assert_eq!(v3.check(new.expose().as_bytes(), &Method::GET, 0), Err(Refusal::KeyRevoked));
    // The older snapshot is untouched.
    assert!(v1.check(old.expose().as_bytes(), &Method::GET, 0).is_ok());
    assert_eq!(v3.revision(), 3);
}

#[test]
fn every_key_is_found_among_many_and_unknown_ones_are_not() {
    let secrets: Vec<_> = (0..20_000).map(|_| generate("kg_live")).collect();
    let rows =
        secrets.iter().enumerate().map(|(i, s)| PolicyRow { hash: s.hash(), policy: policy(&format!("key_{i}")) });
    let set = KeySet::empty().apply(Changes {
        revision: 1,
        keys: rows.collect(),
        retired: vec![],
        accounts: vec![],
        ..Default::default()
    });
    assert_eq!(set.len(), 20_000);
    for (i, s) in secrets.iter().enumerate() {
        let id = set.check(s.expose().as_bytes(), &Method::GET, 0).expect("found").key_id;
        assert_eq!(id.as_str(), format!("key_{i}"));
    }
    for _ in 0..2_000 {
        assert!(set.check(generate("kg_live").expose().as_bytes(), &Method::GET, 0).is_err());
    }
    // An incremental change touches one shard and keeps everything else.
    let mut revoked = policy("key_7");
    revoked.revoked = true;
    let fresh = generate("kg_live");
    let next = set.apply(Changes {
        revision: 2,
        keys: vec![
            PolicyRow { hash: secrets[7].hash(), policy: revoked },
            PolicyRow { hash: fresh.hash(), policy: policy("key_new") },
        ],
        retired: vec![],
        accounts: vec![],
        ..Default::default()
    });
    assert_eq!(next.len(), 20_001);
    assert_eq!(next.check(secrets[7].expose().as_bytes(), &Method::GET, 0), Err(Refusal::KeyRevoked));
    assert!(next.check(fresh.expose().as_bytes(), &Method::GET, 0).is_ok());
    assert!(next.check(secrets[8].expose().as_bytes(), &Method::GET, 0).is_ok());
    assert!(set.check(secrets[7].expose().as_bytes(), &Method::GET, 0).is_ok(), "the old snapshot is unchanged");
}

#[test]
fn ids_are_kept_inline() {
    assert_eq!(InlineId::new("key_12345678901234567890").expect("24 bytes").as_str(), "key_12345678901234567890");
    assert!(InlineId::new("key_123456789012345678901").is_none());
    // Shorter ids end at their first NUL; a full one at its 24th byte, even
    // when that is inside a character.
    for id in ["key_1", "acc_\u{e9}t\u{e9}", "key_123456789012345678\u{e9}", "x", ""] {
        assert_eq!(InlineId::new(id).expect("fits").as_str(), id);
    }
    assert!(InlineId::new("key_\0").is_none(), "a NUL would cut the id short");
    // 104 bytes, plus 8 for the metadata the identity token copies from
    // (`KeyPolicy::metadata`) and 8 for a key's own quota (`PackedQuota`).
    assert!(std::mem::size_of::<KeyState>() <= 120, "{}", std::mem::size_of::<KeyState>());
}

/// A million keys are a million `Arc<KeyState>`s: with glibc's 8-byte
/// chunk header and 16-byte steps, the `Arc`'s two reference counts plus
/// 104 bytes of state take 128 bytes, and one byte more takes 144 (16 MB at
/// a million keys). A used key's `Counts` (one per key, shared by its
/// versions) and its `Runtime` likewise stay within 224- and 160-byte
/// chunks.
#[test]
fn a_key_stays_in_128_bytes() {
    let arc = 2 * std::mem::size_of::<usize>();
    assert!(arc + std::mem::size_of::<KeyState>() <= 120, "KeyState is {} bytes", std::mem::size_of::<KeyState>());
    assert!(arc + std::mem::size_of::<Counts>() <= 216, "Counts is {} bytes", std::mem::size_of::<Counts>());
    assert!(arc + std::mem::size_of::<Runtime>() <= 152, "Runtime is {} bytes", std::mem::size_of::<Runtime>());
}
