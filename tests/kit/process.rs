//! The real `keygate` binary as a child process, the one way tests run it:
//! `serve` on a config file in a temp dir (the listening addresses read
//! from its log, text or JSON, stderr captured for inspection, SIGTERM to stop it), and
//! one-shot commands (the CLI) with their exit code and output.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The binary, with no log filter or admin client settings inherited from
/// the environment the tests run in.
pub fn keygate() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_keygate"));
    cmd.env_remove("RUST_LOG").env_remove("KEYGATE_ADMIN_URL").env_remove("KEYGATE_ADMIN_TOKEN").env("NO_COLOR", "1");
    cmd
}

/// The smallest config for `serve`: listeners on port 0, the SQLite store
/// `dir/keygate.db`, and `upstream_url`. Callers append other sections.
pub fn yaml(dir: &Path, upstream_url: &str) -> String {
    format!(
        "proxy: {{ listen: 127.0.0.1:0 }}\nadmin: {{ listen: 127.0.0.1:0 }}\nstore: {{ url: \"sqlite://{}\" }}\nupstream: {{ url: \"{upstream_url}\" }}\n",
        dir.join("keygate.db").display()
    )
}

/// A running `keygate serve`.
pub struct Process {
    pub child: Child,
    pub proxy: SocketAddr,
    pub admin: SocketAddr,
    /// The config file it runs with (for offline commands on its store).
    pub config: PathBuf,
    pub log: Arc<Mutex<String>>,
}

/// Writes `yaml` to `dir/keygate.yaml` and runs `keygate serve` on it.
pub fn spawn(dir: &Path, yaml: &str, env: &[(&str, &str)]) -> Process {
    let config = dir.join("keygate.yaml");
    std::fs::write(&config, yaml).expect("write config");
    let mut cmd = keygate();
    cmd.arg("serve").arg("--config").arg(&config).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn keygate");
    let stderr = child.stderr.take().expect("stderr");
    let log = Arc::new(Mutex::new(String::new()));
    let (tx, rx) = std::sync::mpsc::channel();
    let sink = Arc::clone(&log);
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            for (what, tag) in [("proxy listening", 'p'), ("admin listening", 'a')] {
                if line.contains(what) {
                    if let Some(addr) = listening_addr(&line) {
                        let _ = tx.send((tag, addr));
                    }
                }
            }
            let mut log = sink.lock().expect("log");
            log.push_str(&line);
            log.push('\n');
        }
    });
    let (mut proxy, mut admin) = (None, None);
    let deadline = Instant::now() + Duration::from_secs(60);
    while proxy.is_none() || admin.is_none() {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(('p', a)) => proxy = a.parse().ok(),
            Ok((_, a)) => admin = a.parse().ok(),
            Err(_) => panic!("keygate did not start: {}", log.lock().expect("log")),
        }
    }
    Process { child, proxy: proxy.expect("proxy"), admin: admin.expect("admin"), config, log }
}

/// The `addr` of a listening line, text (`addr=…`) or JSON (`"addr":"…"`).
fn listening_addr(line: &str) -> Option<String> {
    let text = line.split("addr=").nth(1).and_then(|a| a.split_whitespace().next());
    let json = || line.split("\"addr\":\"").nth(1).and_then(|a| a.split('"').next());
    text.or_else(json).map(|a| a.trim_matches('"').to_owned())
}

impl Process {
    pub fn sigterm(&self) {
        self.signal("TERM");
    }

    /// Sends the signal `name` (`TERM`, `HUP`, …) to the process.
    pub fn signal(&self, name: &str) {
        let status =
            Command::new("kill").arg(format!("-{name}")).arg(self.child.id().to_string()).status().expect("kill");
        assert!(status.success());
    }

    /// Waits for the process to exit (at most `limit`).
    pub fn wait(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(Instant::now() < deadline, "keygate did not exit in {limit:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log(&self) -> String {
        self.log.lock().expect("log").clone()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The outcome of one run of the binary.
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Asserts exit code 0, showing both outputs when it is not.
    pub fn ok(self, what: &str) -> Run {
        assert_eq!(self.code, Some(0), "{what} failed:\nstdout: {}\nstderr: {}", self.stdout, self.stderr);
        self
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.stdout))
    }
}

/// Runs `keygate args…` with `env` and `input` on stdin (none: stdin is
/// empty) to the end.
pub fn run(args: &[&str], env: &[(&str, &str)], input: Option<&str>) -> Run {
    let mut cmd = keygate();
    cmd.args(args)
        .stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("run keygate");
    if let (Some(input), Some(mut stdin)) = (input, child.stdin.take()) {
        // A command that exits before reading (a usage error) closes the
        // pipe; its exit code is what the test looks at, so a failed write
        // is no failure. Dropping `stdin` closes it, so a read to the end
        // finishes.
        let _ = stdin.write_all(input.as_bytes());
    }
    let Output { status, stdout, stderr } = child.wait_with_output().expect("run keygate");
    Run {
        code: status.code(),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    }
}
