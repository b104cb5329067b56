//! A plain HTTP/1.1 client for tests (hyper-util's pooled client), and the
//! admin-over-HTTP helper used against real listeners.
#![allow(dead_code)]

use std::net::SocketAddr;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// The problem's `code`, or "" for a non-problem answer.
    pub fn code(&self) -> String {
        self.json()["code"].as_str().unwrap_or("").to_owned()
    }
}

pub fn client() -> Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

pub async fn send(method: Method, url: &str, headers: &[(&str, &str)], body: impl Into<Bytes>) -> Reply {
    let mut req = Request::builder().method(method).uri(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let res = client().request(req.body(Full::new(body.into())).expect("request")).await.expect("send");
    let status = res.status();
    let headers = res.headers().clone();
    let body = res.into_body().collect().await.expect("body").to_bytes();
    Reply { status, headers, body }
}

/// GET through the proxy with a Bearer key.
pub async fn get_with_key(proxy: SocketAddr, path: &str, key: &str) -> Reply {
    let auth = format!("Bearer {key}");
    send(Method::GET, &format!("http://{proxy}{path}"), &[("authorization", &auth)], Bytes::new()).await
}

/// The admin API over a real socket.
pub struct AdminClient {
    pub addr: SocketAddr,
    pub token: String,
}

impl AdminClient {
    pub async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let auth = format!("Bearer {}", self.token);
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let r = send(
            method,
            &format!("http://{}{path}", self.addr),
            &[("authorization", &auth), ("content-type", "application/json")],
            body,
        )
        .await;
        (r.status, r.json())
    }

    pub async fn account(&self, name: &str) -> String {
        let (s, v) = self.call(Method::POST, "/v1/accounts", Some(serde_json::json!({ "name": name }))).await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        v["id"].as_str().expect("id").to_owned()
    }

    /// Creates a key; returns (id, secret).
    pub async fn key(&self, account: &str, permission: &str) -> (String, String) {
        let body = serde_json::json!({ "account_id": account, "name": "test key", "permission": permission });
        let (s, v) = self.call(Method::POST, "/v1/keys", Some(body)).await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        (v["key"]["id"].as_str().expect("id").to_owned(), v["secret"].as_str().expect("secret").to_owned())
    }
}
