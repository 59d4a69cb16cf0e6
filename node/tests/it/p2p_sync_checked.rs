//! A sync through the real TCP driver (node/src/p2p/net.rs), whose readers check each
//! block the node asked for off the protocol thread ([`cairn_node::chain::BlockChecker`])
//! before the chain connects it ([`Chain::accept_checked`]). A peer serves a chain whose
//! fifth block carries a transfer with a forged signature, and a sixth block on top of
//! it. The node must end as a chain given the same blocks one by one through
//! [`Chain::accept_block`] ends: the same tip, the bad block invalid for the same
//! recorded reason and its body not stored, nothing of the block after it stored, and
//! the peer banned (a reconnect from its address is refused).
#![allow(clippy::unwrap_used)] // test helpers fail loudly

use super::p2p_sim::transfer;
use cairn_core::assemble::{assemble_block, grind};
use cairn_core::block::Block;
use cairn_core::genesis::Genesis;
use cairn_core::{Address, Target};
use cairn_node::chain::{Acceptance, BlockStatus, Chain};
use cairn_node::mempool::Mempool;
use cairn_node::node::Node;
use cairn_node::p2p::{self, P2p};
use cairn_tests::adversary::{child_info, magic_of, reconnect_refused, Closed, Peer, VersionFields};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(30);

/// A genesis an hour old (the blocks' timestamps are in its past and not in our future)
/// whose target every grind meets in a few tries.
fn genesis() -> Genesis {
    let mut genesis = Genesis::dev();
    genesis.name = "cairn-sync-checked-test".into();
    genesis.params.timestamp_ms = cairn_node::now_ms() - 3_600_000;
    let easy: Target = "7fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff".parse().unwrap();
    genesis.params.initial_target = easy;
    genesis.params.pow_limit = easy;
    genesis
}

/// Six blocks on genesis: five of three transfers, the fifth's second transfer with a
/// forged signature (its merkle root and proof of work fit its body), and a sixth with
/// one good transfer on top of the fifth.
fn chain_with_a_forged_signature(genesis: &Genesis) -> Vec<Block> {
    let mut source = Chain::open_in_memory(genesis);
    let params = genesis.params;
    let mut blocks: Vec<Block> = Vec::new();
    let mut times = vec![genesis.params.timestamp_ms];
    for k in 0..5usize {
        let parent = source.tip_parent_info();
        let mut txs: Vec<_> =
            (0..3).map(|j| transfer(genesis, 1 + 3 * (k % 3) + j, (k / 3) as u64)).collect();
        if k == 4 {
            txs[1].signature[40] ^= 0x01;
        }
        let mut b =
            assemble_block(&params, &parent, parent.timestamp_ms + 1_000, Address([0x42; 20]), &txs).unwrap();
        assert!(grind(&mut b.header, 10_000_000));
        times.push(b.header.timestamp_ms);
        if k < 4 {
            let r = source.accept_block(b.clone(), cairn_node::now_ms()).unwrap();
            assert!(matches!(r.acceptance, Acceptance::Connected), "block {k}: {:?}", r.acceptance);
            blocks.push(b);
            continue;
        }
        let info = child_info(&parent, &b.header, &times);
        let mut next = assemble_block(
            &params,
            &info,
            info.timestamp_ms + 1_000,
            Address([0x42; 20]),
            &[transfer(genesis, 1, 2)],
        )
        .unwrap();
        assert!(grind(&mut next.header, 10_000_000));
        blocks.push(b);
        blocks.push(next);
    }
    blocks
}

#[test]
fn a_sync_whose_later_block_has_a_forged_signature_ends_as_accept_block_would() {
    let genesis = genesis();
    let blocks = chain_with_a_forged_signature(&genesis);
    let (bad, after) = (blocks[4].hash(), blocks[5].hash());

    // The reference: the same blocks, one by one, through `accept_block`.
    let mut reference = Chain::open_in_memory(&genesis);
    let results: Vec<Acceptance> = blocks
        .iter()
        .map(|b| reference.accept_block(b.clone(), cairn_node::now_ms()).unwrap().acceptance)
        .collect();
    assert!(results[..4].iter().all(|a| matches!(a, Acceptance::Connected)), "{results:?}");
    assert!(matches!(&results[4], Acceptance::Invalid(_)), "{results:?}");
    let reason = reference.invalid_reason(&bad).unwrap().expect("the reference records why");

    // A node on RocksDB with its P2P layer on loopback; a peer serves it the blocks.
    let dir = tempfile::tempdir().unwrap();
    let node = Node::new(
        Chain::open(&dir.path().join("chain"), &genesis).unwrap(),
        Mempool::new(1 << 20),
        genesis.clone(),
    );
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let p2p: P2p =
        rt.block_on(p2p::start(node.clone(), super::p2p_serve::loopback_config(dir.path()))).unwrap();
    let addr = p2p.local_addr();
    let magic = magic_of(&genesis);
    let mut peer = Peer::connect(addr, magic).unwrap();
    peer.handshake(&VersionFields::for_genesis(&genesis, [0xff; 32], "sync-checked-test")).unwrap();
    let sent = peer.serve_blocks(&blocks, WAIT).unwrap();
    assert!(sent.contains(&bad), "the node never asked for the bad block: {sent:?}");
    assert_eq!(peer.wait_closed(WAIT), Closed::Yes, "the peer that sent the bad block is still connected");

    // The node's chain once it has handled what it asked for: the reference's.
    let until = Instant::now() + WAIT;
    while node.chain().tip().hash != reference.tip().hash && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(20));
    }
    {
        let chain = node.chain();
        assert_eq!(chain.tip().hash, reference.tip().hash, "tip");
        assert_eq!(chain.tip().hash, blocks[3].hash());
        for b in &blocks[..4] {
            assert_eq!(chain.block_status(&b.hash()), Some(BlockStatus::Valid));
        }
        assert_eq!(chain.block_status(&bad), Some(BlockStatus::Invalid));
        assert_eq!(chain.invalid_reason(&bad).unwrap(), Some(reason.clone()), "the bad block's reason");
        assert!(chain.block_bytes(&bad).unwrap().is_none(), "the bad block's body was stored");
        assert!(chain.block_bytes(&after).unwrap().is_none(), "the block after the bad one was stored");
        assert_ne!(chain.block_status(&after), Some(BlockStatus::Valid));
    }
    // Banned: a reconnect from the peer's address is refused.
    let local = peer.local;
    peer.close();
    assert!(reconnect_refused(local, addr, magic).unwrap(), "the peer was not banned");
    rt.block_on(p2p.shutdown());
}
