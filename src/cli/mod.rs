//! The client subcommands of the `keygate` binary (`keys …`, `accounts …`,
//! `plans …`, `webhooks …`,
//! `admin-token list|delete`, `audit`): they talk to a running gateway's
//! admin API over HTTP and print tables, `name: value` lines, or `--json`.
//!
//! This module owns the shared client options, the dispatch, and how results
//! reach stdout and stderr. It must not touch the store or the key set
//! directly: everything goes through the admin API, so the CLI obeys the same
//! roles and audit trail as any other admin client. The admin token is never
//! printed.
//!
//! Exit codes (scripts rely on them):
//!
//! | code | meaning |
//! | --- | --- |
//! | 0 | success; also `keys bulk-revoke` when some ids were not found (they are listed on stderr) |
//! | 1 | the admin API refused the request (HTTP 4xx: bad token, role too low, not found, validation); the problem's status, `code` and detail are printed. Also `keys verify` when the secret would be refused: its code (`key_revoked`, …) is printed |
//! | 2 | usage error: bad arguments, no admin token, `keys revoke`/`bulk-revoke` without `--yes`, `update` with nothing to change, no secret on stdin |
//! | 3 | the admin API could not be reached (connection refused, DNS, TLS, timeout); the message names the URL |
//! | 4 | the admin API failed (HTTP 5xx) or answered something that is not JSON, or a new secret could not be written to stdout |
//!
//! Secrets: `keys create` and `keys rotate` print the new secret alone on
//! stdout (so `SECRET=$(keygate keys create …)` works) and a warning on
//! stderr that it cannot be shown again; `--json` prints the whole
//! `{key, secret}` answer instead. Lists print `next cursor: …` on stderr when
//! more pages are left, so the table on stdout stays clean for `awk`.
//! `keys verify` and `keys report-leak` read the secret from the first line
//! of stdin unless `--secret` is given, so that it stays out of shell history.

mod accounts;
mod audit;
pub mod client;
mod import;
mod keys;
mod lifecycle;
mod parse;
mod plans;
mod table;
mod tokens;
mod webhooks;

use std::fmt;
use std::io::Write;
use std::process::ExitCode;

use serde_json::Value;

pub use accounts::AccountsCommand;
pub use audit::AuditArgs;
pub use client::{AdminClient, CliError, Problem};
pub use keys::KeysCommand;
pub use plans::PlansCommand;
pub use webhooks::WebhooksCommand;

/// Kept apart in `--help` so a command's own options are not lost among them.
const HEADING: &str = "Admin API options";

/// Options shared by every client subcommand.
#[derive(clap::Args, Clone)]
pub struct ClientArgs {
    /// Admin API base URL
    #[arg(
        long,
        env = "KEYGATE_ADMIN_URL",
        default_value = "http://127.0.0.1:9090",
        global = true,
        help_heading = HEADING
    )]
    pub admin_url: String,
    /// Admin token (Bearer). Never printed.
    #[arg(
        long,
        env = "KEYGATE_ADMIN_TOKEN",
        hide_env_values = true,
        global = true,
        help_heading = HEADING
    )]
    pub token: Option<String>,
    /// Print JSON instead of tables
    #[arg(long, global = true, help_heading = HEADING)]
    pub json: bool,
}

/// Hand-written rather than derived so that a debug print of the parsed
/// command line cannot leak the admin token.
impl fmt::Debug for ClientArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientArgs")
            .field("admin_url", &self.admin_url)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("json", &self.json)
            .finish()
    }
}

impl ClientArgs {
    fn client(&self) -> Result<AdminClient, CliError> {
        AdminClient::new(&self.admin_url, self.token.as_deref())
    }
}

/// Runs one `keygate keys …` command and returns the process exit code.
pub async fn run_keys(args: &ClientArgs, cmd: KeysCommand) -> ExitCode {
    finish(keys::run(args, cmd).await)
}

/// Runs one `keygate accounts …` command and returns the process exit code.
pub async fn run_accounts(args: &ClientArgs, cmd: AccountsCommand) -> ExitCode {
    finish(accounts::run(args, cmd).await)
}

/// Runs one `keygate plans …` command and returns the process exit code.
pub async fn run_plans(args: &ClientArgs, cmd: PlansCommand) -> ExitCode {
    finish(plans::run(args, cmd).await)
}

/// Runs one `keygate webhooks …` command and returns the process exit code.
pub async fn run_webhooks(args: &ClientArgs, cmd: WebhooksCommand) -> ExitCode {
    finish(webhooks::run(args, cmd).await)
}

/// Runs `keygate admin-token list` and returns the process exit code.
pub async fn run_admin_token_list(args: &ClientArgs) -> ExitCode {
    finish(tokens::list(args).await)
}

/// Runs `keygate admin-token delete ID` and returns the process exit code.
pub async fn run_admin_token_delete(args: &ClientArgs, id: &str) -> ExitCode {
    finish(tokens::delete(args, id).await)
}

/// Runs `keygate audit` and returns the process exit code.
pub async fn run_audit(args: &ClientArgs, cmd: AuditArgs) -> ExitCode {
    finish(audit::run(args, cmd).await)
}

fn finish(result: Result<(), CliError>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

/// Writes to stdout, ignoring a closed pipe (`keygate keys list | head`)
/// instead of panicking the way `println!` does.
fn out(text: &str) {
    let _ = try_out(text);
}

/// Writes to stdout and says whether it worked, for output that must not be lost.
fn try_out(text: &str) -> std::io::Result<()> {
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(text.as_bytes())?;
    stdout.flush()
}

/// Pretty JSON, one document, for `--json`.
fn out_json(value: &Value) {
    let text = serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string());
    out(&format!("{text}\n"));
}

/// How a list command pages: the same three options on every list.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct Paging {
    /// Items per page
    #[arg(long)]
    limit: Option<u32>,
    /// Start at this page (from a previous `next cursor`)
    #[arg(long)]
    cursor: Option<String>,
    /// Follow every page
    #[arg(long)]
    all: bool,
}

/// Fetches one page of a `{items, next_cursor}` list, or every page when
/// `--all` is given (following `next_cursor` from `--cursor` on). Returns the
/// items and the cursor of the next page, if any is left.
async fn fetch_list(
    client: &AdminClient,
    path: &str,
    filters: &[(&str, Option<String>)],
    paging: Paging,
) -> Result<(Vec<Value>, Option<String>), CliError> {
    let Paging { limit, mut cursor, all } = paging;
    let mut items = Vec::new();
    loop {
        let mut pairs = filters.to_vec();
        pairs.push(("limit", limit.map(|l| l.to_string())));
        pairs.push(("cursor", cursor.clone()));
        let page = client.get(&format!("{path}{}", client::query_string(&pairs))).await?;
        let Some(page_items) = page.get("items").and_then(Value::as_array) else {
            return Err(CliError::Server(format!("GET {path}: the answer has no \"items\" list")));
        };
        items.extend(page_items.iter().cloned());
        let next = page.get("next_cursor").and_then(Value::as_str).map(str::to_owned);
        // A server handing back the same cursor would otherwise loop forever.
        if !all || next.is_none() || next == cursor {
            return Ok((items, next));
        }
        cursor = next;
    }
}

/// Prints a list either as the whole `{items, next_cursor}` document or as a
/// table followed by the cursor of the next page.
fn print_list(json: bool, items: Vec<Value>, next: Option<String>, table: table::Table) {
    if json {
        out_json(&serde_json::json!({ "items": items, "next_cursor": next }));
        return;
    }
    out(&table.render());
    if let Some(next) = next {
        eprintln!("next cursor: {next}  (pass --cursor {next}, or --all)");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Stands in for the lead's top-level parser in `main.rs`.
    #[derive(clap::Parser, Debug)]
    struct TestCli {
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        cmd: TestCommand,
    }

    #[derive(clap::Subcommand, Debug)]
    enum TestCommand {
        #[command(subcommand)]
        Keys(KeysCommand),
        #[command(subcommand)]
        Accounts(AccountsCommand),
        Audit(AuditArgs),
    }

    fn parse(line: &str) -> Result<TestCli, clap::Error> {
        use clap::Parser;
        TestCli::try_parse_from(std::iter::once("keygate").chain(line.split_whitespace()))
    }

    #[test]
    fn command_definitions_are_consistent() {
        use clap::CommandFactory;
        TestCli::command().debug_assert();
    }

    #[test]
    fn global_options_go_anywhere_and_bad_values_are_usage_errors() {
        let cli = parse("keys list --json --admin-url http://h:1 --status revoked").expect("parses");
        assert!(cli.client.json);
        assert_eq!(cli.client.admin_url, "http://h:1");
        let cli = parse(
            "keys create --account acc_1 --name n --permission read --expires-in 30d \
            --rate-limit 100/60s --allowed-ip 10.0.0.0/8 --allowed-ip ::1/128 --allowed-route /r:GET",
        )
        .expect("parses");
        assert!(matches!(cli.cmd, TestCommand::Keys(KeysCommand::Create { .. })));
        for bad in [
            "keys create --account a --name n --permission admin",
            "keys create --account a --name n --permission read --expires-in soon",
            "keys create --account a --name n --permission read --expires-in 1d --expires-at 2030-01-01T00:00:00Z",
            "keys update key_1 --no-expiry --expires-in 1d",
            "keys list --status gone",
            "accounts update acc_1 --api-access maybe",
        ] {
            let err = parse(bad).expect_err(bad);
            assert_eq!(err.exit_code(), 2, "{bad}");
        }
        let cli = parse("accounts update acc_1 --api-access false").expect("parses");
        match cli.cmd {
            TestCommand::Accounts(AccountsCommand::Update { api_access, .. }) => {
                assert_eq!(api_access, Some(false))
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn lifecycle_and_audit_commands_parse_and_refuse_bad_values() {
        for good in [
            "keys bulk-revoke key_1 key_2 --yes",
            "keys bulk-revoke --from-file - --yes --json",
            "keys verify",
            "keys verify --method POST --path /v1/reports --secret-stdin",
            "keys verify --secret kg_live_x",
            "keys report-leak --secret kg_live_x",
            "audit --account acc_1 --key key_1 --actor env --action key.revoke --limit 5 --all",
            "audit --since 2024-05-01T00:00:00Z --until 2024-05-02T00:00:00+02:00 --json",
        ] {
            parse(good).unwrap_or_else(|e| panic!("{good}: {e}"));
        }
        let cli = parse("keys verify --path /r").expect("parses");
        assert!(matches!(cli.cmd, TestCommand::Keys(KeysCommand::Verify(_))));
        for bad in [
            "keys verify --secret kg_live_x --secret-stdin",
            "keys verify --secret",
            "audit --since yesterday",
            "audit --limit many",
        ] {
            let err = parse(bad).expect_err(bad);
            assert_eq!(err.exit_code(), 2, "{bad}");
        }
    }

    #[test]
    fn debug_of_client_args_hides_the_token() {
        let args = ClientArgs { admin_url: "http://a".into(), token: Some("s3cret-token".into()), json: false };
        let shown = format!("{args:?}");
        assert!(!shown.contains("s3cret-token"), "{shown}");
        assert!(shown.contains("redacted"));
    }
}
