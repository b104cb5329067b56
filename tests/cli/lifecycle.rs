//! `keygate keys bulk-revoke | verify | report-leak` against a real gateway:
//! what an operator runs during an incident, and what a non-HTTP caller runs
//! to check a secret.

use super::{Gateway, Run};

/// The first line of a verify's stdout is `code: …`.
fn code(run: &Run) -> &str {
    run.stdout.lines().next().and_then(|l| l.strip_prefix("code: ")).unwrap_or_default()
}

#[test]
fn bulk_revoke_two_keys_and_report_one_unknown_id() {
    let gw = Gateway::start();
    let (account_id, first, first_secret) = gw.account_and_key("Acme", "read");
    let (second, _) = gw.key(&account_id, "deploy", "write");
    let (kept, kept_secret) = gw.key(&account_id, "kept", "read");

    let unconfirmed = gw.cli(&["keys", "bulk-revoke", &first, &second]);
    assert_eq!(unconfirmed.code, Some(2), "{}", unconfirmed.stderr);
    assert!(unconfirmed.stderr.contains("--yes"), "{}", unconfirmed.stderr);

    // One id as an argument, the rest from stdin with a comment and a repeat.
    let file = format!("# incident 42\n{second}\nkey_doesnotexist\n\n{first}\n");
    let revoked =
        gw.cli_input(&["keys", "bulk-revoke", &first, "--from-file", "-", "--yes"], &file).ok("keys bulk-revoke");
    let mut lines: Vec<&str> = revoked.stdout.lines().collect();
    lines.sort_unstable();
    let mut expected = [format!("revoked {first}"), format!("revoked {second}")];
    expected.sort_unstable();
    assert_eq!(lines, expected, "stdout: {}", revoked.stdout);
    assert!(revoked.stderr.contains("not found: key_doesnotexist"), "{}", revoked.stderr);
    assert!(!revoked.stdout.contains(&kept), "{}", revoked.stdout);

    let verdict = gw.cli_input(&["keys", "verify"], &format!("{first_secret}\n"));
    assert_eq!(verdict.code, Some(1), "{}", verdict.stderr);
    assert_eq!(code(&verdict), "key_revoked", "{}", verdict.stdout);
    assert!(verdict.stderr.contains("key_revoked"), "{}", verdict.stderr);

    let still = gw.cli(&["keys", "verify", "--secret", &kept_secret]).ok("verify of the key left alone");
    assert_eq!(code(&still), "allowed", "{}", still.stdout);

    let as_json = gw.cli(&["keys", "bulk-revoke", "key_nope", "--yes", "--json"]).ok("bulk-revoke --json");
    let doc = as_json.json();
    assert_eq!(doc["revoked"], serde_json::json!([]), "{doc}");
    assert_eq!(doc["not_found"], serde_json::json!(["key_nope"]), "{doc}");
}

#[test]
fn verify_and_report_leak_read_the_secret_from_stdin() {
    let gw = Gateway::start();
    let (account_id, key_id, secret) = gw.account_and_key("Acme", "read");

    let allowed = gw.cli_input(&["keys", "verify"], &format!("{secret}\n")).ok("keys verify");
    assert_eq!(code(&allowed), "allowed", "{}", allowed.stdout);
    assert!(allowed.stdout.contains(&format!("key_id: {key_id}")));
    assert!(allowed.stdout.contains(&format!("account_id: {account_id}")));
    assert!(!allowed.stdout.contains(&secret), "the secret is never printed");

    // A read key may not POST: refused with the proxy's code, ids still shown.
    let post = gw.cli_input(&["keys", "verify", "--method", "POST", "--path", "/v1/reports", "--json"], &secret);
    assert_eq!(post.code, Some(1), "{}", post.stderr);
    let doc = post.json();
    assert_eq!(doc["valid"], false, "{doc}");
    assert_ne!(doc["code"], "allowed", "{doc}");
    assert_eq!(doc["key_id"], key_id.as_str(), "{doc}");

    let unknown = gw.cli(&["keys", "verify", "--secret", "kg_live_notakeyatall0000000000"]);
    assert_eq!(unknown.code, Some(1), "{}", unknown.stderr);
    assert!(unknown.stdout.contains("key_id: -"), "{}", unknown.stdout);

    let empty = gw.cli_input(&["keys", "verify"], "\n");
    assert_eq!(empty.code, Some(2), "{}", empty.stderr);

    let reported = gw.cli_input(&["keys", "report-leak"], &format!("{secret}\n")).ok("keys report-leak");
    assert!(reported.stdout.contains("reported"), "{}", reported.stdout);
    assert!(!reported.stdout.contains(&secret) && !reported.stderr.contains(&secret));

    let after = gw.cli_input(&["keys", "verify"], &secret);
    assert_eq!(after.code, Some(1), "{}", after.stderr);
    assert_eq!(code(&after), "key_revoked", "{}", after.stdout);

    // An unknown secret is accepted too: the answer says nothing about what exists.
    gw.cli(&["keys", "report-leak", "--secret", "kg_live_unknown000000000000000", "--json"])
        .ok("report-leak of an unknown secret");
}
