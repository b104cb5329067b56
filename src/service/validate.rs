//! Validation of write requests that types alone cannot express. Each check
//! names the field it refuses.

use super::ServiceError;
use crate::clock::parse_rfc3339;
use crate::keys::cidr::IpNet;
use crate::store::{Metadata, RateLimit, RouteRule};

pub const MAX_NAME: usize = 200;
pub const MAX_DESCRIPTION: usize = 1_000;
/// Serialized size limit of a key's `metadata` object.
pub const MAX_METADATA_BYTES: usize = 4_096;
pub const MAX_LIST_ITEMS: usize = 100;
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

pub fn rate_limit(value: Option<RateLimit>) -> Result<Option<RateLimit>, ServiceError> {
    if let Some(r) = value {
        if r.requests == 0 {
            return Err(ServiceError::invalid("rate_limit.requests", "must be at least 1"));
        }
        if r.per_seconds == 0 || r.per_seconds > 86_400 {
            return Err(ServiceError::invalid("rate_limit.per_seconds", "must be between 1 and 86400"));
        }
    }
    Ok(value)
}

/// CIDR ranges, normalised (`10.1.2.3/8` becomes `10.0.0.0/8`).
pub fn allowed_ips(values: Vec<String>) -> Result<Vec<String>, ServiceError> {
    if values.len() > MAX_LIST_ITEMS {
        return Err(ServiceError::invalid("allowed_ips", format!("at most {MAX_LIST_ITEMS} ranges")));
    }
    values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            IpNet::parse(v).map(|n| n.to_string()).map_err(|m| ServiceError::invalid(&format!("allowed_ips[{i}]"), m))
        })
        .collect()
}

pub fn allowed_routes(values: Vec<RouteRule>) -> Result<Vec<RouteRule>, ServiceError> {
    if values.len() > MAX_LIST_ITEMS {
        return Err(ServiceError::invalid("allowed_routes", format!("at most {MAX_LIST_ITEMS} routes")));
    }
    let mut out = Vec::with_capacity(values.len());
    for (i, mut rule) in values.into_iter().enumerate() {
        if !rule.path_prefix.starts_with('/') || rule.path_prefix.len() > 1_000 {
            return Err(ServiceError::invalid(&format!("allowed_routes[{i}].path_prefix"), "must start with \"/\""));
        }
        for (j, m) in rule.methods.iter_mut().enumerate() {
            *m = m.to_ascii_uppercase();
            if http::Method::from_bytes(m.as_bytes()).is_err() || m.is_empty() {
                return Err(ServiceError::invalid(&format!("allowed_routes[{i}].methods[{j}]"), "not an HTTP method"));
            }
        }
        out.push(rule);
    }
    Ok(out)
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
        let rule = RouteRule { path_prefix: "/a".into(), methods: vec!["g e t".into()] };
        assert_eq!(field(allowed_routes(vec![rule]).unwrap_err()), "allowed_routes[0].methods[0]");
        let mut big = Metadata::new();
        big.insert("k".into(), serde_json::Value::String("x".repeat(5000)));
        assert_eq!(field(metadata(big).unwrap_err()), "metadata");
        assert_eq!(allowed_ips(vec!["10.1.2.3/8".into()]).unwrap(), vec!["10.0.0.0/8".to_string()]);
    }
}
