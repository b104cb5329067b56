//! The proxy alone, bound to 127.0.0.1:0, over a fixed `KeySet` with one key
//! per decision outcome ([`Keys`]) and no store: for tests of the proxy's
//! own contract (headers, limits, protocols, TLS) that need no admin API.

use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use http::Method;
use keygate::authz::grpc::GrpcAuthz;
use keygate::authz::ForwardAuth;
use keygate::config::Config;
use keygate::keys::{generate, Changes, KeyPolicy, KeySet, Permission, PolicyRow, Secret};
use keygate::proxy::Proxy;
use keygate::shutdown::Shutdown;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::http::{empty, TestBody};
use super::TestGateway;

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

    fn rows(&self) -> Vec<PolicyRow> {
        let key = |id: &str| KeyPolicy::builder(id, "acc_main");
        vec![
            key("key_write").row(self.write.hash()),
            key("key_read").permission(Permission::Read).row(self.read.hash()),
            key("key_expired").expires_at(1_000).row(self.expired.hash()),
            key("key_disabled").enabled(false).row(self.disabled.hash()),
            key("key_revoked").revoked(true).row(self.revoked.hash()),
            KeyPolicy::builder("key_noaccess", "acc_free").api_access(false).row(self.no_access.hash()),
        ]
    }
}

/// A proxy serving on 127.0.0.1:0 (and forward auth beside it when the
/// config sets `authz.listen`).
pub struct ProxyGateway {
    pub addr: SocketAddr,
    /// Forward auth, when `authz.listen` is set.
    pub authz: Option<SocketAddr>,
    /// gRPC ext_authz, when `authz.grpc_listen` is set.
    pub authz_grpc: Option<SocketAddr>,
    pub keys: Keys,
    pub shutdown: Shutdown,
    pub task: JoinHandle<()>,
}

impl ProxyGateway {
    /// The proxy with `config` (see [`super::config`]).
    pub async fn start(config: Config) -> ProxyGateway {
        Self::start_tls(config, None).await
    }

    pub async fn start_tls(config: Config, tls: Option<Arc<rustls::ServerConfig>>) -> ProxyGateway {
        Self::serve(config, tls, Vec::new()).await
    }

    async fn serve(config: Config, tls: Option<Arc<rustls::ServerConfig>>, extra: Vec<PolicyRow>) -> ProxyGateway {
        let keys = Keys::new();
        let mut rows = keys.rows();
        rows.extend(extra);
        let keyset = Arc::new(ArcSwap::from_pointee(KeySet::empty().apply(Changes {
            revision: 1,
            keys: rows,
            retired: vec![],
            accounts: vec![],
            ..Default::default()
        })));
        let metrics = keygate::metrics::Metrics::new(Arc::clone(&keyset), 100).expect("metrics");
        let proxy = Proxy::new(&config, keyset, metrics).expect("proxy");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy addr");
        let shutdown = Shutdown::new();
        let mut authz = None;
        if let Some(at) = config.authz.listen {
            let listener = TcpListener::bind(at).await.expect("bind forward auth");
            authz = Some(listener.local_addr().expect("forward auth addr"));
            let forward_auth = ForwardAuth::new(&config, Arc::clone(&proxy));
            tokio::spawn(forward_auth.serve(listener, shutdown.clone()));
        }
        let mut authz_grpc = None;
        if let Some(at) = config.authz.grpc_listen {
            let listener = TcpListener::bind(at).await.expect("bind gRPC ext_authz");
            authz_grpc = Some(listener.local_addr().expect("gRPC ext_authz addr"));
            let grpc = GrpcAuthz::new(&config, Arc::clone(&proxy));
            tokio::spawn(grpc.serve(listener, shutdown.clone()));
        }
        let task = tokio::spawn(proxy.serve(listener, tls, shutdown.clone()));
        ProxyGateway { addr, authz, authz_grpc, keys, shutdown, task }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// A request to `path` carrying `key` in `X-API-Key`.
    pub fn request(&self, method: Method, path: &str, key: &Secret) -> http::request::Builder {
        http::Request::builder().method(method).uri(self.url(path)).header("x-api-key", key.expose())
    }

    /// `http://<forward auth>` plus `path`.
    pub fn authz_url(&self, path: &str) -> String {
        format!("http://{}{}", self.authz.expect("authz.listen is set"), path)
    }

    /// `GET path` with the write key.
    pub fn get(&self, path: &str) -> http::Request<TestBody> {
        self.request(Method::GET, path, &self.keys.write).body(empty()).expect("request")
    }
}

impl TestGateway<'_> {
    /// Starts the proxy alone over [`Keys`] and the keys given with
    /// [`TestGateway::key`]; the upstream must be given.
    pub async fn proxy(mut self) -> ProxyGateway {
        let upstream = self.upstream_url().expect("a proxy-only gateway needs TestGateway::upstream");
        let (tls, extra) = (self.tls.take(), std::mem::take(&mut self.keys));
        // The proxy alone never opens the store; the dir only completes the config.
        let dir = tempfile::tempdir().expect("tempdir");
        let config = self.build(&dir, &upstream);
        ProxyGateway::serve(config, tls, extra).await
    }
}
