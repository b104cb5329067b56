//! A key's restrictions: the client ranges and routes it may be used from
//! and on. One parse turns the stored or submitted lists into the compiled
//! `Restrictions` the decision reads; the admin API validates with it and
//! the store's reload builds with it, so what the admin accepted is what the
//! proxy enforces. Owns no I/O.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::cidr::IpNet;
use super::route::{Hostname, PathPrefix};

/// Most entries in each list.
pub const MAX_ITEMS: usize = 100;

/// A route a key may call as the admin API and the store spell it: a path
/// prefix and, optionally, only some methods.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({ "host": null, "path_prefix": "/v1/reports", "methods": ["GET"] }))]
pub struct RouteRule {
    /// Starts with `/`.
    pub path_prefix: String,
    /// HTTP methods (stored upper-case); empty means every method the
    /// key's permission allows.
    #[serde(default)]
    pub methods: Vec<String>,
    /// Only requests for this host (`Host`, lowercase, without port or
    /// trailing dot); null or absent means any host. Always present in
    /// records, like `methods`.
    #[serde(default)]
    pub host: Option<String>,
}

/// A key's allowed client ranges and routes (empty = no restriction).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Restrictions {
    pub ips: Vec<IpNet>,
    pub routes: Vec<RouteRestriction>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteRestriction {
    /// `None`: any host.
    pub host: Option<Hostname>,
    pub path_prefix: PathPrefix,
    /// Empty: every method the key's permission allows.
    pub methods: Vec<http::Method>,
}

impl RouteRestriction {
    /// `host` is the request's, as `route::request_host` gives it.
    pub(super) fn allows(&self, method: &http::Method, path: &str, host: Option<&str>) -> bool {
        self.host.as_ref().is_none_or(|wanted| host.is_some_and(|h| wanted.matches(h)))
            && self.path_prefix.matches(path)
            && (self.methods.is_empty() || self.methods.iter().any(|m| m == method))
    }

    /// The rule as stored and shown (methods upper-case).
    pub fn rule(&self) -> RouteRule {
        RouteRule {
            path_prefix: self.path_prefix.to_string(),
            methods: self.methods.iter().map(|m| m.as_str().to_owned()).collect(),
            host: self.host.as_ref().map(ToString::to_string),
        }
    }
}

/// A restriction entry that cannot be enforced, with the field path it is
/// at (`allowed_routes[0].methods[1]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestrictionError {
    pub field: String,
    pub message: String,
}

impl fmt::Display for RestrictionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl std::error::Error for RestrictionError {}

fn fail(field: String, message: impl Into<String>) -> RestrictionError {
    RestrictionError { field, message: message.into() }
}

/// `allowed_ips`, parsed (`10.1.2.3/8` becomes `10.0.0.0/8` when shown).
pub fn parse_ips(values: &[String]) -> Result<Vec<IpNet>, RestrictionError> {
    if values.len() > MAX_ITEMS {
        return Err(fail("allowed_ips".into(), format!("at most {MAX_ITEMS} ranges")));
    }
    values.iter().enumerate().map(|(i, v)| IpNet::parse(v).map_err(|m| fail(format!("allowed_ips[{i}]"), m))).collect()
}

/// `allowed_routes`, parsed; methods are read case-insensitively.
pub fn parse_routes(values: &[RouteRule]) -> Result<Vec<RouteRestriction>, RestrictionError> {
    if values.len() > MAX_ITEMS {
        return Err(fail("allowed_routes".into(), format!("at most {MAX_ITEMS} routes")));
    }
    let mut out = Vec::with_capacity(values.len());
    for (i, rule) in values.iter().enumerate() {
        let path_prefix =
            PathPrefix::parse(&rule.path_prefix).map_err(|m| fail(format!("allowed_routes[{i}].path_prefix"), m))?;
        let host = rule
            .host
            .as_deref()
            .map(Hostname::parse)
            .transpose()
            .map_err(|m| fail(format!("allowed_routes[{i}].host"), m))?;
        let methods = rule
            .methods
            .iter()
            .enumerate()
            .map(|(j, m)| {
                let upper = m.to_ascii_uppercase();
                http::Method::from_bytes(upper.as_bytes())
                    .ok()
                    .filter(|_| !upper.is_empty())
                    .ok_or_else(|| fail(format!("allowed_routes[{i}].methods[{j}]"), "not an HTTP method"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        out.push(RouteRestriction { host, path_prefix, methods });
    }
    Ok(out)
}

impl Restrictions {
    /// The compiled restrictions of a key's lists; `None` when both are
    /// empty, so unrestricted keys carry no allocation.
    pub fn parse(ips: &[String], routes: &[RouteRule]) -> Result<Option<Arc<Restrictions>>, RestrictionError> {
        if ips.is_empty() && routes.is_empty() {
            return Ok(None);
        }
        Ok(Some(Arc::new(Restrictions { ips: parse_ips(ips)?, routes: parse_routes(routes)? })))
    }
}

/// Whether a path means what it says to any upstream: no `.` or `..`
/// segment (also with `;parameters`), no backslash, and no percent escape
/// that hides one. A route restriction matches the raw path, and an upstream
/// that normalises `/v1/reports/../admin` would serve `/admin`; so for keys
/// with route restrictions, a path any decoder could turn into something
/// else is refused.
pub(super) fn plain_path(path: &str) -> bool {
    let bytes = path.as_bytes();
    !bytes.contains(&b'\\')
        && !hidden_escape(bytes)
        && path.split('/').all(|segment| {
            let name = segment.split(';').next().unwrap_or("");
            name != "." && name != ".."
        })
}

/// Whether the path percent-encodes something a decoder could act on:
/// a dot, slash or backslash (`%2e`, `%2f`, `%5c`); a NUL (`%00`, which
/// ends the path for C-string upstreams); an encoded `%` that decodes to
/// one of those or to another escape on a second pass (`%252e`, `%2525`,
/// `%25%32%65`); or an overlong UTF-8 lead (`%c0`, `%c1`, `%e0%80`–`%e0%9f`,
/// `%f0%80`–`%f0%8f`), which lenient decoders read as `.` or `/`.
fn hidden_escape(bytes: &[u8]) -> bool {
    let escape = |i: usize| -> Option<u8> {
        if bytes.get(i) != Some(&b'%') {
            return None;
        }
        let hex = |b: u8| (b as char).to_digit(16);
        Some((hex(*bytes.get(i + 1)?)? * 16 + hex(*bytes.get(i + 2)?)?) as u8)
    };
    (0..bytes.len()).any(|i| match escape(i) {
        Some(b'.' | b'/' | b'\\' | 0 | 0xc0 | 0xc1) => true,
        Some(b'%') => {
            bytes.get(i + 3) == Some(&b'%')
                || bytes.get(i + 3..i + 5).is_some_and(|next| {
                    let next = [next[0].to_ascii_lowercase(), next[1].to_ascii_lowercase()];
                    matches!(&next, b"2e" | b"2f" | b"5c" | b"25" | b"00")
                })
        }
        Some(0xe0) => escape(i + 3).is_some_and(|b| (0x80..=0x9f).contains(&b)),
        Some(0xf0) => escape(i + 3).is_some_and(|b| (0x80..=0x8f).contains(&b)),
        _ => false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(prefix: &str, methods: &[&str]) -> RouteRule {
        RouteRule { path_prefix: prefix.into(), methods: methods.iter().map(|m| (*m).to_owned()).collect(), host: None }
    }

    #[test]
    fn each_refusal_names_its_field() {
        let field = |ips: &[&str], routes: &[RouteRule]| {
            let ips: Vec<String> = ips.iter().map(|s| (*s).to_owned()).collect();
            Restrictions::parse(&ips, routes).expect_err("invalid").field
        };
        assert_eq!(field(&["10.0.0.0/8", "x"], &[]), "allowed_ips[1]");
        assert_eq!(field(&[], &[rule("/a", &["GET", "g e t"])]), "allowed_routes[0].methods[1]");
        assert_eq!(field(&[], &[rule("/a", &[]), rule("a", &[])]), "allowed_routes[1].path_prefix");
        assert_eq!(field(&[], &[rule("/a", &[""])]), "allowed_routes[0].methods[0]");
        let bad_host = RouteRule { host: Some("a b".into()), ..rule("/a", &[]) };
        assert_eq!(field(&[], &[bad_host]), "allowed_routes[0].host");
    }

    #[test]
    fn parsed_lists_read_back_normalised() {
        let r = Restrictions::parse(&["10.1.2.3/8".into()], &[rule("/r", &["get"])]).expect("valid").expect("some");
        assert_eq!(r.ips[0].to_string(), "10.0.0.0/8");
        assert_eq!(r.routes[0].rule(), rule("/r", &["GET"]));
        assert_eq!(Restrictions::parse(&[], &[]), Ok(None));
        let hosted = RouteRule { host: Some("API.Example.com:443".into()), ..rule("/r", &[]) };
        let r = Restrictions::parse(&[], &[hosted]).expect("valid").expect("some");
        assert_eq!(r.routes[0].rule().host.as_deref(), Some("api.example.com"));
    }
}
