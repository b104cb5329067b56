//! The upstream's request fields on the fast path, written as head lines
//! from the client's fields as they came (`parse::RawFields`): what
//! `headers::prepare_request` (and the credential strip before it) would
//! leave of them, and the fields keygate sets — with no map, so nothing is
//! removed, hashed or allocated for the rewrite. `prepare_request` stays
//! the one description of the rewrite; the tests below hold the two to the
//! same fields.

use http::header::{HeaderMap, HeaderName, CONNECTION, HOST};

use super::parse::{has_token, RawFields};
use super::write::{line, raw_line};
use crate::contract::X_REQUEST_ID;
use crate::proxy::fields::Fields;
use crate::proxy::headers::{self, Rewrite, X_FORWARDED_FOR, X_FORWARDED_PROTO};
use crate::proxy::headers::{X_KEYGATE_ACCOUNT_ID, X_KEYGATE_KEY_ID, X_KEYGATE_PERMISSION};

/// What is set on the upstream's request after the rewrite: `fields`
/// (the identity token, the trace context), replacing the client's of the
/// same names and of the names in `owned` (those the trace context sets or
/// removes).
pub struct Extra<'a> {
    pub fields: &'a HeaderMap,
    pub owned: &'a [HeaderName],
}

/// Appends the upstream's request fields to `out`: `Host` first, the
/// client's fields `prepare_request` keeps (and none `stripped` names: the
/// credential's header), keygate's own, then `extra`'s. Names are lower
/// case, as hyper's path writes them.
pub fn request_fields(
    out: &mut Vec<u8>,
    fields: &RawFields,
    rewrite: &Rewrite<'_>,
    stripped: impl Fn(&[u8]) -> bool,
    extra: &Extra<'_>,
) {
    let Rewrite { identity, forwarding, request_id, upstream_host, client_headers } = rewrite;
    line(out, &HOST, upstream_host.as_bytes());
    // A name a `Connection` field lists (any case) is hop-by-hop too; the
    // fields are walked for it only when there is one.
    let listed = fields.has(&CONNECTION);
    let named = |name: &[u8]| listed && fields.values(&CONNECTION).any(|v| has_token(v, name));
    for (name, value) in fields.iter() {
        let dropped = headers::is_hop_by_hop(name)
            || among(&headers::SET, name)
            || client_headers.removes(name, forwarding.trusted)
            || stripped(name)
            || among(extra.fields.keys(), name)
            || among(extra.owned, name)
            || named(name);
        if !dropped {
            raw_line(out, name, value);
        }
    }
    line(out, &X_KEYGATE_KEY_ID, identity.key_id.as_bytes());
    line(out, &X_KEYGATE_ACCOUNT_ID, identity.account_id.as_bytes());
    line(out, &X_KEYGATE_PERMISSION, identity.permission.as_str().as_bytes());
    out.extend_from_slice(X_FORWARDED_FOR.as_str().as_bytes());
    out.extend_from_slice(b": ");
    if !headers::forwarded_chain(fields, forwarding, out) {
        out.extend_from_slice(forwarding.forwarded_for.as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    line(out, &X_FORWARDED_PROTO, forwarding.proto.as_bytes());
    line(out, &X_REQUEST_ID, request_id.as_str().as_bytes());
    for (name, value) in extra.fields {
        line(out, name, value.as_bytes());
    }
}

/// Whether `name` (lower case) is one of `names`.
fn among<'n>(names: impl IntoIterator<Item = &'n HeaderName>, name: &[u8]) -> bool {
    names.into_iter().any(|n| n.as_str().as_bytes() == name)
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use http::HeaderValue;

    use super::super::parse::{parse_request, Parsed};
    use super::*;
    use crate::config::{HeaderRule, ProxyConfig};
    use crate::contract::RequestId;
    use crate::keys::{Identity, InlineId, Permission};
    use crate::proxy::client_headers::ClientHeaders;
    use crate::proxy::headers::Forwarding;

    /// The fields `prepare_request` leaves in `headers` (after removing
    /// `stripped`, then `extra`'s owned names, and inserting its fields),
    /// and the ones `request_fields` writes from the same fields sent in a
    /// request head, each as sorted `name: value` lines.
    fn both(
        sent: &HeaderMap,
        forwarding: &Forwarding,
        client: &ClientHeaders,
        stripped: &[&str],
        extra: &Extra<'_>,
    ) -> (Vec<String>, Vec<String>) {
        let identity = Identity {
            key_id: InlineId::new("key_1").expect("id"),
            account_id: InlineId::new("acc_1").expect("id"),
            permission: Permission::Write,
        };
        let request_id = RequestId::generate();
        let host = HeaderValue::from_static("up:8080");
        let rewrite = Rewrite {
            identity: &identity,
            forwarding,
            request_id: &request_id,
            upstream_host: &host,
            client_headers: client,
        };
        // The fields as a client sends them (names in mixed case), parsed.
        let mut bytes = b"GET / HTTP/1.1\r\n".to_vec();
        for (name, value) in sent {
            let name = name.as_str();
            bytes.extend_from_slice(name[..1].to_ascii_uppercase().as_bytes());
            bytes.extend_from_slice(&name.as_bytes()[1..]);
            bytes.extend_from_slice(b": ");
            bytes.extend_from_slice(value.as_bytes());
            bytes.extend_from_slice(b"\r\n");
        }
        bytes.extend_from_slice(b"\r\n");
        let Parsed::Complete(head) = parse_request(&bytes) else { panic!("{sent:?} parses") };
        let headers = head.fields.to_map();
        assert_eq!(headers.len(), sent.len());
        let mut map = headers.clone();
        for name in stripped {
            map.remove(*name);
        }
        headers::prepare_request(&mut map, &rewrite);
        for name in extra.owned {
            map.remove(name);
        }
        for (name, value) in extra.fields {
            map.insert(name, value.clone());
        }
        let mut expected: Vec<String> =
            map.iter().map(|(n, v)| format!("{}: {}", n, String::from_utf8_lossy(v.as_bytes()))).collect();
        let mut out = Vec::new();
        request_fields(&mut out, &head.fields, &rewrite, |n| stripped.iter().any(|s| s.as_bytes() == n), extra);
        let text = String::from_utf8(out).expect("text");
        assert!(text.ends_with("\r\n") && text.starts_with("host: up:8080\r\n"), "{text}");
        let mut written: Vec<String> = text.split_terminator("\r\n").map(str::to_owned).collect();
        expected.sort();
        written.sort();
        (expected, written)
    }

    fn map(fields: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in fields {
            h.append(HeaderName::from_static(name), HeaderValue::from_static(value));
        }
        h
    }

    #[test]
    fn the_written_fields_are_the_rewritten_maps() {
        let peer: IpAddr = "10.1.2.3".parse().expect("ip");
        let requests = [
            map(&[("host", "gw"), ("authorization", "Bearer kg_x"), ("accept", "*/*")]),
            map(&[
                ("host", "gw"),
                ("connection", "keep-alive, X-Secret"),
                ("connection", "x-other"),
                ("x-secret", "1"),
                ("x-other", "2"),
                ("x-kept", "3"),
                ("x-kept", "4"),
                ("te", "trailers"),
                ("upgrade", "h2c"),
                ("proxy-authorization", "p"),
                ("keep-alive", "timeout=5"),
            ]),
            map(&[
                ("x-keygate-key-id", "key_admin"),
                ("x-keygate-account-id", "acc_admin"),
                ("x-keygate-permission", "write"),
                ("x-keygate-identity", "forged"),
                ("x-request-id", "abc"),
                ("x-forwarded-for", "1.1.1.1"),
                ("x-forwarded-for", " , 2.2.2.2 "),
                ("x-forwarded-proto", "https"),
                ("forwarded", "for=9.9.9.9"),
                ("x-real-ip", "9.9.9.9"),
                ("x-api-key", "kg_y"),
                ("x_api_key", "kg_z"),
                ("x-http-method-override", "DELETE"),
                ("traceparent", "00-client"),
                ("tracestate", "client=1"),
            ]),
        ];
        let mut config = ProxyConfig::default();
        let defaults = ClientHeaders::new(&config);
        config.underscore_headers = HeaderRule::Pass;
        config.override_headers = HeaderRule::Pass;
        let passing = ClientHeaders::new(&config);
        let mut token_and_trace = HeaderMap::new();
        token_and_trace.insert("traceparent", HeaderValue::from_static("00-keygate"));
        token_and_trace.insert("x-keygate-identity", HeaderValue::from_static("signed"));
        let none = HeaderMap::new();
        let owned = [HeaderName::from_static("traceparent"), HeaderName::from_static("tracestate")];
        let extras = [
            Extra { fields: &none, owned: &[] },
            Extra { fields: &token_and_trace, owned: &[] },
            // A trace started anew: the caller's `tracestate` goes too.
            Extra { fields: &token_and_trace, owned: &owned },
        ];
        for headers in &requests {
            for trusted in [false, true] {
                let forwarding = Forwarding::new(peer, trusted, trusted);
                for client in [&defaults, &passing] {
                    for stripped in [&[][..], &["authorization", "x-api-key"][..]] {
                        for extra in &extras {
                            let (expected, written) = both(headers, &forwarding, client, stripped, extra);
                            assert_eq!(written, expected, "{headers:?} trusted {trusted} stripped {stripped:?}");
                        }
                    }
                }
            }
        }
    }
}
