//! One finished request as a span: what the exporter encodes. Built by
//! `Record::finish` only for sampled requests while traces are on.
//!
//! The attributes are chosen to be safe to ship to a third party: ids,
//! method, the path without its query string, codes and statuses. Never a
//! header value, never the query (where a key may travel), never a secret.

use http::Method;

use super::context::SpanContext;
use crate::keys::InlineId;

/// A finished request.
#[derive(Debug, Clone)]
pub struct Span {
    pub context: SpanContext,
    pub start_unix_nanos: u64,
    pub end_unix_nanos: u64,
    pub method: Method,
    /// The request's path, without the query string.
    pub path: String,
    pub request_id: String,
    pub key_id: Option<InlineId>,
    pub account_id: Option<InlineId>,
    /// `allowed`, or the code of the problem keygate answered with.
    pub decision: &'static str,
    /// The status the client got.
    pub status: u16,
    /// The upstream's status, when it answered.
    pub upstream_status: Option<u16>,
}

/// An attribute value.
#[derive(Debug, Clone, Copy)]
pub enum Value<'a> {
    Str(&'a str),
    Int(i64),
}

impl Span {
    /// Calls `each` with every attribute (OpenTelemetry HTTP semantic
    /// conventions where one exists, `keygate.*` for the rest).
    pub fn attributes<'a>(&'a self, mut each: impl FnMut(&'static str, Value<'a>)) {
        each("http.request.method", Value::Str(self.method.as_str()));
        each("url.path", Value::Str(&self.path));
        each("http.response.status_code", Value::Int(i64::from(self.status)));
        each("keygate.request_id", Value::Str(&self.request_id));
        each("keygate.decision", Value::Str(self.decision));
        if let Some(key) = &self.key_id {
            each("keygate.key_id", Value::Str(key.as_str()));
        }
        if let Some(account) = &self.account_id {
            each("keygate.account_id", Value::Str(account.as_str()));
        }
        if let Some(status) = self.upstream_status {
            each("keygate.upstream.status_code", Value::Int(i64::from(status)));
        }
    }
}
