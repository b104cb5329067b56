//! End to end: the real `keygate` binary serving a SQLite store, driven by the
//! real `keygate keys …` / `keygate accounts …` client subcommands.
//!
//! Covers the key lifecycle as an operator runs it from a shell (create, list,
//! rotate, revoke, show) and the exit codes scripts rely on. Each test that
//! needs a gateway starts its own on port 0 and reads the addresses from its log.
//! `cli/lifecycle.rs` holds bulk-revoke, verify and report-leak; `cli/tokens.rs`
//! admin tokens (offline create, roles, list, delete) and the audit trail.

#[path = "cli/generated.rs"]
mod generated;
mod kit;

#[path = "cli/lifecycle.rs"]
mod lifecycle;
#[path = "cli/tokens.rs"]
mod tokens;

use kit::process::{self, Process, Run};
use kit::TOKEN;

/// A running `keygate serve` on a SQLite store, killed when dropped so a
/// failing assertion does not leave it behind.
struct Gateway {
    _process: Process,
    admin_url: String,
    /// The configuration file `serve` runs with, for offline `admin-token create`.
    config: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Gateway {
    fn start() -> Gateway {
        let dir = tempfile::tempdir().expect("tempdir");
        let yaml = process::yaml(dir.path(), "http://127.0.0.1:1");
        let process = process::spawn(dir.path(), &yaml, &[("KEYGATE_ADMIN_TOKEN", TOKEN)]);
        let admin_url = format!("http://{}", process.admin);
        let config = process.config.clone();
        Gateway { _process: process, admin_url, config, _dir: dir }
    }

    /// Runs the CLI against this gateway with the right token.
    fn cli(&self, args: &[&str]) -> Run {
        run(args, Some(TOKEN), &self.admin_url)
    }

    /// Like [`Gateway::cli`], with `input` on the CLI's stdin.
    fn cli_input(&self, args: &[&str], input: &str) -> Run {
        run_input(args, Some(TOKEN), &self.admin_url, Some(input))
    }

    /// Creates an account and a key in it; returns the account id, key id and secret.
    fn account_and_key(&self, name: &str, permission: &str) -> (String, String, String) {
        let account = self.cli(&["accounts", "create", name, "--json"]).ok("accounts create").json();
        let account_id = account["id"].as_str().expect("account id").to_owned();
        let (key_id, secret) = self.key(&account_id, name, permission);
        (account_id, key_id, secret)
    }

    /// Creates a key; returns its id and secret.
    fn key(&self, account_id: &str, name: &str, permission: &str) -> (String, String) {
        let created = self
            .cli(&["keys", "create", "--account", account_id, "--name", name, "--permission", permission, "--json"])
            .ok("keys create --json")
            .json();
        let id = created["key"]["id"].as_str().expect("key id").to_owned();
        let secret = created["secret"].as_str().expect("secret").to_owned();
        (id, secret)
    }
}

fn run(args: &[&str], token: Option<&str>, admin_url: &str) -> Run {
    run_input(args, token, admin_url, None)
}

/// Runs the CLI with `input` on stdin (none: stdin is empty).
fn run_input(args: &[&str], token: Option<&str>, admin_url: &str, input: Option<&str>) -> Run {
    // After the subcommand: `keys`/`accounts` carry the client options.
    let mut full = args.to_vec();
    full.extend(["--admin-url", admin_url]);
    let env: Vec<(&str, &str)> = token.map(|t| ("KEYGATE_ADMIN_TOKEN", t)).into_iter().collect();
    process::run(&full, &env, input)
}

#[test]
fn key_lifecycle_create_list_rotate_revoke_show() {
    let gw = Gateway::start();

    let account = gw.cli(&["accounts", "create", "Acme", "--json"]).ok("accounts create").json();
    let account_id = account["id"].as_str().expect("account id").to_owned();
    assert!(account_id.starts_with("acc_"), "{account}");
    assert_eq!(account["api_access"], true);

    let created = gw
        .cli(&[
            "keys",
            "create",
            "--account",
            &account_id,
            "--name",
            "ci",
            "--permission",
            "read",
            "--expires-in",
            "30d",
        ])
        .ok("keys create");
    let secret = created.stdout.trim().to_owned();
    assert!(secret.starts_with("kg_"), "stdout should be the secret alone: {:?}", created.stdout);
    assert!(created.stderr.contains("cannot be shown again"), "{}", created.stderr);

    let listed = gw.cli(&["keys", "list", "--account", &account_id, "--json"]).ok("keys list --json").json();
    let items = listed["items"].as_array().expect("items");
    assert_eq!(items.len(), 1, "{listed}");
    let key = &items[0];
    let key_id = key["id"].as_str().expect("key id").to_owned();
    assert_eq!(key["name"], "ci");
    assert_eq!(key["status"], "active");
    assert!(!listed.to_string().contains(&secret), "a list must never carry the secret");

    let table = gw.cli(&["keys", "list", "--account", &account_id]).ok("keys list");
    let header = table.stdout.lines().next().unwrap_or_default();
    for column in ["ID", "NAME", "KEY", "PERMISSION", "STATUS", "USAGE", "LAST USED", "EXPIRES", "CREATED"] {
        assert!(header.contains(column), "missing {column} in {header:?}");
    }
    let row = table.stdout.lines().find(|l| l.starts_with(&key_id)).expect("row of the key");
    assert!(row.contains(key["preview"].as_str().expect("preview")), "{row}");
    assert!(row.contains("never"), "an unused key's LAST USED reads never: {row}");

    let rotated = gw.cli(&["keys", "rotate", &key_id, "--grace-period-seconds", "60"]).ok("keys rotate");
    let new_secret = rotated.stdout.trim();
    assert!(new_secret.starts_with("kg_") && new_secret != secret, "{:?}", rotated.stdout);
    assert!(rotated.stderr.contains("60s"), "grace period is reported: {}", rotated.stderr);

    let refused = gw.cli(&["keys", "revoke", &key_id]);
    assert_eq!(refused.code, Some(2), "revoke without --yes: {}", refused.stderr);
    assert!(refused.stderr.contains("--yes"), "{}", refused.stderr);

    gw.cli(&["keys", "revoke", &key_id, "--yes"]).ok("keys revoke --yes");
    let shown = gw.cli(&["keys", "show", &key_id]).ok("keys show");
    assert!(shown.stdout.lines().any(|l| l == "status: revoked"), "{}", shown.stdout);
    assert!(shown.stdout.lines().any(|l| l == format!("id: {key_id}")), "{}", shown.stdout);

    let as_json = gw
        .cli(&["keys", "create", "--account", &account_id, "--name", "deploy", "--permission", "write", "--json"])
        .ok("keys create --json")
        .json();
    assert!(as_json["secret"].as_str().is_some_and(|s| s.starts_with("kg_")), "{as_json}");
    assert_eq!(as_json["key"]["permission"], "write");

    let past = gw.cli(&[
        "keys",
        "create",
        "--account",
        &account_id,
        "--name",
        "old",
        "--permission",
        "read",
        "--expires-at",
        "2001-01-01T00:00:00Z",
    ]);
    assert_eq!(past.code, Some(1), "{}", past.stderr);
    assert!(past.stderr.starts_with("error: 422") && past.stderr.contains("expires_at"), "{}", past.stderr);

    let wrong = run(&["keys", "list"], Some("not-the-admin-token-but-as-long-1"), &gw.admin_url);
    assert_eq!(wrong.code, Some(1), "wrong token: {}", wrong.stderr);
    assert!(wrong.stderr.starts_with("error: 4"), "{}", wrong.stderr);

    let missing = gw.cli(&["keys", "show", "key_doesnotexist"]);
    assert_eq!(missing.code, Some(1), "{}", missing.stderr);
    assert!(missing.stderr.starts_with("error: 404"), "{}", missing.stderr);
}

#[test]
fn no_token_is_a_usage_error() {
    let out = run(&["keys", "list"], None, "http://127.0.0.1:9");
    assert_eq!(out.code, Some(2), "{}", out.stderr);
    assert!(out.stderr.contains("no admin token: pass --token or set KEYGATE_ADMIN_TOKEN"), "{}", out.stderr);
}

#[test]
fn unreachable_admin_api_names_the_url() {
    // Port 9 on loopback (discard) has nothing listening on a test machine.
    let out = run(&["accounts", "list"], Some(TOKEN), "http://127.0.0.1:9");
    assert_eq!(out.code, Some(3), "{}", out.stderr);
    assert!(out.stderr.contains("http://127.0.0.1:9"), "{}", out.stderr);
    assert!(!out.stderr.contains(TOKEN), "the token is never printed");
}
