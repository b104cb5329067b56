//! The CLI's argument values and the request fields they become: the expiry,
//! limit and restriction options shared by `keys create` and `keys update`,
//! and the parsers behind them: durations (`30d`), RFC 3339 times,
//! rate limits (`100/60s`), allowed routes (`/v1/reports:GET,HEAD`), JSON
//! metadata and the closed sets (`read|write`, `live|test`, key status).
//!
//! They run inside clap (`value_parser = …`), so a malformed value is a usage
//! error (exit 2) reported before any request is sent. They produce the
//! admin API's JSON shapes and must not do I/O; whether a CIDR or a time in
//! the past is acceptable is for the server to say, in one place.

use clap::ValueEnum;
use serde_json::{json, Map, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::client::CliError;

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Permission {
    Read,
    Write,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Environment {
    Live,
    Test,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Active,
    Disabled,
    Expired,
    Revoked,
}

/// The API's spelling of a value enum (`read`, `live`, `revoked`, …).
pub fn name<T: ValueEnum>(value: T) -> String {
    value.to_possible_value().map(|v| v.get_name().to_owned()).unwrap_or_default()
}

/// Expiry, limits and restrictions, shared by `create` and `update`.
#[derive(clap::Args, Debug, Default)]
pub struct Limits {
    /// Expiry time, RFC 3339 (2030-01-31T23:59:00Z)
    #[arg(long, value_parser = parse_time, conflicts_with = "expires_in")]
    expires_at: Option<String>,
    /// Expiry relative to now: 30d, 12h, 90m, 45s, 2w
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    expires_in: Option<u64>,
    /// Per-key rate limit: REQUESTS/DURATION, e.g. 100/60s, 1000/h
    #[arg(long, value_parser = parse_rate_limit, value_name = "N/DURATION")]
    rate_limit: Option<Value>,
    /// Quota of the key's own: UNITS/PERIOD, period day, week, month or total (e.g. 10000/month)
    #[arg(long, value_parser = super::plans::parse_quota, value_name = "N/PERIOD")]
    quota: Option<Value>,
    /// Allowed client IP range (CIDR); repeat for several; replaces the list on update
    #[arg(long = "allowed-ip", value_name = "CIDR")]
    allowed_ips: Vec<String>,
    /// Allowed route: /prefix, /prefix:GET,HEAD, or //host/prefix:GET for one host only; repeat for several; replaces the list on update
    #[arg(long = "allowed-route", value_parser = parse_route, value_name = "ROUTE")]
    allowed_routes: Vec<Value>,
    /// Free-form JSON object; replaces the metadata on update
    #[arg(long, value_parser = parse_metadata, value_name = "JSON")]
    metadata: Option<Value>,
}

/// What `update` may change; only the options given are sent.
#[derive(clap::Args, Debug)]
pub struct Changes {
    /// New name
    #[arg(long)]
    name: Option<String>,
    /// New description
    #[arg(long)]
    description: Option<String>,
    /// New permission
    #[arg(long, value_enum)]
    permission: Option<Permission>,
    /// Remove the expiry: the key never expires
    #[arg(long, conflicts_with_all = ["expires_at", "expires_in"])]
    no_expiry: bool,
    /// Remove the per-key rate limit
    #[arg(long, conflicts_with = "rate_limit")]
    no_rate_limit: bool,
    /// Remove the key's own quota
    #[arg(long, conflicts_with = "quota")]
    no_quota: bool,
    /// Remove every allowed IP range (any client IP may use the key)
    #[arg(long, conflicts_with = "allowed_ips")]
    clear_allowed_ips: bool,
    /// Remove every allowed route (the key may call any path)
    #[arg(long, conflicts_with = "allowed_routes")]
    clear_allowed_routes: bool,
    #[command(flatten)]
    limits: Limits,
}

impl Limits {
    /// Adds the set fields to a request body; the list flags only when given,
    /// so that `update` leaves unmentioned lists alone.
    pub fn fill(self, body: &mut Map<String, Value>) -> Result<(), CliError> {
        if let Some(at) = self.expires_at {
            body.insert("expires_at".into(), Value::String(at));
        }
        if let Some(seconds) = self.expires_in {
            body.insert("expires_at".into(), Value::String(time_in(seconds)?));
        }
        if let Some(limit) = self.rate_limit {
            body.insert("rate_limit".into(), limit);
        }
        if let Some(quota) = self.quota {
            body.insert("quota".into(), quota);
        }
        if !self.allowed_ips.is_empty() {
            body.insert("allowed_ips".into(), json!(self.allowed_ips));
        }
        if !self.allowed_routes.is_empty() {
            body.insert("allowed_routes".into(), Value::Array(self.allowed_routes));
        }
        if let Some(metadata) = self.metadata {
            body.insert("metadata".into(), metadata);
        }
        Ok(())
    }
}

impl Changes {
    /// The PATCH body: null clears a field, an empty list lifts a restriction.
    pub fn into_body(self) -> Result<Map<String, Value>, CliError> {
        let mut body = Map::new();
        if let Some(n) = self.name {
            body.insert("name".into(), Value::String(n));
        }
        if let Some(d) = self.description {
            body.insert("description".into(), Value::String(d));
        }
        if let Some(p) = self.permission {
            body.insert("permission".into(), Value::String(name(p)));
        }
        let clears = [
            (self.no_expiry, "expires_at", Value::Null),
            (self.no_rate_limit, "rate_limit", Value::Null),
            (self.no_quota, "quota", Value::Null),
            (self.clear_allowed_ips, "allowed_ips", json!([])),
            (self.clear_allowed_routes, "allowed_routes", json!([])),
        ];
        for (set, field, value) in clears {
            if set {
                body.insert(field.into(), value);
            }
        }
        self.limits.fill(&mut body)?;
        Ok(body)
    }
}

/// Parses `30d`, `12h`, `90m`, `45s` or `2w` into seconds.
pub fn parse_duration(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let unit_seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        "w" => 604_800,
        "" => return Err(format!("{text:?} needs a unit: s, m, h, d or w (e.g. 30d)")),
        _ => return Err(format!("unknown unit {unit:?} in {text:?}: use s, m, h, d or w (e.g. 30d)")),
    };
    let count: u64 = digits.parse().map_err(|_| format!("{text:?} is not a duration like 30d, 12h or 90m"))?;
    if count == 0 {
        return Err("a duration must be longer than zero".into());
    }
    count.checked_mul(unit_seconds).ok_or_else(|| format!("{text:?} is too long"))
}

/// Parses an RFC 3339 time and returns it normalised to UTC, as the API stores it.
pub fn parse_time(text: &str) -> Result<String, String> {
    let t = OffsetDateTime::parse(text.trim(), &Rfc3339)
        .map_err(|e| format!("{text:?} is not an RFC 3339 time like 2030-01-31T23:59:00Z: {e}"))?;
    format_time(t.to_offset(time::UtcOffset::UTC))
}

/// The RFC 3339 UTC time `seconds` from now (for `--expires-in`).
pub fn time_in(seconds: u64) -> Result<String, CliError> {
    let seconds = i64::try_from(seconds).map_err(|_| CliError::Usage("duration too long".into()))?;
    OffsetDateTime::now_utc()
        .checked_add(time::Duration::seconds(seconds))
        .ok_or_else(|| CliError::Usage("duration too long".into()))
        .and_then(|t| format_time(t).map_err(CliError::Usage))
}

fn format_time(t: OffsetDateTime) -> Result<String, String> {
    // Whole seconds: sub-second precision means nothing for an expiry.
    let t = t.replace_nanosecond(0).map_err(|e| e.to_string())?;
    t.format(&Rfc3339).map_err(|e| e.to_string())
}

/// Parses a `--metadata` value: a JSON object.
pub fn parse_metadata(text: &str) -> Result<Value, String> {
    match serde_json::from_str::<Value>(text) {
        Ok(v @ Value::Object(_)) => Ok(v),
        Ok(_) => Err("metadata must be a JSON object, e.g. '{\"team\":\"billing\"}'".into()),
        Err(e) => Err(format!("metadata is not valid JSON: {e}")),
    }
}

/// Parses `--rate-limit`: `100/60s`, `1000/h` (a bare unit means one of it).
pub fn parse_rate_limit(text: &str) -> Result<Value, String> {
    let Some((requests, per)) = text.trim().split_once('/') else {
        return Err(format!("{text:?} is not a rate limit like 100/60s"));
    };
    let requests: u64 = requests
        .trim()
        .parse()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("{text:?}: the request count must be a positive whole number"))?;
    let per = per.trim();
    let per_seconds = if per.starts_with(|c: char| c.is_ascii_digit()) {
        parse_duration(per)?
    } else {
        parse_duration(&format!("1{per}"))?
    };
    Ok(json!({ "requests": requests, "per_seconds": per_seconds }))
}

const METHODS: [&str; 9] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"];

/// Parses `--allowed-route`: `/prefix` or `/prefix:GET,HEAD`. Paths may hold
/// a colon (`/v1/items:batch`), so only a suffix of known methods is taken as
/// a method list; an upper-case suffix that is not one is a typo, refused.
pub fn parse_route(text: &str) -> Result<Value, String> {
    let text = text.trim();
    // `//host/prefix` names a host, as a URL's authority would.
    let (host, route) = match text.strip_prefix("//") {
        Some(rest) => match rest.find('/') {
            Some(slash) if slash > 0 => (Some(&rest[..slash]), &rest[slash..]),
            _ => return Err(format!("{text:?}: a host route is //host/prefix (e.g. //api.example.com/v1:GET)")),
        },
        None => (None, text),
    };
    if !route.starts_with('/') {
        return Err(format!("{text:?}: a route starts with / (e.g. /v1/reports:GET,HEAD)"));
    }
    let mut rule = json!({ "path_prefix": route, "methods": null });
    if let Some((path, suffix)) = route.rsplit_once(':') {
        let methods: Vec<String> = suffix.split(',').map(|m| m.trim().to_ascii_uppercase()).collect();
        if methods.iter().all(|m| METHODS.contains(&m.as_str())) {
            rule = json!({ "path_prefix": path, "methods": methods });
        } else if suffix.chars().all(|c| c.is_ascii_uppercase() || c == ',') {
            return Err(format!("{text:?}: unknown method in {suffix:?}; known: {}", METHODS.join(",")));
        }
    }
    if let (Some(host), Value::Object(fields)) = (host, &mut rule) {
        fields.insert("host".into(), Value::String(host.to_owned()));
    }
    Ok(rule)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_one_unit() {
        assert_eq!(parse_duration("90m"), Ok(5_400));
        assert_eq!(parse_duration("12h"), Ok(43_200));
        assert_eq!(parse_duration("30d"), Ok(2_592_000));
        assert_eq!(parse_duration("2w"), Ok(1_209_600));
        assert_eq!(parse_duration("45s"), Ok(45));
        for bad in ["", "30", "d", "0d", "1.5h", "3y", "-1d", "1h30m"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn times_are_normalised_to_utc_whole_seconds() {
        assert_eq!(parse_time("2030-01-31T23:59:00Z").as_deref(), Ok("2030-01-31T23:59:00Z"));
        assert_eq!(parse_time("2030-02-01T01:59:00.5+02:00").as_deref(), Ok("2030-01-31T23:59:00Z"));
        assert!(parse_time("2030-01-31").is_err());
        assert!(parse_time("tomorrow").is_err());
    }

    #[test]
    fn expires_in_is_in_the_future() {
        let later = time_in(3_600).expect("time");
        let now = OffsetDateTime::now_utc().format(&Rfc3339).expect("format");
        assert!(later > now, "{later} should be after {now}");
        assert!(later.ends_with('Z'));
    }

    #[test]
    fn metadata_must_be_an_object() {
        assert_eq!(parse_metadata(r#"{"team":"a"}"#), Ok(serde_json::json!({"team": "a"})));
        assert!(parse_metadata("[1]").is_err());
        assert!(parse_metadata("{").is_err());
    }

    #[test]
    fn rate_limits_take_count_and_window() {
        assert_eq!(parse_rate_limit("100/60s"), Ok(json!({"requests": 100, "per_seconds": 60})));
        assert_eq!(parse_rate_limit("1000/h"), Ok(json!({"requests": 1000, "per_seconds": 3600})));
        assert_eq!(parse_rate_limit("5/2m"), Ok(json!({"requests": 5, "per_seconds": 120})));
        for bad in ["100", "0/60s", "x/60s", "100/60", "100/", "100/1y"] {
            assert!(parse_rate_limit(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn routes_take_an_optional_method_list() {
        assert_eq!(parse_route("/v1/reports"), Ok(json!({"path_prefix": "/v1/reports", "methods": null})));
        assert_eq!(
            parse_route("/v1/reports:GET,head"),
            Ok(json!({"path_prefix": "/v1/reports", "methods": ["GET", "HEAD"]}))
        );
        assert_eq!(parse_route("/v1/items:batch"), Ok(json!({"path_prefix": "/v1/items:batch", "methods": null})));
        assert_eq!(
            parse_route("/v1/items:batch:POST"),
            Ok(json!({"path_prefix": "/v1/items:batch", "methods": ["POST"]}))
        );
        assert_eq!(
            parse_route("//api.example.com/v1:GET"),
            Ok(json!({"path_prefix": "/v1", "methods": ["GET"], "host": "api.example.com"}))
        );
        assert!(parse_route("//api.example.com").is_err() && parse_route("///v1").is_err());
        assert!(parse_route("/v1:GTE").is_err());
        assert!(parse_route("v1/reports").is_err());
    }

    #[test]
    fn enum_values_use_the_api_spelling() {
        assert_eq!(name(Permission::Write), "write");
        assert_eq!(name(Environment::Test), "test");
        assert_eq!(name(Status::Revoked), "revoked");
    }
}
