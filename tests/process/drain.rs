//! SIGTERM under concurrent load (issue 9): keep-alive clients keep a
//! request in flight on every connection while the binary is told to stop.
//! Every request keygate accepted (the upstream saw it) is answered 200,
//! none gets a 5xx or a cut response, the process exits 0 within its drain
//! timeout, and the final flush writes the usage of every proxied request.
//! `scripts/sigterm-under-load` is the same check on the release binary at
//! a larger scale.

use std::collections::HashSet;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::kit::AdminCalls;
use crate::kit::{self, process};

const CLIENTS: usize = 24;
const UPSTREAM_MS: u64 = 300;

/// An upstream that answers after `UPSTREAM_MS` and records the `x-seq` of
/// every request it was sent: the requests keygate accepted.
async fn recording_upstream() -> (SocketAddr, Arc<Mutex<HashSet<u64>>>) {
    let seen = Arc::new(Mutex::new(HashSet::new()));
    let record = Arc::clone(&seen);
    let upstream = kit::upstream::serve(move |stream, _| {
        let record = Arc::clone(&record);
        async move {
            let service = service_fn(move |req: Request<Incoming>| {
                let record = Arc::clone(&record);
                async move {
                    let seq = req.headers().get("x-seq").and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
                    record.lock().expect("seen").extend(seq);
                    tokio::time::sleep(Duration::from_millis(UPSTREAM_MS)).await;
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"done"))))
                }
            });
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
        }
    })
    .await;
    (upstream.addr, seen)
}

#[derive(Debug, PartialEq)]
enum Outcome {
    /// An answer with this status and its whole body.
    Answered(StatusCode),
    /// The head arrived, then the body was cut.
    Truncated,
    /// No answer on a connection that had answered before: the server
    /// closed it as idle while the request was on its way (the keep-alive
    /// race of RFC 9112 §9.3.1).
    DroppedOnReuse,
    /// No answer on a new connection the kernel took just before the
    /// listener closed.
    DroppedFresh,
}

struct Sent {
    seq: u64,
    at: Instant,
    done: Instant,
    outcome: Outcome,
}

/// One client: a keep-alive connection with one request after another,
/// a new connection when the server closes it, until connecting is refused.
/// Returns what happened to each request, and whether it was refused.
async fn client(proxy: SocketAddr, secret: String, next: Arc<AtomicU64>, delay: Duration) -> (Vec<Sent>, bool) {
    tokio::time::sleep(delay).await;
    let mut log = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let Ok(stream) = TcpStream::connect(proxy).await else { return (log, true) };
        let Ok((mut sender, conn)) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await else {
            continue;
        };
        tokio::spawn(conn);
        let mut answered = 0;
        // A closed sender: the server ended the connection between requests.
        while sender.ready().await.is_ok() {
            let seq = next.fetch_add(1, Ordering::Relaxed);
            let req = Request::builder()
                .method(Method::GET)
                .uri("/")
                .header("host", proxy.to_string())
                .header("authorization", format!("Bearer {secret}"))
                .header("x-seq", seq)
                .body(Empty::<Bytes>::new())
                .expect("request");
            let at = Instant::now();
            let outcome = match sender.send_request(req).await {
                Ok(res) => {
                    let status = res.status();
                    match res.into_body().collect().await {
                        Ok(_) => Outcome::Answered(status),
                        Err(_) => Outcome::Truncated,
                    }
                }
                Err(_) if answered > 0 => Outcome::DroppedOnReuse,
                Err(_) => Outcome::DroppedFresh,
            };
            let failed = !matches!(outcome, Outcome::Answered(_));
            log.push(Sent { seq, at, done: Instant::now(), outcome });
            if failed {
                break;
            }
            answered += 1;
        }
    }
    (log, false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_concurrent_load_answers_every_accepted_request_and_flushes_usage() {
    let (upstream, seen) = recording_upstream().await;
    let dir = tempfile::tempdir().expect("tempdir");
    // Usage is flushed only at shutdown: the store's count can only come
    // from the final flush.
    let yaml = format!(
        "proxy: {{ listen: 127.0.0.1:0, drain_timeout_ms: 10000 }}\nadmin: {{ listen: 127.0.0.1:0 }}\n\
         store: {{ url: \"sqlite://{}\" }}\nupstream: {{ url: \"http://{upstream}\" }}\n\
         usage: {{ flush_interval_ms: 600000 }}\n",
        dir.path().join("keygate.db").display()
    );
    let mut p = process::spawn(dir.path(), &yaml, &[("KEYGATE_ADMIN_TOKEN", kit::TOKEN)]);
    let admin = kit::admin_client(p.admin);
    let account = admin.account("A").await;
    let (key_id, secret) = admin.key(&account, "read").await;

    let next = Arc::new(AtomicU64::new(0));
    // Staggered, so that the SIGTERM finds requests at every stage.
    let clients: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let delay = Duration::from_millis(UPSTREAM_MS * i as u64 / CLIENTS as u64);
            tokio::spawn(client(p.proxy, secret.clone(), Arc::clone(&next), delay))
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(4 * UPSTREAM_MS)).await;
    let sigterm_at = Instant::now();
    p.sigterm();

    let mut sent = Vec::new();
    let mut refused = 0;
    for c in clients {
        let (log, was_refused) = c.await.expect("join");
        sent.extend(log);
        refused += usize::from(was_refused);
    }
    let (status, log) =
        tokio::task::spawn_blocking(move || (p.wait(Duration::from_secs(15)), p.log())).await.expect("join");
    let exited_after = sigterm_at.elapsed();
    assert!(status.success(), "exit status {status:?}; log:\n{log}");

    let seen = seen.lock().expect("seen").clone();
    let ok = sent.iter().filter(|s| s.outcome == Outcome::Answered(StatusCode::OK)).count();
    let in_flight = sent
        .iter()
        .filter(|s| s.at < sigterm_at && s.done > sigterm_at && s.outcome == Outcome::Answered(StatusCode::OK))
        .count();
    let on_reuse = sent.iter().filter(|s| s.outcome == Outcome::DroppedOnReuse).count();
    let fresh = sent.iter().filter(|s| s.outcome == Outcome::DroppedFresh).count();
    eprintln!(
        "sent {}, 200 {ok}, in flight at SIGTERM {in_flight}, dropped on reuse {on_reuse}, dropped fresh {fresh}, \
         clients refused {refused}/{CLIENTS}, exit after {exited_after:?}",
        sent.len()
    );
    assert!(in_flight >= CLIENTS / 2, "the SIGTERM came with requests in flight: {in_flight}");
    for s in &sent {
        let what = format!("request {} sent {:?} before SIGTERM", s.seq, sigterm_at.saturating_duration_since(s.at));
        assert!(
            matches!(s.outcome, Outcome::Answered(StatusCode::OK) | Outcome::DroppedOnReuse | Outcome::DroppedFresh),
            "{what}: {:?}",
            s.outcome
        );
        if seen.contains(&s.seq) {
            assert_eq!(s.outcome, Outcome::Answered(StatusCode::OK), "{what}: the upstream had it");
        } else {
            assert!(s.at + Duration::from_millis(UPSTREAM_MS) > sigterm_at, "{what}: never forwarded");
        }
    }
    assert_eq!(ok, seen.len(), "every request the upstream saw was answered, and no other");
    assert!(!log.contains("drain timed out") && exited_after < Duration::from_secs(10), "{exited_after:?}:\n{log}");

    // The final flush wrote every proxied request.
    let p = process::spawn(dir.path(), &yaml, &[("KEYGATE_ADMIN_TOKEN", kit::TOKEN)]);
    let admin = kit::admin_client(p.admin);
    let (s, key) = admin.call(Method::GET, &format!("/v1/keys/{key_id}"), None).await;
    assert_eq!(s, StatusCode::OK, "{key}");
    assert_eq!(key["usage_count"], ok, "usage after the restart: {key}");
    assert!(key["last_used_at"].is_string(), "{key}");
}
