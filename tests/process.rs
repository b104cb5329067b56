//! The real binary: graceful shutdown on SIGTERM with requests in flight,
//! config errors before listening, an unreachable store, and secrets that
//! never reach a log line.

mod kit;

#[path = "process/drain.rs"]
mod drain;
#[path = "process/reload.rs"]
mod reload;

use std::time::Duration;

use http::{Method, StatusCode};
use keygate::cli::client::AdminClient;
use kit::http::{fetch, get_with_key};
use kit::process;
use kit::AdminCalls;
use serde_json::json;

fn yaml(dir: &std::path::Path, upstream: std::net::SocketAddr, extra: &str) -> String {
    process::yaml(dir, &format!("http://{upstream}")) + extra
}

/// The binary in `dir` in front of a real upstream, with one read key.
async fn serving_with_a_key(dir: &std::path::Path) -> (process::Process, String) {
    let upstream = kit::upstream::Upstream::start().await.addr;
    let p = process::spawn(dir, &yaml(dir, upstream, ""), &[("KEYGATE_ADMIN_TOKEN", kit::TOKEN)]);
    let admin = kit::admin_client(p.admin);
    let acc = admin.account("A").await;
    let (_, secret) = admin.key(&acc, "read").await;
    (p, secret)
}

#[tokio::test]
async fn sigterm_lets_requests_in_flight_finish_then_exits_0() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut p, secret) = serving_with_a_key(dir.path()).await;
    let proxy = p.proxy;
    let in_flight: Vec<_> = (0..5)
        .map(|_| {
            let secret = secret.clone();
            let auth = format!("Bearer {secret}");
            tokio::spawn(async move {
                let headers = [("authorization", auth.as_str()), ("x-delay-ms", "700")];
                fetch(Method::GET, &format!("http://{proxy}/slow"), &headers, "").await.status
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    p.sigterm();
    for request in in_flight {
        assert_eq!(request.await.expect("join"), StatusCode::OK, "in-flight request finished");
    }
    let status = tokio::task::spawn_blocking(move || {
        let status = p.wait(Duration::from_secs(10));
        (status, p.log())
    })
    .await
    .expect("join");
    assert!(status.0.success(), "exit status {:?}; log:\n{}", status.0, status.1);
    assert!(status.1.contains("stopped"));
}

#[tokio::test]
async fn readyz_says_draining_while_requests_in_flight_finish_and_healthz_stays_ok() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut p, secret) = serving_with_a_key(dir.path()).await;
    let (readyz, healthz) = (format!("http://{}/readyz", p.admin), format!("http://{}/healthz", p.admin));
    let ready = fetch(Method::GET, &readyz, &[], "").await;
    assert_eq!((ready.status, ready.json()["status"].as_str()), (StatusCode::OK, Some("ready")));
    let health = fetch(Method::GET, &healthz, &[], "").await.json();
    assert_eq!(
        (health["status"].as_str(), health["store"].as_str(), health["redis"].as_str()),
        (Some("ok"), Some("up"), Some("off"))
    );
    assert!(health["revision"].as_i64().expect("revision") > 0, "{health}");
    assert!(health["snapshot_age_seconds"].as_f64().expect("age") >= 0.0, "{health}");

    let proxy = p.proxy;
    let in_flight = tokio::spawn(async move {
        let auth = format!("Bearer {secret}");
        let headers = [("authorization", auth.as_str()), ("x-delay-ms", "1500")];
        fetch(Method::GET, &format!("http://{proxy}/slow"), &headers, "").await.status
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    p.sigterm();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let draining = fetch(Method::GET, &readyz, &[], "").await;
    assert_eq!(draining.status, StatusCode::SERVICE_UNAVAILABLE, "readyz while draining");
    assert_eq!(draining.json()["status"], "draining");
    assert_eq!(fetch(Method::GET, &healthz, &[], "").await.status, StatusCode::OK, "still alive while draining");
    assert_eq!(in_flight.await.expect("join"), StatusCode::OK, "the request in flight finished");
    let status = tokio::task::spawn_blocking(move || p.wait(Duration::from_secs(10))).await.expect("join");
    assert!(status.success());
}

/// `systemctl reload` sends SIGHUP: it must never stop the gateway.
#[tokio::test]
async fn sighup_never_stops_the_process() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut p, secret) = serving_with_a_key(dir.path()).await;
    for _ in 0..3 {
        p.signal("HUP");
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    assert_eq!(get_with_key(p.proxy, "/", &secret).await.status, StatusCode::OK, "still serving after SIGHUP");
    assert!(p.log().contains("SIGHUP received"), "{}", p.log());
    p.sigterm();
    let status = tokio::task::spawn_blocking(move || p.wait(Duration::from_secs(10))).await.expect("join");
    assert!(status.success());
}

#[tokio::test]
async fn no_secret_appears_in_any_log_line() {
    let upstream = kit::upstream::Upstream::start().await.addr;
    let dir = tempfile::tempdir().expect("tempdir");
    let p = process::spawn(
        dir.path(),
        &yaml(dir.path(), upstream, "log: { level: debug }\n"),
        &[("KEYGATE_ADMIN_TOKEN", kit::TOKEN)],
    );
    let admin = kit::admin_client(p.admin);
    let acc = admin.account("A").await;
    let (id, first) = admin.key(&acc, "read").await;
    let mut secrets = vec![first.clone()];
    get_with_key(p.proxy, "/", &first).await;
    fetch(Method::POST, &format!("http://{}/", p.proxy), &[("x-api-key", first.as_str())], "x").await;
    let (_, v) =
        admin.call(Method::POST, &format!("/v1/keys/{id}/rotate"), Some(json!({ "grace_period_seconds": 5 }))).await;
    let second = v["secret"].as_str().expect("secret").to_owned();
    secrets.push(second.clone());
    get_with_key(p.proxy, "/", &second).await;
    get_with_key(p.proxy, "/", &first).await;
    // A mistyped key and a wrong admin token must not be echoed either.
    let typo = kit::mistyped(&second);
    get_with_key(p.proxy, "/", &typo).await;
    secrets.push(typo);
    let wrong = AdminClient::new(&format!("http://{}", p.admin), Some("wrong-admin-token-123456")).expect("client");
    wrong.call(Method::GET, "/v1/keys", None).await;
    admin.call(Method::POST, &format!("/v1/keys/{id}/revoke"), None).await;
    get_with_key(p.proxy, "/", &second).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let log = p.log();
    assert!(log.lines().count() > 5, "debug logging is on: {log}");
    for secret in &secrets {
        let random_part = &secret[8..40];
        assert!(!log.contains(random_part), "a secret reached the log:\n{log}");
    }
    assert!(!log.contains(kit::TOKEN) && !log.contains("wrong-admin-token"), "an admin token reached the log");
}

/// Each thread of process `pid`: (name, nice value).
fn threads(pid: u32) -> Vec<(String, i32)> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("the process's threads");
    tasks
        .flatten()
        .filter_map(|task| {
            let comm = std::fs::read_to_string(task.path().join("comm")).ok()?.trim_end().to_owned();
            let stat = std::fs::read_to_string(task.path().join("stat")).ok()?;
            // Fields after the name (which may hold spaces): state is the
            // 3rd field of stat(5), nice the 19th.
            let nice = stat.rsplit_once(')')?.1.split_whitespace().nth(16)?.parse().ok()?;
            Some((comm, nice))
        })
        .collect()
}

/// The proxy's threads keep the priority the process started with; every
/// other thread (admin port, reloader, flushes, syncs, SQLite workers)
/// yields to them (`keygate::priority`).
#[tokio::test]
async fn background_threads_yield_to_the_proxy_threads() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut p, secret) = serving_with_a_key(dir.path()).await;
    // Traffic and an admin write, so lazily started workers exist too.
    assert_eq!(get_with_key(p.proxy, "/", &secret).await.status, StatusCode::OK);
    kit::admin_client(p.admin).account("B").await;
    let own = threads(std::process::id()).into_iter().map(|(_, nice)| nice).min().expect("this test's threads");
    let all = threads(p.child.id());
    let (proxy, rest): (Vec<_>, Vec<_>) = all.iter().partition(|(name, _)| name.starts_with("keygate-proxy-"));
    assert!(!proxy.is_empty() && !rest.is_empty(), "{all:?}");
    assert!(proxy.iter().all(|(_, nice)| *nice == own), "the proxy threads run at nice {own}: {all:?}");
    let background = own.max(keygate::priority::BACKGROUND_NICE);
    assert!(rest.iter().all(|(_, nice)| *nice >= background), "the others at nice {background} or lower: {all:?}");
    p.sigterm();
    let status = tokio::task::spawn_blocking(move || p.wait(Duration::from_secs(10))).await.expect("join");
    assert!(status.success());
}

#[test]
fn invalid_config_names_the_field_and_exits_before_listening() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("bad.yaml");
    std::fs::write(
        &file,
        "proxy:\n  listen: 127.0.0.1:0\n  max_body_bytes: lots\nupstream:\n  url: ftp://nowhere\nstore:\n  urll: x\n",
    )
    .expect("write");
    for sub in ["serve", "check-config"] {
        let out = process::keygate().arg(sub).arg("--config").arg(&file).output().expect("run");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{sub}: {stderr}");
        for field in ["proxy.max_body_bytes", "upstream.url", "store.urll"] {
            assert!(stderr.contains(field), "{sub} does not name {field}: {stderr}");
        }
        assert!(!stderr.contains("listening"), "{stderr}");
    }
    let ok = process::keygate()
        .args(["check-config", "--config", concat!(env!("CARGO_MANIFEST_DIR"), "/config/keygate.yaml")])
        .output()
        .expect("run");
    assert!(ok.status.success(), "the example config is valid");
}

#[test]
fn unreachable_store_is_a_clear_error_before_listening() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("k.yaml");
    std::fs::write(
        &file,
        "proxy: { listen: 127.0.0.1:0 }\nadmin: { listen: 127.0.0.1:0 }\nstore: { url: \"postgres://nobody@127.0.0.1:1/none\", connect_timeout_ms: 500 }\n",
    )
    .expect("write");
    let out = process::keygate().arg("serve").arg("--config").arg(&file).output().expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("cannot connect to the store at postgres://nobody@127.0.0.1:1/none"), "{stderr}");
    assert!(!stderr.contains("listening"), "{stderr}");
}
