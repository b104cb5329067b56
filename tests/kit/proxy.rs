//! Test support for the proxy's black-box tests: a gateway bound to
//! 127.0.0.1:0 with a real `KeySet` (one key per decision outcome), a real
//! upstream (`upstream`), and clients (`client`). Keeps each test to the
//! few lines that state its contract row.

#![allow(dead_code)]

pub mod client;
pub mod protocols;
pub mod upstream;

use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use http::Method;
use keygate::config::Config;
use keygate::keys::{generate, Changes, InlineId, KeyPolicy, KeySet, Permission, PolicyRow, Secret};
use keygate::proxy::Proxy;
use keygate::shutdown::Shutdown;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use self::client::{empty, TestBody};

/// One key for each outcome of the key decision.
pub struct Keys {
    pub write: Secret,
    pub read: Secret,
    pub expired: Secret,
    pub disabled: Secret,
    pub revoked: Secret,
    pub no_access: Secret,
}

impl Keys {
    fn new() -> Self {
        Keys {
            write: generate("kg_live"),
            read: generate("kg_live"),
            expired: generate("kg_live"),
            disabled: generate("kg_test"),
            revoked: generate("kg_live"),
            no_access: generate("kg_live"),
        }
    }

    fn key_set(&self) -> KeySet {
        let row = |secret: &Secret, id: &str, edit: fn(&mut KeyPolicy)| {
            let mut policy = KeyPolicy {
                id: InlineId::new(id).expect("id"),
                account_id: InlineId::new("acc_main").expect("id"),
                permission: Permission::Write,
                enabled: true,
                revoked: false,
                api_access: true,
                expires_at: None,
                quota: None,
                restrictions: None,
            };
            edit(&mut policy);
            PolicyRow { hash: secret.hash(), policy }
        };
        let keys = vec![
            row(&self.write, "key_write", |_| {}),
            row(&self.read, "key_read", |p| p.permission = Permission::Read),
            row(&self.expired, "key_expired", |p| p.expires_at = Some(1_000)),
            row(&self.disabled, "key_disabled", |p| p.enabled = false),
            row(&self.revoked, "key_revoked", |p| p.revoked = true),
            row(&self.no_access, "key_noaccess", |p| {
                p.account_id = InlineId::new("acc_free").expect("id");
                p.api_access = false;
            }),
        ];
        KeySet::empty().apply(Changes { revision: 1, keys, retired: vec![] })
    }
}

/// The default test configuration: everything default but the upstream,
/// and a drain short enough for a test.
pub fn config(upstream_url: &str) -> Config {
    let mut config = Config::default();
    config.upstream.url = upstream_url.to_owned();
    config.proxy.drain_timeout_ms = 5_000;
    config
}

/// A proxy serving on 127.0.0.1:0.
pub struct Gateway {
    pub addr: SocketAddr,
    pub keys: Keys,
    pub shutdown: Shutdown,
    pub task: JoinHandle<()>,
}

impl Gateway {
    pub async fn start(config: Config) -> Gateway {
        Self::start_tls(config, None).await
    }

    pub async fn start_tls(config: Config, tls: Option<Arc<rustls::ServerConfig>>) -> Gateway {
        let keys = Keys::new();
        let keyset = Arc::new(ArcSwap::from_pointee(keys.key_set()));
        let metrics =
            keygate::metrics::Metrics::new(&["default".to_string()], Arc::clone(&keyset), 100).expect("metrics");
        let proxy = Proxy::new(&config, keyset, metrics).expect("proxy");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy addr");
        let shutdown = Shutdown::new();
        let task = tokio::spawn(proxy.serve(listener, tls, shutdown.clone()));
        Gateway { addr, keys, shutdown, task }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// A request to `path` carrying `key` in `X-API-Key`.
    pub fn request(&self, method: Method, path: &str, key: &Secret) -> http::request::Builder {
        http::Request::builder().method(method).uri(self.url(path)).header("x-api-key", key.expose())
    }

    /// `GET path` with the write key.
    pub fn get(&self, path: &str) -> http::Request<TestBody> {
        self.request(Method::GET, path, &self.keys.write).body(empty()).expect("request")
    }
}
