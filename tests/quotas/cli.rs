//! The quota commands of the real `keygate` binary against an in-process
//! gateway: `keys create/update --quota`, `keys quota … set|increment|
//! decrement|reset`, the QUOTA columns of `keys list` and `accounts list`.

use serde_json::json;

use super::kit::process::{self, Run};
use super::kit::{AdminCalls, TOKEN};

fn cli(admin: std::net::SocketAddr, args: &[&str]) -> Run {
    let url = format!("http://{admin}");
    let mut full = args.to_vec();
    full.extend(["--admin-url", url.as_str()]);
    process::run(&full, &[("KEYGATE_ADMIN_TOKEN", TOKEN)], None)
}

#[tokio::test]
async fn the_cli_sets_adjusts_and_lists_quotas() {
    let gw = super::gateway(None).await;
    let admin = gw.gateway.admin_addr;
    let acc = gw.admin.account("Cli").await;
    let created = tokio::task::spawn_blocking(move || {
        cli(
            admin,
            &[
                "keys",
                "create",
                "--account",
                &acc,
                "--name",
                "m",
                "--permission",
                "read",
                "--quota",
                "100/month",
                "--json",
            ],
        )
    })
    .await
    .expect("join")
    .ok("keys create --quota")
    .json();
    assert_eq!(created["key"]["quota"], json!({ "limit": 100, "period": "month" }), "{created}");
    let id = created["key"]["id"].as_str().expect("id").to_owned();

    let run = |args: Vec<String>| async move {
        tokio::task::spawn_blocking(move || cli(admin, &args.iter().map(String::as_str).collect::<Vec<_>>()))
            .await
            .expect("join")
    };
    let args = |a: &[&str]| a.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    let out = run(args(&["keys", "quota", &id, "set", "40"])).await.ok("keys quota set");
    assert!(out.stdout.contains("0 used, 40 left"), "{}", out.stdout);
    let out = run(args(&["keys", "quota", &id, "decrement", "50", "--json"])).await.ok("keys quota decrement");
    assert_eq!(out.json()["quota_usage"]["remaining"], 0);
    let out = run(args(&["keys", "quota", &id, "reset"])).await.ok("keys quota reset");
    assert!(out.stdout.contains("0 used, 100 left, resets "), "{}", out.stdout);
    let list = run(args(&["keys", "list"])).await.ok("keys list");
    let header = list.stdout.lines().next().unwrap_or_default();
    assert!(header.contains(" QUOTA "), "{}", list.stdout);
    assert!(list.stdout.contains(" 0/100 "), "{}", list.stdout);
    let out = run(args(&["keys", "update", &id, "--no-quota", "--json"])).await.ok("keys update --no-quota");
    assert_eq!(out.json()["quota"], serde_json::Value::Null);
    let bad = run(args(&["keys", "update", &id, "--quota", "5/year"])).await;
    assert_ne!(bad.code, Some(0));
    assert!(bad.stderr.contains("period"), "{}", bad.stderr);
    let out = run(args(&["keys", "quota", &id, "reset"])).await;
    assert_ne!(out.code, Some(0), "no quota to reset any more");
    assert!(out.stderr.contains("conflict") || out.stderr.contains("no quota"), "{}", out.stderr);
    gw.gateway.stop().await;
}
