//! Bulk-loads accounts and API keys into the store a keygate config names,
//! for the benchmarks (`scripts/bench-vs-nginx.sh`, `scripts/scale-1m.sh`).
//!
//! ```text
//! cargo run --release --example seed_keys -- --config FILE --keys N --out FILE [--accounts A]
//! ```
//!
//! The store is migrated by `Store::connect` (the same code `keygate serve`
//! runs), then the rows go in with multi-row INSERTs in one transaction, at
//! one revision — what the admin API would leave behind after N creates,
//! minus the audit trail. Every second key is `read`, the others `write`.
//!
//! The whole secrets are written to `--out`, one key a line:
//! `<secret> <key_id> <account_id> <permission>`. That file is the only copy:
//! it exists to feed load generators and must not outlive the benchmark.

use std::fmt::Write as _;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Instant;

use anyhow::{bail, Context};
use keygate::config::Config;
use keygate::keys::{format, KeyHash};
use keygate::store::Store;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
use sqlx::QueryBuilder;

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const PREFIX: &str = "kg_live";
/// Rows per INSERT: 6 bound values each, well under SQLite's 32766.
const BATCH: usize = 4096;

struct Args {
    config: PathBuf,
    keys: usize,
    accounts: usize,
    out: PathBuf,
}

fn args() -> anyhow::Result<Args> {
    let mut config = None;
    let mut keys = 10_000;
    let mut accounts = 10;
    let mut out = None;
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--config" => config = Some(PathBuf::from(value)),
            "--keys" => keys = value.parse().context("--keys")?,
            "--accounts" => accounts = value.parse().context("--accounts")?,
            "--out" => out = Some(PathBuf::from(value)),
            other => bail!("unknown flag {other}"),
        }
    }
    Ok(Args {
        config: config.context("--config FILE is required")?,
        keys,
        accounts: accounts.max(1),
        out: out.context("--out FILE is required")?,
    })
}

/// A key in the format `keys::format::parse` accepts: prefix, 32 random
/// base62 characters, CRC32 of everything before it as 6 base62 digits.
/// A seeded CSPRNG instead of one OS call per character: a million keys in
/// well under a second.
fn secret(rng: &mut StdRng) -> String {
    let mut key = String::with_capacity(PREFIX.len() + 1 + format::RANDOM_LEN + format::CHECKSUM_LEN);
    key.push_str(PREFIX);
    key.push('_');
    for _ in 0..format::RANDOM_LEN {
        key.push(BASE62[rng.gen_range(0..62)] as char);
    }
    let mut crc = crc32fast::hash(key.as_bytes());
    let mut digits = [b'0'; format::CHECKSUM_LEN];
    for d in digits.iter_mut().rev() {
        *d = BASE62[(crc % 62) as usize];
        crc /= 62;
    }
    key.extend(digits.iter().map(|&b| b as char));
    key
}

fn id(rng: &mut StdRng, kind: &str) -> String {
    let mut id = String::with_capacity(kind.len() + 21);
    id.push_str(kind);
    id.push('_');
    for _ in 0..20 {
        id.push(BASE62[rng.gen_range(0..62)] as char);
    }
    id
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = args()?;
    let config = Config::load(&args.config).map_err(|e| anyhow::anyhow!("{}: {e}", args.config.display()))?;
    if !config.store.url.starts_with("sqlite:") {
        bail!("seed_keys writes SQLite stores only");
    }
    let started = Instant::now();
    Store::connect(&config.store).await?.close().await;
    let options =
        SqliteConnectOptions::from_str(&config.store.url)?.pragma("synchronous", "OFF").pragma("journal_mode", "WAL");
    let pool = SqlitePoolOptions::new().max_connections(1).connect_with(options).await?;

    let mut rng = StdRng::from_entropy();
    let probe = secret(&mut rng);
    format::parse(probe.as_bytes()).map_err(|e| anyhow::anyhow!("a generated key fails the format check: {e:?}"))?;
    let now = keygate::clock::now_ms();
    let mut tx = pool.begin().await?;
    let rev: i64 = sqlx::query_scalar("UPDATE revision SET value = value + 1 WHERE id = 1 RETURNING value")
        .fetch_one(&mut *tx)
        .await?;
    let accounts: Vec<String> = (0..args.accounts).map(|_| id(&mut rng, "acc")).collect();
    for (i, account) in accounts.iter().enumerate() {
        sqlx::query("INSERT INTO accounts (id, name, api_access, created_at, updated_at, revision) VALUES ($1, $2, 1, $3, $3, $4)")
            .bind(account)
            .bind(format!("bench-{i}"))
            .bind(now)
            .bind(rev)
            .execute(&mut *tx)
            .await?;
    }

    let mut out = BufWriter::new(std::fs::File::create(&args.out).with_context(|| format!("{}", args.out.display()))?);
    let mut line = String::new();
    let mut done = 0;
    while done < args.keys {
        let n = BATCH.min(args.keys - done);
        let rows: Vec<(String, String, &str, &'static str)> = (done..done + n)
            .map(|i| {
                (
                    secret(&mut rng),
                    id(&mut rng, "key"),
                    accounts[i % accounts.len()].as_str(),
                    if i % 2 == 0 { "read" } else { "write" },
                )
            })
            .collect();
        let mut insert = QueryBuilder::new(
            "INSERT INTO api_keys (id, account_id, name, permission, preview, secret_hash, enabled, environment, prefix, \
             created_at, updated_at, usage_count, revision) ",
        );
        insert.push_values(&rows, |mut b, (secret, key_id, account, permission)| {
            b.push_bind(key_id)
                .push_bind(*account)
                .push_bind("bench")
                .push_bind(*permission)
                .push_bind(format::preview(secret))
                .push_bind(KeyHash::of(secret.as_bytes()).as_bytes().to_vec())
                .push_unseparated(format_args!(", 1, 'live', '{PREFIX}', {now}, {now}, 0, {rev}"));
        });
        insert.build().execute(&mut *tx).await?;
        for (secret, key_id, account, permission) in &rows {
            line.clear();
            let _ = writeln!(line, "{secret} {key_id} {account} {permission}");
            out.write_all(line.as_bytes())?;
        }
        done += n;
    }
    tx.commit().await?;
    out.flush()?;
    pool.close().await;
    eprintln!(
        "seeded {} keys in {} accounts into {} in {:.2} s",
        args.keys,
        accounts.len(),
        keygate::config::redact(&config.store.url),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
