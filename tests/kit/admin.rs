//! Admin calls for tests, one trait over both ways to reach the admin API:
//! the real `AdminClient` (the CLI's client) over HTTP, and the router
//! in-process with `oneshot` when a test needs no socket. A call answers
//! `(status, JSON)` whatever the status, so tests assert on refusals too.
#![allow(async_fn_in_trait)]

use std::net::SocketAddr;

use axum::body::Body;
use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use keygate::cli::client::AdminClient;
use serde_json::{json, Value};
use tower::ServiceExt;

use super::gateway::Admin;
use super::TOKEN;

/// The real admin client for the admin API at `addr`, with the owner token.
pub fn admin_client(addr: SocketAddr) -> AdminClient {
    AdminClient::new(&format!("http://{addr}"), Some(TOKEN)).expect("admin client")
}

/// The JSON of an answer: `Null` for an empty or non-JSON body.
fn json_of(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).unwrap_or(Value::Null)
}

pub trait AdminCalls {
    /// One call with the owner token; `(status, JSON body)`.
    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value);

    /// Creates an account and returns its id.
    async fn account(&self, name: &str) -> String {
        let (s, v) = self.call(Method::POST, "/v1/accounts", Some(json!({ "name": name }))).await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        v["id"].as_str().expect("id").to_owned()
    }

    /// Creates a key from a full request body; returns (record, secret).
    async fn create_key(&self, body: Value) -> (Value, String) {
        let (s, v) = self.call(Method::POST, "/v1/keys", Some(body)).await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        (v["key"].clone(), v["secret"].as_str().expect("secret").to_owned())
    }

    /// Creates a key in `account` with `permission`; returns (id, secret).
    async fn key(&self, account: &str, permission: &str) -> (String, String) {
        let body = json!({ "account_id": account, "name": "test key", "permission": permission });
        let (record, secret) = self.create_key(body).await;
        (record["id"].as_str().expect("id").to_owned(), secret)
    }
}

impl AdminCalls for AdminClient {
    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let (status, bytes) = self.request(method, path, body.as_ref()).await.expect("admin API reachable");
        (status, json_of(&bytes))
    }
}

impl AdminCalls for Admin {
    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        self.call_as(Some(TOKEN), method, path, body.map(|b| b.to_string())).await
    }
}

impl Admin {
    /// A call with any token (or none) and any body text.
    pub async fn call_as(
        &self,
        token: Option<&str>,
        method: Method,
        path: &str,
        body: Option<String>,
    ) -> (StatusCode, Value) {
        let mut headers = Vec::new();
        let auth = token.map(|t| format!("Bearer {t}"));
        if let Some(auth) = &auth {
            headers.push(("authorization", auth.as_str()));
        }
        if body.is_some() {
            headers.push(("content-type", "application/json"));
        }
        let res = self.request(method, path, &headers, body.map(Body::from).unwrap_or_else(Body::empty)).await;
        (res.status(), json_of(res.body()))
    }

    /// The whole response to a request (status, headers, body bytes), for
    /// tests about headers and non-JSON bodies.
    pub async fn raw(&self, method: Method, path: &str, headers: &[(&str, &str)]) -> http::Response<Bytes> {
        self.request(method, path, headers, Body::empty()).await
    }

    /// The one place a request reaches the router in-process: any
    /// headers, any body, the whole response.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Body>,
    ) -> http::Response<Bytes> {
        let mut req = Request::builder().method(method).uri(path);
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        let res = self.router.clone().oneshot(req.body(body.into()).expect("request")).await.expect("infallible");
        let (parts, body) = res.into_parts();
        let bytes = body.collect().await.expect("body").to_bytes();
        http::Response::from_parts(parts, bytes)
    }
}
