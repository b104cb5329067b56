//! Which address counts as the client's: the direct peer, unless the peer
//! is a configured trusted proxy — then the right-most `X-Forwarded-For`
//! entry that is not itself a trusted proxy. A spoofed `X-Forwarded-For`
//! from anyone else is ignored.

use std::net::IpAddr;

use http::HeaderMap;

use crate::keys::cidr::IpNet;

/// Whether `peer` is one of the trusted proxies.
pub fn is_trusted(peer: IpAddr, trusted: &[IpNet]) -> bool {
    trusted.iter().any(|net| net.contains(peer))
}

pub fn resolve(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: IpAddr| is_trusted(ip, trusted);
    if trusted.is_empty() || !is_trusted(peer) {
        return peer;
    }
    let mut client = peer;
    // Later headers and later entries were appended by proxies nearer to us.
    let hops = headers.get_all("x-forwarded-for").iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(','));
    let hops: Vec<&str> = hops.collect();
    for hop in hops.iter().rev() {
        match hop.trim().parse::<IpAddr>() {
            Ok(ip) => {
                client = ip;
                if !is_trusted(ip) {
                    break;
                }
            }
            // An unparsable entry ends the chain of trust.
            Err(_) => break,
        }
    }
    client
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(xff: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in xff {
            h.append("x-forwarded-for", v.parse().expect("value"));
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn untrusted_peers_cannot_spoof() {
        let trusted = [IpNet::parse("10.0.0.0/8").expect("net")];
        assert_eq!(resolve(ip("203.0.113.9"), &headers(&["1.2.3.4"]), &trusted), ip("203.0.113.9"));
        assert_eq!(resolve(ip("203.0.113.9"), &headers(&["1.2.3.4"]), &[]), ip("203.0.113.9"));
    }

    #[test]
    fn trusted_proxies_are_skipped_from_the_right() {
        let trusted = [IpNet::parse("10.0.0.0/8").expect("net")];
        let h = headers(&["6.6.6.6, 198.51.100.4", "10.0.0.2"]);
        assert_eq!(resolve(ip("10.0.0.1"), &h, &trusted), ip("198.51.100.4"));
        assert_eq!(resolve(ip("10.0.0.1"), &headers(&[]), &trusted), ip("10.0.0.1"));
        assert_eq!(resolve(ip("10.0.0.1"), &headers(&["garbage"]), &trusted), ip("10.0.0.1"));
    }
}
