//! Replica propagation benchmark (DESIGN.md §7, issue 6): two gateway
//! replicas on one PostgreSQL database holding KEYS keys; a revocation made
//! on replica A must refuse the key on replica B within 1 s, and B's latency
//! under load must not spike while it applies the change.
//!
//! Everything runs in this process on loopback: a fresh database
//! `keygate_bench_<random>` (dropped at the end), a tiny upstream answering
//! 200, replicas A and B (`Gateway::start`), a keep-alive load generator on
//! B and a prober. Baseline segments load B with no writes; revocation
//! segments load B the same way while keys are revoked one by one on A's
//! admin API. The two kinds alternate over ROUNDS rounds, DURATION seconds
//! of each in all, so the figures are ratios measured side by side.
//!
//! Run it through `scripts/bench-replicas.sh`; settings come from the
//! environment: KEYS, REVOCATIONS, CONCURRENCY, DURATION, ROUNDS, FLUSH_MS
//! (usage flush interval), PG_URL (server, no database).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE, HOST};
use http::{HeaderValue, Method, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1 as client;
use hyper::server::conn::http1 as server;
use hyper_util::rt::TokioIo;
use keygate::config::Config;
use keygate::keys::format::{generate, new_id};
use keygate::server::Gateway;
use rand::{Rng, SeedableRng};
use sqlx::{Connection, PgConnection};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

const ADMIN_TOKEN: &str = "kg_bench_owner_token";
/// Keys whose secrets are kept for the load and the revocations.
const SAMPLE: usize = 10_000;
/// Rows per INSERT while seeding.
const BATCH: usize = 20_000;
/// A revocation not seen on B after this long counts as failed.
const PROBE_LIMIT: Duration = Duration::from_secs(5);
/// Load requests this close to a revocation's propagation window count as
/// "during the reload".
const WINDOW_SLACK: Duration = Duration::from_millis(5);
const BASE62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

struct Settings {
    keys: usize,
    revocations: usize,
    concurrency: usize,
    duration: Duration,
    rounds: usize,
    flush_ms: u64,
    server: String,
}

impl Settings {
    fn from_env() -> Result<Settings> {
        fn num(name: &str, default: u64) -> Result<u64> {
            match std::env::var(name) {
                Ok(v) => v.trim().parse().with_context(|| format!("{name}: not a whole number: {v:?}")),
                Err(_) => Ok(default),
            }
        }
        let s = Settings {
            keys: num("KEYS", 1_000_000)? as usize,
            revocations: num("REVOCATIONS", 50)? as usize,
            concurrency: num("CONCURRENCY", 8)? as usize,
            duration: Duration::from_secs(num("DURATION", 10)?),
            rounds: num("ROUNDS", 5)? as usize,
            flush_ms: num("FLUSH_MS", keygate::config::UsageConfig::default().flush_interval_ms)?,
            server: std::env::var("PG_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into()),
        };
        ensure!(
            s.revocations >= 1 && s.concurrency >= 1 && s.rounds >= 1 && !s.duration.is_zero(),
            "REVOCATIONS, CONCURRENCY, ROUNDS and DURATION must be ≥ 1"
        );
        // The revoked keys and at least one load key per connection come
        // from the keys whose secrets are kept.
        ensure!(
            s.revocations + s.concurrency <= s.keys.min(SAMPLE),
            "REVOCATIONS + CONCURRENCY must not exceed KEYS nor {SAMPLE}"
        );
        Ok(s)
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    // sqlx warns of every statement over 1 s: at 1M keys, each cold start's
    // full load is one, and the bench reports the cold start itself.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,sqlx::query=error"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    let settings = Settings::from_env()?;
    let db = format!("keygate_bench_{}", new_id("db")[3..].to_ascii_lowercase());
    let mut admin =
        PgConnection::connect(&format!("{}/postgres", settings.server)).await.context("PostgreSQL unreachable")?;
    sqlx::query(&format!("CREATE DATABASE {db}")).execute(&mut admin).await?;
    let result = run(&settings, &format!("{}/{db}", settings.server)).await;
    sqlx::query(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)")).execute(&mut admin).await?;
    result
}

/// A key whose secret the bench knows.
struct SampleKey {
    id: String,
    bearer: HeaderValue,
}

async fn run(s: &Settings, url: &str) -> Result<()> {
    println!(
        "replica propagation bench: {} keys, {} revocations, {} connections, {} s per phase in {} rounds, usage flush every {} ms",
        s.keys,
        s.revocations,
        s.concurrency,
        s.duration.as_secs(),
        s.rounds,
        s.flush_ms
    );
    let mut config = Config::default();
    config.store.url = url.to_owned();
    config.proxy.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    config.admin.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    config.upstream.url = format!("http://{}", start_upstream().await?);
    config.limits.failed_auth_per_minute = 0;
    config.usage.flush_interval_ms = s.flush_ms;

    // A first gateway runs the migrations and creates the account.
    let first = Gateway::start(&config, Some(ADMIN_TOKEN)).await?;
    let (status, body) =
        Conn::open(first.admin_addr).await?.send(admin_request("/v1/accounts", r#"{"name":"Bench"}"#)?).await?;
    ensure!(status == StatusCode::CREATED, "account creation answered {status}");
    let account: serde_json::Value = serde_json::from_slice(&body)?;
    let account = account["id"].as_str().context("account id")?.to_owned();
    first.stop().await;

    let started = Instant::now();
    let sample = seed(url, &account, s.keys).await?;
    let took = started.elapsed().as_secs_f64();
    println!(
        "seed            {} keys in {took:.1} s ({:.0} rows/s), one account, one revision; {} secrets kept",
        s.keys,
        s.keys as f64 / took,
        sample.len()
    );
    let (a, b) = start_replicas(&config, s).await?;

    let (revoked, load_keys) = sample.split_at(s.revocations);
    let load_keys: Arc<Vec<HeaderValue>> = Arc::new(load_keys.iter().map(|k| k.bearer.clone()).collect());
    let notes = Arc::new(Mutex::new(Vec::new()));
    let watcher = watch_notifications(url, Arc::clone(&notes)).await?;
    // Baseline and revocation segments alternate (ABBA…), so that the other
    // work on this shared machine weighs on both alike.
    let rounds = s.rounds.min(s.revocations);
    let segment = s.duration / rounds as u32;
    let (mut baseline, mut during, mut revocations) = (Phase::default(), Phase::default(), Vec::new());
    for round in 0..rounds {
        let chunk = &revoked[round * s.revocations / rounds..(round + 1) * s.revocations / rounds];
        for revoking in [round % 2 == 1, round % 2 == 0] {
            if revoking {
                let started = Instant::now();
                let revoker = async {
                    let done = revoke_all(a.admin_addr, b.proxy_addr, chunk, segment).await;
                    tokio::time::sleep_until((started + segment).into()).await;
                    done
                };
                let (samples, done) = load(b.proxy_addr, &load_keys, s.concurrency, revoker).await?;
                let done = done?;
                during.add(samples, &done);
                revocations.extend(done);
            } else {
                let (samples, ()) = load(b.proxy_addr, &load_keys, s.concurrency, tokio::time::sleep(segment)).await?;
                baseline.add(samples, &[]);
            }
        }
    }
    watcher.abort();
    let notes = notes.lock().map(|n| n.clone()).unwrap_or_default();

    report_propagation(&revocations, &notes);
    report_latency(&baseline, &during, rounds);
    let (rss, peak) = memory();
    println!("memory          process RSS {rss:.0} MB at the end, peak {peak:.0} MB");
    a.stop().await;
    b.stop().await;
    Ok(())
}

/// Starts A, then B, and reports B's cold start and both replicas' memory.
async fn start_replicas(config: &Config, s: &Settings) -> Result<(Gateway, Gateway)> {
    let rss_before = memory().0;
    let started = Instant::now();
    let a = Gateway::start(config, Some(ADMIN_TOKEN)).await?;
    let (start_a, rss_a) = (started.elapsed(), memory().0);
    let started = Instant::now();
    let b = Gateway::start(config, Some(ADMIN_TOKEN)).await?;
    let (start_b, (rss_b, peak)) = (started.elapsed(), memory());
    let secrets = b.reloader.keyset().load().len();
    ensure!(secrets == s.keys, "B loaded {secrets} secrets, expected {}", s.keys);
    println!(
        "cold start      B {:.2} s to Gateway::start returning with {secrets} keys (target ≤ 3 s); A took {:.2} s",
        start_b.as_secs_f64(),
        start_a.as_secs_f64()
    );
    println!(
        "memory          process RSS {rss_before:.0} MB before the replicas, {rss_a:.0} MB with A, {rss_b:.0} MB with A and B: \
         A adds {:.0} MB, B {:.0} MB (target ≤ 250 MB per replica; both share this process); peak {peak:.0} MB",
        rss_a - rss_before,
        rss_b - rss_a,
    );
    // The usage flusher walks the counters of the keys in use (not the whole
    // snapshot) each interval.
    let started = Instant::now();
    std::hint::black_box(b.reloader.keyset().load().usage().all().len());
    println!(
        "usage flusher   one walk over B's used keys (what each flush reads) takes {:.3} ms, every {} ms",
        ms(started.elapsed()),
        s.flush_ms
    );
    Ok((a, b))
}

/// Inserts `count` keys in one transaction at one new revision: `SAMPLE` of
/// them with real secrets (returned), the rest with random hashes, whose
/// secrets nobody will ever present.
async fn seed(url: &str, account: &str, count: usize) -> Result<Vec<SampleKey>> {
    let mut conn = PgConnection::connect(url).await?;
    let mut tx = conn.begin().await?;
    let revision: i64 = sqlx::query_scalar("UPDATE revision SET value = value + 1 WHERE id = 1 RETURNING value")
        .fetch_one(&mut *tx)
        .await?;
    let now = keygate::clock::now_ms();
    let stride = (count / SAMPLE).max(1);
    let mut rng = rand::rngs::StdRng::from_entropy();
    let mut sample = Vec::with_capacity(SAMPLE.min(count));
    let mut done = 0;
    while done < count {
        let n = BATCH.min(count - done);
        let (mut ids, mut names, mut previews, mut hashes) =
            (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n));
        for i in done..done + n {
            let id: String = "key_".chars().chain((0..20).map(|_| base62(&mut rng))).collect();
            if i % stride == 0 && sample.len() < SAMPLE {
                let secret = generate("kg_live");
                previews.push(secret.preview());
                hashes.push(secret.hash().as_bytes().to_vec());
                sample.push(SampleKey {
                    id: id.clone(),
                    bearer: HeaderValue::from_str(&format!("Bearer {}", secret.expose()))?,
                });
            } else {
                previews.push(format!("kg_live_{}…{}", &id[4..8], &id[20..24]));
                hashes.push(rng.gen::<[u8; 32]>().to_vec());
            }
            names.push(format!("bench {i}"));
            ids.push(id);
        }
        sqlx::query(
            "INSERT INTO api_keys (id, account_id, name, permission, enabled, environment, prefix, preview, secret_hash, \
             created_at, updated_at, usage_count, revision) \
             SELECT u.id, $5, u.name, 'read', TRUE, 'live', 'kg_live', u.preview, u.hash, $6, $6, 0, $7 \
             FROM UNNEST($1::text[], $2::text[], $3::text[], $4::bytea[]) AS u(id, name, preview, hash)",
        )
        .bind(&ids)
        .bind(&names)
        .bind(&previews)
        .bind(&hashes)
        .bind(account)
        .bind(now)
        .bind(revision)
        .execute(&mut *tx)
        .await?;
        done += n;
    }
    tx.commit().await?;
    // What autovacuum would do shortly after a bulk import: without
    // statistics the planner may scan the whole table on every reload.
    sqlx::query("ANALYZE").execute(&mut conn).await?;
    Ok(sample)
}

fn base62(rng: &mut impl Rng) -> char {
    BASE62[rng.gen_range(0..BASE62.len())] as char
}

/// VmRSS and VmHWM of this process, in MB.
fn memory() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|kb| kb.parse::<f64>().ok())
            .map_or(f64::NAN, |kb| kb / 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// An upstream that answers every request 200 `ok`.
async fn start_upstream() -> Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let answer = hyper::service::service_fn(|_req: Request<Incoming>| async {
                    Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
                });
                let _ = server::Builder::new().serve_connection(TokioIo::new(stream), answer).await;
            });
        }
    });
    Ok(addr)
}

/// One keep-alive HTTP/1.1 connection.
struct Conn {
    sender: client::SendRequest<Full<Bytes>>,
}

impl Conn {
    async fn open(addr: SocketAddr) -> Result<Conn> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let (sender, connection) = client::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(connection);
        Ok(Conn { sender })
    }

    async fn send(&mut self, req: Request<Full<Bytes>>) -> Result<(StatusCode, Bytes)> {
        self.sender.ready().await?;
        let response = self.sender.send_request(req).await?;
        let status = response.status();
        Ok((status, response.into_body().collect().await?.to_bytes()))
    }
}

fn proxy_request(bearer: &HeaderValue) -> Request<Full<Bytes>> {
    let mut req = Request::new(Full::new(Bytes::new()));
    *req.uri_mut() = Uri::from_static("/bench");
    req.headers_mut().insert(HOST, HeaderValue::from_static("127.0.0.1"));
    req.headers_mut().insert(AUTHORIZATION, bearer.clone());
    req
}

fn admin_request(path: &str, body: &'static str) -> Result<Request<Full<Bytes>>> {
    Ok(Request::builder()
        .method(Method::POST)
        .uri(path)
        .header(HOST, "127.0.0.1")
        .header(AUTHORIZATION, format!("Bearer {ADMIN_TOKEN}"))
        .header(CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from_static(body.as_bytes())))?)
}

/// Every request of one load segment (when it started, its latency in µs),
/// the answers other than 200, and how long the segment ran.
struct Samples {
    requests: Vec<(Instant, u32)>,
    errors: u64,
    elapsed: Duration,
}

/// `conns` connections to `proxy`, each sending one request after the
/// other, rotating through `keys`, until `until` completes.
async fn load<T>(
    proxy: SocketAddr,
    keys: &Arc<Vec<HeaderValue>>,
    conns: usize,
    until: impl Future<Output = T>,
) -> Result<(Samples, T)> {
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::with_capacity(conns);
    for w in 0..conns {
        let (keys, stop) = (Arc::clone(keys), Arc::clone(&stop));
        let mut conn = Conn::open(proxy).await?;
        workers.push(tokio::spawn(async move {
            let (mut requests, mut errors, mut next) = (Vec::with_capacity(1 << 16), 0, w);
            while !stop.load(Ordering::Relaxed) {
                let req = proxy_request(&keys[next % keys.len()]);
                next += conns;
                let sent = Instant::now();
                let (status, _) = conn.send(req).await?;
                requests.push((sent, sent.elapsed().as_micros() as u32));
                errors += u64::from(status != StatusCode::OK);
            }
            anyhow::Ok((requests, errors))
        }));
    }
    let started = Instant::now();
    let outcome = until.await;
    stop.store(true, Ordering::Relaxed);
    let mut all = Samples { requests: Vec::new(), errors: 0, elapsed: started.elapsed() };
    for worker in workers {
        let (requests, errors) = worker.await??;
        all.requests.extend(requests);
        all.errors += errors;
    }
    Ok((all, outcome))
}

/// The latencies (µs) of one kind of segment, all rounds together; for the
/// revocation segments also those of the requests that overlapped a
/// revocation's way from A to B (sent on A until refused on B, ±
/// `WINDOW_SLACK`): where a reload spike would show.
#[derive(Default)]
struct Phase {
    latencies: Vec<u32>,
    errors: u64,
    elapsed: Duration,
    in_windows: Vec<u32>,
    windows: usize,
    window_time: Duration,
}

impl Phase {
    fn add(&mut self, samples: Samples, revocations: &[Revocation]) {
        let windows: Vec<(Instant, Instant)> =
            revocations.iter().filter_map(|r| Some((r.sent - WINDOW_SLACK, r.seen? + WINDOW_SLACK))).collect();
        for &(at, latency) in &samples.requests {
            let i = windows.partition_point(|w| w.0 <= at);
            if i > 0 && at <= windows[i - 1].1 {
                self.in_windows.push(latency);
            }
        }
        self.windows += windows.len();
        self.window_time += windows.iter().map(|w| w.1 - w.0).sum::<Duration>();
        self.latencies.extend(samples.requests.iter().map(|r| r.1));
        self.errors += samples.errors;
        self.elapsed += samples.elapsed;
    }
}

/// One revocation: when it was sent to A, when A answered 200, when B first
/// refused the key (`None`: not within `PROBE_LIMIT`).
struct Revocation {
    sent: Instant,
    ok: Instant,
    seen: Option<Instant>,
}

/// Revokes `keys` one by one on A, spread evenly over `span`. From the
/// moment each revocation is sent, a prober asks B with that key about every
/// millisecond until B refuses it.
async fn revoke_all(
    admin: SocketAddr,
    proxy: SocketAddr,
    keys: &[SampleKey],
    span: Duration,
) -> Result<Vec<Revocation>> {
    let origin = Instant::now();
    let spacing = span / keys.len() as u32;
    let mut conn = Conn::open(admin).await?;
    let mut prober = Conn::open(proxy).await?;
    let mut out = Vec::with_capacity(keys.len());
    for (i, key) in keys.iter().enumerate() {
        let (status, _) = prober.send(proxy_request(&key.bearer)).await?;
        ensure!(status == StatusCode::OK, "B answers {status} for key {} before its revocation", key.id);
        tokio::time::sleep_until((origin + spacing * i as u32 + spacing / 2).into()).await;
        let sent = Instant::now();
        let revoke = async {
            let (status, body) = conn.send(admin_request(&format!("/v1/keys/{}/revoke", key.id), "")?).await?;
            ensure!(
                status == StatusCode::OK,
                "revoking {} answered {status}: {}",
                key.id,
                String::from_utf8_lossy(&body)
            );
            Ok(Instant::now())
        };
        let (ok, seen) = tokio::try_join!(revoke, probe(&mut prober, key, sent))?;
        out.push(Revocation { sent, ok, seen });
    }
    Ok(out)
}

/// When B first refuses `key` as revoked; `None` if not within `PROBE_LIMIT`.
async fn probe(prober: &mut Conn, key: &SampleKey, sent: Instant) -> Result<Option<Instant>> {
    loop {
        let (status, body) = prober.send(proxy_request(&key.bearer)).await?;
        if status == StatusCode::UNAUTHORIZED && contains(&body, br#""code":"key_revoked""#) {
            return Ok(Some(Instant::now()));
        }
        if status != StatusCode::OK {
            bail!(
                "B answered {status} for key {} while waiting for its revocation: {}",
                key.id,
                String::from_utf8_lossy(&body)
            );
        }
        if sent.elapsed() > PROBE_LIMIT {
            return Ok(None);
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Records when each `keygate_changes` notification reaches a listener of
/// our own: when B's refusal follows it closely, NOTIFY delivered the change
/// (B's poller ticks only once a second).
async fn watch_notifications(url: &str, notes: Arc<Mutex<Vec<Instant>>>) -> Result<JoinHandle<()>> {
    let mut listener = sqlx::postgres::PgListener::connect(url).await?;
    listener.listen(keygate::reload::CHANNEL).await?;
    Ok(tokio::spawn(async move {
        while let Ok(_note) = listener.recv().await {
            if let Ok(mut notes) = notes.lock() {
                notes.push(Instant::now());
            }
        }
    }))
}

fn report_propagation(revocations: &[Revocation], notes: &[Instant]) {
    let seen: Vec<(&Revocation, Instant)> = revocations.iter().filter_map(|r| r.seen.map(|seen| (r, seen))).collect();
    let lost = revocations.len() - seen.len();
    let early = seen.iter().filter(|(r, seen)| *seen <= r.ok).count();
    let propagation = sorted(seen.iter().map(|(r, seen)| ms(seen.saturating_duration_since(r.ok))));
    let from_sent = sorted(seen.iter().map(|(r, seen)| ms(*seen - r.sent)));
    println!(
        "propagation     A's 200 → B's first 401 key_revoked: median {:.1} ms, p90 {:.1} ms, max {:.1} ms over {} revocations \
         (target ≤ 1000 ms); B refused before A answered {early} times; from the revoke request sent: median {:.1} ms, max {:.1} ms{}",
        quantile(&propagation, 0.5),
        quantile(&propagation, 0.9),
        quantile(&propagation, 1.0),
        seen.len(),
        quantile(&from_sent, 0.5),
        quantile(&from_sent, 1.0),
        if lost > 0 { format!("; {lost} NOT SEEN within {} s", PROBE_LIMIT.as_secs()) } else { String::new() }
    );
    // Per revocation, the first notification after it was sent.
    let (mut notify, mut after_notify) = (Vec::new(), Vec::new());
    for (r, seen) in &seen {
        let Some(note) = notes.iter().find(|&&n| n >= r.sent) else { continue };
        notify.push(ms(*note - r.sent));
        after_notify.push(ms(seen.saturating_duration_since(*note)));
    }
    let (notify, after_notify) = (sorted(notify), sorted(after_notify));
    let close = after_notify.iter().filter(|&&d| d <= 50.0).count();
    let verdict = if close * 10 >= seen.len() * 9 {
        "delivered by NOTIFY"
    } else {
        "NOT clearly NOTIFY: the poll may have delivered some"
    };
    println!(
        "delivery        NOTIFY reached a listener of the bench median {:.1} ms after the revoke was sent; B refused median {:.1} ms, \
         max {:.1} ms after it, within 50 ms {close}/{} times (B polls only every 1 s) → {verdict}",
        quantile(&notify, 0.5),
        quantile(&after_notify, 0.5),
        quantile(&after_notify, 1.0),
        seen.len(),
    );
}

fn sorted(values: impl IntoIterator<Item = f64>) -> Vec<f64> {
    let mut v: Vec<f64> = values.into_iter().collect();
    v.sort_by(f64::total_cmp);
    v
}

/// Baseline segments against revocation segments, and against only the
/// requests inside the reload windows.
fn report_latency(baseline: &Phase, during: &Phase, rounds: usize) {
    println!("latency on B (µs)             requests       rps      p50      p99        max  errors");
    // rps, p50, p99, max
    let row = |name: &str, latencies: &[u32], time: Duration, errors: Option<u64>| -> [f64; 4] {
        let v = sorted(latencies.iter().map(|&l| f64::from(l)));
        let f = [v.len() as f64 / time.as_secs_f64(), quantile(&v, 0.5), quantile(&v, 0.99), quantile(&v, 1.0)];
        let errors = errors.map_or_else(|| "-".to_owned(), |e| e.to_string());
        println!("{name:<28} {:>9} {:>9.0} {:>8.0} {:>8.0} {:>10.0} {errors:>7}", v.len(), f[0], f[1], f[2], f[3]);
        f
    };
    let base = row("baseline (no writes)", &baseline.latencies, baseline.elapsed, Some(baseline.errors));
    let all = row("during revocations", &during.latencies, during.elapsed, Some(during.errors));
    let win = row("  within reload windows", &during.in_windows, during.window_time, None);
    for (name, f) in [("ratio during / baseline", all), ("ratio windows / baseline", win)] {
        let r: Vec<f64> = f.iter().zip(base).map(|(x, b)| x / b).collect();
        println!("{name:<28} {:>9} {:>9.2} {:>8.2} {:>8.2} {:>10.2}", "", r[0], r[1], r[2], r[3]);
    }
    println!(
        "verdict         p99 during revocations {:.2}× the baseline, {:.2}× inside the {} reload windows ({:.2} s in all); \
         {rounds} rounds of baseline and revocations alternating; target: no spike",
        all[2] / base[2],
        win[2] / base[2],
        during.windows,
        during.window_time.as_secs_f64()
    );
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Nearest-rank quantile of sorted values; NaN when there are none.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}
