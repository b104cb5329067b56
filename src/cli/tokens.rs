//! `keygate admin-token list | delete`: admin tokens through the admin API
//! (`/v1/admin-tokens`, owner tokens only).
//!
//! It owns how tokens are listed and what a deletion prints. Creating a
//! token is not here: `admin-token create` writes to the store directly
//! (in `main.rs`) so that a fresh install can mint its first owner token
//! with no server running. Token secrets never pass through this module:
//! the API lists previews only.

use serde_json::{json, Value};

use super::client::{encode_query_value, CliError};
use super::table::{self, Table};
use super::{fetch_list, out, out_json, print_list, ClientArgs, Paging};

/// Lists every admin token (the API answers in one page).
pub async fn list(args: &ClientArgs) -> Result<(), CliError> {
    let client = args.client()?;
    let (items, next) = fetch_list(&client, "/v1/admin-tokens", &[], Paging { all: true, ..Paging::default() }).await?;
    let table = tokens_table(&items);
    print_list(args.json, items, next, table);
    Ok(())
}

/// Deletes one token: requests carrying it are refused (401) from now on.
pub async fn delete(args: &ClientArgs, id: &str) -> Result<(), CliError> {
    let client = args.client()?;
    client.delete(&token_path(id)).await?;
    if args.json {
        out_json(&json!({ "id": id, "deleted": true }));
    } else {
        out(&format!("admin token {id} deleted\n"));
    }
    Ok(())
}

fn token_path(id: &str) -> String {
    format!("/v1/admin-tokens/{}", encode_query_value(id))
}

fn tokens_table(items: &[Value]) -> Table {
    let mut t = Table::new(&["ID", "NAME", "ROLE", "ACCOUNT", "TOKEN", "CREATED"]);
    for token in items {
        t.push(vec![
            table::cell(token.get("id")),
            table::cell(token.get("name")),
            table::cell(token.get("role")),
            table::cell(token.get("account_id")),
            table::cell(token.get("preview")),
            table::short_time(token.get("created_at")),
        ]);
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_table_shows_role_account_and_preview_only() {
        let items = [
            json!({"id": "tok_1", "name": "ci", "role": "viewer", "account_id": null,
                "preview": "kga_AbC1…9xYz", "created_at": "2024-05-01T12:00:00Z"}),
            json!({"id": "tok_22", "name": "acme ops", "role": "admin", "account_id": "acc_1",
                "preview": "kga_ZzZz…0000", "created_at": "2024-06-01T08:30:00Z"}),
        ];
        let expected = "\
ID      NAME      ROLE    ACCOUNT  TOKEN          CREATED
tok_1   ci        viewer  -        kga_AbC1…9xYz  2024-05-01 12:00Z
tok_22  acme ops  admin   acc_1    kga_ZzZz…0000  2024-06-01 08:30Z
";
        assert_eq!(tokens_table(&items).render(), expected);
    }

    #[test]
    fn token_ids_are_encoded_in_paths() {
        assert_eq!(token_path("tok_1"), "/v1/admin-tokens/tok_1");
        assert_eq!(token_path("../keys"), "/v1/admin-tokens/..%2Fkeys");
    }
}
