//! The key check of `benches/key_check.rs` (parse, checksum, hash, lookup,
//! status, permission) run a fixed number of times, for counting its
//! instructions under callgrind (`scripts/bench-instructions.sh`), where a
//! time-driven harness like criterion would run a different number of
//! iterations each time.
//!
//! ```text
//! cargo build --release --example key_check_count
//! target/release/examples/key_check_count KEYS CHECKS [check|decide|quota]
//! ```
//!
//! Two runs at CHECKS and 2×CHECKS checks cancel the set-up (key
//! generation, snapshot build) out of the difference. `decide` counts the
//! proxy's whole decision (`KeySet::decide`: the check, the usage count),
//! `quota` the same with a quota on every key and a plan with a pooled quota
//! on every account, spent from a quota book (as the `key_check_1m_quota`
//! bench group).

use std::hint::black_box;

use http::Method;
use keygate::keys::{
    format, AccountRow, Changes, Facts, InlineId, KeyPolicy, KeySet, Period, Permission, PlanLimits, QuotaSpec, Secret,
};
use keygate::quota::QuotaBook;

const QUOTA: QuotaSpec = QuotaSpec { limit: 1_000_000_000_000, period: Period::Month };

fn account(i: usize) -> String {
    format!("acc_{:020}", i % 1000)
}

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
    let plan = PlanLimits { plan_id: "plan_bench".into(), rate_limit: None, quota: Some(QUOTA) };
    let accounts = (0..1000)
        .filter(|_| quotas)
        .map(|i| AccountRow { account_id: InlineId::new(&account(i)).expect("an id"), plan: Some(plan.clone()) })
        .collect();
    Changes { revision: 1, keys, retired: Vec::new(), accounts, ..Default::default() }
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let mut number = || args.next().and_then(|a| a.parse::<usize>().ok());
    let (Some(keys), Some(checks)) = (number(), number()) else {
        anyhow::bail!("usage: key_check_count KEYS CHECKS [check|decide|quota]");
    };
    let mode = std::env::args().nth(3).unwrap_or_else(|| "check".into());
    let quotas = match mode.as_str() {
        "check" | "decide" => false,
        "quota" => true,
        other => anyhow::bail!("unknown mode {other}: check, decide or quota"),
    };
    let secrets: Vec<Secret> = (0..keys).map(|_| format::generate("kg_live")).collect();
    // No sync task runs: a `quota_block` this high never waits for the store.
    let set = KeySet::empty().with_quotas(QuotaBook::new(u64::MAX / 4)).apply(rows(&secrets, quotas));
    let now = keygate::clock::now_ms();
    let probe: Vec<&[u8]> = secrets.iter().step_by(997).map(|s| s.expose().as_bytes()).collect();
    let facts = Facts { method: &Method::GET, path: "/", client_ip: None, host: None, cost: 1 };
    let mut allowed = 0usize;
    for i in 0..checks {
        let key = black_box(probe[i % probe.len()]);
        let ok = if mode == "check" {
            black_box(set.check(key, &Method::GET, now)).is_ok()
        } else {
            let decision = black_box(set.decide(key, &facts, now, None));
            decision.result.is_ok() && decision.quota.is_some() == quotas
        };
        allowed += usize::from(ok);
    }
    println!("{allowed} of {checks} checks allowed");
    if allowed != checks {
        anyhow::bail!("{} checks refused", checks - allowed);
    }
    Ok(())
}
