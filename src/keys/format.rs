//! The key format: `<prefix>_<32 base62 random><6 base62 CRC32>`.
//!
//! Owns generation (OS randomness), parsing with the checksum check, the
//! rules for imported secrets that do not look like keygate's
//! (`classify`), the blake3 hash kept at rest, the masked preview and the
//! `Secret` type. It must never print a whole secret: `Secret`'s `Debug`
//! and `Display` show the preview only.

use std::fmt;

use rand::rngs::OsRng;
use rand::Rng;

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
/// Random base62 characters in a secret: 32 × log2(62) ≈ 190.5 bits.
pub const RANDOM_LEN: usize = 32;
/// Base62 characters of the CRC32 checksum (62^6 > 2^32).
pub const CHECKSUM_LEN: usize = 6;
const BODY_LEN: usize = RANDOM_LEN + CHECKSUM_LEN;
/// Longest keygate-format key; anything longer is not one.
pub const MAX_KEY_LEN: usize = 128;
/// Shortest imported secret (one not in keygate's format) a credential may be.
pub const MIN_FOREIGN_LEN: usize = 16;
/// Longest credential of any kind; anything longer is malformed.
pub const MAX_SECRET_LEN: usize = 256;
/// What every credential starting with this is: a keygate key, which must
/// parse (with its checksum) or be refused before any lookup.
pub const KEYGATE_MARK: &[u8] = b"kg_";

/// The blake3 hash of a whole key: what the store keeps and the snapshot is
/// indexed by.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct KeyHash(pub [u8; 32]);

impl KeyHash {
    pub fn of(key: &[u8]) -> Self {
        KeyHash(*blake3::hash(key).as_bytes())
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        bytes.try_into().ok().map(KeyHash)
    }

    /// The byte that picks the snapshot shard.
    pub fn shard(&self) -> usize {
        self.0[0] as usize
    }
}

impl std::hash::Hash for KeyHash {
    /// The value is already a uniformly distributed hash: feed 8 of its bytes
    /// to the map's hasher instead of hashing 32 bytes again.
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        let mut word = [0u8; 8];
        word.copy_from_slice(&self.0[8..16]);
        state.write_u64(u64::from_le_bytes(word));
    }
}

impl fmt::Debug for KeyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyHash({:02x}{:02x}{:02x}{:02x}…)", self.0[0], self.0[1], self.0[2], self.0[3])
    }
}

/// A whole API key or admin token. Printing it shows the preview only.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a string received from a caller (e.g. a leak report or verify).
    pub fn new(value: String) -> Self {
        Secret(value)
    }

    /// The whole secret, for the one response that shows it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn hash(&self) -> KeyHash {
        KeyHash::of(self.0.as_bytes())
    }

    /// `kg_live_AbC1…9xYz`: the prefix, the first four and the last four
    /// characters of the secret part.
    pub fn preview(&self) -> String {
        preview(&self.0)
    }

    /// The part before the last `_` (e.g. `kg_live`).
    pub fn prefix(&self) -> &str {
        self.0.rsplit_once('_').map(|(p, _)| p).unwrap_or("")
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({})", self.preview())
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.preview())
    }
}

/// The masked preview of any string that looks like a key. Never longer than
/// the prefix plus nine characters, whatever it is given.
pub fn preview(key: &str) -> String {
    let (prefix, body) = key.rsplit_once('_').unwrap_or(("", key));
    let chars: Vec<char> = body.chars().collect();
    if chars.len() < 12 {
        return format!("{prefix}_…");
    }
    let head: String = chars[..4].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{prefix}_{head}…{tail}")
}

/// Makes a new key `<prefix>_<random><checksum>` from OS randomness.
pub fn generate(prefix: &str) -> Secret {
    let mut key = String::with_capacity(prefix.len() + 1 + BODY_LEN);
    key.push_str(prefix);
    key.push('_');
    let mut rng = OsRng;
    for _ in 0..RANDOM_LEN {
        key.push(BASE62[rng.gen_range(0..62)] as char);
    }
    let crc = crc32fast::hash(key.as_bytes());
    key.push_str(&encode_checksum(crc));
    Secret(key)
}

/// A random base62 id with a type prefix (`key_…`, `acc_…`): not a secret.
pub fn new_id(kind: &str) -> String {
    let mut id = String::with_capacity(kind.len() + 21);
    id.push_str(kind);
    id.push('_');
    let mut rng = OsRng;
    for _ in 0..20 {
        id.push(BASE62[rng.gen_range(0..62)] as char);
    }
    id
}

/// An id that sorts by time and, within one process, by creation order:
/// `<kind>_` + 8 base62 digits of `at_ms` + 4 of a process-wide counter + 8
/// random. Audit entries use it, so entries written in the same millisecond
/// still list in the order they happened.
pub fn sortable_id(kind: &str, at_ms: i64) -> String {
    static SEQUENCE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let seq = SEQUENCE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut id = String::with_capacity(kind.len() + 21);
    id.push_str(kind);
    id.push('_');
    push_base62(&mut id, u64::try_from(at_ms).unwrap_or(0), 8);
    push_base62(&mut id, seq % 62u64.pow(4), 4);
    let mut rng = OsRng;
    for _ in 0..8 {
        id.push(BASE62[rng.gen_range(0..62)] as char);
    }
    id
}

/// `value` as exactly `width` base62 digits, most significant first.
fn push_base62(out: &mut String, mut value: u64, width: usize) {
    let mut digits = vec![b'0'; width];
    for slot in digits.iter_mut().rev() {
        *slot = BASE62[(value % 62) as usize];
        value /= 62;
    }
    out.extend(digits.iter().map(|&b| b as char));
}

fn encode_checksum(mut crc: u32) -> String {
    let mut out = [b'0'; CHECKSUM_LEN];
    for slot in out.iter_mut().rev() {
        *slot = BASE62[(crc % 62) as usize];
        crc /= 62;
    }
    out.iter().map(|&b| b as char).collect()
}

/// Marks a byte outside the base62 alphabet in `BASE62_VALUE`: its top bit
/// is set, and no digit's is.
const NOT_BASE62: u8 = 0xff;

/// `BASE62_VALUE[b]`: the value of the base62 digit `b`, `NOT_BASE62` for
/// any other byte. One load a character instead of three range tests.
const BASE62_VALUE: [u8; 256] = {
    let mut table = [NOT_BASE62; 256];
    let mut i = 0;
    while i < BASE62.len() {
        table[BASE62[i] as usize] = i as u8;
        i += 1;
    }
    table
};

/// Why a credential is not even shaped like a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FormatError {
    Length,
    Prefix,
    Character,
    Checksum,
}

/// Checks shape and checksum without allocating; returns the prefix.
///
/// A mistyped or forged key is refused here, before any lookup.
pub fn parse(key: &[u8]) -> Result<&str, FormatError> {
    let prefix = &key[..check(key)?];
    // The prefix bytes were checked to be ASCII.
    std::str::from_utf8(prefix).map_err(|_| FormatError::Prefix)
}

/// `parse` without making the prefix a `&str`: its length.
fn check(key: &[u8]) -> Result<usize, FormatError> {
    if key.len() < BODY_LEN + 2 || key.len() > MAX_KEY_LEN {
        return Err(FormatError::Length);
    }
    let split = key.len() - BODY_LEN;
    if key[split - 1] != b'_' {
        return Err(FormatError::Prefix);
    }
    let prefix = &key[..split - 1];
    if !prefix.iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_') {
        return Err(FormatError::Prefix);
    }
    let body = &key[split..];
    // Any byte outside the alphabet brings in the top bit.
    if body.iter().fold(0, |seen, &b| seen | BASE62_VALUE[usize::from(b)]) & 0x80 != 0 {
        return Err(FormatError::Character);
    }
    // Six digits stay below 62^6 < 2^36: no overflow in a u64, and a value
    // past u32::MAX matches no CRC32.
    let expected = body[RANDOM_LEN..].iter().fold(0u64, |n, &b| n * 62 + u64::from(BASE62_VALUE[usize::from(b)]));
    if u64::from(crc32fast::hash(&key[..key.len() - CHECKSUM_LEN])) != expected {
        return Err(FormatError::Checksum);
    }
    Ok(prefix.len())
}

/// What kind of credential a well-formed one is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// keygate's own format, checksum verified.
    Keygate,
    /// Anything else that may be an imported secret: 16 to 256 printable
    /// ASCII characters without spaces.
    Foreign,
}

/// Sorts a credential before any lookup, allocating nothing.
///
/// A credential that parses as keygate's is `Keygate`. One that claims to
/// be keygate's but is not — it starts with `kg_`, or has keygate's layout
/// (`<a-z0-9_ prefix>_<38 base62>`) with a wrong checksum — is refused
/// here, so a mistyped or forged key costs no lookup. Anything else is
/// `Foreign` when it is 16 to 256 bytes of printable ASCII other than
/// space (0x21–0x7E), refused otherwise.
pub fn classify(key: &[u8]) -> Result<Shape, FormatError> {
    let error = match check(key) {
        Ok(_) => return Ok(Shape::Keygate),
        Err(e) => e,
    };
    // Prefix and characters passed: it has keygate's layout, and only the
    // checksum failed.
    if error == FormatError::Checksum || key.starts_with(KEYGATE_MARK) {
        return Err(error);
    }
    if key.len() < MIN_FOREIGN_LEN || key.len() > MAX_SECRET_LEN {
        return Err(FormatError::Length);
    }
    if !key.iter().all(|b| (0x21..=0x7e).contains(b)) {
        return Err(FormatError::Character);
    }
    Ok(Shape::Foreign)
}

/// The masked preview of an imported secret not in keygate's format: its
/// last four characters (`…9xYz`), never more.
pub fn foreign_preview(secret: &str) -> String {
    let chars: Vec<char> = secret.chars().collect();
    let tail: String = chars[chars.len().saturating_sub(4)..].iter().collect();
    format!("…{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_sorted_before_any_lookup() {
        let key = generate("kg_live");
        assert_eq!(classify(key.expose().as_bytes()), Ok(Shape::Keygate));
        let custom = generate("acme_live");
        assert_eq!(classify(custom.expose().as_bytes()), Ok(Shape::Keygate));
        // keygate's layout with one character changed: refused, whatever the prefix.
        for k in [&key, &custom] {
            let mut bad = k.expose().as_bytes().to_vec();
            let i = bad.len() - 10;
            bad[i] = if bad[i] == b'a' { b'b' } else { b'a' };
            assert_eq!(classify(&bad), Err(FormatError::Checksum));
        }
        // Anything starting with kg_ must be keygate's.
        assert_eq!(classify(b"kg_live_0123456789abcdefghij"), Err(FormatError::Length));
        assert_eq!(classify(b"kg_anything-at-all-here-long-enough"), Err(FormatError::Length));
        let bad_char = format!("kg_live_{}", "-".repeat(38));
        assert_eq!(classify(bad_char.as_bytes()), Err(FormatError::Character));
        // Foreign secrets: 16 to 256 printable ASCII characters, no spaces.
        assert_eq!(classify(b"sk_live_4eC39HqLyjWDarjtT1zdp7dc"), Ok(Shape::Foreign));
        assert_eq!(classify(b"550e8400-e29b-41d4-a716-446655440000"), Ok(Shape::Foreign));
        assert_eq!(classify(&[b'~'; MAX_SECRET_LEN]), Ok(Shape::Foreign));
        assert_eq!(classify(b"short-secret-15"), Err(FormatError::Length));
        assert_eq!(classify(&[b'x'; MAX_SECRET_LEN + 1]), Err(FormatError::Length));
        assert_eq!(classify(b"has a space in the middle"), Err(FormatError::Character));
        assert_eq!(classify(br"back\slash-0123456789"), Ok(Shape::Foreign), "a backslash is printable");
        for control in [b"tab\there-0123456789".as_slice(), b"nul-\x00-0123456789", b"del-\x7f-0123456789"] {
            assert_eq!(classify(control), Err(FormatError::Character));
        }
        assert_eq!(classify("caf\u{e9}-0123456789-abcdef".as_bytes()), Err(FormatError::Character));
        assert_eq!(classify(&[0x7f; 20]), Err(FormatError::Character));
        assert_eq!(classify(&[0x00; 20]), Err(FormatError::Character));
        assert_eq!(foreign_preview("sk_live_4eC39HqLyjWDarjtT1zdp7dc"), "…p7dc");
    }

    #[test]
    fn generated_keys_parse_and_have_the_documented_shape() {
        for _ in 0..200 {
            let key = generate("kg_live");
            let text = key.expose();
            assert!(text.starts_with("kg_live_"));
            assert_eq!(text.len(), "kg_live_".len() + 38);
            assert_eq!(parse(text.as_bytes()), Ok("kg_live"));
        }
    }

    #[test]
    fn one_changed_character_fails_the_checksum() {
        let key = generate("kg_test");
        let mut bytes = key.expose().as_bytes().to_vec();
        let i = 12;
        bytes[i] = if bytes[i] == b'a' { b'b' } else { b'a' };
        assert_eq!(parse(&bytes), Err(FormatError::Checksum));
    }

    #[test]
    fn every_byte_outside_base62_is_a_character_error_wherever_it_is() {
        let key = generate("kg_live");
        let split = key.expose().len() - BODY_LEN;
        for at in [split, split + RANDOM_LEN - 1, split + RANDOM_LEN, key.expose().len() - 1] {
            for byte in 0..=255u8 {
                let mut bytes = key.expose().as_bytes().to_vec();
                let same = bytes[at] == byte;
                bytes[at] = byte;
                let got = parse(&bytes);
                if same {
                    assert_eq!(got, Ok("kg_live"));
                } else if BASE62.contains(&byte) {
                    assert_eq!(got, Err(FormatError::Checksum), "{byte:#x} at {at}");
                } else {
                    assert_eq!(got, Err(FormatError::Character), "{byte:#x} at {at}");
                }
            }
        }
    }

    #[test]
    fn a_checksum_beyond_32_bits_fails_the_checksum() {
        // 62^6 - 1 > u32::MAX: no CRC32 is written that way.
        let key = generate("kg_live");
        let text = format!("{}zzzzzz", &key.expose()[..key.expose().len() - CHECKSUM_LEN]);
        assert_eq!(parse(text.as_bytes()), Err(FormatError::Checksum));
        assert_eq!(classify(text.as_bytes()), Err(FormatError::Checksum));
    }

    #[test]
    fn malformed_keys_are_refused() {
        assert_eq!(parse(b""), Err(FormatError::Length));
        assert_eq!(parse(b"kg_live_short"), Err(FormatError::Length));
        let key = generate("kg_live");
        let mut bytes = key.expose().as_bytes().to_vec();
        bytes[10] = b'-';
        assert_eq!(parse(&bytes), Err(FormatError::Character));
        let upper = key.expose().replace("kg_live", "KG_LIVE");
        assert_eq!(parse(upper.as_bytes()), Err(FormatError::Prefix));
        assert_eq!(parse(&[0xff; 60]), Err(FormatError::Prefix));
    }

    #[test]
    fn secret_never_prints_itself() {
        let key = generate("kg_live");
        let whole = key.expose().to_owned();
        let shown = format!("{key} {key:?} {}", key.preview());
        assert!(!shown.contains(&whole));
        assert!(!shown.contains(&whole[8..40]));
        let p = key.preview();
        assert!(p.starts_with("kg_live_") && p.contains('…'));
        assert_eq!(p.chars().count(), "kg_live_".len() + 9);
    }

    #[test]
    fn sortable_ids_sort_by_time_then_order() {
        let a = sortable_id("aud", 1_795_000_000_000);
        let b = sortable_id("aud", 1_795_000_000_000);
        let c = sortable_id("aud", 1_795_000_000_001);
        assert!(a < b && b < c, "{a} {b} {c}");
        assert_eq!(a.len(), 24);
    }

    #[test]
    fn ids_have_their_kind() {
        let id = new_id("key");
        assert!(id.starts_with("key_") && id.len() == 24);
        assert_ne!(new_id("acc"), new_id("acc"));
    }
}
