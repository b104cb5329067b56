//! Which changed fields a configuration reload applies and which need a
//! restart: the two configurations are compared field by field (through
//! their serialized form, so a section added later is covered without
//! listing it here) and every changed field outside `LIVE` is named.
//! Pure: reads no file and changes nothing.

use serde_json::Value;

use crate::config::Config;

/// Fields (and everything under them) a reload puts in force. Everything
/// else — listen addresses, the store, the admin listener, listener
/// timeouts and limits, threads, key prefixes, usage, metrics, turning TLS
/// on or off, the forward-auth listeners (`authz.*`) — is fixed when the
/// listeners and the store are set up.
pub const LIVE: &[&str] = &[
    "routes",
    "upstream",
    "limits",
    "proxy.max_body_bytes",
    "proxy.body_read_timeout_ms",
    "proxy.key_headers",
    "proxy.key_query_param",
    "proxy.strip_credentials",
    "proxy.trusted_proxies",
    "proxy.underscore_headers",
    "proxy.override_headers",
    // Turning identity tokens on or off (`proxy.identity_token` itself)
    // needs a restart; what they say and the key file do not.
    "proxy.identity_token.ttl_seconds",
    "proxy.identity_token.metadata",
    "proxy.identity_token.signing_key_file",
    "proxy.tls.cert_file",
    "proxy.tls.key_file",
    "admin.tls.cert_file",
    "admin.tls.key_file",
    "log.level",
    "log.format",
];

/// The fields that differ between `a` and `b`, as config paths
/// (`proxy.listen`, `routes`). Lists are compared whole.
pub fn changed(a: &Config, b: &Config) -> Vec<String> {
    let (Ok(a), Ok(b)) = (serde_json::to_value(a), serde_json::to_value(b)) else {
        return vec!["(file)".into()];
    };
    let mut out = Vec::new();
    diff(&a, &b, &mut String::new(), &mut out);
    out
}

/// Whether a change at `path` is applied by a reload.
pub fn is_live(path: &str) -> bool {
    LIVE.iter().any(|live| {
        path == *live || path.strip_prefix(live).is_some_and(|rest| rest.starts_with('.') || rest.starts_with('['))
    })
}

/// The changed fields between the running `started` config and `next`
/// that only a restart applies.
pub fn needs_restart(started: &Config, next: &Config) -> Vec<String> {
    changed(started, next).into_iter().filter(|path| !is_live(path)).collect()
}

fn diff(a: &Value, b: &Value, path: &mut String, out: &mut Vec<String>) {
    match (a, b) {
        (Value::Object(a), Value::Object(b)) => {
            let keys = a.keys().chain(b.keys().filter(|k| !a.contains_key(*k)));
            for key in keys {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(key);
                diff(a.get(key).unwrap_or(&Value::Null), b.get(key).unwrap_or(&Value::Null), path, out);
                path.truncate(len);
            }
        }
        (a, b) if a != b => out.push(path.clone()),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{RouteConfig, TlsConfig};

    fn sorted(mut fields: Vec<String>) -> Vec<String> {
        fields.sort();
        fields
    }

    #[test]
    fn listen_addresses_and_the_store_need_a_restart_routes_do_not() {
        let a = Config::default();
        let mut b = a.clone();
        b.proxy.listen = "127.0.0.1:1".parse().expect("addr");
        b.store.url = "sqlite://other.db".into();
        b.routes.push(RouteConfig { path_prefix: "/v2".into(), upstream: "http://x".into(), ..Default::default() });
        b.proxy.key_headers = vec!["x-key".into()];
        b.limits.failed_auth_burst = 1;
        b.upstream.url = "http://elsewhere".into();
        assert_eq!(sorted(needs_restart(&a, &b)), ["proxy.listen", "store.url"]);
        assert_eq!(
            sorted(changed(&a, &b)),
            ["limits.failed_auth_burst", "proxy.key_headers", "proxy.listen", "routes", "store.url", "upstream.url"]
        );
    }

    #[test]
    fn new_certificate_files_reload_but_turning_tls_on_needs_a_restart() {
        let tls = |c: &str| TlsConfig { cert_file: c.into(), key_file: "k.pem".into() };
        let mut a = Config::default();
        let mut b = a.clone();
        b.proxy.tls = Some(tls("c.pem"));
        assert_eq!(needs_restart(&a, &b), ["proxy.tls"]);
        a.proxy.tls = Some(tls("old.pem"));
        assert_eq!(needs_restart(&a, &b), Vec::<String>::new());
        assert_eq!(changed(&a, &b), ["proxy.tls.cert_file"]);
        assert!(!is_live("proxy.tls") && !is_live("proxy.listen") && !is_live("routesx"));
        assert!(is_live("routes") && is_live("upstream.url") && is_live("log.level"));
    }

    #[test]
    fn the_forward_auth_listeners_need_a_restart() {
        let a = Config::default();
        let mut b = a.clone();
        b.authz.listen = Some("127.0.0.1:1".parse().expect("addr"));
        b.authz.grpc_listen = Some("127.0.0.1:2".parse().expect("addr"));
        assert_eq!(sorted(needs_restart(&a, &b)), ["authz.grpc_listen", "authz.listen"]);
    }
}
