//! Model-based test of compact block relay (docs/PROTOCOL.md, "Compact blocks") as a
//! state machine: random sequences of `sendcmpct`, `cmpctblock`, `blocktxn`,
//! `getblocktxn` and compact `getdata` from up to four peers, whole blocks (as the
//! `block` message, or as the TCP driver's reader hands them on, stateless checks
//! already run: `Input::CheckedBlock`), asked for or not, transfers admitted to our
//! mempool between them, blocks our node submits itself (as its miner or RPC would),
//! peers leaving and coming back, and the clock jumping by edge amounts (0, 1, the
//! block timeout and one past it, `u64::MAX`), against one real protocol instance over
//! a real in-memory node.
//!
//! The peers offer blocks of one valid chain of four blocks, plus, at each height, a
//! block whose header is invalid (its timestamp is before its parent's median time) and
//! one whose header is valid but which carries a transfer with a broken signature.
//! Nonces are drawn from the edges (0, 1, `u64::MAX`) and at random.
//!
//! The model is the spec's rules, and after every step it checks:
//! - our tip is a block of the valid chain and never moves back; no invalid block is
//!   ever stored;
//! - each ban the ban rules require happened (an invalid header or a prefilled invalid
//!   transfer in the next block, a `blocktxn` with an invalid transfer or another count
//!   than asked, a `getblocktxn` for an index that is not a transfer, a whole block with
//!   an invalid transfer that we asked for as the next block; 20 points for a block we
//!   did not ask that peer for, which never moves the tip), and no peer was
//!   dropped that the model does not allow to go (drops on a clock jump are allowed:
//!   the test's peers never answer pings or `getheaders`);
//! - a valid compact block for the next block is connected at once, or its missing
//!   transfers are asked for with `getblocktxn` (exactly the indexes of the transfers
//!   our mempool lacks), or the block is asked for whole; the right `blocktxn` then
//!   connects it; so does the next block delivered whole by the peer it was asked of;
//! - a `getblocktxn` for one of our blocks is answered with exactly the transfers asked
//!   for; every message goes to a connected peer and fits its frame limit;
//! - a block of our own that extends the tip connects, and (unless we are syncing) goes
//!   as a compact block to every high-bandwidth peer that has not seen it, once, and to
//!   no other peer.
//!
//! Cases: `PROPTEST_CASES` (default [`DEFAULT_CASES`]).
#![allow(clippy::unwrap_used)] // test helpers fail loudly

use super::p2p_sim::{peer_version, sim_config, sim_genesis, transfer};
use cairn_core::assemble::{assemble_block, grind};
use cairn_core::block::Block;
use cairn_core::genesis::Genesis;
use cairn_core::transaction::DecodedKeys;
use cairn_core::{Address, BlockHash, SignedTransfer};
use cairn_node::chain::Chain;
use cairn_node::mempool::Mempool;
use cairn_node::node::{Node, NodeEvent, Origin};
use cairn_node::p2p::addrbook::Snapshot;
use cairn_node::p2p::protocol::compact::compact_of;
use cairn_node::p2p::protocol::{DisconnectReason, Input, Output, Protocol, Serve};
use cairn_node::p2p::wire::{max_payload, BlockTxn, GetBlockTxn, InvItem, Message, SendCmpct};
use cairn_node::p2p::PeerId;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use tokio::sync::broadcast;

const DEFAULT_CASES: u32 = 256;
const SLOTS: u8 = 4;
/// Blocks of the valid chain.
const HEIGHT: usize = 4;
/// Transfers per block.
const PER_BLOCK: usize = 3;

/// What the cases reached, printed after the run so that a reader sees the test was
/// not trivially green.
static SEEN: [AtomicUsize; 10] = [const { AtomicUsize::new(0) }; 10];
const CONNECTED_AT_ONCE: usize = 0;
const ASKED_BLOCKTXN: usize = 1;
const CONNECTED_BY_BLOCKTXN: usize = 2;
const FETCHED_WHOLE: usize = 3;
const BANS: usize = 4;
const SERVED_BLOCKTXN: usize = 5;
const PUSHED_OWN: usize = 6;
const WHOLE_UNASKED: usize = 7;
const WHOLE_ASKED: usize = 8;
const WHOLE_CONNECTED: usize = 9;

fn seen(what: usize) {
    SEEN[what].fetch_add(1, Ordering::Relaxed);
}

/// The blocks the peers offer, built once for all cases.
struct Fixture {
    genesis: Genesis,
    /// `valid[k - 1]` is the valid block at height k.
    valid: Vec<Block>,
    /// At height k: the valid block's content under a header whose timestamp is 0.
    bad_header: Vec<Block>,
    /// At height k: a valid header over the valid block's transfers, the second with a
    /// broken signature.
    bad_sig: Vec<Block>,
    start_ms: u64,
}

impl Fixture {
    fn block(&self, kind: Kind, k: usize) -> &Block {
        match kind {
            Kind::Valid | Kind::DupIds => &self.valid[k - 1],
            Kind::BadHeader => &self.bad_header[k - 1],
            Kind::BadSig => &self.bad_sig[k - 1],
        }
    }

    /// Any block of the fixture by hash.
    fn by_hash(&self, hash: &BlockHash) -> Option<&Block> {
        self.valid.iter().chain(&self.bad_header).chain(&self.bad_sig).find(|b| b.hash() == *hash)
    }

    /// Which fixture block `hash` is: its kind and height.
    fn kind_of(&self, hash: &BlockHash) -> Option<(Kind, usize)> {
        [(Kind::Valid, &self.valid), (Kind::BadHeader, &self.bad_header), (Kind::BadSig, &self.bad_sig)]
            .into_iter()
            .find_map(|(kind, blocks)| Some((kind, blocks.iter().position(|b| b.hash() == *hash)? + 1)))
    }

    fn height_of_valid(&self, hash: &BlockHash) -> Option<usize> {
        if *hash == self.genesis.hash() {
            return Some(0);
        }
        self.valid.iter().position(|b| b.hash() == *hash).map(|i| i + 1)
    }
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let genesis = sim_genesis();
        let start_ms = genesis.params.timestamp_ms + 3_600_000;
        let mut chain = Chain::open_in_memory(&genesis);
        let (mut valid, mut bad_header, mut bad_sig) = (vec![], vec![], vec![]);
        for k in 1..=HEIGHT {
            let txs: Vec<SignedTransfer> = (0..PER_BLOCK)
                .map(|i| {
                    let n = (k - 1) * PER_BLOCK + i;
                    transfer(&genesis, 1 + n % 9, (n / 9) as u64)
                })
                .collect();
            let parent = chain.tip_parent_info();
            let params = *chain.params();
            let at = start_ms + k as u64;
            let miner = Address([0x42; 20]);
            let mut block = assemble_block(&params, &parent, at, miner, &txs).unwrap();
            assert!(grind(&mut block.header, 10_000_000));
            let mut header = block.header;
            header.timestamp_ms = 0;
            assert!(grind(&mut header, 10_000_000));
            bad_header.push(Block { header, transactions: block.transactions.clone() });
            let mut broken = txs.clone();
            broken[1].signature[40] ^= 0x01;
            let mut b = assemble_block(&params, &parent, at, miner, &broken).unwrap();
            assert!(grind(&mut b.header, 10_000_000));
            bad_sig.push(b);
            chain.accept_block(block.clone(), at).unwrap();
            assert_eq!(chain.tip().hash, block.hash());
            valid.push(block);
        }
        Fixture { genesis, valid, bad_header, bad_sig, start_ms }
    })
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Valid,
    BadHeader,
    BadSig,
    /// The valid block with its first short id repeated in place of the second.
    DupIds,
}

#[derive(Clone, Copy, Debug)]
enum Answer {
    /// Exactly the transfers asked for.
    Right,
    /// One transfer fewer (or one more, if none was asked for).
    WrongCount,
    /// The right count, the first with a broken signature.
    BadSig,
}

#[derive(Clone, Copy, Debug)]
enum Indexes {
    AllTransfers,
    Coinbase,
    PastEnd,
    Max,
    Empty,
}

#[derive(Clone, Debug)]
enum Op {
    /// Our RPC submits transfer `i` of valid block `k`.
    Admit {
        k: usize,
        i: usize,
    },
    SendCmpct {
        slot: u8,
        high_bandwidth: bool,
        version: u64,
    },
    Cmpct {
        slot: u8,
        k: usize,
        kind: Kind,
        nonce: u64,
        prefill_all: bool,
    },
    /// A `blocktxn` for what our node asked this peer for (or, if nothing, for valid
    /// block `k`: unasked).
    BlockTxn {
        slot: u8,
        k: usize,
        answer: Answer,
    },
    GetBlockTxn {
        slot: u8,
        k: usize,
        indexes: Indexes,
    },
    GetCompact {
        slot: u8,
        k: usize,
    },
    /// A whole block: with `answer`, the first block our node asked this peer for (if
    /// any), else block `k` of `kind`; `checked`: as the driver's reader hands on a
    /// `block` after its stateless checks (`Input::CheckedBlock`), else as the message.
    Block {
        slot: u8,
        k: usize,
        kind: Kind,
        answer: bool,
        checked: bool,
    },
    /// Our node submits valid block `k` itself, as its miner or `block_submit` would
    /// (skipped when `k` is past the next block).
    Mine {
        k: usize,
    },
    /// The peer goes, and a new one (new address) takes its slot.
    Rejoin {
        slot: u8,
    },
    /// The clock moves on by this many ms (`None`: to `u64::MAX`), then a tick.
    Advance(Option<u64>),
}

fn edge_u64() -> impl Strategy<Value = u64> {
    prop_oneof![Just(0u64), Just(1), Just(u64::MAX), any::<u64>()]
}

fn op() -> impl Strategy<Value = Op> {
    let slot = 0..SLOTS;
    let k = 1..=HEIGHT;
    let kind = prop_oneof![
        4 => Just(Kind::Valid),
        1 => Just(Kind::BadHeader),
        1 => Just(Kind::BadSig),
        1 => Just(Kind::DupIds),
    ];
    let block_kind = prop_oneof![3 => Just(Kind::Valid), 1 => Just(Kind::BadHeader), 1 => Just(Kind::BadSig)];
    let answer =
        prop_oneof![4 => Just(Answer::Right), 1 => Just(Answer::WrongCount), 1 => Just(Answer::BadSig)];
    let indexes = prop_oneof![
        3 => Just(Indexes::AllTransfers),
        1 => Just(Indexes::Coinbase),
        1 => Just(Indexes::PastEnd),
        1 => Just(Indexes::Max),
        1 => Just(Indexes::Empty),
    ];
    let timeout = sim_config().block_timeout_ms;
    let advance = prop_oneof![
        Just(Some(0u64)),
        Just(Some(1)),
        Just(Some(timeout)),
        Just(Some(timeout + 1)),
        Just(None)
    ];
    prop_oneof![
        6 => (k.clone(), 0..PER_BLOCK).prop_map(|(k, i)| Op::Admit { k, i }),
        1 => (slot.clone(), any::<bool>(), prop_oneof![Just(1u64), edge_u64()])
            .prop_map(|(slot, high_bandwidth, version)| Op::SendCmpct { slot, high_bandwidth, version }),
        8 => (slot.clone(), k.clone(), kind, edge_u64(), any::<bool>())
            .prop_map(|(slot, k, kind, nonce, prefill_all)| Op::Cmpct { slot, k, kind, nonce, prefill_all }),
        4 => (slot.clone(), k.clone(), answer).prop_map(|(slot, k, answer)| Op::BlockTxn { slot, k, answer }),
        2 => (slot.clone(), k.clone(), indexes).prop_map(|(slot, k, indexes)| Op::GetBlockTxn { slot, k, indexes }),
        1 => (slot.clone(), k.clone()).prop_map(|(slot, k)| Op::GetCompact { slot, k }),
        4 => (slot.clone(), k.clone(), block_kind, prop::bool::weighted(0.75), any::<bool>())
            .prop_map(|(slot, k, kind, answer, checked)| Op::Block { slot, k, kind, answer, checked }),
        2 => k.prop_map(|k| Op::Mine { k }),
        1 => slot.prop_map(|slot| Op::Rejoin { slot }),
        1 => advance.prop_map(Op::Advance),
    ]
}

/// What the model knows of one peer.
#[derive(Clone, Debug)]
struct ModelPeer {
    id: PeerId,
    score: u32,
    /// The `getblocktxn` our node sent it that is still open, and when.
    asked: Option<(GetBlockTxn, u64)>,
    /// Its last `sendcmpct` of our version asked for high-bandwidth mode.
    wants_push: bool,
    /// Blocks it may know of: named in a message it sent us or one we sent it.
    aware: BTreeSet<BlockHash>,
    /// Blocks our node asked it for (`getdata`, whole or compact) that it has not
    /// delivered: one peer at a time per block, as the protocol's downloads.
    requested: BTreeSet<BlockHash>,
}

impl ModelPeer {
    fn new(id: PeerId, wants_push: bool) -> ModelPeer {
        ModelPeer {
            id,
            score: 0,
            asked: None,
            wants_push,
            aware: BTreeSet::new(),
            requested: BTreeSet::new(),
        }
    }
}

/// Whether `msg` names block `hash` (its hash anywhere in the payload, or its header).
fn names(msg: &Message, hash: &BlockHash) -> bool {
    match msg {
        Message::Headers(hs) => hs.iter().any(|h| h.hash() == *hash),
        Message::CmpctBlock(c) => c.header.hash() == *hash,
        _ => msg.encode_payload().windows(32).any(|w| w == hash.0),
    }
}

struct Harness {
    node: Arc<Node>,
    proto: Protocol,
    events: broadcast::Receiver<NodeEvent>,
    now: u64,
    next_id: PeerId,
    incarnation: u8,
}

impl Harness {
    fn step(&mut self, input: Input) -> Vec<Output> {
        self.proto.step(self.now, input);
        while let Ok(ev) = self.events.try_recv() {
            self.proto.step(self.now, Input::Node(ev));
        }
        self.proto.drain()
    }

    /// A new inbound peer through the whole handshake, then `sendcmpct`.
    fn join(&mut self, f: &Fixture, high_bandwidth: bool) -> (PeerId, Vec<Output>) {
        let peer = self.next_id;
        self.next_id += 1;
        self.incarnation = self.incarnation.wrapping_add(1);
        let addr = SocketAddr::new([10, 1, self.incarnation, 1].into(), 40_000);
        let mut outs = self.step(Input::Connected { peer, addr, inbound: true });
        let work = self.node.chain().tip().total_work.to_be_bytes();
        let v = peer_version(&f.genesis, 0, work, 1_000 + peer, "10.0.0.1:7333".parse().unwrap(), "model");
        for msg in [
            Message::Version(v),
            Message::Verack,
            Message::SendCmpct(SendCmpct { high_bandwidth, version: 1 }),
        ] {
            outs.extend(self.step(Input::Received { peer, msg }));
        }
        (peer, outs)
    }

    fn height(&self, f: &Fixture) -> Option<usize> {
        f.height_of_valid(&self.node.chain().tip().hash)
    }
}

/// The message as a peer would deliver it: `None` if it would not decode.
fn on_the_wire(msg: Message) -> Option<Message> {
    Message::decode_payload(msg.command(), &msg.encode_payload()).ok()
}

fn run(ops: &[Op]) -> Result<(), TestCaseError> {
    let f = fixture();
    let node = Node::new(Chain::open_in_memory(&f.genesis), Mempool::new(1 << 20), f.genesis.clone());
    let events = node.subscribe();
    let now = f.start_ms + 1_000;
    let proto = Protocol::new(node.clone(), sim_config(), Snapshot::default(), 7, now);
    let mut h = Harness { node, proto, events, now, next_id: 1, incarnation: 0 };
    let mut peers: BTreeMap<u8, ModelPeer> = BTreeMap::new();
    for slot in 0..SLOTS {
        let (id, outs) = h.join(f, slot % 2 == 0);
        prop_assert!(!outs.iter().any(|o| matches!(o, Output::Disconnect(..))), "handshake: {outs:?}");
        peers.insert(slot, ModelPeer::new(id, slot % 2 == 0));
    }
    let timeout = sim_config().block_timeout_ms;
    let mut height = 0usize;
    // Blocks with an invalid transfer our node was handed whole, as asked: it may have
    // marked them invalid, and then a compact block of one is an offence too.
    let mut judged: BTreeSet<BlockHash> = BTreeSet::new();

    for op in ops {
        // Expectations of this step.
        let mut must_drop: BTreeSet<PeerId> = BTreeSet::new();
        let mut may_drop: BTreeSet<PeerId> = BTreeSet::new();
        let mut may_drop_any = false;
        // A block this peer was not asked for: the tip must stay where it is.
        let mut tip_stays: Option<BlockHash> = None;
        // A valid next block delivered by this peer: connected, or its missing
        // transfers asked for (exactly these indexes), or the block asked for whole.
        let mut next_block: Option<(PeerId, BlockHash, Vec<u32>)> = None;
        // The right blocktxn for the next block: connected.
        let mut must_connect: Option<BlockHash> = None;
        // A getblocktxn to answer with exactly these transfers.
        let mut must_serve: Option<(PeerId, BlockTxn)> = None;
        // A request for a block we lack: `notfound`, never a ban.
        let mut must_not_find: Option<PeerId> = None;
        let mut replaced: Option<u8> = None;
        // A block of our own: the peers it must be pushed to (`None` while syncing).
        let mut own: Option<(BlockHash, bool, Option<BTreeSet<PeerId>>)> = None;
        // Blocks the peer named in this step's message.
        let mut named: Option<(PeerId, BlockHash)> = None;

        let input = match op.clone() {
            Op::Admit { k, i } => {
                let tx = *f.valid[k - 1].transactions[1 + i].as_transfer().unwrap();
                // Refused when its nonce is used or not yet reachable: the real mempool
                // is what the compact rules below consult.
                let _ = h.node.verify_and_submit(tx, Origin::Rpc, h.now);
                Input::Tick
            }
            Op::SendCmpct { slot, high_bandwidth, version } => {
                let p = peers.get_mut(&slot).unwrap();
                if version == cairn_node::p2p::wire::CMPCT_VERSION {
                    p.wants_push = high_bandwidth;
                }
                Input::Received { peer: p.id, msg: Message::SendCmpct(SendCmpct { high_bandwidth, version }) }
            }
            Op::Cmpct { slot, k, kind, nonce, prefill_all } => {
                let p = &peers[&slot];
                let block = f.block(kind, k);
                let mut c = compact_of(block, nonce);
                if prefill_all {
                    c = cairn_node::p2p::wire::CmpctBlock {
                        header: c.header,
                        nonce: c.nonce,
                        short_ids: vec![],
                        prefilled: block
                            .transactions
                            .iter()
                            .enumerate()
                            .map(|(i, tx)| cairn_node::p2p::wire::PrefilledTx { index: i as u32, tx: *tx })
                            .collect(),
                    };
                } else if kind == Kind::DupIds {
                    c.short_ids[1] = c.short_ids[0];
                }
                let next = k == height + 1;
                if judged.contains(&block.hash()) {
                    may_drop.insert(p.id);
                }
                match kind {
                    Kind::BadHeader if next => {
                        must_drop.insert(p.id);
                    }
                    Kind::BadSig if next && prefill_all => {
                        must_drop.insert(p.id);
                    }
                    Kind::Valid if next && !prefill_all => {
                        // Positions whose transfer our mempool lacks, computed before
                        // the step.
                        let mempool = h.node.mempool();
                        let lacking: Vec<u32> = (1..block.transactions.len())
                            .filter(|i| !mempool.contains(&block.transactions[*i].txid()))
                            .map(|i| i as u32)
                            .collect();
                        next_block = Some((p.id, block.hash(), lacking));
                    }
                    Kind::Valid if next => next_block = Some((p.id, block.hash(), vec![])),
                    _ => {}
                }
                let id = p.id;
                named = Some((id, block.hash()));
                let Some(msg) = on_the_wire(Message::CmpctBlock(Box::new(c))) else { continue };
                // Whole or compact, a request is answered by the block's compact form.
                peers.get_mut(&slot).unwrap().requested.remove(&block.hash());
                Input::Received { peer: id, msg }
            }
            Op::BlockTxn { slot, k, answer } => {
                let p = peers.get_mut(&slot).unwrap();
                let msg = match &p.asked {
                    Some((g, _)) => {
                        let block = f.by_hash(&g.block_hash).expect("we only ask for the peers' blocks");
                        let mut transfers: Vec<SignedTransfer> = g
                            .indexes
                            .iter()
                            .map(|i| *block.transactions[*i as usize].as_transfer().unwrap())
                            .collect();
                        let asked_bad_block = f.bad_sig.iter().any(|b| b.hash() == g.block_hash);
                        match answer {
                            Answer::Right if asked_bad_block => {
                                must_drop.insert(p.id);
                            }
                            Answer::Right => {
                                // The completed block answers a request for it too.
                                p.requested.remove(&g.block_hash);
                                if f.height_of_valid(&g.block_hash) == Some(height + 1) {
                                    must_connect = Some(g.block_hash);
                                }
                            }
                            Answer::WrongCount => {
                                if transfers.pop().is_none() {
                                    transfers.push(*f.valid[0].transactions[1].as_transfer().unwrap());
                                }
                                must_drop.insert(p.id);
                            }
                            Answer::BadSig => {
                                // Another byte than the fixture's broken transfer has
                                // flipped, so that this breaks a good one and does not
                                // mend a broken one.
                                transfers[0].signature[41] ^= 0x01;
                                must_drop.insert(p.id);
                            }
                        }
                        let msg = BlockTxn { block_hash: g.block_hash, transfers };
                        p.asked = None;
                        msg
                    }
                    None => {
                        p.score += 10;
                        if p.score >= 100 {
                            must_drop.insert(p.id);
                        }
                        let block = &f.valid[k - 1];
                        let transfers =
                            block.transactions[1..].iter().map(|t| *t.as_transfer().unwrap()).collect();
                        BlockTxn { block_hash: block.hash(), transfers }
                    }
                };
                named = Some((p.id, msg.block_hash));
                let Some(msg) = on_the_wire(Message::BlockTxn(msg)) else { continue };
                Input::Received { peer: p.id, msg }
            }
            Op::GetBlockTxn { slot, k, indexes } => {
                let p = &peers[&slot];
                let block = &f.valid[k - 1];
                let n = block.transactions.len() as u32;
                let list: Vec<u32> = match indexes {
                    Indexes::AllTransfers => (1..n).collect(),
                    Indexes::Coinbase => vec![0],
                    Indexes::PastEnd => vec![n],
                    Indexes::Max => vec![u32::MAX],
                    Indexes::Empty => vec![],
                };
                if k <= height {
                    match indexes {
                        Indexes::AllTransfers | Indexes::Empty => {
                            let transfers = list
                                .iter()
                                .map(|i| *block.transactions[*i as usize].as_transfer().unwrap())
                                .collect();
                            must_serve = Some((p.id, BlockTxn { block_hash: block.hash(), transfers }));
                        }
                        _ => {
                            must_drop.insert(p.id);
                        }
                    }
                } else {
                    must_not_find = Some(p.id);
                }
                named = Some((p.id, block.hash()));
                let msg = Message::GetBlockTxn(GetBlockTxn { block_hash: block.hash(), indexes: list });
                let Some(msg) = on_the_wire(msg) else { continue };
                Input::Received { peer: p.id, msg }
            }
            Op::GetCompact { slot, k } => {
                let p = &peers[&slot];
                if k > height {
                    must_not_find = Some(p.id);
                }
                named = Some((p.id, f.valid[k - 1].hash()));
                Input::Received {
                    peer: p.id,
                    msg: Message::GetData(vec![InvItem::CmpctBlock(f.valid[k - 1].hash())]),
                }
            }
            Op::Block { slot, k, kind, answer, checked } => {
                let p = peers.get_mut(&slot).unwrap();
                let block = match p.requested.first() {
                    Some(hash) if answer => {
                        f.by_hash(hash).expect("we only ask for the peers' blocks").clone()
                    }
                    _ => f.block(kind, k).clone(),
                };
                let hash = block.hash();
                let input = if checked {
                    let c = h.node.block_checker().check(block, &mut DecodedKeys::default());
                    Input::CheckedBlock { peer: p.id, block: Box::new(c) }
                } else {
                    let Some(msg) = on_the_wire(Message::Block(Box::new(block))) else { continue };
                    Input::Received { peer: p.id, msg }
                };
                if p.requested.remove(&hash) {
                    seen(WHOLE_ASKED);
                    let next = height + 1;
                    match f.kind_of(&hash) {
                        Some((Kind::Valid, k)) if k == next => {
                            must_connect = Some(hash);
                            seen(WHOLE_CONNECTED);
                        }
                        // An invalid header, or the next block with an invalid transfer.
                        Some((Kind::BadHeader, _)) => {
                            must_drop.insert(p.id);
                        }
                        Some((Kind::BadSig, k)) => {
                            judged.insert(hash);
                            if k == next {
                                must_drop.insert(p.id);
                            } else {
                                // Not the next block: refused or kept aside, never
                                // stored (checked below); either way the peer may go.
                                may_drop.insert(p.id);
                            }
                        }
                        _ => {}
                    }
                } else {
                    seen(WHOLE_UNASKED);
                    p.score += 20;
                    if p.score >= 100 {
                        must_drop.insert(p.id);
                    }
                    tip_stays = Some(h.node.chain().tip().hash);
                }
                named = Some((p.id, hash));
                input
            }
            Op::Mine { k } => {
                if k > height + 1 {
                    // An orphan would connect later with its parent, two blocks in one
                    // step, which the liveness rule below does not model.
                    continue;
                }
                let block = f.valid[k - 1].clone();
                let hash = block.hash();
                let next = k == height + 1;
                let targets = (!h.proto.is_syncing()).then(|| {
                    peers
                        .values()
                        .filter(|p| p.wants_push && !p.aware.contains(&hash))
                        .map(|p| p.id)
                        .collect()
                });
                own = Some((hash, next, if next { targets } else { Some(BTreeSet::new()) }));
                h.node.submit_block(block, Origin::Rpc, h.now).unwrap();
                // Its events go in as they come (no tick first: the push is decided on
                // the protocol's state as it was).
                match h.events.try_recv() {
                    Ok(ev) => Input::Node(ev),
                    Err(_) => Input::Tick,
                }
            }
            Op::Rejoin { slot } => {
                replaced = Some(slot);
                let id = peers[&slot].id;
                Input::Disconnected { peer: id, reason: DisconnectReason::Closed }
            }
            Op::Advance(by) => {
                h.now = by.map_or(u64::MAX, |d| h.now.saturating_add(d));
                may_drop_any = true;
                for p in peers.values_mut() {
                    if p.asked.as_ref().is_some_and(|(_, since)| h.now.saturating_sub(*since) >= timeout) {
                        p.asked = None;
                    }
                }
                Input::Tick
            }
        };
        let mut outs = h.step(input);
        if let Some(slot) = replaced {
            let (id, more) = h.join(f, false);
            outs.extend(more);
            peers.insert(slot, ModelPeer::new(id, false));
        }
        if let Some((peer, hash)) = named {
            if let Some(p) = peers.values_mut().find(|p| p.id == peer) {
                p.aware.insert(hash);
            }
        }

        // The outputs against the model.
        let live: BTreeMap<PeerId, u8> = peers.iter().map(|(s, p)| (p.id, *s)).collect();
        let mut dropped: BTreeSet<PeerId> = BTreeSet::new();
        let mut sent: Vec<(PeerId, Message)> = Vec::new();
        // Compact blocks of our own block pushed this step, by peer.
        let mut pushed: BTreeMap<PeerId, usize> = BTreeMap::new();
        for out in outs {
            match out {
                Output::Send(peer, msg) => {
                    prop_assert!(
                        live.contains_key(&peer) && !dropped.contains(&peer),
                        "after {op:?}: {} sent to peer {peer}, not connected",
                        msg.name()
                    );
                    let (len, max) = (msg.encode_payload().len(), max_payload(msg.command()).unwrap());
                    prop_assert!(len <= max, "a {} of {len} bytes (limit {max})", msg.name());
                    if let (Some((hash, ..)), Message::CmpctBlock(c)) = (&own, &msg) {
                        if c.header.hash() == *hash {
                            *pushed.entry(peer).or_default() += 1;
                        }
                    }
                    sent.push((peer, msg));
                }
                Output::ServeBlock { peer, hash, serve } => {
                    if matches!(serve, Serve::PushCompact { .. }) && own.as_ref().is_some_and(|o| o.0 == hash)
                    {
                        *pushed.entry(peer).or_default() += 1;
                    }
                    if let Some(slot) = live.get(&peer) {
                        peers.get_mut(slot).unwrap().aware.insert(hash);
                    }
                    // The driver reads the stored block off the protocol thread: only a
                    // block we hold is served.
                    prop_assert!(live.contains_key(&peer) && !dropped.contains(&peer));
                    prop_assert!(
                        h.node.chain().block_bytes(&hash).unwrap().is_some(),
                        "after {op:?}: serving a block we do not hold"
                    );
                }
                Output::Disconnect(peer, reason) => {
                    prop_assert!(dropped.insert(peer), "peer {peer} dropped twice");
                    if matches!(reason, DisconnectReason::Misbehaviour(_)) {
                        seen(BANS);
                    }
                }
                Output::Connect(_) | Output::Save(_) => {}
            }
        }
        // Requests our node made: the model follows them. A block is in flight from one
        // peer at a time: asking another moves the request.
        for (peer, msg) in &sent {
            let Message::GetData(items) = msg else { continue };
            for item in items {
                if let InvItem::Block(hash) | InvItem::CmpctBlock(hash) = item {
                    for p in peers.values_mut() {
                        if p.id == *peer {
                            p.requested.insert(*hash);
                        } else {
                            p.requested.remove(hash);
                        }
                    }
                }
            }
        }
        for (peer, msg) in &sent {
            let Some(slot) = live.get(peer) else { continue };
            let p = peers.get_mut(slot).unwrap();
            for b in f.valid.iter().chain(&f.bad_header).chain(&f.bad_sig) {
                if names(msg, &b.hash()) {
                    p.aware.insert(b.hash());
                }
            }
            match msg {
                Message::GetBlockTxn(g) => {
                    seen(ASKED_BLOCKTXN);
                    p.asked = Some((g.clone(), h.now));
                }
                Message::GetData(items) if items.iter().any(|i| matches!(i, InvItem::Block(_))) => {
                    seen(FETCHED_WHOLE);
                }
                _ => {}
            }
        }
        if let Some(slot) = replaced {
            prop_assert!(!dropped.contains(&peers[&slot].id), "a fresh peer was dropped at once");
        }

        // Drops: each one the model requires, and no other.
        prop_assert!(
            must_drop.is_subset(&dropped),
            "after {op:?}: must drop {must_drop:?}, dropped {dropped:?}"
        );
        if !may_drop_any {
            let allowed: BTreeSet<PeerId> = must_drop.union(&may_drop).copied().collect();
            prop_assert!(
                dropped.is_subset(&allowed),
                "after {op:?}: dropped {dropped:?}, only {allowed:?} may go"
            );
        }
        for peer in &dropped {
            if let Some(slot) = live.get(peer).copied() {
                // The slot is taken by a fresh peer, as a real network would refill it.
                let (id, outs) = h.join(f, false);
                prop_assert!(!outs.iter().any(|o| matches!(o, Output::Disconnect(p, _) if *p == id)));
                peers.insert(slot, ModelPeer::new(id, false));
            }
        }

        // The tip: a block of the valid chain, never moving back, nothing invalid stored.
        let Some(now_height) = h.height(f) else {
            return Err(TestCaseError::fail(format!(
                "after {op:?}: the tip is not a block of the valid chain"
            )));
        };
        prop_assert!(now_height >= height, "after {op:?}: the tip moved back from {height} to {now_height}");
        if let Some(tip) = tip_stays {
            prop_assert_eq!(
                h.node.chain().tip().hash,
                tip,
                "after {:?}: a block not asked for moved the tip",
                op
            );
        }
        for b in f.bad_header.iter().chain(&f.bad_sig) {
            prop_assert!(
                h.node.chain().block_bytes(&b.hash()).unwrap().is_none(),
                "an invalid block was stored"
            );
        }

        // Liveness of the next block.
        if let Some((peer, hash, lacking)) = next_block {
            let connected = now_height == height + 1;
            let asked = sent.iter().find_map(|(p, m)| match m {
                Message::GetBlockTxn(g) if *p == peer && g.block_hash == hash => Some(g.indexes.clone()),
                _ => None,
            });
            let whole = sent.iter().any(|(p, m)| {
                *p == peer && matches!(m, Message::GetData(items) if items.contains(&InvItem::Block(hash)))
            });
            if connected {
                prop_assert!(lacking.is_empty(), "after {op:?}: connected though {lacking:?} were missing");
                seen(CONNECTED_AT_ONCE);
            } else if let Some(indexes) = asked {
                prop_assert_eq!(&indexes, &lacking, "after {:?}: asked for the wrong indexes", op);
            } else {
                prop_assert!(
                    whole || (!lacking.is_empty() && dropped.contains(&peer)),
                    "after {op:?}: the next block was neither connected, nor completed with getblocktxn, nor fetched whole"
                );
            }
        }
        if let Some(hash) = must_connect {
            prop_assert_eq!(
                h.node.chain().tip().hash,
                hash,
                "after {:?}: the right blocktxn did not connect the next block",
                op
            );
            seen(CONNECTED_BY_BLOCKTXN);
        }
        if let Some((peer, want)) = must_serve {
            let got = sent.iter().find_map(|(p, m)| match m {
                Message::BlockTxn(b) if *p == peer => Some(b.clone()),
                _ => None,
            });
            prop_assert_eq!(got.as_ref(), Some(&want), "after {:?}: getblocktxn not answered right", op);
            seen(SERVED_BLOCKTXN);
        }
        if let Some((hash, next, targets)) = &own {
            if *next {
                prop_assert_eq!(
                    h.node.chain().tip().hash,
                    *hash,
                    "after {:?}: our own next block did not connect",
                    op
                );
            }
            for (peer, n) in &pushed {
                prop_assert_eq!(*n, 1, "after {:?}: our block pushed {} times to peer {}", op, n, peer);
                let wants = live.get(peer).is_some_and(|s| peers.get(s).is_some_and(|p| p.wants_push));
                prop_assert!(
                    wants || dropped.contains(peer),
                    "after {op:?}: our block pushed to peer {peer}, which did not ask for pushes"
                );
            }
            if let Some(targets) = targets {
                for peer in targets {
                    prop_assert!(
                        pushed.contains_key(peer) || dropped.contains(peer),
                        "after {op:?}: high-bandwidth peer {peer} did not get our block ({pushed:?})"
                    );
                }
                if !targets.is_empty() {
                    seen(PUSHED_OWN);
                }
            }
        }
        if let Some(peer) = must_not_find {
            prop_assert!(!dropped.contains(&peer), "after {op:?}: asking for a block we lack is no offence");
            prop_assert!(
                sent.iter().any(|(p, m)| *p == peer && matches!(m, Message::NotFound(_))),
                "after {op:?}: no notfound for a block we lack"
            );
        }
        height = now_height;
    }
    Ok(())
}

#[test]
fn compact_relay_follows_the_model() {
    let cases = crate::model_cases(DEFAULT_CASES);
    let mut runner = crate::model_runner(cases);
    let result = runner.run(&prop::collection::vec(op(), 1..60), |ops| run(&ops));
    let n: Vec<usize> = SEEN.iter().map(|c| c.load(Ordering::Relaxed)).collect();
    eprintln!(
        "compact model: {} cases; connected at once {}, getblocktxn sent {}, connected by blocktxn {}, fetched whole {}, bans {}, getblocktxn served {}, own blocks pushed {}, whole blocks unasked {}, asked {}, connected {}",
        cases,
        n[CONNECTED_AT_ONCE],
        n[ASKED_BLOCKTXN],
        n[CONNECTED_BY_BLOCKTXN],
        n[FETCHED_WHOLE],
        n[BANS],
        n[SERVED_BLOCKTXN],
        n[PUSHED_OWN],
        n[WHOLE_UNASKED],
        n[WHOLE_ASKED],
        n[WHOLE_CONNECTED]
    );
    if let Err(e) = result {
        panic!("{e}");
    }
    assert!(
        n[CONNECTED_AT_ONCE] > 0
            && n[CONNECTED_BY_BLOCKTXN] > 0
            && n[BANS] > 0
            && n[PUSHED_OWN] > 0
            && n[WHOLE_UNASKED] > 0
            && n[WHOLE_CONNECTED] > 0,
        "the cases never reached {n:?}"
    );
}
