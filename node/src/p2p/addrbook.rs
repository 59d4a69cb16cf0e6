//! The address book and the ban list: which peers we know, which we may dial next, and
//! which we refuse. Pure data with no I/O; the driver saves [`AddrBook::snapshot`] to
//! `<data-dir>/peers.json` and `<data-dir>/bans.json` and hands it back at start.
//!
//! Addresses live in two tables, as in Bitcoin Core's address manager (`addrman`):
//! "new" holds addresses we heard of, "tried" those we finished an outbound handshake
//! with. Each table is cut into buckets of [`BUCKET_SIZE`], and the bucket of an address
//! is chosen by a hash keyed with a per-node secret (random at first start, saved in
//! `peers.json`), so nobody else can predict it:
//!
//! - new: the bucket is a function of the *source's* network group (the peer that told
//!   us) and the address's group. One source group reaches at most
//!   [`NEW_BUCKETS_PER_SOURCE_GROUP`] of the [`NEW_BUCKETS`] buckets, and one (source
//!   group, address group) pair exactly one: whatever a source sends, it fills at most
//!   1/8 of the new table.
//! - tried: the bucket is a function of the address's group (and the address, to pick one
//!   of [`TRIED_BUCKETS_PER_GROUP`]): one network group holds at most 1/8 of the tried
//!   table, however many of its addresses answer.
//!
//! A full new bucket takes a newcomer only in place of a "terrible" entry (never reached
//! and failed [`TERRIBLE_FAILURES`] times, or unheard of for [`TERRIBLE_AGE_MS`]);
//! otherwise the newcomer is dropped, so a flood cannot push out what we knew. A full
//! tried bucket (a collision) keeps its least recently working entry if that one is a
//! recent peer (the newcomer stays in new and may try again later: test-before-evict,
//! simplified to "the incumbent worked in the last ten minutes"); otherwise that entry
//! moves back to new and the newcomer takes its place.
//!
//! Seeds (`--peer`, `net_addPeer`) are kept beside the tables (at most [`MAX_SEEDS`]):
//! never forgotten, always retried.
//!
//! Bans are keyed by IP address, except for loopback addresses, where they are keyed by
//! the whole socket address: on one machine every peer is 127.0.0.1, and banning the IP
//! would ban the honest local peers along with the offender.

use rand::seq::SliceRandom;
use rand::Rng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};

/// Buckets of the new table.
pub const NEW_BUCKETS: usize = 64;
/// Buckets of the tried table.
pub const TRIED_BUCKETS: usize = 16;
/// Addresses one bucket holds.
pub const BUCKET_SIZE: usize = 32;
/// New buckets one source group can reach (of [`NEW_BUCKETS`]).
pub const NEW_BUCKETS_PER_SOURCE_GROUP: u64 = 8;
/// Tried buckets one address group can reach (of [`TRIED_BUCKETS`]).
pub const TRIED_BUCKETS_PER_GROUP: u64 = 2;
/// Most seed addresses kept beside the tables.
pub const MAX_SEEDS: usize = 256;
/// Most addresses kept: both tables full, plus the seeds.
pub const MAX_ADDRS: usize = (NEW_BUCKETS + TRIED_BUCKETS) * BUCKET_SIZE + MAX_SEEDS;
/// Most bans kept (the oldest-expiring go first when full).
pub const MAX_BANS: usize = 4096;
/// Failed dials after which a gossiped (non-seed) address is forgotten.
const MAX_FAILURES: u32 = 8;
/// Failed dials (with no success ever) that make an entry terrible: replaceable.
pub const TERRIBLE_FAILURES: u32 = 3;
/// Not heard of (nor reached) for this long makes an entry terrible: 30 days.
pub const TERRIBLE_AGE_MS: u64 = 30 * 24 * 3600 * 1000;
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
    /// In the tried table (an outbound handshake with it finished); else in new.
    #[serde(default)]
    pub tried: bool,
    /// The IP of the peer that told us about it (its own IP if it told us itself, or
    /// if unknown: entries of an old `peers.json`). Picks its new bucket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<IpAddr>,
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
    /// The bucket key (64 hex digits). Absent in a `peers.json` written before the
    /// tables existed: a new key is drawn, and entries that were ever reached go to tried.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

/// The ban key of an address.
pub fn ban_key(addr: &SocketAddr) -> String {
    if addr.ip().is_loopback() {
        addr.to_string()
    } else {
        addr.ip().to_string()
    }
}

/// The "network group" used to spread outbound peers and to pick buckets: the /16 of an
/// IPv4 address, the /32 of an IPv6 one. (Loopback is no exception: 127.1.0.1 and
/// 127.2.0.1 are two groups, which is how the tests build attackers on one machine.)
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
    fn fresh(addr: SocketAddr, seed: bool, source: IpAddr, now_ms: u64) -> AddrEntry {
        AddrEntry {
            addr,
            seed,
            last_seen_ms: now_ms,
            last_success_ms: 0,
            last_attempt_ms: 0,
            failures: 0,
            strikes: 0,
            tried: false,
            source: Some(source),
        }
    }

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

    /// Not worth its slot: a newcomer to a full new bucket may replace it.
    pub fn is_terrible(&self, now_ms: u64) -> bool {
        if self.seed || self.is_recent_peer(now_ms) {
            return false;
        }
        (self.last_success_ms == 0 && self.failures >= TERRIBLE_FAILURES)
            || now_ms.saturating_sub(self.last_seen_ms.max(self.last_success_ms)) > TERRIBLE_AGE_MS
    }

    /// The network group of the peer that told us about it.
    pub fn source_group(&self) -> [u8; 4] {
        group(&self.source.unwrap_or(self.addr.ip()))
    }
}

/// Where an entry sits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Place {
    Seed,
    New(usize),
    Tried(usize),
}

#[derive(Debug)]
pub struct AddrBook {
    // BTreeMaps, not HashMaps: iteration order must not depend on a random hasher, so the
    // simulator replays exactly.
    addrs: BTreeMap<SocketAddr, AddrEntry>,
    new: Vec<BTreeSet<SocketAddr>>,
    tried: Vec<BTreeSet<SocketAddr>>,
    seeds: usize,
    key: [u8; 32],
    bans: BTreeMap<String, BanEntry>,
    dirty: bool,
}

/// An empty book with the all-zero key (tests; a node draws its key at first start).
impl Default for AddrBook {
    fn default() -> Self {
        AddrBook::with_key([0; 32])
    }
}

impl AddrBook {
    pub fn with_key(key: [u8; 32]) -> AddrBook {
        AddrBook {
            addrs: BTreeMap::new(),
            new: vec![BTreeSet::new(); NEW_BUCKETS],
            tried: vec![BTreeSet::new(); TRIED_BUCKETS],
            seeds: 0,
            key,
            bans: BTreeMap::new(),
            dirty: false,
        }
    }

    /// The book saved in `s`, with the all-zero key if `s` has none.
    pub fn from_snapshot(s: Snapshot, now_ms: u64) -> AddrBook {
        AddrBook::from_snapshot_or_key(s, now_ms, [0; 32])
    }

    /// The book saved in `s`; `fresh_key` is its key if `s` has none (a first start, or
    /// a `peers.json` from before the tables: its entries ever reached go to tried).
    /// Entries are placed again from the key (what the file says is never trusted to
    /// respect the bounds); those that no longer fit are dropped.
    pub fn from_snapshot_or_key(s: Snapshot, now_ms: u64, fresh_key: [u8; 32]) -> AddrBook {
        let saved_key = s.key.as_deref().and_then(|k| <[u8; 32]>::try_from(hex::decode(k).ok()?).ok());
        let old_format = saved_key.is_none();
        let mut book = AddrBook::with_key(saved_key.unwrap_or(fresh_key));
        // Tried entries first, so a demotion never pushes out one saved as tried.
        let (mut tried, mut rest): (Vec<AddrEntry>, Vec<AddrEntry>) =
            s.addrs.into_iter().partition(|e| e.tried || (old_format && e.last_success_ms != 0));
        tried.truncate(MAX_ADDRS);
        rest.truncate(MAX_ADDRS);
        for mut e in tried {
            e.tried = false;
            let addr = e.addr;
            if book.valid(&addr) && !book.addrs.contains_key(&addr) && book.insert(e, now_ms) {
                book.promote(&addr, now_ms);
            }
        }
        for mut e in rest {
            e.tried = false;
            if book.valid(&e.addr) && !book.addrs.contains_key(&e.addr) {
                book.insert(e, now_ms);
            }
        }
        for b in s.bans.into_iter().take(MAX_BANS) {
            if b.until_ms > now_ms {
                book.bans.insert(b.key.clone(), b);
            }
        }
        book.dirty = old_format;
        book
    }

    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            addrs: self.addrs.values().cloned().collect(),
            bans: self.bans.values().cloned().collect(),
            key: Some(hex::encode(self.key)),
        }
    }

    fn valid(&self, addr: &SocketAddr) -> bool {
        addr.port() != 0 && !addr.ip().is_unspecified() && !addr.ip().is_multicast()
    }

    fn hash(&self, parts: &[&[u8]]) -> u64 {
        let mut h = Sha256::new();
        h.update(self.key);
        for p in parts {
            h.update((p.len() as u32).to_le_bytes());
            h.update(p);
        }
        let d = h.finalize();
        u64::from_le_bytes(d[..8].try_into().expect("8 bytes"))
    }

    /// A keyed hash of a network group: which groups inbound eviction protects, not
    /// predictable without the key.
    pub fn keyed_group_hash(&self, group: [u8; 4]) -> u64 {
        self.hash(&[b"evict", &group])
    }

    /// The new bucket of `addr` told by a source in `source_group`.
    pub fn new_bucket(&self, addr: &SocketAddr, source_group: [u8; 4]) -> usize {
        let sub = self.hash(&[b"new", &group(&addr.ip()), &source_group]) % NEW_BUCKETS_PER_SOURCE_GROUP;
        (self.hash(&[b"new-bucket", &source_group, &sub.to_le_bytes()]) % NEW_BUCKETS as u64) as usize
    }

    /// The tried bucket of `addr`.
    pub fn tried_bucket(&self, addr: &SocketAddr) -> usize {
        let sub = self.hash(&[b"tried", addr.to_string().as_bytes()]) % TRIED_BUCKETS_PER_GROUP;
        (self.hash(&[b"tried-bucket", &group(&addr.ip()), &sub.to_le_bytes()]) % TRIED_BUCKETS as u64)
            as usize
    }

    /// Where `addr` sits, if known.
    pub fn place(&self, addr: &SocketAddr) -> Option<Place> {
        let e = self.addrs.get(addr)?;
        Some(self.place_of(e))
    }

    fn place_of(&self, e: &AddrEntry) -> Place {
        if e.seed {
            Place::Seed
        } else if e.tried {
            Place::Tried(self.tried_bucket(&e.addr))
        } else {
            Place::New(self.new_bucket(&e.addr, e.source_group()))
        }
    }

    /// The addresses in new bucket `i` and tried bucket `i` (for tests and checks).
    pub fn new_bucket_addrs(&self, i: usize) -> &BTreeSet<SocketAddr> {
        &self.new[i]
    }
    pub fn tried_bucket_addrs(&self, i: usize) -> &BTreeSet<SocketAddr> {
        &self.tried[i]
    }

    /// Entries in the tried table and in the new table.
    pub fn table_sizes(&self) -> (usize, usize) {
        (self.tried.iter().map(|b| b.len()).sum(), self.new.iter().map(|b| b.len()).sum())
    }

    /// Puts a (not yet present) entry in its place: beside the tables if it is a seed
    /// (a normal entry if the seeds are full), else in its new bucket, replacing a
    /// terrible entry if the bucket is full. False if there was no room.
    fn insert(&mut self, mut e: AddrEntry, now_ms: u64) -> bool {
        e.tried = false;
        if e.seed && self.seeds >= MAX_SEEDS {
            e.seed = false;
        }
        match self.place_of(&e) {
            Place::Seed => self.seeds += 1,
            Place::New(b) => {
                if self.new[b].len() >= BUCKET_SIZE {
                    let victim = self.new[b]
                        .iter()
                        .filter_map(|a| self.addrs.get(a))
                        .filter(|v| v.is_terrible(now_ms))
                        .min_by_key(|v| (v.last_seen_ms.max(v.last_success_ms), v.addr))
                        .map(|v| v.addr);
                    match victim {
                        Some(v) => self.remove(&v),
                        None => return false,
                    }
                }
                self.new[b].insert(e.addr);
            }
            Place::Tried(_) => unreachable!("inserted entries start in new"),
        }
        self.addrs.insert(e.addr, e);
        self.dirty = true;
        true
    }

    /// Takes `addr` out of its bucket (or the seeds), keeping the entry in the map.
    fn unplace(&mut self, addr: &SocketAddr) {
        let Some(e) = self.addrs.get(addr) else { return };
        match self.place_of(e) {
            Place::Seed => self.seeds -= 1,
            Place::New(b) => {
                self.new[b].remove(addr);
            }
            Place::Tried(b) => {
                self.tried[b].remove(addr);
            }
        }
    }

    /// Moves a new entry to tried (an outbound handshake with it finished). On a
    /// collision, the tried bucket's least recently working entry goes back to new,
    /// unless it is a recent peer: then `addr` stays in new. Seeds only get the flag.
    fn promote(&mut self, addr: &SocketAddr, now_ms: u64) {
        let Some(e) = self.addrs.get(addr) else { return };
        if e.tried {
            return;
        }
        if e.seed {
            if let Some(e) = self.addrs.get_mut(addr) {
                e.tried = true;
            }
            return;
        }
        let b = self.tried_bucket(addr);
        if self.tried[b].len() >= BUCKET_SIZE {
            let Some(victim) = self.tried[b]
                .iter()
                .filter_map(|a| self.addrs.get(a))
                .min_by_key(|v| (v.last_success_ms, v.addr))
                .cloned()
            else {
                return;
            };
            if victim.is_recent_peer(now_ms) {
                return;
            }
            self.tried[b].remove(&victim.addr);
            self.addrs.remove(&victim.addr);
            self.insert(victim, now_ms);
            if !self.addrs.contains_key(addr) {
                return; // the victim's new bucket was full and `addr` was its terrible entry
            }
        }
        self.unplace(addr);
        if let Some(e) = self.addrs.get_mut(addr) {
            e.tried = true;
        }
        self.tried[b].insert(*addr);
        self.dirty = true;
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

    /// Adds or refreshes an address the node at that address told us about itself (or
    /// a seed, `seed` true). Returns true if it was new.
    pub fn add(&mut self, addr: SocketAddr, seed: bool, now_ms: u64) -> bool {
        self.add_entry(addr, seed, addr.ip(), now_ms)
    }

    /// Adds or refreshes an address a peer at `source` told us about. Returns true if
    /// it was new and found room (see the module doc: a full bucket refuses newcomers
    /// unless it holds a terrible entry).
    pub fn add_from(&mut self, addr: SocketAddr, source: IpAddr, now_ms: u64) -> bool {
        self.add_entry(addr, false, source, now_ms)
    }

    fn add_entry(&mut self, addr: SocketAddr, seed: bool, source: IpAddr, now_ms: u64) -> bool {
        if !self.valid(&addr) {
            return false;
        }
        if let Some(e) = self.addrs.get_mut(&addr) {
            e.last_seen_ms = e.last_seen_ms.max(now_ms);
            if seed && !e.seed && self.seeds < MAX_SEEDS {
                // Out of its bucket and beside the tables.
                self.unplace(&addr);
                if let Some(e) = self.addrs.get_mut(&addr) {
                    e.seed = true;
                }
                self.seeds += 1;
                self.dirty = true;
            }
            return false;
        }
        self.insert(AddrEntry::fresh(addr, seed, source, now_ms), now_ms)
    }

    pub fn remove(&mut self, addr: &SocketAddr) {
        self.unplace(addr);
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
    /// connection we dialled, which also moves it to the tried table). Either way it is
    /// up now: its failures are cleared, so the next dial backoff starts from the
    /// beginning.
    pub fn mark_success(&mut self, addr: &SocketAddr, now_ms: u64, outbound: bool) {
        if let Some(e) = self.addrs.get_mut(addr) {
            if outbound {
                e.last_success_ms = now_ms;
            }
            e.last_seen_ms = e.last_seen_ms.max(now_ms);
            e.failures = 0;
            self.dirty = true;
            if outbound {
                self.promote(addr, now_ms);
            }
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
            let forget = !e.seed && e.failures >= MAX_FAILURES && !e.is_recent_peer(now_ms);
            self.dirty = true;
            if forget {
                self.remove(addr);
            }
        }
    }

    /// Up to `n` addresses to dial now, chosen at random among those not excluded, not
    /// banned and out of backoff. Addresses whose network group is not in
    /// `used_groups` come first; others only fill what is left, so several peers on
    /// one IP (all of a loopback test network) can still be reached. Within each of
    /// those two lists, tried entries (and seeds) and new entries alternate by coin
    /// toss, as in Bitcoin Core: a flood of new addresses gets at most half the picks.
    pub fn pick_dial_candidates(
        &self,
        n: usize,
        now_ms: u64,
        exclude: impl Fn(&SocketAddr) -> bool,
        used_groups: &[[u8; 4]],
        rng: &mut impl Rng,
    ) -> Vec<SocketAddr> {
        // [fresh, same group] x [tried or seed, new]
        let mut lists: [[Vec<SocketAddr>; 2]; 2] = Default::default();
        for e in self.addrs.values() {
            if exclude(&e.addr) || self.is_banned(&e.addr, now_ms) {
                continue;
            }
            let backoff = e.backoff_ms(now_ms);
            if e.last_attempt_ms != 0 && now_ms < e.last_attempt_ms.saturating_add(backoff) {
                continue;
            }
            let used = used_groups.contains(&group(&e.addr.ip())) as usize;
            let table = (!(e.tried || e.seed)) as usize;
            lists[used][table].push(e.addr);
        }
        let [fresh, same_group] = lists.map(|[mut tried, mut new]| {
            tried.shuffle(rng);
            new.shuffle(rng);
            let (mut t, mut nw) = (tried.into_iter().peekable(), new.into_iter().peekable());
            let mut out = Vec::new();
            loop {
                let from_tried = match (t.peek(), nw.peek()) {
                    (None, None) => break,
                    (Some(_), None) => true,
                    (None, Some(_)) => false,
                    (Some(_), Some(_)) => rng.gen_bool(0.5),
                };
                out.extend(if from_tried { t.next() } else { nw.next() });
            }
            out
        });
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
            self.remove(addr);
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
    use std::collections::BTreeSet;

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn bounded_and_seeds_survive() {
        let mut b = AddrBook::default();
        b.add(a("10.0.0.1:1"), true, 0);
        // Many addresses in many groups, each told by itself: both bounds hold.
        for i in 0..(MAX_ADDRS as u32 * 4) {
            let ip = std::net::Ipv4Addr::from(0x0b00_0000 + i * 0x1_0001);
            b.add(SocketAddr::new(ip.into(), 7333), false, i as u64);
        }
        assert!(b.len() <= MAX_ADDRS);
        let (tried, new) = b.table_sizes();
        assert_eq!(tried, 0);
        assert!(new > NEW_BUCKETS * BUCKET_SIZE * 3 / 4, "the new table fills up: {new}");
        assert!(b.contains(&a("10.0.0.1:1")));
        check_invariants(&b);
    }

    #[test]
    fn one_source_fills_a_bounded_share() {
        let mut b = AddrBook::with_key([7; 32]);
        let attacker: IpAddr = "66.6.0.1".parse().unwrap();
        // 40,000 addresses in 200 groups, all from one source.
        let mut added = 0;
        for g in 0..200u32 {
            for h in 0..200u32 {
                let ip = std::net::Ipv4Addr::from(0x5000_0000 + (g << 16) + h);
                added += b.add_from(SocketAddr::new(ip.into(), 7333), attacker, 0) as usize;
            }
        }
        let cap = NEW_BUCKETS_PER_SOURCE_GROUP as usize * BUCKET_SIZE;
        assert!(added <= cap, "{added} entries from one source group, at most {cap}");
        assert_eq!(b.len(), added);
        // Honest addresses from another source still find room.
        let honest: IpAddr = "23.1.0.1".parse().unwrap();
        let mut kept = 0;
        for g in 0..50u32 {
            let ip = std::net::Ipv4Addr::from(0x1700_0001 + (g << 16));
            kept += b.add_from(SocketAddr::new(ip.into(), 7333), honest, 0) as usize;
        }
        assert!(kept >= 40, "only {kept} of 50 honest addresses kept");
        check_invariants(&b);
    }

    #[test]
    fn tried_collisions_keep_recent_peers() {
        let mut b = AddrBook::with_key([1; 32]);
        // Fill one group's tried buckets, then more of that group arrives.
        let addrs: Vec<SocketAddr> = (0..200u32)
            .map(|i| SocketAddr::new(std::net::Ipv4Addr::from(0x2a00_0000 + i).into(), 7333))
            .collect();
        for (i, x) in addrs.iter().enumerate() {
            b.add(*x, false, 1_000);
            b.mark_success(x, 1_000 + i as u64, true);
        }
        let (tried, _) = b.table_sizes();
        let cap = TRIED_BUCKETS_PER_GROUP as usize * BUCKET_SIZE;
        assert!(tried <= cap, "one group holds {tried} tried entries, at most {cap}");
        // Those that did not fit stayed in new: every address is still known.
        assert!(addrs.iter().all(|x| b.contains(x) || b.table_sizes().1 >= BUCKET_SIZE));
        check_invariants(&b);
        // An hour later nobody is a recent peer: a new success displaces the oldest one.
        let late = addrs.iter().find(|x| b.get(x).is_some_and(|e| !e.tried)).copied().unwrap();
        b.mark_success(&late, 3_600_000, true);
        assert!(b.get(&late).unwrap().tried);
        check_invariants(&b);
    }

    #[test]
    fn an_old_peers_json_still_loads() {
        // Written before the tables existed: no key, no `tried`, no `source`.
        let old = r#"{"addrs":[
            {"addr":"10.0.0.1:7333","seed":true,"last_seen_ms":5,"last_success_ms":0,"last_attempt_ms":0,"failures":0},
            {"addr":"10.1.0.1:7333","seed":false,"last_seen_ms":5,"last_success_ms":4,"last_attempt_ms":3,"failures":0,"strikes":1},
            {"addr":"10.2.0.1:7333","seed":false,"last_seen_ms":5,"last_success_ms":0,"last_attempt_ms":0,"failures":2}
        ],"bans":[]}"#;
        let s: Snapshot = serde_json::from_str(old).unwrap();
        let mut b = AddrBook::from_snapshot_or_key(s, 10, [9; 32]);
        assert_eq!(b.len(), 3);
        assert_eq!(b.place(&a("10.0.0.1:7333")), Some(Place::Seed));
        assert!(matches!(b.place(&a("10.1.0.1:7333")), Some(Place::Tried(_))), "it was reached once");
        assert!(matches!(b.place(&a("10.2.0.1:7333")), Some(Place::New(_))));
        assert_eq!(b.get(&a("10.1.0.1:7333")).unwrap().strikes, 1);
        assert!(b.take_dirty(), "saved again in the new format");
        let again = AddrBook::from_snapshot_or_key(b.snapshot(), 10, [0; 32]);
        assert_eq!(again.snapshot(), b.snapshot(), "the key is kept");
        check_invariants(&again);
    }

    /// Every invariant of the tables: bucket sizes, each entry in exactly the bucket its
    /// key, table and source give (seeds in none), the per-group bounds, the totals.
    fn check_invariants(b: &AddrBook) {
        let mut placed = BTreeSet::new();
        let mut per_source: BTreeMap<[u8; 4], (BTreeSet<usize>, usize)> = BTreeMap::new();
        let mut per_group: BTreeMap<[u8; 4], (BTreeSet<usize>, usize)> = BTreeMap::new();
        for (i, bucket) in b.new.iter().enumerate() {
            assert!(bucket.len() <= BUCKET_SIZE);
            for x in bucket {
                assert!(placed.insert(*x), "{x} in two buckets");
                let e = b.addrs.get(x).expect("bucket entry in the map");
                assert!(!e.tried && !e.seed);
                assert_eq!(b.new_bucket(x, e.source_group()), i);
                let s = per_source.entry(e.source_group()).or_default();
                s.0.insert(i);
                s.1 += 1;
            }
        }
        for (i, bucket) in b.tried.iter().enumerate() {
            assert!(bucket.len() <= BUCKET_SIZE);
            for x in bucket {
                assert!(placed.insert(*x), "{x} in two buckets");
                let e = b.addrs.get(x).expect("bucket entry in the map");
                assert!(e.tried && !e.seed);
                assert_eq!(b.tried_bucket(x), i);
                let g = per_group.entry(group(&x.ip())).or_default();
                g.0.insert(i);
                g.1 += 1;
            }
        }
        let seeds = b.addrs.values().filter(|e| e.seed).count();
        assert_eq!(seeds, b.seeds);
        assert!(seeds <= MAX_SEEDS);
        for e in b.addrs.values() {
            assert_eq!(!e.seed, placed.contains(&e.addr), "{} placed iff not a seed", e.addr);
        }
        assert_eq!(placed.len() + seeds, b.len());
        assert!(b.len() <= MAX_ADDRS);
        for (buckets, n) in per_source.values() {
            assert!(buckets.len() as u64 <= NEW_BUCKETS_PER_SOURCE_GROUP);
            assert!(*n <= NEW_BUCKETS_PER_SOURCE_GROUP as usize * BUCKET_SIZE);
        }
        for (buckets, n) in per_group.values() {
            assert!(buckets.len() as u64 <= TRIED_BUCKETS_PER_GROUP);
            assert!(*n <= TRIED_BUCKETS_PER_GROUP as usize * BUCKET_SIZE);
        }
    }

    /// The reference: what must and must not be in the book, whatever it chose to drop.
    #[derive(Default)]
    struct Model {
        seeds: BTreeSet<SocketAddr>,
        /// Failed dials since the last handshake, and the last outbound success.
        failures: BTreeMap<SocketAddr, (u32, u64)>,
        banned: BTreeMap<String, u64>,
    }

    /// Random sequences of add / attempt / good / fail / select / ban / save-load, with
    /// addresses and sources drawn from small pools (so buckets fill and collide) and
    /// edge times, checked against [`Model`] and [`check_invariants`] after every step.
    #[test]
    fn model_based_sequences() {
        for seed in 0..12u64 {
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let mut b = AddrBook::with_key(rng.gen());
            let mut m = Model::default();
            let mut now: u64 = if seed == 1 { u64::MAX - 10_000_000 } else { 0 };
            let pick_addr = |rng: &mut rand::rngs::StdRng| -> SocketAddr {
                match rng.gen_range(0..20) {
                    0 => SocketAddr::new("2001:db8::1".parse::<IpAddr>().unwrap(), rng.gen_range(0..3)),
                    1 => SocketAddr::new([127, 0, 0, 1].into(), rng.gen_range(1..40)),
                    2 => SocketAddr::new([0, 0, 0, 0].into(), 7333),
                    _ => SocketAddr::new(
                        [
                            [10, 11, 80][rng.gen_range(0..3)],
                            rng.gen_range(0..6),
                            rng.gen_range(0..12),
                            rng.gen_range(1..8),
                        ]
                        .into(),
                        rng.gen_range(1..4),
                    ),
                }
            };
            let sources: Vec<IpAddr> =
                ["66.6.0.1", "66.6.0.2", "66.7.0.1", "23.1.0.1", "127.0.0.1", "2001:db8::9"]
                    .iter()
                    .map(|s| s.parse().unwrap())
                    .collect();
            for step in 0..2_500 {
                now = now.saturating_add(
                    [0, 1, 1_000, 60_000, RECENT_PEER_MS, TERRIBLE_AGE_MS][rng.gen_range(0..6)],
                );
                let x = pick_addr(&mut rng);
                let known = b.contains(&x);
                match rng.gen_range(0..100) {
                    0..=2 => {
                        b.add(x, true, now);
                        if b.valid(&x) && (m.seeds.contains(&x) || m.seeds.len() < MAX_SEEDS) {
                            m.seeds.insert(x);
                        }
                    }
                    3..=44 => {
                        let src = sources[rng.gen_range(0..sources.len())];
                        let added = b.add_from(x, src, now);
                        assert!(!added || (!known && b.contains(&x)), "step {step}: added {x}");
                        if !added && !known && b.valid(&x) {
                            let e = AddrEntry::fresh(x, false, src, now);
                            let bucket = b.new_bucket(&x, e.source_group());
                            assert_eq!(
                                b.new[bucket].len(),
                                BUCKET_SIZE,
                                "step {step}: {x} refused with room"
                            );
                        }
                    }
                    45..=59 => {
                        b.mark_attempt(&x, now);
                        if rng.gen_bool(0.5) {
                            b.mark_success(&x, now, true);
                            if known {
                                m.failures.insert(x, (0, now));
                                let e = b.get(&x).unwrap();
                                if !e.tried {
                                    let tb = b.tried_bucket(&x);
                                    let oldest = b.tried[tb]
                                        .iter()
                                        .map(|y| b.get(y).unwrap())
                                        .min_by_key(|v| v.last_success_ms);
                                    assert!(
                                        b.tried[tb].len() == BUCKET_SIZE
                                            && oldest.unwrap().is_recent_peer(now),
                                        "step {step}: {x} not moved to tried"
                                    );
                                }
                            }
                        } else {
                            b.mark_failure(&x, now);
                            let f = m.failures.entry(x).or_insert((0, 0));
                            f.0 += 1;
                            let recent = f.1 != 0 && now.saturating_sub(f.1) < RECENT_PEER_MS;
                            if f.0 >= MAX_FAILURES && !m.seeds.contains(&x) && !recent {
                                assert!(!b.contains(&x), "step {step}: {x} failed {} times and is kept", f.0);
                            }
                        }
                    }
                    60..=69 => {
                        if b.contains(&x) && b.get(&x).unwrap().tried {
                            b.mark_closed(&x, now);
                            m.failures.entry(x).or_insert((0, 0)).1 = now;
                        }
                    }
                    70..=84 => {
                        let n = rng.gen_range(0..12);
                        let used = [group(&pick_addr(&mut rng).ip())];
                        let picks = b.pick_dial_candidates(n, now, |y| *y == x, &used, &mut rng);
                        assert!(picks.len() <= n);
                        let distinct: BTreeSet<_> = picks.iter().collect();
                        assert_eq!(distinct.len(), picks.len());
                        for y in &picks {
                            let e = b.get(y).expect("picked a known address");
                            assert!(*y != x && !b.is_banned(y, now));
                            assert!(
                                e.last_attempt_ms == 0
                                    || now >= e.last_attempt_ms.saturating_add(e.backoff_ms(now))
                            );
                        }
                    }
                    85..=87 => {
                        let until = now.saturating_add(rng.gen_range(1..100_000));
                        b.ban(&x, until, "test");
                        assert!(b.is_banned(&x, now) || until <= now);
                        if !x.ip().is_loopback() {
                            assert!(!b.contains(&x));
                            m.seeds.remove(&x);
                        } else if !m.seeds.contains(&x) {
                            assert!(!b.contains(&x));
                        }
                        m.banned.insert(ban_key(&x), until);
                    }
                    88..=93 => {
                        let s = b.snapshot();
                        let json = serde_json::to_string(&s).unwrap();
                        let back = AddrBook::from_snapshot_or_key(
                            serde_json::from_str(&json).unwrap(),
                            now,
                            [0; 32],
                        );
                        let mut expect = s.clone();
                        expect.bans.retain(|x| x.until_ms > now);
                        assert_eq!(back.snapshot(), expect, "step {step}: save and load changed the book");
                        b = back;
                    }
                    _ => {
                        b.remove(&x);
                        assert!(!b.contains(&x));
                        m.seeds.remove(&x);
                    }
                }
                check_invariants(&b);
                for s in &m.seeds {
                    assert!(b.get(s).is_some_and(|e| e.seed), "step {step}: seed {s} lost");
                }
                for (k, until) in &m.banned {
                    if *until > now && b.bans.len() < MAX_BANS {
                        assert!(b.bans.contains_key(k), "step {step}: ban of {k} lost");
                    }
                }
            }
        }
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
