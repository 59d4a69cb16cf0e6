//! Blocks served through the real TCP driver (node/src/p2p/net.rs): an in-process node
//! on a RocksDB chain, with its P2P layer listening on loopback, and a peer that speaks
//! the wire protocol over a socket (`cairn_tests::adversary::Peer`). A `block` answer is
//! the stored bytes, byte for byte; a block the node does not have gets `notfound`,
//! whether the index says so at once or the driver's read finds no body; a compact
//! block is built once and every peer gets the same bytes. And, on a protocol instance
//! driven by hand, which blocks are asked for compact.
#![allow(clippy::unwrap_used)] // test helpers fail loudly

use super::p2p_sim::{peer_version, sim_config, sim_genesis, transfer};
use cairn_core::assemble::{assemble_block, grind};
use cairn_core::block::Block;
use cairn_core::genesis::Genesis;
use cairn_core::transaction::{Coinbase, Transaction};
use cairn_core::{Address, Amount, BlockHash, Target};
use cairn_node::chain::{Acceptance, BlockStatus, Chain};
use cairn_node::mempool::Mempool;
use cairn_node::node::{Node, Origin};
use cairn_node::p2p::addrbook::Snapshot;
use cairn_node::p2p::protocol::compact::compact_of;
use cairn_node::p2p::protocol::{Input, Output, Protocol};
use cairn_node::p2p::wire::{command, InvItem, Message, SendCmpct, CMPCT_VERSION};
use cairn_node::p2p::{self, P2p};
use cairn_tests::adversary::{child_info, magic_of, Peer, VersionFields};
use std::sync::Arc;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(20);

/// A node with a few stored blocks of transfers, serving them over real TCP.
struct Served {
    _dir: tempfile::TempDir,
    rt: tokio::runtime::Runtime,
    node: Arc<Node>,
    p2p: Option<P2p>,
    genesis: Genesis,
    /// The best chain's blocks after genesis, lowest first.
    blocks: Vec<BlockHash>,
}

impl Served {
    fn start(blocks: usize) -> Served {
        let dir = tempfile::tempdir().unwrap();
        let mut genesis = Genesis::dev();
        genesis.name = "cairn-serve-test".into();
        // An hour old (blocks' timestamps are in its past and not in our future), and a
        // target every grind meets in a few tries.
        genesis.params.timestamp_ms = cairn_node::now_ms() - 3_600_000;
        let easy: Target =
            "7fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff".parse().unwrap();
        genesis.params.initial_target = easy;
        genesis.params.pow_limit = easy;
        let chain = Chain::open(&dir.path().join("chain"), &genesis).unwrap();
        let node = Node::new(chain, Mempool::new(1 << 20), genesis.clone());
        let mut hashes = Vec::new();
        for k in 0..blocks {
            // Three transfers a block, each from its own dev account.
            let txs: Vec<_> =
                (0..3).map(|j| transfer(&genesis, 1 + 3 * (k % 3) + j, (k / 3) as u64)).collect();
            let block = next_block(&node, &txs);
            hashes.push(block.hash());
            let (r, _) = node.submit_block(block, Origin::Local, cairn_node::now_ms()).unwrap();
            assert!(matches!(r.acceptance, Acceptance::Connected), "{:?}", r.acceptance);
        }
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let p2p = rt.block_on(p2p::start(node.clone(), loopback_config(dir.path()))).unwrap();
        Served { _dir: dir, rt, node, p2p: Some(p2p), genesis, blocks: hashes }
    }

    /// A peer past the handshake.
    fn peer(&self, ua: &str) -> Peer {
        let addr = self.p2p.as_ref().unwrap().local_addr();
        let mut p = Peer::connect(addr, magic_of(&self.genesis)).unwrap();
        p.handshake(&VersionFields::for_genesis(&self.genesis, [0; 32], ua)).unwrap();
        p
    }

    fn stored(&self, hash: &BlockHash) -> Vec<u8> {
        self.node.chain().block_bytes(hash).unwrap().expect("stored")
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(p2p) = self.p2p.take() {
            self.rt.block_on(p2p.shutdown());
        }
    }
}

/// A valid next block on the node's tip holding `txs` (not submitted).
/// P2P on a loopback port of its own, no seeds, no outbound dials: a node that only
/// answers the test's peers.
pub(super) fn loopback_config(data_dir: &std::path::Path) -> p2p::P2pConfig {
    p2p::P2pConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        seeds: vec![],
        max_peers: 8,
        data_dir: data_dir.to_path_buf(),
        progress_interval_ms: 5_000,
        external_addrs: vec![],
        dns_seeds: vec![],
        no_seeds: true,
        connect_only: false,
    }
}

fn next_block(node: &Node, txs: &[cairn_core::SignedTransfer]) -> Block {
    let (parent, params) = {
        let chain = node.chain();
        (chain.tip_parent_info(), *chain.params())
    };
    let now = cairn_node::now_ms().max(parent.timestamp_ms + 1);
    let mut block = assemble_block(&params, &parent, now, Address([0x42; 20]), txs).unwrap();
    assert!(grind(&mut block.header, 10_000_000));
    block
}

fn getdata(items: Vec<InvItem>) -> Vec<u8> {
    Message::GetData(items).encode_payload()
}

/// The answers to a `getdata` (`block`, `cmpctblock`, `notfound`, `tx`) with their raw
/// payloads, in the order they came, until `n` have; pings are answered, other messages
/// skipped.
fn answers_raw(p: &mut Peer, n: usize) -> Vec<(Message, Vec<u8>)> {
    let mut out = Vec::new();
    while out.len() < n {
        let f = p.recv(WAIT).unwrap().expect("an answer in time");
        match f.command {
            command::BLOCK | command::CMPCTBLOCK | command::NOTFOUND | command::TX => {
                out.push((Message::decode_payload(f.command, &f.payload).unwrap(), f.payload));
            }
            command::PING => p.send(command::PONG, &f.payload).unwrap(),
            _ => {}
        }
    }
    out
}

fn answers(p: &mut Peer, n: usize) -> Vec<Message> {
    answers_raw(p, n).into_iter().map(|(m, _)| m).collect()
}

#[test]
fn a_block_is_served_byte_for_byte_as_the_chain_stored_it() {
    let s = Served::start(3);
    let mut p = s.peer("serve-test");
    let unknown = BlockHash([0xab; 32]);
    let (b1, b2) = (s.blocks[0], s.blocks[1]);
    p.send(command::GETDATA, &getdata(vec![InvItem::Block(b2), InvItem::Block(unknown), InvItem::Block(b1)]))
        .unwrap();
    let got = answers_raw(&mut p, 3);
    // The blocks in the order asked, then one `notfound` for what the node lacks.
    assert!(matches!(&got[0].0, Message::Block(b) if b.hash() == b2), "{got:?}");
    assert!(matches!(&got[1].0, Message::Block(b) if b.hash() == b1), "{got:?}");
    assert_eq!(got[2].0, Message::NotFound(vec![InvItem::Block(unknown)]));
    assert_eq!(got[0].1, s.stored(&b2), "block {b2} is not the stored bytes");
    assert_eq!(got[1].1, s.stored(&b1), "block {b1} is not the stored bytes");
}

#[test]
fn a_block_the_node_does_not_have_gets_notfound() {
    let s = Served::start(1);
    let mut p = s.peer("serve-test");
    // Not indexed at all: the protocol answers at once, for a block or a compact block.
    let unknown = BlockHash([0xcd; 32]);
    p.send(command::GETDATA, &getdata(vec![InvItem::Block(unknown)])).unwrap();
    assert_eq!(answers(&mut p, 1), vec![Message::NotFound(vec![InvItem::Block(unknown)])]);
    p.send(command::GETDATA, &getdata(vec![InvItem::CmpctBlock(unknown)])).unwrap();
    assert_eq!(answers(&mut p, 1), vec![Message::NotFound(vec![InvItem::CmpctBlock(unknown)])]);

    // Indexed but without a body: block A pays its miner one unit too much (invalid,
    // its body stored), and B, a child of A known by its header only, is invalid by
    // ancestry. The index cannot tell whether an invalid block has a body, so B goes
    // to the driver, whose read finds none: `notfound` from the driver.
    let (parent, recent) = {
        let chain = s.node.chain();
        let tip = chain.tip();
        (chain.tip_parent_info(), vec![chain.header(&tip.hash).unwrap().timestamp_ms])
    };
    let mut a = next_block(&s.node, &[]);
    let reward = s.genesis.params.block_reward.0;
    a.transactions[0] = Transaction::Coinbase(Coinbase {
        height: a.header.height,
        to: Address([0x42; 20]),
        amount: Amount(reward + 1),
    });
    a.header.merkle_root = a.compute_merkle_root();
    assert!(grind(&mut a.header, 10_000_000));
    let mut times = recent;
    times.push(a.header.timestamp_ms);
    let a_info = child_info(&parent, &a.header, &times);
    let params = s.genesis.params;
    let mut b =
        assemble_block(&params, &a_info, a.header.timestamp_ms + 1, Address([0x42; 20]), &[]).unwrap();
    assert!(grind(&mut b.header, 10_000_000));
    let now = cairn_node::now_ms();
    let r = s.node.chain().accept_headers(&[a.header, b.header], now).unwrap();
    assert_eq!(r.added, 2);
    let (r, _) = s.node.submit_block(a.clone(), Origin::Local, now).unwrap();
    assert!(matches!(r.acceptance, Acceptance::Invalid(_)), "{:?}", r.acceptance);
    assert_eq!(s.node.chain().block_status(&b.hash()), Some(BlockStatus::Invalid));
    assert!(s.node.chain().block_bytes(&b.hash()).unwrap().is_none());
    p.send(command::GETDATA, &getdata(vec![InvItem::Block(b.hash())])).unwrap();
    assert_eq!(answers(&mut p, 1), vec![Message::NotFound(vec![InvItem::Block(b.hash())])]);
    p.send(command::GETDATA, &getdata(vec![InvItem::CmpctBlock(b.hash())])).unwrap();
    assert_eq!(answers(&mut p, 1), vec![Message::NotFound(vec![InvItem::CmpctBlock(b.hash())])]);
    // The peer is still served.
    let b1 = s.blocks[0];
    p.send(command::GETDATA, &getdata(vec![InvItem::Block(b1)])).unwrap();
    assert!(matches!(&answers(&mut p, 1)[0], Message::Block(x) if x.hash() == b1));
}

#[test]
fn a_compact_block_is_built_once_and_every_peer_gets_the_same_bytes() {
    let s = Served::start(2);
    let tip = s.blocks[1];
    let block = s.node.chain().block(&tip).unwrap().unwrap();
    let mut compact = Vec::new();
    for ua in ["serve-a", "serve-b"] {
        let mut p = s.peer(ua);
        p.send(command::GETDATA, &getdata(vec![InvItem::CmpctBlock(tip)])).unwrap();
        let got = answers(&mut p, 1);
        let Message::CmpctBlock(c) = &got[0] else { panic!("not a cmpctblock: {got:?}") };
        // The compact form of the stored block: header, coinbase prefilled, a short id
        // for each transfer under the nonce it carries.
        assert_eq!(**c, compact_of(&block, c.nonce));
        assert_eq!(c.short_ids.len(), 3);
        compact.push(got[0].encode_payload());
    }
    assert_eq!(compact[0], compact[1], "one compact form (one nonce) per block");
}

/// A node fetching several blocks (a sync) asks for them whole: its mempool cannot hold
/// their transfers. Only a lone new block, the next on its tip, is asked for compact.
#[test]
fn a_sync_fetches_blocks_whole_and_a_lone_new_block_compact() {
    let genesis = sim_genesis();
    let t0 = genesis.params.timestamp_ms + 3_600_000;
    // Four blocks, made on another node.
    let source = Node::new(Chain::open_in_memory(&genesis), Mempool::new(1 << 20), genesis.clone());
    let mut blocks = Vec::new();
    for k in 0..4u64 {
        let (parent, params) = {
            let chain = source.chain();
            (chain.tip_parent_info(), *chain.params())
        };
        let mut b = assemble_block(&params, &parent, t0 + 1_000 * k, Address([7; 20]), &[]).unwrap();
        assert!(grind(&mut b.header, 10_000_000));
        source.submit_block(b.clone(), Origin::Local, t0 + 1_000 * k + 1).unwrap();
        blocks.push(b);
    }
    let node = Node::new(Chain::open_in_memory(&genesis), Mempool::new(1 << 20), genesis.clone());
    let mut now = t0 + 10_000;
    let mut proto = Protocol::new(node.clone(), sim_config(), Snapshot::default(), 7, now);
    let mut step = |proto: &mut Protocol, input: Input| {
        now += 10;
        proto.step(now, input);
        proto.drain()
    };
    let peer = 1;
    let addr = "10.0.1.1:40000".parse().unwrap();
    step(&mut proto, Input::Connected { peer, addr, inbound: true });
    let work = source.chain().tip().total_work.to_be_bytes();
    let v = peer_version(&genesis, 4, work, 1_001, "10.0.0.1:7333".parse().unwrap(), "serve-test");
    step(&mut proto, Input::Received { peer, msg: Message::Version(v) });
    let outs = step(&mut proto, Input::Received { peer, msg: Message::Verack });
    assert!(outs.iter().any(|o| matches!(o, Output::Send(1, Message::GetHeaders(_)))), "{outs:?}");
    let sendcmpct = SendCmpct { high_bandwidth: false, version: CMPCT_VERSION };
    step(&mut proto, Input::Received { peer, msg: Message::SendCmpct(sendcmpct) });
    let getdata = |outs: &[Output]| -> Vec<InvItem> {
        outs.iter()
            .filter_map(|o| {
                if let Output::Send(1, Message::GetData(items)) = o {
                    Some(items.clone())
                } else {
                    None
                }
            })
            .flatten()
            .collect()
    };
    // Three new blocks: fetched whole, the next one on our tip included.
    let headers = blocks[..3].iter().map(|b| b.header).collect();
    let outs = step(&mut proto, Input::Received { peer, msg: Message::Headers(headers) });
    let want: Vec<InvItem> = blocks[..3].iter().map(|b| InvItem::Block(b.hash())).collect();
    assert_eq!(getdata(&outs), want, "{outs:?}");
    for b in &blocks[..3] {
        step(&mut proto, Input::Received { peer, msg: Message::Block(Box::new(b.clone())) });
    }
    assert_eq!(node.chain().tip().hash, blocks[2].hash());
    // Then one new block: compact.
    let outs =
        step(&mut proto, Input::Received { peer, msg: Message::Inv(vec![InvItem::Block(blocks[3].hash())]) });
    assert!(outs.iter().any(|o| matches!(o, Output::Send(1, Message::GetHeaders(_)))), "{outs:?}");
    let outs = step(&mut proto, Input::Received { peer, msg: Message::Headers(vec![blocks[3].header]) });
    assert_eq!(getdata(&outs), vec![InvItem::CmpctBlock(blocks[3].hash())], "{outs:?}");
}
