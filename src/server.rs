//! Wiring: store → reloader → proxy and admin listeners, and the orderly
//! stop. `Gateway::start` is what `keygate serve` runs and what in-process
//! tests start; it binds both listeners before returning, so the addresses
//! it reports are already accepting.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::extract::ConnectInfo;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::admin::{self, AdminState};
use crate::config::{Config, TlsConfig};
use crate::listener::{self, ListenerOptions};
use crate::proxy::Proxy;
use crate::reload::Reloader;
use crate::shutdown::Shutdown;
use crate::store::Store;
use crate::tls;

/// A running gateway: both listeners, the poller, and the handle to stop them.
pub struct Gateway {
    pub proxy_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub reloader: Arc<Reloader>,
    shutdown: Shutdown,
    tasks: Vec<JoinHandle<()>>,
}

impl Gateway {
    /// Connects to the store (migrating it), loads the snapshot, binds both
    /// listeners and starts serving. `admin_token`, when set, is an owner
    /// token (`KEYGATE_ADMIN_TOKEN`).
    pub async fn start(config: &Config, admin_token: Option<&str>) -> anyhow::Result<Gateway> {
        let shutdown = Shutdown::new();
        let store = Store::connect(&config.store).await?;
        let reloader = Reloader::start(store).await.context("cannot load the keys from the store")?;
        let snapshot = reloader.keyset().load_full();
        tracing::info!(revision = snapshot.revision(), secrets = snapshot.len(), "key snapshot loaded");
        let mut tasks = vec![reloader.spawn_poller(Duration::from_millis(config.store.poll_interval_ms), shutdown.clone())];

        let proxy_listener = bind(config.proxy.listen, "proxy.listen").await?;
        let admin_listener = bind(config.admin.listen, "admin.listen").await?;
        let proxy_tls = tls_config(config.proxy.tls.as_ref(), &shutdown)?;
        let admin_tls = tls_config(config.admin.tls.as_ref(), &shutdown)?;
        let proxy_addr = proxy_listener.local_addr()?;
        let admin_addr = admin_listener.local_addr()?;

        let proxy = Proxy::new(config, reloader.keyset())?;
        tasks.push(tokio::spawn(proxy.serve(proxy_listener, proxy_tls, shutdown.clone())));
        tracing::info!(addr = %proxy_addr, "proxy listening");

        let state = AdminState::new(config, Arc::clone(&reloader), admin_token);
        let router = admin::router(state, config.admin.max_body_bytes);
        let opts = ListenerOptions {
            name: "admin",
            header_read_timeout: Duration::from_millis(config.proxy.header_read_timeout_ms),
            max_header_bytes: 64 * 1024,
            drain_timeout: Duration::from_millis(config.proxy.drain_timeout_ms),
        };
        let make_service = move |peer: SocketAddr, _tls: bool| {
            TowerToHyperService::new(router.clone().layer(axum::Extension(ConnectInfo(peer))))
        };
        tasks.push(tokio::spawn(listener::serve(admin_listener, admin_tls, make_service, opts, shutdown.clone())));
        tracing::info!(addr = %admin_addr, "admin listening");

        Ok(Gateway { proxy_addr, admin_addr, reloader, shutdown, tasks })
    }

    /// A handle that stops the gateway when triggered (signals use it).
    pub fn shutdown(&self) -> Shutdown {
        self.shutdown.clone()
    }

    /// Waits until the gateway has been told to stop and every listener has
    /// drained, then closes the store.
    pub async fn wait(self) {
        self.shutdown.wait().await;
        for task in self.tasks {
            if let Err(e) = task.await {
                tracing::error!(error = %e, "a gateway task failed while stopping");
            }
        }
        self.reloader.store().close().await;
        tracing::info!("stopped");
    }

    /// Stops and waits.
    pub async fn stop(self) {
        self.shutdown.trigger();
        self.wait().await;
    }
}

async fn bind(addr: SocketAddr, field: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr).await.with_context(|| format!("{field}: cannot listen on {addr}"))
}

fn tls_config(tls: Option<&TlsConfig>, shutdown: &Shutdown) -> anyhow::Result<Option<Arc<rustls::ServerConfig>>> {
    tls.map(|t| tls::server_config(t, tls::DEFAULT_RELOAD_INTERVAL, shutdown)).transpose()
}
