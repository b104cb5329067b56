//! SIGHUP live reload (issue 17), on the real binary: the config file is
//! rewritten and `kill -HUP` sent. What can change live takes effect for
//! the next request while one under way finishes on the old configuration;
//! a broken file is refused with the field named and the running
//! configuration kept; a field that needs a restart is named and not
//! applied; the process never stops.

use std::convert::Infallible;
use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::stream;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use rustls::pki_types::CertificateDer;

use crate::kit::http::{fetch, get_with_key, send, send_tls, TestBody};
use crate::kit::process::{self, Process};
use crate::kit::upstream::Upstream;
use crate::kit::{self, AdminCalls};

/// A config with both listeners on port 0 and the store in `dir`;
/// `proxy_extra` is indented under `proxy:`, `rest` holds the other
/// sections (upstream, routes, limits, log).
fn config(dir: &Path, proxy_extra: &str, rest: &str) -> String {
    let db = dir.join("keygate.db");
    format!(
        "proxy:\n  listen: 127.0.0.1:0\n{proxy_extra}admin:\n  listen: 127.0.0.1:0\nstore:\n  url: \"sqlite://{}\"\n{rest}",
        db.display()
    )
}

fn upstream(addr: std::net::SocketAddr) -> String {
    format!("upstream:\n  url: http://{addr}\n")
}

/// How many reloads the log reports, good or bad.
fn reloads(log: &str) -> usize {
    log.matches("configuration reloaded").count() + log.matches("config reload failed").count()
}

/// Rewrites the config file, sends SIGHUP and waits until the reload is
/// logged; returns the log lines it added.
async fn reload_with(p: &Process, yaml: &str) -> String {
    std::fs::write(&p.config, yaml).expect("rewrite config");
    let before = p.log();
    let seen = reloads(&before);
    p.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let log = p.log();
        if reloads(&log) > seen {
            return log[before.len()..].to_owned();
        }
        assert!(Instant::now() < deadline, "no reload logged after SIGHUP:\n{log}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `keygate serve` on `yaml` with a write key.
async fn serve(dir: &Path, yaml: &str) -> (Process, String) {
    let p = process::spawn(dir, yaml, &[("KEYGATE_ADMIN_TOKEN", kit::TOKEN)]);
    let admin = kit::admin_client(p.admin);
    let account = admin.account("A").await;
    let (_, secret) = admin.key(&account, "write").await;
    (p, secret)
}

/// The value of the metric series `series` (name and labels as printed).
async fn metric(p: &Process, series: &str) -> f64 {
    let text = fetch(Method::GET, &format!("http://{}/metrics", p.admin), &[], "").await;
    let text = String::from_utf8_lossy(&text.body).into_owned();
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|v| v.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("no {series} in\n{text}"))
        .parse()
        .expect("metric value")
}

async fn assert_alive_and_stop(mut p: Process) {
    assert!(p.child.try_wait().expect("try_wait").is_none(), "the process stopped:\n{}", p.log());
    p.sigterm();
    let status = tokio::task::spawn_blocking(move || p.wait(Duration::from_secs(10))).await.expect("join");
    assert!(status.success());
}

#[tokio::test]
async fn a_new_route_and_upstream_apply_while_a_streaming_request_finishes_on_the_old_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (old, new, routed) = (Upstream::start().await, Upstream::start().await, Upstream::start().await);
    let (p, secret) = serve(dir.path(), &config(dir.path(), "", &upstream(old.addr))).await;
    let before_ok = metric(&p, "keygate_config_reloads_total{result=\"ok\"}").await;

    // A request whose body is still streaming to the old upstream.
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(4);
    let body: TestBody = StreamBody::new(stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|chunk| (Ok::<_, Infallible>(Frame::data(chunk)), rx))
    }))
    .boxed();
    let request = Request::post(format!("http://{}/echo-body/stream", p.proxy))
        .header("authorization", format!("Bearer {secret}"))
        .body(body)
        .expect("request");
    let in_flight = tokio::spawn(send(request));
    tx.send(Bytes::from_static(b"first half, ")).await.expect("send");
    let deadline = Instant::now() + Duration::from_secs(10);
    while old.hits() == 0 {
        assert!(Instant::now() < deadline, "the request never reached the old upstream");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let next = format!("{}routes:\n  - path_prefix: /v2\n    upstream: http://{}\n", upstream(new.addr), routed.addr);
    let log = reload_with(&p, &config(dir.path(), "", &next)).await;
    assert!(log.contains("configuration reloaded"), "{log}");
    assert!(log.contains("routes") && log.contains("upstream.url"), "applied fields named: {log}");

    tx.send(Bytes::from_static(b"second half")).await.expect("send");
    drop(tx);
    let reply = in_flight.await.expect("join");
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(&reply.body[..], b"first half, second half", "the streaming request finished whole");

    let (old_hits, new_hits, routed_hits) = (old.hits(), new.hits(), routed.hits());
    assert_eq!(get_with_key(p.proxy, "/anything", &secret).await.status, StatusCode::OK);
    assert_eq!(get_with_key(p.proxy, "/v2/items", &secret).await.status, StatusCode::OK);
    assert_eq!(old.hits(), old_hits, "nothing more goes to the old upstream");
    assert_eq!((new.hits(), routed.hits()), (new_hits + 1, routed_hits + 1), "new upstream and new route");
    assert_eq!(metric(&p, "keygate_config_reloads_total{result=\"ok\"}").await, before_ok + 1.0);
    let label = "keygate_request_duration_seconds_count{route=\"/v2\",status_class=\"2xx\"}";
    assert_eq!(metric(&p, label).await, 1.0, "the new route has its own duration series");
    assert_alive_and_stop(p).await;
}

#[tokio::test]
async fn a_broken_config_keeps_the_running_one_and_names_the_field() {
    let dir = tempfile::tempdir().expect("tempdir");
    let up = Upstream::start().await;
    let good = config(dir.path(), "", &upstream(up.addr));
    let (p, secret) = serve(dir.path(), &good).await;

    let bad_url = format!("{}routes:\n  - path_prefix: /v2\n    upstream: ftp://nowhere\n", upstream(up.addr));
    let log = reload_with(&p, &config(dir.path(), "", &bad_url)).await;
    assert!(log.contains("config reload failed: routes[0].upstream:"), "{log}");
    let unknown = config(dir.path(), "  listn: 127.0.0.1:1\n", &upstream(up.addr));
    let log = reload_with(&p, &unknown).await;
    assert!(log.contains("config reload failed: proxy.listn: unknown field"), "{log}");
    let log = reload_with(&p, "proxy: [not, a, mapping\n").await;
    assert!(log.contains("config reload failed: (file):"), "{log}");

    let hits = up.hits();
    assert_eq!(get_with_key(p.proxy, "/v2/x", &secret).await.status, StatusCode::OK, "old routing still serves");
    assert_eq!(up.hits(), hits + 1);
    assert_eq!(metric(&p, "keygate_config_reloads_total{result=\"error\"}").await, 3.0);
    assert_eq!(metric(&p, "keygate_config_reloads_total{result=\"ok\"}").await, 0.0);
    let last_good = metric(&p, "keygate_config_last_reload_success_timestamp_seconds").await;

    // Fixed, the next SIGHUP applies it.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let log = reload_with(&p, &good).await;
    assert!(log.contains("configuration reloaded"), "{log}");
    assert_eq!(metric(&p, "keygate_config_reloads_total{result=\"ok\"}").await, 1.0);
    assert!(metric(&p, "keygate_config_last_reload_success_timestamp_seconds").await > last_good);
    assert_alive_and_stop(p).await;
}

#[tokio::test]
async fn changed_body_limit_and_credential_header_apply() {
    let dir = tempfile::tempdir().expect("tempdir");
    let up = Upstream::start().await;
    let (p, secret) = serve(dir.path(), &config(dir.path(), "", &upstream(up.addr))).await;
    let url = format!("http://{}/upload", p.proxy);
    let bearer = format!("Bearer {secret}");
    let big = vec![b'x'; 4096];
    assert_eq!(fetch(Method::POST, &url, &[("authorization", &bearer)], big.clone()).await.status, StatusCode::OK);

    let proxy = "  max_body_bytes: 1000\n  key_headers: [x-token]\n";
    let log = reload_with(&p, &config(dir.path(), proxy, &upstream(up.addr))).await;
    assert!(log.contains("configuration reloaded"), "{log}");
    let reply = fetch(Method::POST, &url, &[("x-token", &secret)], big).await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE, "the new body limit applies");
    let reply = fetch(Method::POST, &url, &[("x-token", &secret)], vec![b'x'; 10]).await;
    assert_eq!(reply.status, StatusCode::OK, "the key is read from the new header");
    let reply = fetch(Method::GET, &url, &[("authorization", &bearer)], "").await;
    assert_eq!((reply.status, reply.code()), (StatusCode::UNAUTHORIZED, "missing_key".into()), "old header unread");
    assert!(reply.json()["detail"].as_str().unwrap_or("").contains("x-token"), "{:?}", reply.json());
    assert_alive_and_stop(p).await;
}

/// A self-signed certificate for localhost in `dir/name.{crt,key}`.
fn certificate(dir: &Path, name: &str) -> (String, String, CertificateDer<'static>) {
    let pair = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("cert");
    let (cert, key) = (dir.join(format!("{name}.crt")), dir.join(format!("{name}.key")));
    std::fs::write(&cert, pair.cert.pem()).expect("write cert");
    std::fs::write(&key, pair.key_pair.serialize_pem()).expect("write key");
    (cert.display().to_string(), key.display().to_string(), pair.cert.der().clone())
}

fn tls(cert: &str, key: &str) -> String {
    format!("  tls:\n    cert_file: {cert}\n    key_file: {key}\n")
}

#[tokio::test]
async fn new_certificate_files_are_served_after_sighup() {
    let dir = tempfile::tempdir().expect("tempdir");
    let up = Upstream::start().await;
    let (cert_a, key_a, der_a) = certificate(dir.path(), "a");
    let (cert_b, key_b, der_b) = certificate(dir.path(), "b");
    let (p, secret) = serve(dir.path(), &config(dir.path(), &tls(&cert_a, &key_a), &upstream(up.addr))).await;
    let roots = [der_a.clone(), der_b.clone()];
    let get = || {
        Request::get("/")
            .header("host", "localhost")
            .header("authorization", format!("Bearer {secret}"))
            .body(crate::kit::http::empty())
            .expect("request")
    };
    let (reply, presented) = send_tls(p.proxy, &roots, get()).await.expect("TLS");
    assert_eq!((reply.status, presented), (StatusCode::OK, der_a.clone()));

    // A broken pair fails the whole reload: the old certificate stays, and
    // so does the key header changed in the same file.
    let broken = format!("{}  key_headers: [x-token]\n", tls(&cert_b, &key_a));
    let log = reload_with(&p, &config(dir.path(), &broken, &upstream(up.addr))).await;
    assert!(log.contains("config reload failed: proxy.tls:"), "{log}");
    let (reply, presented) = send_tls(p.proxy, &roots, get()).await.expect("TLS");
    assert_eq!((reply.status, presented), (StatusCode::OK, der_a.clone()), "nothing of that file applied");

    let log = reload_with(&p, &config(dir.path(), &tls(&cert_b, &key_b), &upstream(up.addr))).await;
    assert!(log.contains("configuration reloaded"), "{log}");
    let (reply, presented) = send_tls(p.proxy, &roots, get()).await.expect("TLS");
    assert_eq!((reply.status, presented), (StatusCode::OK, der_b), "the new certificate is served");
    assert_alive_and_stop(p).await;
}

#[tokio::test]
async fn log_level_and_format_changes_apply() {
    let dir = tempfile::tempdir().expect("tempdir");
    let up = Upstream::start().await;
    let (p, _) = serve(dir.path(), &config(dir.path(), "", &upstream(up.addr))).await;
    let url = format!("http://{}/", p.proxy);
    // A refusal is logged at debug only.
    assert_eq!(fetch(Method::GET, &url, &[], "").await.status, StatusCode::UNAUTHORIZED);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!p.log().contains("request refused"), "debug is off at info");

    let debug = format!("{}log:\n  level: debug\n  format: json\n", upstream(up.addr));
    let log = reload_with(&p, &config(dir.path(), "", &debug)).await;
    assert!(log.contains("configuration reloaded"), "{log}");
    let before = p.log().len();
    assert_eq!(fetch(Method::GET, &url, &[], "").await.status, StatusCode::UNAUTHORIZED);
    let deadline = Instant::now() + Duration::from_secs(10);
    let line = loop {
        let log = p.log();
        if let Some(line) = log[before..].lines().find(|l| l.contains("request refused")) {
            break line.to_owned();
        }
        assert!(Instant::now() < deadline, "no debug line after the reload:\n{log}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let event: serde_json::Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
    assert_eq!((event["level"].as_str(), event["code"].as_str()), (Some("DEBUG"), Some("missing_key")));
    assert_alive_and_stop(p).await;
}

#[tokio::test]
async fn a_changed_listen_address_is_named_as_needing_a_restart_and_the_rest_applies() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (up, routed) = (Upstream::start().await, Upstream::start().await);
    let (p, secret) = serve(dir.path(), &config(dir.path(), "", &upstream(up.addr))).await;
    let elsewhere = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr");
    let next = config(
        dir.path(),
        "",
        &format!("{}routes:\n  - path_prefix: /v2\n    upstream: http://{}\n", upstream(up.addr), routed.addr),
    )
    .replacen("listen: 127.0.0.1:0", &format!("listen: {elsewhere}"), 1);
    let log = reload_with(&p, &next).await;
    assert!(log.contains("proxy.listen changed but needs a restart"), "{log}");
    assert!(log.contains("configuration reloaded"), "the rest still applies: {log}");
    assert_eq!(get_with_key(p.proxy, "/v2/x", &secret).await.status, StatusCode::OK, "still on the old address");
    assert_eq!(routed.hits(), 1, "the new route applied");
    assert!(tokio::net::TcpStream::connect(elsewhere).await.is_err(), "nothing listens on the new address");
    assert_alive_and_stop(p).await;
}
