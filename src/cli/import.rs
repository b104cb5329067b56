//! `keygate keys import --file keys.csv [--account ID]`: keys made
//! elsewhere, from a CSV file, through `POST /v1/keys/import` in batches of
//! 1,000 (each batch one transaction; importing is idempotent, so a run
//! that stopped half way can be run again).
//!
//! It owns the CSV reading (RFC 4180: a header row, `,` separated, `"`
//! quoted with `""` for a quote, LF or CRLF) and the mapping of answers
//! back to row numbers. Whether a secret, a hash or a field is valid is the
//! server's to say: each row goes as it is, and the server's refusal is
//! printed with the row's number. Secrets are never printed.

use std::path::PathBuf;

use serde_json::{json, Map, Value};

use super::client::CliError;
use super::{out, out_json, ClientArgs};

/// The admin API takes at most this many keys per call.
const BATCH: usize = 1_000;

/// Columns a file may have; `secret` or `sha256` (one per row), `name` and
/// `permission` are needed.
const COLUMNS: [&str; 8] =
    ["secret", "sha256", "name", "permission", "expires_at", "description", "environment", "account_id"];

/// `keys import`: where the keys are and which account they go to.
#[derive(clap::Args, Debug)]
pub struct ImportArgs {
    /// CSV file with a header row. Columns: secret or sha256 (64 hex digits, or base64), name,
    /// permission, and optionally expires_at (RFC 3339), description, environment, account_id
    #[arg(long, value_name = "FILE")]
    file: PathBuf,
    /// Account every key goes to (acc_…); without it, each row's account_id column
    #[arg(long, value_name = "ACCOUNT_ID")]
    account: Option<String>,
}

/// One data row: its number in the file (the header is row 1) and the key
/// it asks for, as the admin API takes it.
struct Row {
    number: usize,
    account: String,
    key: Value,
}

/// Imports every row; prints what was imported and, on stderr, each row
/// refused with its number. Exit 1 when a row was refused.
pub async fn import(args: &ClientArgs, cmd: ImportArgs) -> Result<(), CliError> {
    let text = std::fs::read_to_string(&cmd.file)
        .map_err(|e| CliError::Usage(format!("cannot read {}: {e}", cmd.file.display())))?;
    let rows = rows(&text, cmd.account.as_deref())?;
    if rows.is_empty() {
        return Err(CliError::Usage(format!("{} has no rows below its header", cmd.file.display())));
    }
    let client = args.client()?;
    let (mut imported, mut failed) = (Vec::new(), Vec::new());
    // Consecutive rows of one account, at most BATCH per call, in file order.
    let mut start = 0;
    while start < rows.len() {
        let account = &rows[start].account;
        let mut end = start;
        while end < rows.len() && end - start < BATCH && rows[end].account == *account {
            end += 1;
        }
        let batch = &rows[start..end];
        let body = json!({ "account_id": account, "keys": batch.iter().map(|r| r.key.clone()).collect::<Vec<_>>() });
        let answer = client.post("/v1/keys/import", &body).await.inspect_err(|_| {
            let before = if start > 0 { "; the rows before them were" } else { "" };
            eprintln!("rows {} to {} were not imported{before}", batch[0].number, batch[batch.len() - 1].number);
        })?;
        let row_of = |entry: &Value| {
            entry.get("index").and_then(Value::as_u64).and_then(|i| batch.get(i as usize)).map(|r| r.number)
        };
        for entry in answer.get("imported").and_then(Value::as_array).into_iter().flatten() {
            imported.push(json!({ "row": row_of(entry), "created": entry["created"], "key": entry["key"] }));
        }
        for entry in answer.get("failed").and_then(Value::as_array).into_iter().flatten() {
            failed.push(json!({ "row": row_of(entry), "code": entry["code"], "detail": entry["detail"], "field": entry["field"] }));
        }
        start = end;
    }
    let created = imported.iter().filter(|i| i["created"] == true).count();
    if args.json {
        out_json(&json!({ "imported": imported, "failed": failed }));
    } else {
        for entry in &failed {
            let text = |f: &str| entry[f].as_str().unwrap_or("").to_owned();
            eprintln!("row {}: {}: {}", entry["row"], text("code"), text("detail"));
        }
        out(&format!(
            "imported {} keys ({created} created, {} already imported), {} rows failed\n",
            imported.len(),
            imported.len() - created,
            failed.len()
        ));
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(CliError::NotValid(format!(
            "{} rows were not imported (listed above with their row numbers)",
            failed.len()
        )))
    }
}

/// The data rows of `text`, with the account each goes to.
fn rows(text: &str, account: Option<&str>) -> Result<Vec<Row>, CliError> {
    let records = parse_csv(text.strip_prefix('\u{feff}').unwrap_or(text))?;
    let Some((header, data)) = records.split_first() else {
        return Err(CliError::Usage("the file is empty: it needs a header row".into()));
    };
    let columns: Vec<String> = header.iter().map(|h| h.trim().to_ascii_lowercase()).collect();
    for (i, c) in columns.iter().enumerate() {
        if !COLUMNS.contains(&c.as_str()) {
            // By position, not the cell itself: a file without its header
            // row would print a secret here.
            return Err(CliError::Usage(format!(
                "column {} of the header row is not one of {} (is the header row missing?)",
                i + 1,
                COLUMNS.join(", ")
            )));
        }
    }
    for needed in ["name", "permission"] {
        if !columns.iter().any(|c| c == needed) {
            return Err(CliError::Usage(format!("the header has no {needed} column")));
        }
    }
    if !columns.iter().any(|c| c == "secret" || c == "sha256") {
        return Err(CliError::Usage("the header needs a secret or a sha256 column".into()));
    }
    if account.is_none() && !columns.iter().any(|c| c == "account_id") {
        return Err(CliError::Usage("pass --account, or give the file an account_id column".into()));
    }
    let mut rows = Vec::with_capacity(data.len());
    for (i, record) in data.iter().enumerate() {
        let number = i + 2;
        if record.iter().all(|f| f.trim().is_empty()) {
            continue;
        }
        let mut key = Map::new();
        let mut row_account = account.map(str::to_owned);
        for (column, value) in columns.iter().zip(record) {
            let value = value.trim();
            if value.is_empty() {
                continue;
            }
            match column.as_str() {
                "sha256" => {
                    let hex = value.len() == 64 && value.bytes().all(|b| b.is_ascii_hexdigit());
                    let encoding = if hex { "hex" } else { "base64" };
                    key.insert("hash".into(), json!({ "algorithm": "sha256", "encoding": encoding, "value": value }));
                }
                "account_id" => {
                    row_account.get_or_insert_with(|| value.to_owned());
                }
                other => {
                    key.insert(other.into(), Value::String(value.to_owned()));
                }
            }
        }
        let Some(account) = row_account else {
            return Err(CliError::Usage(format!("row {number}: no account_id, and no --account")));
        };
        rows.push(Row { number, account, key: Value::Object(key) });
    }
    Ok(rows)
}

/// RFC 4180 records. A field with a stray quote, or a file ending inside a
/// quoted field, is a usage error naming the row.
fn parse_csv(text: &str) -> Result<Vec<Vec<String>>, CliError> {
    let mut records = Vec::new();
    let mut record = Vec::new();
    let mut field = String::new();
    let mut chars = text.chars().peekable();
    let mut quoted = false;
    let mut was_quoted = false;
    while let Some(c) = chars.next() {
        if quoted {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                '"' => quoted = false,
                c => field.push(c),
            }
            continue;
        }
        match c {
            '"' if field.is_empty() && !was_quoted => {
                quoted = true;
                was_quoted = true;
            }
            '"' => return Err(CliError::Usage(format!("row {}: a quote inside an unquoted field", records.len() + 1))),
            ',' => {
                record.push(std::mem::take(&mut field));
                was_quoted = false;
            }
            '\r' if chars.peek() == Some(&'\n') => {}
            '\n' => {
                record.push(std::mem::take(&mut field));
                records.push(std::mem::take(&mut record));
                was_quoted = false;
            }
            c => field.push(c),
        }
    }
    if quoted {
        return Err(CliError::Usage(format!("row {}: a quoted field is never closed", records.len() + 1)));
    }
    if !field.is_empty() || !record.is_empty() || was_quoted {
        record.push(field);
        records.push(record);
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_may_be_quoted_with_commas_quotes_and_newlines() {
        let text = "secret,name,permission\r\nabc,\"Billing, EU\",read\n\"x\"\"y\",\"two\nlines\",write\n\n";
        let records = parse_csv(text).expect("csv");
        assert_eq!(records[1], ["abc", "Billing, EU", "read"]);
        assert_eq!(records[2], ["x\"y", "two\nlines", "write"]);
        assert!(parse_csv("a,b\"c\n").is_err());
        assert!(parse_csv("a,\"b\n").is_err());
        assert_eq!(parse_csv("a,b").expect("no final newline"), vec![vec!["a", "b"]]);
    }

    #[test]
    fn rows_are_numbered_as_in_the_file_and_sha256_picks_its_encoding() {
        let hex = "ab".repeat(32);
        let text =
            format!("sha256,name,permission,expires_at\n{hex},a,read,\n\nq83vEjRWeJA=,b,write,2030-01-01T00:00:00Z\n");
        let rows = rows(&text, Some("acc_1")).expect("rows");
        assert_eq!(rows.iter().map(|r| r.number).collect::<Vec<_>>(), [2, 4], "the blank line keeps its number");
        assert_eq!(rows[0].key["hash"]["encoding"], "hex");
        assert_eq!(rows[1].key["hash"]["encoding"], "base64");
        assert!(rows[0].key.get("expires_at").is_none(), "an empty cell is left out");
        assert_eq!(rows[1].key["expires_at"], "2030-01-01T00:00:00Z");
        assert!(matches!(super::rows("secret,name,colour\n", Some("a")), Err(CliError::Usage(_))));
        assert!(matches!(super::rows("secret,name,permission\nx,y,read\n", None), Err(CliError::Usage(_))));
        let per_row = super::rows("secret,name,permission,account_id\nx,y,read,acc_9\n", None).expect("rows");
        assert_eq!(per_row[0].account, "acc_9");
    }
}
