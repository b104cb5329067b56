//! `keygate webhooks …`: create, list, delete webhooks and read a
//! webhook's deliveries log through the admin API (`/v1/webhooks`).
//!
//! `create` prints the signing secret alone on stdout (so
//! `SECRET=$(keygate webhooks create …)` works) and the show-once warning
//! on stderr, as `keys create` does.

use clap::Subcommand;
use serde_json::{json, Value};

use super::client::{encode_query_value, CliError};
use super::table::{self, Table};
use super::{fetch_list, out, out_json, print_list, try_out, ClientArgs, Paging};

#[derive(Subcommand, Debug)]
pub enum WebhooksCommand {
    /// Create a webhook; prints its signing secret (shown once)
    Create {
        /// Receiver URL (http:// or https://)
        url: String,
        /// Event to send (repeat, or comma-separate): key.created, key.rotated, key.revoked,
        /// key.leaked, key.expiring, quota.threshold
        #[arg(long = "event", required = true, value_delimiter = ',', value_name = "TYPE")]
        events: Vec<String>,
        /// Only this account's events (acc_…); default: every account's
        #[arg(long)]
        account: Option<String>,
    },
    /// List webhooks
    List {
        #[command(flatten)]
        paging: Paging,
    },
    /// Delete a webhook (its pending deliveries are dropped)
    Delete {
        /// Webhook id (wh_…)
        id: String,
    },
    /// A webhook's deliveries log: one line per attempt, newest first
    Deliveries {
        /// Webhook id (wh_…)
        id: String,
        #[command(flatten)]
        paging: Paging,
    },
}

pub async fn run(args: &ClientArgs, cmd: WebhooksCommand) -> Result<(), CliError> {
    let json = args.json;
    match cmd {
        WebhooksCommand::Create { url, events, account } => {
            let body = json!({ "url": url, "events": events, "account_id": account });
            let answer = args.client()?.post("/v1/webhooks", &body).await?;
            print_created(json, &answer)?;
        }
        WebhooksCommand::List { paging } => {
            let client = args.client()?;
            let (items, next) = fetch_list(&client, "/v1/webhooks", &[], paging).await?;
            print_list(json, items.clone(), next, webhooks_table(&items));
        }
        WebhooksCommand::Delete { id } => {
            args.client()?.delete(&webhook_path(&id, "")).await?;
            if json {
                out_json(&json!({ "id": id, "deleted": true }));
            } else {
                out(&format!("webhook {id} deleted\n"));
            }
        }
        WebhooksCommand::Deliveries { id, paging } => {
            let client = args.client()?;
            let (items, next) = fetch_list(&client, &webhook_path(&id, "/deliveries"), &[], paging).await?;
            print_list(json, items.clone(), next, deliveries_table(&items));
        }
    }
    Ok(())
}

/// `/v1/webhooks/{id}{suffix}`, the id encoded.
fn webhook_path(id: &str, suffix: &str) -> String {
    format!("/v1/webhooks/{}{suffix}", encode_query_value(id))
}

fn print_created(json: bool, answer: &Value) -> Result<(), CliError> {
    let Some(secret) = answer.get("secret").and_then(Value::as_str) else {
        return Err(CliError::Server("the answer has no \"secret\"".into()));
    };
    let warning = "warning: this signing secret is shown only once and cannot be shown again; store it now";
    let text = if json {
        format!("{}\n", serde_json::to_string_pretty(answer).unwrap_or_else(|_| answer.to_string()))
    } else {
        let hook = answer.get("webhook");
        let field = |f: &str| table::cell(hook.and_then(|h| h.get(f)));
        eprintln!("created webhook {} ({})", field("id"), field("url"));
        format!("{secret}\n")
    };
    eprintln!("{warning}");
    try_out(&text).map_err(|e| {
        CliError::Server(format!(
            "the signing secret could not be written to stdout ({e}); delete the webhook and create another"
        ))
    })
}

fn events(value: Option<&Value>) -> String {
    match value.and_then(Value::as_array) {
        Some(list) => list.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(","),
        None => "-".to_owned(),
    }
}

fn webhooks_table(items: &[Value]) -> Table {
    let mut t = Table::new(&["ID", "URL", "EVENTS", "ACCOUNT", "CREATED"]);
    for hook in items {
        t.push(vec![
            table::cell(hook.get("id")),
            table::cell(hook.get("url")),
            events(hook.get("events")),
            table::cell(hook.get("account_id")),
            table::short_time(hook.get("created_at")),
        ]);
    }
    t
}

fn deliveries_table(items: &[Value]) -> Table {
    let mut t = Table::new(&["AT", "EVENT", "TYPE", "ATTEMPT", "STATUS", "RESULT", "NEXT ATTEMPT"]);
    for attempt in items {
        let result = if attempt.get("delivered").and_then(Value::as_bool) == Some(true) {
            "delivered".to_owned()
        } else {
            table::cell(attempt.get("error"))
        };
        t.push(vec![
            table::second_time(attempt.get("at")),
            table::cell(attempt.get("event_id")),
            table::cell(attempt.get("type")),
            table::cell(attempt.get("attempt")),
            table::cell(attempt.get("status_code")),
            result,
            match attempt.get("next_attempt_at") {
                Some(Value::String(_)) => table::second_time(attempt.get("next_attempt_at")),
                _ => "-".to_owned(),
            },
        ]);
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deliveries_read_as_a_log() {
        let items = [
            json!({"id": "wha_2", "event_id": "evt_1", "type": "key.created", "attempt": 2,
                   "at": "2024-05-01T12:01:00Z", "status_code": 200, "error": null, "delivered": true,
                   "next_attempt_at": null}),
            json!({"id": "wha_1", "event_id": "evt_1", "type": "key.created", "attempt": 1,
                   "at": "2024-05-01T12:00:00Z", "status_code": null, "error": "no answer within 10000 ms",
                   "delivered": false, "next_attempt_at": "2024-05-01T12:01:00Z"}),
        ];
        let text = deliveries_table(&items).render();
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[1].contains("delivered") && lines[1].contains("200"), "{text}");
        assert!(lines[2].contains("no answer within 10000 ms") && lines[2].contains("2024-05-01 12:01:00Z"), "{text}");
    }
}
