//! The real `keygate` binary as a child process: a config file in a temp
//! dir, the listening addresses read from its log, stderr captured for
//! inspection, SIGTERM to stop it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub struct Process {
    pub child: Child,
    pub proxy: SocketAddr,
    pub admin: SocketAddr,
    pub log: Arc<Mutex<String>>,
}

/// Writes `yaml` to `dir/keygate.yaml` and runs `keygate serve` on it.
pub fn spawn(dir: &Path, yaml: &str, env: &[(&str, &str)]) -> Process {
    let config = dir.join("keygate.yaml");
    std::fs::write(&config, yaml).expect("write config");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_keygate"));
    cmd.arg("serve").arg("--config").arg(&config).env_remove("RUST_LOG").stdout(Stdio::null()).stderr(Stdio::piped());
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
                    if let Some(addr) = line.split("addr=").nth(1).and_then(|a| a.split_whitespace().next()) {
                        let _ = tx.send((tag, addr.trim_matches('"').to_owned()));
                    }
                }
            }
            let mut log = sink.lock().expect("log");
            log.push_str(&line);
            log.push('\n');
        }
    });
    let (mut proxy, mut admin) = (None, None);
    let deadline = Instant::now() + Duration::from_secs(20);
    while proxy.is_none() || admin.is_none() {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(('p', a)) => proxy = a.parse().ok(),
            Ok((_, a)) => admin = a.parse().ok(),
            Err(_) => panic!("keygate did not start: {}", log.lock().expect("log")),
        }
    }
    Process { child, proxy: proxy.expect("proxy"), admin: admin.expect("admin"), log }
}

impl Process {
    pub fn sigterm(&self) {
        let status = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status().expect("kill");
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
