//! A fresh PostgreSQL database per test on 127.0.0.1:5432, dropped when the
//! test ends, and a TCP relay in front of the server that a test can cut to
//! simulate the store going away. When the server is unreachable the tests
//! skip — except with CI=true, where they fail loudly.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use sqlx::{Connection, PgConnection};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

pub const SERVER: &str = "postgres://postgres@127.0.0.1:5432";

pub struct Database {
    pub name: String,
}

impl Database {
    /// The database's URL through `addr` (the server itself or a relay).
    pub fn url_via(&self, addr: &str) -> String {
        format!("postgres://postgres@{addr}/{}", self.name)
    }

    pub fn url(&self) -> String {
        self.url_via("127.0.0.1:5432")
    }
}

/// A new empty database, or `None` (skip) when PostgreSQL is unreachable
/// outside CI.
pub async fn fresh() -> Option<Database> {
    let mut admin = match PgConnection::connect(&format!("{SERVER}/postgres")).await {
        Ok(c) => c,
        Err(e) => {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("PostgreSQL at 127.0.0.1:5432 is unreachable in CI: {e}");
            }
            eprintln!("skipped: PostgreSQL at 127.0.0.1:5432 is unreachable ({e})");
            return None;
        }
    };
    let name = format!("keygate_test_{}", keygate::keys::format::new_id("db")[3..].to_ascii_lowercase());
    sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut admin).await.expect("create database");
    Some(Database { name })
}

impl Drop for Database {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop runs inside the test's runtime: do the cleanup on a thread of
        // its own. Best effort — a leftover test database harms nothing.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
            rt.block_on(async {
                if let Ok(mut c) = PgConnection::connect(&format!("{SERVER}/postgres")).await {
                    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(&mut c).await;
                }
            });
        })
        .join();
    }
}

/// Terminates every connection to `db` whose last statement starts with
/// `query_prefix` (e.g. `LISTEN`); returns how many.
pub async fn terminate(db: &Database, query_prefix: &str) -> i64 {
    let mut c = PgConnection::connect(&format!("{SERVER}/postgres")).await.expect("connect");
    let killed: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND query LIKE $2 AND pid <> pg_backend_pid()",
    )
    .bind(&db.name)
    .bind(format!("{query_prefix}%"))
    .fetch_all(&mut c)
    .await
    .expect("terminate");
    killed.len() as i64
}

/// A TCP relay to the PostgreSQL server that can be cut and restored.
pub struct Relay {
    pub addr: SocketAddr,
    up: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accept: JoinHandle<()>,
}

impl Relay {
    pub async fn start() -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind relay");
        let addr = listener.local_addr().expect("addr");
        let up = Arc::new(AtomicBool::new(true));
        let conns: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let (u, c) = (Arc::clone(&up), Arc::clone(&conns));
        let accept = tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else { continue };
                if !u.load(Ordering::SeqCst) {
                    continue; // dropped: the store is "down"
                }
                let task = tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect("127.0.0.1:5432").await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                c.lock().expect("conns").push(task);
            }
        });
        Relay { addr, up, conns, accept }
    }

    /// Cuts every relayed connection and refuses new ones.
    pub fn down(&self) {
        self.up.store(false, Ordering::SeqCst);
        for task in self.conns.lock().expect("conns").drain(..) {
            task.abort();
        }
    }

    pub fn up(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.accept.abort();
        self.down();
    }
}
