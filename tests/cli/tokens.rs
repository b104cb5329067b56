//! Admin tokens from the shell: minted offline into the store the running
//! gateway reads, used with their role's limits, listed and deleted over the
//! API; and the audit trail those actions leave.

use super::{run, Gateway};
use crate::kit::process;

/// `keygate admin-token create` (offline) into the gateway's store; returns the secret.
fn mint(gw: &Gateway, name: &str, role: &str) -> String {
    let config = gw.config.to_str().expect("utf-8 path");
    let out = process::run(&["admin-token", "create", "--config", config, "--name", name, "--role", role], &[], None);
    let stdout = &out.stdout;
    assert_eq!(out.code, Some(0), "admin-token create: {}", out.stderr);
    let secret = stdout.trim().to_owned();
    assert!(secret.starts_with("kga_"), "stdout is the secret alone: {stdout:?}");
    secret
}

#[test]
fn offline_viewer_token_reads_but_cannot_revoke_and_can_be_deleted() {
    let gw = Gateway::start();
    let (_, key_id, _) = gw.account_and_key("Acme", "read");
    let viewer = mint(&gw, "ci", "viewer");

    let listed = run(&["keys", "list", "--json"], Some(&viewer), &gw.admin_url);
    assert_eq!(listed.code, Some(0), "viewer lists keys: {}", listed.stderr);
    assert!(listed.stdout.contains(&key_id), "{}", listed.stdout);

    let revoke = run(&["keys", "revoke", &key_id, "--yes"], Some(&viewer), &gw.admin_url);
    assert_eq!(revoke.code, Some(1), "viewer revokes: {}", revoke.stderr);
    assert!(revoke.stderr.starts_with("error: 403"), "{}", revoke.stderr);

    // Only owners see admin tokens.
    let as_viewer = run(&["admin-token", "list"], Some(&viewer), &gw.admin_url);
    assert_eq!(as_viewer.code, Some(1), "{}", as_viewer.stderr);

    let table = gw.cli(&["admin-token", "list"]).ok("admin-token list");
    let header = table.stdout.lines().next().unwrap_or_default();
    for column in ["ID", "NAME", "ROLE", "ACCOUNT", "TOKEN", "CREATED"] {
        assert!(header.contains(column), "missing {column} in {header:?}");
    }
    let tokens = gw.cli(&["admin-token", "list", "--json"]).ok("admin-token list --json").json();
    let items = tokens["items"].as_array().expect("items");
    let ci = items.iter().find(|t| t["name"] == "ci").unwrap_or_else(|| panic!("no token named ci in {tokens}"));
    assert_eq!(ci["role"], "viewer");
    let token_id = ci["id"].as_str().expect("token id").to_owned();
    assert!(table.stdout.contains(&token_id), "{}", table.stdout);
    assert!(!table.stdout.contains(&viewer) && !tokens.to_string().contains(&viewer));

    let deleted = gw.cli(&["admin-token", "delete", &token_id]).ok("admin-token delete");
    assert!(deleted.stdout.contains(&token_id), "{}", deleted.stdout);
    let gone = run(&["keys", "list"], Some(&viewer), &gw.admin_url);
    assert_eq!(gone.code, Some(1), "deleted token still works: {}", gone.stdout);
    assert!(gone.stderr.starts_with("error: 401"), "{}", gone.stderr);
    let again = gw.cli(&["admin-token", "delete", &token_id]);
    assert_eq!(again.code, Some(1), "{}", again.stderr);
}

/// The offline command runs the same checks as `POST /v1/admin-tokens`: a
/// blank or control-character name is refused and nothing is written.
#[test]
fn offline_token_create_refuses_an_invalid_name() {
    let gw = Gateway::start();
    for name in ["   ", "ci\u{7}bell"] {
        let out = crate::kit::process::keygate()
            .args(["admin-token", "create", "--config"])
            .arg(&gw.config)
            .args(["--name", name, "--role", "viewer"])
            .env_remove("KEYGATE_ADMIN_TOKEN")
            .output()
            .expect("run admin-token create");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "name {name:?} accepted: {stderr}");
        assert!(stderr.starts_with("error: --name: "), "{stderr}");
        assert!(out.stdout.is_empty(), "a secret was printed for a refused token");
    }
    let tokens = gw.cli(&["admin-token", "list", "--json"]).ok("admin-token list").json();
    assert_eq!(tokens["items"], serde_json::json!([]), "a refused token was stored: {tokens}");
}

#[test]
fn audit_lists_who_did_what_newest_first() {
    let gw = Gateway::start();
    let (account_id, key_id, _) = gw.account_and_key("Acme", "read");
    gw.cli(&["keys", "revoke", &key_id, "--yes"]).ok("keys revoke");
    let _ = mint(&gw, "temp", "admin");
    let tokens = gw.cli(&["admin-token", "list", "--json"]).ok("list").json();
    let token_id = tokens["items"][0]["id"].as_str().expect("token id").to_owned();
    gw.cli(&["admin-token", "delete", &token_id]).ok("admin-token delete");

    let doc = gw.cli(&["audit", "--json"]).ok("audit --json").json();
    let actions: Vec<&str> =
        doc["items"].as_array().expect("items").iter().filter_map(|e| e["action"].as_str()).collect();
    for action in ["account.create", "key.create", "key.revoke", "admin_token.create", "admin_token.delete"] {
        assert!(actions.contains(&action), "no {action} in {actions:?}");
    }
    assert_eq!(actions.first(), Some(&"admin_token.delete"), "newest first");

    let table = gw.cli(&["audit", "--key", &key_id, "--action", "key.revoke"]).ok("audit filtered");
    let lines: Vec<&str> = table.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "header and one event:\n{}", table.stdout);
    for column in ["AT", "ACTOR", "ACTION", "TARGET", "ACCOUNT", "CHANGES"] {
        assert!(lines[0].contains(column), "missing {column} in {:?}", lines[0]);
    }
    for cell in ["KEYGATE_ADMIN_TOKEN", "key.revoke", key_id.as_str(), account_id.as_str(), "status"] {
        assert!(lines[1].contains(cell), "missing {cell} in {:?}", lines[1]);
    }

    let paged = gw.cli(&["audit", "--limit", "1"]).ok("audit --limit 1");
    assert_eq!(paged.stdout.lines().count(), 2, "{}", paged.stdout);
    assert!(paged.stderr.contains("next cursor"), "{}", paged.stderr);
    let all = gw.cli(&["audit", "--limit", "1", "--all", "--json"]).ok("audit --all").json();
    assert_eq!(all["items"].as_array().map(Vec::len), Some(actions.len()));

    let future = gw.cli(&["audit", "--since", "2999-01-01T00:00:00Z", "--json"]).ok("audit --since").json();
    assert_eq!(future["items"], serde_json::json!([]), "{future}");
    let bad = gw.cli(&["audit", "--since", "yesterday"]);
    assert_eq!(bad.code, Some(2), "{}", bad.stderr);
}
