//! The OTLP protobuf encoding of a batch of spans: the subset of
//! `ExportTraceServiceRequest` (opentelemetry-proto, `trace/v1`) keygate
//! fills, written by hand so that traces cost no gRPC or protobuf crates.
//!
//! Field numbers are those of `opentelemetry/proto/{collector/trace,trace,
//! resource,common}/v1/*.proto`; the test receiver decodes with an
//! independent decoder (prost). Runs on the exporter task only, never on
//! the request path.

use super::span::{Span, Value};

/// Protobuf wire types.
const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const LEN: u8 = 2;

/// `Span.SpanKind.SPAN_KIND_SERVER`.
const KIND_SERVER: u64 = 2;
/// `Status.StatusCode.STATUS_CODE_ERROR`.
const STATUS_ERROR: u64 = 2;

/// Who sends the spans: the resource and scope of every span in a batch.
#[derive(Debug, Clone)]
pub struct Origin {
    pub service_name: String,
    pub service_version: &'static str,
}

/// `ExportTraceServiceRequest { resource_spans = 1 }` holding `spans`.
pub fn export_request(origin: &Origin, spans: &[Span]) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + spans.len() * 320);
    message(&mut out, 1, |rs| {
        // ResourceSpans.resource = 1: Resource.attributes = 1.
        message(rs, 1, |resource| {
            key_value(resource, 1, "service.name", &Value::Str(&origin.service_name));
            key_value(resource, 1, "service.version", &Value::Str(origin.service_version));
        });
        // ResourceSpans.scope_spans = 2.
        message(rs, 2, |ss| {
            // ScopeSpans.scope = 1: InstrumentationScope { name = 1, version = 2 }.
            message(ss, 1, |scope| {
                string(scope, 1, "keygate");
                string(scope, 2, origin.service_version);
            });
            for span in spans {
                message(ss, 2, |s| encode_span(s, span));
            }
        });
    });
    out
}

fn encode_span(out: &mut Vec<u8>, span: &Span) {
    bytes(out, 1, &span.context.trace_id);
    bytes(out, 2, &span.context.span_id);
    if let Some(state) = &span.context.trace_state {
        bytes(out, 3, state.as_bytes());
    }
    if let Some(parent) = &span.context.parent {
        bytes(out, 4, parent);
    }
    string(out, 5, span.method.as_str());
    tag(out, 6, VARINT);
    varint(out, KIND_SERVER);
    fixed64(out, 7, span.start_unix_nanos);
    fixed64(out, 8, span.end_unix_nanos);
    span.attributes(|key, value| key_value(out, 9, key, &value));
    if span.status >= 500 {
        // Span.status = 15: Status { message = 2, code = 3 }.
        message(out, 15, |status| {
            string(status, 2, span.decision);
            tag(status, 3, VARINT);
            varint(status, STATUS_ERROR);
        });
    }
    // Span.flags = 16 (fixed32): the W3C trace flags in the low byte.
    tag(out, 16, 5);
    out.extend_from_slice(&u32::from(span.context.sampled).to_le_bytes());
}

/// `KeyValue { key = 1, value = 2: AnyValue }` as field `field`.
fn key_value(out: &mut Vec<u8>, field: u32, key: &str, value: &Value<'_>) {
    message(out, field, |kv| {
        string(kv, 1, key);
        message(kv, 2, |any| match value {
            // AnyValue { string_value = 1, int_value = 3 }.
            Value::Str(s) => string(any, 1, s),
            Value::Int(i) => {
                tag(any, 3, VARINT);
                varint(any, *i as u64);
            }
        });
    });
}

/// A length-delimited field whose body `fill` writes. The body is built in
/// a buffer of its own, then copied after its length: simple, and cheap at
/// a few hundred spans a batch.
fn message(out: &mut Vec<u8>, field: u32, fill: impl FnOnce(&mut Vec<u8>)) {
    let mut body = Vec::new();
    fill(&mut body);
    bytes(out, field, &body);
}

fn string(out: &mut Vec<u8>, field: u32, value: &str) {
    bytes(out, field, value.as_bytes());
}

fn bytes(out: &mut Vec<u8>, field: u32, value: &[u8]) {
    tag(out, field, LEN);
    varint(out, value.len() as u64);
    out.extend_from_slice(value);
}

fn fixed64(out: &mut Vec<u8>, field: u32, value: u64) {
    tag(out, field, FIXED64);
    out.extend_from_slice(&value.to_le_bytes());
}

fn tag(out: &mut Vec<u8>, field: u32, wire_type: u8) {
    varint(out, u64::from(field) << 3 | u64::from(wire_type));
}

fn varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_follow_the_wire_format() {
        let encoded = |v: u64| {
            let mut out = Vec::new();
            varint(&mut out, v);
            out
        };
        assert_eq!(encoded(0), [0]);
        assert_eq!(encoded(127), [0x7f]);
        assert_eq!(encoded(300), [0xac, 0x02]);
        assert_eq!(encoded(u64::MAX).len(), 10);
        // A negative int64 is ten bytes, as protobuf writes it.
        let mut out = Vec::new();
        key_value(&mut out, 9, "k", &Value::Int(-1));
        assert_eq!(out.len(), 2 + 3 + 2 + 11);
    }
}
