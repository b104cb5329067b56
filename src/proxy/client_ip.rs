//! Which address counts as the client's: the direct peer, unless the peer
//! is a configured trusted proxy — then the right-most `X-Forwarded-For`
//! entry that is not itself a trusted proxy. A spoofed `X-Forwarded-For`
//! from anyone else is ignored.
//!
//! Entries may carry a port, as some load balancers write them
//! (`203.0.113.7:443`, `[2001:db8::1]:443`). An entry that cannot be read
//! makes the client unknown, which no `allowed_ips` matches (fail closed),
//! rather than letting the trusted proxy's own address stand in for it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::fields::{text, Fields};
use super::headers::X_FORWARDED_FOR;

use crate::keys::cidr::IpNet;

/// Whether `peer` is one of the trusted proxies.
pub fn is_trusted(peer: IpAddr, trusted: &[IpNet]) -> bool {
    trusted.iter().any(|net| net.contains(peer))
}

/// The client's address; `None` (unknown) when a trusted proxy passed on an
/// entry that is not an address.
pub fn resolve<F: Fields>(peer: IpAddr, headers: &F, trusted: &[IpNet]) -> Option<IpAddr> {
    if trusted.is_empty() || !is_trusted(peer, trusted) {
        return Some(peer);
    }
    let mut client = peer;
    // Later headers and later entries were appended by proxies nearer to
    // us. When every hop is a trusted proxy, the left-most is the client.
    for value in headers.values(&X_FORWARDED_FOR).rev() {
        for entry in text(value)?.rsplit(',') {
            client = parse_entry(entry)?;
            if !is_trusted(client, trusted) {
                return Some(client);
            }
        }
    }
    Some(client)
}

/// One `X-Forwarded-For` entry: an address, an IPv4 address with a port, or
/// a bracketed IPv6 address with or without a port.
fn parse_entry(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim();
    if let Some(rest) = entry.strip_prefix('[') {
        let (ip, after) = rest.split_once(']')?;
        let ip: Ipv6Addr = ip.parse().ok()?;
        let port_ok = after.is_empty() || after.strip_prefix(':').is_some_and(is_port);
        return port_ok.then_some(IpAddr::V6(ip).to_canonical());
    }
    if let Ok(ip) = entry.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    let (ip, port) = entry.split_once(':')?;
    let ip: Ipv4Addr = ip.parse().ok()?;
    is_port(port).then_some(IpAddr::V4(ip))
}

fn is_port(text: &str) -> bool {
    !text.is_empty() && text.len() <= 5 && text.bytes().all(|b| b.is_ascii_digit()) && text.parse::<u16>().is_ok()
}

#[cfg(test)]
mod tests {
    use http::HeaderMap;

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
        assert_eq!(resolve(ip("203.0.113.9"), &headers(&["1.2.3.4"]), &trusted), Some(ip("203.0.113.9")));
        assert_eq!(resolve(ip("203.0.113.9"), &headers(&["garbage"]), &trusted), Some(ip("203.0.113.9")));
        assert_eq!(resolve(ip("203.0.113.9"), &headers(&["1.2.3.4"]), &[]), Some(ip("203.0.113.9")));
    }

    #[test]
    fn trusted_proxies_are_skipped_from_the_right() {
        let trusted = [IpNet::parse("10.0.0.0/8").expect("net")];
        let h = headers(&["6.6.6.6, 198.51.100.4", "10.0.0.2"]);
        assert_eq!(resolve(ip("10.0.0.1"), &h, &trusted), Some(ip("198.51.100.4")));
        assert_eq!(resolve(ip("10.0.0.1"), &headers(&[]), &trusted), Some(ip("10.0.0.1")));
        assert_eq!(resolve(ip("10.0.0.1"), &headers(&["10.0.0.3, 10.0.0.2"]), &trusted), Some(ip("10.0.0.3")));
    }

    #[test]
    fn entries_with_ports_are_read_and_unreadable_ones_make_the_client_unknown() {
        let trusted = [IpNet::parse("10.0.0.0/8").expect("net")];
        let resolve = |xff: &str| resolve(ip("10.0.0.1"), &headers(&[xff]), &trusted);
        for (entry, client) in [
            ("203.0.113.7:443", "203.0.113.7"),
            ("[2001:db8::1]:443", "2001:db8::1"),
            ("[2001:db8::1]", "2001:db8::1"),
            (" 2001:db8::1 ", "2001:db8::1"),
            ("::ffff:203.0.113.7", "203.0.113.7"),
            ("6.6.6.6:1, 10.0.0.9:80", "6.6.6.6"),
        ] {
            assert_eq!(resolve(entry), Some(ip(client)), "{entry}");
        }
        for entry in
            ["garbage", "203.0.113.7:", "203.0.113.7:x", "203.0.113.7:70000", "[2001:db8::1]x", "", "1.2.3.4, "]
        {
            assert_eq!(resolve(entry), None, "{entry:?}");
        }
        assert_eq!(resolve("garbage, 198.51.100.4"), Some(ip("198.51.100.4")), "the scan stops at the client");
    }
}
