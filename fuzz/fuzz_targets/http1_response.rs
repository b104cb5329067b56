//! The fast path's response splice (`keygate::proxy::fast::upstream`) on
//! arbitrary upstream bytes: it may not panic, and whatever head it accepts
//! becomes a client head that is one well-formed HTTP/1.1 head — the same
//! status, no hop-by-hop field, no field the upstream's `Connection` names,
//! no `X-Request-Id` but keygate's, and one framing — since an upstream may
//! send anything and the client trusts the head keygate writes.

#![no_main]

use keygate::proxy::fast::upstream::{parse_response, Body};
use keygate::proxy::fast::write::{end_head, Delimit};
use libfuzzer_sys::fuzz_target;

const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "proxy-authenticate",
    "proxy-authorization",
];

fuzz_target!(|input: &[u8]| {
    let Some((&flags, upstream)) = input.split_first() else { return };
    let (head_request, limits, close) = (flags & 1 != 0, flags & 2 != 0, flags & 4 != 0);
    let mut out = Vec::new();
    let Ok(Some(head)) = parse_response(upstream, head_request, limits, &mut out) else { return };
    assert!(head.len <= upstream.len());
    let delimit = match head.body {
        Body::Chunked | Body::Close => Delimit::Chunked,
        Body::Empty | Body::Length(_) => Delimit::AsIs,
    };
    end_head(&mut out, b"x-request-id: keygate\r\n", delimit, close);

    // What the upstream's `Connection` fields name.
    let mut fields = [httparse::EMPTY_HEADER; 128];
    let mut theirs = httparse::Response::new(&mut fields);
    assert!(matches!(theirs.parse(upstream), Ok(httparse::Status::Complete(_))), "accepted, so it parses");
    let named: Vec<String> = theirs
        .headers
        .iter()
        .filter(|f| f.name.eq_ignore_ascii_case("connection"))
        .flat_map(|f| f.value.split(|&b| b == b','))
        .map(|t| String::from_utf8_lossy(t.trim_ascii()).to_ascii_lowercase())
        .collect();

    let mut fields = [httparse::EMPTY_HEADER; 128];
    let mut ours = httparse::Response::new(&mut fields);
    assert_eq!(ours.parse(&out), Ok(httparse::Status::Complete(out.len())), "one whole head: {out:?}");
    assert_eq!(ours.code, theirs.code);
    let mut request_ids = 0;
    let mut chunked = 0;
    let mut length = false;
    for field in ours.headers.iter() {
        let name = field.name.to_ascii_lowercase();
        assert_eq!(name, field.name, "names in lower case");
        match name.as_str() {
            "x-request-id" => {
                request_ids += 1;
                assert_eq!(field.value, b"keygate");
            }
            "transfer-encoding" => {
                chunked += 1;
                assert_eq!(field.value, b"chunked");
            }
            "connection" => assert!(close && field.value == b"close"),
            "content-length" => length = true,
            "ratelimit" | "ratelimit-policy" => assert!(!limits, "keygate's own replace the upstream's"),
            _ => assert!(!HOP_BY_HOP.contains(&name.as_str()), "hop-by-hop {name}"),
        }
        if name != "connection" && name != "transfer-encoding" && name != "x-request-id" {
            assert!(!named.contains(&name), "{name} is named in Connection");
        }
    }
    assert_eq!(request_ids, 1);
    assert_eq!(chunked, usize::from(delimit == Delimit::Chunked));
    assert!(!(length && chunked > 0), "a length beside chunked framing");
});
