//! The `Authorization: Bearer <token>` syntax (RFC 6750 §2.1 in the
//! credentials grammar of RFC 9110 §11.4), read the same way by the proxy
//! (API keys) and the admin API (admin tokens).
//!
//! The scheme is case-insensitive; it is separated from the token by one or
//! more spaces or tabs (a tab is accepted: clients and proxies in the wild
//! send one, and a token never contains whitespace, so nothing is ambiguous).
//! Bytes in, bytes out: the proxy's hot path reads the header without
//! copying it.

const SCHEME: &[u8] = b"bearer";

/// The token of a `Bearer` credential, or `None` when the value uses another
/// scheme (`Basic …`, `Bearerish …`). `Bearer` with nothing after it gives
/// an empty token: a Bearer credential, but a malformed one, which each
/// plane refuses in its own words.
pub fn token(value: &[u8]) -> Option<&[u8]> {
    let scheme = value.get(..SCHEME.len())?;
    if !scheme.eq_ignore_ascii_case(SCHEME) {
        return None;
    }
    let rest = &value[SCHEME.len()..];
    match rest.first() {
        None => Some(rest),
        Some(b' ' | b'\t') => Some(rest.trim_ascii()),
        Some(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::token;

    #[test]
    fn scheme_is_case_insensitive() {
        assert_eq!(token(b"Bearer abc"), Some(&b"abc"[..]));
        assert_eq!(token(b"bEaReR abc"), Some(&b"abc"[..]));
        assert_eq!(token(b"BEARER abc"), Some(&b"abc"[..]));
    }

    #[test]
    fn bearer_with_tab_or_several_spaces() {
        assert_eq!(token(b"Bearer\tabc"), Some(&b"abc"[..]));
        assert_eq!(token(b"bearer \t  abc "), Some(&b"abc"[..]));
        assert_eq!(token(b"Bearer  abc"), Some(&b"abc"[..]));
    }

    #[test]
    fn other_schemes_are_not_bearer() {
        assert_eq!(token(b"Basic abc"), None);
        assert_eq!(token(b"Bearerabc"), None);
        assert_eq!(token(b"Bear"), None);
        assert_eq!(token(b""), None);
    }

    #[test]
    fn bearer_without_token_is_empty() {
        assert_eq!(token(b"Bearer"), Some(&b""[..]));
        assert_eq!(token(b"Bearer \t "), Some(&b""[..]));
    }
}
