//! The address book and the ban list: which peers we know, which we may dial next, and
//! which we refuse. Pure data with no I/O; the driver saves [`AddrBook::snapshot`] to
//! `<data-dir>/peers.json` and `<data-dir>/bans.json` and hands it back at start.
//!
//! Bans are keyed by IP address, except for loopback addresses, where they are keyed by
//! the whole socket address: on one machine every peer is 127.0.0.1, and banning the IP
//! would ban the honest local peers along with the offender.

use rand::seq::SliceRandom;
use rand::Rng;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

/// Most addresses kept.
pub const MAX_ADDRS: usize = 2048;
/// Most bans kept (the oldest-expiring go first when full).
pub const MAX_BANS: usize = 4096;
/// Failed dials after which a gossiped (non-seed) address is forgotten.
const MAX_FAILURES: u32 = 8;
/// How long after its last working outbound connection an address counts as a
/// recent peer: redialled [`backoff_ms`]`(1)` after each failed dial instead of backing
/// off exponentially, and never forgotten for failing, so a link that heals after a
/// partition comes back within seconds.
pub const RECENT_PEER_MS: u64 = 10 * 60 * 1000;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddrEntry {
    pub addr: SocketAddr,
    /// Given with `--peer` or `net_addPeer`: never forgotten, always retried.
    pub seed: bool,
    /// Last time we heard of it or finished a handshake with it, in either direction (ms).
    pub last_seen_ms: u64,
    /// Last time an outbound connection to it was working (ms), 0 if never: set when
    /// the handshake finishes and again when the connection closes.
    pub last_success_ms: u64,
    pub last_attempt_ms: u64,
    /// Failed dials since the last handshake with it (in either direction).
    pub failures: u32,
    /// Times it was dropped for not delivering (stalled, or blocks of the chain it
    /// showed us not found) since it last delivered a block. Unlike `failures`, a
    /// successful handshake does not clear it, so the backoff grows for a peer that
    /// connects fine but never delivers.
    #[serde(default)]
    pub strikes: u32,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BanEntry {
    /// An IP address, or `ip:port` for loopback addresses.
    pub key: String,
    pub until_ms: u64,
    pub reason: String,
}

/// What is saved to disk.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub addrs: Vec<AddrEntry>,
    pub bans: Vec<BanEntry>,
}

/// The ban key of an address.
pub fn ban_key(addr: &SocketAddr) -> String {
    if addr.ip().is_loopback() {
        addr.to_string()
    } else {
        addr.ip().to_string()
    }
}

/// The "network group" used to spread outbound peers: the /16 of an IPv4 address,
/// the /32 of an IPv6 one.
pub fn group(ip: &IpAddr) -> [u8; 4] {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            [4, o[0], o[1], 0]
        }
        IpAddr::V6(v6) => {
            let o = v6.octets();
            [o[0], o[1], o[2], o[3]]
        }
    }
}

/// Backoff before redialling after `failures` failed attempts: 1 s doubling to 10 min.
pub fn backoff_ms(failures: u32) -> u64 {
    if failures == 0 {
        0
    } else {
        (1000u64 << (failures - 1).min(10)).min(600_000)
    }
}

impl AddrEntry {
    /// Connected over an outbound connection within the last [`RECENT_PEER_MS`].
    pub fn is_recent_peer(&self, now_ms: u64) -> bool {
        self.last_success_ms != 0 && now_ms.saturating_sub(self.last_success_ms) < RECENT_PEER_MS
    }

    /// How long after the last attempt it may be dialled again: exponential in the
    /// failures and strikes, except that a recent peer's failures count as one at most
    /// (its strikes still count in full).
    pub fn backoff_ms(&self, now_ms: u64) -> u64 {
        let failures = if self.is_recent_peer(now_ms) { self.failures.min(1) } else { self.failures };
        backoff_ms(failures.saturating_add(self.strikes))
    }
}

#[derive(Debug, Default)]
pub struct AddrBook {
    // BTreeMaps, not HashMaps: iteration order must not depend on a random hasher, so the
    // simulator replays exactly.
    addrs: BTreeMap<SocketAddr, AddrEntry>,
    bans: BTreeMap<String, BanEntry>,
    dirty: bool,
}

impl AddrBook {
    pub fn from_snapshot(s: Snapshot, now_ms: u64) -> AddrBook {
        let mut book = AddrBook::default();
        for e in s.addrs.into_iter().take(MAX_ADDRS) {
            book.addrs.insert(e.addr, e);
        }
        for b in s.bans.into_iter().take(MAX_BANS) {
            if b.until_ms > now_ms {
                book.bans.insert(b.key.clone(), b);
            }
        }
        book
    }

    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            addrs: self.addrs.values().cloned().collect(),
            bans: self.bans.values().cloned().collect(),
        }
    }

    /// True once since the last call if anything worth saving changed.
    pub fn take_dirty(&mut self) -> bool {
        std::mem::take(&mut self.dirty)
    }

    pub fn len(&self) -> usize {
        self.addrs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.addrs.is_empty()
    }

    pub fn contains(&self, addr: &SocketAddr) -> bool {
        self.addrs.contains_key(addr)
    }

    pub fn get(&self, addr: &SocketAddr) -> Option<&AddrEntry> {
        self.addrs.get(addr)
    }

    /// Adds or refreshes an address. Returns true if it was new. When full, the worst
    /// non-seed entry (most failures, then least recently seen) makes room.
    pub fn add(&mut self, addr: SocketAddr, seed: bool, now_ms: u64) -> bool {
        if addr.port() == 0 || addr.ip().is_unspecified() || addr.ip().is_multicast() {
            return false;
        }
        if let Some(e) = self.addrs.get_mut(&addr) {
            e.seed |= seed;
            e.last_seen_ms = e.last_seen_ms.max(now_ms);
            return false;
        }
        if self.addrs.len() >= MAX_ADDRS {
            let worst = self
                .addrs
                .values()
                .filter(|e| !e.seed)
                .min_by_key(|e| (std::cmp::Reverse(e.failures), e.last_success_ms, e.last_seen_ms))
                .map(|e| e.addr);
            match worst {
                Some(w) => {
                    self.addrs.remove(&w);
                }
                None => return false,
            }
        }
        self.addrs.insert(
            addr,
            AddrEntry {
                addr,
                seed,
                last_seen_ms: now_ms,
                last_success_ms: 0,
                last_attempt_ms: 0,
                failures: 0,
                strikes: 0,
            },
        );
        self.dirty = true;
        true
    }

    pub fn remove(&mut self, addr: &SocketAddr) {
        if self.addrs.remove(addr).is_some() {
            self.dirty = true;
        }
    }

    pub fn mark_attempt(&mut self, addr: &SocketAddr, now_ms: u64) {
        if let Some(e) = self.addrs.get_mut(addr) {
            e.last_attempt_ms = now_ms;
        }
    }

    /// A handshake with the node listening at `addr` finished (`outbound`: over a
    /// connection we dialled). Either way it is up now: its failures are cleared, so the
    /// next dial backoff starts from the beginning.
    pub fn mark_success(&mut self, addr: &SocketAddr, now_ms: u64, outbound: bool) {
        if let Some(e) = self.addrs.get_mut(addr) {
            if outbound {
                e.last_success_ms = now_ms;
            }
            e.last_seen_ms = e.last_seen_ms.max(now_ms);
            e.failures = 0;
            self.dirty = true;
        }
    }

    /// An outbound connection that had finished its handshake closed: it was working
    /// until now, which makes it a recent peer (see [`RECENT_PEER_MS`]).
    pub fn mark_closed(&mut self, addr: &SocketAddr, now_ms: u64) {
        if let Some(e) = self.addrs.get_mut(addr) {
            e.last_success_ms = e.last_success_ms.max(now_ms);
            self.dirty = true;
        }
    }

    /// The peer was dropped for not delivering what it offered.
    pub fn mark_strike(&mut self, addr: &SocketAddr) {
        if let Some(e) = self.addrs.get_mut(addr) {
            e.strikes = e.strikes.saturating_add(1);
            self.dirty = true;
        }
    }

    /// The peer delivered a block we asked for.
    pub fn mark_delivered(&mut self, addr: &SocketAddr) {
        if let Some(e) = self.addrs.get_mut(addr) {
            if e.strikes != 0 {
                e.strikes = 0;
                self.dirty = true;
            }
        }
    }

    /// A dial failed (or the connection died before the handshake finished).
    pub fn mark_failure(&mut self, addr: &SocketAddr, now_ms: u64) {
        if let Some(e) = self.addrs.get_mut(addr) {
            e.failures = e.failures.saturating_add(1);
            if !e.seed && e.failures >= MAX_FAILURES && !e.is_recent_peer(now_ms) {
                self.addrs.remove(addr);
            }
            self.dirty = true;
        }
    }

    /// Up to `n` addresses to dial now, chosen at random among those not excluded, not
    /// banned and out of backoff. Addresses whose network group is not in
    /// `used_groups` come first; others only fill what is left, so several peers on
    /// one IP (all of a loopback test network) can still be reached.
    pub fn pick_dial_candidates(
        &self,
        n: usize,
        now_ms: u64,
        exclude: impl Fn(&SocketAddr) -> bool,
        used_groups: &[[u8; 4]],
        rng: &mut impl Rng,
    ) -> Vec<SocketAddr> {
        let mut fresh = Vec::new();
        let mut same_group = Vec::new();
        for e in self.addrs.values() {
            if exclude(&e.addr) || self.is_banned(&e.addr, now_ms) {
                continue;
            }
            let backoff = e.backoff_ms(now_ms);
            if e.last_attempt_ms != 0 && now_ms < e.last_attempt_ms.saturating_add(backoff) {
                continue;
            }
            if used_groups.contains(&group(&e.addr.ip())) {
                same_group.push(e.addr);
            } else {
                fresh.push(e.addr);
            }
        }
        fresh.shuffle(rng);
        same_group.shuffle(rng);
        // One dial per fresh group first; the fresh group's other addresses and then the
        // used groups only fill what is left (dropping them would leave a network on one
        // IP, or one /16, with a single dial per round).
        let mut out: Vec<SocketAddr> = Vec::new();
        let mut groups: Vec<[u8; 4]> = Vec::new();
        let mut rest: Vec<SocketAddr> = Vec::new();
        for a in fresh {
            let g = group(&a.ip());
            if groups.contains(&g) {
                rest.push(a);
            } else {
                groups.push(g);
                out.push(a);
            }
        }
        out.truncate(n);
        for a in rest.into_iter().chain(same_group) {
            if out.len() >= n {
                break;
            }
            out.push(a);
        }
        out
    }

    /// A random sample of up to `n` addresses for a `getaddr` answer: ones we have
    /// reached or heard of, not banned.
    pub fn sample(&self, n: usize, now_ms: u64, rng: &mut impl Rng) -> Vec<SocketAddr> {
        let all: Vec<SocketAddr> =
            self.addrs.values().filter(|e| !self.is_banned(&e.addr, now_ms)).map(|e| e.addr).collect();
        all.choose_multiple(rng, n.min(all.len())).copied().collect()
    }

    pub fn ban(&mut self, addr: &SocketAddr, until_ms: u64, reason: &str) {
        let key = ban_key(addr);
        if self.bans.len() >= MAX_BANS && !self.bans.contains_key(&key) {
            if let Some(first) = self.bans.values().min_by_key(|b| b.until_ms).map(|b| b.key.clone()) {
                self.bans.remove(&first);
            }
        }
        self.bans.insert(key.clone(), BanEntry { key, until_ms, reason: reason.to_string() });
        if !addr.ip().is_loopback() || self.addrs.get(addr).is_some_and(|e| !e.seed) {
            self.addrs.remove(addr);
        }
        self.dirty = true;
    }

    pub fn is_banned(&self, addr: &SocketAddr, now_ms: u64) -> bool {
        self.bans.get(&ban_key(addr)).is_some_and(|b| b.until_ms > now_ms)
    }

    /// Forgets expired bans.
    pub fn expire_bans(&mut self, now_ms: u64) {
        let before = self.bans.len();
        self.bans.retain(|_, b| b.until_ms > now_ms);
        if self.bans.len() != before {
            self.dirty = true;
        }
    }

    pub fn bans(&self) -> impl Iterator<Item = &BanEntry> {
        self.bans.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn bounded_and_seeds_survive() {
        let mut b = AddrBook::default();
        b.add(a("10.0.0.1:1"), true, 0);
        for i in 0..(MAX_ADDRS as u32 + 100) {
            let ip = std::net::Ipv4Addr::from(0x0b00_0000 + i);
            b.add(SocketAddr::new(ip.into(), 7333), false, i as u64);
        }
        assert_eq!(b.len(), MAX_ADDRS);
        assert!(b.contains(&a("10.0.0.1:1")));
    }

    #[test]
    fn loopback_bans_are_per_port() {
        let mut b = AddrBook::default();
        b.ban(&a("127.0.0.1:5000"), 100, "test");
        assert!(b.is_banned(&a("127.0.0.1:5000"), 50));
        assert!(!b.is_banned(&a("127.0.0.1:5001"), 50));
        assert!(!b.is_banned(&a("127.0.0.1:5000"), 100));
        b.ban(&a("8.8.8.8:1"), 100, "test");
        assert!(b.is_banned(&a("8.8.8.8:2"), 50));
        let back = AddrBook::from_snapshot(b.snapshot(), 60);
        assert!(back.is_banned(&a("8.8.8.8:2"), 60));
        assert_eq!(AddrBook::from_snapshot(b.snapshot(), 100).bans().count(), 0);
    }

    #[test]
    fn dial_candidates_prefer_new_groups_but_allow_one_ip() {
        let mut b = AddrBook::default();
        for p in 1..=5 {
            b.add(SocketAddr::new([127, 0, 0, 1].into(), p), false, 0);
        }
        b.add(a("10.1.0.1:1"), false, 0);
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let used = [group(&a("127.0.0.1:9").ip())];
        let picked = b.pick_dial_candidates(3, 0, |_| false, &used, &mut rng);
        assert_eq!(picked.len(), 3);
        assert_eq!(picked[0], a("10.1.0.1:1"));
        b.mark_attempt(&a("10.1.0.1:1"), 10);
        b.mark_failure(&a("10.1.0.1:1"), 10);
        let picked = b.pick_dial_candidates(10, 500, |_| false, &[], &mut rng);
        assert_eq!(picked.len(), 5, "the failed address is backing off");
    }

    #[test]
    fn an_inbound_handshake_resets_the_failure_count() {
        let mut b = AddrBook::default();
        let peer = a("10.2.0.1:7333");
        b.add(peer, false, 0);
        let mut now = 0;
        for _ in 0..5 {
            now += 100_000;
            b.mark_attempt(&peer, now);
            b.mark_failure(&peer, now);
        }
        let e = b.get(&peer).unwrap();
        assert_eq!(e.failures, 5);
        assert_eq!(e.backoff_ms(now), 16_000);
        let rng = &mut rand::rngs::StdRng::seed_from_u64(1);
        assert!(b.pick_dial_candidates(1, now + 2_000, |_| false, &[], rng).is_empty(), "backing off");

        // The same node dials us: its listen address is reachable after all.
        b.mark_success(&peer, now + 1_000, false);
        let e = b.get(&peer).unwrap();
        assert_eq!(e.failures, 0);
        assert_eq!(e.last_seen_ms, now + 1_000);
        assert_eq!(e.last_success_ms, 0, "an inbound handshake proves nothing about dialling it");
        assert_eq!(b.pick_dial_candidates(1, now + 2_000, |_| false, &[], rng), vec![peer]);
    }

    #[test]
    fn a_recent_peer_is_redialled_quickly_and_kept() {
        let mut b = AddrBook::default();
        let peer = a("10.3.0.1:7333");
        b.add(peer, false, 0);
        b.mark_success(&peer, 1_000, true);
        b.mark_closed(&peer, 50_000);
        // A partition: twenty failed dials, each 1 s after the last.
        let mut now = 50_000;
        for _ in 0..20 {
            b.mark_attempt(&peer, now);
            b.mark_failure(&peer, now);
            let e = b.get(&peer).expect("a recent peer is not forgotten");
            assert_eq!(e.backoff_ms(now), 1_000);
            now += 6_000;
        }
        // Ten minutes after the connection closed, the usual backoff applies again.
        let later = 50_000 + RECENT_PEER_MS;
        assert_eq!(b.get(&peer).unwrap().backoff_ms(later), 600_000);
        b.mark_failure(&peer, later);
        assert!(!b.contains(&peer), "forgotten once it is no longer recent");
    }
}
