//! The fast path's parser on the cases of `listener::framing`'s tests (and
//! a few of its own): the same streams are accepted and refused, whether
//! they come in one read, one byte per read, or split in two anywhere.

use super::*;
use crate::listener::framing::Tracker;
use crate::proxy::fields::{Fields, View};

/// The walker's verdict on `input`, checked to be the same whether it
/// comes in one read, one byte per read, or split in two at every offset.
/// `Ok(false)`: a head needs hyper.
fn verdict(input: &[u8]) -> Result<bool, Fault> {
    let once = Walker::default().feed(input);
    let mut walker = Walker::default();
    let mut bytewise = Ok(true);
    for b in input {
        bytewise = walker.feed(std::slice::from_ref(b));
        if !matches!(bytewise, Ok(true)) {
            break;
        }
    }
    assert_eq!(once.is_ok(), bytewise.is_ok(), "one read vs one byte per read: {:?}", String::from_utf8_lossy(input));
    for split in 1..input.len() {
        let mut walker = Walker::default();
        let two =
            walker.feed(&input[..split]).and_then(|more| if more { walker.feed(&input[split..]) } else { Ok(more) });
        assert_eq!(once.is_ok(), two.is_ok(), "split at {split}: {:?}", String::from_utf8_lossy(input));
    }
    once
}

fn refused(input: &[u8]) -> bool {
    let refused = verdict(input).is_err();
    // Nothing the tracker refuses passes here.
    if Tracker::default().feed(input).is_err() && !refused {
        let mut walker = Walker::default();
        let handed_over = walker.feed(input) == Ok(false) || walker.head_pending();
        assert!(handed_over, "the tracker refuses what the parser takes: {:?}", String::from_utf8_lossy(input));
    }
    refused
}

const GET: &[u8] = b"GET /a HTTP/1.1\r\nHost: x\r\nX-API-Key: kg_live_abc\r\n\r\n";

fn complete(input: &[u8]) -> Head {
    match parse_request(input) {
        Parsed::Complete(head) => head,
        other => panic!("{other:?}: {:?}", String::from_utf8_lossy(input)),
    }
}

#[test]
fn well_formed_requests_pass() {
    assert_eq!(verdict(GET), Ok(true));
    assert!(!refused(b"\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n"));
    assert!(!refused(b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nab\ncd"));
    assert!(!refused(b"POST / HTTP/1.1\r\ncontent-length:  3 , 3\r\nContent-Length: 3\r\n\r\nabc"));
    assert!(!refused(b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n"));
    let head = complete(GET);
    assert_eq!((head.len, head.framing, head.flags), (GET.len(), Framing::Empty, Flags::default()));
    assert_eq!(head.fields.first(&http::HeaderName::from_static("x-api-key")), Some(&b"kg_live_abc"[..]));
    assert_eq!(head.uri, "/a");
}

#[test]
fn fields_are_read_by_lower_case_name_in_the_clients_order() {
    let input = b"GET /a?k=1 HTTP/1.1\r\nHOST: x\r\nX-Forwarded-For: 1.1.1.1\r\nx-forwarded-FOR:  2.2.2.2 \r\n\r\n";
    let head = complete(input);
    let xff = http::HeaderName::from_static("x-forwarded-for");
    assert_eq!(head.fields.values(&xff).collect::<Vec<_>>(), [&b"1.1.1.1"[..], b"2.2.2.2"]);
    assert_eq!(head.fields.values(&xff).next_back(), Some(&b"2.2.2.2"[..]));
    assert!(head.fields.has(&http::header::HOST) && !head.fields.has(&http::header::ACCEPT));
    let names: Vec<&[u8]> = head.fields.iter().map(|(name, _)| name).collect();
    assert_eq!(names, [&b"host"[..], b"x-forwarded-for", b"x-forwarded-for"]);
    // What the head limit counts, on both paths.
    let map = head.fields.to_map();
    assert_eq!(head.fields.size(), map.size());
    assert_eq!(head.view().head_size(), View::of(&head.to_request().into_parts().0).head_size());
    assert_eq!(head.uri, "/a?k=1");
}

#[test]
fn a_connections_heads_reuse_one_buffer_and_never_share_bytes() {
    let mut reuse = Reuse::default();
    let mut parse = |input: &[u8]| match parse_request_with(input, &mut reuse) {
        Parsed::Complete(head) => head,
        other => panic!("{other:?}"),
    };
    let first = parse(GET);
    // A head still in use keeps its bytes while the next is parsed.
    let second = parse(b"GET /b HTTP/1.1\r\nHost: y\r\nX-API-Key: kg_live_xyz\r\n\r\n");
    let key = http::HeaderName::from_static("x-api-key");
    assert_eq!(first.fields.first(&key), Some(&b"kg_live_abc"[..]));
    assert_eq!(second.fields.first(&key), Some(&b"kg_live_xyz"[..]));
    assert_eq!((first.uri.path(), second.uri.path()), ("/a", "/b"));
    reuse.recycle(first);
    reuse.recycle(second);
    // Heads are copied one after the other into one buffer, and once
    // they are done with, its room is used again: within a few buffers'
    // worth of heads, one lands where an earlier did. (A new allocation a
    // head, freed after it, would put every head at the same place.)
    let mut seen = std::collections::HashSet::new();
    let (mut next_to_last, mut again) = (0, false);
    let mut last = None;
    for _ in 0..4 * REUSED / GET.len() {
        let Parsed::Complete(head) = parse_request_with(GET, &mut reuse) else { panic!("parses") };
        assert_eq!(head.fields.first(&key), Some(&b"kg_live_abc"[..]));
        let at = head.fields.first(&key).map_or(0, |v| v.as_ptr() as usize);
        next_to_last += usize::from(last == Some(at - GET.len()));
        again |= !seen.insert(at);
        last = Some(at);
        reuse.recycle(head);
    }
    assert!(next_to_last > REUSED / GET.len(), "heads go one after the other: {next_to_last}");
    assert!(again, "the buffer is used again rather than a new one taken");
}

#[test]
fn what_hyper_serves_is_handed_over() {
    for input in [
        &b"GET / HTTP/1.0\r\n\r\n"[..],
        b"GET /ws HTTP/1.1\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
        b"CONNECT a:1 HTTP/1.1\r\n\r\n",
        b"PUT / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\nabc",
    ] {
        assert_eq!(verdict(input), Ok(false), "{:?}", String::from_utf8_lossy(input));
    }
    assert!(complete(b"GET / HTTP/1.1\r\nConnection: keep-alive, Close\r\n\r\n").flags.close);
}

#[test]
fn pipelined_requests_pass_and_bodies_are_skipped() {
    let mut input = GET.to_vec();
    input.extend_from_slice(b"POST /b HTTP/1.1\r\nContent-Length: 30\r\n\r\nGET / HTTP/1.1\nA: b\r\nC: d\r\n\r\n\n");
    input.extend_from_slice(b"POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n\n\n\n\r\n0\r\n\r\n");
    input.extend_from_slice(GET);
    assert!(!refused(&input));
    let mut walker = Walker::default();
    assert_eq!(walker.feed(&input), Ok(true));
    assert_eq!(walker.requests, 4);
    assert!(!walker.head_pending());
}

#[test]
fn chunked_bodies_with_extensions_and_trailers_pass() {
    let body = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n\
        3;name=value;q=\"a b\"\r\nabc\r\n\
        A ; x\r\n0123456789\r\n\
        0\r\nX-Trailer: yes\r\nX-Other: 1\r\n\r\n";
    let mut twice = body.to_vec();
    twice.extend_from_slice(body);
    assert!(!refused(&twice));
    let mut walker = Walker::default();
    assert_eq!(walker.feed(&twice), Ok(true));
    assert_eq!(walker.requests, 2);
}

#[test]
fn bare_lf_is_refused_in_heads_chunk_lines_and_trailers() {
    for input in [
        &b"GET / HTTP/1.1\nHost: x\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nX-A: a\nTransfer-Encoding: chunked\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\n\n",
        b"GET / HTTP/1.1\r\nHost: x\r\n\n",
        b"\nGET / HTTP/1.1\r\n\r\n",
        b"\r\rGET / HTTP/1.1\r\n\r\n",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\nabc\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3;a\nabc\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcXX0\r\n\r\n",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX-T: 1\n\r\n",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\n",
        // hyper's own refusals, which the fast path makes itself.
        b"GET /x HTTP/1.1\r\nX-Odd: a\rb\r\n\r\n",
        b"GET /x HTTP/1.1\rX-Odd: a\r\n\r\n",
        b"GET /x HTTP/1.1\r\nX-Folded: first\r\n second\r\n\r\n",
        b"POST /x HTTP/1.1\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n",
    ] {
        assert!(refused(input), "{:?}", String::from_utf8_lossy(input));
    }
}

#[test]
fn ambiguous_lengths_are_refused() {
    for extra in [
        "Content-Length: 4\r\nTransfer-Encoding: chunked\r\n",
        "Transfer-Encoding: chunked\r\nContent-Length: 4\r\n",
        "Content-Length: 3\r\nContent-Length: 30\r\n",
        "Content-Length: 3, 30\r\n",
        "Content-Length: +3\r\n",
        "Content-Length: -3\r\n",
        "Content-Length: 3 3\r\n",
        "Content-Length: 0x3\r\n",
        "Content-Length:\r\n",
        "Content-Length: 99999999999999999999999\r\n",
        "Transfer-Encoding: chunked, gzip\r\n",
        "Transfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n",
        "Transfer-Encoding: xchunked\r\n",
        "Transfer-Encoding: identity\r\n",
    ] {
        let input = format!("POST / HTTP/1.1\r\nHost: x\r\n{extra}\r\n0\r\n\r\n");
        assert!(refused(input.as_bytes()), "{extra:?}");
    }
    let long = format!("POST / HTTP/1.1\r\nContent-Length: {}3\r\n\r\nabc", " ".repeat(200));
    assert!(refused(long.as_bytes()));
    // HTTP/1.0 has no chunked encoding.
    assert!(refused(b"POST /x HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"));
}

#[test]
fn bad_chunk_sizes_and_extensions_are_refused() {
    for chunk in [
        &b"zz\r\nabc\r\n"[..],
        b"-1\r\nabc\r\n",
        b" 3\r\nabc\r\n",
        b"3 3\r\nabc\r\n",
        b"\r\nabc\r\n",
        b"ffffffffffffffffff\r\nabc\r\n",
        b"3;\0\r\nabc\r\n",
        b"3;a=\x01\r\nabc\r\n",
        b"3;a=\x7f\r\nabc\r\n",
        b"3;a=\xc3\xa9\r\nabc\r\n",
        b"3;a\rb\r\nabc\r\n",
    ] {
        let mut input = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        input.extend_from_slice(chunk);
        assert!(refused(&input), "{:?}", String::from_utf8_lossy(chunk));
    }
}

#[test]
fn too_many_fields_are_told_apart() {
    let mut input = b"GET / HTTP/1.1\r\n".to_vec();
    for i in 0..=MAX_HEADERS {
        input.extend_from_slice(format!("X-H{i}: {i}\r\n").as_bytes());
    }
    input.extend_from_slice(b"\r\n");
    assert!(matches!(parse_request(&input), Parsed::TooManyHeaders));
    assert!(matches!(parse_request(b"GET / HTTP/1.1\r\nHost: x\r\n"), Parsed::Partial));
}

#[test]
fn random_bytes_never_panic_and_the_verdict_never_depends_on_reads() {
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let alphabet = b"\r\n:;= \t0123456789abcdefABCDEF\0\x7fchunkedContent-LengthTransfer-EncodingUpgradeGET HTTP/1.1";
    for _ in 0..3_000 {
        let prefix: &[u8] = match next() % 4 {
            0 => b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            1 => b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\n",
            2 => b"GET / HTTP/1.1\r\n",
            _ => b"",
        };
        let len = (next() % 120) as usize;
        let mut input = prefix.to_vec();
        input.extend((0..len).map(|_| {
            let r = next();
            if r % 3 == 0 {
                r as u8
            } else {
                alphabet[(r >> 8) as usize % alphabet.len()]
            }
        }));
        let _ = refused(&input);
    }
}

#[test]
fn empty_values_are_fields_like_any() {
    let head = complete(b"GET / HTTP/1.1\r\nX-Empty:\r\nHost: x\r\nX-Blank:   \r\n\r\n");
    let fields: Vec<(&[u8], &[u8])> = head.fields.iter().collect();
    assert_eq!(fields, [(&b"x-empty"[..], &b""[..]), (b"host", b"x"), (b"x-blank", b"")]);
    assert_eq!(head.fields.to_map().len(), 3);
}
