//! The client address: the socket peer, unless that peer is a configured trusted proxy.

use ipnet::IpNet;
use std::net::IpAddr;

/// The address to apply IP allowlists and rate limits to.
///
/// When `peer` is a trusted proxy, `X-Forwarded-For` is read from the right: each hop appended
/// by a trusted proxy is skipped, and the first untrusted hop is the client. Anything a client
/// wrote further left is ignored, so it cannot choose its own address. Without a trusted peer,
/// or when the header is missing or malformed, the peer itself is the client.
#[must_use]
pub fn client_ip(peer: IpAddr, forwarded_for: Option<&str>, trusted: &[IpNet]) -> IpAddr {
    let peer = peer.to_canonical();
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let Some(header) = forwarded_for else {
        return peer;
    };
    let mut client = peer;
    for hop in header.rsplit(',') {
        match hop.trim().parse::<IpAddr>() {
            Ok(ip) => {
                client = ip.to_canonical();
                if !is_trusted(&client) {
                    return client;
                }
            }
            Err(_) => return client,
        }
    }
    client
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(v: &[&str]) -> Vec<IpNet> {
        v.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn untrusted_peer_is_the_client_whatever_the_header_says() {
        let ip = client_ip("198.51.100.1".parse().unwrap(), Some("203.0.113.9"), &nets(&["10.0.0.0/8"]));
        assert_eq!(ip.to_string(), "198.51.100.1");
    }

    #[test]
    fn trusted_proxy_yields_the_rightmost_untrusted_hop() {
        let t = nets(&["10.0.0.0/8"]);
        let ip = client_ip("10.0.0.2".parse().unwrap(), Some("1.1.1.1, 203.0.113.9, 10.0.0.5"), &t);
        assert_eq!(ip.to_string(), "203.0.113.9");
    }

    #[test]
    fn ipv4_mapped_peers_are_canonicalised() {
        let ip = client_ip("::ffff:192.0.2.7".parse().unwrap(), None, &[]);
        assert_eq!(ip.to_string(), "192.0.2.7");
    }
}
