//! The gateway under test, started from a [`TestGateway`]: the whole
//! gateway in-process (proxy, admin API, store, reloader) in front of a
//! real upstream, or the admin router alone, called in-process.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use keygate::admin::{self, AdminState};
use keygate::cli::client::AdminClient;
use keygate::config::Config;
use keygate::reload::Reloader;
use keygate::store::Store;

use super::upstream::Upstream;
use super::{admin_client, TestGateway, TOKEN};

/// The whole gateway in-process on a fresh store, in front of a real
/// upstream.
pub struct Gateway {
    pub gateway: keygate::server::Gateway,
    /// The real admin client, with the owner token.
    pub admin: AdminClient,
    /// The echo upstream the builder started (the configured upstream
    /// may have been changed to another).
    pub upstream: SocketAddr,
    pub dir: tempfile::TempDir,
}

impl Gateway {
    pub async fn start() -> Gateway {
        TestGateway::new().start().await
    }

    pub fn proxy(&self) -> SocketAddr {
        self.gateway.proxy_addr
    }
}

/// The admin router on a fresh store, called in-process (see
/// [`super::AdminCalls`]).
pub struct Admin {
    pub router: Router,
    pub reloader: Arc<Reloader>,
    pub dir: tempfile::TempDir,
}

impl Admin {
    pub async fn new() -> Admin {
        TestGateway::new().admin().await
    }
}

impl TestGateway<'_> {
    /// Starts the whole gateway in-process.
    pub async fn start(self) -> Gateway {
        let echo = Upstream::start().await;
        let upstream_url = self.upstream_url().unwrap_or_else(|| echo.url(""));
        let dir = tempfile::tempdir().expect("tempdir");
        let config = self.build(&dir, &upstream_url);
        let gateway = keygate::server::Gateway::start(&config, Some(TOKEN)).await.expect("gateway starts");
        let admin = admin_client(gateway.admin_addr);
        Gateway { gateway, admin, upstream: echo.addr, dir }
    }

    /// Starts the admin router alone on the store.
    pub async fn admin(self) -> Admin {
        let dir = tempfile::tempdir().expect("tempdir");
        let upstream_url = self.upstream_url().unwrap_or_else(|| Config::default().upstream.url);
        let config = self.build(&dir, &upstream_url);
        let store = Store::connect(&config.store).await.expect("store");
        let reloader = Reloader::start(store).await.expect("reloader");
        let state = AdminState::new(&config, Arc::clone(&reloader), Some(TOKEN));
        Admin { router: admin::router(state, 64 * 1024), reloader, dir }
    }
}
