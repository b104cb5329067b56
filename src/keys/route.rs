//! What a route names, parsed once: a segment-aware path prefix and a
//! normalised host. The proxy's routing table and a key's `allowed_routes`
//! both match with these, so a route means the same to both. No I/O.

use std::fmt;

/// A path prefix that matches whole segments: `/v2` matches `/v2` and
/// `/v2/x`, not `/v20`; a prefix ending in `/` (`/v1/orders/`) matches only
/// below it; `/` matches every path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathPrefix(String);

impl PathPrefix {
    /// Longest prefix accepted (admin input and config alike).
    pub const MAX_LEN: usize = 1_000;

    pub fn parse(text: &str) -> Result<PathPrefix, String> {
        if !text.starts_with('/') {
            return Err(format!("must start with \"/\", got {text:?}"));
        }
        if text.len() > Self::MAX_LEN {
            return Err(format!("must be at most {} bytes", Self::MAX_LEN));
        }
        Ok(PathPrefix(text.to_owned()))
    }

    /// `/`, which every path starts with.
    pub fn root() -> PathPrefix {
        PathPrefix("/".into())
    }

    /// The same prefix without its trailing `/` (the root stays `/`): how
    /// config routes read, so `/v2/admin/` also takes `/v2/admin`.
    pub fn without_trailing_slash(&self) -> PathPrefix {
        let trimmed = self.0.trim_end_matches('/');
        PathPrefix(if trimmed.is_empty() { "/".into() } else { trimmed.to_owned() })
    }

    pub fn matches(&self, path: &str) -> bool {
        let prefix = self.0.as_str();
        path.starts_with(prefix)
            && (prefix.ends_with('/') || path.len() == prefix.len() || path.as_bytes()[prefix.len()] == b'/')
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PathPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A host name as routes name it: lowercase, without port or trailing dot
/// (`API.example.com.:8443` is `api.example.com`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hostname(String);

impl Hostname {
    pub fn parse(text: &str) -> Result<Hostname, String> {
        let host = request_host(text.trim());
        let ok = if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
            v6.parse::<std::net::Ipv6Addr>().is_ok()
        } else {
            !host.is_empty()
                && host.len() <= 253
                && host.split('.').all(|label| {
                    !label.is_empty()
                        && label.len() <= 63
                        && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                })
        };
        if !ok {
            return Err(format!("not a host name: {text:?}"));
        }
        Ok(Hostname(host.to_ascii_lowercase()))
    }

    /// Whether a request's host (as `request_host` gives it) is this one.
    pub fn matches(&self, request_host: &str) -> bool {
        request_host.eq_ignore_ascii_case(&self.0)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Hostname {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A request's `Host` without port and trailing dot, case kept (compared
/// ignoring case): `api.example.com.:8080` → `api.example.com`,
/// `[::1]:80` → `[::1]`. A trailing dot names the same host in DNS; kept,
/// `api.example.com.` would miss every host route.
pub fn request_host(host: &str) -> &str {
    let host = if host.starts_with('[') {
        host.find(']').map_or(host, |end| &host[..=end])
    } else {
        match host.rsplit_once(':') {
            Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
            _ => host,
        }
    };
    host.strip_suffix('.').unwrap_or(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prefix(p: &str) -> PathPrefix {
        PathPrefix::parse(p).expect("prefix")
    }

    #[test]
    fn prefixes_match_whole_segments() {
        assert!(prefix("/v2").matches("/v2") && prefix("/v2").matches("/v2/x"));
        assert!(!prefix("/v2").matches("/v20"));
        assert!(prefix("/v1/orders/").matches("/v1/orders/7") && !prefix("/v1/orders/").matches("/v1/orders"));
        assert!(prefix("/").matches("/anything"));
        assert_eq!(prefix("/v2/admin/").without_trailing_slash().as_str(), "/v2/admin");
        assert_eq!(prefix("//").without_trailing_slash().as_str(), "/");
        assert!(PathPrefix::parse("v1").is_err());
    }

    #[test]
    fn hosts_are_normalised_the_same_way_on_both_sides() {
        assert_eq!(request_host("api.example.com:8443"), "api.example.com");
        assert_eq!(request_host("[::1]:80"), "[::1]");
        assert_eq!(request_host("h"), "h");
        assert_eq!(request_host("api.example.com."), "api.example.com");
        assert_eq!(Hostname::parse("Api.Example.com.").expect("host").as_str(), "api.example.com");
        let host = Hostname::parse("API.Example.com").expect("host");
        assert_eq!(host.as_str(), "api.example.com");
        assert!(host.matches(request_host("Api.Example.Com:80")));
        assert!(!host.matches(request_host("api.example.com.evil")));
        for bad in ["", ".", "a..b", "a b", "a/b", "[nope]"] {
            assert!(Hostname::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(Hostname::parse("[::1]:80").expect("v6").as_str(), "[::1]");
    }
}
