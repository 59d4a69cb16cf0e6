//! The discrete-event engine: real [`Protocol`]s over real [`Node`]s (each with its own
//! in-memory chain and mempool), joined by simulated links.
//!
//! Nothing is stepped on a fixed grid: the queue holds timed events (a message arriving,
//! a connection opening or closing, a node's clock tick, a node leaving or joining), and
//! the engine jumps from one to the next. Each node's protocol gets a tick every
//! [`Model::tick_ms`] for its timers, at its own phase. Time is in microseconds here and
//! handed to the protocol in milliseconds (the only clock it sees).
//!
//! A message takes: its wait in the sender's upload queue, then its size (payload plus
//! frame header) over the sender's upload bandwidth, then the connection's latency.
//! Messages are handed over as decoded [`Message`]s (the codec is tested elsewhere);
//! their sizes are their real encodings. A large message (a block, a compact block,
//! `blocktxn`) that several nodes send with the same content is held once while in
//! flight, and each receiver gets its own copy on arrival; what the nodes keep of a
//! block is shared too ([`crate::share`]). Everything random comes from the seed and
//! every map that is iterated is ordered, so one seed gives one run: the
//! [`Sim::log_hash`] of two runs of a seed are equal, byte for byte.

use crate::model::{exponential, Model};
use crate::share::{BlockShare, SharedStore, StoreShare, Verified};
use cairn_core::assemble::{assemble_block, grind};
use cairn_core::genesis::{dev_keys, Genesis};
use cairn_core::transaction::{address_of, public_key_of};
use cairn_core::{Address, Amount, BlockHash, SignedTransfer, Target, Transfer, Txid};
use cairn_node::chain::{Acceptance, Chain, TipInfo};
use cairn_node::mempool::Mempool;
use cairn_node::node::{Node, NodeEvent, Origin};
use cairn_node::p2p::addrbook::Snapshot;
use cairn_node::p2p::protocol::compact::compact_of;
use cairn_node::p2p::protocol::{Config, DisconnectReason, Input, Output, Protocol, Serve};
use cairn_node::p2p::wire::{command, InvItem, Message, HEADER_BYTES};
use cairn_node::p2p::PeerId;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sha2::{Digest, Sha256};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Weak};
use std::time::Instant;
use tokio::sync::broadcast;

pub const MS: u64 = 1_000;
pub const S: u64 = 1_000_000;

/// The genesis of a simulated chain: the dev genesis with its clock in 2100 (were
/// anything to read the real clock instead of the simulated one, every block would be
/// in its far future and fail), and a target every grind meets in a few tries.
pub fn sim_genesis(block_interval_ms: u64) -> Genesis {
    let mut g = Genesis::dev();
    g.name = "cairn-sim".into();
    g.params.timestamp_ms = 4_102_444_800_000;
    let easy: Target =
        "7fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff".parse().expect("a valid target");
    g.params.initial_target = easy;
    g.params.pow_limit = easy;
    g.params.target_block_time_ms = block_interval_ms.max(1_000);
    // Blocks come from the simulation's Poisson process, not from grinding: a half-life
    // of decades keeps the target where it is, so every block is found in a few tries.
    g.params.half_life_ms = 1_000_000_000_000;
    g
}

/// The protocol as a real node runs it (the defaults), but never saving its book.
pub fn sim_config() -> Config {
    Config {
        listen_port: 7333,
        user_agent: "cairn-sim".into(),
        save_interval_ms: u64::MAX,
        ..Config::default()
    }
}

pub struct SimNode {
    pub node: Arc<Node>,
    pub proto: Protocol,
    events: broadcast::Receiver<NodeEvent>,
    pub addr: SocketAddr,
    pub up: bool,
    /// Accepts no inbound connection (NAT).
    pub unreachable: bool,
    /// Partition side: links only join nodes of one side.
    pub side: u8,
    /// Bumped when the node leaves or joins, so its old ticks and inputs are dropped.
    epoch: u32,
    next_peer: PeerId,
    pub miner: Address,
    /// Upload bandwidth in bits per microsecond (= Mbit/s).
    pub upload_mbit: f64,
    upload_free_us: u64,
    conns: Vec<usize>,
}

struct Conn {
    ends: [(usize, PeerId); 2],
    open: bool,
    latency_us: u64,
    clear_at: [u64; 2],
}

enum Payload {
    Msg(Message),
    /// A large message, one copy for every delivery of it in flight.
    Shared(Arc<Message>),
}

/// Messages of at least this many transactions (or short ids) are shared in flight.
const SHARE_MESSAGE_TXS: usize = 64;

/// A large message in flight: its command, its block and its nonce or length.
type InFlightKey = (u8, BlockHash, u64);

enum Ev {
    Tick { node: usize, epoch: u32 },
    Input { node: usize, epoch: u32, input: Input },
    Deliver { conn: usize, dir: usize, payload: Payload },
    Leave(usize),
    Join(usize),
}

struct Queued {
    at: u64,
    seq: u64,
    ev: Ev,
}

impl PartialEq for Queued {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for Queued {}
impl PartialOrd for Queued {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Queued {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(o.at, o.seq))
    }
}

/// When each node first had a block (connected it to its best chain) or a transfer
/// (admitted it to its mempool).
pub struct Track {
    pub since_us: u64,
    /// Per node, microseconds after `since_us`; `None` not yet.
    pub at: Vec<Option<u64>>,
}

/// Count and wall time of one kind of event: the simulator's own profile.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct Cost {
    pub count: u64,
    pub wall_ns: u64,
}

/// A block the simulation mined.
#[derive(Clone, Debug)]
pub struct Mined {
    pub hash: BlockHash,
    pub miner: usize,
    pub at_us: u64,
    pub height: u64,
    pub bytes: usize,
}

pub struct Sim {
    pub now_us: u64,
    seq: u64,
    pub rng: StdRng,
    pub model: Model,
    pub genesis: Genesis,
    pub nodes: Vec<SimNode>,
    conns: Vec<Conn>,
    by_end: HashMap<(usize, PeerId), usize>,
    by_addr: HashMap<SocketAddr, usize>,
    queue: BinaryHeap<Reverse<Queued>>,
    log: Sha256,
    pub profile: BTreeMap<&'static str, Cost>,
    pub blocks: HashMap<BlockHash, Track>,
    pub txs: HashMap<Txid, Track>,
    /// Transfers whose signatures the simulation has seen checked (by the miner that
    /// put them in a block): every node's signature cache vouches for them.
    verified: Verified,
    store_share: Arc<StoreShare>,
    block_share: BlockShare,
    /// Large messages in flight, by command, block and a discriminator (nonce or
    /// length), with their size on the wire.
    in_flight: HashMap<InFlightKey, Vec<(Weak<Message>, usize)>>,
    signed: HashMap<(usize, u64), SignedTransfer>,
    pub mined: Vec<Mined>,
    pub delivered_bytes: u64,
    /// Share what nodes hold alike ([`crate::share`]); off, every node holds its own
    /// copy of every block (to measure what sharing saves: the runs are the same).
    pub share: bool,
    /// The compact block node `i` last served of a block with a nonce ([`Sim::serve_block`]).
    last_compact: Option<((usize, BlockHash, u64), Message)>,
    /// Events handled so far.
    pub events: u64,
    /// A progress line on stderr every this many simulated microseconds (0: none):
    /// simulated time, events, wall time, resident memory ([`Sim::progress_line`]).
    pub progress_every_us: u64,
    next_progress_us: u64,
    started_us: u64,
    started: Instant,
    /// `getblocktxn` a node sent and has had no `blocktxn` for yet, by node and peer:
    /// the transfers asked for. Each is a partial block the node's protocol holds
    /// (`compact.rs`) until they arrive, so this counts them from outside, for the
    /// progress line (an upper bound: a partial given up after the block timeout
    /// still counts until the connection closes).
    open_partials: HashMap<(usize, PeerId), usize>,
    /// The transfers they await now, and the most of either at once.
    partial_awaited: usize,
    pub max_partials: usize,
    pub max_partial_awaited: usize,
}

impl Sim {
    pub fn new(seed: u64, model: Model, block_interval_ms: u64) -> Sim {
        let genesis = sim_genesis(block_interval_ms);
        let genesis_ms = genesis.params.timestamp_ms;
        Sim {
            // A day after genesis: blocks' timestamps are all in its past.
            now_us: (genesis_ms + 24 * 3600 * 1000) * MS,
            seq: 0,
            rng: StdRng::seed_from_u64(seed),
            model,
            genesis,
            nodes: Vec::new(),
            conns: Vec::new(),
            by_end: HashMap::new(),
            by_addr: HashMap::new(),
            queue: BinaryHeap::new(),
            log: Sha256::new(),
            profile: BTreeMap::new(),
            blocks: HashMap::new(),
            txs: HashMap::new(),
            verified: Verified::default(),
            store_share: Arc::new(StoreShare::default()),
            block_share: BlockShare::default(),
            in_flight: HashMap::new(),
            signed: HashMap::new(),
            mined: Vec::new(),
            delivered_bytes: 0,
            share: true,
            last_compact: None,
            events: 0,
            progress_every_us: 0,
            next_progress_us: 0,
            started_us: (genesis_ms + 24 * 3600 * 1000) * MS,
            started: Instant::now(),
            open_partials: HashMap::new(),
            partial_awaited: 0,
            max_partials: 0,
            max_partial_awaited: 0,
        }
    }

    pub fn now_ms(&self) -> u64 {
        self.now_us / MS
    }

    /// Node `i`'s address: spread over many /16 groups (the protocol spreads its
    /// outbound connections over groups), none of them private.
    pub fn addr_of(i: usize) -> SocketAddr {
        let ip = [20 + (i % 80) as u8, 1 + ((i / 80) % 250) as u8, (i / 20_000) as u8, 1];
        SocketAddr::new(ip.into(), 7333)
    }

    /// The SHA-256 of the event log so far: every delivery, connection, close, join,
    /// leave and mined block, with its time.
    pub fn log_hash(&self) -> String {
        let h = self.log.clone().finalize();
        h.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn log(&mut self, kind: u8, at: u64, a: u64, b: u64) {
        self.log.update([kind]);
        self.log.update(at.to_le_bytes());
        self.log.update(a.to_le_bytes());
        self.log.update(b.to_le_bytes());
    }

    /// A node with a fresh in-memory chain, which shares with the other simulated
    /// nodes what they hold alike (see [`crate::share`]).
    fn fresh_node(&self) -> (Arc<Node>, broadcast::Receiver<NodeEvent>) {
        let mut chain = if self.share {
            let store = SharedStore::new(self.store_share.clone());
            Chain::open_with_store(Box::new(store), &self.genesis).expect("a fresh in-memory chain opens")
        } else {
            Chain::open_in_memory(&self.genesis)
        };
        // Signatures a miner checked are trusted by every node either way (see
        // docs/SCALE.md, "Signatures").
        let verified = self.verified.clone();
        chain.share_verified(Arc::new(move |t: &Txid| verified.contains(t)));
        let node = Node::new(chain, Mempool::new(1 << 20), self.genesis.clone());
        if self.share {
            let blocks = self.block_share.clone();
            node.share_blocks(Arc::new(move |b| blocks.keep(b)));
        }
        let events = node.subscribe();
        (node, events)
    }

    /// Adds `n` nodes, each knowing a few reachable earlier ones (the seeds). The
    /// first `model.miner_shares.len()` nodes are the miners, all reachable.
    pub fn add_nodes(&mut self, n: usize) {
        for _ in 0..n {
            let i = self.nodes.len();
            let unreachable =
                i >= self.model.miner_shares.len() && self.rng.gen_bool(self.model.unreachable_share);
            let upload_mbit = self.model.upload_mbit.sample(&mut self.rng).max(0.1);
            let (node, events) = self.fresh_node();
            let seed = self.rng.gen();
            let proto = Protocol::new(node.clone(), sim_config(), Snapshot::default(), seed, self.now_ms());
            let mut key = [0u8; 20];
            key[..8].copy_from_slice(&(i as u64 + 1).to_le_bytes());
            let addr = Self::addr_of(i);
            self.by_addr.insert(addr, i);
            self.nodes.push(SimNode {
                node,
                proto,
                events,
                addr,
                up: true,
                unreachable,
                side: 0,
                epoch: 0,
                next_peer: 1,
                miner: Address(key),
                upload_mbit,
                upload_free_us: 0,
                conns: Vec::new(),
            });
            self.start(i);
            if let Some(c) = self.model.churn {
                // Miners stay: churn is of the relaying nodes.
                if i >= self.model.miner_shares.len() {
                    let at = self.now_us + (exponential(&mut self.rng, c.mean_session_s) * S as f64) as u64;
                    self.push(at, Ev::Leave(i));
                }
            }
        }
    }

    /// Gives node `i` its seeds and its first tick.
    fn start(&mut self, i: usize) {
        let reachable: Vec<usize> =
            (0..self.nodes.len()).filter(|&j| j != i && !self.nodes[j].unreachable).collect();
        if !reachable.is_empty() {
            for _ in 0..self.model.seeds_per_node {
                let j = reachable[self.rng.gen_range(0..reachable.len())];
                let now = self.now_ms();
                self.nodes[i].proto.step(now, Input::AddPeer(Self::addr_of(j)));
            }
        }
        let phase = self.rng.gen_range(0..self.model.tick_ms * MS);
        let epoch = self.nodes[i].epoch;
        self.push(self.now_us + phase, Ev::Tick { node: i, epoch });
        self.flush(i);
    }

    fn push(&mut self, at: u64, ev: Ev) {
        self.seq += 1;
        self.queue.push(Reverse(Queued { at, seq: self.seq, ev }));
    }

    /// Runs every event up to `until_us`; the clock then reads `until_us`.
    pub fn run_until(&mut self, until_us: u64) {
        while let Some(Reverse(q)) = self.queue.peek() {
            if q.at > until_us {
                break;
            }
            let Some(Reverse(q)) = self.queue.pop() else { break };
            self.now_us = q.at;
            let started = Instant::now();
            let kind = self.handle(q.ev);
            let cost = self.profile.entry(kind).or_default();
            cost.count += 1;
            cost.wall_ns += started.elapsed().as_nanos() as u64;
            self.events += 1;
            if self.progress_every_us > 0 && self.now_us >= self.next_progress_us {
                eprintln!("{}", self.progress_line());
                self.next_progress_us = self.now_us + self.progress_every_us;
            }
        }
        self.now_us = self.now_us.max(until_us);
    }

    /// Where the run is: simulated seconds since it started, events handled and
    /// queued, wall time, the process's resident memory (now and at its peak), and the
    /// partial blocks the nodes hold (now and at most, with their size).
    pub fn progress_line(&self) -> String {
        let (rss, hwm) = rss_mb();
        format!(
            "[sim] {:.1} s simulated, {} events handled, {} queued, {:.1} s wall, {:.0} MB resident ({:.0} MB peak), \
             {} partial blocks awaiting {} transfers (at most {} awaiting {})",
            (self.now_us - self.started_us) as f64 / S as f64,
            self.events,
            self.queue.len(),
            self.started.elapsed().as_secs_f64(),
            rss,
            hwm,
            self.open_partials.len(),
            self.partial_awaited,
            self.max_partials,
            self.max_partial_awaited,
        )
    }

    fn partial_open(&mut self, i: usize, peer: PeerId, awaited: usize) {
        if let Some(old) = self.open_partials.insert((i, peer), awaited) {
            self.partial_awaited -= old;
        }
        self.partial_awaited += awaited;
        self.max_partials = self.max_partials.max(self.open_partials.len());
        self.max_partial_awaited = self.max_partial_awaited.max(self.partial_awaited);
    }

    fn partial_done(&mut self, i: usize, peer: PeerId) {
        if let Some(awaited) = self.open_partials.remove(&(i, peer)) {
            self.partial_awaited -= awaited;
        }
    }

    pub fn run_for(&mut self, us: u64) {
        self.run_until(self.now_us + us);
    }

    fn handle(&mut self, ev: Ev) -> &'static str {
        match ev {
            Ev::Tick { node, epoch } => {
                if self.nodes[node].epoch != epoch {
                    return "tick";
                }
                self.input(node, Input::Tick);
                let next = self.now_us + self.model.tick_ms * MS;
                self.push(next, Ev::Tick { node, epoch });
                "tick"
            }
            Ev::Input { node, epoch, input } => {
                if self.nodes[node].epoch != epoch {
                    return "connection";
                }
                self.input(node, input);
                "connection"
            }
            Ev::Deliver { conn, dir, payload } => {
                if !self.conns[conn].open {
                    return "dropped";
                }
                let (to, peer) = self.conns[conn].ends[1 - dir];
                let msg = match payload {
                    Payload::Msg(m) => m,
                    Payload::Shared(m) => Arc::unwrap_or_clone(m),
                };
                if let Message::BlockTxn(_) = msg {
                    self.partial_done(to, peer);
                }
                let name = msg.name();
                self.input(to, Input::Received { peer, msg });
                name
            }
            Ev::Leave(i) => {
                self.leave(i);
                "churn"
            }
            Ev::Join(i) => {
                self.join(i);
                "churn"
            }
        }
    }

    fn input(&mut self, i: usize, input: Input) {
        if !self.nodes[i].up {
            return;
        }
        let now = self.now_ms();
        self.nodes[i].proto.step(now, input);
        self.flush(i);
    }

    /// Feeds node events back in, records what is tracked, and carries out outputs.
    fn flush(&mut self, i: usize) {
        loop {
            let outs = self.nodes[i].proto.drain();
            let mut events = Vec::new();
            while let Ok(ev) = self.nodes[i].events.try_recv() {
                events.push(ev);
            }
            if outs.is_empty() && events.is_empty() {
                return;
            }
            for out in outs {
                self.output(i, out);
            }
            for ev in events {
                self.observe(i, &ev);
                let now = self.now_ms();
                self.nodes[i].proto.step(now, Input::Node(ev));
            }
        }
    }

    fn observe(&mut self, i: usize, ev: &NodeEvent) {
        let now = self.now_us;
        match ev {
            NodeEvent::NewTip { connected, .. } => {
                for h in connected {
                    if let Some(t) = self.blocks.get_mut(&h.hash()) {
                        t.at[i].get_or_insert(now - t.since_us);
                    }
                }
            }
            NodeEvent::NewTransfer { txid, .. } => {
                if let Some(t) = self.txs.get_mut(txid) {
                    t.at[i].get_or_insert(now - t.since_us);
                }
            }
            NodeEvent::BlockPrechecked { .. } => {}
        }
    }

    fn output(&mut self, i: usize, out: Output) {
        match out {
            Output::Send(peer, msg) => {
                if let Message::GetBlockTxn(g) = &msg {
                    self.partial_open(i, peer, g.indexes.len());
                }
                let (payload, bytes) = self.payload(msg);
                self.send(i, peer, payload, bytes);
            }
            Output::ServeBlock { peer, hash, serve } => self.serve_block(i, peer, hash, serve),
            Output::Connect(addr) => self.connect(i, addr),
            Output::Disconnect(peer, _) => {
                if let Some(&c) = self.by_end.get(&(i, peer)) {
                    self.close(c, Some((i, peer)));
                }
            }
            Output::Save(_) => {}
        }
    }

    /// A message to send and its size on the wire. A large one (a block, a compact
    /// block, `blocktxn`) equal to one already in flight shares that one's copy.
    fn payload(&mut self, msg: Message) -> (Payload, usize) {
        let key = match &msg {
            Message::Block(b) if b.transactions.len() >= SHARE_MESSAGE_TXS => {
                Some((command::BLOCK, b.hash(), b.transactions.len() as u64))
            }
            Message::CmpctBlock(c) if c.short_ids.len() >= SHARE_MESSAGE_TXS => {
                Some((command::CMPCTBLOCK, c.header.hash(), c.nonce))
            }
            Message::BlockTxn(b) if b.transfers.len() >= SHARE_MESSAGE_TXS => {
                Some((command::BLOCKTXN, b.block_hash, b.transfers.len() as u64))
            }
            _ => None,
        };
        let Some(key) = key.filter(|_| self.share) else {
            let bytes = HEADER_BYTES + msg.encode_payload().len();
            return (Payload::Msg(msg), bytes);
        };
        let list = self.in_flight.entry(key).or_default();
        list.retain(|(w, _)| w.strong_count() > 0);
        if let Some((m, bytes)) =
            list.iter().find_map(|(w, n)| w.upgrade().filter(|m| **m == msg).map(|m| (m, *n)))
        {
            return (Payload::Shared(m), bytes);
        }
        let bytes = HEADER_BYTES + msg.encode_payload().len();
        let m = Arc::new(msg);
        list.push((Arc::downgrade(&m), bytes));
        (Payload::Shared(m), bytes)
    }

    /// What the TCP driver's writer does with [`Output::ServeBlock`]: the stored bytes
    /// as they are, or the block's compact form, or `notfound` for a request.
    fn serve_block(&mut self, i: usize, peer: PeerId, hash: BlockHash, serve: Serve) {
        let msg = match serve {
            Serve::Block => {
                let stored =
                    self.nodes[i].node.chain().block_bytes(&hash).expect("the in-memory store reads");
                match stored {
                    Some(payload) => {
                        // The stored bytes, decoded here (once per distinct block in
                        // flight); its size on the wire is that of the bytes.
                        let msg = match Message::decode_payload(command::BLOCK, &payload) {
                            Ok(m) => m,
                            // A stored block that does not decode is a bug in the node.
                            Err(e) => panic!("a stored block does not decode: {e}"),
                        };
                        let (shared, _) = self.payload(msg);
                        self.send(i, peer, shared, HEADER_BYTES + payload.len());
                        return;
                    }
                    None => Message::NotFound(vec![InvItem::Block(hash)]),
                }
            }
            Serve::Compact { nonce } | Serve::PushCompact { nonce } => {
                // A node pushes a block to its high-bandwidth peers with one nonce: the
                // last compact block built is kept for the next of them.
                let cached = self.last_compact.as_ref().filter(|(key, _)| *key == (i, hash, nonce));
                if let Some((_, m)) = cached {
                    m.clone()
                } else {
                    let stored = self.nodes[i].node.chain().block(&hash).expect("the in-memory store reads");
                    match stored {
                        Some(b) => {
                            let m = Message::CmpctBlock(Box::new(compact_of(&b, nonce)));
                            self.last_compact = Some(((i, hash, nonce), m.clone()));
                            m
                        }
                        None if matches!(serve, Serve::PushCompact { .. }) => return,
                        None => Message::NotFound(vec![InvItem::CmpctBlock(hash)]),
                    }
                }
            }
        };
        let (payload, bytes) = self.payload(msg);
        self.send(i, peer, payload, bytes);
    }

    fn link_latency_us(&mut self) -> u64 {
        ((self.model.latency_ms.sample(&mut self.rng) * MS as f64) as u64).max(MS)
    }

    fn can_talk(&self, a: usize, b: usize) -> bool {
        self.nodes[a].up && self.nodes[b].up && self.nodes[a].side == self.nodes[b].side
    }

    fn connect(&mut self, i: usize, addr: SocketAddr) {
        let lat = self.link_latency_us();
        let epoch = self.nodes[i].epoch;
        match self.by_addr.get(&addr).copied() {
            Some(j) if j != i && self.can_talk(i, j) && !self.nodes[j].unreachable => {
                let (pi, pj) = (self.next_peer(i), self.next_peer(j));
                let c = self.conns.len();
                self.conns.push(Conn {
                    ends: [(i, pi), (j, pj)],
                    open: true,
                    latency_us: lat,
                    clear_at: [0, 0],
                });
                self.by_end.insert((i, pi), c);
                self.by_end.insert((j, pj), c);
                self.nodes[i].conns.push(c);
                self.nodes[j].conns.push(c);
                self.log(1, self.now_us, i as u64, j as u64);
                // The dialler's SYN reaches the listener after one latency; its SYN-ACK
                // comes back after another.
                let from = SocketAddr::new(self.nodes[i].addr.ip(), 40_000 + (c % 20_000) as u16);
                let ej = self.nodes[j].epoch;
                self.push(
                    self.now_us + lat,
                    Ev::Input {
                        node: j,
                        epoch: ej,
                        input: Input::Connected { peer: pj, addr: from, inbound: true },
                    },
                );
                self.push(
                    self.now_us + 2 * lat,
                    Ev::Input { node: i, epoch, input: Input::Connected { peer: pi, addr, inbound: false } },
                );
            }
            Some(j) if j != i && self.can_talk(i, j) => {
                // Behind NAT: the SYN is dropped, the dial times out (net.rs: 5 s).
                self.push(
                    self.now_us + 5 * S,
                    Ev::Input { node: i, epoch, input: Input::ConnectFailed { addr } },
                );
            }
            _ => {
                // Refused (a node that is down answers with a reset) or cut off by a
                // partition (nothing answers): both after a round trip here.
                self.push(
                    self.now_us + 2 * lat,
                    Ev::Input { node: i, epoch, input: Input::ConnectFailed { addr } },
                );
            }
        }
    }

    fn next_peer(&mut self, i: usize) -> PeerId {
        let p = self.nodes[i].next_peer;
        self.nodes[i].next_peer += 1;
        p
    }

    /// Closes a connection; the ends other than `closer` hear of it after a latency.
    fn close(&mut self, c: usize, closer: Option<(usize, PeerId)>) {
        if !self.conns[c].open {
            return;
        }
        self.conns[c].open = false;
        let lat = self.conns[c].latency_us;
        self.log(2, self.now_us, c as u64, 0);
        for (n, p) in self.conns[c].ends {
            self.by_end.remove(&(n, p));
            self.partial_done(n, p);
            self.nodes[n].conns.retain(|&x| x != c);
            if Some((n, p)) != closer {
                let epoch = self.nodes[n].epoch;
                let input = Input::Disconnected { peer: p, reason: DisconnectReason::Closed };
                self.push(self.now_us + lat, Ev::Input { node: n, epoch, input });
            }
        }
    }

    fn send(&mut self, i: usize, peer: PeerId, payload: Payload, bytes: usize) {
        let Some(&c) = self.by_end.get(&(i, peer)) else { return };
        let dir = if self.conns[c].ends[0].0 == i { 0 } else { 1 };
        let other = self.conns[c].ends[1 - dir].0;
        if !self.can_talk(i, other) {
            // A cut link: TCP gives up and both ends see it close.
            self.close(c, None);
            return;
        }
        let node = &mut self.nodes[i];
        let start = self.now_us.max(node.upload_free_us);
        let wire_us = ((bytes as f64 * 8.0) / node.upload_mbit) as u64;
        node.upload_free_us = start + wire_us;
        let at = (start + wire_us + self.conns[c].latency_us).max(self.conns[c].clear_at[dir]);
        self.conns[c].clear_at[dir] = at;
        self.delivered_bytes += bytes as u64;
        self.log(3, at, c as u64, bytes as u64);
        self.push(at, Ev::Deliver { conn: c, dir, payload });
    }

    /// Node `i` goes away: its connections close, and it comes back after a downtime.
    fn leave(&mut self, i: usize) {
        if !self.nodes[i].up {
            return;
        }
        self.log(4, self.now_us, i as u64, 0);
        for c in self.nodes[i].conns.clone() {
            self.close(c, None);
        }
        self.nodes[i].up = false;
        self.nodes[i].epoch += 1;
        if let Some(ch) = self.model.churn {
            let at = self.now_us + (exponential(&mut self.rng, ch.mean_downtime_s) * S as f64) as u64;
            self.push(at, Ev::Join(i));
        }
    }

    /// Node `i` comes back: with its chain and address book, or (a share of the
    /// time) as a new install with nothing but its seeds.
    fn join(&mut self, i: usize) {
        let Some(ch) = self.model.churn else { return };
        let lose = self.rng.gen_bool(ch.lose_data_share);
        self.log(5, self.now_us, i as u64, lose as u64);
        let seed = self.rng.gen();
        let now = self.now_ms();
        let book = if lose { Snapshot::default() } else { self.nodes[i].proto.snapshot() };
        if lose {
            let (node, events) = self.fresh_node();
            self.nodes[i].node = node;
            self.nodes[i].events = events;
        }
        while self.nodes[i].events.try_recv().is_ok() {}
        self.nodes[i].proto = Protocol::new(self.nodes[i].node.clone(), sim_config(), book, seed, now);
        self.nodes[i].up = true;
        self.nodes[i].epoch += 1;
        self.nodes[i].upload_free_us = self.now_us;
        self.start(i);
        let at = self.now_us + (exponential(&mut self.rng, ch.mean_session_s) * S as f64) as u64;
        self.push(at, Ev::Leave(i));
    }

    /// Cuts the network in two: nodes with `side(i)` true on one side. Links across
    /// close when next used; dials across fail.
    pub fn partition(&mut self, side: impl Fn(usize) -> bool) {
        for i in 0..self.nodes.len() {
            self.nodes[i].side = side(i) as u8;
        }
        for c in 0..self.conns.len() {
            let [(a, _), (b, _)] = self.conns[c].ends;
            if self.conns[c].open && self.nodes[a].side != self.nodes[b].side {
                self.close(c, None);
            }
        }
        self.log(6, self.now_us, 0, 0);
    }

    pub fn heal(&mut self) {
        for n in &mut self.nodes {
            n.side = 0;
        }
        self.log(7, self.now_us, 0, 0);
    }

    /// `count` transfers valid on node `i`'s tip, from the dev accounts in turn
    /// (signed once per sender and nonce for the whole run).
    fn transfers_for(&mut self, i: usize, count: usize) -> Vec<SignedTransfer> {
        let keys = dev_keys();
        let mut next: Vec<u64> = {
            let chain = self.nodes[i].node.chain();
            keys.iter().map(|k| chain.account(&address_of(k)).map(|a| a.nonce).unwrap_or(0)).collect()
        };
        let chain_id = self.genesis.params.chain_id;
        let mut out = Vec::with_capacity(count);
        for n in 0..count {
            let k = n % keys.len();
            let nonce = next[k];
            next[k] += 1;
            let tx = self.signed.entry((k, nonce)).or_insert_with(|| {
                let t = Transfer {
                    chain_id,
                    nonce,
                    from: public_key_of(&keys[k]),
                    to: address_of(&keys[(k + 1) % keys.len()]),
                    amount: Amount(1),
                    fee: Amount(1),
                };
                t.sign(&keys[k]).expect("dev keys sign")
            });
            out.push(*tx);
        }
        out
    }

    /// Transfers that fill a block to about `bytes` bytes.
    pub fn transfers_for_bytes(bytes: usize) -> usize {
        bytes.saturating_sub(200) / cairn_node::mempool::standard_transfer_size()
    }

    /// Node `i` mines a block on its tip with `transfers` transfers, tracked from now.
    pub fn mine(&mut self, i: usize, transfers: usize) -> BlockHash {
        let txs = self.transfers_for(i, transfers);
        let node = self.nodes[i].node.clone();
        let (parent, params) = {
            let chain = node.chain();
            (chain.tip_parent_info(), *chain.params())
        };
        let ts = self.now_ms().max(parent.median_time_past_ms + 1);
        let mut block =
            assemble_block(&params, &parent, ts, self.nodes[i].miner, &txs).expect("a block template");
        assert!(grind(&mut block.header, 100_000_000), "no proof of work found");
        let hash = block.hash();
        let bytes = cairn_core::encoding::encode(&block).len();
        let height = block.header.height;
        self.blocks.insert(hash, Track { since_us: self.now_us, at: vec![None; self.nodes.len()] });
        let (r, _) =
            node.submit_block(block, Origin::Local, self.now_ms()).expect("the miner stores its block");
        assert_eq!(r.acceptance, Acceptance::Connected, "the miner's own block");
        // The miner checked every signature: other nodes may take its word for them.
        self.verified.extend(txs.iter().map(SignedTransfer::txid));
        self.mined.push(Mined { hash, miner: i, at_us: self.now_us, height, bytes });
        self.log.update(hash.0);
        self.flush(i);
        hash
    }

    /// A new transfer submitted (as over RPC) at node `i`, tracked from now.
    pub fn submit_transfer(&mut self, i: usize) -> Txid {
        let keys = dev_keys();
        let k = self.rng.gen_range(0..keys.len());
        let node = self.nodes[i].node.clone();
        let nonce = node.next_nonce(&address_of(&keys[k])).expect("account");
        let t = Transfer {
            chain_id: self.genesis.params.chain_id,
            nonce,
            from: public_key_of(&keys[k]),
            to: address_of(&keys[(k + 1) % keys.len()]),
            amount: Amount(1),
            fee: Amount(1_000),
        };
        let tx = t.sign(&keys[k]).expect("dev keys sign");
        let txid = tx.txid();
        self.txs.insert(txid, Track { since_us: self.now_us, at: vec![None; self.nodes.len()] });
        node.verify_and_submit(tx, Origin::Rpc, self.now_ms()).expect("a valid transfer is admitted");
        self.log.update(txid.0);
        self.flush(i);
        txid
    }

    pub fn tip(&self, i: usize) -> TipInfo {
        self.nodes[i].node.chain().tip()
    }

    /// The most-work tip over the nodes that are up.
    pub fn best_tip(&self) -> TipInfo {
        (0..self.nodes.len())
            .filter(|&i| self.nodes[i].up)
            .map(|i| self.tip(i))
            .max_by_key(|t| (t.total_work, std::cmp::Reverse(t.hash.0)))
            .expect("some node is up")
    }

    /// Every up node has tip `hash`.
    pub fn all_on(&self, hash: &BlockHash) -> bool {
        (0..self.nodes.len()).filter(|&i| self.nodes[i].up).all(|i| self.tip(i).hash == *hash)
    }

    /// Runs until every up node has the most-work tip (and its work is the most of all
    /// tips), checking every `step_us`; the time it took, or `None` after `max_us`.
    pub fn run_until_converged(&mut self, step_us: u64, max_us: u64) -> Option<u64> {
        let start = self.now_us;
        loop {
            let best = self.best_tip();
            if self.all_on(&best.hash) {
                return Some(self.now_us - start);
            }
            if self.now_us - start >= max_us {
                return None;
            }
            self.run_for(step_us);
        }
    }

    /// The sum of every balance at node `i`, and what it must be: the genesis
    /// allocations plus one block reward per block of its chain.
    pub fn supply(&self, i: usize) -> (u128, u128) {
        let chain = self.nodes[i].node.chain();
        let held: u128 =
            chain.all_accounts().expect("accounts").iter().map(|(_, a)| a.balance.0 as u128).sum();
        let alloc: u128 = self.genesis.allocations.iter().map(|a| a.balance.0 as u128).sum();
        let expected = alloc + self.genesis.params.block_reward.0 as u128 * chain.tip().height as u128;
        (held, expected)
    }

    /// Ready peers per node, over the nodes that are up.
    pub fn peer_counts(&self) -> Vec<usize> {
        self.nodes.iter().filter(|n| n.up).map(|n| n.proto.ready_peers().len()).collect()
    }

    pub fn up_count(&self) -> usize {
        self.nodes.iter().filter(|n| n.up).count()
    }

    /// Drops every tracked block or transfer (their per-node vectors), and what is
    /// left of the messages no longer in flight.
    pub fn forget_tracks(&mut self) {
        self.blocks.clear();
        self.txs.clear();
        self.in_flight.retain(|_, list| {
            list.retain(|(w, _)| w.strong_count() > 0);
            !list.is_empty()
        });
    }
}

/// The process's resident memory and its peak, in MB, from /proc/self/status (Linux;
/// 0 elsewhere).
pub fn rss_mb() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Time (in ms) until `p` percent of the nodes that had it had it, from a track: the
/// nodes that never had it count as never.
pub fn percentile_ms(t: &Track, nodes: usize, p: f64) -> Option<f64> {
    let mut got: Vec<u64> = t.at.iter().flatten().copied().collect();
    got.sort_unstable();
    let need = ((p / 100.0) * nodes as f64).ceil().max(1.0) as usize;
    got.get(need - 1).map(|&us| us as f64 / MS as f64)
}
