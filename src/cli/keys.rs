//! `keygate keys …`: create, list, show, update, rotate, revoke, disable and
//! enable API keys through the admin API (`/v1/keys`); `bulk-revoke`,
//! `verify` and `report-leak` are dispatched to `lifecycle`, `import` to
//! `import`.
//!
//! It owns the key subcommands' arguments, the request bodies built from
//! them and how key records are printed. Secrets appear only in the answer to
//! `create` and `rotate`, printed once; they are never logged or kept.

use clap::Subcommand;
use serde_json::{json, Map, Value};

use super::client::{encode_query_value, CliError};
use super::import::{self, ImportArgs};
use super::lifecycle::{self, BulkRevokeArgs, SecretSource, VerifyArgs};
use super::parse::{name, time_in, Changes, Environment, Limits, Permission, Status};
use super::table::{self, Table};
use super::{fetch_list, out, out_json, print_list, try_out, ClientArgs, Paging};

#[derive(Subcommand, Debug)]
pub enum KeysCommand {
    /// Create a key; prints its secret once
    Create {
        /// Account the key belongs to (acc_…)
        #[arg(long, value_name = "ACCOUNT_ID")]
        account: String,
        /// Name of the key
        #[arg(long)]
        name: String,
        /// read (GET, HEAD, OPTIONS) or write (every method)
        #[arg(long, value_enum)]
        permission: Permission,
        /// Free text, e.g. "Production access"
        #[arg(long)]
        description: Option<String>,
        /// Key environment, shown in the key's prefix
        #[arg(long, value_enum)]
        environment: Option<Environment>,
        #[command(flatten)]
        limits: Limits,
    },
    /// List keys, newest first
    List {
        /// Only keys of this account
        #[arg(long, value_name = "ACCOUNT_ID")]
        account: Option<String>,
        /// Search in name, description and prefix
        #[arg(long)]
        q: Option<String>,
        /// Only keys with this permission
        #[arg(long, value_enum)]
        permission: Option<Permission>,
        /// Only keys in this status
        #[arg(long, value_enum)]
        status: Option<Status>,
        #[command(flatten)]
        paging: Paging,
    },
    /// Show one key
    Show {
        /// Key id (key_…)
        id: String,
    },
    /// Change a key's name, description, permission, expiry, limits or restrictions
    Update {
        /// Key id (key_…)
        id: String,
        #[command(flatten)]
        changes: Changes,
    },
    /// Give a key a new secret; prints it once
    Rotate {
        /// Key id (key_…)
        id: String,
        /// Let the old secret keep working this long, so integrations can switch
        #[arg(long, value_name = "SECONDS")]
        grace_period_seconds: Option<u64>,
    },
    /// Revoke a key for good (irreversible)
    Revoke {
        /// Key id (key_…)
        id: String,
        /// Confirm: revocation cannot be undone
        #[arg(long)]
        yes: bool,
    },
    /// Revoke many keys at once (irreversible); unknown ids are listed on stderr
    BulkRevoke(BulkRevokeArgs),
    /// Say whether a secret would be let through (exit 0) or refused (exit 1, with the code)
    Verify(VerifyArgs),
    /// Report a leaked secret: its key is revoked at once
    ReportLeak(SecretSource),
    /// Change what remains of a key's quota in its current period
    Quota {
        /// Key id (key_…)
        id: String,
        #[command(subcommand)]
        operation: QuotaCommand,
    },
    /// Import keys made elsewhere from a CSV file (plaintext secrets or sha256 hashes)
    Import(ImportArgs),
    /// Switch a key off (it can be enabled again)
    Disable {
        /// Key id (key_…)
        id: String,
    },
    /// Switch a disabled key back on
    Enable {
        /// Key id (key_…)
        id: String,
    },
}

/// `keygate keys quota <id> …`.
#[derive(Subcommand, Debug)]
pub enum QuotaCommand {
    /// What remains becomes N
    Set { amount: u64 },
    /// What remains grows by N
    Increment { amount: u64 },
    /// What remains shrinks by N (never below 0)
    Decrement { amount: u64 },
    /// Start the period afresh: nothing used, the whole limit left
    Reset,
}

impl QuotaCommand {
    fn body(&self) -> Value {
        match self {
            QuotaCommand::Set { amount } => json!({ "operation": "set", "amount": amount }),
            QuotaCommand::Increment { amount } => json!({ "operation": "increment", "amount": amount }),
            QuotaCommand::Decrement { amount } => json!({ "operation": "decrement", "amount": amount }),
            QuotaCommand::Reset => json!({ "operation": "reset" }),
        }
    }
}

pub async fn run(args: &ClientArgs, cmd: KeysCommand) -> Result<(), CliError> {
    // The client is made per arm, after the arm's own argument checks, so that
    // a usage mistake is reported before a missing token.
    let client = || args.client();
    let json = args.json;
    match cmd {
        KeysCommand::Create { account, name: key_name, permission, description, environment, limits } => {
            let mut body = Map::new();
            body.insert("account_id".into(), Value::String(account));
            body.insert("name".into(), Value::String(key_name));
            body.insert("permission".into(), Value::String(name(permission)));
            if let Some(d) = description {
                body.insert("description".into(), Value::String(d));
            }
            if let Some(env) = environment {
                body.insert("environment".into(), Value::String(name(env)));
            }
            limits.fill(&mut body)?;
            let answer = client()?.post("/v1/keys", &Value::Object(body)).await?;
            print_secret(json, &answer, "created", None)
        }
        KeysCommand::List { account, q, permission, status, paging } => {
            let filters =
                [("account_id", account), ("q", q), ("permission", permission.map(name)), ("status", status.map(name))];
            let (items, next) = fetch_list(&client()?, "/v1/keys", &filters, paging).await?;
            let table = keys_table(&items);
            print_list(json, items, next, table);
            Ok(())
        }
        KeysCommand::Show { id } => {
            let key = client()?.get(&key_path(&id, "")).await?;
            print_record(json, &key);
            Ok(())
        }
        KeysCommand::Update { id, changes } => {
            let body = changes.into_body()?;
            if body.is_empty() {
                return Err(CliError::Usage(format!(
                    "nothing to update for {id}: pass at least one option (see --help)"
                )));
            }
            let key = client()?.patch(&key_path(&id, ""), &Value::Object(body)).await?;
            print_record(json, &key);
            Ok(())
        }
        KeysCommand::Rotate { id, grace_period_seconds } => {
            let body = match grace_period_seconds {
                Some(s) => json!({ "grace_period_seconds": s }),
                None => json!({}),
            };
            let answer = client()?.post(&key_path(&id, "/rotate"), &body).await?;
            let note = match grace_period_seconds.filter(|s| *s > 0) {
                Some(s) => format!("the old secret keeps working for {s}s (until {}), then stops", time_in(s)?),
                None => "the old secret stopped working now".to_owned(),
            };
            print_secret(json, &answer, "rotated", Some(&note))
        }
        KeysCommand::Revoke { id, yes } => {
            if !yes {
                return Err(CliError::Usage(format!(
                    "revoking {id} is irreversible: its secret stops working for good; pass --yes to confirm"
                )));
            }
            let key = client()?.post(&key_path(&id, "/revoke"), &json!({})).await?;
            print_change(json, &key, &id);
            Ok(())
        }
        KeysCommand::BulkRevoke(cmd) => lifecycle::bulk_revoke(args, cmd).await,
        KeysCommand::Verify(cmd) => lifecycle::verify(args, cmd).await,
        KeysCommand::ReportLeak(source) => lifecycle::report_leak(args, source).await,
        KeysCommand::Quota { id, operation } => {
            let key = client()?.post(&key_path(&id, "/quota"), &operation.body()).await?;
            if json {
                out_json(&key);
            } else {
                out(&format!("key {id}: {}\n", table::quota_usage(key.get("quota_usage"))));
            }
            Ok(())
        }
        KeysCommand::Import(cmd) => import::import(args, cmd).await,
        KeysCommand::Disable { id } => set_enabled(&client()?, json, &id, false).await,
        KeysCommand::Enable { id } => set_enabled(&client()?, json, &id, true).await,
    }
}

fn keys_table(items: &[Value]) -> Table {
    let mut t =
        Table::new(&["ID", "NAME", "KEY", "PERMISSION", "STATUS", "USAGE", "QUOTA", "LAST USED", "EXPIRES", "CREATED"]);
    for key in items {
        t.push(vec![
            table::cell(key.get("id")),
            table::cell(key.get("name")),
            table::cell(key.get("preview")),
            table::cell(key.get("permission")),
            table::cell(key.get("status")),
            table::cell(key.get("usage_count")),
            table::quota_column(key.get("quota_usage")),
            table::short_time(key.get("last_used_at")),
            table::short_time(key.get("expires_at")),
            table::short_time(key.get("created_at")),
        ]);
    }
    t
}

async fn set_enabled(client: &super::AdminClient, json: bool, id: &str, enabled: bool) -> Result<(), CliError> {
    let key = client.patch(&key_path(id, ""), &json!({ "enabled": enabled })).await?;
    print_change(json, &key, id);
    Ok(())
}

/// `/v1/keys/{id}{suffix}`, with the id encoded so that a pasted id with a
/// slash or space cannot address another route.
fn key_path(id: &str, suffix: &str) -> String {
    format!("/v1/keys/{}{suffix}", encode_query_value(id))
}

/// Prints a `{key, secret}` answer: the secret alone on stdout, what it
/// belongs to, `note` and the show-once warning on stderr.
fn print_secret(json: bool, answer: &Value, verb: &str, note: Option<&str>) -> Result<(), CliError> {
    let Some(secret) = answer.get("secret").and_then(Value::as_str) else {
        return Err(CliError::Server("the answer has no \"secret\"".into()));
    };
    // A secret that fails to reach stdout is gone for good; say so loudly.
    let write = |text: String| {
        try_out(&text).map_err(|e| {
            CliError::Server(format!(
                "the new secret could not be written to stdout ({e}); rotate the key to get another"
            ))
        })
    };
    let warning = "warning: this secret is shown only once and cannot be shown again; store it now";
    if json {
        // stderr does not disturb the JSON on stdout, and the warning still holds.
        eprintln!("{warning}");
        let text = serde_json::to_string_pretty(answer).unwrap_or_else(|_| answer.to_string());
        return write(format!("{text}\n"));
    }
    let key = answer.get("key");
    let field = |f: &str| table::cell(key.and_then(|k| k.get(f)));
    eprintln!(
        "{verb} key {} ({}, {}, account {})",
        field("id"),
        field("name"),
        field("permission"),
        field("account_id")
    );
    if let Some(note) = note {
        eprintln!("{note}");
    }
    eprintln!("{warning}");
    write(format!("{secret}\n"))
}

/// One line saying where a key stands after revoke/enable/disable.
fn print_change(json: bool, key: &Value, id: &str) {
    if json {
        out_json(key);
    } else {
        out(&format!("key {id} is now {}\n", table::cell(key.get("status"))));
    }
}

/// A key record as `name: value` lines, every field in the API's order.
fn print_record(json: bool, key: &Value) {
    if json {
        out_json(key);
        return;
    }
    out(&table::key_fields(key));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_cannot_escape_their_path() {
        assert_eq!(key_path("key_1", "/rotate"), "/v1/keys/key_1/rotate");
        assert_eq!(key_path("../accounts", ""), "/v1/keys/..%2Faccounts");
    }

    #[test]
    fn list_table_shows_preview_and_never_for_unused_keys() {
        let key = json!({
            "id": "key_1", "name": "ci", "preview": "kg_live_AbC1…9xYz", "permission": "read",
            "status": "active", "usage_count": 0, "last_used_at": null, "expires_at": null,
            "created_at": "2024-05-01T12:00:00Z"
        });
        let text = keys_table(&[key]).render();
        let row = text.lines().nth(1).unwrap_or_default();
        let cells: Vec<&str> = row.split("  ").filter(|c| !c.trim().is_empty()).map(str::trim).collect();
        assert_eq!(
            cells,
            ["key_1", "ci", "kg_live_AbC1…9xYz", "read", "active", "0", "-", "never", "never", "2024-05-01 12:00Z"]
        );
        let metered = json!({ "id": "key_2", "quota_usage": { "used": 1200, "remaining": 8800, "resets_at": null } });
        assert!(keys_table(&[metered]).render().contains(" 1200/10000 "));
    }

    #[test]
    fn quota_operations_make_the_routes_body() {
        assert_eq!(QuotaCommand::Set { amount: 5 }.body(), json!({ "operation": "set", "amount": 5 }));
        assert_eq!(QuotaCommand::Decrement { amount: 2 }.body()["operation"], "decrement");
        assert_eq!(QuotaCommand::Reset.body(), json!({ "operation": "reset" }));
    }
}
