//! Validation of write requests that types alone cannot express. Each check
//! names the field it refuses.

use super::ServiceError;
use crate::clock::parse_rfc3339;
use crate::keys::decision::{MAX_PER_SECONDS, MAX_REQUESTS};
use crate::keys::restrictions::{self, RestrictionError};
use crate::store::{Metadata, QuotaSpec, RateLimit, RouteRule};

pub const MAX_NAME: usize = 200;
pub const MAX_DESCRIPTION: usize = 1_000;
/// Serialized size limit of a key's `metadata` object.
pub const MAX_METADATA_BYTES: usize = 4_096;
/// Longest grace period a rotation may give the old secret: 30 days.
pub const MAX_GRACE_SECONDS: u64 = 30 * 24 * 3600;

pub fn grace_period(seconds: u64) -> Result<u64, ServiceError> {
    if seconds > MAX_GRACE_SECONDS {
        return Err(ServiceError::invalid(
            "grace_period_seconds",
            format!("must be at most {MAX_GRACE_SECONDS} (30 days)"),
        ));
    }
    Ok(seconds)
}

pub fn name(field: &str, value: &str) -> Result<String, ServiceError> {
    let trimmed = value.trim();
    if trimmed.is_empty() {
        return Err(ServiceError::invalid(field, "must not be empty"));
    }
    if trimmed.chars().count() > MAX_NAME {
        return Err(ServiceError::invalid(field, format!("must be at most {MAX_NAME} characters")));
    }
    if trimmed.chars().any(char::is_control) {
        return Err(ServiceError::invalid(field, "must not contain control characters"));
    }
    Ok(trimmed.to_owned())
}

pub fn description(value: Option<String>) -> Result<Option<String>, ServiceError> {
    match value {
        Some(d) if d.chars().count() > MAX_DESCRIPTION => {
            Err(ServiceError::invalid("description", format!("must be at most {MAX_DESCRIPTION} characters")))
        }
        Some(d) if d.trim().is_empty() => Ok(None),
        other => Ok(other),
    }
}

/// An RFC 3339 time in the future, as unix ms.
pub fn expires_at(value: &str, now_ms: i64) -> Result<i64, ServiceError> {
    let at = parse_rfc3339(value)
        .ok_or_else(|| ServiceError::invalid("expires_at", format!("not an RFC 3339 time: {value:?}")))?;
    if at <= now_ms {
        return Err(ServiceError::invalid("expires_at", "must be in the future"));
    }
    Ok(at)
}

/// Within bounds every limiter can enforce (`keys::decision`): a limit is
/// never dropped for being too fine to build.
pub fn rate_limit(value: Option<RateLimit>) -> Result<Option<RateLimit>, ServiceError> {
    if let Some(r) = value {
        if !(1..=MAX_REQUESTS).contains(&r.requests) {
            return Err(ServiceError::invalid("rate_limit.requests", format!("must be between 1 and {MAX_REQUESTS}")));
        }
        if !(1..=MAX_PER_SECONDS).contains(&r.per_seconds) {
            return Err(ServiceError::invalid(
                "rate_limit.per_seconds",
                format!("must be between 1 and {MAX_PER_SECONDS}"),
            ));
        }
    }
    Ok(value)
}

/// A quota as an API caller or the CLI gives it: a limit within bounds.
pub fn quota(value: Option<QuotaSpec>) -> Result<Option<QuotaSpec>, ServiceError> {
    if let Some(q) = value {
        q.validate().map_err(|m| ServiceError::invalid("quota.limit", m))?;
    }
    Ok(value)
}

/// CIDR ranges, parsed as the reload will parse them and stored
/// normalised (`10.1.2.3/8` becomes `10.0.0.0/8`).
pub fn allowed_ips(values: Vec<String>) -> Result<Vec<String>, ServiceError> {
    Ok(restrictions::parse_ips(&values).map_err(refused)?.iter().map(ToString::to_string).collect())
}

/// Routes, parsed as the reload will parse them and stored normalised
/// (methods upper-case).
pub fn allowed_routes(values: Vec<RouteRule>) -> Result<Vec<RouteRule>, ServiceError> {
    Ok(restrictions::parse_routes(&values).map_err(refused)?.iter().map(|r| r.rule()).collect())
}

fn refused(e: RestrictionError) -> ServiceError {
    ServiceError::invalid(&e.field, e.message)
}

pub fn metadata(value: Metadata) -> Result<Metadata, ServiceError> {
    let size = serde_json::to_vec(&value).map(|v| v.len()).unwrap_or(usize::MAX);
    if size > MAX_METADATA_BYTES {
        return Err(ServiceError::invalid("metadata", format!("must be at most {MAX_METADATA_BYTES} bytes of JSON")));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_check_names_its_field() {
        let field = |e: ServiceError| match e {
            ServiceError::Invalid { field, .. } => field,
            other => panic!("{other:?}"),
        };
        assert_eq!(field(name("name", "  ").unwrap_err()), "name");
        assert_eq!(field(expires_at("2000-01-01T00:00:00Z", crate::clock::now_ms()).unwrap_err()), "expires_at");
        assert_eq!(field(allowed_ips(vec!["10.0.0.0/8".into(), "x".into()]).unwrap_err()), "allowed_ips[1]");
        let rule = RouteRule { path_prefix: "/a".into(), methods: vec!["g e t".into()], host: None };
        assert_eq!(field(allowed_routes(vec![rule]).unwrap_err()), "allowed_routes[0].methods[0]");
        let mut big = Metadata::new();
        big.insert("k".into(), serde_json::Value::String("x".repeat(5000)));
        assert_eq!(field(metadata(big).unwrap_err()), "metadata");
        assert_eq!(allowed_ips(vec!["10.1.2.3/8".into()]).unwrap(), vec!["10.0.0.0/8".to_string()]);
    }
}
