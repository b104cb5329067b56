//! Traces (docs/proxy.md, "Traces and the access log"): W3C `traceparent` continued to the upstream with
//! keygate's span as parent, spans exported over OTLP/HTTP to a real
//! receiver that decodes them on its own (prost), refused requests traced
//! too, no secret or query string in what is shipped, and a collector that
//! is down or slow costing requests nothing but counted spans. The access
//! log and the upstream-warning limit run the real binary (`access`).

mod kit;

#[path = "telemetry/access.rs"]
mod access;

use std::time::Duration;

use bytes::Bytes;
use http::{Method, StatusCode};
use keygate::cli::client::AdminClient;
use kit::http::{fetch, Reply};
use kit::otlp::{Collector, Span};
use kit::{AdminCalls, TestGateway};

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";
const QUERY_TEXT: &str = "private-query-value";

fn traceparent(trace: &str, span: &str, flags: &str) -> String {
    format!("00-{trace}-{span}-{flags}")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A gateway exporting to `collector` (with `edit` applied), one account
/// and one read key: (gateway, key id, account id, secret).
async fn traced(
    collector: &Collector,
    edit: impl FnOnce(&mut keygate::config::Config) + 'static,
) -> (kit::Gateway, String, String, String) {
    let url = collector.url();
    let gateway = TestGateway::new()
        .config(move |c| {
            c.telemetry.otlp_endpoint = Some(url);
            c.proxy.key_query_param = Some("api_key".into());
            edit(c);
        })
        .start()
        .await;
    let account = gateway.admin.account("A").await;
    let (key_id, secret) = gateway.admin.key(&account, "read").await;
    (gateway, key_id, account, secret)
}

async fn get(gateway: &kit::Gateway, path: &str, headers: &[(&str, &str)]) -> Reply {
    fetch(Method::GET, &format!("http://{}{path}", gateway.proxy()), headers, Bytes::new()).await
}

/// The one `traceparent` the upstream received, as (trace id, parent id, flags).
fn upstream_traceparent(reply: &Reply) -> (String, String, String) {
    let values = reply.json()["headers"]["traceparent"].as_array().cloned().unwrap_or_default();
    assert_eq!(values.len(), 1, "one traceparent upstream: {values:?}");
    let text = values[0].as_str().expect("text").to_owned();
    let parts: Vec<&str> = text.split('-').collect();
    assert_eq!((parts.len(), parts[0]), (4, "00"), "{text}");
    (parts[1].to_owned(), parts[2].to_owned(), parts[3].to_owned())
}

fn span_of<'a>(spans: &'a [Span], request_id: &str) -> &'a Span {
    spans
        .iter()
        .find(|s| s.str("keygate.request_id") == request_id)
        .unwrap_or_else(|| panic!("no span for request {request_id} in {spans:?}"))
}

async fn scrape(admin: &AdminClient) -> String {
    let (status, body) = admin.request(Method::GET, "/metrics", None).await.expect("metrics");
    assert_eq!(status, StatusCode::OK);
    String::from_utf8(body.to_vec()).expect("text")
}

fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.trim().parse().ok()))
        .unwrap_or_else(|| panic!("no {series} in the scrape"))
}

#[tokio::test]
async fn traceparent_is_continued_with_keygates_span_as_the_upstreams_parent() {
    let collector = Collector::start().await;
    let (gateway, key_id, account, secret) = traced(&collector, |_| {}).await;
    let incoming = traceparent(TRACE, CALLER_SPAN, "01");
    let auth = format!("Bearer {secret}");
    let path = format!("/things/1?color={QUERY_TEXT}");
    let headers = [("authorization", auth.as_str()), ("traceparent", &incoming), ("tracestate", "vendor=opaque")];
    let reply = get(&gateway, &path, &headers).await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);

    let (trace, parent, flags) = upstream_traceparent(&reply);
    assert_eq!((trace.as_str(), flags.as_str()), (TRACE, "01"), "the caller's trace, still sampled");
    assert_ne!(parent, CALLER_SPAN, "the caller's traceparent must not pass unchanged");
    assert_eq!(reply.json()["headers"]["tracestate"][0], "vendor=opaque");

    let spans = collector.wait_for(1).await;
    let span = span_of(&spans, reply.header("x-request-id").expect("request id"));
    assert_eq!(hex(&span.trace_id), TRACE);
    assert_eq!(hex(&span.parent_span_id), CALLER_SPAN, "a child of the caller's span");
    assert_eq!(hex(&span.span_id), parent, "the upstream's parent is keygate's span");
    assert_eq!(span.trace_state, "vendor=opaque");
    assert_eq!((span.name.as_str(), span.kind), ("GET", 2), "a server span");
    assert!(span.start_time_unix_nano > 0 && span.start_time_unix_nano <= span.end_time_unix_nano);
    assert_eq!(span.str("keygate.key_id"), key_id);
    assert_eq!(span.str("keygate.account_id"), account);
    assert_eq!(span.str("keygate.decision"), "allowed");
    assert_eq!(span.str("http.request.method"), "GET");
    assert_eq!(span.str("url.path"), "/things/1", "the path without its query");
    assert_eq!(span.int("http.response.status_code"), Some(200));
    assert_eq!(span.int("keygate.upstream.status_code"), Some(200));
    assert_eq!(span.status, None, "a 200 is no error");
    let request = &collector.requests()[0];
    let resource = request.resource_spans[0].resource.as_ref().expect("resource");
    let service = resource.attributes.iter().find(|kv| kv.key == "service.name").expect("service.name");
    assert_eq!(service.value.as_ref().and_then(|v| v.value.clone()), Some(kit::otlp::Value::Str("keygate".into())));

    let raw = collector.raw();
    for needle in [secret.as_str(), QUERY_TEXT, "color="] {
        assert!(!contains(&raw, needle.as_bytes()), "{needle:?} was exported");
    }
    gateway.gateway.stop().await;
}

#[tokio::test]
async fn refused_requests_are_spans_and_keys_in_the_query_never_leave() {
    let collector = Collector::start().await;
    let (gateway, key_id, _, secret) = traced(&collector, |c| c.telemetry.service_name = "edge".into()).await;
    let forged = kit::mistyped(&secret);
    let refused = get(&gateway, "/private?x=1", &[("x-api-key", &forged)]).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    let in_query = get(&gateway, &format!("/q?api_key={secret}&color={QUERY_TEXT}"), &[]).await;
    assert_eq!(in_query.status, StatusCode::OK);
    let garbage =
        get(&gateway, "/g", &[("x-api-key", &secret), ("traceparent", "00-garbage"), ("tracestate", "a=b")]).await;

    let spans = collector.wait_for(3).await;
    let span = span_of(&spans, refused.header("x-request-id").expect("id"));
    assert_eq!(span.str("keygate.decision"), refused.code());
    assert_eq!(span.int("http.response.status_code"), Some(401));
    assert_eq!((span.attr("keygate.key_id"), span.int("keygate.upstream.status_code")), (None, None));
    assert!(span.parent_span_id.is_empty(), "no traceparent: a root span");
    assert!(span.trace_id.len() == 16 && span.trace_id.iter().any(|b| *b != 0));

    let span = span_of(&spans, in_query.header("x-request-id").expect("id"));
    assert_eq!((span.str("url.path"), span.str("keygate.key_id")), ("/q", key_id.as_str()));

    let (trace, parent, _) = upstream_traceparent(&garbage);
    let span = span_of(&spans, garbage.header("x-request-id").expect("id"));
    assert_eq!((hex(&span.trace_id), hex(&span.span_id)), (trace, parent), "a new trace replaces a malformed one");
    assert!(garbage.json()["headers"]["tracestate"].is_null(), "tracestate goes with its traceparent");
    let resource = &collector.requests()[0].resource_spans[0];
    assert!(resource.resource.as_ref().expect("resource").attributes.iter().any(|kv| kv.key == "service.name"
        && kv.value.as_ref().and_then(|v| v.value.clone()) == Some(kit::otlp::Value::Str("edge".into()))));

    let raw = collector.raw();
    for needle in [secret.as_str(), forged.as_str(), QUERY_TEXT, "api_key"] {
        assert!(!contains(&raw, needle.as_bytes()), "{needle:?} was exported");
    }
    gateway.gateway.stop().await;
}

#[tokio::test]
async fn unsampled_traces_are_propagated_but_not_exported() {
    let collector = Collector::start().await;
    let (gateway, _, _, secret) = traced(&collector, |c| c.telemetry.sample_ratio = 0.0).await;
    let new_trace = get(&gateway, "/new", &[("x-api-key", &secret)]).await;
    let (_, _, flags) = upstream_traceparent(&new_trace);
    assert_eq!(flags, "00", "ratio 0: new traces are not sampled");
    let caller_unsampled = traceparent(TRACE, CALLER_SPAN, "00");
    let off = get(&gateway, "/off", &[("x-api-key", &secret), ("traceparent", &caller_unsampled)]).await;
    let (trace, _, flags) = upstream_traceparent(&off);
    assert_eq!((trace.as_str(), flags.as_str()), (TRACE, "00"), "the caller's decision is kept");
    let caller_sampled = traceparent(TRACE, CALLER_SPAN, "01");
    let on = get(&gateway, "/on", &[("x-api-key", &secret), ("traceparent", &caller_sampled)]).await;
    collector.wait_for(1).await;
    // Two more batch intervals: anything else would have arrived by now.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let spans = collector.spans();
    assert_eq!(spans.len(), 1, "only the caller-sampled request is exported: {spans:?}");
    span_of(&spans, on.header("x-request-id").expect("id"));
    gateway.gateway.stop().await;
}

#[tokio::test]
async fn without_an_endpoint_the_callers_traceparent_passes_untouched() {
    let gateway = TestGateway::new().start().await;
    let account = gateway.admin.account("A").await;
    let (_, secret) = gateway.admin.key(&account, "read").await;
    let incoming = traceparent(TRACE, CALLER_SPAN, "01");
    let reply = get(&gateway, "/", &[("x-api-key", &secret), ("traceparent", &incoming)]).await;
    assert_eq!(upstream_traceparent(&reply), (TRACE.into(), CALLER_SPAN.into(), "01".into()));
    let metrics = scrape(&gateway.admin).await;
    assert_eq!(metric(&metrics, "keygate_trace_spans_exported_total"), 0.0, "the series exist when off");
    gateway.gateway.stop().await;
}

#[tokio::test]
async fn a_failing_collector_costs_requests_nothing_and_is_counted() {
    let collector = Collector::start().await;
    collector.fail_with(503);
    let (gateway, _, _, secret) = traced(&collector, |_| {}).await;
    for _ in 0..3 {
        assert_eq!(get(&gateway, "/", &[("x-api-key", &secret)]).await.status, StatusCode::OK);
    }
    collector.wait_for(3).await;
    let failed = "keygate_trace_spans_dropped_total{reason=\"export_failed\"}";
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while metric(&scrape(&gateway.admin).await, failed) < 3.0 {
        assert!(std::time::Instant::now() < deadline, "export failures not counted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(metric(&scrape(&gateway.admin).await, "keygate_trace_spans_exported_total"), 0.0);
    gateway.gateway.stop().await;
}

#[tokio::test]
async fn a_full_queue_drops_spans_instead_of_waiting() {
    // A collector that accepts connections and never answers: the
    // exporter's POST hangs, and the queue of one span behind it fills.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", silent.local_addr().expect("addr"));
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((tcp, _)) = silent.accept().await {
            held.push(tcp);
        }
    });
    let gateway = TestGateway::new()
        .config(move |c| {
            c.telemetry.otlp_endpoint = Some(url);
            c.telemetry.queue_spans = 1;
        })
        .start()
        .await;
    let account = gateway.admin.account("A").await;
    let (_, secret) = gateway.admin.key(&account, "read").await;
    assert_eq!(get(&gateway, "/", &[("x-api-key", &secret)]).await.status, StatusCode::OK);
    // The first batch goes out within a second and hangs for ten.
    tokio::time::sleep(Duration::from_millis(1600)).await;
    let started = std::time::Instant::now();
    for _ in 0..10 {
        assert_eq!(get(&gateway, "/", &[("x-api-key", &secret)]).await.status, StatusCode::OK);
    }
    assert!(started.elapsed() < Duration::from_secs(5), "requests waited for the exporter");
    let metrics = scrape(&gateway.admin).await;
    assert_eq!(metric(&metrics, "keygate_trace_spans_dropped_total{reason=\"queue_full\"}"), 9.0);
    // A collector that never answers holds up a stop by seconds at most.
    let stopping = std::time::Instant::now();
    gateway.gateway.stop().await;
    assert!(stopping.elapsed() < Duration::from_secs(8), "stopping took {:?}", stopping.elapsed());
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}
