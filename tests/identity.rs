//! The identity contract (SECURITY.md): whatever a client writes, the
//! upstream can trust the headers keygate manages, and a key's restrictions
//! hold against headers that make frameworks change the method, the path or
//! the client's address. Black-box: a real gateway on 127.0.0.1:0 and a real
//! upstream that reports the headers it received.
//!
//! `identity/underscores.rs` holds `_` spellings of managed headers,
//! `identity/overrides.rs` method and URL override headers,
//! `identity/forwarding.rs` forwarding headers from trusted and untrusted
//! peers, `identity/token.rs` the signed identity token (checked with PyJWT,
//! `identity/verify_jwt.py`).

mod kit;

#[path = "identity/forwarding.rs"]
mod forwarding;
#[path = "identity/overrides.rs"]
mod overrides;
#[path = "identity/token.rs"]
mod token;
#[path = "identity/underscores.rs"]
mod underscores;

use std::net::SocketAddr;

use http::Method;
use keygate::config::Config;
use keygate::keys::{generate, KeyPolicy, Permission, Restrictions, RouteRule, Secret};
use kit::http::{empty, send, Reply};
use kit::TestGateway;

/// What a key may do, for a gateway with that one key.
pub struct KeySpec {
    pub permission: Permission,
    pub allowed_ips: Vec<String>,
    /// `(path_prefix, methods)`.
    pub allowed_routes: Vec<(String, Vec<String>)>,
}

impl KeySpec {
    pub fn read() -> Self {
        KeySpec { permission: Permission::Read, allowed_ips: vec![], allowed_routes: vec![] }
    }

    pub fn write() -> Self {
        KeySpec { permission: Permission::Write, ..Self::read() }
    }
}

/// A proxy on 127.0.0.1:0 whose only key is `spec`.
pub struct OneKeyGateway {
    pub addr: SocketAddr,
    pub key: Secret,
}

impl OneKeyGateway {
    pub async fn start(config: Config, spec: KeySpec) -> Self {
        let key = generate("kg_live");
        let routes: Vec<RouteRule> = spec
            .allowed_routes
            .iter()
            .map(|(path_prefix, methods)| RouteRule {
                path_prefix: path_prefix.clone(),
                methods: methods.clone(),
                host: None,
            })
            .collect();
        let mut policy = KeyPolicy::builder("key_one", "acc_main").permission(spec.permission);
        if let Some(restrictions) = Restrictions::parse(&spec.allowed_ips, &routes).expect("restrictions") {
            policy = policy.restrictions((*restrictions).clone());
        }
        let gw = TestGateway::new()
            .upstream(config.upstream.url.clone())
            .config(move |c| *c = config)
            .key(policy.row(key.hash()))
            .proxy()
            .await;
        OneKeyGateway { addr: gw.addr, key }
    }

    /// Sends `method path` with the key and `headers`.
    pub async fn send(&self, method: Method, path: &str, headers: &[(&str, &str)]) -> Reply {
        let mut req = http::Request::builder()
            .method(method)
            .uri(format!("http://{}{}", self.addr, path))
            .header("x-api-key", self.key.expose());
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        send(req.body(empty()).expect("request")).await
    }
}

/// Asserts a refusal with `status` and `code`.
pub fn assert_refused(reply: &Reply, status: u16, code: &str) {
    assert_eq!(reply.status.as_u16(), status, "{}", String::from_utf8_lossy(&reply.body));
    assert_eq!(reply.json()["code"], code);
}
