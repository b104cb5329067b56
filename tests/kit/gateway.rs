//! Test support for black-box tests of the admin router and the whole
//! gateway: a real SQLite file in a temp dir, the real router or the real
//! `Gateway`, and a JSON client. No fixed ports.
#![allow(dead_code)]

pub mod client;
pub mod pg;
pub mod process;
pub mod upstream;

use std::sync::Arc;

use axum::body::Body;
use axum::Router;
use http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use keygate::admin::{self, AdminState};
use keygate::config::Config;
use keygate::reload::Reloader;
use keygate::store::Store;
use serde_json::Value;
use tower::ServiceExt;

pub const TOKEN: &str = "test-owner-token-0123456789abcdef";

/// A config whose store is a fresh SQLite file in `dir` and whose listeners
/// bind port 0.
pub fn config(dir: &tempfile::TempDir) -> Config {
    let mut c = Config::default();
    c.store.url = format!("sqlite://{}", dir.path().join("keygate.db").display());
    c.proxy.listen = "127.0.0.1:0".parse().expect("addr");
    c.admin.listen = "127.0.0.1:0".parse().expect("addr");
    c.store.poll_interval_ms = 50;
    c
}

/// The admin router on a fresh store, called in-process.
pub struct Admin {
    pub router: Router,
    pub reloader: Arc<Reloader>,
    pub dir: tempfile::TempDir,
}

impl Admin {
    pub async fn new() -> Admin {
        Self::new_with(|_| {}).await
    }

    pub async fn new_with(edit: impl FnOnce(&mut Config)) -> Admin {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = config(&dir);
        edit(&mut config);
        let store = Store::connect(&config.store).await.expect("store");
        let reloader = Reloader::start(store).await.expect("reloader");
        let state = AdminState::new(&config, Arc::clone(&reloader), Some(TOKEN));
        Admin { router: admin::router(state, 64 * 1024), reloader, dir }
    }

    pub async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        self.call_as(Some(TOKEN), method, path, body.map(|b| b.to_string())).await
    }

    pub async fn call_as(
        &self,
        token: Option<&str>,
        method: Method,
        path: &str,
        body: Option<String>,
    ) -> (StatusCode, Value) {
        let mut req = Request::builder().method(method).uri(path);
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        if body.is_some() {
            req = req.header("content-type", "application/json");
        }
        let req = req.body(body.map(Body::from).unwrap_or_else(Body::empty)).expect("request");
        let res = self.router.clone().oneshot(req).await.expect("infallible");
        let status = res.status();
        let bytes = res.into_body().collect().await.expect("body").to_bytes();
        let value = if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).unwrap_or(Value::Null) };
        (status, value)
    }

    /// The whole response to a request (status, headers, body bytes), for
    /// tests about headers and non-JSON bodies.
    pub async fn raw(&self, method: Method, path: &str, headers: &[(&str, &str)]) -> http::Response<bytes::Bytes> {
        let mut req = Request::builder().method(method).uri(path);
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        let req = req.body(Body::empty()).expect("request");
        let res = self.router.clone().oneshot(req).await.expect("infallible");
        let (parts, body) = res.into_parts();
        let bytes = body.collect().await.expect("body").to_bytes();
        http::Response::from_parts(parts, bytes)
    }

    /// Creates an account and returns its id.
    pub async fn account(&self, name: &str) -> String {
        let (s, v) = self.call(Method::POST, "/v1/accounts", Some(serde_json::json!({ "name": name }))).await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        v["id"].as_str().expect("id").to_owned()
    }

    /// Creates a key and returns (record, secret).
    pub async fn key(&self, body: Value) -> (Value, String) {
        let (s, v) = self.call(Method::POST, "/v1/keys", Some(body)).await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        (v["key"].clone(), v["secret"].as_str().expect("secret").to_owned())
    }
}

/// The whole gateway in-process on a fresh store, in front of a real
/// upstream.
pub struct Gateway {
    pub gateway: keygate::server::Gateway,
    pub admin: client::AdminClient,
    pub upstream: std::net::SocketAddr,
    pub dir: tempfile::TempDir,
}

impl Gateway {
    pub async fn start() -> Gateway {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(edit: impl FnOnce(&mut Config)) -> Gateway {
        let upstream = upstream::start().await;
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = config(&dir);
        config.upstream.url = format!("http://{upstream}");
        edit(&mut config);
        let gateway = keygate::server::Gateway::start(&config, Some(TOKEN)).await.expect("gateway starts");
        let admin = client::AdminClient { addr: gateway.admin_addr, token: TOKEN.into() };
        Gateway { gateway, admin, upstream, dir }
    }

    pub fn proxy(&self) -> std::net::SocketAddr {
        self.gateway.proxy_addr
    }
}
