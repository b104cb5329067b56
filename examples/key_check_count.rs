//! The key check of `benches/key_check.rs` (parse, checksum, hash, lookup,
//! status, permission) run a fixed number of times, for counting its
//! instructions under callgrind (`scripts/bench-instructions.sh`), where a
//! time-driven harness like criterion would run a different number of
//! iterations each time.
//!
//! ```text
//! cargo build --release --example key_check_count
//! target/release/examples/key_check_count KEYS CHECKS
//! ```
//!
//! Two runs at CHECKS and 2×CHECKS checks cancel the set-up (key
//! generation, snapshot build) out of the difference.

use std::hint::black_box;

use http::Method;
use keygate::keys::{format, Changes, KeyPolicy, KeySet, Permission, Secret};

fn rows(secrets: &[Secret]) -> Changes {
    let keys = secrets
        .iter()
        .enumerate()
        .map(|(i, s)| {
            KeyPolicy::builder(&format!("key_{i:020}"), &format!("acc_{:020}", i % 1000))
                .permission(if i % 2 == 0 { Permission::Read } else { Permission::Write })
                .expires_at(i64::MAX)
                .row(s.hash())
        })
        .collect();
    Changes { revision: 1, keys, retired: Vec::new(), accounts: Vec::new(), ..Default::default() }
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1).map(|a| a.parse::<usize>());
    let (Some(Ok(keys)), Some(Ok(checks))) = (args.next(), args.next()) else {
        anyhow::bail!("usage: key_check_count KEYS CHECKS");
    };
    let secrets: Vec<Secret> = (0..keys).map(|_| format::generate("kg_live")).collect();
    let set = KeySet::empty().apply(rows(&secrets));
    let now = keygate::clock::now_ms();
    let probe: Vec<&[u8]> = secrets.iter().step_by(997).map(|s| s.expose().as_bytes()).collect();
    let mut allowed = 0usize;
    for i in 0..checks {
        let key = black_box(probe[i % probe.len()]);
        allowed += usize::from(black_box(set.check(key, &Method::GET, now)).is_ok());
    }
    println!("{allowed} of {checks} checks allowed");
    Ok(())
}
