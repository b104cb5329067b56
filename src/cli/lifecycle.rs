//! `keygate keys bulk-revoke | verify | report-leak`: the key operations of
//! an incident or a non-HTTP caller, through `/v1/keys/bulk-revoke`,
//! `/v1/keys/verify` and `/v1/keys/report-leak`.
//!
//! It owns where their input comes from (ids from arguments or a file,
//! secrets from stdin or `--secret`) and how their answers are printed. A
//! secret read here is held as a [`Secret`], whose `Debug` and `Display`
//! show the preview only, and is sent to the admin API, never printed.
//! Whether a secret is valid is for the server to say: this module does not
//! parse or check it.

use std::collections::HashSet;
use std::io::{BufRead, IsTerminal, Read};
use std::path::PathBuf;

use serde_json::{json, Value};

use super::client::CliError;
use super::table;
use super::{out, out_json, ClientArgs};
use crate::keys::Secret;

/// The admin API takes at most this many ids per bulk revocation.
const BATCH: usize = 1_000;
/// No secret is near this long; the cap keeps `keys verify < /dev/urandom` finite.
const MAX_SECRET_LINE: u64 = 64 * 1024;

/// `keys bulk-revoke`: which keys, and the confirmation.
#[derive(clap::Args, Debug)]
pub struct BulkRevokeArgs {
    /// Key ids (key_…)
    #[arg(value_name = "ID")]
    ids: Vec<String>,
    /// Also read ids from FILE, one per line (`-` reads stdin); blank lines and `#` comments are skipped
    #[arg(long, value_name = "FILE")]
    from_file: Option<PathBuf>,
    /// Confirm: revocation cannot be undone
    #[arg(long)]
    yes: bool,
}

/// Where a secret comes from: stdin by default, so it stays out of shell history.
#[derive(clap::Args, Debug)]
pub struct SecretSource {
    /// The secret itself (it lands in shell history and `ps`; prefer stdin)
    #[arg(long, value_name = "SECRET", value_parser = secret_arg)]
    secret: Option<Secret>,
    /// Read the secret from the first line of stdin (the default)
    #[arg(long, conflicts_with = "secret")]
    secret_stdin: bool,
}

/// `keys verify`: the secret and the request to judge it for.
#[derive(clap::Args, Debug)]
pub struct VerifyArgs {
    /// Judge the key for this HTTP method (default GET)
    #[arg(long, value_name = "METHOD")]
    method: Option<String>,
    /// Judge the key for this path, for route restrictions (e.g. /v1/reports)
    #[arg(long, value_name = "PATH")]
    path: Option<String>,
    #[command(flatten)]
    secret: SecretSource,
}

fn secret_arg(text: &str) -> Result<Secret, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("the secret is empty".into());
    }
    Ok(Secret::new(text.to_owned()))
}

/// Revokes every id given, in batches of [`BATCH`] (each batch is one
/// transaction). Revoked ids go to stdout, unknown ones to stderr; both
/// leave the exit code at 0, because the call itself succeeded.
pub async fn bulk_revoke(args: &ClientArgs, cmd: BulkRevokeArgs) -> Result<(), CliError> {
    if !cmd.yes {
        return Err(CliError::Usage(
            "revoking keys is irreversible: their secrets stop working for good; pass --yes to confirm".into(),
        ));
    }
    let mut ids = cmd.ids;
    if let Some(path) = &cmd.from_file {
        ids.extend(id_lines(&read_file(path)?));
    }
    let ids = unique(ids);
    if ids.is_empty() {
        return Err(CliError::Usage("no key ids: pass them as arguments or with --from-file".into()));
    }
    let client = args.client()?;
    let (mut revoked, mut not_found) = (Vec::new(), Vec::new());
    for batch in ids.chunks(BATCH) {
        let answer = match client.post("/v1/keys/bulk-revoke", &json!({ "ids": batch })).await {
            Ok(answer) => answer,
            Err(e) => {
                // Earlier batches are committed: say which, or the operator cannot tell.
                if !revoked.is_empty() || !not_found.is_empty() {
                    eprintln!("before the error:");
                    print_bulk(args.json, &revoked, &not_found);
                }
                return Err(e);
            }
        };
        revoked.extend(id_list(&answer, "revoked")?);
        not_found.extend(id_list(&answer, "not_found")?);
    }
    print_bulk(args.json, &revoked, &not_found);
    Ok(())
}

/// `keys verify`: prints the verdict; exit 0 when the secret would be let
/// through, 1 (with the refusal code) when it would not.
pub async fn verify(args: &ClientArgs, cmd: VerifyArgs) -> Result<(), CliError> {
    let client = args.client()?;
    let secret = cmd.secret.read()?;
    let mut body = json!({ "secret": secret.expose() });
    if let Some(method) = cmd.method {
        body["method"] = Value::String(method);
    }
    if let Some(path) = cmd.path {
        body["path"] = Value::String(path);
    }
    let answer = client.post("/v1/keys/verify", &body).await?;
    let Some(valid) = answer.get("valid").and_then(Value::as_bool) else {
        return Err(CliError::Server("POST /v1/keys/verify: the answer has no \"valid\"".into()));
    };
    if args.json {
        out_json(&answer);
    } else {
        out(&verdict_fields(&answer));
    }
    if valid {
        Ok(())
    } else {
        Err(CliError::NotValid(format!("the secret would be refused: {}", table::cell(answer.get("code")))))
    }
}

/// `keys report-leak`: the API answers 202 whatever it found, so that the
/// answer tells nobody which secrets exist; the message says as much.
pub async fn report_leak(args: &ClientArgs, source: SecretSource) -> Result<(), CliError> {
    let client = args.client()?;
    let secret = source.read()?;
    let answer = client.post("/v1/keys/report-leak", &json!({ "secret": secret.expose() })).await?;
    if args.json {
        out_json(&answer);
    } else {
        out("leak reported: if this secret belongs to a key, it stopped working now (the API does not say whether it did)\n");
    }
    Ok(())
}

impl SecretSource {
    /// The `--secret` value, or the first line of stdin.
    fn read(self) -> Result<Secret, CliError> {
        if let Some(secret) = self.secret {
            return Ok(secret);
        }
        let stdin = std::io::stdin();
        if stdin.is_terminal() {
            eprintln!("paste the secret, then press Enter:");
        }
        read_secret_line(&mut stdin.lock())
    }
}

/// The first line of `input`, trimmed; an empty one is a usage error.
fn read_secret_line(input: &mut impl BufRead) -> Result<Secret, CliError> {
    let mut line = String::new();
    input
        .take(MAX_SECRET_LINE)
        .read_line(&mut line)
        .map_err(|e| CliError::Usage(format!("cannot read the secret from stdin: {e}")))?;
    let secret = line.trim();
    if secret.is_empty() {
        return Err(CliError::Usage("no secret on stdin: pipe it in (… < secret.txt) or pass --secret".into()));
    }
    Ok(Secret::new(secret.to_owned()))
}

fn read_file(path: &PathBuf) -> Result<String, CliError> {
    let read = if path.as_os_str() == "-" {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text).map(|_| text)
    } else {
        std::fs::read_to_string(path)
    };
    read.map_err(|e| CliError::Usage(format!("--from-file {}: {e}", path.display())))
}

/// The ids in a file: one per line, blank lines and `#` comments skipped.
fn id_lines(text: &str) -> Vec<String> {
    text.lines().map(str::trim).filter(|line| !line.is_empty() && !line.starts_with('#')).map(str::to_owned).collect()
}

/// Drops repeated ids, keeping the first of each, so batches stay small
/// and the output lists each id once.
fn unique(ids: Vec<String>) -> Vec<String> {
    let mut seen = HashSet::new();
    ids.into_iter().filter(|id| seen.insert(id.clone())).collect()
}

fn id_list(answer: &Value, field: &str) -> Result<Vec<String>, CliError> {
    let Some(items) = answer.get(field).and_then(Value::as_array) else {
        return Err(CliError::Server(format!("POST /v1/keys/bulk-revoke: the answer has no \"{field}\" list")));
    };
    Ok(items.iter().map(|v| table::cell(Some(v))).collect())
}

/// Revoked ids on stdout (`revoked key_…`, one a line), unknown ones and a
/// count on stderr; `--json` prints the API's `{revoked, not_found}` instead.
fn print_bulk(json: bool, revoked: &[String], not_found: &[String]) {
    if json {
        out_json(&json!({ "revoked": revoked, "not_found": not_found }));
    } else {
        out(&revoked.iter().map(|id| format!("revoked {id}\n")).collect::<String>());
    }
    for id in not_found {
        eprintln!("not found: {id}");
    }
    if !json {
        eprintln!(
            "{} revoked, {} not found (unknown ids, or keys outside this token's account)",
            revoked.len(),
            not_found.len()
        );
    }
}

/// The verify answer as `name: value` lines, the code first for `head -1`.
fn verdict_fields(answer: &Value) -> String {
    let pairs: Vec<(&str, String)> = ["code", "valid", "key_id", "account_id", "permission"]
        .iter()
        .map(|f| (*f, table::cell(answer.get(f))))
        .collect();
    table::fields(&pairs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_files_skip_blanks_and_comments() {
        let text = "# leaked on 2024-05-01\nkey_1\n\n  key_2  \r\n# key_3\nkey_1\n";
        assert_eq!(id_lines(text), ["key_1", "key_2", "key_1"]);
        assert_eq!(unique(id_lines(text)), ["key_1", "key_2"]);
        assert!(id_lines("\n# nothing\n").is_empty());
    }

    #[test]
    fn the_secret_is_the_first_line_trimmed() {
        let mut input = "kg_live_abc\r\nsecond line\n".as_bytes();
        let secret = read_secret_line(&mut input).expect("secret");
        assert_eq!(secret.expose(), "kg_live_abc");
        for empty in ["", "\n", "   \nkg_live_abc\n"] {
            let err = read_secret_line(&mut empty.as_bytes()).expect_err(empty);
            assert_eq!(err.exit_code(), 2, "{empty:?}");
            assert!(err.to_string().contains("--secret"), "{err}");
        }
    }

    #[test]
    fn a_secret_argument_never_shows_in_debug_output() {
        let source = SecretSource { secret: secret_arg(" kg_live_AbC1dEf2gHi3jKl4mNo5 ").ok(), secret_stdin: false };
        let shown = format!("{source:?}");
        assert!(!shown.contains("kg_live_AbC1dEf2gHi3jKl4mNo5"), "{shown}");
        assert!(secret_arg("  ").is_err());
    }

    #[test]
    fn verdict_puts_the_code_first_and_null_ids_as_dashes() {
        let refused = json!({"valid": false, "code": "invalid_key", "key_id": null,
            "account_id": null, "permission": null});
        assert_eq!(
            verdict_fields(&refused),
            "code: invalid_key\nvalid: false\nkey_id: -\naccount_id: -\npermission: -\n"
        );
    }

    #[test]
    fn bulk_answers_must_carry_both_lists() {
        let answer = json!({"revoked": ["key_1"], "not_found": []});
        assert_eq!(id_list(&answer, "revoked").expect("list"), ["key_1"]);
        let err = id_list(&json!({}), "not_found").expect_err("missing");
        assert_eq!(err.exit_code(), 4);
    }
}
