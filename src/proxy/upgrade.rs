//! HTTP/1.1 upgrades (WebSocket and any other `Upgrade` protocol) through
//! the proxy: the request is decided like any other, then forwarded with its
//! `Connection: upgrade` and `Upgrade` headers on an upstream connection of
//! its own; on the upstream's `101 Switching Protocols` both connections
//! are taken over from hyper and bytes are copied both ways until either
//! side closes. Any other answer is passed through as usual.
//!
//! Owns the tunnel only. It counts nothing: the request was decided and
//! measured once, by the proxy, when it was answered with the 101. An
//! upgraded upstream connection never returns to the pool (it is not
//! HTTP any more). Extended CONNECT over HTTP/2 (RFC 8441) is not served.

use http::header::{HeaderMap, HeaderValue, CONNECTION, UPGRADE};
use http::{request, response, StatusCode, Version};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

use crate::contract::RequestId;
use crate::listener::strict::SwitchSignal;

/// The client's side of a requested upgrade.
#[derive(Debug)]
pub struct ClientUpgrade {
    on_upgrade: OnUpgrade,
    /// Tells the listener's strict framing check that a `101` is coming
    /// (absent when the connection is not checked).
    signal: Option<SwitchSignal>,
    /// The `Upgrade` header as the client sent it (`websocket`).
    protocol: HeaderValue,
}

/// The upgrade a request asks for, if any: HTTP/1.1 with `Upgrade` and a
/// `Connection` header listing `upgrade`. Takes hyper's handle on the
/// client connection out of the request.
///
/// An upgrade to `h2c` is not one: its tunnel would carry HTTP/2 requests
/// that keygate never decides on (and RFC 9113 deprecates it). Its headers
/// are then stripped like any hop-by-hop header.
pub fn requested(parts: &mut request::Parts) -> Option<ClientUpgrade> {
    if parts.version != Version::HTTP_11 {
        return None;
    }
    // Checked first: one lookup on the common path, which has no `Upgrade`.
    let protocol = parts.headers.get(UPGRADE)?.clone();
    if !lists_upgrade(&parts.headers) || names_h2c(&protocol) {
        return None;
    }
    let on_upgrade = parts.extensions.remove::<OnUpgrade>()?;
    let signal = parts.extensions.remove::<SwitchSignal>();
    Some(ClientUpgrade { on_upgrade, signal, protocol })
}

/// Whether a `Connection` header lists the `upgrade` option.
fn lists_upgrade(headers: &HeaderMap) -> bool {
    headers
        .get_all(CONNECTION)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .any(|token| token.trim_ascii().eq_ignore_ascii_case(b"upgrade"))
}

fn names_h2c(protocol: &HeaderValue) -> bool {
    protocol.as_bytes().split(|&b| b == b',').any(|p| p.trim_ascii().eq_ignore_ascii_case(b"h2c"))
}

impl ClientUpgrade {
    /// Puts the upgrade back on request headers that `prepare_request`
    /// stripped of everything hop-by-hop.
    pub fn restore_headers(&self, headers: &mut HeaderMap) {
        restore(headers, self.protocol.clone());
    }
}

fn restore(headers: &mut HeaderMap, protocol: HeaderValue) {
    headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(UPGRADE, protocol);
}

/// Why a 101 could not be relayed.
#[derive(Debug)]
pub struct NotSwitched;

/// Completes an upgrade whose upstream answered `101`: runs `prepare` (the
/// usual response header rewrite) with the upgrade headers kept, and spawns
/// the tunnel that starts once hyper has sent the 101 to the client.
pub fn switch(
    client: ClientUpgrade,
    parts: &mut response::Parts,
    request_id: &RequestId,
    prepare: impl FnOnce(&mut HeaderMap),
) -> Result<(), NotSwitched> {
    debug_assert_eq!(parts.status, StatusCode::SWITCHING_PROTOCOLS);
    let protocol = parts.headers.get(UPGRADE).cloned().ok_or(NotSwitched)?;
    let upstream = parts.extensions.remove::<OnUpgrade>().ok_or(NotSwitched)?;
    prepare(&mut parts.headers);
    restore(&mut parts.headers, protocol);
    if let Some(signal) = &client.signal {
        signal.switching();
    }
    let request_id = request_id.clone();
    tokio::spawn(async move {
        let (client, upstream) = match tokio::try_join!(client.on_upgrade, upstream) {
            Ok(both) => both,
            Err(e) => {
                tracing::debug!(request_id = %request_id, error = %e, "upgrade failed");
                return;
            }
        };
        let (mut client, mut upstream) = (TokioIo::new(client), TokioIo::new(upstream));
        match tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
            Ok((up, down)) => tracing::debug!(request_id = %request_id, up, down, "upgraded connection closed"),
            Err(e) => tracing::debug!(request_id = %request_id, error = %e, "upgraded connection ended with an error"),
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(version: Version, headers: &[(&str, &str)]) -> request::Parts {
        let mut builder = http::Request::builder().version(version);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(()).expect("request").into_parts().0
    }

    #[test]
    fn an_upgrade_needs_both_headers_and_http_1_1() {
        fn h(c: &str) -> [(&str, &str); 2] {
            [("connection", c), ("upgrade", "websocket")]
        }
        assert!(lists_upgrade(&parts(Version::HTTP_11, &h("keep-alive, Upgrade")).headers));
        assert!(!lists_upgrade(&parts(Version::HTTP_11, &h("keep-alive, upgrades")).headers));
        assert!(names_h2c(&HeaderValue::from_static("foo, H2C")));
        assert!(!names_h2c(&HeaderValue::from_static("websocket")));
        // Without hyper's handle (not served by an upgrading connection),
        // or on HTTP/1.0, there is nothing to take over.
        assert!(requested(&mut parts(Version::HTTP_11, &h("upgrade"))).is_none());
        assert!(requested(&mut parts(Version::HTTP_10, &h("upgrade"))).is_none());
    }
}
