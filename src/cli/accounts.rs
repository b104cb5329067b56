//! `keygate accounts …`: create, list, show and update accounts (tenants)
//! through the admin API (`/v1/accounts`).
//!
//! It owns the account subcommands' arguments, their request bodies and how
//! accounts are printed. Switching `api_access` off refuses every key of the
//! account at the proxy, and `--plan` puts the account's keys under a plan's
//! pooled limits; this module only sends them, the gateway enforces them.

use clap::Subcommand;
use serde_json::{json, Map, Value};

use super::client::{encode_query_value, CliError};
use super::table::{self, Table};
use super::{fetch_list, out, out_json, print_list, ClientArgs, Paging};

#[derive(Subcommand, Debug)]
pub enum AccountsCommand {
    /// Create an account
    Create {
        /// Name of the account (tenant, organisation)
        name: String,
        /// Create it without API access: its keys are refused until it is granted
        #[arg(long)]
        no_api_access: bool,
        /// Put it on this plan (plan_…)
        #[arg(long, value_name = "PLAN_ID")]
        plan: Option<String>,
    },
    /// List accounts
    List {
        #[command(flatten)]
        paging: Paging,
    },
    /// Show one account
    Show {
        /// Account id (acc_…)
        id: String,
    },
    /// Rename an account, switch its API access or change its plan
    Update {
        /// Account id (acc_…)
        id: String,
        /// New name
        #[arg(long)]
        name: Option<String>,
        /// Whether the account's keys may call the API
        #[arg(long, value_name = "true|false", action = clap::ArgAction::Set)]
        api_access: Option<bool>,
        /// Put the account on this plan (plan_…)
        #[arg(long, value_name = "PLAN_ID")]
        plan: Option<String>,
        /// Take the account off its plan
        #[arg(long, conflicts_with = "plan")]
        no_plan: bool,
    },
}

pub async fn run(args: &ClientArgs, cmd: AccountsCommand) -> Result<(), CliError> {
    // Checked before the token so that the user learns about the argument first.
    if let AccountsCommand::Update { id, name: None, api_access: None, plan: None, no_plan: false } = &cmd {
        return Err(CliError::Usage(format!(
            "nothing to update for {id}: pass --name, --api-access true|false, --plan or --no-plan"
        )));
    }
    let client = args.client()?;
    let json = args.json;
    match cmd {
        AccountsCommand::Create { name, no_api_access, plan } => {
            let body = json!({ "name": name, "api_access": !no_api_access, "plan_id": plan });
            let account = client.post("/v1/accounts", &body).await?;
            print_account(json, &account);
        }
        AccountsCommand::List { paging } => {
            let (items, next) = fetch_list(&client, "/v1/accounts", &[], paging).await?;
            print_list(json, items.clone(), next, accounts_table(&items));
        }
        AccountsCommand::Show { id } => {
            let account = client.get(&account_path(&id)).await?;
            print_account(json, &account);
        }
        AccountsCommand::Update { id, name, api_access, plan, no_plan } => {
            let mut body = Map::new();
            if let Some(name) = name {
                body.insert("name".into(), Value::String(name));
            }
            if let Some(flag) = api_access {
                body.insert("api_access".into(), Value::Bool(flag));
            }
            match (plan, no_plan) {
                (Some(plan), _) => {
                    body.insert("plan_id".into(), Value::String(plan));
                }
                (None, true) => {
                    body.insert("plan_id".into(), Value::Null);
                }
                (None, false) => {}
            }
            let account = client.patch(&account_path(&id), &Value::Object(body)).await?;
            print_account(json, &account);
        }
    }
    Ok(())
}

fn account_path(id: &str) -> String {
    format!("/v1/accounts/{}", encode_query_value(id))
}

fn accounts_table(items: &[Value]) -> Table {
    let mut t = Table::new(&["ID", "NAME", "API ACCESS", "PLAN", "QUOTA", "CREATED"]);
    for account in items {
        t.push(vec![
            table::cell(account.get("id")),
            table::cell(account.get("name")),
            table::cell(account.get("api_access")),
            table::cell(account.get("plan_id")),
            table::quota_column(account.get("quota_usage")),
            table::short_time(account.get("created_at")),
        ]);
    }
    t
}

fn print_account(json: bool, account: &Value) {
    if json {
        out_json(account);
        return;
    }
    let mut pairs: Vec<(&str, String)> = ["id", "name", "api_access", "plan_id", "created_at"]
        .iter()
        .map(|f| (*f, table::cell(account.get(f))))
        .collect();
    pairs.push(("quota_usage", table::quota_usage(account.get("quota_usage"))));
    out(&table::fields(&pairs));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accounts_table_lists_id_name_access_plan_and_day() {
        let items = [
            json!({"id": "acc_1", "name": "Acme", "api_access": true, "plan_id": "plan_1", "quota_usage": {"used": 5, "remaining": 95, "resets_at": null}, "created_at": "2024-05-01T12:00:00Z"}),
            json!({"id": "acc_22", "name": "Globex Corp", "api_access": false, "plan_id": null, "created_at": "2024-06-01T08:30:00Z"}),
        ];
        let expected = "\
ID      NAME         API ACCESS  PLAN    QUOTA  CREATED
acc_1   Acme         true        plan_1  5/100  2024-05-01 12:00Z
acc_22  Globex Corp  false       -       -      2024-06-01 08:30Z
";
        assert_eq!(accounts_table(&items).render(), expected);
    }

    #[test]
    fn account_ids_are_encoded_in_paths() {
        assert_eq!(account_path("acc_1"), "/v1/accounts/acc_1");
        assert_eq!(account_path("a/b"), "/v1/accounts/a%2Fb");
    }
}
