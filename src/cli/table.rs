//! Plain-text output for the CLI: aligned tables for lists, `name: value`
//! lines for single records, and the cell formatting both share.
//!
//! It owns only layout; which fields a command shows is the command's choice.
//! No colours and no terminal detection, so the output is the same in a pipe
//! and on screen and `grep`/`awk` can rely on it.

use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Columns are separated by this many spaces, enough to tell them apart at a glance.
const GAP: usize = 2;

/// A table of left-aligned text columns.
#[derive(Debug, Clone, Default)]
pub struct Table {
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(headers: &[&str]) -> Table {
        Table { headers: headers.iter().map(|h| (*h).to_owned()).collect(), rows: Vec::new() }
    }

    /// Adds a row; missing cells are blank and extra ones are dropped, so a
    /// short row cannot shift the columns after it.
    pub fn push(&mut self, cells: Vec<String>) {
        let mut cells = cells;
        cells.resize(self.headers.len(), String::new());
        self.rows.push(cells);
    }

    /// Renders header and rows, one line each, every line ending in `\n`.
    /// Widths count characters, not bytes, because previews contain `…`.
    pub fn render(&self) -> String {
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let mut out = String::new();
        for line in std::iter::once(&self.headers).chain(&self.rows) {
            let last = line.len().saturating_sub(1);
            for (i, (cell, width)) in line.iter().zip(&widths).enumerate() {
                out.push_str(cell);
                // No trailing blanks after the last column: they only confuse diffs.
                if i < last {
                    let pad = width - cell.chars().count() + GAP;
                    out.extend(std::iter::repeat_n(' ', pad));
                }
            }
            out.push('\n');
        }
        out
    }
}

/// Renders `name: value` lines, one per field, in the order given. Values are
/// not aligned so that `grep '^status: '` works on the output.
pub fn fields(pairs: &[(&str, String)]) -> String {
    pairs.iter().map(|(name, value)| format!("{name}: {value}\n")).collect()
}

/// The text of a JSON value in a cell: strings bare, null as `-`, arrays
/// and objects as compact JSON.
pub fn cell(value: Option<&Value>) -> String {
    match value {
        None | Some(Value::Null) => "-".to_owned(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

/// Like [`cell`], but a missing value reads `never` (expiry, last use).
pub fn or_never(value: Option<&Value>) -> String {
    match value {
        None | Some(Value::Null) => "never".to_owned(),
        Some(_) => cell(value),
    }
}

/// An RFC 3339 time shortened to `2024-05-01 12:00Z` for tables, where the
/// seconds only cost width. Anything unparsable is shown as it came.
pub fn short_time(value: Option<&Value>) -> String {
    utc_time(value, false)
}

/// Like [`short_time`], with the seconds (`2024-05-01 12:00:05Z`), for
/// events where the order within a minute matters (the audit trail).
pub fn second_time(value: Option<&Value>) -> String {
    utc_time(value, true)
}

fn utc_time(value: Option<&Value>, seconds: bool) -> String {
    let Some(text) = value.and_then(Value::as_str) else {
        return or_never(value);
    };
    match OffsetDateTime::parse(text, &Rfc3339) {
        Ok(t) => {
            let t = t.to_offset(time::UtcOffset::UTC);
            let minute =
                format!("{:04}-{:02}-{:02} {:02}:{:02}", t.year(), u8::from(t.month()), t.day(), t.hour(), t.minute());
            if seconds {
                format!("{minute}:{:02}Z", t.second())
            } else {
                format!("{minute}Z")
            }
        }
        Err(_) => text.to_owned(),
    }
}

/// A rate limit object as the CLI takes it: `100/60s`.
pub fn rate_limit(value: Option<&Value>) -> String {
    let requests = value.and_then(|v| v.get("requests")).and_then(Value::as_u64);
    let per = value.and_then(|v| v.get("per_seconds")).and_then(Value::as_u64);
    match (requests, per) {
        (Some(r), Some(p)) => format!("{r}/{p}s"),
        _ => cell(value),
    }
}

/// A string list joined with commas; `-` when empty or null.
pub fn list(value: Option<&Value>) -> String {
    match value.and_then(Value::as_array) {
        Some(items) if !items.is_empty() => items.iter().map(|v| cell(Some(v))).collect::<Vec<_>>().join(","),
        Some(_) => "-".to_owned(),
        None => cell(value),
    }
}

/// Allowed routes as the CLI takes them: `/v1/reports:GET,HEAD /v1/health`.
pub fn routes(value: Option<&Value>) -> String {
    let Some(items) = value.and_then(Value::as_array) else {
        return cell(value);
    };
    if items.is_empty() {
        return "-".to_owned();
    }
    let shown: Vec<String> = items
        .iter()
        .map(|route| {
            let prefix = match route.get("host").and_then(Value::as_str) {
                Some(host) => format!("//{host}{}", cell(route.get("path_prefix"))),
                None => cell(route.get("path_prefix")),
            };
            match route.get("methods").and_then(Value::as_array) {
                Some(methods) if !methods.is_empty() => {
                    let methods: Vec<String> = methods.iter().map(|m| cell(Some(m))).collect();
                    format!("{prefix}:{}", methods.join(","))
                }
                _ => prefix,
            }
        })
        .collect();
    shown.join(" ")
}

/// A key record as `name: value` lines, every field in the API's order;
/// unset expiry and last use read `never`.
pub fn key_fields(key: &Value) -> String {
    let get = |f: &str| key.get(f);
    let plain = [
        "id",
        "account_id",
        "name",
        "description",
        "permission",
        "status",
        "enabled",
        "environment",
        "prefix",
        "preview",
        "created_at",
        "updated_at",
    ];
    let mut pairs: Vec<(&str, String)> = plain.iter().map(|f| (*f, cell(get(f)))).collect();
    pairs.extend([
        ("expires_at", or_never(get("expires_at"))),
        ("last_used_at", or_never(get("last_used_at"))),
        ("usage_count", cell(get("usage_count"))),
        ("rotated_at", cell(get("rotated_at"))),
        ("revoked_at", cell(get("revoked_at"))),
        ("rate_limit", rate_limit(get("rate_limit"))),
        ("allowed_ips", list(get("allowed_ips"))),
        ("allowed_routes", routes(get("allowed_routes"))),
        ("metadata", cell(get("metadata"))),
        ("quota", quota(get("quota"))),
        ("quota_usage", quota_usage(get("quota_usage"))),
    ]);
    fields(&pairs)
}

/// `10000/month`, or `-` without a quota.
pub fn quota(value: Option<&Value>) -> String {
    match value.and_then(|q| Some((q.get("limit")?, q.get("period")?.as_str()?))) {
        Some((limit, period)) => format!("{limit}/{period}"),
        None => "-".to_owned(),
    }
}

/// `1200 used, 8800 left, resets 2025-04-01 00:00Z`, or `-`.
pub fn quota_usage(value: Option<&Value>) -> String {
    let Some(u) = value.filter(|v| v.is_object()) else { return "-".to_owned() };
    let resets = match u.get("resets_at") {
        Some(Value::String(_)) => format!(", resets {}", short_time(u.get("resets_at"))),
        _ => ", never resets".to_owned(),
    };
    format!("{} used, {} left{resets}", cell(u.get("used")), cell(u.get("remaining")))
}

/// The quota column of lists: `used/limit` (`used` + `remaining` for a
/// limit adjusted through the API), or `-`.
pub fn quota_column(usage: Option<&Value>) -> String {
    let Some(u) = usage.filter(|v| v.is_object()) else { return "-".to_owned() };
    let (used, left) = (u.get("used").and_then(Value::as_u64), u.get("remaining").and_then(Value::as_u64));
    match (used, left) {
        (Some(used), Some(left)) => format!("{used}/{}", used.saturating_add(left)),
        _ => "-".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn columns_align_on_the_widest_cell_counting_characters() {
        let mut t = Table::new(&["ID", "KEY", "USAGE"]);
        t.push(vec!["key_1".into(), "kg_live_AbC1…9xYz".into(), "12".into()]);
        t.push(vec!["key_22222".into(), "x".into(), "0".into()]);
        let expected = "\
ID         KEY                USAGE
key_1      kg_live_AbC1…9xYz  12
key_22222  x                  0
";
        assert_eq!(t.render(), expected);
    }

    #[test]
    fn short_rows_are_padded_and_long_rows_cut() {
        let mut t = Table::new(&["A", "B"]);
        t.push(vec!["1".into()]);
        t.push(vec!["1".into(), "2".into(), "3".into()]);
        assert_eq!(t.render(), "A  B\n1  \n1  2\n");
    }

    #[test]
    fn empty_table_is_just_the_header() {
        let t = Table::new(&["ID", "NAME"]);
        assert_eq!(t.render(), "ID  NAME\n");
    }

    #[test]
    fn fields_are_name_colon_value_lines() {
        let out = fields(&[("id", "key_1".into()), ("status", "revoked".into())]);
        assert_eq!(out, "id: key_1\nstatus: revoked\n");
    }

    #[test]
    fn cells_render_json_values() {
        assert_eq!(cell(None), "-");
        assert_eq!(cell(Some(&Value::Null)), "-");
        assert_eq!(cell(Some(&json!("x"))), "x");
        assert_eq!(cell(Some(&json!(7))), "7");
        assert_eq!(cell(Some(&json!({"team": "a"}))), r#"{"team":"a"}"#);
        assert_eq!(or_never(Some(&Value::Null)), "never");
        assert_eq!(or_never(Some(&json!(true))), "true");
    }

    #[test]
    fn times_are_shortened_to_minutes_in_utc() {
        assert_eq!(short_time(Some(&json!("2024-05-01T12:34:56Z"))), "2024-05-01 12:34Z");
        assert_eq!(short_time(Some(&json!("2024-05-01T14:34:56.123+02:00"))), "2024-05-01 12:34Z");
        assert_eq!(short_time(Some(&Value::Null)), "never");
        assert_eq!(second_time(Some(&json!("2024-05-01T14:34:56.789+02:00"))), "2024-05-01 12:34:56Z");
        assert_eq!(short_time(Some(&json!("soon"))), "soon");
    }

    #[test]
    fn limits_ips_and_routes_read_like_the_cli_arguments() {
        assert_eq!(rate_limit(Some(&json!({"requests": 100, "per_seconds": 60}))), "100/60s");
        assert_eq!(rate_limit(Some(&Value::Null)), "-");
        assert_eq!(list(Some(&json!(["10.0.0.0/8", "::1/128"]))), "10.0.0.0/8,::1/128");
        assert_eq!(list(Some(&json!([]))), "-");
        let r =
            json!([{"path_prefix": "/v1/reports", "methods": ["GET", "HEAD"]}, {"path_prefix": "/h", "methods": null}]);
        assert_eq!(routes(Some(&r)), "/v1/reports:GET,HEAD /h");
        assert_eq!(routes(Some(&json!([]))), "-");
    }

    #[test]
    fn key_fields_show_every_field_with_never_for_unset_times() {
        let key = json!({
            "id": "key_1", "account_id": "acc_1", "name": "ci", "description": null, "permission": "read",
            "status": "active", "enabled": true, "environment": "live", "prefix": "kg_live",
            "preview": "kg_live_AbC1…9xYz", "created_at": "2024-05-01T12:00:00Z", "updated_at": "2024-05-01T12:00:00Z",
            "expires_at": null, "last_used_at": null, "usage_count": 0, "rotated_at": null, "revoked_at": null,
            "rate_limit": {"requests": 100, "per_seconds": 60}, "allowed_ips": ["10.0.0.0/8"],
            "allowed_routes": [{"path_prefix": "/r", "methods": ["GET"]}], "metadata": {"team": "a"}
        });
        let text = key_fields(&key);
        for line in [
            "id: key_1\n",
            "description: -\n",
            "status: active\n",
            "expires_at: never\n",
            "last_used_at: never\n",
            "rate_limit: 100/60s\n",
            "allowed_ips: 10.0.0.0/8\n",
            "allowed_routes: /r:GET\n",
            "metadata: {\"team\":\"a\"}\n",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
        assert!(text.contains("quota: -\n") && text.contains("quota_usage: -\n"), "{text}");
        assert_eq!(text.lines().count(), 23);
    }
}
