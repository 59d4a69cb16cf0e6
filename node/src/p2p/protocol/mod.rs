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
//! downloads ([`super::downloads`]), and misbehaviour scoring and bans. One file per
//! concern, each an `impl Protocol` block: `connections` (connections, handshake, ping,
//! timers, outbound slots), `addresses` (peer exchange), `self_addr` (our external
//! address, block-relay-only dials), `relay` (inventory, transfers, node events),
//! `blocks` (headers and blocks), `eclipse` (inbound eviction, block-relay-only links
//! and anchors, the stale-tip check), `compact` (compact block relay). This file holds the types, `step`, and
//! the primitives every concern shares: send, announce, disconnect, misbehave, ban.

mod addresses;
mod blocks;
pub mod compact;
mod connections;
pub(crate) mod disconnect;
mod eclipse;
mod relay;
mod self_addr;

use super::addrbook::{self, AddrBook, Snapshot};
use super::discovery::{self, SelfAddress};
use super::downloads::BlockDownloads;
use super::ledger::CheckedBlock;
use super::ledger::{BlockOutcome, Checked, Ledger, NodeEvent, Origin, Tip, TransferOutcome};
use super::loglimit::LogLimiter;
use super::presync::{self, Next, Presync, PresyncError};
use super::progress::{Eta, SyncProgress};
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

pub use disconnect::DisconnectReason;

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
    /// The `relay` flag of our `version`: false asks every peer not to announce
    /// transfers or addresses to us. [`Protocol::dial_block_relay`] clears it for one
    /// connection.
    pub relay: bool,
    /// `--external-addr`: the addresses we advertise, instead of one learned from peers.
    pub external_addrs: Vec<SocketAddr>,
    /// `--connect`: dial only the addresses given (`--connect`, `--peer`,
    /// `net_addPeer`), never ones learned from peers or seeds.
    pub connect_only: bool,
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
            relay: true,
            external_addrs: Vec::new(),
            connect_only: false,
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
    /// Inventory items per peer per [`INV_WINDOW_MS`] that this node acts on. Past it,
    /// until the window ends, the peer's transfer announcements are ignored (not
    /// fetched, not remembered as known to it) but not punished, as Bitcoin Core ignores
    /// a peer's announcements past `MAX_PEER_TX_ANNOUNCEMENTS`. An honest peer can go
    /// past it: `tx_submit` admits over 10,000 transfers a second on two cores
    /// (docs/PERFORMANCE.md), and a node announces each to every peer. (Until 2026-12-03
    /// going past it scored 50 points, so such a node was banned by its peers within a
    /// window.)
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
    /// A `block` a peer sent that the node had asked it for, its stateless checks
    /// already run by the driver's reader, off this thread (the TCP driver turns every
    /// such `block` into this): handled as the `block` message.
    CheckedBlock {
        peer: PeerId,
        block: Box<CheckedBlock>,
    },
    /// The node's chain or mempool changed: relay. (Events of the protocol's own
    /// submissions, whose origin is a peer, were handled in the step that caused them
    /// and are ignored here.)
    Node(NodeEvent),
    /// `--peer` / `net_addPeer`: remember and dial.
    AddPeer(SocketAddr),
    /// Addresses of resolved seed names (or the chain's fixed fallback addresses): added
    /// to the address book like gossiped ones, dialled by outbound maintenance.
    SeedAddrs(Vec<SocketAddr>),
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
    /// Send `peer` a stored block, in the form `serve` says. The protocol only checked
    /// the index ([`Ledger::has_block`]); the driver reads the stored bytes off the
    /// protocol thread, when the frames queued to that peer before this one have gone
    /// out, and sends them as they are (or the block's compact form), or `notfound` if
    /// the block is gone by then.
    ServeBlock {
        peer: PeerId,
        hash: BlockHash,
        serve: Serve,
    },
    Connect(SocketAddr),
    Disconnect(PeerId, DisconnectReason),
    /// Save the address book and bans.
    Save(Snapshot),
}

/// How [`Output::ServeBlock`] sends a stored block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Serve {
    /// A `block` message whose payload is the stored encoding as it is
    /// ([`super::wire::FrameCodec::encode_raw`]), answering `getdata`; `notfound` if
    /// the block is gone.
    Block,
    /// A `cmpctblock` answering `getdata`; `notfound` if the block is gone. `nonce`
    /// keys its short ids, unless the driver has encoded this block's compact form
    /// already: it sends every peer those same bytes (one nonce per block, as BIP152
    /// allows).
    Compact { nonce: u64 },
    /// A `cmpctblock` pushed unasked to a high-bandwidth peer: as `Compact`, but
    /// nothing is sent if the block is gone.
    PushCompact { nonce: u64 },
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

/// Where a connection is in the handshake (docs/PROTOCOL.md, "Handshake").
#[derive(Debug)]
enum Handshake {
    /// Connected at `since_ms`; its `version` has not arrived.
    AwaitingVersion { since_ms: u64 },
    /// Its `version` arrived and we answered `verack`; its `verack` has not.
    AwaitingVerack { since_ms: u64, version: Version },
    /// Done: the peer is ready.
    Ready { version: Version },
}

/// Liveness of a ready peer (docs/PROTOCOL.md, "Liveness").
#[derive(Clone, Copy, Debug)]
enum Ping {
    /// No ping out; the last one was sent (or the handshake finished) at `since_ms`.
    Idle { since_ms: u64 },
    /// Ping `nonce` went out at `sent_ms` and has no pong yet.
    Waiting { nonce: u64, sent_ms: u64 },
}

/// One connection: who it is, where its handshake and liveness are, its misbehaviour
/// score, and each concern's own state.
#[derive(Debug)]
struct Peer {
    addr: SocketAddr,
    inbound: bool,
    handshake: Handshake,
    /// Where the peer accepts connections (known after its version).
    listen_addr: Option<SocketAddr>,
    /// The height it claimed, raised by the blocks and headers it sent (for `net_peers`).
    best_height: u64,
    ping: Ping,
    rtt_ms: Option<u64>,
    score: u32,
    addrs: AddrState,
    relay: RelayState,
    blocks: BlockState,
    link: eclipse::LinkState,
    compact: compact::PeerCompact,
}

/// Peer exchange with one peer (`addresses.rs`).
#[derive(Debug)]
struct AddrState {
    sent_getaddr: bool,
    got_addr_reply: bool,
    answered_getaddr: bool,
    /// Unsolicited addresses it may still send: a bucket refilled over time.
    tokens: u64,
    refill_ms: u64,
}

/// Inventory and transfers with one peer (`relay.rs`).
#[derive(Debug)]
struct RelayState {
    /// Items it knows (announced by it or to it).
    known: BoundedSet<InvItem>,
    requested_txs: HashSet<Txid>,
    inv_window_start: u64,
    inv_in_window: u32,
}

/// Headers and blocks with one peer (`blocks.rs`).
#[derive(Debug)]
struct BlockState {
    claimed_work: Work,
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
}

impl Peer {
    fn new(addr: SocketAddr, inbound: bool, now_ms: u64) -> Peer {
        Peer {
            addr,
            inbound,
            handshake: Handshake::AwaitingVersion { since_ms: now_ms },
            listen_addr: None,
            best_height: 0,
            ping: Ping::Idle { since_ms: now_ms },
            rtt_ms: None,
            score: 0,
            addrs: AddrState {
                sent_getaddr: false,
                got_addr_reply: false,
                answered_getaddr: false,
                tokens: limits::ADDR_BUCKET,
                refill_ms: now_ms,
            },
            relay: RelayState {
                known: BoundedSet::new(limits::KNOWN_INV),
                requested_txs: HashSet::new(),
                inv_window_start: now_ms,
                inv_in_window: 0,
            },
            blocks: BlockState {
                claimed_work: Work::ZERO,
                best_known: None,
                headers_asked_ms: None,
                headers_again: false,
                expect_more_work: false,
                unconnected_headers: 0,
                presync: None,
            },
            link: eclipse::LinkState { connected_ms: now_ms, ..Default::default() },
            compact: compact::PeerCompact::default(),
        }
    }

    fn is_ready(&self) -> bool {
        matches!(self.handshake, Handshake::Ready { .. })
    }

    /// Its `version`, once received.
    fn version(&self) -> Option<&Version> {
        match &self.handshake {
            Handshake::AwaitingVersion { .. } => None,
            Handshake::AwaitingVerack { version, .. } | Handshake::Ready { version } => Some(version),
        }
    }

    fn nonce(&self) -> Option<u64> {
        self.version().map(|v| v.nonce)
    }

    /// It wants transfers and addresses announced to it: the `relay` flag of its
    /// `version`, and we did not make the link block-relay-only ourselves.
    fn wants_relay(&self) -> bool {
        !self.link.block_relay_only && self.version().is_some_and(|v| v.relay)
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
    /// Our external address, configured or learned from peers' `version`.
    self_address: SelfAddress,
    downloads: BlockDownloads,
    tx_requests: BTreeMap<Txid, (PeerId, u64)>,
    recent_rejects: BoundedSet<Txid>,
    /// Transfers from peers waiting for their predecessor (see [`waiting`]).
    waiting: WaitingTransfers,
    out: Vec<Output>,
    /// Transfers announced and not yet sent, per peer, in order: one `inv` per peer
    /// carries them all when the outputs are drained ([`Protocol::drain`]).
    held_invs: BTreeMap<PeerId, Vec<Txid>>,
    now_ms: u64,
    last_save_ms: u64,
    progress: SyncProgress,
    /// Peer drops and bans logged per reason and minute (see [`LogLimiter`]).
    log_limit: LogLimiter,
    syncing: bool,
    /// The current sync was logged as started (it was more than one block behind).
    sync_logged: bool,
    eclipse: eclipse::EclipseState,
    /// Compact block relay (`compact.rs`).
    compact: compact::CompactRelay,
}

impl Protocol {
    /// A protocol instance for the node behind `ledger`. `seed` drives every random
    /// choice (nonces, peer selection), so the same inputs always give the same outputs.
    pub fn new(ledger: Arc<dyn Ledger>, config: Config, book: Snapshot, seed: u64, now_ms: u64) -> Protocol {
        let mut rng = StdRng::seed_from_u64(seed);
        let nonce = rng.gen();
        let book = AddrBook::from_snapshot_or_key(book, now_ms, rng.gen());
        let self_address = SelfAddress::new(config.external_addrs.clone());
        Protocol {
            ledger,
            config,
            rng,
            nonce,
            peers: BTreeMap::new(),
            book,
            dialing: BTreeSet::new(),
            self_addrs: BTreeSet::new(),
            blocked: BTreeSet::new(),
            self_address,
            downloads: BlockDownloads::default(),
            tx_requests: BTreeMap::new(),
            recent_rejects: BoundedSet::new(limits::RECENT_REJECTS),
            waiting: WaitingTransfers::default(),
            out: Vec::new(),
            held_invs: BTreeMap::new(),
            now_ms,
            // Zero: the first change is saved at once, later ones at most every interval.
            last_save_ms: 0,
            progress: SyncProgress::default(),
            log_limit: LogLimiter::default(),
            syncing: false,
            sync_logged: false,
            eclipse: eclipse::EclipseState::default(),
            compact: compact::CompactRelay::default(),
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
            .filter(|p| p.is_ready())
            .map(|p| cairn_api::PeerInfo {
                addr: p.listen_addr.unwrap_or(p.addr).to_string(),
                inbound: p.inbound,
                height: p.best_height,
                ping_ms: p.rtt_ms,
                user_agent: p.version().map(|v| v.user_agent.clone()).unwrap_or_default(),
            })
            .collect()
    }

    /// For the metrics: peers we await headers from, blocks requested and not yet
    /// received, peers' transfers waiting for a predecessor.
    pub fn in_flight(&self) -> (usize, usize, usize) {
        let headers = self.peers.values().filter(|p| p.blocks.headers_asked_ms.is_some()).count();
        (headers, self.downloads.total(), self.waiting.len())
    }

    /// Ids of peers that finished the handshake.
    pub fn ready_peers(&self) -> Vec<PeerId> {
        self.peers.iter().filter(|(_, p)| p.is_ready()).map(|(id, _)| *id).collect()
    }

    pub fn drain(&mut self) -> Vec<Output> {
        self.flush_invs();
        std::mem::take(&mut self.out)
    }

    /// [`Protocol::drain`] without the transfer announcements, which wait for the next
    /// `drain`. The P2P thread takes outputs this way after each input of a batch and
    /// drains once the batch is done, so that the transfers admitted from a batch of
    /// inputs reach each peer as one `inv` instead of one frame per transfer. Nothing
    /// waits for a timer: a lone transfer still goes out as soon as its batch ends.
    pub fn drain_holding_invs(&mut self) -> Vec<Output> {
        std::mem::take(&mut self.out)
    }

    /// The held transfer announcements, as one `inv` per peer (at most [`wire::MAX_INV`]
    /// items a frame), leaving out the transfers that left the mempool in the
    /// meantime (a block took them, or they were evicted) and the peers that are gone.
    fn flush_invs(&mut self) {
        let mut held = std::mem::take(&mut self.held_invs);
        held.retain(|peer, _| self.peers.contains_key(peer));
        if held.is_empty() {
            return;
        }
        // Each transfer is looked up once, however many peers are to hear of it.
        let mut asked: Vec<Txid> = held.values().flatten().copied().collect();
        asked.sort_unstable();
        asked.dedup();
        let pending = self.ledger.pending_among(&asked);
        for (peer, txids) in held {
            let items: Vec<InvItem> =
                txids.into_iter().filter(|t| pending.contains(t)).map(InvItem::Tx).collect();
            for chunk in items.chunks(wire::MAX_INV) {
                self.out.push(Output::Send(peer, Message::Inv(chunk.to_vec())));
            }
        }
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
            Input::CheckedBlock { peer, block } => self.on_checked_block(peer, block),
            Input::BadFrame { peer, error: WireError::UnsupportedVersion(v) } => {
                let why = WireError::UnsupportedVersion(v).to_string();
                self.refuse_other_network(peer, why);
            }
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
                    NodeEvent::BlockPrechecked { .. } => false,
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
            Input::SeedAddrs(addrs) => self.add_seed_addrs(addrs),
            Input::BlockPeer(addr) => self.block_peer(addr),
            Input::UnblockPeer(addr) => {
                if self.blocked.remove(&addr) {
                    tracing::info!(%addr, "peer unblocked");
                }
            }
            Input::Tick => {
                self.on_tick();
                self.compact_on_tick();
            }
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

    fn on_message(&mut self, peer: PeerId, msg: Message) {
        let Some(p) = self.peers.get(&peer) else { return };
        if !p.is_ready() {
            match msg {
                Message::Version(_) if p.version().is_some() => {
                    self.disconnect(peer, DisconnectReason::Protocol("second version".into()))
                }
                Message::Version(v) => self.on_version(peer, v),
                Message::Verack => {
                    let Some(p) = self.peers.get_mut(&peer) else { return };
                    let Handshake::AwaitingVerack { version, .. } = &p.handshake else {
                        self.disconnect(peer, DisconnectReason::Protocol("verack out of order".into()));
                        return;
                    };
                    p.handshake = Handshake::Ready { version: version.clone() };
                    self.on_ready(peer);
                    self.compact_on_ready(peer);
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
            Message::SendCmpct(s) => self.on_sendcmpct(peer, s),
            Message::CmpctBlock(c) => self.on_cmpctblock(peer, *c),
            Message::GetBlockTxn(g) => self.on_getblocktxn(peer, g),
            Message::BlockTxn(b) => self.on_blocktxn(peer, b),
        }
    }

    /// A final save (at shutdown).
    pub fn snapshot(&self) -> Snapshot {
        self.book.snapshot()
    }

    // ----- shared primitives: every concern sends, announces, drops and scores -----

    /// Drops a peer we decided to drop.
    fn disconnect(&mut self, peer: PeerId, reason: DisconnectReason) {
        if self.peers.contains_key(&peer) {
            self.remove_peer(peer, &reason);
            self.out.push(Output::Disconnect(peer, reason));
        }
    }

    /// Adds misbehaviour points; at [`limits::BAN_SCORE`] the peer is banned and dropped.
    fn misbehave(&mut self, peer: PeerId, points: u32, what: &str) {
        let Some(p) = self.peers.get_mut(&peer) else { return };
        crate::metrics::p2p_misbehaved(what);
        p.score = p.score.saturating_add(points);
        tracing::debug!(peer, score = p.score, what, "peer misbehaved");
        if p.score >= limits::BAN_SCORE {
            self.ban_peer(peer, what);
            self.disconnect(peer, DisconnectReason::Misbehaviour(what.to_string()));
        }
    }

    fn ban_peer(&mut self, peer: PeerId, why: &str) {
        let Some(p) = self.peers.get(&peer) else { return };
        crate::metrics::get().p2p_bans.inc();
        let until = self.now_ms.saturating_add(self.config.ban_duration_ms);
        let (addr, listen) = (p.addr, p.listen_addr);
        if self.log_limit.allow(LogLimiter::kind("ban", why), self.now_ms) {
            tracing::warn!(peer, %addr, why, "banning peer");
        } else {
            tracing::debug!(peer, %addr, why, "banning peer");
        }
        self.book.ban(&addr, until, why);
        if let Some(l) = listen {
            self.book.ban(&l, until, why);
        }
    }

    fn send(&mut self, peer: PeerId, msg: Message) {
        self.out.push(Output::Send(peer, msg));
    }

    fn mark_known(&mut self, peer: PeerId, item: InvItem) {
        if let Some(p) = self.peers.get_mut(&peer) {
            p.relay.known.insert(item);
        }
    }

    /// Tells every ready peer about `item`, except the one it came from and those that
    /// already know it (a block goes compact to the peers that asked for that).
    fn announce(&mut self, item: InvItem, origin: Origin) {
        if let InvItem::Block(hash) = item {
            // High-bandwidth peers get the block itself, compact (`compact.rs`).
            self.push_compact(hash, origin);
        }
        let mut to = Vec::new();
        for (id, p) in self.peers.iter_mut() {
            if !p.is_ready() || origin == Origin::Peer(*id) || p.relay.known.contains(&item) {
                continue;
            }
            if matches!(item, InvItem::Tx(_)) && !p.wants_relay() {
                continue; // a block-relay-only link
            }
            p.relay.known.insert(item);
            to.push(*id);
        }
        for id in to {
            match item {
                // Held until the outputs are drained, to go out with the others.
                InvItem::Tx(txid) => self.held_invs.entry(id).or_default().push(txid),
                _ => self.send(id, Message::Inv(vec![item])),
            }
        }
    }
}
