//! Live configuration reload (SIGHUP): reads the config file again,
//! validates it like `check-config`, and puts what can change without a
//! restart in force all at once — the proxy's routes, upstreams, limits,
//! credential sources and header rules (one `ArcSwap` store), the identity
//! token's lifetime, allowlist and key file, the TLS
//! certificate files of both listeners, and the log filter and format.
//!
//! Everything is built and checked first; only when every part is ready is
//! anything applied, so a broken file (or a certificate that does not load)
//! leaves the running configuration as it was, with the field at fault
//! named in the log. Fields that need a restart (see `restart`) are named
//! in the log and keep their running value while the rest applies.
//! Requests under way finish with the configuration they started with; no
//! connection is closed. Never stops the process.

mod restart;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use crate::config::{Config, TlsConfig};
use crate::logging::Logging;
use crate::metrics::Metrics;
use crate::proxy::Proxy;
use crate::shutdown::Shutdown;
use crate::tls::CertResolver;

pub use restart::{changed, is_live, needs_restart, LIVE};

/// A listener's certificate resolver and the section naming its files.
#[derive(Debug, Clone)]
pub struct Cert {
    pub field: &'static str,
    pub resolver: Arc<CertResolver>,
}

/// What a successful reload did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reloaded {
    /// Changed fields now in force.
    pub applied: Vec<String>,
    /// Changed fields kept at their running value until a restart.
    pub needs_restart: Vec<String>,
}

/// Reloads the configuration of one running gateway; see the module doc.
pub struct ConfigReloader {
    path: PathBuf,
    /// The configuration the gateway started with: fields that need a
    /// restart are compared with it, and keep its values.
    started: Config,
    /// The configuration whose live fields are in force.
    applied: Mutex<Config>,
    proxy: Arc<Proxy>,
    certs: Vec<Cert>,
    logging: Option<Arc<Logging>>,
    metrics: Arc<Metrics>,
    /// One reload at a time: two SIGHUPs in a row apply in order.
    running: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for ConfigReloader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfigReloader").field("path", &self.path).finish()
    }
}

impl ConfigReloader {
    /// A reloader for the gateway started with `started` from the file at
    /// `path`; `logging` is the process's subscriber, if it installed one.
    pub fn new(
        path: PathBuf,
        started: Config,
        proxy: Arc<Proxy>,
        certs: Vec<Cert>,
        logging: Option<Arc<Logging>>,
        metrics: Arc<Metrics>,
    ) -> Arc<ConfigReloader> {
        Arc::new(ConfigReloader {
            path,
            applied: Mutex::new(started.clone()),
            started,
            proxy,
            certs,
            logging,
            metrics,
            running: tokio::sync::Mutex::new(()),
        })
    }

    /// Reads the file and applies it, logging the outcome and counting it in
    /// `keygate_config_reloads_total`. `Err` is the log's text: every field
    /// at fault, `field: message; …`.
    pub async fn reload(&self) -> Result<Reloaded, String> {
        let _one_at_a_time = self.running.lock().await;
        let outcome = self.try_reload().await;
        self.metrics.config_reloaded(outcome.is_ok());
        match &outcome {
            Ok(done) => {
                for field in &done.needs_restart {
                    tracing::warn!(field = %field, "config reload: {field} changed but needs a restart; the running value is kept");
                }
                tracing::info!(
                    applied = %done.applied.join(","),
                    needs_restart = %done.needs_restart.join(","),
                    "configuration reloaded"
                );
            }
            Err(e) => tracing::error!("config reload failed: {e}; the running configuration is kept"),
        }
        outcome
    }

    async fn try_reload(&self) -> Result<Reloaded, String> {
        let path = self.path.clone();
        let next = tokio::task::spawn_blocking(move || Config::load(&path))
            .await
            .map_err(|e| format!("(file): cannot read: {e}"))?
            .map_err(|e| {
                e.errors.iter().map(|e| format!("{}: {}", e.path, e.message)).collect::<Vec<_>>().join("; ")
            })?;
        let needs_restart = needs_restart(&self.started, &next);
        let applied = {
            let Ok(applied) = self.applied.lock() else { return Err("(state): poisoned".into()) };
            changed(&applied, &next).into_iter().filter(|f| is_live(f)).collect::<Vec<_>>()
        };

        // Build everything before applying anything.
        let live = self.proxy.prepare(&next).map_err(|e| format!("{e:#}"))?;
        let mut certs = Vec::new();
        for cert in &self.certs {
            // TLS turned off (or on) is a restart field: only new files of a
            // TLS listener apply here. The files are read again even when
            // their names did not change, which is how a renewed
            // certificate is picked up at once.
            if let Some(tls) = tls_of(&next, cert.field) {
                let prepared = cert.resolver.prepare(tls).await.map_err(|e| format!("{}: {e:#}", cert.field))?;
                certs.push((cert, prepared));
            }
        }
        // A new key file is read here, and refused whole if it does not load.
        let identity = match (self.proxy.identity(), &next.proxy.identity_token) {
            (Some(issuer), Some(config)) => Some((issuer, issuer.prepare(config).await.map_err(|e| format!("{e:#}"))?)),
            _ => None,
        };
        let logging = match &self.logging {
            Some(logging) => Some((logging, logging.prepare(&next.log)?)),
            None => None,
        };

        let old = self.proxy.reconfigure(live);
        let current = self.proxy.live();
        if !old.shares_connections_with(&current) {
            tracing::info!("upstreams changed: new requests use new connections; the old ones close when idle");
        }
        if !old.shares_guard_with(&current) {
            tracing::info!("failed-auth limits changed: the failure counts start over");
        }
        if let Some((issuer, prepared)) = identity {
            issuer.apply(prepared);
        }
        for (cert, prepared) in certs {
            cert.resolver.install(prepared);
        }
        if let Some((logging, prepared)) = logging {
            logging.apply(prepared);
            if logging.level_from_env() && applied.iter().any(|f| f == "log.level") {
                tracing::warn!("log.level changed but RUST_LOG is set and takes precedence");
            }
        }
        if let Ok(mut running) = self.applied.lock() {
            *running = next;
        }
        Ok(Reloaded { applied, needs_restart })
    }

    /// Reloads on every SIGHUP until `shutdown`. Installed before anything
    /// else can send the signal, SIGHUP no longer has its default effect
    /// (ending the process).
    pub fn spawn_on_hangup(self: &Arc<Self>, shutdown: Shutdown) -> anyhow::Result<tokio::task::JoinHandle<()>> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let mut hup = signal(SignalKind::hangup())?;
            let this = Arc::clone(self);
            Ok(tokio::spawn(async move {
                loop {
                    tokio::select! {
                        received = hup.recv() => if received.is_none() { return },
                        _ = shutdown.wait() => return,
                    }
                    tracing::info!(file = %this.path.display(), "SIGHUP received: reloading the configuration");
                    // The outcome is logged and counted by `reload`.
                    let _ = this.reload().await;
                }
            }))
        }
        #[cfg(not(unix))]
        {
            let _ = shutdown;
            Ok(tokio::spawn(async {}))
        }
    }
}

/// The TLS section named `field` (`proxy.tls` or `admin.tls`) of `config`.
fn tls_of<'a>(config: &'a Config, field: &str) -> Option<&'a TlsConfig> {
    match field {
        "proxy.tls" => config.proxy.tls.as_ref(),
        "admin.tls" => config.admin.tls.as_ref(),
        _ => None,
    }
}
