//! `keygate audit`: who did what to which key, account or admin token, and
//! when, read from `GET /v1/audit` (newest first).
//!
//! It owns the audit filters and the table (AT, ACTOR, ACTION, TARGET,
//! ACCOUNT, CHANGES). The table names the fields a change touched, not their
//! values, so that it stays one line per event; `--json` has everything.
//! Which entries a token may see (a token confined to an account sees that
//! account only) is the server's decision.

use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::client::CliError;
use super::table::{self, Table};
use super::{fetch_list, print_list, ClientArgs, Paging};

/// `keygate audit`'s filters and paging.
#[derive(clap::Args, Debug)]
pub struct AuditArgs {
    /// Only events of this account
    #[arg(long, value_name = "ACCOUNT_ID")]
    account: Option<String>,
    /// Only events about this key (any target id works: account, admin token)
    #[arg(long, value_name = "KEY_ID")]
    key: Option<String>,
    /// Only events by this admin token (its id, tok_…; `env` for KEYGATE_ADMIN_TOKEN)
    #[arg(long, value_name = "ACTOR_ID")]
    actor: Option<String>,
    /// Only this action, e.g. key.revoke, key.rotate, admin_token.delete
    #[arg(long)]
    action: Option<String>,
    /// Only events at or after this time, RFC 3339 (2024-05-01T00:00:00Z)
    #[arg(long, value_name = "RFC3339", value_parser = parse_instant)]
    since: Option<String>,
    /// Only events before this time, RFC 3339
    #[arg(long, value_name = "RFC3339", value_parser = parse_instant)]
    until: Option<String>,
    #[command(flatten)]
    paging: Paging,
}

/// Runs `keygate audit`.
pub async fn run(args: &ClientArgs, cmd: AuditArgs) -> Result<(), CliError> {
    let client = args.client()?;
    let filters = [
        ("account_id", cmd.account),
        ("key_id", cmd.key),
        ("actor_id", cmd.actor),
        ("action", cmd.action),
        ("since", cmd.since),
        ("until", cmd.until),
    ];
    let (items, next) = fetch_list(&client, "/v1/audit", &filters, cmd.paging).await?;
    let table = audit_table(&items);
    print_list(args.json, items, next, table);
    Ok(())
}

/// Checks an RFC 3339 time and passes it on as written: the server reads
/// any offset, and its sub-second part still counts for `--until`.
fn parse_instant(text: &str) -> Result<String, String> {
    let text = text.trim();
    OffsetDateTime::parse(text, &Rfc3339)
        .map(|_| text.to_owned())
        .map_err(|e| format!("{text:?} is not an RFC 3339 time like 2024-05-01T00:00:00Z: {e}"))
}

fn audit_table(items: &[Value]) -> Table {
    let mut t = Table::new(&["AT", "ACTOR", "ACTION", "TARGET", "ACCOUNT", "CHANGES"]);
    for entry in items {
        t.push(vec![
            table::second_time(entry.get("at")),
            actor(entry),
            table::cell(entry.get("action")),
            table::cell(entry.get("target_id")),
            table::cell(entry.get("account_id")),
            changed_fields(entry.get("changes")),
        ]);
    }
    t
}

/// The actor's name (`ci`, `KEYGATE_ADMIN_TOKEN`), or its id when it has none.
fn actor(entry: &Value) -> String {
    match entry.get("actor_name").and_then(Value::as_str) {
        Some(name) if !name.is_empty() => name.to_owned(),
        _ => table::cell(entry.get("actor_id")),
    }
}

/// `name,permission,status`: the fields an event changed, without values
/// (which may be long, like metadata); `-` when it changed none.
fn changed_fields(changes: Option<&Value>) -> String {
    match changes {
        Some(Value::Object(fields)) if !fields.is_empty() => {
            // Sorted whatever serde_json's map keeps, so rows compare across events.
            let mut names: Vec<&str> = fields.keys().map(String::as_str).collect();
            names.sort_unstable();
            names.join(",")
        }
        Some(Value::Object(_)) | Some(Value::Null) | None => "-".to_owned(),
        Some(other) => table::cell(Some(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn audit_table_names_changed_fields_and_seconds() {
        let items = [
            json!({"id": "aud_2", "at": "2024-05-01T12:00:05.250Z", "actor_id": "tok_1",
                "actor_name": "ci", "action": "key.revoke", "target_id": "key_1",
                "account_id": "acc_1", "request_id": "req_1", "source_ip": "127.0.0.1",
                "changes": {"status": {"to": "revoked"}}}),
            json!({"id": "aud_1", "at": "2024-05-01T12:00:00Z", "actor_id": "env",
                "actor_name": "", "action": "admin_token.delete", "target_id": "tok_9",
                "account_id": null, "request_id": null, "source_ip": null, "changes": {}}),
        ];
        let expected = "\
AT                    ACTOR  ACTION              TARGET  ACCOUNT  CHANGES
2024-05-01 12:00:05Z  ci     key.revoke          key_1   acc_1    status
2024-05-01 12:00:00Z  env    admin_token.delete  tok_9   -        -
";
        assert_eq!(audit_table(&items).render(), expected);
    }

    #[test]
    fn changes_are_summarised_as_field_names() {
        let create = json!({"name": "ci", "permission": "read", "expires_at": null});
        assert_eq!(changed_fields(Some(&create)), "expires_at,name,permission");
        assert_eq!(changed_fields(Some(&Value::Null)), "-");
        assert_eq!(changed_fields(None), "-");
        assert_eq!(changed_fields(Some(&json!("odd"))), "odd");
    }

    #[test]
    fn times_must_be_rfc3339_and_pass_through_unchanged() {
        assert_eq!(parse_instant(" 2024-05-01T14:00:00.5+02:00 ").as_deref(), Ok("2024-05-01T14:00:00.5+02:00"));
        for bad in ["2024-05-01", "yesterday", "24h"] {
            assert!(parse_instant(bad).is_err(), "{bad}");
        }
    }
}
