//! Eclipse resistance beyond the address book ([`super::addrbook`]): protective
//! inbound eviction, block-relay-only outbound links and their anchors, and the
//! stale-tip check (docs/PROTOCOL.md, "Eviction and block-relay-only links";
//! docs/SECURITY.md, "Eclipse").

use super::connections::not_dialable;
use super::*;

/// Block-relay-only outbound links kept beyond [`Config::target_outbound`].
pub const BLOCK_RELAY_ONLY_OUTBOUND: usize = 2;
/// No new tip for this many target block intervals, with peers: the tip is stale.
pub const STALE_TIP_INTERVALS: u64 = 3;
/// How long a stale-tip extra link gets to show us a block before the least useful
/// full-relay outbound link is dropped.
pub const EXTRA_GRACE_MS: u64 = 30_000;
/// How often a node tries one more block-relay-only link to an address it is not
/// connected to (Bitcoin Core's extra block-relay-only peer, every 5 minutes): the way
/// out of a partition whose halves both keep finding blocks, which the stale-tip check
/// never notices. After [`EXTRA_GRACE_MS`] the block-relay-only link that least
/// recently gave a new block (the newcomer, unless it gave one) is dropped.
pub const BLOCK_RELAY_ROTATION_MS: u64 = 5 * 60 * 1000;
/// Inbound slots Bitcoin Core's protection counts below are made for (its 125
/// connections less 8 outbound), and those counts: peers protected for their network
/// group, their ping, their transfers and their blocks. Cairn scales each to its
/// `max_inbound`, rounding up: [`protection_counts`].
const CORE_INBOUND: usize = 117;
const CORE_PROTECT: [usize; 4] = [4, 8, 4, 4];

/// What eviction and the block-relay-only policy need to know of one link.
#[derive(Debug, Default)]
pub(super) struct LinkState {
    pub(super) connected_ms: u64,
    /// When it last gave us a block we did not have (0: never).
    pub(super) last_block_ms: u64,
    /// When it last gave us a transfer the mempool admitted (0: never).
    pub(super) last_tx_ms: u64,
    /// Its lowest ping round trip so far.
    pub(super) min_rtt_ms: Option<u64>,
    /// An outbound link we use for blocks only: no transfers or addresses either way.
    pub(super) block_relay_only: bool,
    /// The extra outbound link of a stale-tip check.
    pub(super) extra: bool,
}

/// This module's share of the protocol state.
#[derive(Debug, Default)]
pub(super) struct EclipseState {
    /// Dials in flight for block-relay-only links.
    block_relay_dialing: BTreeSet<SocketAddr>,
    /// Dials in flight for a stale-tip extra link.
    extra_dialing: BTreeSet<SocketAddr>,
    /// Last shutdown's block-relay-only peers, dialled first.
    anchors: Vec<SocketAddr>,
    /// The tip at the last tick, and since when it is the tip.
    tip: Option<BlockHash>,
    tip_since_ms: u64,
    /// When the next rotation dial is due (0: not yet scheduled).
    next_rotation_ms: u64,
}

/// One inbound peer as eviction sees it.
#[derive(Clone, Debug)]
pub struct EvictionCandidate {
    pub peer: PeerId,
    /// Its network group's keyed hash: the groups protected are unpredictable.
    pub group_hash: u64,
    pub group: [u8; 4],
    pub connected_ms: u64,
    pub min_rtt_ms: Option<u64>,
    pub last_block_ms: u64,
    pub last_tx_ms: u64,
}

/// How many inbound peers are protected, with `max_inbound` slots, for: distinct
/// network groups, lowest ping, most recent new transfers, most recent new blocks.
/// Bitcoin Core's 4, 8, 4, 4 for 117 inbound slots, scaled and rounded up (so 1, 1, 1,
/// 1 for up to 14 slots; 2, 3, 2, 2 for 30).
pub fn protection_counts(max_inbound: usize) -> [usize; 4] {
    CORE_PROTECT.map(|c| (c * max_inbound).div_ceil(CORE_INBOUND))
}

/// Bitcoin Core's `SelectNodeToEvict`, scaled: protects a spread of network groups,
/// the lowest pings, the peers that most recently gave new transfers and new blocks
/// (only peers that gave any), then the older half of the rest; of what is left, the
/// youngest peer of the group with the most peers is evicted. None: everyone is
/// protected, and the newcomer is refused instead.
pub fn select_to_evict(mut c: Vec<EvictionCandidate>, max_inbound: usize) -> Option<PeerId> {
    let [groups, ping, txs, blocks] = protection_counts(max_inbound);
    // Network groups: one peer (the oldest) from each of the groups with the highest
    // keyed hash.
    c.sort_by_key(|e| (std::cmp::Reverse(e.group_hash), e.connected_ms, e.peer));
    let mut seen: Vec<[u8; 4]> = Vec::new();
    let mut protected: BTreeSet<PeerId> = BTreeSet::new();
    for e in &c {
        if seen.len() >= groups {
            break;
        }
        if !seen.contains(&e.group) {
            seen.push(e.group);
            protected.insert(e.peer);
        }
    }
    c.retain(|e| !protected.contains(&e.peer));
    c.sort_by_key(|e| (e.min_rtt_ms.is_none(), e.min_rtt_ms, e.peer));
    c.drain(..ping.min(c.len()));
    protect_most_recent(&mut c, txs, |e| e.last_tx_ms);
    protect_most_recent(&mut c, blocks, |e| e.last_block_ms);
    // The older half of the rest: an attacker must stay connected longer than honest
    // peers to take their place.
    c.sort_by_key(|e| (e.connected_ms, e.peer));
    c.drain(..c.len() / 2);
    if c.is_empty() {
        return None;
    }
    // The group with the most peers (ties: the one with the youngest peer), its youngest.
    let mut by_group: BTreeMap<[u8; 4], Vec<&EvictionCandidate>> = BTreeMap::new();
    for e in &c {
        by_group.entry(e.group).or_default().push(e);
    }
    let youngest = |v: &Vec<&EvictionCandidate>| v.iter().map(|e| (e.connected_ms, e.peer)).max();
    let (_, members) = by_group.iter().max_by_key(|(_, v)| (v.len(), youngest(v)))?;
    youngest(members).map(|(_, peer)| peer)
}

/// Removes (protects) the `n` candidates with the most recent nonzero `time`.
fn protect_most_recent(c: &mut Vec<EvictionCandidate>, n: usize, time: impl Fn(&EvictionCandidate) -> u64) {
    c.sort_by_key(|e| (std::cmp::Reverse(time(e)), e.peer));
    let k = c.iter().take(n).take_while(|e| time(e) != 0).count();
    c.drain(..k);
}

impl Protocol {
    /// Inbound slots are full and `newcomer` arrived: evicts an unprotected inbound
    /// peer to make room. False if every one is protected (the newcomer is refused).
    pub(super) fn evict_inbound(&mut self) -> bool {
        let candidates: Vec<EvictionCandidate> = self
            .peers
            .iter()
            .filter(|(_, p)| p.inbound && p.is_ready())
            .map(|(id, p)| {
                let group = addrbook::group(&p.addr.ip());
                EvictionCandidate {
                    peer: *id,
                    group_hash: self.book.keyed_group_hash(group),
                    group,
                    connected_ms: p.link.connected_ms,
                    min_rtt_ms: p.link.min_rtt_ms,
                    last_block_ms: p.link.last_block_ms,
                    last_tx_ms: p.link.last_tx_ms,
                }
            })
            .collect();
        let Some(victim) = select_to_evict(candidates, self.config.max_inbound) else {
            return false;
        };
        if let Some(p) = self.peers.get(&victim) {
            let addr = p.addr;
            if self.log_limit.allow(LogLimiter::kind("evict", "inbound"), self.now_ms) {
                tracing::info!(peer = victim, %addr, "inbound slots full: evicting a peer for a newcomer");
            }
        }
        self.disconnect(victim, DisconnectReason::TooManyPeers);
        true
    }

    /// False for links that must not carry transfers or addresses: block-relay-only
    /// links we dialled, and peers whose `version` said `relay: false`.
    pub(super) fn relays_txs_and_addrs(&self, peer: PeerId) -> bool {
        self.peers.get(&peer).is_some_and(|p| p.wants_relay())
    }

    /// A connection came up: marks the links we dialled as block-relay-only or extra.
    pub(super) fn on_connected_link(&mut self, peer: PeerId, addr: SocketAddr, inbound: bool) {
        if inbound {
            return;
        }
        let relay_only = self.eclipse.block_relay_dialing.remove(&addr);
        let extra = self.eclipse.extra_dialing.remove(&addr);
        if let Some(p) = self.peers.get_mut(&peer) {
            p.link.block_relay_only = relay_only;
            p.link.extra = extra && !relay_only;
        }
    }

    /// Counted against [`Config::target_outbound`]: full-relay outbound links that are
    /// not a stale-tip extra, and the dials for such links.
    pub(super) fn full_outbound(&self) -> usize {
        self.peers.values().filter(|p| !p.inbound && !p.link.block_relay_only && !p.link.extra).count()
            + self.full_outbound_dialing()
    }

    /// The dials of [`Protocol::full_outbound`].
    fn full_outbound_dialing(&self) -> usize {
        self.dialing
            .iter()
            .filter(|a| {
                !self.eclipse.block_relay_dialing.contains(a) && !self.eclipse.extra_dialing.contains(a)
            })
            .count()
    }

    /// The network groups of every outbound link.
    pub(super) fn outbound_groups(&self) -> Vec<[u8; 4]> {
        self.peers.values().filter(|p| !p.inbound).map(|p| addrbook::group(&p.addr.ip())).collect()
    }

    fn dial_excluded(&self, a: &SocketAddr) -> bool {
        not_dialable(&self.dialing, &self.self_addrs, &self.blocked, &self.peers, a)
    }

    /// Up to `n` dial candidates we are not connected to nor dialling. None under
    /// `--connect`, which dials only the addresses the operator gave.
    fn pick_undialled(&mut self, n: usize, used: &[[u8; 4]]) -> Vec<SocketAddr> {
        if self.config.connect_only {
            return Vec::new();
        }
        let Protocol { book, rng, dialing, self_addrs, blocked, peers, now_ms, .. } = self;
        let exclude = |a: &SocketAddr| not_dialable(dialing, self_addrs, blocked, peers, a);
        book.pick_dial_candidates(n, *now_ms, exclude, used, rng)
    }

    /// Last shutdown's block-relay-only peers (`anchors.json`): dialled first.
    pub fn add_anchors(&mut self, anchors: Vec<SocketAddr>) {
        self.eclipse.anchors = anchors.into_iter().take(BLOCK_RELAY_ONLY_OUTBOUND).collect();
    }

    /// The block-relay-only peers now: saved as the anchors at a clean shutdown.
    pub fn anchors(&self) -> Vec<SocketAddr> {
        self.peers.values().filter(|p| p.link.block_relay_only && p.is_ready()).map(|p| p.addr).collect()
    }

    /// Keeps [`BLOCK_RELAY_ONLY_OUTBOUND`] block-relay-only links: the anchors first,
    /// then, once the full-relay outbound slots are taken, addresses from the book in
    /// network groups no outbound link uses.
    /// The tick calls it twice: with `from_book` false before the full-relay slots are
    /// filled (only the anchors, the first dials after a start), and with it true after.
    pub(super) fn maintain_block_relay(&mut self, from_book: bool) {
        if self.config.connect_only {
            return;
        }
        let dialing = &self.dialing;
        self.eclipse.block_relay_dialing.retain(|a| dialing.contains(a));
        self.eclipse.extra_dialing.retain(|a| dialing.contains(a));
        let have = self.peers.values().filter(|p| p.link.block_relay_only).count()
            + self.eclipse.block_relay_dialing.len();
        let mut want = BLOCK_RELAY_ONLY_OUTBOUND
            .saturating_sub(have)
            .min(self.config.max_dialing.saturating_sub(self.dialing.len()));
        while want > 0 && !self.eclipse.anchors.is_empty() {
            let a = self.eclipse.anchors.remove(0);
            if !self.dial_excluded(&a) && !self.book.is_banned(&a, self.now_ms) {
                tracing::info!(addr = %a, "dialling an anchor (block-relay-only)");
                self.dial_as(a, true);
                want -= 1;
            }
        }
        // Beyond the anchors, only once the full-relay slots are taken (Bitcoin Core's
        // order): a node that knows one address (a seed) makes it a full-relay link,
        // which asks for addresses, not a block-relay-only one, which does not.
        let full = self.full_outbound();
        if !from_book || want == 0 || full < self.config.target_outbound {
            return;
        }
        let used = self.outbound_groups();
        let picks = self.pick_undialled(want, &used);
        for a in picks {
            self.dial_as(a, true);
        }
    }

    pub(super) fn dial_as(&mut self, a: SocketAddr, block_relay_only: bool) {
        self.dial(a);
        if self.dialing.contains(&a) {
            if block_relay_only {
                self.eclipse.block_relay_dialing.insert(a);
            } else {
                self.eclipse.extra_dialing.insert(a);
            }
        }
    }

    /// The stale-tip check (every tick): no new tip for [`STALE_TIP_INTERVALS`] target
    /// intervals while peers are connected adds one extra outbound link to a network
    /// group none of ours is in. Once that link has had [`EXTRA_GRACE_MS`], the
    /// full-relay outbound link (extra included) that least recently gave us a new block
    /// is dropped (ties: the youngest), as Bitcoin Core does, and the rest are ordinary.
    pub(super) fn check_stale_tip(&mut self) {
        let now = self.now_ms;
        let tip = self.ledger.tip().hash;
        if self.eclipse.tip != Some(tip) {
            self.eclipse.tip = Some(tip);
            self.eclipse.tip_since_ms = now;
        }
        let extra = self
            .peers
            .iter()
            .find(|(_, p)| p.link.extra)
            .map(|(id, p)| (*id, p.is_ready(), p.link.connected_ms));
        if let Some((_, ready, since)) = extra {
            if ready && now.saturating_sub(since) >= EXTRA_GRACE_MS {
                self.drop_least_useful_outbound();
            }
            return;
        }
        if !self.eclipse.extra_dialing.is_empty() || self.ready_peers().is_empty() || self.syncing {
            return;
        }
        let interval = self.ledger.presync_basis().0.target_block_time_ms;
        if now.saturating_sub(self.eclipse.tip_since_ms) < interval.saturating_mul(STALE_TIP_INTERVALS) {
            return;
        }
        let used = self.outbound_groups();
        let picks = self.pick_undialled(1, &used);
        if let Some(a) = picks.into_iter().find(|a| !used.contains(&addrbook::group(&a.ip()))) {
            tracing::info!(addr = %a, "no new block for {STALE_TIP_INTERVALS} target intervals: one extra outbound link");
            self.dial_as(a, false);
            // Counted from now: the next check comes after another three intervals.
            self.eclipse.tip_since_ms = now;
        }
    }

    /// Every [`BLOCK_RELAY_ROTATION_MS`] with the block-relay-only links up: one more
    /// to an address we are not connected to, preferring a new network group; once the
    /// newest of them has had [`EXTRA_GRACE_MS`], the one that least recently gave a new
    /// block goes (ties: the youngest). A link across a healed partition shows its
    /// heavier chain in the handshake, and the whole side follows.
    pub(super) fn rotate_block_relay(&mut self) {
        let now = self.now_ms;
        let links: Vec<(PeerId, u64, u64, bool)> = self
            .peers
            .iter()
            .filter(|(_, p)| p.link.block_relay_only)
            .map(|(id, p)| (*id, p.link.last_block_ms, p.link.connected_ms, p.is_ready()))
            .collect();
        if links.len() > BLOCK_RELAY_ONLY_OUTBOUND {
            let youngest = links.iter().map(|l| l.2).max().unwrap_or(0);
            if links.iter().all(|l| l.3) && now.saturating_sub(youngest) >= EXTRA_GRACE_MS {
                if let Some(&(id, ..)) = links.iter().min_by_key(|l| (l.1, std::cmp::Reverse((l.2, l.0)))) {
                    tracing::debug!(
                        peer = id,
                        "rotation: dropping the block-relay-only link that least recently gave a block"
                    );
                    self.disconnect(id, DisconnectReason::TooManyPeers);
                }
            }
            return;
        }
        if self.eclipse.next_rotation_ms == 0 {
            self.eclipse.next_rotation_ms = now.saturating_add(BLOCK_RELAY_ROTATION_MS);
        }
        if now < self.eclipse.next_rotation_ms
            || links.len() < BLOCK_RELAY_ONLY_OUTBOUND
            || !self.eclipse.block_relay_dialing.is_empty()
        {
            return;
        }
        self.eclipse.next_rotation_ms = now.saturating_add(BLOCK_RELAY_ROTATION_MS);
        let used = self.outbound_groups();
        if let Some(a) = self.pick_undialled(1, &used).into_iter().next() {
            tracing::debug!(addr = %a, "rotation: one more block-relay-only link");
            self.dial_as(a, true);
        }
    }

    fn drop_least_useful_outbound(&mut self) {
        let worst = self
            .peers
            .iter()
            .filter(|(_, p)| !p.inbound && p.is_ready() && !p.link.block_relay_only)
            .min_by_key(|(id, p)| (p.link.last_block_ms, std::cmp::Reverse((p.link.connected_ms, **id))))
            .map(|(id, _)| *id);
        for p in self.peers.values_mut() {
            p.link.extra = false;
        }
        let full = self.peers.values().filter(|p| !p.inbound && !p.link.block_relay_only).count();
        if full > self.config.target_outbound {
            if let Some(id) = worst {
                tracing::info!(peer = id, "dropping the outbound link that least recently gave a new block");
                self.disconnect(id, DisconnectReason::TooManyPeers);
            }
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::chain::Chain;
    use crate::mempool::Mempool;
    use crate::node::Node;
    use cairn_core::genesis::Genesis;

    fn cand(peer: PeerId, group: u8, connected_ms: u64) -> EvictionCandidate {
        EvictionCandidate {
            peer,
            group_hash: u64::from(group).wrapping_mul(0x9e37_79b9_7f4a_7c15),
            group: [4, 127, group, 0],
            connected_ms,
            min_rtt_ms: Some(100 + peer),
            last_block_ms: 0,
            last_tx_ms: 0,
        }
    }

    #[test]
    fn protection_counts_scale_with_the_slots() {
        assert_eq!(protection_counts(117), [4, 8, 4, 4]);
        assert_eq!(protection_counts(30), [2, 3, 2, 2]);
        assert_eq!(protection_counts(8), [1, 1, 1, 1]);
        assert_eq!(protection_counts(0), [0, 0, 0, 0]);
    }

    #[test]
    fn block_and_transfer_givers_are_protected() {
        // 117 slots from one group (an attacker's), two honest peers among them that gave
        // blocks and one that gave transfers, all connected last and with the worst pings.
        let mut c: Vec<EvictionCandidate> = (0..117).map(|i| cand(i, 9, 1_000 + i)).collect();
        for (i, e) in c.iter_mut().enumerate().skip(114) {
            e.group = [4, 127, 1, 0];
            e.min_rtt_ms = Some(10_000);
            e.connected_ms = 99_000 + i as u64;
        }
        c[114].last_block_ms = 50;
        c[115].last_block_ms = 60;
        c[116].last_tx_ms = 70;
        let mut evicted = BTreeSet::new();
        for _ in 0..60 {
            let Some(v) = select_to_evict(c.clone(), 117) else { break };
            assert!(v < 114, "evicted an honest peer");
            evicted.insert(v);
            c.retain(|e| e.peer != v);
        }
        assert!(evicted.len() >= 40, "attackers are evicted: {}", evicted.len());
    }

    #[test]
    fn the_youngest_of_the_biggest_group_goes() {
        let mut c: Vec<EvictionCandidate> = (0..8).map(|i| cand(i, i as u8, i * 10)).collect();
        for e in c.iter_mut().skip(4) {
            e.group = [4, 127, 200, 0];
        }
        // At 8 inbound: one protected for its group, one for its ping, none for blocks
        // or transfers (none gave any), then the older half of the six left.
        assert_eq!(select_to_evict(c.clone(), 8), Some(7));
        // Everyone protected when they are few.
        assert_eq!(select_to_evict(c[..2].to_vec(), 2), None);
    }

    /// A peer's `version` on `genesis`'s chain (also used by relay.rs's tests).
    pub(in crate::p2p::protocol) fn version(genesis: &Genesis, nonce: u64) -> Version {
        Version {
            protocol_version: wire::PROTOCOL_VERSION,
            chain_id: genesis.params.chain_id,
            genesis_hash: genesis.hash(),
            best_height: 0,
            best_work: Work::ZERO.to_be_bytes(),
            listen_port: 7333,
            nonce,
            your_addr: NetAddr::from_socket("127.0.0.1:7333".parse().unwrap()),
            relay: true,
            user_agent: "test".into(),
        }
    }

    /// A dev node over an in-memory chain, and an address book of 20 addresses in 20
    /// network groups (10.1.0.1 to 10.20.0.1).
    fn dev_node_and_book() -> (Genesis, Arc<Node>, AddrBook) {
        let genesis = Genesis::dev();
        let node = Node::new(Chain::open_in_memory(&genesis), Mempool::new(1 << 20), genesis.clone());
        let mut book = AddrBook::default();
        for i in 1..=20u8 {
            book.add(SocketAddr::new([10, i, 0, 1].into(), 7333), false, 0);
        }
        (genesis, node, book)
    }

    /// The anchors of the last run are the first dials, as block-relay-only links: no
    /// `getaddr` to them, their `addr` and transfer announcements ignored, no transfer
    /// announced to them; at shutdown they are the anchors again.
    #[test]
    fn anchors_are_dialled_first_and_carry_only_blocks() {
        let (genesis, node, book) = dev_node_and_book();
        let mut proto = Protocol::new(node, Config::default(), book.snapshot(), 5, 0);
        let anchors: Vec<SocketAddr> =
            vec!["10.200.0.1:7333".parse().unwrap(), "10.201.0.1:7333".parse().unwrap()];
        proto.add_anchors(anchors.clone());
        proto.step(10, Input::Tick);
        let dials: Vec<SocketAddr> = proto
            .drain()
            .into_iter()
            .filter_map(|o| match o {
                Output::Connect(a) => Some(a),
                _ => None,
            })
            .collect();
        assert_eq!(dials[..2], anchors[..], "anchors first: {dials:?}");
        assert_eq!(dials.len(), Config::default().max_dialing);

        proto.step(20, Input::Connected { peer: 1, addr: anchors[0], inbound: false });
        proto.step(30, Input::Received { peer: 1, msg: Message::Version(version(&genesis, 77)) });
        proto.step(40, Input::Received { peer: 1, msg: Message::Verack });
        let outs = proto.drain();
        assert!(!outs.iter().any(|o| matches!(o, Output::Send(1, Message::GetAddr))), "no getaddr: {outs:?}");
        assert!(proto.peers[&1].link.block_relay_only);
        let before = proto.address_book().len();
        let offered = NetAddr::from_socket("10.99.0.1:7333".parse().unwrap());
        proto.step(50, Input::Received { peer: 1, msg: Message::Addr(vec![offered]) });
        proto.step(60, Input::Received { peer: 1, msg: Message::GetAddr });
        proto.step(70, Input::Received { peer: 1, msg: Message::Inv(vec![InvItem::Tx(Txid([9; 32]))]) });
        let outs = proto.drain();
        assert_eq!(proto.address_book().len(), before, "addr from a block-relay-only link ignored");
        assert!(outs.is_empty(), "no answer to getaddr, no getdata for a transfer: {outs:?}");
        proto.announce(InvItem::Tx(Txid([8; 32])), Origin::Local);
        assert!(proto.drain().is_empty(), "no transfer announced to a block-relay-only link");
        proto.announce(InvItem::Block(BlockHash([7; 32])), Origin::Local);
        assert_eq!(
            proto.drain(),
            vec![Output::Send(1, Message::Inv(vec![InvItem::Block(BlockHash([7; 32]))]))]
        );
        assert_eq!(proto.anchors(), vec![anchors[0]]);
    }

    /// No new tip for three target intervals: one extra outbound link to a new group;
    /// 30 s after it is up, the full-relay link that least recently gave a block (here
    /// none did: the youngest, the extra itself) is dropped.
    #[test]
    fn a_stale_tip_adds_one_extra_link_then_drops_the_least_useful() {
        let (genesis, node, book) = dev_node_and_book();
        let config = Config { target_outbound: 1, ..Config::default() };
        let mut proto = Protocol::new(node, config, book.snapshot(), 9, 0);
        let dials = |proto: &mut Protocol| -> Vec<SocketAddr> {
            proto
                .drain()
                .into_iter()
                .filter_map(|o| match o {
                    Output::Connect(a) => Some(a),
                    _ => None,
                })
                .collect()
        };
        proto.step(10, Input::Tick);
        let first = dials(&mut proto);
        assert_eq!(first.len(), 3, "two block-relay-only links and one outbound: {first:?}");
        let a = *first.iter().find(|x| !proto.eclipse.block_relay_dialing.contains(x)).unwrap();
        for x in first.iter().filter(|x| **x != a) {
            proto.step(20, Input::ConnectFailed { addr: *x });
        }
        proto.step(30, Input::Connected { peer: 1, addr: a, inbound: false });
        proto.step(40, Input::Received { peer: 1, msg: Message::Version(version(&genesis, 71)) });
        proto.step(50, Input::Received { peer: 1, msg: Message::Verack });
        proto.drain();

        let interval = genesis.params.target_block_time_ms;
        let stale = 10 + STALE_TIP_INTERVALS * interval;
        proto.step(stale - 1_000, Input::Tick);
        proto.drain();
        assert!(proto.eclipse.extra_dialing.is_empty(), "not stale yet");
        proto.step(stale + 1, Input::Tick);
        dials(&mut proto);
        let extra: Vec<SocketAddr> = proto.eclipse.extra_dialing.iter().copied().collect();
        assert_eq!(extra.len(), 1);
        assert_ne!(addrbook::group(&extra[0].ip()), addrbook::group(&a.ip()), "a new group");

        let t = stale + 100;
        proto.step(t, Input::Connected { peer: 2, addr: extra[0], inbound: false });
        proto.step(t + 10, Input::Received { peer: 2, msg: Message::Version(version(&genesis, 72)) });
        proto.step(t + 20, Input::Received { peer: 2, msg: Message::Verack });
        assert!(proto.peers[&2].link.extra);
        proto.step(t + 1_000, Input::Tick);
        assert!(
            !proto.drain().iter().any(|o| matches!(o, Output::Disconnect(..))),
            "the extra gets its grace"
        );
        proto.step(t + 20 + EXTRA_GRACE_MS, Input::Tick);
        let outs = proto.drain();
        assert!(
            outs.iter().any(|o| matches!(o, Output::Disconnect(2, _))),
            "the extra gave nothing: {outs:?}"
        );
        assert!(proto.peers.contains_key(&1));
        assert!(proto.peers.values().all(|p| !p.link.extra));
    }

    /// Every five minutes one more block-relay-only link; after its grace the one that
    /// least recently gave a new block goes: the newcomer if it gave none, else the
    /// oldest link that gave none.
    #[test]
    fn block_relay_only_links_rotate_and_keep_the_one_that_gave_a_block() {
        let (genesis, node, book) = dev_node_and_book();
        // No pings to answer; the stale-tip check may dial its own extra link (not
        // block-relay-only), which the dials counted here leave out.
        let config = Config {
            target_outbound: 0,
            ping_interval_ms: u64::MAX / 4,
            ping_timeout_ms: u64::MAX / 4,
            ..Config::default()
        };
        let mut proto = Protocol::new(node, config, book.snapshot(), 11, 0);
        let dials = |proto: &mut Protocol| -> Vec<SocketAddr> {
            let out = proto.drain();
            out.into_iter()
                .filter_map(|o| match o {
                    Output::Connect(a) if proto.eclipse.block_relay_dialing.contains(&a) => Some(a),
                    _ => None,
                })
                .collect()
        };
        let up = |proto: &mut Protocol, peer: PeerId, addr: SocketAddr, t: u64| {
            proto.step(t, Input::Connected { peer, addr, inbound: false });
            proto.step(t, Input::Received { peer, msg: Message::Version(version(&genesis, 100 + peer)) });
            proto.step(t, Input::Received { peer, msg: Message::Verack });
            proto.drain()
        };
        proto.step(10, Input::Tick);
        let first = dials(&mut proto);
        assert_eq!(first.len(), 2, "two block-relay-only links: {first:?}");
        up(&mut proto, 1, first[0], 20);
        up(&mut proto, 2, first[1], 20);
        proto.step(BLOCK_RELAY_ROTATION_MS / 2, Input::Tick);
        assert!(dials(&mut proto).is_empty(), "no rotation before its time");

        let mut t = BLOCK_RELAY_ROTATION_MS + 30;
        for round in 0..2u64 {
            proto.step(t, Input::Tick);
            let extra = dials(&mut proto);
            assert_eq!(extra.len(), 1, "round {round}: one more link: {extra:?}");
            let peer = 3 + round;
            up(&mut proto, peer, extra[0], t);
            assert!(proto.peers[&peer].link.block_relay_only);
            if round == 1 {
                // The newcomer shows a block none of the others gave.
                proto.peers.get_mut(&peer).unwrap().link.last_block_ms = t + 1;
            }
            proto.step(t + EXTRA_GRACE_MS - 1, Input::Tick);
            assert!(proto.drain().iter().all(|o| !matches!(o, Output::Disconnect(..))), "grace");
            proto.step(t + EXTRA_GRACE_MS, Input::Tick);
            let dropped: Vec<PeerId> = proto
                .drain()
                .into_iter()
                .filter_map(|o| match o {
                    Output::Disconnect(id, _) => Some(id),
                    _ => None,
                })
                .collect();
            // Round 0: the newcomer gave nothing and is the youngest. Round 1: it gave a
            // block; of the two that gave none, the younger (peer 2, same age as 1,
            // higher id) goes.
            assert_eq!(dropped, vec![if round == 0 { 3 } else { 2 }], "round {round}");
            assert!(!proto.peers.contains_key(&dropped[0]));
            t += BLOCK_RELAY_ROTATION_MS;
        }
    }
}
