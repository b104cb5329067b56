//! The access log and the upstream-warning limit, on the real binary: one
//! JSON line per request with the contract's fields, never a secret or a
//! query string, nothing when off; a dead upstream gets one warning a
//! second, each saying how many it held back.

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, StatusCode};
use kit::http::fetch;
use kit::process;
use kit::AdminCalls;
use serde_json::Value;

use super::kit;

const QUERY_TEXT: &str = "private-query-value";

fn yaml(dir: &Path, upstream: &str, log: &str) -> String {
    format!(
        "proxy: {{ listen: 127.0.0.1:0, key_query_param: api_key }}\nadmin: {{ listen: 127.0.0.1:0 }}\nstore: {{ url: \"sqlite://{}\" }}\nupstream: {{ url: \"{upstream}\" }}\nlog: {log}\n",
        dir.join("keygate.db").display()
    )
}

/// The access lines in `log`, parsed.
fn access_lines(log: &str) -> Vec<Value> {
    log.lines()
        .filter(|l| l.contains("keygate::access"))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

async fn wait_for_lines(p: &process::Process, n: usize) -> Vec<Value> {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let lines = access_lines(&p.log());
        if lines.len() >= n {
            return lines;
        }
        assert!(std::time::Instant::now() < deadline, "{} of {n} access lines:\n{}", lines.len(), p.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn access_log_has_one_json_line_per_request_and_no_secret() {
    let upstream = kit::upstream::Upstream::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    // `warn` for everything else: access lines come through anyway.
    let log = "{ format: json, access: true, level: \"warn,keygate::server=info\" }";
    let p =
        process::spawn(dir.path(), &yaml(dir.path(), &upstream.url(""), log), &[("KEYGATE_ADMIN_TOKEN", kit::TOKEN)]);
    let admin = kit::admin_client(p.admin);
    let account = admin.account("A").await;
    let (key_id, secret) = admin.key(&account, "read").await;
    let forged = kit::mistyped(&secret);
    let proxy = |path: &str| format!("http://{}{path}", p.proxy);

    let bearer = format!("Bearer {secret}");
    let allowed =
        fetch(Method::GET, &proxy(&format!("/a/b?color={QUERY_TEXT}")), &[("authorization", &bearer)], Bytes::new())
            .await;
    assert_eq!(allowed.status, StatusCode::OK);
    let in_query = fetch(Method::POST, &proxy(&format!("/q?api_key={secret}")), &[], Bytes::from_static(b"{}")).await;
    assert_eq!(in_query.status, StatusCode::FORBIDDEN, "a read key cannot POST");
    let refused = fetch(Method::GET, &proxy("/r?x=1"), &[("x-api-key", &forged)], Bytes::new()).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);

    let lines = wait_for_lines(&p, 3).await;
    assert_eq!(lines.len(), 3, "one line per request: {lines:?}");
    let line = |reply: &kit::http::Reply| {
        let id = reply.header("x-request-id").expect("request id");
        lines.iter().find(|l| l["request_id"] == id).unwrap_or_else(|| panic!("no line for {id}: {lines:?}")).clone()
    };
    let first = line(&allowed);
    assert!(first["timestamp"].as_str().is_some_and(|t| t.len() > 10), "{first}");
    assert_eq!(first["key_id"], key_id.as_str());
    assert_eq!(first["account_id"], account.as_str());
    assert_eq!((first["method"].as_str(), first["path"].as_str()), (Some("GET"), Some("/a/b")));
    assert_eq!((first["status"].as_u64(), first["decision"].as_str()), (Some(200), Some("allowed")));
    let (upstream_ms, total_ms) =
        (first["upstream_ms"].as_f64().expect("upstream"), first["total_ms"].as_f64().expect("total"));
    assert!(upstream_ms >= 0.0 && upstream_ms <= total_ms, "{first}");

    let second = line(&in_query);
    assert_eq!((second["path"].as_str(), second["status"].as_u64()), (Some("/q"), Some(403)));
    assert_eq!(second["decision"], in_query.code().as_str());
    let third = line(&refused);
    assert_eq!(third["decision"], refused.code().as_str());
    assert!(third.get("key_id").is_none() && third.get("upstream_ms").is_none(), "{third}");

    let all = p.log();
    for needle in [secret.as_str(), forged.as_str(), QUERY_TEXT, "api_key=", "color="] {
        assert!(!all.contains(needle), "{needle:?} in the log:\n{all}");
    }
}

#[tokio::test]
async fn without_log_access_there_is_no_access_line() {
    let upstream = kit::upstream::Upstream::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let p = process::spawn(
        dir.path(),
        &yaml(dir.path(), &upstream.url(""), "{ format: json }"),
        &[("KEYGATE_ADMIN_TOKEN", kit::TOKEN)],
    );
    let admin = kit::admin_client(p.admin);
    let account = admin.account("A").await;
    let (_, secret) = admin.key(&account, "read").await;
    let reply = fetch(Method::GET, &format!("http://{}/", p.proxy), &[("x-api-key", &secret)], Bytes::new()).await;
    assert_eq!(reply.status, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(access_lines(&p.log()).is_empty(), "{}", p.log());
}

#[tokio::test]
async fn a_dead_upstream_gets_one_warning_a_second_with_the_count_held_back() {
    let dead = kit::upstream::closed_port_url();
    let dir = tempfile::tempdir().expect("tempdir");
    let p = process::spawn(
        dir.path(),
        &yaml(dir.path(), &dead, "{ format: json }"),
        &[("KEYGATE_ADMIN_TOKEN", kit::TOKEN)],
    );
    let admin = kit::admin_client(p.admin);
    let account = admin.account("A").await;
    let (_, secret) = admin.key(&account, "read").await;
    let url = format!("http://{}/", p.proxy);
    let started = std::time::Instant::now();
    let sent = 300;
    for _ in 0..sent {
        let reply = fetch(Method::GET, &url, &[("x-api-key", &secret)], Bytes::new()).await;
        assert_eq!(reply.status, StatusCode::BAD_GATEWAY);
    }
    let seconds = started.elapsed().as_secs();
    // One more after a quiet second: its line carries the rest held back.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    fetch(Method::GET, &url, &[("x-api-key", &secret)], Bytes::new()).await;
    tokio::time::sleep(Duration::from_millis(200)).await;

    let warnings: Vec<Value> = p
        .log()
        .lines()
        .filter(|l| l.contains("upstream connect failed"))
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    assert!(warnings.len() as u64 <= seconds + 3, "{} warnings for {sent} failures in {seconds} s", warnings.len());
    let held_back: u64 = warnings.iter().map(|w| w["suppressed"].as_u64().expect("suppressed")).sum();
    assert_eq!(warnings.len() as u64 + held_back, sent + 1, "every failure is a line or counted in one");
}
