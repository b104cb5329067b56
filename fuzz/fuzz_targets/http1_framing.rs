//! The strict HTTP/1.1 framing tracker (`keygate::listener::framing`) and
//! the fast path's parser (`keygate::proxy::fast::parse`, walked over the
//! stream as the fast path's connection loop walks it) on arbitrary bytes:
//! neither may panic, neither verdict may depend on how the stream is cut
//! into reads — one read, one byte per read, or two reads split where the
//! input's first byte says — since a client chooses where its TCP segments
//! end, and nothing the tracker refuses may pass the parser. The fields
//! of a head the parser takes are what `http`'s types accept, names in
//! lower case, since the decision reads them as bytes.

#![no_main]

use keygate::listener::framing::{Fault, Tracker};
use keygate::proxy::fast::parse::{parse_request, Parsed, Walker};
use libfuzzer_sys::fuzz_target;

fn whole(input: &[u8]) -> Result<(), Fault> {
    Tracker::default().feed(input).map_err(|v| v.fault)
}

fn bytewise(input: &[u8]) -> Result<(), Fault> {
    let mut tracker = Tracker::default();
    input.iter().try_for_each(|b| tracker.feed(std::slice::from_ref(b))).map_err(|v| v.fault)
}

fn split(input: &[u8], at: usize) -> Result<(), Fault> {
    let mut tracker = Tracker::default();
    tracker.feed(&input[..at]).and_then(|()| tracker.feed(&input[at..])).map_err(|v| v.fault)
}

/// The parser's verdict: `Ok(false)` when a head is handed to hyper.
fn walk(pieces: &mut dyn Iterator<Item = &[u8]>) -> (Result<bool, Fault>, bool) {
    let mut walker = Walker::default();
    for piece in pieces {
        match walker.feed(piece) {
            Ok(true) => {}
            other => return (other, walker.head_pending()),
        }
    }
    (Ok(true), walker.head_pending())
}

fuzz_target!(|data: &[u8]| {
    let Some((&cut, input)) = data.split_first() else { return };
    let once = whole(input);
    assert_eq!(once, bytewise(input), "one read vs one byte per read");
    let at = if input.is_empty() { 0 } else { cut as usize * input.len() / 256 };
    assert_eq!(once, split(input, at), "one read vs split at {at}");
    // After a violation the tracker keeps reporting it.
    let mut tracker = Tracker::default();
    if tracker.feed(input).is_err() {
        assert!(tracker.feed(b"GET / HTTP/1.1\r\n\r\n").is_err());
    }

    let (parsed, pending) = walk(&mut std::iter::once(input));
    let (by_byte, _) = walk(&mut input.chunks(1));
    assert_eq!(parsed.is_ok(), by_byte.is_ok(), "parser: one read vs one byte per read");
    let (two, _) = walk(&mut [&input[..at], &input[at..]].into_iter());
    assert_eq!(parsed.is_ok(), two.is_ok(), "parser: one read vs split at {at}");
    if once.is_err() && parsed == Ok(true) {
        assert!(pending, "the tracker refuses what the parser takes whole");
    }
    if let Parsed::Complete(head) = parse_request(input) {
        for (name, value) in head.fields.iter() {
            assert!(http::HeaderName::from_bytes(name).is_ok_and(|n| n.as_str().as_bytes() == name), "{name:?}");
            assert!(http::HeaderValue::from_bytes(value).is_ok(), "{value:?}");
        }
    }
});
