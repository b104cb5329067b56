//! The strict HTTP/1.1 framing tracker (`keygate::listener::framing`) on
//! arbitrary bytes: it must never panic, and its verdict must not depend on
//! how the stream is cut into reads — one read, one byte per read, or two
//! reads split where the input's first byte says — since a client chooses
//! where its TCP segments end.

#![no_main]

use keygate::listener::framing::{Fault, Tracker};
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
});
