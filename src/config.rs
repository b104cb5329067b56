//! Configuration: one YAML file, every field with a default, overridable by
//! `KEYGATE_*` environment variables (`proxy.listen` ← `KEYGATE_PROXY_LISTEN`).
//!
//! Loading parses, then validates, and collects every error with its field
//! path before refusing the file, so a user fixes them all in one pass. This
//! module reads files and the environment; it opens no socket and no store.

use std::collections::BTreeSet;
use std::fmt;
use std::net::SocketAddr;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use self::load::{apply_env, deserialize_collecting, parse_yaml};
mod authz;
mod identity;
mod limits;
mod load;
mod log;
mod redact;
mod settings;
mod telemetry;
mod validate;
mod webhooks;
pub use authz::AuthzConfig;
pub use identity::IdentityTokenConfig;
pub use limits::LimitsConfig;
pub use log::{LogConfig, LogFormat};
pub use redact::redact;
pub use settings::{RouteSettings, Settings, Upstream};
pub use telemetry::TelemetryConfig;
pub use webhooks::WebhooksConfig;

/// The whole configuration.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The listener that API clients call.
    pub proxy: ProxyConfig,
    /// The listener for the admin API, dashboard, health and metrics.
    pub admin: AdminConfig,
    /// Where keys and accounts are kept.
    pub store: StoreConfig,
    /// The default upstream: every request no route matches goes here.
    pub upstream: UpstreamConfig,
    /// Optional routes by path prefix (and host), each with its own upstream.
    /// The longest matching prefix wins.
    pub routes: Vec<RouteConfig>,
    /// Key format.
    pub keys: KeysConfig,
    /// Rate limits.
    pub limits: LimitsConfig,
    /// Usage counting.
    pub usage: UsageConfig,
    /// Prometheus metrics.
    pub metrics: MetricsConfig,
    /// Logging.
    pub log: LogConfig,
    /// Traces over OTLP.
    pub telemetry: TelemetryConfig,
    /// Forward auth for an ingress in front (nginx, Caddy, Traefik, Envoy).
    pub authz: AuthzConfig,
    /// Delivery of events to webhooks.
    pub webhooks: WebhooksConfig,
}

/// `requests` per `per_seconds`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct QuotaConfig {
    pub requests: u32,
    pub per_seconds: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct UsageConfig {
    /// How often counted usage is written to the store.
    pub flush_interval_ms: u64,
    /// Days of hourly usage (usage over time) kept in the store.
    pub retention_days: u32,
}

impl Default for UsageConfig {
    fn default() -> Self {
        UsageConfig { flush_interval_ms: 5_000, retention_days: 90 }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// Most keys with their own `keygate_key_requests_total` series; the
    /// rest are summed into `key_id="other"`.
    pub per_key_limit: usize,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig { per_key_limit: 10_000 }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ProxyConfig {
    /// Address and port to listen on.
    pub listen: SocketAddr,
    /// Serve HTTPS with this certificate (reloaded when the files change).
    pub tls: Option<TlsConfig>,
    /// A client must send its whole request head within this time.
    pub header_read_timeout_ms: u64,
    /// Longest wait for the next piece of a request body (between two
    /// reads, like nginx's `client_body_timeout`, not for the whole body);
    /// past it the request gets 408 `body_timeout` and the connection is
    /// closed.
    pub body_read_timeout_ms: u64,
    /// Largest request head (request line and headers); larger gets 431.
    pub max_header_bytes: usize,
    /// Largest request body for routes that set no limit; larger gets 413.
    /// 0 means unlimited.
    pub max_body_bytes: u64,
    /// Headers the key is read from, in order. `authorization` means
    /// `Authorization: Bearer <key>`; any other name holds the bare key.
    pub key_headers: Vec<String>,
    /// Also accept the key from this query parameter. Off by default: query
    /// strings end up in access logs.
    pub key_query_param: Option<String>,
    /// Remove the credential header before forwarding.
    pub strip_credentials: bool,
    /// Peers (CIDR) whose `X-Forwarded-For` is believed when deciding the
    /// client's address; from anyone else the direct peer address counts,
    /// `X-Forwarded-For` is replaced by it, and `Forwarded`, `X-Real-IP`,
    /// `X-Forwarded-Host` and `X-Forwarded-Port` are removed.
    pub trusted_proxies: Vec<String>,
    /// Client headers with `_` in their name: `drop` (nginx's default) or
    /// `pass`. CGI-style servers read `X_Foo` as `X-Foo`; whatever this
    /// says, a `_` spelling of a header keygate manages never passes.
    pub underscore_headers: HeaderRule,
    /// `X-HTTP-Method-Override`, `X-HTTP-Method`, `X-Method-Override`,
    /// `X-Original-URL` and `X-Rewrite-URL`: `drop`, or `pass`, where the
    /// key's permission and route restrictions must also allow the method
    /// and path they name.
    pub override_headers: HeaderRule,
    /// On SIGTERM/SIGINT, in-flight requests get this long to finish.
    pub drain_timeout_ms: u64,
    /// Threads serving the proxy port, each a single-threaded runtime with
    /// its own listening socket (SO_REUSEPORT). 0: one per CPU the process
    /// may run on.
    pub workers: usize,
    /// Also serve HTTP/2 without TLS to clients that start with the HTTP/2
    /// preface (h2c, prior knowledge). Over TLS, HTTP/2 is always offered
    /// by ALPN, so this is for plain listeners only.
    pub http2_cleartext: bool,
    /// Connections open at once on the proxy port, across its threads; at
    /// the limit, accepting pauses until one closes (new clients wait in
    /// the kernel's backlog). Mind the process's descriptor limit.
    pub max_connections: usize,
    /// Serve plain HTTP/1.1 requests on the fast path (one parse per
    /// message, the upstream exchange in the request's own task; see
    /// docs/architecture.md). What it does not handle (HTTP/1.0, upgrades,
    /// `Expect`, gRPC, `https://` and HTTP/2 upstreams) still goes to hyper.
    /// `false`: every connection is hyper's.
    pub fast_http1: bool,
    /// Sign who called into a short-lived JWT (EdDSA) the upstream gets in
    /// `X-Keygate-Identity`, checkable against `GET /.well-known/jwks.json`
    /// on the admin port. Off when absent.
    pub identity_token: Option<IdentityTokenConfig>,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            listen: SocketAddr::from(([0, 0, 0, 0], 8080)),
            tls: None,
            header_read_timeout_ms: 10_000,
            body_read_timeout_ms: 30_000,
            max_header_bytes: 32 * 1024,
            max_body_bytes: 10 * 1024 * 1024,
            key_headers: vec!["authorization".into(), "x-api-key".into()],
            key_query_param: None,
            strip_credentials: true,
            trusted_proxies: Vec::new(),
            underscore_headers: HeaderRule::Drop,
            override_headers: HeaderRule::Drop,
            drain_timeout_ms: 30_000,
            workers: 0,
            http2_cleartext: false,
            max_connections: 10_000,
            fast_http1: true,
            identity_token: None,
        }
    }
}

/// Whether a class of client headers reaches the upstream.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum HeaderRule {
    #[default]
    Drop,
    Pass,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain.
    pub cert_file: String,
    /// PEM private key.
    pub key_file: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AdminConfig {
    /// Address and port of the admin listener; loopback by default.
    pub listen: SocketAddr,
    /// Serve the admin port over HTTPS with this certificate.
    pub tls: Option<TlsConfig>,
    /// Serve `/metrics` without an admin token.
    pub public_metrics: bool,
    /// Largest admin request body; larger gets 413.
    pub max_body_bytes: usize,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 9090)),
            tls: None,
            public_metrics: true,
            max_body_bytes: 1024 * 1024,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// `sqlite://FILE` (created if missing) or `postgres://user@host/db`.
    pub url: String,
    /// Connections in the store's pool.
    pub max_connections: u32,
    /// Give up connecting to the store after this long.
    pub connect_timeout_ms: u64,
    /// How often the revision counter is polled for changes made elsewhere.
    pub poll_interval_ms: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            url: "sqlite://keygate.db".into(),
            max_connections: 8,
            connect_timeout_ms: 5_000,
            poll_interval_ms: 1_000,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct UpstreamConfig {
    /// `http://` or `https://` base URL of the default upstream.
    pub url: String,
    /// Connecting to an upstream fails after this long (502).
    pub connect_timeout_ms: u64,
    /// An upstream that has not answered (status and headers) after this
    /// long gets the client a 504.
    pub response_timeout_ms: u64,
    /// Idle keep-alive connections to upstreams are closed after this long.
    pub pool_idle_timeout_ms: u64,
    /// Idle keep-alive connections kept per upstream host.
    pub pool_max_idle_per_host: usize,
    /// Speak HTTP/2 to upstreams (routes may override): ALPN `h2` for
    /// `https://`, prior knowledge (h2c) for `http://`. One multiplexed
    /// connection per upstream and proxy thread.
    pub http2: bool,
    /// PEM file of CA certificates trusted for `https://` upstreams, on top
    /// of the public (webpki) roots: for upstreams with a private CA.
    pub ca_file: Option<String>,
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        UpstreamConfig {
            url: "http://127.0.0.1:3000".into(),
            connect_timeout_ms: 2_000,
            response_timeout_ms: 30_000,
            pool_idle_timeout_ms: 90_000,
            pool_max_idle_per_host: 1024,
            http2: false,
            ca_file: None,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RouteConfig {
    /// Requests whose path starts with this prefix take this route.
    pub path_prefix: String,
    /// Only requests for this host (the `Host` header, port ignored).
    pub host: Option<String>,
    /// `http://` or `https://` base URL of this route's upstream.
    pub upstream: String,
    /// Largest request body on this route (0 = unlimited); defaults to
    /// `proxy.max_body_bytes`.
    pub max_body_bytes: Option<u64>,
    /// HTTP/2 to this route's upstream; defaults to `upstream.http2`.
    pub http2: Option<bool>,
    /// Units a request on this route spends from every quota that applies
    /// (at least 1); `null`: 1.
    pub cost: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct KeysConfig {
    /// Prefix of keys for the `live` environment.
    pub live_prefix: String,
    /// Prefix of keys for the `test` environment.
    pub test_prefix: String,
}

impl Default for KeysConfig {
    fn default() -> Self {
        KeysConfig { live_prefix: "kg_live".into(), test_prefix: "kg_test".into() }
    }
}

/// One thing wrong with the configuration, at one field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub path: String,
    pub message: String,
}

/// Everything wrong with a configuration, reported at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub errors: Vec<FieldError>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "invalid configuration ({} error{}):",
            self.errors.len(),
            if self.errors.len() == 1 { "" } else { "s" }
        )?;
        for e in &self.errors {
            writeln!(f, "  {}: {}", e.path, e.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

impl ConfigError {
    fn one(path: &str, message: impl Into<String>) -> Self {
        ConfigError { errors: vec![FieldError { path: path.into(), message: message.into() }] }
    }
}

impl Config {
    /// Reads `path`, applies `KEYGATE_*` variables from the process
    /// environment, and validates.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::one("(file)", format!("cannot read {}: {e}", path.display())))?;
        Self::from_yaml(&text, std::env::vars())
    }

    /// Parses YAML text with the given environment overrides, then validates.
    pub fn from_yaml(text: &str, env: impl IntoIterator<Item = (String, String)>) -> Result<Config, ConfigError> {
        let mut value = parse_yaml(text).map_err(|e| ConfigError::one("(file)", format!("not valid YAML: {e}")))?;
        if value.is_null() {
            value = Value::Object(Map::new());
        }
        if !value.is_object() {
            return Err(ConfigError::one("(file)", "the top level must be a mapping of sections"));
        }
        let mut errors = apply_env(&mut value, env);
        let config = deserialize_collecting(value, &mut errors);
        let reported: BTreeSet<String> = errors.iter().map(|e| e.path.clone()).collect();
        let mut checked = config.validate();
        config.parse_settings(&mut checked);
        errors.extend(checked.into_iter().filter(|e| !reported.contains(&e.path)));
        if errors.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError { errors })
        }
    }

    /// The typed values the gateway runs on, or every error in the config.
    /// `check-config` (through `load`) and `serve` both go through this, so
    /// a config that passes the check starts.
    pub fn settings(&self) -> Result<Settings, ConfigError> {
        let mut errors = self.validate();
        match self.parse_settings(&mut errors) {
            Some(settings) if errors.is_empty() => Ok(settings),
            _ => Err(ConfigError { errors }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env() -> Vec<(String, String)> {
        Vec::new()
    }

    #[test]
    fn empty_file_is_the_default() {
        assert_eq!(Config::from_yaml("", no_env()), Ok(Config::default()));
    }

    #[test]
    fn every_error_is_reported_with_its_path() {
        let text = "proxy:\n  listen: nope\n  max_header_bytes: 12\nstore:\n  url: mysql://x\n  bogus: 1\nupstream:\n  url: ftp://x\nroutes:\n  - path_prefix: v2\n    upstream: http://a\n";
        let err = Config::from_yaml(text, no_env()).expect_err("invalid");
        let paths: Vec<&str> = err.errors.iter().map(|e| e.path.as_str()).collect();
        for expected in [
            "proxy.listen",
            "proxy.max_header_bytes",
            "store.url",
            "store.bogus",
            "upstream.url",
            "routes[0].path_prefix",
        ] {
            assert!(paths.contains(&expected), "{expected} missing from {paths:?}");
        }
        let text = err.to_string();
        assert!(text.contains("store.bogus: unknown field"), "{text}");
    }

    #[test]
    fn an_upstream_query_string_fails_the_check_that_serve_runs() {
        let text = "upstream:\n  url: http://a\nroutes:\n  - path_prefix: /v2\n    upstream: http://b/base?x=1\n";
        let err = Config::from_yaml(text, no_env()).expect_err("invalid");
        assert_eq!(err.errors.len(), 1, "{err}");
        assert_eq!(err.errors[0].path, "routes[0].upstream");
        // `serve` builds from `settings`, which refuses the same way instead
        // of dropping the query.
        let route =
            RouteConfig { path_prefix: "/v2".into(), upstream: "http://b/base?x=1".into(), ..Default::default() };
        let mut config = Config { routes: vec![route], ..Default::default() };
        let err = config.settings().expect_err("invalid");
        assert_eq!(err.errors[0].path, "routes[0].upstream");
        config.routes[0].upstream = "http://b/base".into();
        assert_eq!(config.settings().expect("valid").routes[0].upstream.base_path, "/base");
    }

    #[test]
    fn env_overrides_take_precedence() {
        let env = vec![
            ("KEYGATE_PROXY_LISTEN".to_string(), "127.0.0.1:1234".to_string()),
            ("KEYGATE_STORE_URL".to_string(), "sqlite://other.db".to_string()),
            ("KEYGATE_STORE_POLL_INTERVAL_MS".to_string(), "250".to_string()),
            ("KEYGATE_PROXY_KEY_HEADERS".to_string(), "[x-key]".to_string()),
            ("KEYGATE_ADMIN_TOKEN".to_string(), "not a field".to_string()),
        ];
        let c = Config::from_yaml("store:\n  url: sqlite://file.db\n", env).expect("valid");
        assert_eq!(c.proxy.listen.port(), 1234);
        assert_eq!(c.store.url, "sqlite://other.db");
        assert_eq!(c.store.poll_interval_ms, 250);
        assert_eq!(c.proxy.key_headers, vec!["x-key".to_string()]);
    }

    #[test]
    fn example_file_is_valid_and_shows_the_defaults() {
        let text = include_str!("../config/keygate.yaml");
        assert_eq!(Config::from_yaml(text, no_env()), Ok(Config::default()));
    }

    #[test]
    fn http2_fields_are_checked_by_name() {
        let env = vec![("KEYGATE_PROXY_HTTP2_CLEARTEXT".to_string(), "true".to_string())];
        let c = Config::from_yaml(
            "upstream:\n  http2: true\nroutes:\n  - { path_prefix: /a, upstream: http://a, http2: false }\n",
            env,
        )
        .expect("valid");
        assert!(c.proxy.http2_cleartext && c.upstream.http2);
        assert_eq!(c.routes[0].http2, Some(false));
        let err = Config::from_yaml("proxy:\n  http2_cleartext: sure\nupstream:\n  http2: 2\n", no_env())
            .expect_err("invalid");
        let paths: Vec<&str> = err.errors.iter().map(|e| e.path.as_str()).collect();
        assert!(paths.contains(&"proxy.http2_cleartext") && paths.contains(&"upstream.http2"), "{paths:?}");
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("x.pem");
        std::fs::write(&file, "x").expect("write");
        let text = format!(
            "proxy:\n  http2_cleartext: true\n  tls: {{ cert_file: {f}, key_file: {f} }}\n",
            f = file.display()
        );
        let err = Config::from_yaml(&text, no_env()).expect_err("h2c with TLS");
        assert_eq!(err.errors[0].path, "proxy.http2_cleartext", "{err}");
    }
    #[test]
    fn an_unreadable_upstream_ca_file_is_named() {
        let err = Config::from_yaml("upstream:\n  ca_file: /nonexistent/ca.pem\n", no_env()).expect_err("refused");
        assert_eq!(err.errors[0].path, "upstream.ca_file", "{err}");
    }

    #[test]
    fn body_read_timeout_is_checked_by_name() {
        let env = vec![("KEYGATE_PROXY_BODY_READ_TIMEOUT_MS".to_string(), "1500".to_string())];
        assert_eq!(Config::from_yaml("", env).expect("valid").proxy.body_read_timeout_ms, 1500);
        let err = Config::from_yaml("proxy:\n  body_read_timeout_ms: 0\n", no_env()).expect_err("zero");
        assert_eq!(err.errors[0].path, "proxy.body_read_timeout_ms", "{err}");
        assert!(err.to_string().contains("must be greater than 0"), "{err}");
    }

    #[test]
    fn failed_auth_ipv6_prefix_is_checked_by_name() {
        assert_eq!(Config::default().limits.failed_auth_ipv6_prefix, 64);
        for ok in ["32", "128"] {
            let text = format!("limits:\n  failed_auth_ipv6_prefix: {ok}\n");
            assert!(Config::from_yaml(&text, no_env()).is_ok(), "{ok}");
        }
        for bad in ["31", "129", "0"] {
            let text = format!("limits:\n  failed_auth_ipv6_prefix: {bad}\n");
            let err = Config::from_yaml(&text, no_env()).expect_err(bad);
            assert_eq!(err.errors[0].path, "limits.failed_auth_ipv6_prefix", "{err}");
        }
    }

    #[test]
    fn header_rules_are_drop_or_pass() {
        let c = Config::from_yaml("proxy:\n  underscore_headers: pass\n  override_headers: drop\n", no_env());
        let c = c.expect("valid");
        assert_eq!((c.proxy.underscore_headers, c.proxy.override_headers), (HeaderRule::Pass, HeaderRule::Drop));
        let env = vec![("KEYGATE_PROXY_OVERRIDE_HEADERS".to_string(), "pass".to_string())];
        assert_eq!(Config::from_yaml("", env).expect("valid").proxy.override_headers, HeaderRule::Pass);
        let err = Config::from_yaml("proxy:\n  underscore_headers: maybe\n", no_env()).expect_err("invalid");
        assert_eq!(err.errors[0].path, "proxy.underscore_headers", "{err}");
    }

    #[test]
    fn bad_env_value_names_the_field() {
        let env = vec![("KEYGATE_UPSTREAM_CONNECT_TIMEOUT_MS".to_string(), "soon".to_string())];
        let err = Config::from_yaml("", env).expect_err("invalid");
        assert_eq!(err.errors[0].path, "upstream.connect_timeout_ms");
    }

    #[test]
    fn invalid_yaml_names_the_line_and_shows_no_text() {
        let text = "store:\n  url: postgres://keygate:hunter2@db/keygate\nproxy: [\n";
        let err = Config::from_yaml(text, no_env()).expect_err("invalid");
        let shown = err.to_string();
        assert_eq!(err.errors[0].path, "(file)");
        assert!(shown.contains("line"), "no location: {shown}");
        assert!(!shown.contains("hunter2"), "the text leaked: {shown}");
    }

    #[test]
    fn anchors_and_comments_load() {
        let text = "# c\nlimits: &l\n  default_per_key: { requests: 5, per_seconds: 1 }\n";
        let config = Config::from_yaml(text, no_env()).expect("valid");
        assert_eq!(config.limits.default_per_key.map(|q| q.requests), Some(5));
    }
}
