//! Delivery against real receivers: one that refuses connections, then
//! answers 500, then recovers; a SIGKILLed gateway with events still in the
//! outbox; a receiver that never answers while keys are created and
//! requests proxied; two replicas on one PostgreSQL sharing the work.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use http::{Method, StatusCode};
use serde_json::{json, Value};

use super::kit::http::{fetch, get_with_key};
use super::kit::{admin_client, pg, process, AdminCalls, TestGateway, TOKEN};
use super::receiver::{closed_addr, verify, Receiver};
use super::{check_delivery, fast, log, webhook, ALL};

/// The attempts of each event in a deliveries log, oldest first.
fn by_event(log: &[Value]) -> BTreeMap<String, Vec<Value>> {
    let mut out: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for attempt in log.iter().rev() {
        out.entry(attempt["event_id"].as_str().expect("event id").to_owned()).or_default().push(attempt.clone());
    }
    out
}

async fn wait_until(what: &str, mut done: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Refused connections, then 500s, then 200: each event is delivered
/// (answered 2xx) exactly once, every attempt carries the same event id
/// and a valid signature, and the log tells the story attempt by attempt.
async fn a_failing_receiver_that_recovers_gets_every_event(builder: TestGateway<'_>) {
    let addr = closed_addr();
    let gw = builder.config(fast).start().await;
    let admin = &gw.admin;
    let acc = admin.account("A").await;
    let url = format!("http://{addr}/hooks");
    let (hook, secret) = webhook(admin, json!({ "url": url, "events": ["key.created"] })).await;
    let mut keys = Vec::new();
    for _ in 0..3 {
        keys.push(admin.key(&acc, "read").await);
    }
    // Refused: attempts fail with no status.
    wait_until("refused attempts", async || log(admin, &hook).await.len() >= 6).await;
    let receiver = Receiver::start_on(addr).await;
    receiver.answer_with(500);
    receiver.wait_for("500s", |got| got.len() >= 3).await;
    receiver.answer_with(200);
    receiver.wait_for("every event delivered", |_| receiver.delivered().len() == 3).await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    let delivered = receiver.delivered();
    assert_eq!(delivered.len(), 3);
    assert!(delivered.values().all(|d| d.len() == 1), "each event answered 2xx once: {delivered:#?}");
    let secrets: Vec<&str> = keys.iter().map(|(_, s)| s.as_str()).collect();
    for r in receiver.received() {
        check_delivery(&r, &secret, &secrets);
        assert!(delivered.contains_key(r.id()), "an attempt of another event: {}", r.json);
        assert_eq!(r.body, delivered[r.id()][0].body, "every attempt sends the same bytes");
    }
    let key_ids: Vec<&str> =
        delivered.values().map(|d| d[0].json["data"]["key"]["id"].as_str().expect("key id")).collect();
    for (id, _) in &keys {
        assert!(key_ids.contains(&id.as_str()), "{id} missing");
    }

    let log = log(admin, &hook).await;
    let events = by_event(&log);
    assert_eq!(events.keys().collect::<Vec<_>>(), delivered.keys().collect::<Vec<_>>());
    for (event, attempts) in &events {
        let (last, failed) = attempts.split_last().expect("attempts");
        assert_eq!(last["delivered"], true, "{event}: {attempts:#?}");
        assert_eq!((&last["status_code"], &last["next_attempt_at"]), (&json!(200), &Value::Null));
        assert!(!failed.is_empty(), "{event} was never refused");
        for (n, attempt) in attempts.iter().enumerate() {
            assert_eq!(attempt["attempt"], json!(n + 1), "{attempts:#?}");
            assert_eq!(attempt["type"], "key.created");
        }
        for attempt in failed {
            assert_eq!(attempt["delivered"], false);
            assert!(attempt["error"].is_string() && attempt["next_attempt_at"].is_string(), "{attempt}");
            assert!(matches!(attempt["status_code"].as_i64(), None | Some(500)), "{attempt}");
        }
    }
    assert!(log.iter().any(|a| a["status_code"].is_null()), "refusals have no status");
    assert!(log.iter().any(|a| a["status_code"] == 500), "500s are logged");

    let metrics = fetch(
        Method::GET,
        &format!("http://{}/metrics", gw.gateway.admin_addr),
        &[("authorization", &format!("Bearer {TOKEN}"))],
        "",
    )
    .await;
    let text = String::from_utf8_lossy(&metrics.body).into_owned();
    assert!(text.contains("keygate_webhook_deliveries_total{result=\"delivered\"} 3"), "{text}");
    assert!(text.contains("keygate_webhook_deliveries_total{result=\"failed\"}"), "{text}");
    assert!(text.contains("keygate_webhook_outbox_pending 0"), "{text}");
}

#[tokio::test]
async fn a_failing_receiver_that_recovers_gets_every_event_sqlite() {
    a_failing_receiver_that_recovers_gets_every_event(TestGateway::new()).await;
}

#[tokio::test]
async fn a_failing_receiver_that_recovers_gets_every_event_postgres() {
    let Some(db) = pg::fresh().await else { return };
    a_failing_receiver_that_recovers_gets_every_event(TestGateway::new().postgres(db.url())).await;
}

/// The real binary, SIGKILLed while its receiver is down and events wait
/// in the outbox: restarted, it delivers them, with their ids unchanged
/// (an attempt the kill cut short waits for its lease: 1 s + 5 s here).
#[tokio::test]
async fn events_survive_a_sigkill() {
    let dir = tempfile::tempdir().expect("tempdir");
    let upstream = super::kit::upstream::Upstream::start().await;
    let yaml = process::yaml(dir.path(), &upstream.url(""))
        + "webhooks: { poll_interval_ms: 25, retry_initial_ms: 100, retry_max_ms: 300, timeout_ms: 1000 }\n";
    let mut first = process::spawn(dir.path(), &yaml, &[("KEYGATE_ADMIN_TOKEN", TOKEN)]);
    let admin = admin_client(first.admin);
    let acc = admin.account("A").await;
    let addr = closed_addr();
    let (hook, secret) = webhook(&admin, json!({ "url": format!("http://{addr}/h"), "events": ALL })).await;
    let (key, _) = admin.key(&acc, "read").await;
    wait_until("a failed attempt", async || !log(&admin, &hook).await.is_empty()).await;
    let event = log(&admin, &hook).await[0]["event_id"].as_str().expect("event").to_owned();
    first.signal("KILL");
    first.wait(Duration::from_secs(10));
    drop(first);

    let receiver = Receiver::start_on(addr).await;
    let second = process::spawn(dir.path(), &yaml, &[("KEYGATE_ADMIN_TOKEN", TOKEN)]);
    let got = receiver.wait_for("the event from before the kill", |got| !got.is_empty()).await;
    assert_eq!(got[0].id(), event);
    assert_eq!(got[0].json["data"]["key"]["id"], key);
    verify(&secret, &got[0].signature, &got[0].body).expect("signature");
    // The outcome is written just after the receiver answers.
    let admin = admin_client(second.admin);
    wait_until("the delivered attempt in the log", async || {
        let last = log(&admin, &hook).await.into_iter().next().expect("attempts");
        assert_eq!(last["event_id"], json!(event));
        last["delivered"] == json!(true)
    })
    .await;
}

/// A receiver that accepts and never answers holds delivery slots, nothing
/// else: key creation and proxied requests answer as fast as ever while
/// attempts hang (with a 30 s timeout, a write or request that waited on
/// them would take that long).
#[tokio::test]
async fn a_hanging_receiver_slows_neither_the_admin_api_nor_the_proxy() {
    let receiver = Receiver::start().await;
    receiver.hang();
    let gw = TestGateway::new()
        .config(|c| {
            fast(c);
            c.webhooks.timeout_ms = 30_000;
            c.webhooks.concurrency = 2;
        })
        .start()
        .await;
    let admin = &gw.admin;
    let acc = admin.account("A").await;
    webhook(admin, json!({ "url": receiver.url(), "events": ALL })).await;
    let (_, secret) = admin.key(&acc, "read").await;
    wait_until("a hanging attempt", async || receiver.connections() >= 1).await;
    for _ in 0..10 {
        let started = Instant::now();
        admin.key(&acc, "read").await;
        assert!(started.elapsed() < Duration::from_secs(3), "key creation took {:?}", started.elapsed());
        let started = Instant::now();
        let reply = get_with_key(gw.proxy(), "/v1/things", &secret).await;
        assert_eq!(reply.status, StatusCode::OK);
        assert!(started.elapsed() < Duration::from_secs(3), "a proxied request took {:?}", started.elapsed());
    }
    assert!(receiver.received().is_empty(), "the receiver never answered");
    // Bounded concurrency: at most two attempts in flight.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(receiver.connections() <= 2, "{} connections", receiver.connections());
}

/// Two replicas on one PostgreSQL, both delivering: every event reaches the
/// receiver exactly once (each attempt is claimed by one replica).
#[tokio::test]
async fn replicas_never_send_the_same_attempt_twice() {
    let Some(db) = pg::fresh().await else { return };
    let receiver = Receiver::start().await;
    let one = TestGateway::new().postgres(db.url()).config(fast).start().await;
    let two = TestGateway::new().postgres(db.url()).config(fast).start().await;
    let acc = one.admin.account("A").await;
    let (_, secret) =
        webhook(&one.admin, json!({ "url": receiver.url(), "events": ["key.created", "key.revoked"] })).await;
    let mut keys = Vec::new();
    for i in 0..20 {
        let admin = if i % 2 == 0 { &one.admin } else { &two.admin };
        keys.push(admin.key(&acc, "read").await.0);
    }
    let (revoked, not_found) = {
        let (s, v) = two.admin.call(Method::POST, "/v1/keys/bulk-revoke", Some(json!({ "ids": keys }))).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        (v["revoked"].as_array().map(Vec::len), v["not_found"].as_array().map(Vec::len))
    };
    assert_eq!((revoked, not_found), (Some(20), Some(0)));
    receiver.wait_for("40 events", |got| got.len() >= 40).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got = receiver.received();
    let mut per_event: BTreeMap<&str, usize> = BTreeMap::new();
    for r in &got {
        check_delivery(r, &secret, &[]);
        *per_event.entry(r.id()).or_default() += 1;
    }
    assert_eq!(per_event.len(), 40);
    assert!(per_event.values().all(|n| *n == 1), "{per_event:?}");
}

/// A backlog drains without a poll interval between batches: 12 events
/// written while no replica delivers, then a gateway delivering two at a
/// time that polls once a minute gets all 12 to the receiver from its first
/// poll (batch after batch as slots free), long before a second poll.
#[tokio::test]
async fn a_backlog_drains_batch_after_batch_without_waiting_a_poll() {
    let receiver = Receiver::start().await;
    let gw = TestGateway::new()
        .config(|c| {
            fast(c);
            c.webhooks.deliver = false;
        })
        .start()
        .await;
    let admin = &gw.admin;
    let acc = admin.account("A").await;
    webhook(admin, json!({ "url": receiver.url(), "events": ["key.created"] })).await;
    for _ in 0..12 {
        admin.key(&acc, "read").await;
    }
    let url = format!("sqlite://{}", gw.dir.path().join("keygate.db").display());
    gw.gateway.stop().await;
    assert!(receiver.received().is_empty(), "nothing delivered yet");
    let again = TestGateway::new()
        .config(move |c| {
            fast(c);
            c.store.url = url;
            c.webhooks.concurrency = 2;
            c.webhooks.poll_interval_ms = 60_000;
            // No attempt may fail on a loaded machine: a retry is due
            // only at a later poll.
            c.webhooks.timeout_ms = 30_000;
        })
        .start()
        .await;
    // The receiver waits up to 20 s: a poll between batches would take 5 minutes.
    receiver.wait_for("the whole backlog", |got| got.len() >= 12).await;
    again.gateway.stop().await;
    drop(gw.dir);
}

/// Deleting a webhook while its deliveries' outcomes are being written
/// (PostgreSQL, where the two lock rows): every deletion succeeds. The
/// deletion used to lock the webhook before its deliveries, the worker the
/// other way round, and now and then PostgreSQL broke the deadlock by
/// failing the deletion with a 500.
#[tokio::test]
async fn a_webhook_deleted_while_attempts_are_recorded_is_deleted() {
    let Some(db) = pg::fresh().await else { return };
    let receiver = Receiver::start().await;
    let gw = TestGateway::new()
        .postgres(db.url())
        .config(|c| {
            fast(c);
            c.webhooks.poll_interval_ms = 10;
            c.webhooks.concurrency = 16;
        })
        .start()
        .await;
    let admin = &gw.admin;
    let acc = admin.account("A").await;
    for round in 0..20 {
        let (id, _) = webhook(admin, json!({ "url": receiver.url(), "events": ["key.created"] })).await;
        let before = receiver.received().len();
        // 50 events at once (an import), deleted as soon as the first arrives.
        let keys: Vec<Value> = (0..50)
            .map(|i| json!({ "secret": format!("round-{round:02}-key-{i:02}-0123456789"), "name": "k", "permission": "read" }))
            .collect();
        let (s, v) =
            admin.call(Method::POST, "/v1/keys/import", Some(json!({ "account_id": acc, "keys": keys }))).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        receiver.wait_for("this round's first delivery", |got| got.len() > before).await;
        let (s, v) = admin.call(Method::DELETE, &format!("/v1/webhooks/{id}"), None).await;
        assert_eq!(s, StatusCode::NO_CONTENT, "round {round}: {v}");
    }
}
