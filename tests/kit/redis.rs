//! Redis for the tests: the shared server on 127.0.0.1:6379 with a unique
//! key prefix per test, and private `redis-server` processes on a free port
//! that a test can stop and start again. When no Redis is reachable the
//! tests skip — except with CI=true, where they fail loudly.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const SHARED: &str = "redis://127.0.0.1:6379/0";

/// A key prefix no other test uses.
pub fn prefix() -> String {
    format!("kgtest:{}:", keygate::keys::format::new_id("t"))
}

/// Whether 127.0.0.1:6379 answers; `false` means skip (panics in CI).
pub fn available() -> bool {
    match std::net::TcpStream::connect_timeout(&"127.0.0.1:6379".parse().expect("addr"), Duration::from_secs(1)) {
        Ok(_) => true,
        Err(e) => {
            assert!(std::env::var("CI").as_deref() != Ok("true"), "Redis at 127.0.0.1:6379 is unreachable in CI: {e}");
            eprintln!("skipped: Redis at 127.0.0.1:6379 is unreachable ({e})");
            false
        }
    }
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// A `redis-server` of this test's own, without persistence.
pub struct Private {
    pub port: u16,
    child: Option<Child>,
}

impl Private {
    pub fn start() -> Private {
        let mut p = Private { port: free_port(), child: None };
        p.up();
        p
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Starts the server (again) on its port and waits until it answers.
    pub fn up(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (apt install redis-server)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start on {}", self.port);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the server: connections drop, new ones are refused.
    pub fn down(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Private {
    fn drop(&mut self) {
        self.down();
    }
}
