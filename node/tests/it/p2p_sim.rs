//! A deterministic network simulator for the peer protocol.
//!
//! Every simulated node is a real [`Protocol`] over a real [`Node`] with an in-memory
//! chain; only the sockets are simulated. Messages go through the real frame codec and
//! arrive after a random latency, in order per connection; "loss" resets a connection
//! (what loss looks like over TCP); a partition resets every connection across it and
//! fails dials across it. Everything random comes from one seed, and maps are ordered,
//! so the same seed replays the same run.
#![allow(clippy::unwrap_used)] // test helpers fail loudly

use cairn_core::assemble::{assemble_block, grind};
use cairn_core::block::{Block, BlockHeader};
use cairn_core::difficulty::median_time_past;
use cairn_core::genesis::{dev_keys, Genesis};
use cairn_core::transaction::{address_of, public_key_of, Coinbase, Transaction};
use cairn_core::validation::ParentInfo;
use cairn_core::{Address, Amount, BlockHash, SignedTransfer, Target, Transfer, Txid};
use cairn_node::chain::{Acceptance, Chain};
use cairn_node::mempool::Mempool;
use cairn_node::node::{Node, NodeEvent, Origin};
use cairn_node::p2p::addrbook::Snapshot;
use cairn_node::p2p::protocol::compact::compact_of;
use cairn_node::p2p::protocol::{Config, DisconnectReason, Input, Output, Protocol, Serve as ServeForm};
use cairn_node::p2p::wire::{command, FrameCodec, InvItem, Message, Version, MAX_HEADERS, PROTOCOL_VERSION};
use cairn_node::p2p::PeerId;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::broadcast;

const TICK_MS: u64 = 100;

pub(crate) fn sim_genesis() -> Genesis {
    let mut g = Genesis::dev();
    g.name = "cairn-sim".into();
    // 2100-01-01, far in the future of any real clock: were anything in the protocol or
    // the node it drives to read the real clock instead of the simulated one, every
    // block would be too far in the future for it, and the tests would fail.
    g.params.timestamp_ms = 4_102_444_800_000;
    let easy: Target = "7fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff".parse().unwrap();
    g.params.initial_target = easy;
    g.params.pow_limit = easy;
    g.params.target_block_time_ms = 1_000;
    g.params.half_life_ms = 60_000;
    g
}

pub(crate) fn sim_config() -> Config {
    Config {
        listen_port: 7333,
        user_agent: "cairn-sim".into(),
        handshake_timeout_ms: 2_000,
        ping_interval_ms: 2_000,
        ping_timeout_ms: 4_000,
        headers_timeout_ms: 4_000,
        block_timeout_ms: 3_000,
        tx_request_timeout_ms: 3_000,
        save_interval_ms: u64::MAX,
        ..Config::default()
    }
}

/// What a simulated node does besides following the protocol.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Behaviour {
    Honest,
    /// Follows the protocol but never sends a block it is asked for.
    WithholdsBlocks,
    /// Not a protocol instance: answers the handshake claiming more work than anyone,
    /// then offers the headers of `chain` to anyone who asks (from the first locator
    /// hash it has, as many as a `headers` message holds), and its blocks as `serve`
    /// says. With `switch: Some((n, other))`, requests after the first `n` get the
    /// headers of `other` instead.
    Scripted {
        chain: Vec<Block>,
        serve: Serve,
        switch: Option<(u32, Vec<Block>)>,
    },
}

/// How a scripted peer answers requests for blocks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Serve {
    Blocks,
    NotFound,
    Silence,
}

pub(crate) struct SimNode {
    pub(crate) node: Arc<Node>,
    pub(crate) proto: Protocol,
    events: broadcast::Receiver<NodeEvent>,
    addr: SocketAddr,
    up: bool,
    side: u8,
    behaviour: Behaviour,
    next_peer: PeerId,
    miner: Address,
}

#[derive(Debug)]
struct Conn {
    ends: [(usize, PeerId); 2],
    open: bool,
    /// Earliest delivery time per direction, so a connection stays in order.
    clear_at: [u64; 2],
}

#[derive(Debug)]
enum Ev {
    Input(usize, Input),
    Deliver { conn: usize, dir: usize, frame: Vec<u8> },
    Tick(usize),
}

pub(crate) struct Sim {
    pub(crate) now: u64,
    seq: u64,
    rng: StdRng,
    pub(crate) genesis: Genesis,
    codec: FrameCodec,
    pub(crate) nodes: Vec<SimNode>,
    conns: Vec<Conn>,
    by_end: BTreeMap<(usize, PeerId), usize>,
    queue: BTreeMap<(u64, u64), Ev>,
    latency: (u64, u64),
    loss: f64,
    /// Messages delivered, by command: a cheap fingerprint of the whole run.
    pub(crate) delivered: BTreeMap<&'static str, u64>,
    /// Where scripted chains start their timestamps: a second after genesis, a day
    /// before the simulated clock starts, so they are all in its past.
    start_ms: u64,
}

/// How long after genesis the simulated clock starts. It is the only clock the nodes
/// see: the protocol hands it to the chain and the mempool with every submission.
const CLOCK_START_AFTER_GENESIS_MS: u64 = 24 * 3600 * 1000;

impl Sim {
    pub(crate) fn new(seed: u64) -> Sim {
        let genesis = sim_genesis();
        let codec = FrameCodec::for_genesis(&genesis.hash());
        Sim {
            now: genesis.params.timestamp_ms + CLOCK_START_AFTER_GENESIS_MS,
            seq: 0,
            rng: StdRng::seed_from_u64(seed),
            start_ms: genesis.params.timestamp_ms + 1_000,
            genesis,
            codec,
            nodes: Vec::new(),
            conns: Vec::new(),
            by_end: BTreeMap::new(),
            queue: BTreeMap::new(),
            latency: (10, 120),
            loss: 0.0,
            delivered: BTreeMap::new(),
        }
    }

    fn addr_of(i: usize) -> SocketAddr {
        SocketAddr::new([10, (i / 250) as u8, (i % 250) as u8 + 1, 1].into(), 7333)
    }

    fn add_node(&mut self, seeds: &[usize], behaviour: Behaviour) -> usize {
        let i = self.nodes.len();
        let chain = Chain::open_in_memory(&self.genesis);
        let node = Node::new(chain, Mempool::new(1 << 20), self.genesis.clone());
        let events = node.subscribe();
        let seed = self.rng.gen();
        let mut proto = Protocol::new(node.clone(), sim_config(), Snapshot::default(), seed, self.now);
        let addr = Self::addr_of(i);
        let mut key = [0u8; 20];
        key[..8].copy_from_slice(&(i as u64).to_le_bytes());
        for s in seeds {
            proto.step(self.now, Input::AddPeer(Self::addr_of(*s)));
        }
        self.nodes.push(SimNode {
            node,
            proto,
            events,
            addr,
            up: true,
            side: 0,
            behaviour,
            next_peer: 1,
            miner: Address(key),
        });
        let offset = self.rng.gen_range(0..TICK_MS);
        self.push(self.now + offset, Ev::Tick(i));
        self.flush(i);
        i
    }

    fn push(&mut self, at: u64, ev: Ev) {
        self.seq += 1;
        self.queue.insert((at, self.seq), ev);
    }

    fn latency(&mut self) -> u64 {
        self.rng.gen_range(self.latency.0..=self.latency.1)
    }

    fn reachable(&self, a: usize, b: usize) -> bool {
        self.nodes[a].up && self.nodes[b].up && self.nodes[a].side == self.nodes[b].side
    }

    /// Runs the simulation for `ms` of simulated time.
    pub(crate) fn run_for(&mut self, ms: u64) {
        let end = self.now + ms;
        while let Some(entry) = self.queue.first_entry() {
            let (at, _) = *entry.key();
            if at > end {
                break;
            }
            let ev = entry.remove();
            self.now = at;
            match ev {
                Ev::Tick(i) => {
                    if self.nodes[i].up {
                        self.input(i, Input::Tick);
                    }
                    self.push(self.now + TICK_MS, Ev::Tick(i));
                }
                Ev::Input(i, input) => {
                    if self.nodes[i].up {
                        self.input(i, input);
                    }
                }
                Ev::Deliver { conn, dir, frame } => {
                    if !self.conns[conn].open {
                        continue;
                    }
                    let (to, peer) = self.conns[conn].ends[1 - dir];
                    let (msg, used) = self.codec.parse(&frame).expect("valid frame").expect("whole frame");
                    assert_eq!(used, frame.len());
                    *self.delivered.entry(msg.name()).or_default() += 1;
                    self.input(to, Input::Received { peer, msg });
                }
            }
        }
        self.now = end;
    }

    fn input(&mut self, i: usize, input: Input) {
        if let Behaviour::Scripted { .. } = self.nodes[i].behaviour {
            self.adversary_input(i, input);
            return;
        }
        let now = self.now;
        self.nodes[i].proto.step(now, input);
        self.flush(i);
    }

    /// Feeds node events back in and carries out the protocol's outputs.
    pub(crate) fn flush(&mut self, i: usize) {
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
                let now = self.now;
                self.nodes[i].proto.step(now, Input::Node(ev));
            }
        }
    }

    fn output(&mut self, i: usize, out: Output) {
        match out {
            Output::Send(peer, msg) => self.send(i, peer, &msg),
            Output::ServeBlock { peer, hash, serve } => {
                // What the TCP driver's writer does: read the stored block, send it.
                let chain = self.nodes[i].node.chain();
                let msg = match serve {
                    ServeForm::Block => match chain.block_bytes(&hash).expect("store reads") {
                        Some(payload) => {
                            // Stored bytes sent as they are: a valid block message, byte
                            // for byte what encoding the decoded block gives.
                            let msg = Message::decode_payload(command::BLOCK, &payload)
                                .expect("stored block decodes");
                            assert_eq!(msg.encode_payload(), payload, "a served block's bytes are canonical");
                            Some(msg)
                        }
                        None => Some(Message::NotFound(vec![InvItem::Block(hash)])),
                    },
                    ServeForm::Compact { nonce } | ServeForm::PushCompact { nonce } => {
                        match chain.block(&hash).expect("store reads") {
                            Some(b) => Some(Message::CmpctBlock(Box::new(compact_of(&b, nonce)))),
                            None if serve == ServeForm::PushCompact { nonce } => None,
                            None => Some(Message::NotFound(vec![InvItem::CmpctBlock(hash)])),
                        }
                    }
                };
                drop(chain);
                if let Some(msg) = msg {
                    self.send(i, peer, &msg)
                }
            }
            Output::Connect(addr) => {
                let lat = self.latency();
                let target = self.nodes.iter().position(|n| n.addr == addr);
                match target {
                    // j == i is a node dialling its own address, which TCP allows: the
                    // handshake nonce has to catch it.
                    Some(j) if self.reachable(i, j) => {
                        let (pi, pj) = (self.next_peer(i), self.next_peer(j));
                        let conn = self.conns.len();
                        self.conns.push(Conn { ends: [(i, pi), (j, pj)], open: true, clear_at: [0, 0] });
                        self.by_end.insert((i, pi), conn);
                        self.by_end.insert((j, pj), conn);
                        let from = SocketAddr::new(self.nodes[i].addr.ip(), 40_000 + (conn % 20_000) as u16);
                        let at = self.now + lat;
                        self.push(at, Ev::Input(i, Input::Connected { peer: pi, addr, inbound: false }));
                        self.push(at, Ev::Input(j, Input::Connected { peer: pj, addr: from, inbound: true }));
                    }
                    _ => self.push(self.now + lat, Ev::Input(i, Input::ConnectFailed { addr })),
                }
            }
            Output::Disconnect(peer, _) => {
                if let Some(&c) = self.by_end.get(&(i, peer)) {
                    self.close(c, Some((i, peer)));
                }
            }
            Output::Save(_) => {}
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
        for (n, p) in self.conns[c].ends {
            if Some((n, p)) != closer {
                let at = self.now + self.latency();
                let reason = DisconnectReason::Closed;
                self.push(at, Ev::Input(n, Input::Disconnected { peer: p, reason }));
            }
        }
    }

    fn send(&mut self, i: usize, peer: PeerId, msg: &Message) {
        let Some(&c) = self.by_end.get(&(i, peer)) else { return };
        if !self.conns[c].open {
            return;
        }
        if self.nodes[i].behaviour == Behaviour::WithholdsBlocks && matches!(msg, Message::Block(_)) {
            return;
        }
        let dir = if self.conns[c].ends[0].0 == i { 0 } else { 1 };
        let other = self.conns[c].ends[1 - dir].0;
        if !self.reachable(i, other) || (self.loss > 0.0 && self.rng.gen_bool(self.loss)) {
            self.close(c, None);
            return;
        }
        let at = (self.now + self.latency()).max(self.conns[c].clear_at[dir]);
        self.conns[c].clear_at[dir] = at;
        let frame = self.codec.encode(msg);
        self.push(at, Ev::Deliver { conn: c, dir, frame });
    }

    /// A scripted peer: offers `chain`, serves its blocks as `serve` says.
    fn adversary_input(&mut self, i: usize, input: Input) {
        let Behaviour::Scripted { chain, serve, switch } = self.nodes[i].behaviour.clone() else { return };
        match input {
            Input::Connected { peer, .. } => {
                let last = chain.last().expect("non-empty");
                let v = Version {
                    protocol_version: PROTOCOL_VERSION,
                    chain_id: self.genesis.params.chain_id,
                    genesis_hash: self.genesis.hash(),
                    best_height: last.header.height,
                    best_work: [0x7f; 32],
                    listen_port: 7333,
                    // One per scripted node, or the victim takes a second one for a
                    // duplicate connection to the first.
                    nonce: 0xbad + i as u64,
                    your_addr: cairn_node::p2p::wire::NetAddr::from_socket(([127, 0, 0, 1], 7000).into()),
                    relay: true,
                    user_agent: "evil".into(),
                };
                self.send(i, peer, &Message::Version(v));
            }
            Input::Received { peer, msg } => match msg {
                Message::Version(_) => self.send(i, peer, &Message::Verack),
                Message::Ping(n) => self.send(i, peer, &Message::Pong(n)),
                Message::GetHeaders(g) => {
                    let offered = match &switch {
                        Some((0, other)) => other,
                        _ => &chain,
                    };
                    if let Behaviour::Scripted { switch: Some((n, _)), .. } = &mut self.nodes[i].behaviour {
                        *n = n.saturating_sub(1);
                    }
                    let hashes: Vec<BlockHash> = offered.iter().map(Block::hash).collect();
                    let start = g
                        .locator
                        .iter()
                        .find_map(|h| hashes.iter().position(|x| x == h).map(|k| k + 1))
                        .unwrap_or(0);
                    let headers: Vec<BlockHeader> =
                        offered.iter().skip(start).take(MAX_HEADERS).map(|b| b.header).collect();
                    self.send(i, peer, &Message::Headers(headers));
                }
                Message::GetData(items) => match serve {
                    Serve::Blocks => {
                        for item in items {
                            if let InvItem::Block(h) = item {
                                if let Some(b) = chain.iter().find(|b| b.hash() == h) {
                                    self.send(i, peer, &Message::Block(Box::new(b.clone())));
                                }
                            }
                        }
                    }
                    Serve::NotFound => self.send(i, peer, &Message::NotFound(items)),
                    Serve::Silence => {}
                },
                _ => {}
            },
            _ => {}
        }
    }

    /// Mines one block on node `i`'s tip with `transfers`, and submits it there.
    pub(crate) fn mine(&mut self, i: usize, transfers: &[SignedTransfer]) -> BlockHash {
        let node = self.nodes[i].node.clone();
        let (parent, params) = {
            let chain = node.chain();
            (chain.tip_parent_info(), *chain.params())
        };
        let ts = self.now;
        let mut block =
            assemble_block(&params, &parent, ts, self.nodes[i].miner, transfers).expect("template");
        assert!(grind(&mut block.header, 10_000_000));
        let hash = block.hash();
        let (r, _) = node.submit_block(block, Origin::Local, self.now).expect("submit");
        assert_eq!(r.acceptance, Acceptance::Connected);
        self.flush(i);
        hash
    }

    fn tip(&self, i: usize) -> (BlockHash, u64) {
        let t = self.nodes[i].node.chain().tip();
        (t.hash, t.height)
    }

    /// The most-work tip over the given nodes.
    fn best_tip(&self, nodes: impl Iterator<Item = usize>) -> BlockHash {
        nodes.map(|i| self.nodes[i].node.chain().tip()).max_by_key(|t| t.total_work).expect("some node").hash
    }

    /// Ends a mining phase with one block that beats every tip: siblings always have
    /// equal work (same parent, same target), and on a tie each node rightly keeps the
    /// tip it saw first, so "the most-work tip" is only unique once a node on a heaviest
    /// branch builds on it. Returns that block, the tip everyone must reach.
    fn mine_decider(&mut self, nodes: &[usize]) -> BlockHash {
        self.run_for(1_000);
        let miner = *nodes
            .iter()
            .max_by_key(|&&i| (self.nodes[i].node.chain().tip().total_work, std::cmp::Reverse(i)))
            .expect("some node");
        let hash = self.mine(miner, &[]);
        assert_eq!(self.best_tip(nodes.iter().copied()), hash);
        hash
    }

    /// Runs until every node in `nodes` has tip `hash`, or `max_ms` passes.
    pub(crate) fn run_until_tip(&mut self, nodes: &[usize], hash: BlockHash, max_ms: u64) -> bool {
        let mut waited = 0;
        while waited < max_ms {
            if nodes.iter().all(|&i| self.tip(i).0 == hash) {
                return true;
            }
            self.run_for(200);
            waited += 200;
        }
        nodes.iter().all(|&i| self.tip(i).0 == hash)
    }

    fn debug_dump(&self, nodes: &[usize], best: BlockHash) {
        for &i in nodes {
            let chain = self.nodes[i].node.chain();
            let t = chain.tip();
            let bh = chain.best_header();
            eprintln!(
                "node {i}: tip {} h{} w{:?} | best header {} h{} | best {:?} | peers {:?}",
                &t.hash.to_string()[..6],
                t.height,
                t.total_work,
                &bh.hash.to_string()[..6],
                bh.height,
                chain.block_status(&best),
                self.nodes[i]
                    .proto
                    .peer_infos()
                    .iter()
                    .map(|p| (p.addr.clone(), p.height))
                    .collect::<Vec<_>>()
            );
        }
    }

    pub(crate) fn tips_summary(&self, nodes: &[usize]) -> String {
        nodes
            .iter()
            .map(|&i| {
                let (h, height) = self.tip(i);
                format!("{i}:{height}/{}", &h.to_string()[..6])
            })
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// A signed transfer from dev account `k` with nonce `nonce`.
pub(crate) fn transfer(g: &Genesis, k: usize, nonce: u64) -> SignedTransfer {
    let keys = dev_keys();
    let t = Transfer {
        chain_id: g.params.chain_id,
        nonce,
        from: public_key_of(&keys[k]),
        to: address_of(&keys[(k + 1) % keys.len()]),
        amount: Amount(1_000),
        fee: Amount(10),
    };
    t.sign(&keys[k]).expect("sign")
}

/// The `version` a test peer on protocol version 2 sends: our chain, its best height
/// and work, its `nonce`, a `relay` of true and the `user_agent` given.
pub(crate) fn peer_version(
    g: &Genesis,
    best_height: u64,
    best_work: [u8; 32],
    nonce: u64,
    your_addr: SocketAddr,
    user_agent: &str,
) -> Version {
    Version {
        protocol_version: PROTOCOL_VERSION,
        chain_id: g.params.chain_id,
        genesis_hash: g.hash(),
        best_height,
        best_work,
        listen_port: 7333,
        nonce,
        your_addr: cairn_node::p2p::wire::NetAddr::from_socket(your_addr),
        relay: true,
        user_agent: user_agent.into(),
    }
}

/// A chain of `len` blocks on genesis, mined by nobody in the simulation. With
/// `invalid_first`, its first block pays its miner one unit too much: every header is
/// still valid, so it passes headers-first checks and only its body is bad.
fn scripted_chain(g: &Genesis, len: usize, start_ms: u64, invalid_first: bool) -> Vec<Block> {
    let params = g.params;
    let gen = g.block();
    let mut out: Vec<Block> = Vec::new();
    let mut timestamps = vec![gen.header.timestamp_ms];
    let mut parent = ParentInfo::of_genesis(&gen.header);
    for k in 0..len {
        let ts = start_ms + 1_000 * k as u64;
        let mut block = assemble_block(&params, &parent, ts, Address([0xee; 20]), &[]).expect("template");
        if k == 0 && invalid_first {
            block.transactions[0] = Transaction::Coinbase(Coinbase {
                height: 1,
                to: Address([0xee; 20]),
                amount: Amount(params.block_reward.0 + 1),
            });
            block.header.merkle_root = block.compute_merkle_root();
        }
        assert!(grind(&mut block.header, 10_000_000));
        timestamps.push(block.header.timestamp_ms);
        let n = (params.median_time_blocks as usize).min(timestamps.len());
        let anchor = out.first().map(|b| b.header.timestamp_ms).unwrap_or(block.header.timestamp_ms);
        parent = ParentInfo {
            hash: block.hash(),
            height: block.header.height,
            timestamp_ms: block.header.timestamp_ms,
            median_time_past_ms: median_time_past(&timestamps[timestamps.len() - n..]),
            anchor_timestamp_ms: anchor,
        };
        out.push(block);
    }
    out
}

/// `n` honest nodes, each seeded with one earlier node only.
pub(crate) fn honest_network(sim: &mut Sim, n: usize) -> Vec<usize> {
    let mut ids = vec![sim.add_node(&[], Behaviour::Honest)];
    for k in 1..n {
        let seed = sim.rng.gen_range(0..k);
        ids.push(sim.add_node(&[ids[seed]], Behaviour::Honest));
    }
    ids
}

/// The seeds a test runs: `count` of them from `first` by default (a few, so the whole
/// binary stays fast), or as many as `CAIRN_SIM_SEEDS` says, e.g.
/// `CAIRN_SIM_SEEDS=200 cargo test --workspace --test it p2p_sim::` for a long soak.
fn seeds(first: u64, count: u64) -> std::ops::Range<u64> {
    let n = std::env::var("CAIRN_SIM_SEEDS").ok().and_then(|v| v.parse().ok()).unwrap_or(count);
    first..first + n
}

/// 24 nodes, mining on random nodes, with latency and connection resets: all end on
/// the most-work tip, and peer exchange gave everyone several peers from one seed.
fn converge(seed: u64) -> (BlockHash, BTreeMap<&'static str, u64>) {
    let mut sim = Sim::new(seed);
    sim.loss = 0.002;
    let ids = honest_network(&mut sim, 24);
    sim.run_for(3_000);
    for _ in 0..15 {
        let i = sim.rng.gen_range(0..ids.len());
        sim.mine(i, &[]);
        let wait = sim.rng.gen_range(100..800);
        sim.run_for(wait);
    }
    let best = sim.mine_decider(&ids);
    assert!(sim.run_until_tip(&ids, best, 30_000), "seed {seed}: no convergence: {}", sim.tips_summary(&ids));
    for &i in &ids {
        let peers = sim.nodes[i].proto.ready_peers().len();
        assert!(peers >= 4, "seed {seed}: node {i} has only {peers} peers");
        let known = sim.nodes[i].proto.address_book().len();
        assert!(
            known >= 8,
            "seed {seed}: node {i} learned only {known} addresses; peers {:?}",
            sim.nodes[i].proto.peer_infos().iter().map(|p| (p.addr.clone(), p.inbound)).collect::<Vec<_>>()
        );
        assert!(!sim.nodes[i].proto.is_syncing(), "seed {seed}: node {i} still syncing");
    }
    (best, sim.delivered.clone())
}

#[test]
fn twenty_four_nodes_converge_on_the_most_work_tip() {
    for seed in seeds(1, 2) {
        converge(seed);
    }
}

#[test]
fn same_seed_same_run() {
    let a = converge(77);
    let b = converge(77);
    assert_eq!(a, b);
    let c = converge(78);
    assert_ne!(a.1, c.1, "another seed gives another run");
}

#[test]
fn partition_heals_to_the_heavier_side_and_losing_transfers_return() {
    for seed in seeds(10, 2) {
        let mut sim = Sim::new(seed);
        let ids = honest_network(&mut sim, 12);
        sim.run_for(3_000);
        sim.mine(0, &[]);
        let t = sim.tip(0).0;
        assert!(sim.run_until_tip(&ids, t, 10_000), "seed {seed}: initial sync");

        let (a, b): (Vec<usize>, Vec<usize>) = ids.iter().partition(|&&i| i < 6);
        for &i in &b {
            sim.nodes[i].side = 1;
        }
        sim.run_for(1_000);
        // Side B confirms a transfer; side A mines more and wins.
        let tx = transfer(&sim.genesis, 3, 0);
        let txid: Txid = tx.txid();
        // Each block is mined once its side has the previous one, so no side forks.
        let b1 = sim.mine(b[0], &[tx]);
        assert!(sim.run_until_tip(&b, b1, 10_000), "seed {seed}: side B: {}", sim.tips_summary(&b));
        let tip_b = sim.mine(b[1], &[]);
        for k in 0..5 {
            let t = sim.mine(a[k % a.len()], &[]);
            assert!(sim.run_until_tip(&a, t, 10_000), "seed {seed}: side A: {}", sim.tips_summary(&a));
        }
        assert!(sim.run_until_tip(&b, tip_b, 10_000), "seed {seed}: side B: {}", sim.tips_summary(&b));
        for &i in &b {
            assert!(sim.nodes[i].node.chain().tx_location(&txid).unwrap().is_some());
        }

        for n in sim.nodes.iter_mut() {
            n.side = 0;
        }
        // A new block on A after healing announces the heavier chain everywhere.
        sim.run_for(2_000);
        sim.mine(a[0], &[]);
        let best = sim.tip(a[0]).0;
        assert!(sim.run_until_tip(&ids, best, 30_000), "seed {seed}: after heal: {}", sim.tips_summary(&ids));
        for &i in &b {
            let n = &sim.nodes[i].node;
            assert!(n.chain().tx_location(&txid).unwrap().is_none());
            assert!(
                n.mempool().contains(&txid),
                "seed {seed}: node {i} lost the transfer of the losing side"
            );
        }
    }
}

#[test]
fn late_joiner_syncs_the_whole_chain() {
    for seed in seeds(20, 2) {
        let mut sim = Sim::new(seed);
        let ids = honest_network(&mut sim, 6);
        sim.run_for(2_000);
        for k in 0..80 {
            sim.mine(ids[k % ids.len()], &[]);
            sim.run_for(50);
        }
        let best = sim.mine_decider(&ids);
        if !sim.run_until_tip(&ids, best, 20_000) {
            sim.debug_dump(&ids, best);
            panic!("seed {seed}: {}", sim.tips_summary(&ids));
        }
        let late = sim.add_node(&[ids[3]], Behaviour::Honest);
        assert!(sim.run_until_tip(&[late], best, 20_000), "seed {seed}: late joiner at {}", sim.tip(late).1);
        assert_eq!(sim.tip(late).1, sim.tip(ids[0]).1);
        assert!(!sim.nodes[late].proto.is_syncing());
    }
}

#[test]
fn invalid_chain_feeder_is_banned_and_honest_sync_goes_on() {
    for seed in seeds(30, 2) {
        let mut sim = Sim::new(seed);
        let bad = scripted_chain(&sim.genesis, 30, sim.start_ms, true);
        let evil = sim.add_node(&[], Behaviour::Scripted { chain: bad, serve: Serve::Blocks, switch: None });
        let ids = {
            let mut ids = vec![sim.add_node(&[evil], Behaviour::Honest)];
            for k in 1..6 {
                ids.push(sim.add_node(&[evil, ids[k - 1]], Behaviour::Honest));
            }
            ids
        };
        sim.run_for(2_000);
        for k in 0..10 {
            sim.mine(ids[k % ids.len()], &[]);
            sim.run_for(300);
        }
        let best = sim.mine_decider(&ids);
        assert!(sim.run_until_tip(&ids, best, 20_000), "seed {seed}: {}", sim.tips_summary(&ids));
        let evil_addr = sim.nodes[evil].addr;
        for &i in &ids {
            assert!(
                sim.nodes[i].proto.address_book().is_banned(&evil_addr, sim.now),
                "seed {seed}: node {i} did not ban the feeder"
            );
            assert_eq!(sim.tip(i).0, best);
        }
    }
}

/// A peer shows a heavier chain of valid headers but never delivers a body (it answers
/// `notfound`, or nothing): it is dropped each time it tries, the honest chain syncs
/// anyway, and nobody is left "syncing" toward a branch that no one can deliver.
#[test]
fn header_only_branch_does_not_block_sync() {
    for seed in seeds(60, 2) {
        let serve = if seed % 2 == 0 { Serve::NotFound } else { Serve::Silence };
        let mut sim = Sim::new(seed);
        let fake = scripted_chain(&sim.genesis, 30, sim.start_ms, false);
        let fake_tip = fake.last().unwrap().hash();
        let liar = sim.add_node(&[], Behaviour::Scripted { chain: fake, serve, switch: None });
        let mut ids = vec![sim.add_node(&[liar], Behaviour::Honest)];
        for k in 1..5 {
            ids.push(sim.add_node(&[liar, ids[k - 1]], Behaviour::Honest));
        }
        sim.run_for(2_000);
        for k in 0..10 {
            sim.mine(ids[k % ids.len()], &[]);
            sim.run_for(300);
        }
        let best = sim.mine_decider(&ids);
        assert!(sim.run_until_tip(&ids, best, 20_000), "seed {seed} {serve:?}: {}", sim.tips_summary(&ids));
        // A node joining now meets the liar first.
        let late = sim.add_node(&[liar, ids[2]], Behaviour::Honest);
        assert!(
            sim.run_until_tip(&[late], best, 20_000),
            "seed {seed} {serve:?}: joiner at {}",
            sim.tip(late).1
        );
        for &i in ids.iter().chain([&late]) {
            let chain = sim.nodes[i].node.chain();
            assert_eq!(chain.tip().hash, best);
            // The heavier header-only branch is known, and was not waited for.
            assert_eq!(
                chain.best_header().hash,
                fake_tip,
                "seed {seed}: node {i} never saw the fake headers"
            );
        }
        // The liar is dropped at every attempt and redialled ever later (its strikes
        // grow the backoff), so nobody stays "syncing" toward it: within 30 s there is
        // a moment when every node is idle.
        let mut idle = false;
        for _ in 0..300 {
            sim.run_for(100);
            if ids.iter().chain([&late]).all(|&i| !sim.nodes[i].proto.is_syncing()) {
                idle = true;
                break;
            }
        }
        assert!(idle, "seed {seed} {serve:?}: still syncing toward the liar's branch");
    }
}

/// Headers of a branch with less work than our tip are never stored; a branch that
/// starts below our work and ends above it is checked, fetched again, stored and
/// followed; a peer that sends another chain the second time is banned, and nothing of
/// that chain is stored.
#[test]
fn low_work_headers_are_checked_before_any_is_stored() {
    let mut sim = Sim::new(80);
    let g = sim.genesis.clone();
    // Every block of these chains has the same work (one target spacing apart, so the
    // target never moves): a chain's work is its length.
    let ours = scripted_chain(&g, 2_300, sim.start_ms, false);
    let light = scripted_chain(&g, 2_100, sim.start_ms + 1, false);
    let heavy = scripted_chain(&g, 2_400, sim.start_ms + 2, false);
    let other = scripted_chain(&g, 2_400, sim.start_ms + 3, false);
    let scripted = |chain: &Vec<Block>, switch| Behaviour::Scripted {
        chain: chain.clone(),
        serve: Serve::Blocks,
        switch,
    };
    let light_peer = sim.add_node(&[], scripted(&light, None));
    // Serves `heavy` for the presync (two requests), then `other`.
    let liar = sim.add_node(&[], scripted(&heavy, Some((2, other.clone()))));
    let heavy_peer = sim.add_node(&[], scripted(&heavy, None));
    let victim = sim.add_node(&[], Behaviour::Honest);
    for b in &ours {
        let now = sim.now;
        let (r, _) = sim.nodes[victim].node.submit_block(b.clone(), Origin::Local, now).unwrap();
        assert_eq!(r.acceptance, Acceptance::Connected);
        sim.flush(victim);
    }
    let our_tip = ours.last().unwrap().hash();
    let connect = |sim: &mut Sim, to: usize| {
        let now = sim.now;
        sim.nodes[victim].proto.step(now, Input::AddPeer(Sim::addr_of(to)));
        sim.flush(victim);
        sim.run_for(5_000);
    };
    let stored = |sim: &Sim, chain: &[Block]| {
        let c = sim.nodes[victim].node.chain();
        chain.iter().filter(|b| c.block_status(&b.hash()).is_some()).count()
    };

    // 2 000 + 100 headers, all below our work: checked and forgotten. An honest peer on
    // a shorter chain is not punished for it.
    connect(&mut sim, light_peer);
    assert_eq!(stored(&sim, &light), 0, "headers of the lighter branch were stored");
    assert_eq!(sim.tip(victim).0, our_tip);
    assert!(!sim.nodes[victim].proto.address_book().is_banned(&Sim::addr_of(light_peer), sim.now));

    // Presync reaches our work, the second download is another chain: banned.
    connect(&mut sim, liar);
    assert!(sim.nodes[victim].proto.address_book().is_banned(&Sim::addr_of(liar), sim.now));
    assert_eq!(stored(&sim, &other), 0, "headers of the switched chain were stored");
    assert_eq!(stored(&sim, &heavy), 0);
    assert_eq!(sim.tip(victim).0, our_tip);

    // The same heavier branch from an honest peer: stored and followed.
    connect(&mut sim, heavy_peer);
    let heavy_tip = heavy.last().unwrap().hash();
    assert!(sim.run_until_tip(&[victim], heavy_tip, 60_000), "victim at {}", sim.tip(victim).1);
    assert_eq!(stored(&sim, &heavy), heavy.len());
    assert_eq!(stored(&sim, &light), 0);
}

#[test]
fn stalling_peer_does_not_stop_sync() {
    for seed in seeds(40, 2) {
        let mut sim = Sim::new(seed);
        let ids = honest_network(&mut sim, 4);
        let staller = sim.add_node(&[ids[0]], Behaviour::Honest);
        sim.run_for(2_000);
        for k in 0..40 {
            sim.mine(ids[k % ids.len()], &[]);
            sim.run_for(50);
        }
        let best = sim.mine_decider(&ids);
        assert!(sim.run_until_tip(&ids, best, 20_000));
        assert!(sim.run_until_tip(&[staller], best, 20_000));
        sim.nodes[staller].behaviour = Behaviour::WithholdsBlocks;
        // The joiner knows the staller first and one honest node.
        let late = sim.add_node(&[staller, ids[2]], Behaviour::Honest);
        assert!(sim.run_until_tip(&[late], best, 30_000), "seed {seed}: joiner stuck at {}", sim.tip(late).1);
    }
}

#[test]
fn transfers_spread_to_every_mempool() {
    let mut sim = Sim::new(50);
    let ids = honest_network(&mut sim, 10);
    sim.run_for(3_000);
    let tx = transfer(&sim.genesis, 1, 0);
    let txid = tx.txid();
    let now = sim.now;
    sim.nodes[ids[4]].node.verify_and_submit(tx, Origin::Rpc, now).expect("admitted");
    sim.flush(ids[4]);
    sim.run_for(3_000);
    for &i in &ids {
        assert!(sim.nodes[i].node.mempool().contains(&txid), "node {i} never heard of the transfer");
    }
}

/// A lone protocol instance driven by hand, for checks on single messages.
struct Solo {
    node: Arc<Node>,
    proto: Protocol,
    genesis: Genesis,
    events: broadcast::Receiver<NodeEvent>,
    now: u64,
}

impl Solo {
    fn new(config: Config) -> Solo {
        let genesis = sim_genesis();
        let node = Node::new(Chain::open_in_memory(&genesis), Mempool::new(1 << 20), genesis.clone());
        let events = node.subscribe();
        let proto = Protocol::new(node.clone(), config, Snapshot::default(), 1, 0);
        Solo { node, proto, genesis, events, now: 0 }
    }

    /// Steps one input (and the node events it caused); returns the outputs.
    fn step(&mut self, input: Input) -> Vec<Output> {
        self.now += 10;
        self.proto.step(self.now, input);
        while let Ok(ev) = self.events.try_recv() {
            self.proto.step(self.now, Input::Node(ev));
        }
        self.proto.drain()
    }

    /// An inbound peer from 10.0.`id`.1 that completes the handshake.
    fn connect(&mut self, peer: PeerId) -> Vec<Output> {
        let addr = SocketAddr::new([10, 0, peer as u8, 1].into(), 40_000);
        let mut outs = self.step(Input::Connected { peer, addr, inbound: true });
        let v = self.version_of(peer);
        outs.extend(self.step(Input::Received { peer, msg: Message::Version(v) }));
        outs.extend(self.step(Input::Received { peer, msg: Message::Verack }));
        outs
    }

    /// The `version` the peer `peer` of [`Solo::connect`] sends.
    fn version_of(&self, peer: PeerId) -> Version {
        let work = self.node.chain().tip().total_work.to_be_bytes();
        peer_version(&self.genesis, 0, work, 1_000 + peer, ([127, 0, 0, 1], 7000).into(), "solo")
    }
}

fn asked_for_tx(outs: &[Output], to: PeerId, txid: Txid) -> bool {
    outs.iter().any(|o| matches!(o, Output::Send(p, Message::GetData(items)) if *p == to && items.contains(&InvItem::Tx(txid))))
}

/// A transfer that arrives before its predecessor waits for it (not fetched again from
/// other peers meanwhile) and is admitted as soon as the predecessor is in, without
/// being announced again; what a disconnected peer left waiting is forgotten.
#[test]
fn transfer_that_overtakes_its_predecessor_waits_for_it() {
    let mut s = Solo::new(sim_config());
    s.connect(1);
    s.connect(2);
    let (t0, t1) = (transfer(&s.genesis, 2, 0), transfer(&s.genesis, 2, 1));
    let id1 = t1.txid();
    let outs = s.step(Input::Received { peer: 1, msg: Message::Inv(vec![InvItem::Tx(id1)]) });
    assert!(asked_for_tx(&outs, 1, id1));
    s.step(Input::Received { peer: 1, msg: Message::Tx(t1) });
    assert!(!s.node.mempool().contains(&id1), "a nonce gap is not admitted");
    assert!(s.proto.ready_peers().contains(&1), "a nonce gap is not misbehaviour");
    let outs = s.step(Input::Received { peer: 2, msg: Message::Inv(vec![InvItem::Tx(id1)]) });
    assert!(!asked_for_tx(&outs, 2, id1), "a waiting transfer is fetched again");
    s.node.verify_and_submit(t0, Origin::Rpc, s.now).expect("predecessor admitted");
    s.step(Input::Tick);
    assert!(s.node.mempool().contains(&id1), "the waiting transfer was not admitted after its predecessor");

    // Waiting transfers leave with their peer: the next one is then fetched again.
    let (t2, t3) = (transfer(&s.genesis, 2, 2), transfer(&s.genesis, 2, 3));
    let id3 = t3.txid();
    s.step(Input::Received { peer: 1, msg: Message::Inv(vec![InvItem::Tx(id3)]) });
    s.step(Input::Received { peer: 1, msg: Message::Tx(t3) });
    s.step(Input::Disconnected { peer: 1, reason: DisconnectReason::Closed });
    s.node.verify_and_submit(t2, Origin::Rpc, s.now).expect("predecessor admitted");
    s.step(Input::Tick);
    assert!(!s.node.mempool().contains(&id3), "a gone peer's waiting transfer was admitted");
    let outs = s.step(Input::Received { peer: 2, msg: Message::Inv(vec![InvItem::Tx(id3)]) });
    assert!(asked_for_tx(&outs, 2, id3));
    s.step(Input::Received { peer: 2, msg: Message::Tx(t3) });
    assert!(s.node.mempool().contains(&id3));

    // A permanent refusal (a fee below the minimum) is remembered: not fetched again.
    let mut cheap = transfer(&s.genesis, 3, 0).transfer;
    cheap.fee = Amount(0);
    let cheap = cheap.sign(&dev_keys()[3]).unwrap();
    let idc = cheap.txid();
    let outs = s.step(Input::Received { peer: 2, msg: Message::Inv(vec![InvItem::Tx(idc)]) });
    assert!(asked_for_tx(&outs, 2, idc));
    s.step(Input::Received { peer: 2, msg: Message::Tx(cheap) });
    assert!(!s.node.mempool().contains(&idc));
    s.connect(3);
    let outs = s.step(Input::Received { peer: 3, msg: Message::Inv(vec![InvItem::Tx(idc)]) });
    assert!(!asked_for_tx(&outs, 3, idc), "a transfer refused for good is fetched again");
}

/// Announcements past the inventory budget (100,000 items in 10 s, docs/PROTOCOL.md)
/// are ignored until the window ends, and are not misbehaviour: a node relaying what
/// `tx_submit` admits (over 10,000 transfers a second on two cores) announces that
/// many, and its peers must not ban it for it.
#[test]
fn announcements_past_the_inventory_budget_are_ignored_not_punished() {
    let quiet = Config { ping_interval_ms: 3_600_000, ping_timeout_ms: 3_600_000, ..sim_config() };
    let mut s = Solo::new(quiet);
    s.connect(1);
    // A transfer the node holds: announcing it costs the node no request, so the
    // budget is all that the flood below can reach.
    let held = transfer(&s.genesis, 2, 0);
    let held_id = held.txid();
    s.node.verify_and_submit(held, Origin::Rpc, s.now).expect("admitted");
    let start = s.now;
    for i in 0..202 {
        let outs = s.step(Input::Received { peer: 1, msg: Message::Inv(vec![InvItem::Tx(held_id); 500]) });
        assert!(!outs.iter().any(|o| matches!(o, Output::Disconnect(1, _))), "dropped at inv {i}: {outs:?}");
    }
    assert!(s.now - start < 10_000, "the flood must fit in one window");
    assert_eq!(s.proto.ready_peers(), vec![1], "101,000 announcements in 10 s got the peer dropped");

    // Past the budget, a new transfer's announcement is not acted on...
    let new = transfer(&s.genesis, 3, 0).txid();
    let outs = s.step(Input::Received { peer: 1, msg: Message::Inv(vec![InvItem::Tx(new)]) });
    assert!(!asked_for_tx(&outs, 1, new), "an announcement past the budget was fetched");
    // A block announcement is still heard: its headers are asked for.
    let outs =
        s.step(Input::Received { peer: 1, msg: Message::Inv(vec![InvItem::Block(BlockHash([7; 32]))]) });
    assert!(
        outs.iter().any(|o| matches!(o, Output::Send(1, Message::GetHeaders(_)))),
        "a block announcement past the budget was ignored: {outs:?}"
    );
    // ...and once the window is over, it is.
    s.now = start + 10_001;
    let outs = s.step(Input::Received { peer: 1, msg: Message::Inv(vec![InvItem::Tx(new)]) });
    assert!(asked_for_tx(&outs, 1, new), "the announcement was not fetched in the next window");
    assert_eq!(s.proto.ready_peers(), vec![1]);
}

/// `--max-peers` counts inbound and outbound together: 8 outbound slots (half of a
/// smaller cap) are kept free of inbound connections.
#[test]
fn max_peers_reserves_outbound_slots() {
    let c = Config::default().with_max_peers(32);
    assert_eq!((c.target_outbound, c.max_inbound), (8, 24));
    let c = Config::default().with_max_peers(5);
    assert_eq!((c.target_outbound, c.max_inbound), (3, 2));
    let mut s = Solo::new(Config { ..sim_config() }.with_max_peers(5));
    s.connect(1);
    s.connect(2);
    let outs = s.connect(3);
    assert!(outs.iter().any(|o| matches!(o, Output::Disconnect(3, DisconnectReason::TooManyPeers))));
    assert_eq!(s.proto.ready_peers(), vec![1, 2]);
}

/// A second `version` before the handshake completes drops the connection; after the
/// handshake a repeated `version` scores 20 points (docs/PROTOCOL.md), so the fifth bans.
#[test]
fn repeated_version_drops_during_handshake_and_scores_after() {
    let mut s = Solo::new(sim_config());
    let addr: SocketAddr = "10.0.1.1:40000".parse().unwrap();
    s.step(Input::Connected { peer: 1, addr, inbound: true });
    let v = s.version_of(1);
    let outs = s.step(Input::Received { peer: 1, msg: Message::Version(v.clone()) });
    assert!(outs.iter().any(|o| matches!(o, Output::Send(1, Message::Verack))));
    let outs = s.step(Input::Received { peer: 1, msg: Message::Version(v) });
    assert!(
        outs.iter().any(|o| matches!(o, Output::Disconnect(1, DisconnectReason::Protocol(_)))),
        "second version during the handshake kept: {outs:?}"
    );

    s.connect(2);
    assert_eq!(s.proto.ready_peers(), vec![2]);
    for i in 1..=4 {
        let outs = s.step(Input::Received { peer: 2, msg: Message::Version(s.version_of(2)) });
        assert!(!outs.iter().any(|o| matches!(o, Output::Disconnect(2, _))), "dropped at repeat {i}");
    }
    assert_eq!(s.proto.ready_peers(), vec![2]);
    let outs = s.step(Input::Received { peer: 2, msg: Message::Version(s.version_of(2)) });
    assert!(outs.iter().any(|o| matches!(o, Output::Disconnect(2, DisconnectReason::Misbehaviour(_)))));
}

/// A connection that never completes the handshake is dropped after the timeout, and a
/// node that dials its own address notices by the nonce and never dials it again.
#[test]
fn handshake_timeout_and_self_connection() {
    let mut s = Solo::new(sim_config());
    let addr: SocketAddr = "10.9.9.9:7333".parse().unwrap();
    s.step(Input::Connected { peer: 1, addr, inbound: true });
    let mut dropped = false;
    while s.now < 3_000 && !dropped {
        dropped = s
            .step(Input::Tick)
            .iter()
            .any(|o| matches!(o, Output::Disconnect(1, DisconnectReason::HandshakeTimeout)));
    }
    assert!(dropped, "no handshake timeout");
    assert!(s.now > 2_000, "dropped before the timeout");

    let me: SocketAddr = "10.0.0.99:7333".parse().unwrap();
    let outs = s.step(Input::AddPeer(me));
    assert!(outs.contains(&Output::Connect(me)));
    let outs = s.step(Input::Connected { peer: 2, addr: me, inbound: false });
    let Some(Output::Send(2, Message::Version(v))) = outs.into_iter().next() else {
        panic!("no version sent")
    };
    assert_eq!(v.nonce, s.proto.nonce());
    let outs = s.step(Input::Received { peer: 2, msg: Message::Version(v) });
    assert!(outs.contains(&Output::Disconnect(2, DisconnectReason::SelfConnection)));
    for _ in 0..200 {
        let outs = s.step(Input::Tick);
        assert!(!outs.contains(&Output::Connect(me)), "dialled itself again");
    }
}

/// A node whose dials kept failing connects to us: the handshake clears its address's
/// failures, so once it leaves we dial it again at the next tick instead of waiting out
/// a backoff that had grown to 16 s.
#[test]
fn inbound_handshake_resets_the_dial_backoff() {
    let mut s = Solo::new(sim_config());
    let listen = SocketAddr::new([10, 0, 1, 1].into(), 7333);
    let outs = s.step(Input::AddPeer(listen));
    assert!(outs.contains(&Output::Connect(listen)));
    s.step(Input::ConnectFailed { addr: listen });
    for _ in 0..4 {
        s.now += 60_000;
        let outs = s.step(Input::Tick);
        assert!(outs.contains(&Output::Connect(listen)), "redial after the backoff");
        s.step(Input::ConnectFailed { addr: listen });
    }
    assert_eq!(s.proto.address_book().get(&listen).map(|e| e.failures), Some(5));
    s.now += 2_000;
    assert!(!s.step(Input::Tick).contains(&Output::Connect(listen)), "backing off for 16 s");

    // It dials us (from another port; its version names its listen port 7333).
    s.connect(1);
    let entry = s.proto.address_book().get(&listen).cloned().expect("still known");
    assert_eq!(entry.failures, 0, "an inbound handshake clears the failures");
    assert_eq!(entry.last_seen_ms, s.now);
    s.step(Input::Disconnected { peer: 1, reason: DisconnectReason::Closed });
    assert!(s.step(Input::Tick).contains(&Output::Connect(listen)), "dialled again at once");
}
