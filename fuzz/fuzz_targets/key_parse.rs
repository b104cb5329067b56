//! The key format on arbitrary bytes: `parse`, `KeyHash::of`, the preview
//! and the whole decision against a small `KeySet` must never panic, and
//! refuse everything but the keys they know.
//!
//! Also checks the format both ways: whatever `generate` makes with a prefix
//! the config accepts, `parse` accepts with that prefix, and any one
//! changed character is refused by the checksum.

#![no_main]

use std::net::{IpAddr, Ipv4Addr};
use std::sync::LazyLock;

use http::Method;
use keygate::keys::format::{self, preview, FormatError};
use keygate::keys::{
    generate, Changes, Facts, KeyHash, KeyPolicy, KeySet, Permission, Refusal, Secret,
};
use libfuzzer_sys::fuzz_target;

struct Known {
    set: KeySet,
    key: Secret,
}

static KNOWN: LazyLock<Known> = LazyLock::new(|| {
    let key = generate("kg_live");
    let row = KeyPolicy::builder("key_fuzz", "acc_fuzz").permission(Permission::Read).row(key.hash());
    let set = KeySet::empty().apply(Changes { revision: 1, keys: vec![row], retired: vec![], accounts: vec![], ..Default::default() });
    Known { set, key }
});

const BASE62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

fuzz_target!(|data: &[u8]| {
    let known = &*KNOWN;
    let parsed = format::parse(data);
    let hash = KeyHash::of(data);
    assert_eq!(KeyHash::from_slice(hash.as_bytes()), Some(hash));
    let is_known = data == known.key.expose().as_bytes();

    if let Ok(prefix) = parsed {
        // What parse accepts has the documented shape.
        assert_eq!(data.len(), prefix.len() + 1 + format::RANDOM_LEN + format::CHECKSUM_LEN);
        assert!(data.len() <= format::MAX_KEY_LEN);
        assert!(data[prefix.len() + 1..].iter().all(|b| BASE62.contains(b)));
    }

    for method in [Method::GET, Method::POST] {
        let checked = known.set.check(data, &method, 0);
        match (&parsed, is_known) {
            (Err(_), _) => assert_eq!(checked, Err(Refusal::InvalidKey), "unparsable key got past the checksum"),
            (Ok(_), false) => assert_eq!(checked, Err(Refusal::InvalidKey), "unknown key accepted"),
            (Ok(_), true) if method == Method::GET => assert!(checked.is_ok()),
            (Ok(_), true) => assert_eq!(checked, Err(Refusal::InsufficientPermission)),
        }
    }
    let facts =
        Facts { method: &Method::GET, path: "/", client_ip: Some(IpAddr::V4(Ipv4Addr::LOCALHOST)), host: None };
    let decided = known.set.decide(data, &facts, 0, None);
    assert_eq!(decided.result.is_ok(), is_known);

    // The preview never shows more than the prefix and nine characters,
    // nor the whole secret part.
    let text = String::from_utf8_lossy(data);
    let shown = preview(&text);
    let (prefix, body) = text.rsplit_once('_').unwrap_or(("", text.as_ref()));
    assert!(shown.starts_with(prefix), "{shown:?}");
    let after_prefix = &shown[prefix.len()..];
    assert!(after_prefix.chars().count() <= 10, "{shown:?}");
    if body.chars().count() > 8 {
        assert!(!after_prefix.contains(body), "preview shows the whole secret part: {shown:?}");
    }

    round_trip(data);
});

/// A prefix the config would accept, made from the input: 1-32 of a-z, 0-9
/// and inner `_`.
fn prefix_from(data: &[u8]) -> Option<String> {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789_";
    let len = (*data.first()? as usize % 32) + 1;
    let prefix: String =
        data.iter().skip(1).take(len).map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char).collect();
    let ok = !prefix.is_empty() && !prefix.starts_with('_') && !prefix.ends_with('_');
    ok.then_some(prefix)
}

fn round_trip(data: &[u8]) {
    let Some(prefix) = prefix_from(data) else { return };
    let key = generate(&prefix);
    let bytes = key.expose().as_bytes();
    assert_eq!(format::parse(bytes), Ok(prefix.as_str()), "generate({prefix:?}) made a key parse refuses");
    assert_eq!(key.prefix(), prefix);
    // One character changed anywhere after the prefix is always refused:
    // CRC32 catches every burst of up to 32 bits.
    let Some(&pick) = data.get(prefix.len() + 1) else { return };
    let Some(&with) = data.get(prefix.len() + 2) else { return };
    let at = prefix.len() + 1 + pick as usize % (format::RANDOM_LEN + format::CHECKSUM_LEN);
    let mut changed = bytes.to_vec();
    changed[at] = BASE62[with as usize % BASE62.len()];
    if changed != bytes {
        let result = format::parse(&changed);
        assert!(
            matches!(result, Err(FormatError::Checksum)),
            "one changed character at {at} was not caught: {result:?}"
        );
    }
}
