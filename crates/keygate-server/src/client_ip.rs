//! The client address: the socket peer, unless that peer is a configured trusted proxy.

use axum::extract::{ConnectInfo, Request};
use axum::http::{HeaderMap, HeaderName};
use ipnet::IpNet;
use std::net::{IpAddr, SocketAddr};

/// `X-Forwarded-For`, as a constant: looking a header up by a `&str` parses the name each time.
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// The client address of a request: the peer, or the address a trusted proxy forwarded (see
/// [`client_ip`]); `None` when a trusted proxy forwarded an address that cannot be read, or the
/// connection's peer is unknown.
pub fn request_client_ip(req: &Request, trusted: &[IpNet]) -> Option<IpAddr> {
    peer_client_ip(req.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0), req.headers(), trusted)
}

/// The client address of a request with `headers` that came from `peer` (the front passes the
/// connection's peer to the endpoint table's paths itself, without a `ConnectInfo` extension; see
/// [`crate::front`]).
pub fn peer_client_ip(peer: Option<SocketAddr>, headers: &HeaderMap, trusted: &[IpNet]) -> Option<IpAddr> {
    let lines = headers.get_all(X_FORWARDED_FOR).into_iter().filter_map(|v| v.to_str().ok());
    client_ip(peer?.ip(), lines, trusted)
}

/// Parses one `X-Forwarded-For` hop: an address, or an address with a port as some proxies
/// write it (`203.0.113.7:5678`, `[2001:db8::1]:443`).
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    hop.parse::<IpAddr>().ok().or_else(|| hop.parse::<SocketAddr>().ok().map(|s| s.ip()))
}

/// The address to apply IP allowlists and rate limits to, or `None` when it cannot be known.
///
/// When `peer` is a trusted proxy, every `X-Forwarded-For` header line is read, in order, as one
/// list, and walked from the right: each hop that is itself a trusted proxy is skipped, and the
/// first untrusted hop is the client. Anything further left was written by the client and is
/// ignored, so a client cannot choose its own address, not even by sending its own header line
/// ahead of the proxy's. A hop that cannot be read where the client should be gives `None`: the
/// caller must refuse rather than guess. Without a trusted peer the peer itself is the client,
/// and the header lines are not read at all (they come as an iterator, so nothing is collected
/// for the common case of a direct connection).
#[must_use]
pub fn client_ip<'a>(
    peer: IpAddr,
    forwarded_for: impl DoubleEndedIterator<Item = &'a str>,
    trusted: &[IpNet],
) -> Option<IpAddr> {
    let peer = peer.to_canonical();
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.contains(ip));
    if !is_trusted(&peer) {
        return Some(peer);
    }
    let mut client = peer;
    for hop in forwarded_for.rev().flat_map(|line| line.rsplit(',')) {
        client = parse_hop(hop)?.to_canonical();
        if !is_trusted(&client) {
            return Some(client);
        }
    }
    Some(client)
}

/// The key an address is counted under (request weight, open connections): the address, or its
/// /64 for IPv6 (one host usually owns a whole /64, so counting single IPv6 addresses would let
/// it multiply its limit).
#[must_use]
pub fn counting_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let mut o = v6.octets();
            o[8..].fill(0);
            IpAddr::from(o)
        }
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(v: &[&str]) -> Vec<IpNet> {
        v.iter().map(|s| s.parse().unwrap()).collect()
    }

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn untrusted_peer_is_the_client_whatever_the_header_says() {
        assert_eq!(
            client_ip("198.51.100.1".parse().unwrap(), ["203.0.113.9"].into_iter(), &nets(&["10.0.0.0/8"])),
            ip("198.51.100.1")
        );
    }

    #[test]
    fn trusted_proxy_yields_the_rightmost_untrusted_hop() {
        let t = nets(&["10.0.0.0/8"]);
        assert_eq!(
            client_ip("10.0.0.2".parse().unwrap(), ["1.1.1.1, 203.0.113.9, 10.0.0.5"].into_iter(), &t),
            ip("203.0.113.9")
        );
    }

    #[test]
    fn a_header_line_sent_by_the_client_ahead_of_the_proxys_cannot_choose_the_address() {
        // HAProxy's `option forwardfor` appends its own line after the client's.
        let t = nets(&["10.0.0.0/8"]);
        let lines = ["192.0.2.50", "198.51.100.23"];
        assert_eq!(client_ip("10.0.0.2".parse().unwrap(), lines.iter().copied(), &t), ip("198.51.100.23"));
    }

    #[test]
    fn hops_with_ports_are_read_and_unreadable_hops_give_no_address() {
        let t = nets(&["10.0.0.0/8"]);
        assert_eq!(client_ip("10.0.0.2".parse().unwrap(), ["203.0.113.9:5678"].into_iter(), &t), ip("203.0.113.9"));
        assert_eq!(client_ip("10.0.0.2".parse().unwrap(), ["[2001:db8::1]:443"].into_iter(), &t), ip("2001:db8::1"));
        assert_eq!(client_ip("10.0.0.2".parse().unwrap(), ["unknown"].into_iter(), &t), None);
    }

    #[test]
    fn ipv4_mapped_peers_are_canonicalised() {
        assert_eq!(client_ip("::ffff:192.0.2.7".parse().unwrap(), std::iter::empty(), &[]), ip("192.0.2.7"));
    }

    #[test]
    fn ipv6_addresses_count_per_64() {
        let a = counting_key("2001:db8::1".parse().unwrap());
        assert_eq!(a, counting_key("2001:db8::ffff:1".parse().unwrap()));
        assert_ne!(a, counting_key("2001:db8:0:1::1".parse().unwrap()));
        let v4: IpAddr = "192.0.2.7".parse().unwrap();
        assert_eq!(counting_key("::ffff:192.0.2.7".parse().unwrap()), v4);
    }
}
