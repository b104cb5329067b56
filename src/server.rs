//! Wiring: store → reloader → proxy and admin listeners, and the orderly
//! stop. `Gateway::start` is what `keygate serve` runs and what in-process
//! tests start; it binds both listeners before returning, so the addresses
//! it reports are already accepting.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::extract::ConnectInfo;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

use crate::admin::{self, AdminState};
use crate::authz::grpc::GrpcAuthz;
use crate::authz::ForwardAuth;
use crate::config::{Config, TlsConfig};
use crate::identity::Issuer;
use crate::listener::{self, ListenerOptions};
use crate::logging::Logging;
use crate::metrics::Metrics;
use crate::proxy::Proxy;
use crate::reconfigure::{Cert, ConfigReloader};
use crate::reload::Reloader;
use crate::shutdown::Shutdown;
use crate::store::Store;
use crate::tls;
use crate::usage::Flusher;
use crate::webhooks::Webhooks;

/// Where the proxy port is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyRuntime {
    /// On the runtime that calls `Gateway::start` (tests, embedding).
    Caller,
    /// On this many threads of their own, each a single-threaded runtime
    /// with its own SO_REUSEPORT listener: a request and its upstream
    /// exchange stay on one thread, with no work stealing, cross-thread
    /// wake-ups or shared connection pool (`keygate serve`).
    Threads(usize),
}

/// A running gateway: both listeners, the poller, and the handle to stop them.
pub struct Gateway {
    pub proxy_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    /// Forward auth (`authz.listen`), when on.
    pub authz_addr: Option<SocketAddr>,
    /// Envoy gRPC ext_authz (`authz.grpc_listen`), when on.
    pub authz_grpc_addr: Option<SocketAddr>,
    pub reloader: Arc<Reloader>,
    pub flusher: Arc<Flusher>,
    /// What a configuration reload needs: see `config_reloader`.
    config: Config,
    proxy: Arc<Proxy>,
    certs: Vec<Cert>,
    metrics: Arc<Metrics>,
    shutdown: Shutdown,
    tasks: Vec<JoinHandle<()>>,
    /// Stops the admin listener once everything else has drained.
    admin_stop: Shutdown,
    admin_task: JoinHandle<()>,
}

impl Gateway {
    /// Connects to the store (migrating it), loads the snapshot, binds both
    /// listeners and starts serving. `admin_token`, when set, is an owner
    /// token (`KEYGATE_ADMIN_TOKEN`).
    pub async fn start(config: &Config, admin_token: Option<&str>) -> anyhow::Result<Gateway> {
        Self::start_with(config, admin_token, ProxyRuntime::Caller).await
    }

    /// `start`, with the proxy served as `runtime` says; the admin port and
    /// the background tasks stay on the calling runtime.
    pub async fn start_with(
        config: &Config,
        admin_token: Option<&str>,
        runtime: ProxyRuntime,
    ) -> anyhow::Result<Gateway> {
        let shutdown = Shutdown::new();
        let store = Store::connect(&config.store).await?;
        let loading = std::time::Instant::now();
        let mut fleet_task = None;
        let reloader = Reloader::start(store).await.context("cannot load the keys from the store")?;
        if let Some(options) = config.limits.fleet() {
            let fleet = crate::fleet::FleetLimiter::new(options);
            // Before the first request: every key's limit state is built
            // with the fleet from then on.
            reloader.keyset().rcu(|k| Arc::new(k.with_fleet(Arc::clone(&fleet))));
            fleet_task = Some(fleet.spawn(shutdown.clone()));
        }
        let snapshot = reloader.keyset().load_full();
        let load_ms = loading.elapsed().as_millis() as u64;
        tracing::info!(revision = snapshot.revision(), secrets = snapshot.len(), load_ms, "key snapshot loaded");
        let mut tasks =
            vec![reloader.spawn_poller(Duration::from_millis(config.store.poll_interval_ms), shutdown.clone())];
        tasks.extend(reloader.spawn_listener(shutdown.clone()));
        tasks.push(crate::rehash::spawn(Arc::clone(&reloader), shutdown.clone()));
        tasks.extend(fleet_task);
        reloader.quotas().set_block(config.limits.quota_block);

        let proxy_listeners = match runtime {
            ProxyRuntime::Caller => ProxyListeners::Caller(bind(config.proxy.listen, "proxy.listen").await?),
            ProxyRuntime::Threads(n) => ProxyListeners::Threads(
                listener::bind_reuseport(config.proxy.listen, n)
                    .with_context(|| format!("proxy.listen: cannot listen on {}", config.proxy.listen))?,
            ),
        };
        let admin_listener = bind(config.admin.listen, "admin.listen").await?;
        let authz_listener = match config.authz.listen {
            Some(addr) => Some(bind(addr, "authz.listen").await?),
            None => None,
        };
        let authz_addr = authz_listener.as_ref().map(TcpListener::local_addr).transpose()?;
        let grpc_listener = match config.authz.grpc_listen {
            Some(addr) => Some(bind(addr, "authz.grpc_listen").await?),
            None => None,
        };
        let authz_grpc_addr = grpc_listener.as_ref().map(TcpListener::local_addr).transpose()?;
        let (proxy_tls, proxy_cert) =
            tls_config(config.proxy.tls.as_ref(), "proxy.tls", tls::Alpn::Http2AndHttp1, &shutdown)?.unzip();
        let (admin_tls, admin_cert) =
            tls_config(config.admin.tls.as_ref(), "admin.tls", tls::Alpn::Http1, &shutdown)?.unzip();
        let proxy_addr = proxy_listeners.local_addr()?;
        let admin_addr = admin_listener.local_addr()?;

        let metrics = Metrics::new(reloader.keyset(), config.metrics.per_key_limit)?;
        let certs = [("proxy.tls", proxy_cert), ("admin.tls", admin_cert)]
            .into_iter()
            .filter_map(|(field, resolver)| Some(Cert { field, resolver: resolver? }))
            .collect();
        let webhooks = Webhooks::new(reloader.store().clone(), &config.webhooks)?;
        for collector in webhooks.collectors() {
            metrics.register(collector)?;
        }
        tasks.extend(webhooks.spawn(shutdown.clone()));
        // The usage flush's writes and the quota book's flushes of ordinary
        // spending share one connection that never holds a core a request
        // needs (on SQLite; elsewhere the store itself).
        let flush_store = reloader.store().for_background_writes(&config.store).await;
        tasks.push(reloader.quotas().spawn(reloader.store().clone(), flush_store.clone(), shutdown.clone()));
        let flusher = Flusher::new(reloader.keyset(), flush_store, config.usage.retention_days);
        tasks.push(flusher.spawn(Duration::from_millis(config.usage.flush_interval_ms), shutdown.clone()));

        let identity = match &config.proxy.identity_token {
            Some(identity) => {
                let issuer = Issuer::start(identity, reloader.store().clone()).await?;
                tasks.push(issuer.spawn_refresher(reloader.published(), shutdown.clone()));
                Some(issuer)
            }
            None => None,
        };
        let proxy = Proxy::with_identity(config, reloader.keyset(), Arc::clone(&metrics), identity.clone())?;
        if let Some(listener) = authz_listener {
            if config.proxy.trusted_proxies.is_empty() {
                tracing::warn!("authz.listen is on but proxy.trusted_proxies is empty: every forward-auth request counts as coming from the ingress's own address");
            }
            let authz = ForwardAuth::new(config, Arc::clone(&proxy));
            tasks.push(tokio::spawn(authz.serve(listener, shutdown.clone())));
            tracing::info!(addr = ?authz_addr, "forward auth listening");
        }
        if let Some(listener) = grpc_listener {
            let grpc = GrpcAuthz::new(config, Arc::clone(&proxy));
            tasks.push(tokio::spawn(grpc.serve(listener, shutdown.clone())));
            tracing::info!(addr = ?authz_grpc_addr, "gRPC ext_authz listening");
        }
        match proxy_listeners {
            ProxyListeners::Caller(listener) => {
                tasks.push(tokio::spawn(Arc::clone(&proxy).serve(listener, proxy_tls, shutdown.clone())))
            }
            ProxyListeners::Threads(listeners) => {
                tasks.push(proxy.spawn_sweeper(shutdown.clone()));
                for (i, listener) in listeners.into_iter().enumerate() {
                    tasks.push(spawn_proxy_thread(
                        i,
                        Arc::clone(&proxy),
                        listener,
                        proxy_tls.clone(),
                        shutdown.clone(),
                    )?);
                }
            }
        }
        tracing::info!(addr = %proxy_addr, "proxy listening");

        let state = AdminState::serving(config, Arc::clone(&reloader), admin_token, shutdown.clone(), identity);
        let scrape = Arc::new(Scrape {
            metrics: Arc::clone(&metrics),
            reloader: Arc::clone(&reloader),
            flusher: Arc::clone(&flusher),
        });
        let mut metrics_route = Router::new().route("/metrics", get(render_metrics)).with_state(scrape);
        if !config.admin.public_metrics {
            // The scrape holds every account's key ids and volumes: only a
            // token not confined to an account may read it. The layer added
            // last runs first: the token, then its confinement.
            metrics_route = metrics_route
                .route_layer(axum::middleware::from_fn(admin::require_unconfined))
                .route_layer(axum::middleware::from_fn_with_state(Arc::clone(&state), admin::require_token));
        }
        // The dashboard's security headers on `/metrics` too: every admin
        // response carries them.
        let metrics_route = metrics_route.layer(axum::middleware::from_fn(admin::dashboard::security_headers));
        let router = admin::router(state, config.admin.max_body_bytes).merge(metrics_route);
        let opts = ListenerOptions {
            name: "admin",
            header_read_timeout: Duration::from_millis(config.proxy.header_read_timeout_ms),
            max_header_bytes: 64 * 1024,
            drain_timeout: Duration::from_millis(config.proxy.drain_timeout_ms),
            http2_cleartext: false,
            // The admin API forwards nothing; hyper's own parsing will do.
            strict_http1: None,
            connections: listener::connection_limit(listener::DEFAULT_MAX_CONNECTIONS),
        };
        let make_service = move |peer: SocketAddr, _tls: bool| {
            TowerToHyperService::new(router.clone().layer(axum::Extension(ConnectInfo(peer))))
        };
        // The admin port outlives the proxy's drain, so that `/readyz` can
        // say `draining` to a load balancer while requests in flight finish.
        let admin_stop = Shutdown::new();
        let admin_task =
            tokio::spawn(listener::serve(admin_listener, admin_tls, make_service, opts, admin_stop.clone()));
        tracing::info!(addr = %admin_addr, "admin listening");

        Ok(Gateway {
            proxy_addr,
            admin_addr,
            authz_addr,
            authz_grpc_addr,
            reloader,
            flusher,
            config: config.clone(),
            proxy,
            certs,
            metrics,
            shutdown,
            tasks,
            admin_stop,
            admin_task,
        })
    }

    /// Reloads this gateway's configuration from `path` (the file it was
    /// started from) on demand or on SIGHUP; `logging` is the subscriber
    /// whose level and format follow `log`, when the process installed one.
    pub fn config_reloader(&self, path: PathBuf, logging: Option<Arc<Logging>>) -> Arc<ConfigReloader> {
        ConfigReloader::new(
            path,
            self.config.clone(),
            Arc::clone(&self.proxy),
            self.certs.clone(),
            logging,
            Arc::clone(&self.metrics),
        )
    }

    /// A handle that stops the gateway when triggered (signals use it).
    pub fn shutdown(&self) -> Shutdown {
        self.shutdown.clone()
    }

    /// Waits until the gateway has been told to stop and every listener has
    /// drained (the admin listener last), writes the usage counted since the last flush, then closes
    /// the store.
    pub async fn wait(self) {
        self.shutdown.wait().await;
        for task in self.tasks {
            if let Err(e) = task.await {
                tracing::error!(error = %e, "a gateway task failed while stopping");
            }
        }
        self.admin_stop.trigger();
        if let Err(e) = self.admin_task.await {
            tracing::error!(error = %e, "the admin listener failed while stopping");
        }
        match self.flusher.flush().await {
            Ok(keys) => tracing::info!(keys, "final usage flush"),
            Err(e) => {
                tracing::error!(error = %e, "final usage flush failed: usage counted since the last flush is lost")
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

enum ProxyListeners {
    Caller(TcpListener),
    Threads(Vec<std::net::TcpListener>),
}

impl ProxyListeners {
    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        match self {
            ProxyListeners::Caller(l) => l.local_addr(),
            ProxyListeners::Threads(ls) => {
                ls.first().map_or_else(|| Err(std::io::ErrorKind::NotFound.into()), |l| l.local_addr())
            }
        }
    }
}

/// Serves `listener` on a thread of its own with a single-threaded runtime;
/// the returned task ends when that thread has drained and stopped.
fn spawn_proxy_thread(
    i: usize,
    proxy: Arc<Proxy>,
    listener: std::net::TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    shutdown: Shutdown,
) -> anyhow::Result<JoinHandle<()>> {
    let runtime =
        tokio::runtime::Builder::new_current_thread().enable_all().build().context("cannot start a proxy runtime")?;
    let (done, stopped) = tokio::sync::oneshot::channel::<()>();
    std::thread::Builder::new()
        .name(format!("{}{i}", crate::priority::PROXY_THREAD))
        .spawn(move || {
            runtime.block_on(async move {
                match TcpListener::from_std(listener) {
                    Ok(listener) => proxy.serve_listener(listener, tls, shutdown).await,
                    Err(e) => tracing::error!(error = %e, "cannot serve the proxy listener"),
                }
            });
            // Dropping the runtime closes the upstream connections it drove.
            drop(runtime);
            let _ = done.send(());
        })
        .context("cannot start a proxy thread")?;
    Ok(tokio::spawn(async move {
        let _ = stopped.await;
    }))
}

async fn bind(addr: SocketAddr, field: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr).await.with_context(|| format!("{field}: cannot listen on {addr}"))
}

/// The listener's TLS configuration and the resolver a configuration
/// reload points at new files; `field` names the section in errors.
fn tls_config(
    tls: Option<&TlsConfig>,
    field: &str,
    alpn: tls::Alpn,
    shutdown: &Shutdown,
) -> anyhow::Result<Option<(Arc<rustls::ServerConfig>, Arc<tls::CertResolver>)>> {
    let Some(tls) = tls else { return Ok(None) };
    let resolver = tls::CertResolver::load(tls).with_context(|| field.to_owned())?;
    let config = resolver.server_config(alpn)?;
    resolver.spawn_reloader(tls::DEFAULT_RELOAD_INTERVAL, shutdown.clone());
    Ok(Some((config, resolver)))
}

/// What a `/metrics` scrape reads.
struct Scrape {
    metrics: Arc<Metrics>,
    reloader: Arc<Reloader>,
    flusher: Arc<Flusher>,
}

async fn render_metrics(State(scrape): State<Arc<Scrape>>) -> impl IntoResponse {
    let text = scrape.metrics.render(&scrape.reloader, &scrape.flusher);
    ([(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text)
}
