//! TLS for the proxy and admin listeners: a rustls `ServerConfig` built from
//! a PEM certificate chain and key, and certificate reload without restart;
//! and the `ClientConfig` for `https://` upstreams.
//!
//! The certificate lives behind an `ArcSwap` read by a custom
//! `ResolvesServerCert`, so every new handshake sees the newest certificate
//! and handshakes in progress keep the one they started with. A background
//! task watches the files' modification times and swaps a new certificate in;
//! a file that does not load keeps the old certificate and says so in a
//! warning. A configuration reload may also point the resolver at other
//! files (`prepare`, then `install` with the rest of the reload). This
//! module only speaks rustls: it accepts no connections.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use anyhow::{anyhow, Context};
use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::{Error as PemError, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio::task::JoinHandle;

use crate::config::TlsConfig;
use crate::shutdown::Shutdown;

/// How often `server_config` looks at the certificate files.
pub const DEFAULT_RELOAD_INTERVAL: Duration = Duration::from_secs(5);

/// What a listener offers in ALPN, in order of preference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alpn {
    /// HTTP/1.1 only (the admin port).
    Http1,
    /// HTTP/2 first, then HTTP/1.1 (the proxy port).
    Http2AndHttp1,
}

impl Alpn {
    fn protocols(self) -> Vec<Vec<u8>> {
        match self {
            Alpn::Http1 => vec![b"http/1.1".to_vec()],
            Alpn::Http2AndHttp1 => vec![b"h2".to_vec(), b"http/1.1".to_vec()],
        }
    }
}

/// The one crypto provider of the process: ring, chosen explicitly so that a
/// second provider appearing in the dependency tree cannot make rustls guess.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The client configuration for `https://` upstreams: the public (webpki)
/// roots, plus the CA certificates in `ca_file` (PEM) when one is given.
/// ALPN is left to the connector.
pub fn upstream_client_config(ca_file: Option<&str>) -> anyhow::Result<ClientConfig> {
    let mut roots = RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
    if let Some(file) = ca_file {
        let pem = std::fs::read(file).with_context(|| format!("upstream.ca_file: cannot read {file}"))?;
        let mut added = 0;
        for cert in CertificateDer::pem_slice_iter(&pem) {
            let cert = cert.with_context(|| format!("upstream.ca_file: invalid PEM in {file}"))?;
            roots.add(cert).with_context(|| format!("upstream.ca_file: an unusable CA certificate in {file}"))?;
            added += 1;
        }
        if added == 0 {
            return Err(anyhow!("upstream.ca_file: no certificate found in {file}"));
        }
    }
    Ok(ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .context("the TLS provider supports no safe protocol version")?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// A server configuration for `tls`, offering `alpn`, whose certificate is
/// reloaded every `reload_interval` when its files change, until `shutdown`
/// fires.
///
/// Must be called inside a tokio runtime (it spawns the watcher). Errors
/// name the file at fault.
pub fn server_config(
    tls: &TlsConfig,
    alpn: Alpn,
    reload_interval: Duration,
    shutdown: &Shutdown,
) -> anyhow::Result<Arc<ServerConfig>> {
    let resolver = CertResolver::load(tls)?;
    let config = resolver.server_config(alpn)?;
    resolver.spawn_reloader(reload_interval, shutdown.clone());
    Ok(config)
}

/// Serves the current certificate to every handshake; see the module doc.
#[derive(Debug)]
pub struct CertResolver {
    files: ArcSwap<CertFiles>,
    provider: Arc<CryptoProvider>,
    current: ArcSwap<CertifiedKey>,
    /// Held while installing, so that the file watcher's reload of the old
    /// files cannot land after a configuration reload named new ones.
    installing: Mutex<()>,
}

/// The files a certificate is read from.
#[derive(Debug, Clone, PartialEq, Eq)]
struct CertFiles {
    cert: PathBuf,
    key: PathBuf,
}

impl CertFiles {
    fn of(tls: &TlsConfig) -> Self {
        CertFiles { cert: PathBuf::from(&tls.cert_file), key: PathBuf::from(&tls.key_file) }
    }
}

/// A certificate read and checked, not yet served (see `CertResolver::install`).
#[derive(Debug)]
pub struct PreparedCert {
    files: Arc<CertFiles>,
    key: CertifiedKey,
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

impl CertResolver {
    /// Reads and checks the certificate and key named by `tls`.
    pub fn load(tls: &TlsConfig) -> anyhow::Result<Arc<Self>> {
        let provider = provider();
        let files = CertFiles::of(tls);
        let cert_pem = std::fs::read(&files.cert)
            .with_context(|| format!("cannot read certificate file {}", files.cert.display()))?;
        let key_pem =
            std::fs::read(&files.key).with_context(|| format!("cannot read key file {}", files.key.display()))?;
        let key = certified_key(&cert_pem, &files.cert, &key_pem, &files.key, &provider)?;
        Ok(Arc::new(CertResolver {
            files: ArcSwap::from_pointee(files),
            provider,
            current: ArcSwap::from_pointee(key),
            installing: Mutex::new(()),
        }))
    }

    /// A rustls server configuration that asks this resolver for its
    /// certificate on every handshake and offers `alpn`.
    pub fn server_config(self: &Arc<Self>, alpn: Alpn) -> anyhow::Result<Arc<ServerConfig>> {
        let mut config = ServerConfig::builder_with_provider(Arc::clone(&self.provider))
            .with_safe_default_protocol_versions()
            .context("the TLS provider supports no safe protocol version")?
            .with_no_client_auth()
            .with_cert_resolver(Arc::clone(self) as Arc<dyn ResolvesServerCert>);
        config.alpn_protocols = alpn.protocols();
        Ok(Arc::new(config))
    }

    /// The certificate handshakes get now.
    pub fn current(&self) -> Arc<CertifiedKey> {
        self.current.load_full()
    }

    /// Reads both files again and, if they hold a valid certificate and a
    /// matching key, serves them from the next handshake on. On error the
    /// current certificate stays.
    pub async fn reload(&self) -> anyhow::Result<()> {
        let files = self.files.load_full();
        let prepared = self.read(files).await?;
        let _installing = self.installing.lock().map_err(|_| anyhow!("certificate install lock poisoned"))?;
        // A configuration reload named other files meanwhile: theirs stands.
        if Arc::ptr_eq(&prepared.files, &self.files.load()) {
            self.current.store(Arc::new(prepared.key));
        }
        Ok(())
    }

    /// Reads and checks the certificate and key `tls` names (the same files
    /// again, or others), without serving them yet.
    pub async fn prepare(&self, tls: &TlsConfig) -> anyhow::Result<PreparedCert> {
        self.read(Arc::new(CertFiles::of(tls))).await
    }

    /// Serves a prepared certificate from the next handshake on, and watches
    /// its files from now on.
    pub fn install(&self, prepared: PreparedCert) {
        let _installing = self.installing.lock();
        self.files.store(prepared.files);
        self.current.store(Arc::new(prepared.key));
    }

    async fn read(&self, files: Arc<CertFiles>) -> anyhow::Result<PreparedCert> {
        let cert_pem = tokio::fs::read(&files.cert)
            .await
            .with_context(|| format!("cannot read certificate file {}", files.cert.display()))?;
        let key_pem = tokio::fs::read(&files.key)
            .await
            .with_context(|| format!("cannot read key file {}", files.key.display()))?;
        let key = certified_key(&cert_pem, &files.cert, &key_pem, &files.key, &self.provider)?;
        Ok(PreparedCert { files, key })
    }

    /// Watches the files every `interval` and reloads when either changes.
    pub fn spawn_reloader(self: &Arc<Self>, interval: Duration, shutdown: Shutdown) -> JoinHandle<()> {
        let this = Arc::clone(self);
        tokio::spawn(async move {
            // The stamps the running certificate was loaded from (or the last
            // failed attempt): a broken file is reported once, not on every
            // tick, and any later write to either file triggers a new try.
            let mut seen = this.stamps().await.ok();
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = shutdown.wait() => return,
                    _ = ticker.tick() => {}
                }
                let stamps = match this.stamps().await {
                    Ok(stamps) => stamps,
                    Err(e) => {
                        // Files are briefly missing while some tools replace them.
                        if seen.take().is_some() {
                            tracing::warn!(error = %format!("{e:#}"), "TLS certificate files unreadable; keeping the current certificate");
                        }
                        continue;
                    }
                };
                if seen.as_ref() == Some(&stamps) {
                    continue;
                }
                seen = Some(stamps);
                match this.reload().await {
                    Ok(()) => {
                        tracing::info!(cert_file = %this.files.load().cert.display(), "TLS certificate reloaded")
                    }
                    Err(e) => {
                        tracing::warn!(error = %format!("{e:#}"), "TLS certificate reload failed; keeping the current certificate")
                    }
                }
            }
        })
    }

    /// The stamps of the files now in use (and which files they are, so a
    /// switch to other files counts as a change).
    async fn stamps(&self) -> anyhow::Result<(CertFiles, Stamp, Stamp)> {
        let files = CertFiles::clone(&self.files.load());
        let (cert, key) = (Stamp::of(&files.cert).await?, Stamp::of(&files.key).await?);
        Ok((files, cert, key))
    }
}

/// What tells a file has changed: its modification time and length (the
/// length catches a rewrite within the file system's time granularity).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    modified: SystemTime,
    len: u64,
}

impl Stamp {
    async fn of(path: &Path) -> anyhow::Result<Stamp> {
        let meta = tokio::fs::metadata(path).await.with_context(|| format!("cannot stat {}", path.display()))?;
        let modified = meta.modified().with_context(|| format!("no modification time for {}", path.display()))?;
        Ok(Stamp { modified, len: meta.len() })
    }
}

/// Parses a PEM chain and key and checks that they belong together.
fn certified_key(
    cert_pem: &[u8],
    cert_file: &Path,
    key_pem: &[u8],
    key_file: &Path,
    provider: &CryptoProvider,
) -> anyhow::Result<CertifiedKey> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<_, _>>()
        .with_context(|| format!("invalid PEM in certificate file {}", cert_file.display()))?;
    if chain.is_empty() {
        return Err(anyhow!("no certificate found in {}", cert_file.display()));
    }
    let key: PrivateKeyDer<'static> = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| match e {
        PemError::NoItemsFound => anyhow!("no private key found in {}", key_file.display()),
        _ => anyhow!("invalid PEM in key file {}", key_file.display()),
    })?;
    CertifiedKey::from_der(chain, key, provider).map_err(|e| {
        anyhow!("the key in {} does not fit the certificate in {}: {e}", key_file.display(), cert_file.display())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_pair(dir: &Path) -> TlsConfig {
        let pair = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("cert");
        let cert_file = dir.join("cert.pem");
        let key_file = dir.join("key.pem");
        std::fs::write(&cert_file, pair.cert.pem()).expect("write cert");
        std::fs::write(&key_file, pair.key_pair.serialize_pem()).expect("write key");
        TlsConfig { cert_file: cert_file.display().to_string(), key_file: key_file.display().to_string() }
    }

    #[test]
    fn errors_name_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let tls = write_pair(dir.path());
        let missing = TlsConfig { cert_file: "/nonexistent/cert.pem".into(), key_file: tls.key_file.clone() };
        let err = format!("{:#}", CertResolver::load(&missing).expect_err("missing file"));
        assert!(err.contains("/nonexistent/cert.pem"), "{err}");
        std::fs::write(&tls.key_file, "not a key").expect("write");
        let err = format!("{:#}", CertResolver::load(&tls).expect_err("no key"));
        assert!(err.contains(&tls.key_file), "{err}");
    }

    #[test]
    fn a_key_of_another_certificate_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let tls = write_pair(dir.path());
        let other = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("cert");
        std::fs::write(&tls.key_file, other.key_pair.serialize_pem()).expect("write");
        let err = format!("{:#}", CertResolver::load(&tls).expect_err("mismatch"));
        assert!(err.contains("does not fit"), "{err}");
    }

    #[tokio::test]
    async fn failed_reload_keeps_the_old_certificate() {
        let dir = tempfile::tempdir().expect("tempdir");
        let tls = write_pair(dir.path());
        let resolver = CertResolver::load(&tls).expect("load");
        let before = resolver.current();
        std::fs::write(&tls.cert_file, "garbage").expect("write");
        assert!(resolver.reload().await.is_err());
        assert!(Arc::ptr_eq(&before, &resolver.current()));
        write_pair(dir.path());
        resolver.reload().await.expect("reload");
        assert_ne!(before.cert, resolver.current().cert);
    }

    #[tokio::test]
    async fn installing_other_files_serves_them_and_a_bad_pair_is_refused_before() {
        let dir = tempfile::tempdir().expect("tempdir");
        let tls = write_pair(dir.path());
        let resolver = CertResolver::load(&tls).expect("load");
        let before = resolver.current();
        let other_dir = tempfile::tempdir().expect("tempdir");
        let other = write_pair(other_dir.path());
        let broken = TlsConfig { cert_file: other.cert_file.clone(), key_file: tls.key_file.clone() };
        assert!(resolver.prepare(&broken).await.is_err(), "a key of another certificate");
        assert!(Arc::ptr_eq(&before, &resolver.current()), "nothing installed by a failed prepare");
        let prepared = resolver.prepare(&other).await.expect("prepare");
        assert!(Arc::ptr_eq(&before, &resolver.current()), "prepared is not served yet");
        resolver.install(prepared);
        assert_ne!(before.cert, resolver.current().cert);
        // The watcher's reload now reads the new files.
        std::fs::write(&tls.cert_file, "garbage").expect("write");
        resolver.reload().await.expect("reload reads the installed files");
        assert_eq!(resolver.files.load().cert, PathBuf::from(&other.cert_file));
    }
}
