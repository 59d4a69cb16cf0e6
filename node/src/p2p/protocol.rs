//! The peer protocol as a state machine with no I/O.
//!
//! [`Protocol::step`] takes one [`Input`] (a connection opened or closed, a message
//! received, a node event to relay, a clock tick) with the current time, and queues
//! [`Output`]s (send a message, dial an address, drop a peer, save the address book)
//! that the caller drains with [`Protocol::drain`]. Time and randomness come from the
//! caller, so the tokio driver ([`super::net`]) and the deterministic simulator run the
//! very same code. The only thing it touches besides its own state is the [`Ledger`]
//! (chain and mempool queries, block, header and transfer submission), and it reads no
//! clock: every `now_ms` it hands the ledger is the one `step` was given.
//!
//! It owns: handshakes and liveness (ping), peer exchange and the address book
//! ([`super::addrbook`]), inventory gossip, headers-first sync with parallel block
//! downloads ([`super::downloads`]), and misbehaviour scoring and bans.

use super::addrbook::{self, AddrBook, Snapshot};
use super::downloads::BlockDownloads;
use super::ledger::{BlockOutcome, Checked, Ledger, NodeEvent, Origin, Tip, TransferOutcome};
use super::presync::{self, Next, Presync, PresyncError};
use super::waiting::{self, WaitingTransfers};
use super::wire::{self, GetHeaders, InvItem, Message, NetAddr, Version, WireError};
use super::PeerId;
use cairn_core::block::{Block, BlockHeader};
use cairn_core::validation::BlockError;
use cairn_core::{BlockHash, Txid, Work};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use std::collections::{BTreeMap, BTreeSet, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use thiserror::Error;

/// Tunables. The defaults are for real networks; the simulator shortens the timeouts.
#[derive(Clone, Debug)]
pub struct Config {
    /// Port we accept connections on, told to peers (0: none).
    pub listen_port: u16,
    pub user_agent: String,
    /// Outbound connections to keep.
    pub target_outbound: usize,
    /// Most inbound connections (what `--max-peers` leaves after the outbound slots).
    pub max_inbound: usize,
    /// Dials in progress at once.
    pub max_dialing: usize,
    pub handshake_timeout_ms: u64,
    pub ping_interval_ms: u64,
    pub ping_timeout_ms: u64,
    /// A `getheaders` not answered in this time drops the peer.
    pub headers_timeout_ms: u64,
    /// A block request not answered in this time drops the peer and moves its requests.
    pub block_timeout_ms: u64,
    pub tx_request_timeout_ms: u64,
    /// Block requests in flight to one peer.
    pub max_blocks_in_flight_per_peer: usize,
    /// How far past the tip (in missing blocks) downloads are scheduled.
    pub download_window: usize,
    pub ban_duration_ms: u64,
    /// How often a changed address book is saved.
    pub save_interval_ms: u64,
    /// How often sync progress is logged while syncing.
    pub progress_interval_ms: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen_port: 0,
            user_agent: format!("cairn-node/{}", env!("CARGO_PKG_VERSION")),
            target_outbound: 8,
            max_inbound: 117,
            max_dialing: 4,
            handshake_timeout_ms: 10_000,
            // A link that goes silent is noticed within interval + timeout = 35 s
            // whatever the ping phase (docs/PROTOCOL.md, "Liveness").
            ping_interval_ms: 15_000,
            ping_timeout_ms: 20_000,
            headers_timeout_ms: 30_000,
            block_timeout_ms: 30_000,
            tx_request_timeout_ms: 30_000,
            max_blocks_in_flight_per_peer: 16,
            download_window: 1024,
            ban_duration_ms: 24 * 3600 * 1000,
            save_interval_ms: 30_000,
            progress_interval_ms: 5_000,
        }
    }
}

impl Config {
    /// Splits `--max-peers` (inbound and outbound together) into outbound slots (8, or
    /// half of a smaller cap, rounded up) and inbound slots (the rest), so the peers we
    /// chose ourselves always have room however many dial in.
    pub fn with_max_peers(self, max_peers: usize) -> Config {
        let target_outbound = self.target_outbound.min(max_peers.div_ceil(2));
        Config { target_outbound, max_inbound: max_peers - target_outbound, ..self }
    }
}

/// Bounds that are protocol rules rather than tunables.
pub mod limits {
    /// Blocks one `getdata` may ask for (more is misbehaviour).
    pub const MAX_BLOCKS_PER_GETDATA: usize = 16;
    /// Inventory items a peer may send us per [`INV_WINDOW_MS`] before it is flooding:
    /// 10,000 a second, more than this node can admit (tx_submit admitted 7,315 a
    /// second on two cores in docs/PERFORMANCE.md), so an honest peer relaying a busy
    /// network stays below it. (It was 5,000 per window, and a benchmark relaying 1,000
    /// transfers a second got its source node scored as a flooder.)
    pub const MAX_INV_PER_WINDOW: u32 = 100_000;
    pub const INV_WINDOW_MS: u64 = 10_000;
    /// Unsolicited addresses accepted per peer: a bucket of this many, refilled by one
    /// every [`ADDR_REFILL_MS`].
    pub const ADDR_BUCKET: u64 = 20;
    pub const ADDR_REFILL_MS: u64 = 10_000;
    /// Items remembered per peer as known to it (announced by it or to it).
    pub const KNOWN_INV: usize = 8_192;
    /// Transfers remembered as rejected, so they are not fetched again.
    pub const RECENT_REJECTS: usize = 8_192;
    /// Transfer requests in flight over all peers.
    pub const MAX_TX_REQUESTS: usize = 4_096;
    /// Misbehaviour score at which a peer is banned.
    pub const BAN_SCORE: u32 = 100;
    /// `headers` that do not connect before the peer is dropped.
    pub const MAX_UNCONNECTED_HEADERS: u32 = 8;
}

/// Why we dropped a peer. Logged; the serious ones also ban.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum DisconnectReason {
    #[error("handshake timed out")]
    HandshakeTimeout,
    #[error("no pong in time")]
    PingTimeout,
    #[error("peer is on another network: {0}")]
    WrongNetwork(String),
    #[error("connected to ourselves")]
    SelfConnection,
    #[error("already connected to this node")]
    Duplicate,
    #[error("too many inbound peers")]
    TooManyPeers,
    #[error("address is banned")]
    Banned,
    #[error("blocked by the operator (net_blockPeer)")]
    Blocked,
    #[error("protocol violation: {0}")]
    Protocol(String),
    #[error("misbehaviour: {0}")]
    Misbehaviour(String),
    #[error("malformed frame: {0}")]
    Wire(WireError),
    #[error("stalled block download")]
    Stalled,
    #[error("claimed more work but did not deliver headers")]
    NoHeaders,
    #[error("did not deliver a block of the chain it showed us")]
    NotDelivered,
    #[error("send queue full (peer reads too slowly)")]
    SlowReader,
    #[error("connection closed")]
    Closed,
}

/// Something the driver or simulator tells the protocol.
#[derive(Clone, Debug)]
pub enum Input {
    /// A TCP connection is up. `addr` is the remote address (for an outbound
    /// connection, the address we dialled).
    Connected {
        peer: PeerId,
        addr: SocketAddr,
        inbound: bool,
    },
    /// A dial failed.
    ConnectFailed {
        addr: SocketAddr,
    },
    Received {
        peer: PeerId,
        msg: Message,
    },
    /// The peer's byte stream was not valid frames; the driver stops reading it.
    BadFrame {
        peer: PeerId,
        error: WireError,
    },
    /// The connection closed (by the peer, an I/O error, or a full send queue).
    Disconnected {
        peer: PeerId,
        reason: DisconnectReason,
    },
    /// A transfer a peer sent, its signature already checked by the driver's reader
    /// (which turns every `tx` message into this).
    Transfer {
        peer: PeerId,
        checked: Checked,
    },
    /// The node's chain or mempool changed: relay. (Events of the protocol's own
    /// submissions, whose origin is a peer, were handled in the step that caused them
    /// and are ignored here.)
    Node(NodeEvent),
    /// `--peer` / `net_addPeer`: remember and dial.
    AddPeer(SocketAddr),
    /// `net_blockPeer`: drop the peer listening at this address and refuse it (dials
    /// and handshakes) until [`Input::UnblockPeer`]. Operator partitions, not bans.
    BlockPeer(SocketAddr),
    /// `net_unblockPeer`: accept the address again (no dial; peer maintenance or
    /// `net_addPeer` reconnects).
    UnblockPeer(SocketAddr),
    /// Time passed: timeouts, pings, dials, saves.
    Tick,
}

/// Something the protocol asks the driver to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    Send(PeerId, Message),
    /// Send a `block` message whose payload (the block's canonical encoding, as the
    /// store holds it) is given as it is: [`super::wire::FrameCodec::encode_raw`].
    SendBlock(PeerId, Vec<u8>),
    Connect(SocketAddr),
    Disconnect(PeerId, DisconnectReason),
    /// Save the address book and bans.
    Save(Snapshot),
}

/// A set with a fixed capacity that forgets its oldest entries.
#[derive(Debug)]
struct BoundedSet<T: std::hash::Hash + Eq + Clone> {
    set: HashSet<T>,
    order: VecDeque<T>,
    cap: usize,
}

impl<T: std::hash::Hash + Eq + Clone> BoundedSet<T> {
    fn new(cap: usize) -> Self {
        BoundedSet { set: HashSet::new(), order: VecDeque::new(), cap }
    }
    fn insert(&mut self, v: T) {
        if self.set.insert(v.clone()) {
            self.order.push_back(v);
            if self.order.len() > self.cap {
                if let Some(old) = self.order.pop_front() {
                    self.set.remove(&old);
                }
            }
        }
    }
    fn contains(&self, v: &T) -> bool {
        self.set.contains(v)
    }
}

#[derive(Debug)]
struct Peer {
    addr: SocketAddr,
    inbound: bool,
    connected_ms: u64,
    version: Option<Version>,
    got_verack: bool,
    ready: bool,
    /// Where the peer accepts connections (known after its version).
    listen_addr: Option<SocketAddr>,
    best_height: u64,
    claimed_work: Work,
    ping: Option<(u64, u64)>,
    last_ping_ms: u64,
    rtt_ms: Option<u64>,
    known: BoundedSet<InvItem>,
    /// The most-work block the peer has shown us (headers, inv, block): block bodies
    /// are fetched from a peer only on the way to this block, which it must be able to
    /// serve (a Cairn node keeps the body of every block it announces or sends headers
    /// of).
    best_known: Option<(BlockHash, Work)>,
    /// When our oldest unanswered `getheaders` was sent.
    headers_asked_ms: Option<u64>,
    /// An inv arrived while a `getheaders` was out: ask again when it is answered.
    headers_again: bool,
    /// We asked for headers because it claimed more work than we knew of.
    expect_more_work: bool,
    unconnected_headers: u32,
    /// A low-work branch of this peer's being checked before it is stored.
    presync: Option<Presync>,
    requested_txs: HashSet<Txid>,
    sent_getaddr: bool,
    got_addr_reply: bool,
    answered_getaddr: bool,
    addr_tokens: u64,
    addr_refill_ms: u64,
    inv_window_start: u64,
    inv_in_window: u32,
    score: u32,
}

impl Peer {
    fn new(addr: SocketAddr, inbound: bool, now_ms: u64) -> Peer {
        Peer {
            addr,
            inbound,
            connected_ms: now_ms,
            version: None,
            got_verack: false,
            ready: false,
            listen_addr: None,
            best_height: 0,
            claimed_work: Work::ZERO,
            ping: None,
            last_ping_ms: now_ms,
            rtt_ms: None,
            known: BoundedSet::new(limits::KNOWN_INV),
            best_known: None,
            headers_asked_ms: None,
            headers_again: false,
            expect_more_work: false,
            unconnected_headers: 0,
            presync: None,
            requested_txs: HashSet::new(),
            sent_getaddr: false,
            got_addr_reply: false,
            answered_getaddr: false,
            addr_tokens: limits::ADDR_BUCKET,
            addr_refill_ms: now_ms,
            inv_window_start: now_ms,
            inv_in_window: 0,
            score: 0,
        }
    }

    fn nonce(&self) -> Option<u64> {
        self.version.as_ref().map(|v| v.nonce)
    }
}

/// The protocol state of one node.
pub struct Protocol {
    ledger: Arc<dyn Ledger>,
    config: Config,
    rng: StdRng,
    /// Our node's handshake nonce.
    nonce: u64,
    peers: BTreeMap<PeerId, Peer>,
    book: AddrBook,
    dialing: BTreeSet<SocketAddr>,
    /// Addresses found to be ourselves.
    self_addrs: BTreeSet<SocketAddr>,
    /// Listen addresses the operator blocked (`net_blockPeer`); in memory only.
    blocked: BTreeSet<SocketAddr>,
    downloads: BlockDownloads,
    tx_requests: BTreeMap<Txid, (PeerId, u64)>,
    recent_rejects: BoundedSet<Txid>,
    /// Transfers from peers waiting for their predecessor (see [`waiting`]).
    waiting: WaitingTransfers,
    out: Vec<Output>,
    now_ms: u64,
    last_save_ms: u64,
    last_progress_ms: u64,
    syncing: bool,
    /// The current sync was logged as started (it was more than one block behind).
    sync_logged: bool,
}

impl Protocol {
    /// A protocol instance for the node behind `ledger`. `seed` drives every random
    /// choice (nonces, peer selection), so the same inputs always give the same outputs.
    pub fn new(ledger: Arc<dyn Ledger>, config: Config, book: Snapshot, seed: u64, now_ms: u64) -> Protocol {
        let mut rng = StdRng::seed_from_u64(seed);
        let nonce = rng.gen();
        Protocol {
            ledger,
            config,
            rng,
            nonce,
            peers: BTreeMap::new(),
            book: AddrBook::from_snapshot(book, now_ms),
            dialing: BTreeSet::new(),
            self_addrs: BTreeSet::new(),
            blocked: BTreeSet::new(),
            downloads: BlockDownloads::default(),
            tx_requests: BTreeMap::new(),
            recent_rejects: BoundedSet::new(limits::RECENT_REJECTS),
            waiting: WaitingTransfers::default(),
            out: Vec::new(),
            now_ms,
            // Zero: the first change is saved at once, later ones at most every interval.
            last_save_ms: 0,
            last_progress_ms: now_ms,
            syncing: false,
            sync_logged: false,
        }
    }

    pub fn nonce(&self) -> u64 {
        self.nonce
    }

    /// True while peers have shown more work than our tip and we are fetching it.
    pub fn is_syncing(&self) -> bool {
        self.syncing
    }

    pub fn address_book(&self) -> &AddrBook {
        &self.book
    }

    /// Ready peers, for `net_peers`.
    pub fn peer_infos(&self) -> Vec<cairn_api::PeerInfo> {
        self.peers
            .values()
            .filter(|p| p.ready)
            .map(|p| cairn_api::PeerInfo {
                addr: p.listen_addr.unwrap_or(p.addr).to_string(),
                inbound: p.inbound,
                height: p.best_height,
                ping_ms: p.rtt_ms,
                user_agent: p.version.as_ref().map(|v| v.user_agent.clone()).unwrap_or_default(),
            })
            .collect()
    }

    /// Ids of peers that finished the handshake.
    pub fn ready_peers(&self) -> Vec<PeerId> {
        self.peers.iter().filter(|(_, p)| p.ready).map(|(id, _)| *id).collect()
    }

    pub fn drain(&mut self) -> Vec<Output> {
        std::mem::take(&mut self.out)
    }

    /// Handles one input at time `now_ms`.
    pub fn step(&mut self, now_ms: u64, input: Input) {
        self.now_ms = now_ms.max(self.now_ms);
        match input {
            Input::Connected { peer, addr, inbound } => self.on_connected(peer, addr, inbound),
            Input::ConnectFailed { addr } => {
                self.dialing.remove(&addr);
                self.book.mark_failure(&addr, self.now_ms);
                tracing::debug!(%addr, "dial failed");
            }
            Input::Received { peer, msg } => self.on_message(peer, msg),
            Input::Transfer { peer, checked } => self.on_tx(peer, checked),
            Input::BadFrame { peer, error } => {
                let serious = !matches!(error, WireError::BadMagic(_));
                if serious {
                    self.ban_peer(peer, &error.to_string());
                }
                self.disconnect(peer, DisconnectReason::Wire(error));
            }
            Input::Disconnected { peer, reason } => self.remove_peer(peer, &reason),
            Input::Node(event) => {
                let caused_by_us = match &event {
                    NodeEvent::NewTip { origin, .. } | NodeEvent::NewTransfer { origin, .. } => {
                        matches!(origin, Origin::Peer(_))
                    }
                };
                if !caused_by_us {
                    self.on_node_event(event);
                }
            }
            Input::AddPeer(addr) => {
                self.book.add(addr, true, self.now_ms);
                if !self.is_connected_to(&addr) && !self.dialing.contains(&addr) {
                    self.dial(addr);
                }
            }
            Input::BlockPeer(addr) => self.block_peer(addr),
            Input::UnblockPeer(addr) => {
                if self.blocked.remove(&addr) {
                    tracing::info!(%addr, "peer unblocked");
                }
            }
            Input::Tick => self.on_tick(),
        }
    }

    /// Listen addresses blocked with `net_blockPeer`.
    pub fn blocked_peers(&self) -> Vec<SocketAddr> {
        self.blocked.iter().copied().collect()
    }

    /// Refuses `addr` from now on and drops every connection to the node listening
    /// there. Matching is by listen address (IP and port), not by IP alone, so nodes
    /// sharing one host can be cut apart.
    fn block_peer(&mut self, addr: SocketAddr) {
        if self.blocked.insert(addr) {
            tracing::info!(%addr, "peer blocked");
        }
        let drop: Vec<PeerId> = self
            .peers
            .iter()
            .filter(|(_, p)| (!p.inbound && p.addr == addr) || p.listen_addr == Some(addr))
            .map(|(id, _)| *id)
            .collect();
        for id in drop {
            self.disconnect(id, DisconnectReason::Blocked);
        }
    }

    // ----- connections -------------------------------------------------------------

    fn on_connected(&mut self, peer: PeerId, addr: SocketAddr, inbound: bool) {
        if !inbound {
            self.dialing.remove(&addr);
        }
        if self.book.is_banned(&addr, self.now_ms) {
            self.out.push(Output::Disconnect(peer, DisconnectReason::Banned));
            return;
        }
        if !inbound && self.blocked.contains(&addr) {
            // Blocked while the dial was in flight.
            self.out.push(Output::Disconnect(peer, DisconnectReason::Blocked));
            return;
        }
        if inbound && self.peers.values().filter(|p| p.inbound).count() >= self.config.max_inbound {
            self.out.push(Output::Disconnect(peer, DisconnectReason::TooManyPeers));
            return;
        }
        self.peers.insert(peer, Peer::new(addr, inbound, self.now_ms));
        let version = self.our_version();
        self.send(peer, Message::Version(version));
    }

    fn our_version(&self) -> Version {
        let tip = self.ledger.tip();
        Version {
            protocol_version: wire::PROTOCOL_VERSION,
            chain_id: self.ledger.chain_id(),
            genesis_hash: self.ledger.genesis_hash(),
            best_height: tip.height,
            best_work: tip.total_work.to_be_bytes(),
            listen_port: self.config.listen_port,
            nonce: self.nonce,
            user_agent: self.config.user_agent.chars().take(wire::MAX_USER_AGENT).collect(),
        }
    }

    fn dial(&mut self, addr: SocketAddr) {
        if self.blocked.contains(&addr) {
            tracing::debug!(%addr, "not dialling a blocked peer");
            return;
        }
        self.book.mark_attempt(&addr, self.now_ms);
        self.dialing.insert(addr);
        self.out.push(Output::Connect(addr));
    }

    fn is_connected_to(&self, addr: &SocketAddr) -> bool {
        self.peers.values().any(|p| (!p.inbound && p.addr == *addr) || p.listen_addr == Some(*addr))
    }

    /// Drops a peer we decided to drop.
    fn disconnect(&mut self, peer: PeerId, reason: DisconnectReason) {
        if self.peers.contains_key(&peer) {
            self.remove_peer(peer, &reason);
            self.out.push(Output::Disconnect(peer, reason));
        }
    }

    /// Forgets a peer and moves its requests elsewhere.
    fn remove_peer(&mut self, peer: PeerId, reason: &DisconnectReason) {
        let Some(p) = self.peers.remove(&peer) else { return };
        self.waiting.forget_peer(peer);
        if p.ready {
            tracing::info!(peer, addr = %p.addr, %reason, "peer disconnected");
        } else {
            tracing::debug!(peer, addr = %p.addr, %reason, "connection dropped before handshake");
            if !p.inbound
                && !matches!(
                    reason,
                    DisconnectReason::Duplicate
                        | DisconnectReason::SelfConnection
                        | DisconnectReason::Blocked
                )
            {
                self.book.mark_failure(&p.addr, self.now_ms);
            }
        }
        if p.ready && !p.inbound {
            self.book.mark_closed(&p.addr, self.now_ms);
        }
        if p.ready
            && !p.inbound
            && matches!(
                reason,
                DisconnectReason::Stalled
                    | DisconnectReason::NoHeaders
                    | DisconnectReason::NotDelivered
                    | DisconnectReason::PingTimeout
            )
        {
            // Back off before dialling a slow or silent peer again; one that keeps
            // offering what it does not deliver backs off longer each time.
            self.book.mark_failure(&p.addr, self.now_ms);
            if reason != &DisconnectReason::PingTimeout {
                self.book.mark_strike(&p.addr);
            }
        }
        self.downloads.remove_peer(peer);
        self.tx_requests.retain(|_, (p, _)| *p != peer);
    }

    /// Adds misbehaviour points; at [`limits::BAN_SCORE`] the peer is banned and dropped.
    fn misbehave(&mut self, peer: PeerId, points: u32, what: &str) {
        let Some(p) = self.peers.get_mut(&peer) else { return };
        p.score = p.score.saturating_add(points);
        tracing::debug!(peer, score = p.score, what, "peer misbehaved");
        if p.score >= limits::BAN_SCORE {
            self.ban_peer(peer, what);
            self.disconnect(peer, DisconnectReason::Misbehaviour(what.to_string()));
        }
    }

    fn ban_peer(&mut self, peer: PeerId, why: &str) {
        let Some(p) = self.peers.get(&peer) else { return };
        let until = self.now_ms.saturating_add(self.config.ban_duration_ms);
        let (addr, listen) = (p.addr, p.listen_addr);
        tracing::warn!(peer, %addr, why, "banning peer");
        self.book.ban(&addr, until, why);
        if let Some(l) = listen {
            self.book.ban(&l, until, why);
        }
    }

    fn send(&mut self, peer: PeerId, msg: Message) {
        self.out.push(Output::Send(peer, msg));
    }

    // ----- messages ----------------------------------------------------------------

    fn on_message(&mut self, peer: PeerId, msg: Message) {
        let Some(p) = self.peers.get(&peer) else { return };
        if !p.ready {
            match msg {
                Message::Version(_) if p.version.is_some() => {
                    self.disconnect(peer, DisconnectReason::Protocol("second version".into()))
                }
                Message::Version(v) => self.on_version(peer, v),
                Message::Verack => {
                    let Some(p) = self.peers.get_mut(&peer) else { return };
                    if p.version.is_none() || p.got_verack {
                        self.disconnect(peer, DisconnectReason::Protocol("verack out of order".into()));
                        return;
                    }
                    p.got_verack = true;
                    self.on_ready(peer);
                }
                other => self.disconnect(
                    peer,
                    DisconnectReason::Protocol(format!("{} before the handshake finished", other.name())),
                ),
            }
            return;
        }
        match msg {
            Message::Version(_) | Message::Verack => self.misbehave(peer, 20, "repeated handshake"),
            Message::Ping(n) => self.send(peer, Message::Pong(n)),
            Message::Pong(n) => self.on_pong(peer, n),
            Message::GetAddr => self.on_getaddr(peer),
            Message::Addr(addrs) => self.on_addr(peer, addrs),
            Message::Inv(items) => self.on_inv(peer, items),
            Message::GetData(items) => self.on_getdata(peer, items),
            Message::NotFound(items) => self.on_notfound(peer, items),
            Message::GetHeaders(g) => self.on_getheaders(peer, g),
            Message::Headers(h) => self.on_headers(peer, h),
            Message::Block(b) => self.on_block(peer, *b),
            Message::Tx(t) => {
                // The TCP driver's readers check signatures before queueing (as
                // `Input::Transfer`); other drivers leave it to this thread.
                let checked = self.ledger.verify(t);
                self.on_tx(peer, checked)
            }
        }
    }

    fn on_version(&mut self, peer: PeerId, v: Version) {
        let chain_id = self.ledger.chain_id();
        let our_genesis = self.ledger.genesis_hash();
        let mismatch = if v.protocol_version != wire::PROTOCOL_VERSION {
            Some(format!("protocol version {} (we speak {})", v.protocol_version, wire::PROTOCOL_VERSION))
        } else if v.chain_id != chain_id {
            Some(format!("chain id {} (ours is {})", v.chain_id, chain_id))
        } else if v.genesis_hash != our_genesis {
            Some(format!("genesis {} (ours is {})", v.genesis_hash, our_genesis))
        } else {
            None
        };
        let Some(p) = self.peers.get(&peer) else { return };
        let (addr, inbound) = (p.addr, p.inbound);
        if let Some(why) = mismatch {
            tracing::info!(peer, %addr, %why, "refusing peer on another network");
            if !inbound {
                self.book.remove(&addr);
            }
            self.disconnect(peer, DisconnectReason::WrongNetwork(why));
            return;
        }
        if v.nonce == self.nonce {
            if !inbound {
                self.self_addrs.insert(addr);
                self.book.remove(&addr);
            }
            self.disconnect(peer, DisconnectReason::SelfConnection);
            return;
        }
        let listen_addr = if !inbound {
            Some(addr)
        } else if v.listen_port != 0 {
            Some(SocketAddr::new(addr.ip(), v.listen_port))
        } else {
            None
        };
        // Before the duplicate check, so a refused connection never displaces a kept one.
        if listen_addr.is_some_and(|l| self.blocked.contains(&l)) {
            self.disconnect(peer, DisconnectReason::Blocked);
            return;
        }
        // Two connections to one node: both ends keep the one dialled by the node with
        // the lower nonce, so they agree without talking about it.
        if let Some((&other, o)) =
            self.peers.iter().find(|(id, o)| **id != peer && o.nonce() == Some(v.nonce))
        {
            let we_dial = self.nonce < v.nonce;
            let keep_new = inbound != we_dial && o.inbound == we_dial;
            let drop = if keep_new { other } else { peer };
            if let Some(d) = self.peers.get(&drop) {
                if !d.inbound {
                    let a = d.addr;
                    self.book.mark_attempt(&a, self.now_ms);
                }
            }
            self.disconnect(drop, DisconnectReason::Duplicate);
            if drop == peer {
                return;
            }
        }
        let Some(p) = self.peers.get_mut(&peer) else { return };
        p.best_height = v.best_height;
        p.claimed_work = Work::from_be_bytes(&v.best_work);
        p.listen_addr = listen_addr;
        p.version = Some(v);
        self.send(peer, Message::Verack);
    }

    fn on_ready(&mut self, peer: PeerId) {
        let now = self.now_ms;
        // Against the tip, not the best header: a header-only branch nobody delivers
        // must not stop us from asking a new peer for its chain.
        let our_best = self.ledger.tip().total_work;
        let Some(p) = self.peers.get_mut(&peer) else { return };
        p.ready = true;
        p.last_ping_ms = now;
        let (inbound, addr, listen, claimed) = (p.inbound, p.addr, p.listen_addr, p.claimed_work);
        let ua = p.version.as_ref().map(|v| v.user_agent.clone()).unwrap_or_default();
        tracing::info!(peer, %addr, inbound, height = p.best_height, user_agent = %ua, "peer connected");
        if !inbound {
            self.book.mark_success(&addr, now, true);
        } else if let Some(l) = listen {
            if self.book.add(l, false, now) {
                // A node we had not heard of: tell a couple of others, so addresses
                // spread without anyone having to ask.
                self.relay_addrs(peer, &[l]);
            }
            // It is up: whatever our dials to it did before, start its backoff afresh.
            self.book.mark_success(&l, now, false);
        }
        // Outbound peers are always asked for addresses; inbound ones too while the book
        // is small: a node that others reached first may have no outbound peer at all
        // (each duplicate connection keeps one direction), and would otherwise learn
        // addresses only from relays.
        if !inbound || self.book.len() < wire::MAX_ADDRS {
            if let Some(p) = self.peers.get_mut(&peer) {
                p.sent_getaddr = true;
            }
            self.send(peer, Message::GetAddr);
        }
        if claimed > our_best {
            if let Some(p) = self.peers.get_mut(&peer) {
                p.expect_more_work = true;
            }
            self.request_headers(peer);
        }
    }

    fn on_pong(&mut self, peer: PeerId, n: u64) {
        let now = self.now_ms;
        let Some(p) = self.peers.get_mut(&peer) else { return };
        match p.ping {
            Some((nonce, sent)) if nonce == n => {
                p.rtt_ms = Some(now.saturating_sub(sent));
                p.ping = None;
            }
            _ => self.misbehave(peer, 10, "unsolicited pong"),
        }
    }

    // ----- addresses ---------------------------------------------------------------

    fn on_getaddr(&mut self, peer: PeerId) {
        let Some(p) = self.peers.get_mut(&peer) else { return };
        if p.answered_getaddr {
            return; // once per connection: no scraping the whole book by asking again
        }
        p.answered_getaddr = true;
        let sample = self.book.sample(wire::MAX_ADDRS, self.now_ms, &mut self.rng);
        let addrs = sample.into_iter().map(NetAddr::from_socket).collect();
        self.send(peer, Message::Addr(addrs));
    }

    fn on_addr(&mut self, peer: PeerId, addrs: Vec<NetAddr>) {
        let now = self.now_ms;
        let Some(p) = self.peers.get_mut(&peer) else { return };
        let solicited = p.sent_getaddr && !p.got_addr_reply;
        let allowed = if solicited {
            p.got_addr_reply = true;
            addrs.len()
        } else {
            let refill = now.saturating_sub(p.addr_refill_ms) / limits::ADDR_REFILL_MS;
            if refill > 0 {
                p.addr_tokens = (p.addr_tokens + refill).min(limits::ADDR_BUCKET);
                p.addr_refill_ms = now;
            }
            let n = (p.addr_tokens as usize).min(addrs.len());
            p.addr_tokens -= n as u64;
            n
        };
        let mut fresh = Vec::new();
        for a in addrs.into_iter().take(allowed) {
            let a = a.to_socket();
            if self.self_addrs.contains(&a) || self.book.is_banned(&a, now) {
                continue;
            }
            if self.book.add(a, false, now) {
                fresh.push(a);
            }
        }
        // Relay what small unsolicited announcements taught us; big answers to getaddr
        // are not relayed (everyone can ask for them).
        if !solicited && !fresh.is_empty() && fresh.len() <= 10 {
            self.relay_addrs(peer, &fresh);
        }
    }

    fn relay_addrs(&mut self, from: PeerId, addrs: &[SocketAddr]) {
        let mut targets: Vec<PeerId> =
            self.peers.iter().filter(|(id, p)| p.ready && **id != from).map(|(id, _)| *id).collect();
        targets.shuffle(&mut self.rng);
        let msg = Message::Addr(addrs.iter().map(|a| NetAddr::from_socket(*a)).collect());
        for t in targets.into_iter().take(2) {
            self.send(t, msg.clone());
        }
    }

    // ----- inventory ---------------------------------------------------------------

    fn on_inv(&mut self, peer: PeerId, items: Vec<InvItem>) {
        let now = self.now_ms;
        let Some(p) = self.peers.get_mut(&peer) else { return };
        if now.saturating_sub(p.inv_window_start) > limits::INV_WINDOW_MS {
            p.inv_window_start = now;
            p.inv_in_window = 0;
        }
        p.inv_in_window = p.inv_in_window.saturating_add(items.len() as u32);
        if p.inv_in_window > limits::MAX_INV_PER_WINDOW {
            self.misbehave(peer, 50, "inventory flood");
            return;
        }
        let mut want_txs = Vec::new();
        let mut new_block = false;
        let mut known_blocks = Vec::new();
        {
            let ledger = &self.ledger;
            for item in &items {
                p.known.insert(*item);
                match item {
                    InvItem::Block(h) => {
                        if ledger.work_of(h).is_some() {
                            known_blocks.push(*h);
                        } else if !ledger.is_known(h) {
                            new_block = true;
                        }
                    }
                    InvItem::Tx(t) => {
                        if !ledger.has_transfer(t)
                            && !self.recent_rejects.contains(t)
                            && !self.waiting.contains(t)
                            && !self.tx_requests.contains_key(t)
                            && self.tx_requests.len() < limits::MAX_TX_REQUESTS
                        {
                            want_txs.push(*t);
                        }
                    }
                }
            }
        }
        let noted = !known_blocks.is_empty();
        for h in known_blocks {
            self.note_best(peer, h);
        }
        if new_block {
            self.request_headers(peer);
        }
        if noted {
            self.schedule_downloads();
        }
        if !want_txs.is_empty() {
            let Some(p) = self.peers.get_mut(&peer) else { return };
            for t in &want_txs {
                p.requested_txs.insert(*t);
                self.tx_requests.insert(*t, (peer, now));
            }
            self.send(peer, Message::GetData(want_txs.into_iter().map(InvItem::Tx).collect()));
        }
    }

    fn on_getdata(&mut self, peer: PeerId, items: Vec<InvItem>) {
        let blocks = items.iter().filter(|i| matches!(i, InvItem::Block(_))).count();
        if blocks > limits::MAX_BLOCKS_PER_GETDATA {
            self.misbehave(peer, 50, "getdata asks for too many blocks");
            return;
        }
        let mut not_found = Vec::new();
        for item in items {
            match item {
                InvItem::Block(h) => match self.ledger.block_bytes(&h) {
                    Ok(Some(bytes)) => {
                        self.mark_known(peer, item);
                        self.out.push(Output::SendBlock(peer, bytes));
                    }
                    Ok(None) => not_found.push(item),
                    Err(e) => {
                        tracing::error!(error = %e, "cannot read a block to serve");
                        not_found.push(item);
                    }
                },
                InvItem::Tx(t) => {
                    let tx = self.ledger.transfer(&t);
                    match tx {
                        Some(tx) => {
                            self.mark_known(peer, item);
                            self.send(peer, Message::Tx(tx));
                        }
                        None => not_found.push(item),
                    }
                }
            }
        }
        if !not_found.is_empty() {
            self.send(peer, Message::NotFound(not_found));
        }
    }

    fn on_notfound(&mut self, peer: PeerId, items: Vec<InvItem>) {
        let mut undelivered = false;
        for item in items {
            match item {
                InvItem::Block(h) => {
                    // We only ask a peer for blocks on the way to its own best block,
                    // whose bodies it keeps: "not found" means it showed us a chain it
                    // cannot or will not deliver.
                    undelivered |= self.downloads.received(&h, peer);
                }
                InvItem::Tx(t) => {
                    if let Some(p) = self.peers.get_mut(&peer) {
                        if p.requested_txs.remove(&t) {
                            self.tx_requests.remove(&t);
                        }
                    }
                }
            }
        }
        if undelivered {
            self.disconnect(peer, DisconnectReason::NotDelivered);
        }
        self.schedule_downloads();
    }

    /// Remembers `hash` as the peer's best block if it has more work than the best one
    /// it showed us before.
    fn note_best(&mut self, peer: PeerId, hash: BlockHash) {
        let Some(work) = self.ledger.work_of(&hash) else { return };
        let Some(p) = self.peers.get_mut(&peer) else { return };
        if p.best_known.is_none_or(|(_, w)| work > w) {
            p.best_known = Some((hash, work));
        }
    }

    fn mark_known(&mut self, peer: PeerId, item: InvItem) {
        if let Some(p) = self.peers.get_mut(&peer) {
            p.known.insert(item);
        }
    }

    fn on_tx(&mut self, peer: PeerId, checked: Checked) {
        let txid = match &checked {
            Ok(v) => v.txid(),
            Err(r) => r.txid,
        };
        let Some(p) = self.peers.get_mut(&peer) else { return };
        if !p.requested_txs.remove(&txid) {
            self.misbehave(peer, 10, "unrequested transfer");
            return;
        }
        p.known.insert(InvItem::Tx(txid));
        self.tx_requests.remove(&txid);
        let tx = match checked {
            Ok(v) => v,
            Err(r) => {
                self.recent_rejects.insert(txid);
                self.misbehave(peer, limits::BAN_SCORE, &format!("invalid transfer: {}", r.error));
                return;
            }
        };
        let (outcome, event) = self.ledger.submit_transfer(tx, Origin::Peer(peer), self.now_ms);
        match outcome {
            TransferOutcome::Admitted | TransferOutcome::Duplicate => {}
            TransferOutcome::NonceGap => {
                // Its predecessor is still on its way (perhaps from another peer): wait
                // for it rather than fetch this one again.
                if !self.waiting.hold(tx, peer, self.now_ms) {
                    tracing::debug!(peer, %txid, "nonce gap and no room to wait: dropped");
                }
            }
            TransferOutcome::Rejected { reason, temporary, peer_fault } => {
                // A refusal that may pass later (missing funds; a full pool) is not
                // remembered, so the transfer is fetched again when another peer
                // announces it.
                if !temporary {
                    self.recent_rejects.insert(txid);
                }
                if peer_fault {
                    self.misbehave(peer, limits::BAN_SCORE, &format!("invalid transfer: {reason}"));
                }
            }
        }
        if let Some(event) = event {
            self.on_node_event(event);
        }
    }

    // ----- headers and blocks ------------------------------------------------------

    /// Sends `getheaders` from our best chain, unless one is already out to this peer
    /// (then asks again once it is answered).
    fn request_headers(&mut self, peer: PeerId) {
        let now = self.now_ms;
        let Some(p) = self.peers.get_mut(&peer) else { return };
        if p.headers_asked_ms.is_some() {
            p.headers_again = true;
            return;
        }
        p.headers_asked_ms = Some(now);
        p.headers_again = false;
        let locator = self.locator(None);
        self.send(peer, Message::GetHeaders(GetHeaders { locator, stop: BlockHash::ZERO }));
    }

    /// Our best-chain locator, optionally led by a hash we just learned (to continue a
    /// long header download past our tip).
    fn locator(&self, first: Option<BlockHash>) -> Vec<BlockHash> {
        let mut locator: Vec<BlockHash> = first.into_iter().collect();
        locator.extend(self.ledger.locator());
        locator.truncate(wire::MAX_LOCATOR);
        locator
    }

    fn on_getheaders(&mut self, peer: PeerId, g: GetHeaders) {
        let mut headers = self.ledger.headers_after(&g.locator, wire::MAX_HEADERS);
        if g.stop != BlockHash::ZERO {
            if let Some(i) = headers.iter().position(|h| h.hash() == g.stop) {
                headers.truncate(i + 1);
            }
        }
        if let Some(last) = headers.last() {
            self.mark_known(peer, InvItem::Block(last.hash()));
        }
        self.send(peer, Message::Headers(headers));
    }

    fn on_headers(&mut self, peer: PeerId, headers: Vec<BlockHeader>) {
        let now = self.now_ms;
        let Some(p) = self.peers.get_mut(&peer) else { return };
        if p.headers_asked_ms.take().is_none() {
            self.misbehave(peer, 20, "unrequested headers");
            return;
        }
        let again = std::mem::take(&mut p.headers_again);
        if headers.is_empty() {
            // Whatever branch was being checked ends here.
            p.presync = None;
            let expected = std::mem::take(&mut p.expect_more_work);
            let claimed = p.claimed_work;
            if expected && claimed > self.ledger.tip().total_work {
                self.disconnect(peer, DisconnectReason::NoHeaders);
            }
            return;
        }
        p.expect_more_work = false;
        if self.screen_low_work(peer, &headers, again) {
            return;
        }
        // The chain checks each header against its parent; a list that is not a chain
        // fails there as an unconnected or invalid header.
        let result = match self.ledger.submit_headers(&headers, now) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "storing headers failed");
                return;
            }
        };
        if let Some(why) = &result.invalid {
            self.misbehave(peer, limits::BAN_SCORE, why);
            return;
        }
        // The peer's best block: the last of these headers that we indexed.
        let shown = headers.iter().rev().map(BlockHeader::hash).find(|h| self.ledger.work_of(h).is_some());
        if let Some(h) = shown {
            self.note_best(peer, h);
        }
        let Some(p) = self.peers.get_mut(&peer) else { return };
        if result.unconnected {
            p.unconnected_headers += 1;
            if p.unconnected_headers >= limits::MAX_UNCONNECTED_HEADERS {
                self.misbehave(peer, 50, "headers that do not connect");
            } else {
                self.request_headers(peer);
            }
            return;
        }
        let last = headers[headers.len() - 1];
        let last_hash = last.hash();
        for h in &headers {
            p.known.insert(InvItem::Block(h.hash()));
        }
        p.best_height = p.best_height.max(last.height);
        if result.added > 0 {
            tracing::debug!(peer, added = result.added, height = last.height, "headers");
        }
        if headers.len() == wire::MAX_HEADERS {
            // A full batch: there may be more.
            p.headers_asked_ms = Some(now);
            let locator = self.locator(Some(last_hash));
            self.send(peer, Message::GetHeaders(GetHeaders { locator, stop: BlockHash::ZERO }));
        } else if again {
            self.request_headers(peer);
        }
        self.schedule_downloads();
    }

    /// Keeps the headers of a branch with less work than ours out of the chain until the
    /// branch proves it has enough ([`super::presync`]). Returns true when it dealt with
    /// the batch; false when the batch is to be stored as usual.
    fn screen_low_work(&mut self, peer: PeerId, headers: &[BlockHeader], again: bool) -> bool {
        let (threshold, params) = {
            let (params, tip_work, next_work) = self.ledger.presync_basis();
            (presync::threshold(tip_work, next_work), params)
        };
        let Some(p) = self.peers.get_mut(&peer) else { return true };
        if let Some(ps) = p.presync.as_ref().filter(|ps| ps.is_redownloading()) {
            return match ps.check_redownload(headers) {
                Ok(done) => {
                    if done {
                        p.presync = None;
                    }
                    false
                }
                Err(e) => {
                    p.presync = None;
                    self.misbehave(peer, limits::BAN_SCORE, &e.to_string());
                    true
                }
            };
        }
        if p.presync.is_none() {
            // An unconnected batch, or one we already have, goes the usual way.
            let Some((fork, work, recent)) = self.ledger.header_context(&headers[0].prev) else {
                return false;
            };
            if self.ledger.work_of(&headers[headers.len() - 1].hash()).is_some() {
                return false;
            }
            let end = headers.iter().fold(work, |w, h| w.saturating_add(h.target.work()));
            if end >= threshold {
                return false;
            }
            let offset = self.rng.gen();
            let Some(p) = self.peers.get_mut(&peer) else { return true };
            tracing::debug!(peer, fork = %fork.hash, "low-work headers: checking before storing");
            p.presync = Some(Presync::new(fork, work, recent, offset));
        }
        let Some(p) = self.peers.get_mut(&peer) else { return true };
        let Some(ps) = p.presync.as_mut() else { return true };
        let full = headers.len() == wire::MAX_HEADERS;
        match ps.feed(headers, full, &params, self.now_ms, threshold) {
            Ok(Next::More(from)) | Ok(Next::Redownload(from)) => {
                if ps.is_redownloading() {
                    tracing::debug!(peer, "low-work branch reached our work: fetching its headers again");
                }
                p.headers_asked_ms = Some(self.now_ms);
                let locator = self.locator(Some(from));
                self.send(peer, Message::GetHeaders(GetHeaders { locator, stop: BlockHash::ZERO }));
            }
            Ok(Next::Done) => {
                p.presync = None;
                tracing::debug!(peer, "low-work branch ended below our work: nothing stored");
                if again {
                    self.request_headers(peer);
                }
            }
            Err(PresyncError::NotContinued) => {
                // Not the branch we were checking (its chain may have changed): start over.
                p.presync = None;
                return self.screen_low_work(peer, headers, again);
            }
            Err(e @ PresyncError::Invalid(_, BlockError::TimestampTooNew { .. })) => {
                p.presync = None;
                tracing::debug!(peer, error = %e, "low-work branch from the future: dropped");
            }
            Err(e) => {
                p.presync = None;
                self.misbehave(peer, limits::BAN_SCORE, &e.to_string());
            }
        }
        true
    }

    fn on_block(&mut self, peer: PeerId, block: Block) {
        let hash = block.hash();
        if !self.downloads.received(&hash, peer) {
            self.misbehave(peer, 20, "unrequested block");
            return;
        }
        let height = block.header.height;
        if let Some(p) = self.peers.get_mut(&peer) {
            p.known.insert(InvItem::Block(hash));
            p.best_height = p.best_height.max(height);
            if let Some(l) = p.listen_addr {
                self.book.mark_delivered(&l);
            }
        }
        match self.ledger.submit_block(block, Origin::Peer(peer), self.now_ms) {
            Ok((outcome, event)) => {
                match outcome {
                    BlockOutcome::Invalid(why) => self.misbehave(peer, limits::BAN_SCORE, &why),
                    BlockOutcome::Orphan => self.request_headers(peer),
                    BlockOutcome::Connected | BlockOutcome::Stored => self.note_best(peer, hash),
                }
                // Relay the new tip in this very step.
                if let Some(event) = event {
                    self.on_node_event(event);
                }
            }
            Err(e) => tracing::error!(error = %e, "storing a block failed"),
        }
        self.schedule_downloads();
    }

    /// Hands missing blocks to peers with room, least loaded first. Each peer is asked
    /// only for blocks on the way from our best chain to its best block
    /// ([`Peer::best_known`]), so a branch that only a vanished or lying peer showed us
    /// is never waited for: the other peers' chains download regardless, and the tip
    /// follows the most-work chain whose blocks actually arrive.
    fn schedule_downloads(&mut self) {
        let now = self.now_ms;
        let max = self.config.max_blocks_in_flight_per_peer;
        let window = self.config.download_window;
        let tip_work = self.ledger.tip().total_work;
        let mut by_target: BTreeMap<BlockHash, Vec<PeerId>> = BTreeMap::new();
        let mut room = 0;
        for (id, p) in &self.peers {
            if !p.ready || self.downloads.count(*id) >= max {
                continue;
            }
            if let Some((h, w)) = p.best_known {
                if w > tip_work {
                    by_target.entry(h).or_default().push(*id);
                    room += max - self.downloads.count(*id);
                }
            }
        }
        if by_target.is_empty() {
            return;
        }
        // Every block some target lacks, lowest first, with the peers that can serve it.
        let mut wanted: BTreeMap<(u64, BlockHash), Vec<PeerId>> = BTreeMap::new();
        for (target, peers) in &by_target {
            for (height, hash) in self.ledger.missing_blocks(target, window) {
                if self.downloads.is_in_flight(&hash) {
                    continue;
                }
                wanted.entry((height, hash)).or_default().extend(peers.iter().copied());
            }
        }
        let mut batches: BTreeMap<PeerId, Vec<InvItem>> = BTreeMap::new();
        for ((_, hash), peers) in wanted {
            if room == 0 {
                break;
            }
            let best = peers
                .iter()
                .filter(|id| self.downloads.count(**id) < max)
                .min_by_key(|id| (self.downloads.count(**id), **id));
            let Some(&peer) = best else { continue };
            self.downloads.request(hash, peer, now);
            room -= 1;
            batches.entry(peer).or_default().push(InvItem::Block(hash));
        }
        for (peer, items) in batches {
            for chunk in items.chunks(limits::MAX_BLOCKS_PER_GETDATA) {
                self.send(peer, Message::GetData(chunk.to_vec()));
            }
        }
    }

    // ----- relay -------------------------------------------------------------------

    fn on_node_event(&mut self, event: NodeEvent) {
        match event {
            NodeEvent::NewTip { tip, origin, .. } => {
                self.retry_waiting();
                self.update_syncing();
                if self.syncing {
                    return; // announcing every block of a long download helps nobody
                }
                self.announce(InvItem::Block(tip.hash), origin);
                self.schedule_downloads();
            }
            NodeEvent::NewTransfer { txid, origin } => self.on_admitted(txid, origin),
        }
    }

    /// `txid` entered the mempool: announces it, then admits the transfers of the same
    /// sender waiting for the next nonces, one after another, announcing each.
    fn on_admitted(&mut self, txid: Txid, origin: Origin) {
        self.announce(InvItem::Tx(txid), origin);
        let mut last = txid;
        while !self.waiting.is_empty() {
            let Some(tx) = self.ledger.transfer(&last) else { return };
            let next = tx.transfer.nonce.saturating_add(1);
            let Some(w) = self.waiting.take(&tx.transfer.sender(), next) else { return };
            let Some((txid, origin)) = self.admit_waiting(w) else { return };
            self.announce(InvItem::Tx(txid), origin);
            last = txid;
        }
    }

    /// A block moved some senders' nonces: drops waiting transfers left behind and
    /// admits those that are next now.
    fn retry_waiting(&mut self) {
        for (sender, _) in self.waiting.senders() {
            let next = match self.ledger.next_nonce(&sender) {
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!(error = %e, "reading an account failed");
                    return;
                }
            };
            self.waiting.drop_below(&sender, next);
            if let Some(w) = self.waiting.take(&sender, next) {
                if let Some((txid, origin)) = self.admit_waiting(w) {
                    self.on_admitted(txid, origin);
                }
            }
        }
    }

    /// Submits a waiting transfer (verified when it arrived) as from the peer that sent
    /// it; its txid and origin if admitted.
    fn admit_waiting(&mut self, w: waiting::Waiting) -> Option<(Txid, Origin)> {
        let txid = w.tx.txid();
        match self.ledger.submit_transfer(w.tx, Origin::Peer(w.peer), self.now_ms) {
            (TransferOutcome::Admitted, Some(NodeEvent::NewTransfer { txid, origin })) => {
                Some((txid, origin))
            }
            (TransferOutcome::Admitted | TransferOutcome::Duplicate, _) => None,
            (outcome, _) => {
                tracing::debug!(%txid, ?outcome, "waiting transfer refused");
                None
            }
        }
    }

    /// Tells every ready peer about `item`, except the one it came from and those that
    /// already know it.
    fn announce(&mut self, item: InvItem, origin: Origin) {
        let mut to = Vec::new();
        for (id, p) in self.peers.iter_mut() {
            if !p.ready || origin == Origin::Peer(*id) || p.known.contains(&item) {
                continue;
            }
            p.known.insert(item);
            to.push(*id);
        }
        for id in to {
            self.send(id, Message::Inv(vec![item]));
        }
    }

    // ----- timers ------------------------------------------------------------------

    fn on_tick(&mut self) {
        let now = self.now_ms;
        self.waiting.expire(now);
        let c = self.config.clone();
        let mut drops = Vec::new();
        let mut pings = Vec::new();
        for (id, p) in self.peers.iter_mut() {
            if !p.ready {
                if now.saturating_sub(p.connected_ms) > c.handshake_timeout_ms {
                    drops.push((*id, DisconnectReason::HandshakeTimeout));
                }
                continue;
            }
            if let Some((_, sent)) = p.ping {
                if now.saturating_sub(sent) > c.ping_timeout_ms {
                    drops.push((*id, DisconnectReason::PingTimeout));
                    continue;
                }
            } else if now.saturating_sub(p.last_ping_ms) >= c.ping_interval_ms {
                let n = self.rng.gen();
                p.ping = Some((n, now));
                p.last_ping_ms = now;
                pings.push((*id, n));
            }
            if let Some(asked) = p.headers_asked_ms {
                if now.saturating_sub(asked) > c.headers_timeout_ms {
                    drops.push((*id, DisconnectReason::NoHeaders));
                }
            }
        }
        for (id, n) in pings {
            self.send(id, Message::Ping(n));
        }
        for id in self.downloads.stalled(now, c.block_timeout_ms) {
            drops.push((id, DisconnectReason::Stalled));
        }
        for (id, reason) in drops {
            self.disconnect(id, reason);
        }
        // Forget transfer requests nobody answered, so another peer can be asked.
        let expired: Vec<(Txid, PeerId)> = self
            .tx_requests
            .iter()
            .filter(|(_, (_, t))| now.saturating_sub(*t) > c.tx_request_timeout_ms)
            .map(|(tx, (p, _))| (*tx, *p))
            .collect();
        for (tx, p) in expired {
            self.tx_requests.remove(&tx);
            if let Some(p) = self.peers.get_mut(&p) {
                p.requested_txs.remove(&tx);
            }
        }
        self.maintain_outbound();
        self.schedule_downloads();
        self.update_syncing();
        if self.syncing && now.saturating_sub(self.last_progress_ms) >= c.progress_interval_ms {
            self.last_progress_ms = now;
            let (tip, target) = self.sync_target();
            tracing::info!(
                height = tip.height,
                target = target.map_or(tip.height, |(h, _)| h),
                in_flight = self.downloads.total(),
                peers = self.ready_peers().len(),
                "syncing"
            );
        }
        self.book.expire_bans(now);
        if now.saturating_sub(self.last_save_ms) >= c.save_interval_ms && self.book.take_dirty() {
            self.last_save_ms = now;
            self.out.push(Output::Save(self.book.snapshot()));
        }
    }

    /// A final save (at shutdown).
    pub fn snapshot(&self) -> Snapshot {
        self.book.snapshot()
    }

    /// Our tip, and the height and work of the most-work block a ready peer has shown us
    /// that beats it (what we are syncing toward), if any.
    fn sync_target(&self) -> (Tip, Option<(u64, Work)>) {
        let tip = self.ledger.tip();
        let target = self
            .peers
            .values()
            .filter(|p| p.ready)
            .filter_map(|p| p.best_known)
            .filter(|(h, w)| *w > tip.total_work && self.ledger.work_of(h).is_some())
            .max_by_key(|(_, w)| *w)
            .and_then(|(h, w)| Some((self.ledger.height_of(&h)?, w)));
        (tip, target)
    }

    /// Syncing: a ready peer has shown us a block with more work than our tip, or has
    /// claimed more work in its handshake and its headers are on their way. A header-only
    /// branch that no connected peer offers does not count (nobody could deliver it).
    fn update_syncing(&mut self) {
        let (tip, target) = self.sync_target();
        let peer_ahead =
            self.peers.values().any(|p| p.ready && p.expect_more_work && p.claimed_work > tip.total_work);
        let syncing = target.is_some() || peer_ahead;
        let target_height = target.map_or(tip.height, |(h, _)| h);
        if syncing && !self.sync_logged && target_height > tip.height.saturating_add(1) {
            // Fetching the one new block a peer announced is not worth an info line; a
            // real catch-up is.
            tracing::info!(height = tip.height, target = target_height, "sync started");
            self.sync_logged = true;
        }
        if syncing != self.syncing {
            if !syncing && std::mem::take(&mut self.sync_logged) {
                tracing::info!(height = tip.height, hash = %tip.hash, "sync finished");
            }
            self.syncing = syncing;
            if !syncing {
                // Tips reached while syncing were not announced; announce where we are.
                self.announce(InvItem::Block(tip.hash), Origin::Local);
            }
        }
    }

    fn maintain_outbound(&mut self) {
        let outbound = self.peers.values().filter(|p| !p.inbound).count() + self.dialing.len();
        if outbound >= self.config.target_outbound || self.dialing.len() >= self.config.max_dialing {
            return;
        }
        let want = (self.config.target_outbound - outbound).min(self.config.max_dialing - self.dialing.len());
        let used: Vec<[u8; 4]> =
            self.peers.values().filter(|p| !p.inbound).map(|p| addrbook::group(&p.addr.ip())).collect();
        let peers = &self.peers;
        let dialing = &self.dialing;
        let selfs = &self.self_addrs;
        let blocked = &self.blocked;
        let exclude = |a: &SocketAddr| {
            dialing.contains(a)
                || selfs.contains(a)
                || blocked.contains(a)
                || peers.values().any(|p| (!p.inbound && p.addr == *a) || p.listen_addr == Some(*a))
        };
        let picks = self.book.pick_dial_candidates(want, self.now_ms, exclude, &used, &mut self.rng);
        for a in picks {
            self.dial(a);
        }
    }
}
