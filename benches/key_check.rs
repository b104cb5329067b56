//! The key check at 1,000,000 keys (target ≤ 250 ns) and the snapshot build
//! for 1,000,000 keys (target ≤ 3 s, process memory ≤ 250 MB).
//!
//! Every figure is printed next to a baseline measured in the same run: the
//! key check beside a bare blake3 hash of the same key (the floor of any
//! hash-indexed lookup), the snapshot's memory beside the process before it.
//! The `key_check_1m_with_foreign` group repeats the checks with 100,000
//! keys imported as a sha256 hash present too (`keys::foreign`): keygate's
//! keys must cost the same, an unknown key pays the second (sha256) lookup,
//! and a key imported by hash is found by it.
//!
//! `key_check_1m` also checks every one of the million keys in a random
//! order (`full_check_every_key`): the other checks cycle through 1,003 keys,
//! whose index entries and policies stay in the CPU's caches, while
//! traffic over many keys finds most of them in memory. The
//! `key_check_1m_quota` group is the proxy's whole decision (`decide`: the
//! check, the usage count and the quota spending) beside the same decision
//! for keys without quotas: there every key has a quota of its own and
//! every account a plan with a pooled one, both spent from the quota book
//! (`crate::quota`) on every request.

use std::time::Instant;

use criterion::{black_box, criterion_group, Criterion};
use http::Method;
use keygate::keys::{
    format, AccountRow, Changes, Facts, InlineId, KeyHash, KeyPolicy, KeySet, Period, Permission, PlanLimits,
    QuotaSpec, Secret,
};
use keygate::quota::QuotaBook;
use rand::seq::SliceRandom;

const KEYS: usize = 1_000_000;
/// Keys imported by hash, beside the million.
const FOREIGN: usize = 100_000;

/// A field of a `/proc/self` file given in kB, in MB.
fn proc_mb(file: &str, field: &str) -> f64 {
    std::fs::read_to_string(file)
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with(field)).map(|l| l.to_owned()))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|kb| kb.parse::<f64>().ok()))
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

fn rss_mb() -> f64 {
    proc_mb("/proc/self/status", "VmRSS:")
}

/// Memory on transparent huge pages: glibc does not always get them, and
/// the checks cost about a third more without (see `main`).
fn huge_mb() -> f64 {
    proc_mb("/proc/self/smaps_rollup", "AnonHugePages:")
}

/// Far above anything a run spends: no request is refused by a quota.
const QUOTA: QuotaSpec = QuotaSpec { limit: 1_000_000_000_000, period: Period::Month };
const ACCOUNTS: usize = 1000;

fn account(i: usize) -> String {
    format!("acc_{:020}", i % ACCOUNTS)
}

/// The million keys in 1,000 accounts; with `quotas`, each key with a quota
/// of its own and each account on a plan with a pooled one.
fn rows(secrets: &[Secret], quotas: bool) -> Changes {
    let keys = secrets
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let policy = KeyPolicy::builder(&format!("key_{i:020}"), &account(i))
                .permission(if i % 2 == 0 { Permission::Read } else { Permission::Write })
                .expires_at(i64::MAX);
            if quotas { policy.usage_quota(QUOTA) } else { policy }.row(s.hash())
        })
        .collect();
    let accounts = if quotas {
        (0..ACCOUNTS)
            .map(|i| AccountRow {
                account_id: InlineId::new(&account(i)).expect("an id"),
                plan: Some(PlanLimits { plan_id: "plan_bench".into(), rate_limit: None, quota: Some(QUOTA) }),
            })
            .collect()
    } else {
        Vec::new()
    };
    Changes { revision: 1, keys, retired: Vec::new(), accounts, ..Default::default() }
}

fn bench(c: &mut Criterion) {
    let secrets: Vec<Secret> = (0..KEYS).map(|_| format::generate("kg_live")).collect();
    let changes = rows(&secrets, false);
    let before = rss_mb();
    let started = Instant::now();
    let set = KeySet::empty().apply(changes);
    let build = started.elapsed();
    let after = rss_mb();
    println!(
        "snapshot build: {KEYS} keys in {:.3} s (target ≤ 3 s); snapshot memory {:.0} MB, process RSS {:.0} MB (target ≤ 250 MB), {:.0} MB of it on huge pages",
        build.as_secs_f64(),
        after - before,
        after,
        huge_mb()
    );

    let now = keygate::clock::now_ms();
    let probe: Vec<&[u8]> = secrets.iter().step_by(997).map(|s| s.expose().as_bytes()).collect();
    let mut i = 0;
    let mut group = c.benchmark_group("key_check_1m");
    group.bench_function("blake3_only_baseline", |b| {
        b.iter(|| {
            i = (i + 1) % probe.len();
            black_box(KeyHash::of(black_box(probe[i])))
        })
    });
    group.bench_function("full_check", |b| {
        b.iter(|| {
            i = (i + 1) % probe.len();
            black_box(set.check(black_box(probe[i]), &Method::GET, now)).is_ok()
        })
    });
    group.bench_function("unknown_key", |b| {
        let unknown = format::generate("kg_live");
        b.iter(|| black_box(set.check(black_box(unknown.expose().as_bytes()), &Method::GET, now)).is_err())
    });
    // Every key once, in a random order, read from one buffer (the request
    // would have the key in cache already; its index entry and policy not).
    let len = secrets[0].expose().len();
    let mut order: Vec<&Secret> = secrets.iter().collect();
    order.shuffle(&mut rand::thread_rng());
    let every: Vec<u8> = order.iter().flat_map(|s| s.expose().bytes()).collect();
    drop(order);
    let mut k = 0;
    group.bench_function("full_check_every_key", |b| {
        b.iter(|| {
            k = (k + 1) % KEYS;
            black_box(set.check(black_box(&every[k * len..(k + 1) * len]), &Method::GET, now)).is_ok()
        })
    });
    group.finish();

    // The proxy's decision, without and with quotas on every key and
    // account. No sync task runs: `quota_block` is set so high that no
    // spend waits for the store's confirmation.
    let facts = Facts { method: &Method::GET, path: "/", client_ip: None, host: None, cost: 1 };
    let book = QuotaBook::new(u64::MAX / 4);
    let with_quotas = KeySet::empty().with_quotas(book).apply(rows(&secrets, true));
    println!(
        "the same {KEYS} keys with quotas on keys and plans; process RSS {:.0} MB, {:.0} MB of it on huge pages",
        rss_mb(),
        huge_mb()
    );
    let first = with_quotas.decide(probe[0], &facts, now, None);
    assert!(first.result.is_ok() && first.quota.is_some(), "each check spends from a quota: {first:?}");
    let mut group = c.benchmark_group("key_check_1m_quota");
    group.bench_function("decide_without_quota", |b| {
        b.iter(|| {
            i = (i + 1) % probe.len();
            black_box(set.decide(black_box(probe[i]), &facts, now, None)).result.is_ok()
        })
    });
    group.bench_function("decide_with_quota", |b| {
        b.iter(|| {
            i = (i + 1) % probe.len();
            black_box(with_quotas.decide(black_box(probe[i]), &facts, now, None)).result.is_ok()
        })
    });
    group.finish();
    drop(with_quotas);

    // 100,000 keys imported by sha256 and not used yet, on top.
    let foreign_secrets: Vec<String> =
        (0..FOREIGN).map(|i| format!("legacy-{i:08}-{}", &secrets[i].expose()[8..30])).collect();
    let foreign = foreign_secrets
        .iter()
        .enumerate()
        .map(|(i, s)| {
            KeyPolicy::builder(&format!("key_f{i:019}"), &format!("acc_{:020}", i % 1000))
                .expires_at(i64::MAX)
                .row(keygate::keys::foreign::sha256(s.as_bytes()))
        })
        .collect();
    let started = Instant::now();
    let mixed = set.apply(Changes { revision: 2, foreign, ..Changes::default() });
    println!(
        "{FOREIGN} keys imported by hash applied in {:.3} s; process RSS {:.0} MB",
        started.elapsed().as_secs_f64(),
        rss_mb()
    );
    let foreign_probe: Vec<&[u8]> = foreign_secrets.iter().step_by(97).map(|s| s.as_bytes()).collect();
    let mut j = 0;
    let mut group = c.benchmark_group("key_check_1m_with_foreign");
    group.bench_function("full_check", |b| {
        b.iter(|| {
            i = (i + 1) % probe.len();
            black_box(mixed.check(black_box(probe[i]), &Method::GET, now)).is_ok()
        })
    });
    group.bench_function("unknown_key", |b| {
        let unknown = "unknown-legacy-secret-0123456789";
        b.iter(|| black_box(mixed.check(black_box(unknown.as_bytes()), &Method::GET, now)).is_err())
    });
    group.bench_function("bad_checksum", |b| {
        let mut forged = secrets[0].expose().as_bytes().to_vec();
        forged[12] = if forged[12] == b'a' { b'b' } else { b'a' };
        b.iter(|| black_box(mixed.check(black_box(&forged), &Method::GET, now)).is_err())
    });
    group.bench_function("foreign_key_by_sha256", |b| {
        b.iter(|| {
            j = (j + 1) % foreign_probe.len();
            black_box(mixed.check(black_box(foreign_probe[j]), &Method::GET, now)).is_ok()
        })
    });
    group.finish();

    // One revocation applied to the 1M-key snapshot: the work a reload does.
    let mut one = rows(&secrets[..1], false);
    one.revision = 2;
    one.keys[0].policy.revoked = true;
    let started = Instant::now();
    let next = set.apply(one);
    println!("incremental apply of 1 change to {KEYS} keys: {:.3} ms", started.elapsed().as_secs_f64() * 1e3);
    black_box(next);
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(std::time::Duration::from_secs(3));
    targets = bench
}
/// The bench runs as keygate's packaging runs the gateway: with glibc's
/// heap on transparent huge pages (`GLIBC_TUNABLES=glibc.malloc.hugetlb=1`,
/// docs/config.md#memory). At a million keys a lookup touches three or
/// four pages no other lookup shares; on 4 KiB pages most of them miss the
/// TLB. glibc reads the setting at start, so the bench starts itself again
/// with it. `GLIBC_TUNABLES` set (to anything, even empty) runs as is.
fn main() {
    if std::env::var_os("GLIBC_TUNABLES").is_none() {
        if let Ok(exe) = std::env::current_exe() {
            let status = std::process::Command::new(exe)
                .args(std::env::args_os().skip(1))
                .env("GLIBC_TUNABLES", "glibc.malloc.hugetlb=1")
                .status();
            match status {
                Ok(status) => std::process::exit(status.code().unwrap_or(1)),
                Err(e) => eprintln!("cannot start the bench again with huge pages ({e}); running on 4 KiB pages"),
            }
        }
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
