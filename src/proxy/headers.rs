//! Header rewriting between client and upstream: hop-by-hop removal (RFC
//! 9110 §7.6.1) in both directions, the identity headers the upstream trusts,
//! `X-Forwarded-For`/`-Proto` and the request id.
//!
//! Identity headers are always deleted before they are set: whatever a
//! client sends under those names is never passed on. What else a client
//! may not send (`client_headers`) is removed in the same single pass over
//! the request's header names. Credential stripping belongs to `auth`,
//! which knows where the key was found.
use std::net::IpAddr;

use bytes::Bytes;

use http::header::{
    HeaderMap, HeaderName, HeaderValue, CONNECTION, HOST, PROXY_AUTHENTICATE, PROXY_AUTHORIZATION, TE, TRAILER,
    TRANSFER_ENCODING, UPGRADE,
};

use super::client_headers::ClientHeaders;
use super::fields::{self, Fields};
use crate::contract::{RequestId, X_REQUEST_ID};
use crate::keys::Identity;

pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub const X_KEYGATE_KEY_ID: HeaderName = HeaderName::from_static("x-keygate-key-id");
pub const X_KEYGATE_ACCOUNT_ID: HeaderName = HeaderName::from_static("x-keygate-account-id");
pub const X_KEYGATE_PERMISSION: HeaderName = HeaderName::from_static("x-keygate-permission");
const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// Headers that describe one connection, not the message (RFC 9110
/// §7.6.1, plus the non-standard `Proxy-Connection` and `Keep-Alive`).
const HOP_BY_HOP: [HeaderName; 9] = [
    CONNECTION,
    KEEP_ALIVE,
    PROXY_CONNECTION,
    TE,
    TRAILER,
    TRANSFER_ENCODING,
    UPGRADE,
    PROXY_AUTHENTICATE,
    PROXY_AUTHORIZATION,
];

/// Removes hop-by-hop headers and every header named in `Connection`.
pub fn remove_hop_by_hop(headers: &mut HeaderMap) {
    // One pass over the names present, usually a handful, instead of a
    // lookup per hop-by-hop name: most messages carry none of them.
    let mut present = 0u16;
    for name in headers.keys() {
        present |= hop_by_hop_bit(name);
    }
    remove_hop_by_hop_present(headers, present);
}

/// Whether a field name (any case) is hop-by-hop, for heads handled as
/// bytes (the fast path's response).
pub fn is_hop_by_hop(name: &[u8]) -> bool {
    HOP_BY_HOP.iter().any(|h| name.eq_ignore_ascii_case(h.as_str().as_bytes()))
}

pub(super) fn hop_by_hop_bit(name: &HeaderName) -> u16 {
    HOP_BY_HOP.iter().position(|h| h == name).map_or(0, |i| 1 << i)
}

/// Removes the hop-by-hop headers whose bits are set in `present`.
fn remove_hop_by_hop_present(headers: &mut HeaderMap, present: u16) {
    if present == 0 {
        return;
    }
    // HOP_BY_HOP[0] is `Connection`.
    if present & 1 != 0 {
        let mut values = headers.get_all(CONNECTION).iter();
        match (values.next().cloned(), values.next()) {
            // The common case (`Connection: keep-alive`) needs no copy.
            (Some(only), None) => remove_named(headers, &only),
            _ => {
                let values: Vec<HeaderValue> = headers.get_all(CONNECTION).iter().cloned().collect();
                for value in &values {
                    remove_named(headers, value);
                }
            }
        }
    }
    for (i, name) in HOP_BY_HOP.iter().enumerate() {
        if present & (1 << i) != 0 {
            headers.remove(name);
        }
    }
}

/// Whether the client said it accepts trailers (`TE: trailers`, RFC 9110
/// §10.1.4): a gRPC client must, and an HTTP/2 upstream is told so.
pub fn te_trailers(headers: &HeaderMap) -> bool {
    headers
        .get_all(TE)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .any(|t| t.split(|&b| b == b';').next().is_some_and(|t| t.trim_ascii().eq_ignore_ascii_case(b"trailers")))
}

/// Removes the headers a `Connection` value lists (comma-separated tokens).
fn remove_named(headers: &mut HeaderMap, connection: &HeaderValue) {
    for token in connection.as_bytes().split(|&b| b == b',') {
        let token = token.trim_ascii();
        if token.is_empty() {
            continue;
        }
        // Lookup by `&str` lowercases on the stack, so `Connection: X-Foo`
        // removes `x-foo` without allocating; tokens that are not header
        // names name nothing.
        if let Ok(name) = std::str::from_utf8(token) {
            headers.remove(name);
        }
    }
}

/// What the request headers say about the connection a request came on,
/// made once per connection: the usual `X-Forwarded-For` (the peer alone)
/// and `X-Forwarded-Proto` values are then shared, not rebuilt per request.
#[derive(Debug, Clone)]
pub struct Forwarding {
    pub peer: IpAddr,
    /// The peer is a trusted proxy: its forwarding headers are believed.
    pub(super) trusted: bool,
    pub(super) forwarded_for: HeaderValue,
    pub(super) proto: HeaderValue,
}

impl Forwarding {
    pub fn new(peer: IpAddr, tls: bool, trusted: bool) -> Self {
        let peer = peer.to_canonical();
        let mut text = [0u8; 64];
        let len = write_ip(&mut text, peer);
        Forwarding {
            peer,
            trusted,
            // An address is always a valid header value.
            forwarded_for: HeaderValue::from_bytes(&text[..len]).unwrap_or(HeaderValue::from_static("unknown")),
            proto: HeaderValue::from_static(if tls { "https" } else { "http" }),
        }
    }
}

/// What a request's rewrite for the upstream sets (`prepare_request`, and
/// the fast path's `fast::rewrite`, which writes the same fields as bytes).
pub struct Rewrite<'a> {
    pub identity: &'a Identity,
    pub forwarding: &'a Forwarding,
    pub request_id: &'a RequestId,
    pub upstream_host: &'a HeaderValue,
    pub client_headers: &'a ClientHeaders,
}

/// The names `prepare_request` sets, replacing whatever the client sent
/// (reserved up front, so the map grows once).
pub(super) const SET: [HeaderName; 7] = [
    HOST,
    X_KEYGATE_KEY_ID,
    X_KEYGATE_ACCOUNT_ID,
    X_KEYGATE_PERMISSION,
    X_FORWARDED_FOR,
    X_FORWARDED_PROTO,
    X_REQUEST_ID,
];

/// Rewrites a client's request headers for the upstream (after `auth` has
/// stripped the credential): hop-by-hop headers and what `client_headers`
/// removes go, identity, forwarding and request id headers are set, `Host`
/// is set to the upstream's authority.
pub fn prepare_request(headers: &mut HeaderMap, rewrite: &Rewrite<'_>) {
    let Rewrite { identity, forwarding, request_id, upstream_host, client_headers } = rewrite;
    // One pass over the names present; `removed` allocates only for a
    // request that has such headers.
    let mut hop_by_hop = 0u16;
    let mut removed: Vec<HeaderName> = Vec::new();
    for name in headers.keys() {
        let bit = hop_by_hop_bit(name);
        hop_by_hop |= bit;
        if bit == 0 && client_headers.removes(name.as_str().as_bytes(), forwarding.trusted) {
            removed.push(name.clone());
        }
    }
    remove_hop_by_hop_present(headers, hop_by_hop);
    for name in &removed {
        headers.remove(name);
    }
    headers.reserve(SET.len());
    identity_headers(headers, identity);
    set_forwarded_for(headers, forwarding);
    headers.insert(X_FORWARDED_PROTO, forwarding.proto.clone());
    headers.insert(X_REQUEST_ID, request_id.header_value());
    headers.insert(HOST, (*upstream_host).clone());
}

/// Sets `X-Keygate-Key-Id`, `X-Keygate-Account-Id` and
/// `X-Keygate-Permission`, replacing any value the client sent: for the
/// upstream, and in a forward-auth answer for the ingress to pass on.
pub fn identity_headers(headers: &mut HeaderMap, identity: &Identity) {
    // Ids are base62 with `_`, so the fallback never happens.
    for (name, id) in
        [(X_KEYGATE_KEY_ID, identity.key_id.as_str()), (X_KEYGATE_ACCOUNT_ID, identity.account_id.as_str())]
    {
        headers.insert(name, HeaderValue::from_str(id).unwrap_or(HeaderValue::from_static("")));
    }
    headers.insert(X_KEYGATE_PERMISSION, HeaderValue::from_static(identity.permission.as_str()));
}

/// Rewrites the upstream's response headers for the client.
pub fn prepare_response(headers: &mut HeaderMap, request_id: &RequestId) {
    remove_hop_by_hop(headers);
    headers.insert(X_REQUEST_ID, request_id.header_value());
}

/// From a trusted proxy, appends the peer to the `X-Forwarded-For` chain,
/// joining the lines (if any) into one; values that are not text are
/// dropped. From anyone else, the chain is the peer alone: many upstreams
/// read the leftmost entry, which the client would otherwise choose.
fn set_forwarded_for(headers: &mut HeaderMap, forwarding: &Forwarding) {
    let mut chain = Vec::new();
    if forwarded_chain(headers, forwarding, &mut chain) {
        // Hand the buffer over rather than copying it.
        if let Ok(value) = HeaderValue::from_maybe_shared(Bytes::from(chain)) {
            headers.insert(X_FORWARDED_FOR, value);
        }
    } else {
        headers.insert(X_FORWARDED_FOR, forwarding.forwarded_for.clone());
    }
}

/// The `X-Forwarded-For` value `set_forwarded_for` sets, appended to `out`
/// when it is a chain (`true`); `false` when it is the peer alone, whose
/// value is `Forwarding::forwarded_for`.
pub(super) fn forwarded_chain<F: Fields>(headers: &F, forwarding: &Forwarding, out: &mut Vec<u8>) -> bool {
    if !forwarding.trusted {
        return false;
    }
    let start = out.len();
    for value in headers.values(&X_FORWARDED_FOR) {
        if let Some(text) = fields::text(value) {
            let text = text.trim();
            if !text.is_empty() {
                out.extend_from_slice(text.as_bytes());
                out.extend_from_slice(b", ");
            }
        }
    }
    if out.len() == start {
        return false;
    }
    let mut text = [0u8; 64];
    let len = write_ip(&mut text, forwarding.peer);
    out.extend_from_slice(&text[..len]);
    true
}

/// Writes `ip` as text into `out` (64 bytes hold any address); returns the
/// length.
fn write_ip(out: &mut [u8; 64], ip: IpAddr) -> usize {
    let mut cursor = std::io::Cursor::new(&mut out[..]);
    // Cannot fail: the longest address text is 45 bytes.
    let _ = std::io::Write::write_fmt(&mut cursor, format_args!("{ip}"));
    cursor.position() as usize
}

/// `Retry-After` in whole seconds.
pub fn retry_after(headers: &mut HeaderMap, seconds: u64) {
    headers.insert(http::header::RETRY_AFTER, HeaderValue::from(seconds));
}

/// The IETF RateLimit header fields (draft-ietf-httpapi-ratelimit-headers)
/// of the limits that apply, one list per field (RFC 9651): the rate
/// limit's entry, then the quota's. `RateLimit-Policy: "key";q=100;w=60,
/// "quota";q=10000;w=2592000` and `RateLimit: "key";r=42;t=13,
/// "quota";r=9958;t=86400`. A rate limit is named after whose it is
/// (`"key"`, or `"account"` for the plan's, pooled over the account's
/// keys), a quota likewise (`"quota"`, `"account_quota"`); a `total` quota
/// has no `w` or `t`: it never resets. keygate's values replace any an
/// upstream sent. The values are written straight where they go, without
/// `core::fmt`: this runs on every answer of a limited key.
pub fn limits(headers: &mut HeaderMap, rate: Option<&crate::keys::RateInfo>, quota: Option<&crate::quota::QuotaInfo>) {
    if rate.is_none() && quota.is_none() {
        return;
    }
    let mut value = Vec::with_capacity(128);
    for (name, field) in LIMIT_FIELDS {
        value.clear();
        limit_value(&mut value, field, rate, quota);
        if let Ok(v) = HeaderValue::from_bytes(&value) {
            headers.insert(name, v);
        }
    }
}

/// `limits` as head lines (`name: value\r\n`) appended to `out`, for a
/// head written as bytes (the fast path).
pub fn limit_lines(out: &mut Vec<u8>, rate: Option<&crate::keys::RateInfo>, quota: Option<&crate::quota::QuotaInfo>) {
    if rate.is_none() && quota.is_none() {
        return;
    }
    out.reserve(256);
    for (name, field) in LIMIT_FIELDS {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        limit_value(out, field, rate, quota);
        out.extend_from_slice(b"\r\n");
    }
}

pub const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
pub const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

/// Which of the two RateLimit fields.
#[derive(Debug, Clone, Copy)]
enum LimitField {
    /// `RateLimit-Policy`: `q` (the limit) and `w` (the window).
    Policy,
    /// `RateLimit`: `r` (remaining) and `t` (seconds to the reset).
    State,
}

const LIMIT_FIELDS: [(HeaderName, LimitField); 2] =
    [(RATELIMIT_POLICY, LimitField::Policy), (RATELIMIT, LimitField::State)];

/// Appends one field's value to `out`: the rate limit's entry, then the
/// quota's (`None` parameters left out). Each entry's name and first key
/// are one static piece: the fewer small copies, the cheaper.
fn limit_value(
    out: &mut Vec<u8>,
    field: LimitField,
    rate: Option<&crate::keys::RateInfo>,
    quota: Option<&crate::quota::QuotaInfo>,
) {
    let second_key = match field {
        LimitField::Policy => b";w=",
        LimitField::State => b";t=",
    };
    let rate = rate.map(|r| {
        let opening = rate_opening(r.scope, field);
        match field {
            LimitField::Policy => (opening, u64::from(r.limit), Some(u64::from(r.window_seconds))),
            LimitField::State => (opening, u64::from(r.remaining), Some(r.reset_seconds)),
        }
    });
    let quota = quota.map(|q| {
        let opening = quota_opening(q.scope, field);
        match field {
            LimitField::Policy => (opening, q.limit, q.window_seconds),
            LimitField::State => (opening, q.remaining, q.reset_seconds),
        }
    });
    let mut numbers = itoa::Buffer::new();
    for (i, (opening, first, second)) in rate.into_iter().chain(quota).enumerate() {
        if i > 0 {
            out.extend_from_slice(b", ");
        }
        out.extend_from_slice(opening);
        out.extend_from_slice(numbers.format(first).as_bytes());
        if let Some(second) = second {
            out.extend_from_slice(second_key);
            out.extend_from_slice(numbers.format(second).as_bytes());
        }
    }
}

/// A rate limit's entry up to its first value: `"<scope>";q=` in the
/// policy, `"<scope>";r=` in the state.
fn rate_opening(scope: crate::keys::RateScope, field: LimitField) -> &'static [u8] {
    use crate::keys::RateScope;
    match (scope, field) {
        (RateScope::Key, LimitField::Policy) => br#""key";q="#,
        (RateScope::Key, LimitField::State) => br#""key";r="#,
        (RateScope::Account, LimitField::Policy) => br#""account";q="#,
        (RateScope::Account, LimitField::State) => br#""account";r="#,
    }
}

/// A quota's entry up to its first value, as `rate_opening`'s.
fn quota_opening(scope: crate::quota::QuotaScope, field: LimitField) -> &'static [u8] {
    use crate::quota::QuotaScope;
    match (scope, field) {
        (QuotaScope::Key, LimitField::Policy) => br#""quota";q="#,
        (QuotaScope::Key, LimitField::State) => br#""quota";r="#,
        (QuotaScope::Account, LimitField::Policy) => br#""account_quota";q="#,
        (QuotaScope::Account, LimitField::State) => br#""account_quota";r="#,
    }
}

/// A refusal by a rate limit: its fields and `Retry-After`.
pub fn rate_limit(headers: &mut HeaderMap, rate: &crate::keys::RateInfo) {
    limits(headers, Some(rate), None);
    if let Some(wait) = rate.retry_after_seconds {
        retry_after(headers, wait);
    }
}

/// A refusal by a quota: its fields alone, and `Retry-After` when the
/// quota resets (a `total` quota never does: none).
pub fn quota_refusal(headers: &mut HeaderMap, quota: &crate::quota::QuotaInfo) {
    limits(headers, None, Some(quota));
    match quota.retry_after_seconds {
        Some(wait) => retry_after(headers, wait),
        None => {
            headers.remove(http::header::RETRY_AFTER);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{InlineId, Permission};

    fn identity() -> Identity {
        Identity {
            key_id: InlineId::new("key_1").expect("id"),
            account_id: InlineId::new("acc_1").expect("id"),
            permission: Permission::Read,
        }
    }

    #[test]
    fn connection_named_and_hop_by_hop_headers_go() {
        let mut h = HeaderMap::new();
        h.insert(CONNECTION, HeaderValue::from_static("keep-alive, X-Secret , ,"));
        h.append(CONNECTION, HeaderValue::from_static("x-other"));
        for name in ["x-secret", "x-other", "keep-alive", "te", "upgrade", "proxy-authorization", "x-kept"] {
            h.insert(HeaderName::from_static(name), HeaderValue::from_static("1"));
        }
        remove_hop_by_hop(&mut h);
        let left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(left, vec!["x-kept"]);
    }

    fn defaults() -> ClientHeaders {
        ClientHeaders::new(&crate::config::ProxyConfig::default())
    }

    static UP: HeaderValue = HeaderValue::from_static("up:80");

    fn rewrite<'a>(
        identity: &'a Identity,
        forwarding: &'a Forwarding,
        request_id: &'a RequestId,
        client_headers: &'a ClientHeaders,
    ) -> Rewrite<'a> {
        Rewrite { identity, forwarding, request_id, upstream_host: &UP, client_headers }
    }

    #[test]
    fn an_untrusted_peers_forwarded_for_is_replaced() {
        let mut h = HeaderMap::new();
        h.insert(X_FORWARDED_FOR, HeaderValue::from_static("1.1.1.1"));
        let peer: IpAddr = "10.0.0.7".parse().expect("ip");
        let id = RequestId::generate();
        let forwarding = Forwarding::new(peer, false, false);
        prepare_request(&mut h, &rewrite(&identity(), &forwarding, &id, &defaults()));
        assert_eq!(h[X_FORWARDED_FOR], "10.0.0.7");
    }

    #[test]
    fn spoofed_identity_is_replaced_and_forwarded_for_appended() {
        let mut h = HeaderMap::new();
        h.insert(X_KEYGATE_KEY_ID, HeaderValue::from_static("key_admin"));
        h.append(X_KEYGATE_KEY_ID, HeaderValue::from_static("key_other"));
        h.insert(X_FORWARDED_FOR, HeaderValue::from_static("1.1.1.1"));
        h.append(X_FORWARDED_FOR, HeaderValue::from_static("2.2.2.2"));
        h.insert(X_FORWARDED_PROTO, HeaderValue::from_static("https"));
        let id = RequestId::generate();
        let peer: IpAddr = "::ffff:10.0.0.7".parse().expect("ip");
        let forwarding = Forwarding::new(peer, false, true);
        prepare_request(&mut h, &rewrite(&identity(), &forwarding, &id, &defaults()));
        assert_eq!(h.get_all(X_KEYGATE_KEY_ID).iter().count(), 1);
        assert_eq!(h[X_KEYGATE_KEY_ID], "key_1");
        assert_eq!(h[X_KEYGATE_PERMISSION], "read");
        assert_eq!(h[X_FORWARDED_FOR], "1.1.1.1, 2.2.2.2, 10.0.0.7");
        assert_eq!(h[X_FORWARDED_PROTO], "http");
        assert_eq!(h[HOST], "up:80");
    }

    #[test]
    fn ratelimit_fields_list_the_rate_limit_then_the_quota() {
        use crate::keys::{RateInfo, RateScope};
        use crate::quota::{QuotaInfo, QuotaScope};
        let rate = RateInfo {
            scope: RateScope::Account,
            limit: 100,
            window_seconds: 60,
            remaining: 0,
            reset_seconds: 13,
            retry_after_seconds: None,
        };
        let mut quota = QuotaInfo {
            scope: QuotaScope::Key,
            limit: u64::MAX,
            window_seconds: Some(86_400),
            remaining: 9_958,
            reset_seconds: Some(7),
            resets_at_ms: None,
            retry_after_seconds: None,
        };
        let mut out = Vec::new();
        limit_lines(&mut out, Some(&rate), Some(&quota));
        assert_eq!(
            String::from_utf8(out).expect("text"),
            "ratelimit-policy: \"account\";q=100;w=60, \"quota\";q=18446744073709551615;w=86400\r\n\
             ratelimit: \"account\";r=0;t=13, \"quota\";r=9958;t=7\r\n"
        );
        // A `total` quota never resets: no `w`, no `t`.
        (quota.window_seconds, quota.reset_seconds) = (None, None);
        let mut h = HeaderMap::new();
        limits(&mut h, None, Some(&quota));
        assert_eq!(h[RATELIMIT_POLICY], "\"quota\";q=18446744073709551615");
        assert_eq!(h[RATELIMIT], "\"quota\";r=9958");
        limits(&mut h, None, None);
        assert_eq!(h.len(), 2, "no limit: nothing set");
    }

    #[test]
    fn entry_openings_name_each_scope() {
        use crate::keys::RateScope;
        use crate::quota::QuotaScope;
        for (field, key) in [(LimitField::Policy, "q"), (LimitField::State, "r")] {
            for scope in [RateScope::Key, RateScope::Account] {
                assert_eq!(rate_opening(scope, field), format!("\"{}\";{key}=", scope.as_str()).as_bytes());
            }
            for scope in [QuotaScope::Key, QuotaScope::Account] {
                assert_eq!(quota_opening(scope, field), format!("\"{}\";{key}=", scope.as_str()).as_bytes());
            }
        }
    }

    #[test]
    fn trailers_in_te_are_recognised() {
        let mut h = HeaderMap::new();
        assert!(!te_trailers(&h));
        for (value, yes) in [("trailers", true), ("gzip, Trailers", true), ("gzip;q=1", false), ("trailer", false)] {
            h.insert(TE, HeaderValue::from_static(value));
            assert_eq!(te_trailers(&h), yes, "{value}");
        }
    }
}
