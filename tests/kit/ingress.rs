//! Real ingresses for forward-auth tests: nginx (`auth_request`) and Caddy
//! (`forward_auth`) from Debian, run unprivileged from a temp dir on a free
//! port, in front of an upstream, asking keygate's forward auth. A missing
//! binary is installed with apt-get when the test runs as root (as in CI,
//! where `.ci/run` installs both first); otherwise the test fails saying
//! what to install. Nothing is skipped.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running nginx or Caddy, stopped when dropped.
pub struct Ingress {
    pub addr: SocketAddr,
    child: Child,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Ingress {
    /// nginx with `template` (placeholders `@WORK@`, `@PORT@`, `@AUTHZ@`,
    /// `@UPSTREAM@`), asking `authz` and proxying to `upstream`.
    pub fn nginx(template: &str, authz: SocketAddr, upstream: SocketAddr) -> Ingress {
        let nginx = tool("nginx", "nginx");
        let dir = workdir();
        std::fs::create_dir_all(dir.path().join("tmp")).expect("tmp dir");
        let port = free_port();
        let config = dir.path().join("nginx.conf");
        std::fs::write(&config, fill(template, dir.path(), port, authz, upstream)).expect("write nginx.conf");
        let log = dir.path().join("error.log");
        let mut command = Command::new(nginx);
        command.arg("-p").arg(dir.path()).arg("-c").arg(&config).arg("-e").arg(&log);
        Self::start(command, port, log, dir)
    }

    /// Caddy with the Caddyfile `template` (placeholders `@PORT@`,
    /// `@AUTHZ@`, `@UPSTREAM@`).
    pub fn caddy(template: &str, authz: SocketAddr, upstream: SocketAddr) -> Ingress {
        let caddy = tool("caddy", "caddy");
        let dir = workdir();
        let port = free_port();
        let config = dir.path().join("Caddyfile");
        std::fs::write(&config, fill(template, dir.path(), port, authz, upstream)).expect("write Caddyfile");
        let log = dir.path().join("caddy.log");
        let mut command = Command::new(caddy);
        command.args(["run", "--adapter", "caddyfile", "--config"]).arg(&config);
        // Caddy keeps its state under these; none of it outside the temp dir.
        for var in ["HOME", "XDG_DATA_HOME", "XDG_CONFIG_HOME"] {
            command.env(var, dir.path());
        }
        Self::start(command, port, log, dir)
    }

    fn start(mut command: Command, port: u16, log: PathBuf, dir: tempfile::TempDir) -> Ingress {
        let out = std::fs::File::create(dir.path().join("stdout.log")).expect("stdout log");
        let err = std::fs::File::create(dir.path().join("stderr.log")).expect("stderr log");
        let child = command.stdin(Stdio::null()).stdout(out).stderr(err).spawn().expect("start the ingress");
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let mut ingress = Ingress { addr, child, log, _dir: dir };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(addr).is_err() {
            if let Ok(Some(status)) = ingress.child.try_wait() {
                panic!("the ingress exited ({status}):\n{}", ingress.logs());
            }
            assert!(Instant::now() < deadline, "the ingress never listened:\n{}", ingress.logs());
            std::thread::sleep(Duration::from_millis(50));
        }
        ingress
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Everything the ingress logged, for failure messages.
    pub fn logs(&self) -> String {
        let dir = self.log.parent().expect("dir");
        [self.log.clone(), dir.join("stdout.log"), dir.join("stderr.log")]
            .iter()
            .map(|p| std::fs::read_to_string(p).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for Ingress {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A temp dir nginx's workers (which drop to `nobody` under root) can enter.
fn workdir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    dir
}

fn fill(template: &str, work: &Path, port: u16, authz: SocketAddr, upstream: SocketAddr) -> String {
    template
        .replace("@WORK@", &work.display().to_string())
        .replace("@PORT@", &port.to_string())
        .replace("@AUTHZ@", &authz.to_string())
        .replace("@UPSTREAM@", &upstream.to_string())
}

/// A port nothing listens on right now (bound and released).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// The path of `name`, installing Debian's `package` if it is missing.
fn tool(name: &str, package: &str) -> PathBuf {
    if let Some(path) = find(name) {
        return path;
    }
    let root = Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0\n"));
    assert!(root, "{name} is not installed: apt-get install -y {package} (as .ci/run does)");
    let install = |update: bool| {
        if update {
            let _ = Command::new("apt-get").args(["update", "-qq"]).status();
        }
        Command::new("apt-get")
            .args(["-o", "DPkg::Lock::Timeout=120", "install", "-y", "-qq", package])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .is_ok_and(|s| s.success())
    };
    assert!(install(false) || install(true), "apt-get install {package} failed");
    find(name).unwrap_or_else(|| panic!("{name} still missing after installing {package}"))
}

fn find(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/usr/bin".into()])
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}
