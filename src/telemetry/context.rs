//! W3C Trace Context: reading the caller's `traceparent`, choosing this
//! request's trace id, span id and sampled flag, and writing the
//! `traceparent` the upstream gets (keygate's span as its parent).
//!
//! Strict by the spec: a header that is not exactly one well-formed value
//! (lowercase hex, non-zero ids, version other than `ff`) starts a new
//! trace, and the caller's `tracestate` is then dropped with it. Nothing
//! here allocates except the header value written for the upstream.

use http::header::{HeaderMap, HeaderName, HeaderValue};

pub const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
pub const TRACESTATE: HeaderName = HeaderName::from_static("tracestate");
/// The fields `Context::inject` sets or removes: none of the caller's
/// pass beside them.
pub const PROPAGATED: [HeaderName; 2] = [TRACEPARENT, TRACESTATE];

/// The longest `tracestate` kept (the spec's 32 members of at most 256
/// bytes could be longer; past this it is dropped rather than cut).
const MAX_TRACESTATE: usize = 512;

/// A trace position: this request's span and where it hangs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpanContext {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    /// The caller's span, when the request continued a trace.
    pub parent: Option<[u8; 8]>,
    pub sampled: bool,
    /// The caller's `tracestate`, kept only with a valid `traceparent`.
    pub trace_state: Option<HeaderValue>,
}

/// The caller's position in its trace, from a valid `traceparent`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parent {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub sampled: bool,
}

impl SpanContext {
    /// This request's span: a child of the caller's span when `headers`
    /// carry a valid `traceparent`, else the root of a new trace sampled
    /// with probability `ratio`.
    pub fn from_headers(headers: &HeaderMap, ratio: f64) -> SpanContext {
        let span_id = nonzero_u64().to_be_bytes();
        match parent(headers) {
            Some(parent) => SpanContext {
                trace_id: parent.trace_id,
                span_id,
                parent: Some(parent.span_id),
                sampled: parent.sampled,
                trace_state: trace_state(headers),
            },
            None => {
                let trace_id = nonzero_u128().to_be_bytes();
                SpanContext {
                    trace_id,
                    span_id,
                    parent: None,
                    sampled: ratio_sampled(&trace_id, ratio),
                    trace_state: None,
                }
            }
        }
    }

    /// The `traceparent` value naming this span as the parent.
    pub fn traceparent(&self) -> HeaderValue {
        let mut text = [0u8; 55];
        text[..3].copy_from_slice(b"00-");
        hex_into(&self.trace_id, &mut text[3..35]);
        text[35] = b'-';
        hex_into(&self.span_id, &mut text[36..52]);
        text[52..].copy_from_slice(if self.sampled { b"-01" } else { b"-00" });
        // Hex digits and dashes are always a valid header value.
        HeaderValue::from_bytes(&text).unwrap_or(HeaderValue::from_static("00"))
    }

    /// Makes `headers` (the upstream request's) carry this span as the
    /// parent, replacing whatever the caller sent, and keep the caller's
    /// `tracestate` only when its trace is continued.
    pub fn inject(&self, headers: &mut HeaderMap) {
        headers.insert(TRACEPARENT, self.traceparent());
        match &self.trace_state {
            Some(state) => {
                headers.insert(TRACESTATE, state.clone());
            }
            None => {
                headers.remove(TRACESTATE);
            }
        }
    }
}

/// The caller's valid `traceparent`, if it sent exactly one.
pub fn parent(headers: &HeaderMap) -> Option<Parent> {
    let mut values = headers.get_all(TRACEPARENT).iter();
    let value = values.next()?;
    if values.next().is_some() {
        return None;
    }
    parse(value.as_bytes())
}

/// Parses one `traceparent` value (version 00, or a later version read as
/// 00 as the spec asks, ignoring what follows the flags).
pub fn parse(text: &[u8]) -> Option<Parent> {
    if text.len() < 55 || text[2] != b'-' || text[35] != b'-' || text[52] != b'-' {
        return None;
    }
    let version = hex_byte(&text[0..2])?;
    if version == 0xff || (version == 0 && text.len() != 55) || (text.len() > 55 && text[55] != b'-') {
        return None;
    }
    let mut trace_id = [0u8; 16];
    let mut span_id = [0u8; 8];
    unhex_into(&text[3..35], &mut trace_id)?;
    unhex_into(&text[36..52], &mut span_id)?;
    let flags = hex_byte(&text[53..55])?;
    if trace_id == [0; 16] || span_id == [0; 8] {
        return None;
    }
    Some(Parent { trace_id, span_id, sampled: flags & 1 == 1 })
}

fn trace_state(headers: &HeaderMap) -> Option<HeaderValue> {
    let mut values = headers.get_all(TRACESTATE).iter();
    let value = values.next()?;
    // Several lines would need joining; rare enough to drop instead.
    if values.next().is_some() || value.len() > MAX_TRACESTATE || value.is_empty() {
        return None;
    }
    Some(value.clone())
}

/// The spec's ratio sampler: a trace is kept when its id's last 8 bytes,
/// read as a number, fall under `ratio` of their range, so every service
/// sampling at the same ratio keeps the same traces.
fn ratio_sampled(trace_id: &[u8; 16], ratio: f64) -> bool {
    if ratio >= 1.0 {
        return true;
    }
    let mut low = [0u8; 8];
    low.copy_from_slice(&trace_id[8..]);
    let bound = (ratio * (u64::MAX as f64)) as u64;
    u64::from_be_bytes(low) < bound
}

fn nonzero_u64() -> u64 {
    rand::random::<u64>().max(1)
}

fn nonzero_u128() -> u128 {
    rand::random::<u128>().max(1)
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Lowercase hex of `bytes` into `out` (twice as long).
pub fn hex_into(bytes: &[u8], out: &mut [u8]) {
    for (i, b) in bytes.iter().enumerate() {
        out[2 * i] = HEX[usize::from(b >> 4)];
        out[2 * i + 1] = HEX[usize::from(b & 0xf)];
    }
}

/// Lowercase hex of `bytes` as a string.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().flat_map(|b| [char::from(HEX[usize::from(b >> 4)]), char::from(HEX[usize::from(b & 0xf)])]).collect()
}

/// Lowercase hex only: the spec forbids uppercase.
fn nibble(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

fn hex_byte(two: &[u8]) -> Option<u8> {
    Some(nibble(two[0])? << 4 | nibble(two[1])?)
}

fn unhex_into(text: &[u8], out: &mut [u8]) -> Option<()> {
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = hex_byte(&text[2 * i..2 * i + 2])?;
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(HeaderName::from_bytes(k.as_bytes()).expect("name"), HeaderValue::from_str(v).expect("value"));
        }
        map
    }

    #[test]
    fn a_valid_traceparent_is_continued() {
        let ctx = SpanContext::from_headers(&headers(&[("traceparent", VALID), ("tracestate", "k=v")]), 0.0);
        assert_eq!(hex(&ctx.trace_id), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(ctx.parent.map(|p| hex(&p)).as_deref(), Some("00f067aa0ba902b7"));
        assert!(ctx.sampled, "the caller's sampled flag wins over the ratio");
        assert_eq!(ctx.trace_state, Some(HeaderValue::from_static("k=v")));
        let written = ctx.traceparent();
        let reparsed = parse(written.as_bytes()).expect("what we write parses");
        assert_eq!(reparsed.trace_id, ctx.trace_id);
        assert_eq!(reparsed.span_id, ctx.span_id);
        assert_ne!(ctx.span_id, reparsed.trace_id[..8], "a span id of its own");
        let unsampled = VALID.replace("-01", "-00");
        assert!(!SpanContext::from_headers(&headers(&[("traceparent", &unsampled)]), 1.0).sampled);
    }

    #[test]
    fn a_later_version_is_read_as_00() {
        assert!(parse(format!("cc{}-what-comes-next", &VALID[2..]).as_bytes()).is_some());
        assert!(parse(format!("cc{}", &VALID[2..]).as_bytes()).is_some());
    }

    #[test]
    fn malformed_traceparents_start_a_new_trace() {
        let zero_trace = "00-00000000000000000000000000000000-00f067aa0ba902b7-01";
        let zero_span = "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01";
        let upper = VALID.to_uppercase();
        let long_00 = format!("{VALID}-x");
        let ff = format!("ff{}", &VALID[2..]);
        for bad in [zero_trace, zero_span, &upper, &long_00, &ff, "00-abc", "", &VALID[..54]] {
            assert_eq!(parse(bad.as_bytes()), None, "{bad:?}");
            let ctx = SpanContext::from_headers(&headers(&[("traceparent", bad), ("tracestate", "k=v")]), 1.0);
            assert_eq!(ctx.parent, None, "{bad:?}");
            assert_eq!(ctx.trace_state, None, "tracestate goes with an invalid traceparent");
        }
        let twice = headers(&[("traceparent", VALID), ("traceparent", VALID)]);
        assert_eq!(SpanContext::from_headers(&twice, 1.0).parent, None);
    }

    #[test]
    fn inject_replaces_the_callers_headers() {
        let incoming = headers(&[("traceparent", "garbage"), ("tracestate", "k=v")]);
        let ctx = SpanContext::from_headers(&incoming, 1.0);
        let mut upstream = incoming.clone();
        ctx.inject(&mut upstream);
        assert_eq!(upstream.get_all(TRACEPARENT).iter().count(), 1);
        assert_eq!(upstream[TRACEPARENT], ctx.traceparent());
        assert!(!upstream.contains_key(TRACESTATE));
    }

    #[test]
    fn the_ratio_sampler_keeps_about_its_share() {
        assert!(ratio_sampled(&[0xff; 16], 1.0));
        assert!(!ratio_sampled(&[0; 16], 0.0));
        let kept = (0..10_000).filter(|_| ratio_sampled(&nonzero_u128().to_be_bytes(), 0.25)).count();
        assert!((2_000..3_000).contains(&kept), "{kept}");
    }
}
