//! The Grafana dashboard (`grafana/keygate-dashboard.json`) against a real
//! gateway's `/metrics` after some traffic — with `limits.redis_url` set and
//! an account on a plan, so the fleet and plan series exist too: every
//! metric a panel queries is exposed, every panel over a metric with an
//! `account_id` label follows the `$account` filter, and every `_total` name
//! is a counter.

use std::collections::BTreeSet;

use http::{Method, StatusCode};
use serde_json::{json, Value};

use super::kit::http::{fetch, get_with_key};
use super::kit::{redis, AdminCalls, TestGateway};
use super::metrics;

/// What the quota ledger exposes (the `quota` branch, merged separately):
/// queried by the plan and quota panels before this branch's gateway has
/// them. The test fails once one of them is exposed, so the list empties
/// itself when the ledger lands.
const AWAITED: [&str; 5] = [
    "keygate_key_quota_used",
    "keygate_key_quota_remaining",
    "keygate_account_quota_used",
    "keygate_account_quota_remaining",
    "keygate_quota_store_up",
];

/// Every `keygate_*` or `process_*` name in a PromQL expression.
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = expr;
    while let Some(at) = rest.find(|c: char| c.is_ascii_lowercase()) {
        rest = &rest[at..];
        let end = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(rest.len());
        let word = &rest[..end];
        if word.starts_with("keygate_") || word.starts_with("process_") {
            names.push(word.to_owned());
        }
        rest = &rest[end..];
    }
    names
}

/// `(panel title, expr)` of every query in the dashboard, the `$account`
/// variable's own query included.
fn queries() -> Vec<(String, String)> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/grafana/keygate-dashboard.json");
    let board: Value = serde_json::from_str(&std::fs::read_to_string(path).expect("read dashboard")).expect("json");
    let mut out = Vec::new();
    let mut ids = BTreeSet::new();
    for panel in board["panels"].as_array().expect("panels") {
        let title = panel["title"].as_str().expect("title").to_owned();
        assert!(ids.insert(panel["id"].as_u64().expect("id")), "{title}: a panel id used twice");
        if panel["type"] == "row" {
            continue;
        }
        for target in panel["targets"].as_array().expect("targets") {
            out.push((title.clone(), target["expr"].as_str().expect("expr").to_owned()));
        }
    }
    for var in board["templating"]["list"].as_array().expect("variables") {
        if let Some(q) = var["query"]["query"].as_str() {
            out.push((format!("variable {}", var["name"]), q.to_owned()));
        }
    }
    out
}

#[tokio::test]
async fn every_metric_the_dashboard_queries_is_exposed_and_account_filters_per_account_panels() {
    // Redis need not answer: the redis series exist (at 0) as soon as it is configured.
    let closed = redis::free_port();
    let gw = TestGateway::new()
        .config(move |c| c.limits.redis_url = Some(format!("redis://127.0.0.1:{closed}/0")))
        .start()
        .await;
    let plan = json!({ "name": "Pro", "rate_limit": { "requests": 100, "per_seconds": 60 },
        "quota": { "limit": 1000, "period": "month" } });
    let (s, plan) = gw.admin.call(Method::POST, "/v1/plans", Some(plan)).await;
    assert_eq!(s, StatusCode::CREATED, "{plan}");
    let (s, acc) =
        gw.admin.call(Method::POST, "/v1/accounts", Some(json!({ "name": "A", "plan_id": plan["id"] }))).await;
    assert_eq!(s, StatusCode::CREATED, "{acc}");
    let acc = acc["id"].as_str().expect("id").to_owned();
    let (_, secret) = gw.admin.key(&acc, "read").await;
    assert_eq!(get_with_key(gw.proxy(), "/", &secret).await.status, StatusCode::OK);
    // A key with a quota of its own, where keys take one (see AWAITED).
    let body = json!({ "account_id": acc, "name": "metered", "permission": "read",
        "quota": { "limit": 100, "period": "day" } });
    let (s, metered) = gw.admin.call(Method::POST, "/v1/keys", Some(body)).await;
    match s {
        StatusCode::CREATED => {
            let secret = metered["secret"].as_str().expect("secret");
            assert_eq!(get_with_key(gw.proxy(), "/", secret).await.status, StatusCode::OK);
        }
        _ => assert_eq!((s, metered["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("quota")), "{metered}"),
    }
    let post = format!("http://{}/", gw.proxy());
    let refused = fetch(Method::POST, &post, &[("authorization", &format!("Bearer {secret}"))], "x").await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    get_with_key(gw.proxy(), "/", "kg_live_not_a_key").await;
    let text = metrics(&gw).await;

    let exposed: BTreeSet<&str> =
        text.lines().filter(|l| !l.starts_with('#')).filter_map(|l| l.split(['{', ' ']).next()).collect();
    let with_account: BTreeSet<&str> = text
        .lines()
        .filter(|l| !l.starts_with('#') && l.contains("account_id=\""))
        .filter_map(|l| l.split('{').next())
        .collect();
    assert!(with_account.contains("keygate_key_requests_total"), "no per-account series after traffic:\n{text}");
    let queries = queries();
    assert!(queries.len() > 10, "dashboard has too few queries");
    for name in AWAITED {
        assert!(!exposed.contains(name), "{name} is exposed now: take it out of AWAITED");
    }
    for (title, expr) in &queries {
        let names = metric_names(expr);
        assert!(!names.is_empty(), "{title}: no keygate metric in {expr}");
        for name in &names {
            if AWAITED.contains(&name.as_str()) {
                continue;
            }
            assert!(exposed.contains(name.as_str()), "{title}: {name} is not on /metrics");
            if with_account.contains(name.as_str()) && !title.starts_with("variable") {
                assert!(expr.contains("account_id=~\"$account\""), "{title}: {name} ignores $account: {expr}");
            }
        }
    }

    let version = format!("keygate_build_info{{version=\"{}\"}} 1", env!("CARGO_PKG_VERSION"));
    assert!(text.lines().any(|l| l == version), "no {version}");
    for line in text.lines().filter(|l| l.starts_with("# TYPE ")) {
        let mut parts = line.split_whitespace().skip(2);
        let (name, kind) = (parts.next().expect("name"), parts.next().expect("type"));
        if name.ends_with("_total") {
            assert_eq!(kind, "counter", "{name} ends in _total but is a {kind}");
        }
    }
}
