//! The `authz` section: forward auth for an ingress that already runs in
//! front of the upstream (nginx `auth_request`, Caddy `forward_auth`,
//! Traefik `forwardAuth`, Envoy `ext_authz`). Each listener is off unless
//! its address is set; the decision, keys, limits and trusted proxies are
//! the proxy's own (`proxy.*`, `limits.*`), so there is nothing else here.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use super::FieldError;

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct AuthzConfig {
    /// Forward auth over HTTP/1.1: each request is decided as the proxy
    /// would decide the original one named by `X-Forwarded-Method` and
    /// `X-Forwarded-Uri`. Off when unset. Put the ingress's address in
    /// `proxy.trusted_proxies` so its `X-Forwarded-For` and
    /// `X-Forwarded-Host` are believed.
    pub listen: Option<SocketAddr>,
    /// Envoy's gRPC `ext_authz` (`envoy.service.auth.v3.Authorization/Check`)
    /// over HTTP/2 without TLS. Off when unset.
    pub grpc_listen: Option<SocketAddr>,
}

impl AuthzConfig {
    /// Each listener needs a port of its own: two sections naming the same
    /// one would fail only at bind time, with a less helpful message.
    pub(super) fn check(&self, proxy: SocketAddr, admin: SocketAddr) -> Vec<FieldError> {
        let mut errors = Vec::new();
        let taken = [("proxy.listen", Some(proxy)), ("admin.listen", Some(admin)), ("authz.listen", self.listen)];
        for (path, addr) in [("authz.listen", self.listen), ("authz.grpc_listen", self.grpc_listen)] {
            let Some(addr) = addr.filter(|a| a.port() != 0) else { continue };
            if let Some((other, _)) = taken.iter().find(|(other, a)| *other != path && *a == Some(addr)) {
                errors.push(FieldError { path: path.into(), message: format!("{addr} is already {other}") });
            }
        }
        errors
    }
}

/// Fills the optional fields so `KEYGATE_AUTHZ_*` variables can set them.
pub(super) fn shape(authz: &mut AuthzConfig) {
    let any = SocketAddr::from(([127, 0, 0, 1], 0));
    authz.listen = Some(any);
    authz.grpc_listen = Some(any);
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    #[test]
    fn off_by_default_and_set_by_file_or_environment() {
        let config = Config::from_yaml("", Vec::new()).expect("valid");
        assert_eq!((config.authz.listen, config.authz.grpc_listen), (None, None));
        let env = vec![("KEYGATE_AUTHZ_GRPC_LISTEN".to_string(), "127.0.0.1:9192".to_string())];
        let config = Config::from_yaml("authz:\n  listen: 127.0.0.1:9191\n", env).expect("valid");
        assert_eq!(config.authz.listen.map(|a| a.port()), Some(9191));
        assert_eq!(config.authz.grpc_listen.map(|a| a.port()), Some(9192));
    }

    #[test]
    fn errors_name_the_field() {
        let err = Config::from_yaml("authz:\n  listen: nope\n  bogus: 1\n", Vec::new()).expect_err("invalid");
        let paths: Vec<&str> = err.errors.iter().map(|e| e.path.as_str()).collect();
        assert!(paths.contains(&"authz.listen") && paths.contains(&"authz.bogus"), "{paths:?}");
        let text =
            "proxy:\n  listen: 127.0.0.1:8080\nauthz:\n  listen: 127.0.0.1:8080\n  grpc_listen: 127.0.0.1:8080\n";
        let err = Config::from_yaml(text, Vec::new()).expect_err("shared port");
        let shown = err.to_string();
        assert!(shown.contains("authz.listen: 127.0.0.1:8080 is already proxy.listen"), "{shown}");
        assert!(shown.contains("authz.grpc_listen: 127.0.0.1:8080 is already proxy.listen"), "{shown}");
        let text = "authz:\n  listen: 127.0.0.1:8081\n  grpc_listen: 127.0.0.1:8081\n";
        let err = Config::from_yaml(text, Vec::new()).expect_err("shared port");
        assert_eq!(err.errors[0].path, "authz.grpc_listen", "{err}");
        let ok = "authz:\n  listen: 127.0.0.1:0\n  grpc_listen: 127.0.0.1:0\n";
        assert!(Config::from_yaml(ok, Vec::new()).is_ok());
    }
}
