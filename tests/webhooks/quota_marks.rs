//! The marks that make `quota.threshold` once per quota, period and
//! threshold (`webhook_quota_marks`): an adjustment of the quota re-arms
//! them for the period, and the marks of periods that ended are deleted.

use std::collections::BTreeSet;
use std::time::Duration;

use http::{Method, StatusCode};
use keygate::keys::Period;
use keygate::store::QuotaThreshold;
use serde_json::json;

use crate::kit::{self, pg, AdminCalls, TestGateway};
use crate::receiver::Receiver;
use crate::{check_delivery, fast, webhook};

/// Spends `n` requests of a key's quota through the proxy, each allowed;
/// the first waits (up to 5 s) for an adjustment to reach the proxy.
async fn spend(proxy: std::net::SocketAddr, secret: &str, n: usize) {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let r = kit::http::get_with_key(proxy, "/", secret).await;
        if r.status == StatusCode::OK {
            break;
        }
        assert_eq!(r.code(), "quota_exceeded");
        assert!(std::time::Instant::now() < deadline, "the adjustment never reached the proxy");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    for _ in 1..n {
        assert_eq!(kit::http::get_with_key(proxy, "/", secret).await.status, StatusCode::OK);
    }
}

/// A key's quota of 10 a day, spent to 100 % (80 and 100 sent), then
/// `reset`: spent again, 80 and 100 are sent again in the same period; then
/// `increment` by 5 (allowance 15, 10 used): 80 % of it (12) and 100 % are
/// sent a third time. Each event once.
async fn an_adjustment_rearms_the_thresholds(builder: TestGateway<'_>) {
    let receiver = Receiver::start().await;
    let gw = builder.config(fast).start().await;
    let admin = &gw.admin;
    let acc = admin.account("Metered").await;
    let (_, secret) = webhook(admin, json!({ "url": receiver.url(), "events": ["quota.threshold"] })).await;
    let body = json!({ "account_id": acc, "name": "metered", "permission": "read", "quota": { "limit": 10, "period": "day" } });
    let (key, key_secret) = admin.create_key(body).await;
    let key_id = key["id"].as_str().expect("id").to_owned();
    let adjust = |body: serde_json::Value| {
        let path = format!("/v1/keys/{key_id}/quota");
        async move {
            let (s, v) = admin.call(Method::POST, &path, Some(body)).await;
            assert_eq!(s, StatusCode::OK, "{v}");
        }
    };
    let thresholds = |n: usize| {
        let receiver = receiver.clone();
        async move {
            let got = receiver.wait_for(&format!("{n} quota.threshold"), |got| got.len() >= n).await;
            got.iter().map(|r| r.json["data"]["threshold"].as_u64().expect("threshold")).collect::<Vec<_>>()
        }
    };

    spend(gw.proxy(), &key_secret, 8).await;
    assert_eq!(thresholds(1).await, [80]);
    spend(gw.proxy(), &key_secret, 2).await;
    assert_eq!(thresholds(2).await, [80, 100]);
    assert_eq!(kit::http::get_with_key(gw.proxy(), "/", &key_secret).await.code(), "quota_exceeded");

    adjust(json!({ "operation": "reset" })).await;
    spend(gw.proxy(), &key_secret, 8).await;
    assert_eq!(thresholds(3).await, [80, 100, 80], "re-armed by the reset");
    spend(gw.proxy(), &key_secret, 2).await;
    assert_eq!(thresholds(4).await, [80, 100, 80, 100]);

    adjust(json!({ "operation": "increment", "amount": 5 })).await;
    spend(gw.proxy(), &key_secret, 2).await;
    assert_eq!(thresholds(5).await, [80, 100, 80, 100, 80], "re-armed by the increment");
    spend(gw.proxy(), &key_secret, 3).await;
    assert_eq!(thresholds(6).await, [80, 100, 80, 100, 80, 100]);
    tokio::time::sleep(Duration::from_millis(600)).await;
    let got = receiver.received();
    assert_eq!(got.len(), 6, "each crossing once");
    let ids: BTreeSet<&str> = got.iter().map(|r| r.id()).collect();
    assert_eq!(ids.len(), 6);
    let last = &got[5].json["data"];
    assert_eq!((last["limit"].as_u64(), last["used"].as_u64()), (Some(15), Some(15)), "{last}");
    assert_eq!(got[0].json["data"]["period_start"], last["period_start"], "one period");
    for r in &got {
        check_delivery(r, &secret, &[&key_secret]);
    }
    gw.gateway.stop().await;
}

#[tokio::test]
async fn an_adjustment_rearms_the_thresholds_sqlite() {
    an_adjustment_rearms_the_thresholds(TestGateway::new()).await;
}

#[tokio::test]
async fn an_adjustment_rearms_the_thresholds_postgres() {
    let Some(db) = pg::fresh().await else { return };
    an_adjustment_rearms_the_thresholds(TestGateway::new().postgres(db.url())).await;
}

fn crossing(key: &str, period: Period, period_start: i64, threshold: u8) -> QuotaThreshold {
    QuotaThreshold {
        account_id: "acc_none".into(),
        key_id: Some(key.into()),
        period,
        period_start,
        limit: 10,
        used: 10,
        threshold,
    }
}

/// `(scope, period_start)` of every mark, sorted.
async fn marks(pool: &sqlx::SqlitePool) -> Vec<(String, i64)> {
    sqlx::query_as("SELECT DISTINCT scope, period_start FROM webhook_quota_marks ORDER BY scope, period_start")
        .fetch_all(pool)
        .await
        .expect("marks")
}

/// A mark of a new period deletes its scope's marks of earlier periods;
/// the worker's housekeeping deletes every mark of a period that ended
/// (here at its start after a restart), and keeps those of current
/// periods and of `total` quotas.
#[tokio::test]
async fn marks_of_ended_periods_are_deleted() {
    // No worker at first: its housekeeping would run at once.
    let gw = TestGateway::new()
        .config(|c| {
            fast(c);
            c.webhooks.deliver = false;
        })
        .start()
        .await;
    let store = gw.gateway.reloader.store();
    let db = gw.dir.path().join("keygate.db");
    let url = format!("sqlite://{}", db.display());
    let pool = sqlx::SqlitePool::connect(&url).await.expect("db");
    let now = keygate::clock::now_ms();
    let month = Period::Month.window(now).start_ms;
    let last_month = Period::Month.window(month - 1).start_ms;
    let week = Period::Week.window(now).start_ms;
    let forty_days_ago = Period::Day.window(now - 40 * 86_400_000).start_ms;

    // On write: the same scope's next period replaces the last one's marks.
    for threshold in [80, 100] {
        assert!(store
            .emit_quota_threshold(&crossing("key_monthly", Period::Month, last_month, threshold))
            .await
            .expect("emit"));
    }
    assert!(store.emit_quota_threshold(&crossing("key_other", Period::Month, last_month, 80)).await.expect("emit"));
    assert!(store.emit_quota_threshold(&crossing("key_monthly", Period::Month, month, 80)).await.expect("emit"));
    assert_eq!(
        marks(&pool).await,
        [("key:key_monthly".to_owned(), month), ("key:key_other".to_owned(), last_month)],
        "the earlier month's marks of key_monthly went, key_other's stay"
    );

    // Housekeeping: ended periods of scopes that wrote nothing since.
    for c in [
        crossing("key_daily", Period::Day, forty_days_ago, 80),
        crossing("key_weekly", Period::Week, week, 80),
        crossing("key_total", Period::Total, 0, 100),
    ] {
        assert!(store.emit_quota_threshold(&c).await.expect("emit"));
    }
    gw.gateway.stop().await;
    let again = TestGateway::new()
        .config(move |c| {
            fast(c);
            c.store.url = url;
        })
        .start()
        .await;
    let expected =
        [("key:key_monthly".to_owned(), month), ("key:key_total".to_owned(), 0), ("key:key_weekly".to_owned(), week)];
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while marks(&pool).await != expected {
        assert!(std::time::Instant::now() < deadline, "marks left: {:?}", marks(&pool).await);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // And once more, called directly: nothing else is due.
    assert_eq!(again.gateway.reloader.store().prune_quota_marks(now).await.expect("prune"), 0);
    again.gateway.stop().await;
    drop(gw.dir);
}
