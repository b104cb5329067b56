//! The one test kit every integration test includes with `mod kit;`.
//!
//! - [`TestGateway`]: a builder for "gateway + upstream + store" — the whole
//!   gateway in-process ([`Gateway`]), the admin router alone ([`Admin`]), or
//!   the proxy alone over a fixed key set ([`ProxyGateway`]);
//! - [`upstream::Upstream`]: the echo upstream (what it received, as JSON);
//! - [`process`]: the real `keygate` binary, for `serve` and the CLI;
//! - [`admin::AdminCalls`]: admin calls through the real `AdminClient` over
//!   HTTP, or through the router in-process (`oneshot`);
//! - [`http`]: clients and the [`http::Reply`] type; [`pg`]: a fresh
//!   PostgreSQL database; [`protocols`]: HTTP/2, TLS and upgrade peers;
//!   [`otlp`]: an OTLP/HTTP trace receiver with its own protobuf decoder.
//!   [`redis`]: the shared Redis with a prefix per test, or a private one.
//!
//! No fixed ports: everything binds 127.0.0.1:0 and reports its address.
#![allow(dead_code, unused_imports)]

pub mod admin;
pub mod gateway;
pub mod http;
pub mod ingress;
pub mod otlp;
pub mod pg;
pub mod process;
pub mod protocols;
pub mod proxy;
pub mod redis;
pub mod upstream;

use std::sync::Arc;

use keygate::config::Config;
use keygate::keys::PolicyRow;

pub use self::admin::{admin_client, AdminCalls};
pub use self::gateway::{Admin, Gateway};
pub use self::proxy::{Keys, ProxyGateway};

/// The owner admin token every in-process gateway and spawned binary gets.
pub const TOKEN: &str = "test-owner-token-0123456789abcdef";

/// The test configuration: everything default but the upstream, listeners
/// on port 0, a store poll and a drain short enough for a test. The store
/// URL is set by [`TestGateway`].
pub fn config(upstream_url: &str) -> Config {
    let mut config = Config::default();
    config.upstream.url = upstream_url.to_owned();
    config.proxy.listen = "127.0.0.1:0".parse().expect("addr");
    config.admin.listen = "127.0.0.1:0".parse().expect("addr");
    config.store.poll_interval_ms = 50;
    config.proxy.drain_timeout_ms = 5_000;
    config
}

/// `secret` with its last character changed (so its checksum no longer
/// matches): a key no store holds, whatever character it ended with.
pub fn mistyped(secret: &str) -> String {
    let last = if secret.ends_with('0') { '1' } else { '0' };
    format!("{}{last}", &secret[..secret.len() - 1])
}

type Edit<'a> = Box<dyn FnOnce(&mut Config) + 'a>;

/// "Gateway + upstream + store" in a few lines: pick the store, the
/// upstream, config edits and extra keys, then start the part under test.
#[must_use]
pub struct TestGateway<'a> {
    postgres: Option<String>,
    upstream: Option<String>,
    edits: Vec<Edit<'a>>,
    keys: Vec<PolicyRow>,
    tls: Option<Arc<rustls::ServerConfig>>,
}

impl Default for TestGateway<'_> {
    fn default() -> Self {
        Self::new()
    }
}

impl<'a> TestGateway<'a> {
    /// A SQLite file in a fresh temp dir, and a fresh echo upstream unless
    /// [`TestGateway::upstream`] names another.
    pub fn new() -> Self {
        TestGateway { postgres: None, upstream: None, edits: Vec::new(), keys: Vec::new(), tls: None }
    }

    /// The store is this PostgreSQL database (see [`pg::fresh`]) instead.
    pub fn postgres(mut self, url: impl Into<String>) -> Self {
        self.postgres = Some(url.into());
        self
    }

    pub fn upstream(mut self, url: impl Into<String>) -> Self {
        self.upstream = Some(url.into());
        self
    }

    /// Changes the configuration before anything starts.
    pub fn config(mut self, edit: impl FnOnce(&mut Config) + 'a) -> Self {
        self.edits.push(Box::new(edit));
        self
    }

    /// A key the proxy-only gateway holds besides [`Keys`] (build it with
    /// `KeyPolicy::builder`).
    pub fn key(mut self, row: PolicyRow) -> Self {
        self.keys.push(row);
        self
    }

    /// The proxy-only gateway serves TLS with this configuration.
    pub fn tls(mut self, tls: Arc<rustls::ServerConfig>) -> Self {
        self.tls = Some(tls);
        self
    }

    fn upstream_url(&self) -> Option<String> {
        self.upstream.clone()
    }

    /// The configuration with the store in `dir`, the upstream, and the edits.
    fn build(self, dir: &tempfile::TempDir, upstream: &str) -> Config {
        let mut config = config(upstream);
        config.store.url = match self.postgres {
            Some(url) => url,
            None => format!("sqlite://{}", dir.path().join("keygate.db").display()),
        };
        for edit in self.edits {
            edit(&mut config);
        }
        config
    }
}
