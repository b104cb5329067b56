//! `keygate plans …`: create, list, show, update and delete plans through
//! the admin API (`/v1/plans`). A plan's limits are pooled over all of an
//! account's keys; accounts are put on a plan with `keygate accounts update
//! ID --plan PLAN`.
//!
//! It owns the plan subcommands' arguments, their request bodies and how
//! plans are printed. Limits are written the way `keys` writes them:
//! `--rate-limit 100/60s`, `--quota 10000/month`.

use clap::Subcommand;
use serde_json::{json, Map, Value};

use super::client::{encode_query_value, CliError};
use super::parse::parse_rate_limit;
use super::table::{self, Table};
use super::{fetch_list, out, out_json, print_list, ClientArgs, Paging};

#[derive(Subcommand, Debug)]
pub enum PlansCommand {
    /// Create a plan
    Create {
        /// Name of the plan (e.g. Free, Pro)
        name: String,
        /// Rate limit pooled over the account's keys: REQUESTS/DURATION, e.g. 10/s, 100/60s
        #[arg(long, value_parser = parse_rate_limit, value_name = "N/DURATION")]
        rate_limit: Option<Value>,
        /// Quota pooled over the account's keys: UNITS/PERIOD, PERIOD one of day, week, month, total
        #[arg(long, value_parser = parse_quota, value_name = "N/PERIOD")]
        quota: Option<Value>,
    },
    /// List plans
    List {
        #[command(flatten)]
        paging: Paging,
    },
    /// Show one plan
    Show {
        /// Plan id (plan_…)
        id: String,
    },
    /// Rename a plan or change its limits (in force for every account on it)
    Update {
        /// Plan id (plan_…)
        id: String,
        /// New name
        #[arg(long)]
        name: Option<String>,
        /// New pooled rate limit: REQUESTS/DURATION
        #[arg(long, value_parser = parse_rate_limit, value_name = "N/DURATION")]
        rate_limit: Option<Value>,
        /// Remove the pooled rate limit
        #[arg(long, conflicts_with = "rate_limit")]
        no_rate_limit: bool,
        /// New pooled quota: UNITS/PERIOD
        #[arg(long, value_parser = parse_quota, value_name = "N/PERIOD")]
        quota: Option<Value>,
        /// Remove the pooled quota
        #[arg(long, conflicts_with = "quota")]
        no_quota: bool,
    },
    /// Delete a plan no account is on
    Delete {
        /// Plan id (plan_…)
        id: String,
    },
}

/// Parses `--quota`: `10000/month`, `500/day`, `1000000/total`.
pub fn parse_quota(text: &str) -> Result<Value, String> {
    let (limit, period) = text.split_once('/').ok_or_else(|| format!("{text:?} is not a quota like 10000/month"))?;
    let limit: u64 = limit.trim().parse().map_err(|_| format!("{limit:?} is not a whole number of units"))?;
    let period = period.trim();
    if !["day", "week", "month", "total"].contains(&period) {
        return Err(format!("{period:?} is not a period: day, week, month or total"));
    }
    Ok(json!({ "limit": limit, "period": period }))
}

/// The PATCH body of `plans update`; `None` when it changes nothing.
fn update_body(
    name: Option<String>,
    rate_limit: Option<Value>,
    no_rate_limit: bool,
    quota: Option<Value>,
    no_quota: bool,
) -> Option<Value> {
    let mut body = Map::new();
    if let Some(name) = name {
        body.insert("name".into(), Value::String(name));
    }
    for (value, clear, field) in [(rate_limit, no_rate_limit, "rate_limit"), (quota, no_quota, "quota")] {
        match (value, clear) {
            (Some(v), _) => {
                body.insert(field.into(), v);
            }
            (None, true) => {
                body.insert(field.into(), Value::Null);
            }
            (None, false) => {}
        }
    }
    (!body.is_empty()).then_some(Value::Object(body))
}

pub async fn run(args: &ClientArgs, cmd: PlansCommand) -> Result<(), CliError> {
    let json = args.json;
    match cmd {
        PlansCommand::Create { name, rate_limit, quota } => {
            let body = json!({ "name": name, "rate_limit": rate_limit, "quota": quota });
            let plan = args.client()?.post("/v1/plans", &body).await?;
            print_plan(json, &plan);
        }
        PlansCommand::List { paging } => {
            let client = args.client()?;
            let (items, next) = fetch_list(&client, "/v1/plans", &[], paging).await?;
            print_list(json, items.clone(), next, plans_table(&items));
        }
        PlansCommand::Show { id } => {
            let plan = args.client()?.get(&plan_path(&id)).await?;
            print_plan(json, &plan);
        }
        PlansCommand::Update { id, name, rate_limit, no_rate_limit, quota, no_quota } => {
            // Checked before the token so that the user learns about the argument first.
            let body = update_body(name, rate_limit, no_rate_limit, quota, no_quota).ok_or_else(|| {
                CliError::Usage(format!(
                    "nothing to update for {id}: pass --name, --rate-limit, --no-rate-limit, --quota or --no-quota"
                ))
            })?;
            let plan = args.client()?.patch(&plan_path(&id), &body).await?;
            print_plan(json, &plan);
        }
        PlansCommand::Delete { id } => {
            args.client()?.delete(&plan_path(&id)).await?;
            if json {
                out_json(&json!({ "id": id, "deleted": true }));
            } else {
                out(&format!("plan {id} deleted\n"));
            }
        }
    }
    Ok(())
}

fn plan_path(id: &str) -> String {
    format!("/v1/plans/{}", encode_query_value(id))
}

/// `10000/month`, or `-` for none.
fn quota(value: Option<&Value>) -> String {
    match value.and_then(|q| Some((q.get("limit")?, q.get("period")?.as_str()?))) {
        Some((limit, period)) => format!("{limit}/{period}"),
        None => "-".to_owned(),
    }
}

fn plans_table(items: &[Value]) -> Table {
    let mut t = Table::new(&["ID", "NAME", "RATE LIMIT", "QUOTA", "CREATED"]);
    for plan in items {
        t.push(vec![
            table::cell(plan.get("id")),
            table::cell(plan.get("name")),
            table::rate_limit(plan.get("rate_limit")),
            quota(plan.get("quota")),
            table::short_time(plan.get("created_at")),
        ]);
    }
    t
}

fn print_plan(json: bool, plan: &Value) {
    if json {
        out_json(plan);
        return;
    }
    let pairs = [
        ("id", table::cell(plan.get("id"))),
        ("name", table::cell(plan.get("name"))),
        ("rate_limit", table::rate_limit(plan.get("rate_limit"))),
        ("quota", quota(plan.get("quota"))),
        ("created_at", table::cell(plan.get("created_at"))),
        ("updated_at", table::cell(plan.get("updated_at"))),
    ];
    out(&table::fields(&pairs));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotas_take_units_and_a_calendar_period() {
        assert_eq!(parse_quota("10000/month"), Ok(json!({ "limit": 10000, "period": "month" })));
        assert_eq!(parse_quota("5/total"), Ok(json!({ "limit": 5, "period": "total" })));
        for bad in ["10000", "x/day", "-1/day", "10/year", "10/"] {
            assert!(parse_quota(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn plans_table_reads_like_the_arguments() {
        let items = [
            json!({"id": "plan_1", "name": "Free", "rate_limit": {"requests": 10, "per_seconds": 1},
                   "quota": {"limit": 10000, "period": "month"}, "created_at": "2024-05-01T12:00:00Z"}),
            json!({"id": "plan_22", "name": "Open", "rate_limit": null, "quota": null, "created_at": "2024-06-01T08:30:00Z"}),
        ];
        let expected = "\
ID       NAME  RATE LIMIT  QUOTA        CREATED
plan_1   Free  10/1s       10000/month  2024-05-01 12:00Z
plan_22  Open  -           -            2024-06-01 08:30Z
";
        assert_eq!(plans_table(&items).render(), expected);
    }

    #[test]
    fn update_sends_only_what_changes_and_null_to_clear() {
        assert_eq!(update_body(None, None, false, None, false), None);
        let body = update_body(Some("Pro".into()), None, true, Some(json!({"limit": 5, "period": "day"})), false);
        assert_eq!(body, Some(json!({ "name": "Pro", "rate_limit": null, "quota": { "limit": 5, "period": "day" } })));
    }
}
