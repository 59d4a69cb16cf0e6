//! Finding the network and our place in it (docs/PROTOCOL.md, "Discovery"): seed names
//! and the fixed fallback addresses of each chain, which addresses are routable, which
//! addresses may be told to which peer, and our own external address as peers report it
//! in their `version` (protocol version 2).
//!
//! Pure data with no I/O, like the address book (the protocol owns one
//! [`SelfAddress`]), except [`resolve`], which the driver runs off the protocol thread.

use super::addrbook;
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

/// With fewer known addresses than this, the seed names are resolved again.
pub const RESEED_BELOW: usize = 8;
/// How often the driver checks whether the address book is that small.
pub const RESEED_INTERVAL: Duration = Duration::from_secs(60);
/// Addresses taken from one seed name.
pub const MAX_ADDRS_PER_SEED: usize = 16;

/// Fixed fallback addresses per chain id, dialled when no seed name resolves and the
/// address book is empty. Both tables are empty today: the dev chain (1337) is local,
/// and the public testnet (7331) has no long-lived public node yet; a chain that gets
/// one lists it here.
const FIXED_SEEDS: &[(u32, &[&str])] = &[(cairn_core::genesis::DEV_CHAIN_ID, &[]), (7331, &[])];

/// The fixed fallback addresses of the chain `chain_id`.
pub fn fixed_seeds(chain_id: u32) -> Vec<SocketAddr> {
    FIXED_SEEDS
        .iter()
        .filter(|(id, _)| *id == chain_id)
        .flat_map(|(_, addrs)| addrs.iter().filter_map(|a| a.parse().ok()))
        .collect()
}

/// Resolves seed names (`host:port`) with the system resolver, up to
/// [`MAX_ADDRS_PER_SEED`] addresses each. A name that does not resolve is logged and
/// skipped.
pub async fn resolve(names: &[String]) -> Vec<SocketAddr> {
    let mut out = Vec::new();
    for name in names {
        match tokio::net::lookup_host(name.as_str()).await {
            Ok(addrs) => {
                let found: Vec<SocketAddr> = addrs.take(MAX_ADDRS_PER_SEED).collect();
                tracing::info!(seed = %name, addrs = found.len(), "seed resolved");
                out.extend(found);
            }
            Err(e) => tracing::warn!(seed = %name, error = %e, "cannot resolve seed, skipped"),
        }
    }
    out.sort();
    out.dedup();
    out
}

/// Peers in at least this many different network groups ([`addrbook::group`]: IPv4 /16,
/// IPv6 /32) must report the same IP before we adopt it as our external address.
pub const MIN_AGREEING_GROUPS: usize = 2;
/// Distinct reported IPs remembered (the reports beyond it are ignored), so that peers
/// reporting made-up addresses cannot grow the table without bound.
const MAX_REPORTED_IPS: usize = 64;

/// True if `ip` can be reached across the internet: not unspecified, loopback,
/// private (RFC 1918, IPv6 unique-local), shared (RFC 6598, carrier-grade NAT),
/// link-local, documentation or test-net (RFC 5737, 2001:db8::/32), benchmarking
/// (RFC 2544), multicast, broadcast or reserved (240/4).
pub fn is_routable(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_routable_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_routable_v4(&v4),
            None => is_routable_v6(v6),
        },
    }
}

fn is_routable_v4(ip: &Ipv4Addr) -> bool {
    let o = ip.octets();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_multicast()
        || ip.is_broadcast()
        || ip.is_documentation()
        || o[0] == 0
        || (o[0] == 100 && (o[1] & 0xc0) == 64) // 100.64.0.0/10, shared (CGNAT)
        || (o[0] == 198 && (o[1] & 0xfe) == 18) // 198.18.0.0/15, benchmarking
        || (o[0] == 192 && o[1] == 0 && o[2] == 0) // 192.0.0.0/24, protocol assignments
        || o[0] >= 240)
}

fn is_routable_v6(ip: &Ipv6Addr) -> bool {
    let s = ip.segments();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        || (s[0] & 0xfe00) == 0xfc00 // fc00::/7, unique local
        || (s[0] & 0xffc0) == 0xfe80 // fe80::/10, link local
        || (s[0] == 0x2001 && s[1] == 0x0db8)) // 2001:db8::/32, documentation
}

/// Whether `addr` may be sent to the peer at `peer` (in `addr` messages, answers to
/// `getaddr`, our own address): a routable address to anyone, an unroutable one
/// (private, loopback...) only to a peer that is itself unroutable, i.e. on our own
/// network, where such addresses mean something. Also the rule for taking addresses in:
/// a routable peer's unroutable addresses are not stored.
pub fn may_tell(peer: &SocketAddr, addr: &SocketAddr) -> bool {
    is_routable(&addr.ip()) || !is_routable(&peer.ip())
}

/// How our external address was learned, for `net_getInfo`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Learned {
    /// `--external-addr`.
    Configured,
    /// Reported by peers in this many network groups.
    Peers { groups: usize },
}

/// Our own address as the network sees it: the one the operator set with
/// `--external-addr`, or else the IP that peers in at least [`MIN_AGREEING_GROUPS`]
/// network groups report in their `version` (with our listen port: a peer reports the
/// port our connection came from, which a NAT picks per connection). Only routable
/// reports from routable peers count: a peer on our own network sees our private
/// address, which is no use to anyone else.
#[derive(Clone, Debug, Default)]
pub struct SelfAddress {
    configured: Vec<SocketAddr>,
    /// Reported IP → the network groups of the peers that reported it.
    reports: BTreeMap<IpAddr, BTreeSet<[u8; 4]>>,
    /// Set once a peer that dialled us finished the handshake.
    inbound_seen: bool,
}

impl SelfAddress {
    pub fn new(configured: Vec<SocketAddr>) -> SelfAddress {
        SelfAddress { configured, ..SelfAddress::default() }
    }

    /// A peer at `from` (the remote address of the connection) says it sees us as
    /// `reported`. Returns true if this made an address adopted or changed it.
    pub fn report(&mut self, from: &SocketAddr, reported: IpAddr) -> bool {
        let reported = canonical(reported);
        if !is_routable(&from.ip()) || !is_routable(&reported) {
            return false;
        }
        if !self.reports.contains_key(&reported) && self.reports.len() >= MAX_REPORTED_IPS {
            return false;
        }
        let before = self.adopted();
        self.reports.entry(reported).or_default().insert(addrbook::group(&canonical(from.ip())));
        self.adopted() != before
    }

    /// The reported IP we adopted: the one reported from the most network groups, if at
    /// least [`MIN_AGREEING_GROUPS`] (ties: the lower IP, so the choice is stable).
    pub fn adopted(&self) -> Option<(IpAddr, usize)> {
        self.reports
            .iter()
            .map(|(ip, groups)| (*ip, groups.len()))
            .filter(|(_, n)| *n >= MIN_AGREEING_GROUPS)
            .max_by_key(|(ip, n)| (*n, std::cmp::Reverse(*ip)))
    }

    /// The addresses we tell others to reach us at, and how each was learned: the
    /// configured ones if any, else the adopted IP with `listen_port` (none if we do not
    /// listen).
    pub fn external(&self, listen_port: u16) -> Vec<(SocketAddr, Learned)> {
        if !self.configured.is_empty() {
            return self.configured.iter().map(|a| (*a, Learned::Configured)).collect();
        }
        match self.adopted() {
            Some((ip, groups)) if listen_port != 0 => {
                vec![(SocketAddr::new(ip, listen_port), Learned::Peers { groups })]
            }
            _ => Vec::new(),
        }
    }

    pub fn set_inbound_seen(&mut self) {
        self.inbound_seen = true;
    }

    /// Whether any peer has dialled us and finished the handshake: we are reachable.
    pub fn inbound_seen(&self) -> bool {
        self.inbound_seen
    }
}

/// An IPv4-mapped IPv6 address as the IPv4 address it is, so both forms count as one.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn address_classes() {
        for r in ["1.2.3.4", "11.1.0.1", "8.8.8.8", "2a00:1450::1", "::ffff:11.2.0.1"] {
            assert!(is_routable(&ip(r)), "{r} is routable");
        }
        for u in [
            "0.0.0.0",
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "100.64.0.1",
            "100.127.255.255",
            "169.254.1.1",
            "192.0.2.1",
            "198.51.100.1",
            "203.0.113.7",
            "198.18.0.1",
            "198.19.255.1",
            "224.0.0.1",
            "240.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "fd00::1",
            "fe80::1",
            "2001:db8::1",
            "::ffff:10.0.0.1",
            "::ffff:127.0.0.1",
        ] {
            assert!(!is_routable(&ip(u)), "{u} is not routable");
        }
        // The edges of the ranges.
        assert!(is_routable(&ip("172.32.0.1")) && is_routable(&ip("100.128.0.1")));
        assert!(is_routable(&ip("198.20.0.1")) && is_routable(&ip("192.0.1.1")));
    }

    #[test]
    fn private_addresses_go_only_to_private_peers() {
        let public = a("11.1.0.1:7333");
        let private = a("10.0.0.2:7333");
        let loopback = a("127.0.0.1:7333");
        assert!(may_tell(&public, &public));
        assert!(!may_tell(&public, &private));
        assert!(!may_tell(&public, &loopback));
        assert!(
            may_tell(&private, &private) && may_tell(&loopback, &loopback) && may_tell(&private, &public)
        );
    }

    #[test]
    fn an_address_is_adopted_when_two_groups_agree() {
        let mut s = SelfAddress::new(Vec::new());
        assert!(s.external(7333).is_empty());
        // Two peers of one /16 are one voice.
        assert!(!s.report(&a("11.1.0.1:7333"), ip("11.9.0.1")));
        assert!(!s.report(&a("11.1.200.7:7333"), ip("11.9.0.1")));
        assert!(s.external(7333).is_empty());
        // Unroutable reports and reporters do not count.
        assert!(!s.report(&a("10.0.0.5:7333"), ip("11.9.0.1")));
        assert!(!s.report(&a("11.3.0.1:7333"), ip("10.9.0.2")));
        assert!(s.external(7333).is_empty());
        // A second group agrees: adopted, with our listen port.
        assert!(s.report(&a("[::ffff:11.2.0.1]:7333"), ip("::ffff:11.9.0.1")));
        assert_eq!(s.external(7333), vec![(a("11.9.0.1:7333"), Learned::Peers { groups: 2 })]);
        assert!(s.external(0).is_empty(), "not listening: nothing to advertise");
        // A lie from two other groups does not displace it; a third vote would.
        s.report(&a("12.1.0.1:1"), ip("13.0.0.1"));
        s.report(&a("12.2.0.1:1"), ip("13.0.0.1"));
        assert_eq!(s.adopted(), Some((ip("11.9.0.1"), 2)));
        assert!(s.report(&a("12.3.0.1:1"), ip("13.0.0.1")));
        assert_eq!(s.adopted(), Some((ip("13.0.0.1"), 3)));
        // The operator's address wins.
        let s = SelfAddress { configured: vec![a("5.6.7.8:9000")], ..s };
        assert_eq!(s.external(7333), vec![(a("5.6.7.8:9000"), Learned::Configured)]);
    }

    #[test]
    fn reported_ips_are_bounded() {
        let mut s = SelfAddress::new(Vec::new());
        for i in 0..(MAX_REPORTED_IPS as u32 + 10) {
            s.report(&a("11.1.0.1:1"), IpAddr::V4(Ipv4Addr::from(0x0b00_0000 + 0x0001_0000 * (i + 1))));
        }
        assert_eq!(s.reports.len(), MAX_REPORTED_IPS);
    }
}
