//! Chain store tests on the real RocksDB backend (temp dirs): reorgs of depth 1, 10 and
//! 100 against a fresh replay, most-work fork choice, invalid branches, duplicates and
//! out-of-order delivery, headers-first, reopen, and check-db on good and corrupted
//! databases.
#![allow(clippy::unwrap_used)] // test helpers fail loudly

use cairn_core::assemble::{assemble_block, grind};
use cairn_core::block::{Block, BlockHeader};
use cairn_core::difficulty::median_time_past;
use cairn_core::genesis::{dev_keys, Genesis};
use cairn_core::pow::Target;
use cairn_core::state::{commit_to_map, Account};
use cairn_core::transaction::{address_of, public_key_of, signing_key_from_bytes, Transfer};
use cairn_core::validation::apply_block;
use cairn_core::validation::{BlockError, ParentInfo};
use cairn_core::{Address, Amount, SignedTransfer, Work};
use cairn_node::chain::{check_db, Acceptance, BlockStatus, Chain, ChainError};
use cairn_node::store::{Batch, Column, KvStore, RocksStore};
use k256::ecdsa::SigningKey;
use std::collections::HashMap;
use std::path::Path;

const EASIEST: &str = "7fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff";

/// Dev genesis with a target so easy that every nonce has a 1-in-2 chance.
pub(crate) fn test_genesis() -> Genesis {
    let mut g = Genesis::dev();
    g.name = "cairn-store-test".into();
    let easy: Target = EASIEST.parse().unwrap();
    g.params.initial_target = easy;
    g.params.pow_limit = easy;
    g
}

/// Far enough ahead that no test block is "too new".
pub(crate) fn now(g: &Genesis) -> u64 {
    g.params.timestamp_ms + 10_000_000_000
}

/// A branch built outside the chain, with its own replayed state: the reference the
/// chain's results are compared with.
#[derive(Clone)]
pub(crate) struct Branch {
    g: Genesis,
    headers: Vec<BlockHeader>,
    pub(crate) blocks: Vec<Block>,
    pub(crate) state: HashMap<Address, Account>,
    pub(crate) keys: Vec<SigningKey>,
}

impl Branch {
    pub(crate) fn new(g: &Genesis) -> Branch {
        Branch {
            g: g.clone(),
            headers: vec![g.block().header],
            blocks: vec![g.block()],
            state: g.initial_state(),
            keys: dev_keys(),
        }
    }

    pub(crate) fn tip(&self) -> &BlockHeader {
        self.headers.last().unwrap()
    }

    fn parent_info(&self) -> ParentInfo {
        let tip = self.tip();
        let n = self.g.params.median_time_blocks as usize;
        let stamps: Vec<u64> = self.headers.iter().rev().take(n).map(|h| h.timestamp_ms).collect();
        ParentInfo {
            hash: tip.hash(),
            height: tip.height,
            timestamp_ms: tip.timestamp_ms,
            median_time_past_ms: median_time_past(&stamps),
            anchor_timestamp_ms: self.headers.get(1).map_or(tip.timestamp_ms, |h| h.timestamp_ms),
        }
    }

    /// `count` transfers from dev keys to addresses tagged by `tag`, valid on this
    /// branch's state.
    fn transfers(&self, count: usize, tag: u8) -> Vec<SignedTransfer> {
        let h = self.tip().height as usize;
        (0..count)
            .map(|i| {
                let key = &self.keys[(h * 3 + i) % self.keys.len()];
                let from = address_of(key);
                let nonce = self.state.get(&from).map_or(0, |a| a.nonce);
                let mut to = [tag; 20];
                to[0] = i as u8;
                to[1] = (h % 251) as u8;
                Transfer {
                    chain_id: self.g.params.chain_id,
                    nonce,
                    from: public_key_of(key),
                    to: Address(to),
                    amount: Amount(1_000 + h as u64),
                    fee: Amount(7),
                }
                .sign(key)
                .unwrap()
            })
            .collect()
    }

    /// Mines a block on the tip (after `dt_ms`) and applies it to the reference state.
    pub(crate) fn mine_with(&mut self, transfers: &[SignedTransfer], dt_ms: u64, tag: u8) -> Block {
        let parent = self.parent_info();
        let miner = Address([tag ^ 0x5a; 20]);
        let mut block =
            assemble_block(&self.g.params, &parent, parent.timestamp_ms + dt_ms, miner, transfers).unwrap();
        assert!(grind(&mut block.header, u64::MAX));
        let (changes, _) = apply_block(&self.state, &block, &self.g.params).expect("reference block applies");
        commit_to_map(&mut self.state, &changes);
        self.headers.push(block.header);
        self.blocks.push(block.clone());
        block
    }

    pub(crate) fn mine(&mut self, n_transfers: usize, tag: u8) -> Block {
        let t = self.transfers(n_transfers, tag);
        let dt = self.g.params.target_block_time_ms;
        self.mine_with(&t, dt, tag)
    }

    /// Mines a block that breaks a state rule (a transfer from an unfunded key). The
    /// reference state is left as it was, so later blocks build on the pre-block state.
    fn mine_invalid(&mut self) -> Block {
        let parent = self.parent_info();
        let poor = signing_key_from_bytes(&[0x42; 32]).unwrap();
        let t = Transfer {
            chain_id: self.g.params.chain_id,
            nonce: 0,
            from: public_key_of(&poor),
            to: Address([1; 20]),
            amount: Amount(1_000_000),
            fee: Amount(1),
        }
        .sign(&poor)
        .unwrap();
        let mut block = assemble_block(
            &self.g.params,
            &parent,
            parent.timestamp_ms + self.g.params.target_block_time_ms,
            Address([9; 20]),
            &[t],
        )
        .unwrap();
        assert!(grind(&mut block.header, u64::MAX));
        self.headers.push(block.header);
        self.blocks.push(block.clone());
        block
    }

    fn work(&self) -> Work {
        self.headers.iter().fold(Work::ZERO, |w, h| w.saturating_add(h.target.work()))
    }

    fn sorted_state(&self) -> Vec<(Address, Account)> {
        let mut v: Vec<_> = self.state.iter().map(|(a, b)| (*a, *b)).collect();
        v.sort_by_key(|(a, _)| *a);
        v
    }
}

fn open(dir: &Path, g: &Genesis) -> Chain {
    Chain::open(dir, g).unwrap()
}

fn accept(chain: &mut Chain, b: &Block, g: &Genesis) -> Acceptance {
    chain.accept_block(b.clone(), now(g)).unwrap().acceptance
}

fn assert_matches_branch(chain: &Chain, branch: &Branch) {
    let tip = chain.tip();
    assert_eq!(tip.hash, branch.tip().hash());
    assert_eq!(tip.height, branch.tip().height);
    assert_eq!(tip.total_work, branch.work());
    assert_eq!(
        chain.all_accounts().unwrap(),
        branch.sorted_state(),
        "account state differs from a fresh replay"
    );
    for (h, hdr) in branch.headers.iter().enumerate() {
        assert_eq!(chain.best_hash_at(h as u64), Some(hdr.hash()), "height index at {h}");
    }
    assert_eq!(chain.best_hash_at(branch.headers.len() as u64), None);
    for (h, b) in branch.blocks.iter().enumerate().skip(1) {
        for (i, tx) in b.transactions.iter().enumerate() {
            let loc = chain.tx_location(&tx.txid()).unwrap().expect("best-chain tx is indexed");
            assert_eq!((loc.block_hash, loc.height, loc.index), (b.hash(), h as u64, i as u32));
        }
    }
}

fn assert_db_consistent(dir: &Path, g: &Genesis) {
    let report = check_db(dir, g).unwrap();
    assert!(report.is_consistent(), "check-db: {report}");
}

fn reorg_of_depth(depth: usize) {
    let g = test_genesis();
    let dir = tempfile::tempdir().unwrap();
    let mut chain = open(dir.path(), &g);
    let mut common = Branch::new(&g);
    for _ in 0..5 {
        let b = common.mine(3, 1);
        assert_eq!(accept(&mut chain, &b, &g), Acceptance::Connected);
    }
    let mut a = common.clone();
    for _ in 0..depth {
        let b = a.mine(3, 2);
        assert_eq!(accept(&mut chain, &b, &g), Acceptance::Connected);
    }
    assert_matches_branch(&chain, &a);
    let mut b_branch = common.clone();
    for i in 0..=depth {
        let b = b_branch.mine(2, 3);
        let r = chain.accept_block(b, now(&g)).unwrap();
        if i < depth {
            // Equal work at i == depth - 1: the chain we are on, seen first, stays.
            assert_eq!(r.acceptance, Acceptance::SideBranch, "block {i} of the new branch");
            assert!(r.tip_change.is_none());
        } else {
            assert_eq!(r.acceptance, Acceptance::Connected);
            let change = r.tip_change.expect("the tip changed");
            assert_eq!(change.disconnected.len(), depth);
            assert_eq!(change.connected.len(), depth + 1);
            assert_eq!(change.disconnected[0].hash(), a.tip().hash(), "disconnected is tip-first");
            assert_eq!(
                change.connected.last().unwrap().hash(),
                b_branch.tip().hash(),
                "connected is parent-first"
            );
        }
    }
    assert_matches_branch(&chain, &b_branch);
    // The losing branch's own transactions are no longer indexed.
    for blk in &a.blocks[6..] {
        for tx in blk.transactions.iter() {
            assert_eq!(chain.tx_location(&tx.txid()).unwrap(), None);
        }
        assert_eq!(chain.block_status(&blk.hash()), Some(BlockStatus::Valid));
        assert!(!chain.is_on_best_chain(&blk.hash()));
    }
    drop(chain);
    assert_db_consistent(dir.path(), &g);
    let chain = open(dir.path(), &g);
    assert_matches_branch(&chain, &b_branch);
}

#[test]
fn reorg_depth_1_matches_fresh_replay() {
    reorg_of_depth(1);
}

#[test]
fn reorg_depth_10_matches_fresh_replay() {
    reorg_of_depth(10);
}

#[test]
fn reorg_depth_100_matches_fresh_replay() {
    reorg_of_depth(100);
}

#[test]
fn heavier_shorter_branch_beats_longer_lighter_one() {
    // Targets follow the timestamps: a half-life of one block time doubles the target
    // for each block a block time late and halves it for each block early.
    let mut g = test_genesis();
    // 2^250 - 1: work 64 per block at the start.
    g.params.initial_target = format!("03{}", "f".repeat(62)).parse().unwrap();
    g.params.half_life_ms = g.params.target_block_time_ms;
    let t = g.params.target_block_time_ms;
    let dir = tempfile::tempdir().unwrap();
    let mut chain = open(dir.path(), &g);

    let mut light = Branch::new(&g);
    for _ in 0..6 {
        let tr = light.transfers(1, 2);
        let b = light.mine_with(&tr, 2 * t, 2);
        assert_eq!(accept(&mut chain, &b, &g), Acceptance::Connected);
    }
    let mut heavy = Branch::new(&g);
    for _ in 0..3 {
        let tr = heavy.transfers(1, 3);
        heavy.mine_with(&tr, 1, 3);
    }
    assert!(heavy.tip().height < light.tip().height);
    assert!(heavy.work() > light.work(), "heavy {:?} light {:?}", heavy.work(), light.work());
    for b in &heavy.blocks[1..] {
        accept(&mut chain, b, &g);
    }
    assert_matches_branch(&chain, &heavy);
    assert_eq!(chain.tip().height, 3);
    drop(chain);
    assert_db_consistent(dir.path(), &g);
}

#[test]
fn invalid_block_in_heavier_branch_keeps_old_tip_and_marks_branch_invalid() {
    let g = test_genesis();
    let dir = tempfile::tempdir().unwrap();
    let mut chain = open(dir.path(), &g);
    let mut common = Branch::new(&g);
    for _ in 0..2 {
        let b = common.mine(2, 1);
        accept(&mut chain, &b, &g);
    }
    let mut a = common.clone();
    for _ in 0..2 {
        let b = a.mine(2, 2);
        assert_eq!(accept(&mut chain, &b, &g), Acceptance::Connected);
    }
    let mut bad = common.clone();
    let b1 = bad.mine(2, 3);
    let b2 = bad.mine_invalid();
    let b3 = bad.mine(2, 3);
    let b4 = bad.mine(2, 3);
    assert_eq!(accept(&mut chain, &b1, &g), Acceptance::SideBranch);
    assert_eq!(accept(&mut chain, &b2, &g), Acceptance::SideBranch);
    // b3 makes the branch heavier (three blocks past the fork against two, each of the
    // same work): the reorg finds b2 invalid and comes back.
    let r = chain.accept_block(b3.clone(), now(&g)).unwrap();
    assert_eq!(r.acceptance, Acceptance::Invalid(BlockError::InvalidAncestor(b2.hash())));
    assert!(r.tip_change.is_none(), "net, the tip did not change");
    assert_matches_branch(&chain, &a);
    // b4 builds on the invalid branch: refused at once.
    assert_eq!(accept(&mut chain, &b4, &g), Acceptance::Invalid(BlockError::InvalidAncestor(b2.hash())));
    assert_eq!(chain.block_status(&b1.hash()), Some(BlockStatus::Valid));
    for b in [&b2, &b3] {
        assert_eq!(chain.block_status(&b.hash()), Some(BlockStatus::Invalid));
        assert_eq!(accept(&mut chain, b, &g), Acceptance::Duplicate);
    }
    // b5 builds on b4, which was refused and not stored: held as an orphan (bounded
    // pool), never connected.
    let b5 = bad.mine(1, 3);
    assert!(matches!(
        accept(&mut chain, &b5, &g),
        Acceptance::Orphan { .. } | Acceptance::Invalid(BlockError::InvalidAncestor(_))
    ));
    assert_matches_branch(&chain, &a);
    drop(chain);
    assert_db_consistent(dir.path(), &g);
    // Remembered across a restart.
    let mut chain = open(dir.path(), &g);
    assert_eq!(chain.block_status(&b2.hash()), Some(BlockStatus::Invalid));
    assert_eq!(chain.block_status(&b3.hash()), Some(BlockStatus::Invalid));
    let b6 = bad.mine(1, 3);
    assert!(matches!(
        accept(&mut chain, &b6, &g),
        Acceptance::Invalid(_) | Acceptance::Duplicate | Acceptance::Orphan { .. }
    ));
    assert_matches_branch(&chain, &a);
}

#[test]
fn state_invalid_block_on_tip_is_rejected() {
    let g = test_genesis();
    let dir = tempfile::tempdir().unwrap();
    let mut chain = open(dir.path(), &g);
    let mut a = Branch::new(&g);
    let b1 = a.mine(2, 1);
    accept(&mut chain, &b1, &g);
    let mut bad = a.clone();
    let b2 = bad.mine_invalid();
    assert!(matches!(
        accept(&mut chain, &b2, &g),
        Acceptance::Invalid(BlockError::Transfer { index: 1, .. })
    ));
    assert_matches_branch(&chain, &a);
    // The valid sibling still connects.
    let b2ok = a.mine(2, 1);
    assert_eq!(accept(&mut chain, &b2ok, &g), Acceptance::Connected);
    assert_matches_branch(&chain, &a);
}

#[test]
fn bad_signature_is_reported_at_its_index() {
    let g = test_genesis();
    let dir = tempfile::tempdir().unwrap();
    let mut chain = open(dir.path(), &g);
    let mut a = Branch::new(&g);
    let mut t = a.transfers(4, 1);
    t[2].signature[40] ^= 1;
    let parent = a.parent_info();
    let mut block =
        assemble_block(&g.params, &parent, parent.timestamp_ms + 1000, Address([1; 20]), &t).unwrap();
    assert!(grind(&mut block.header, u64::MAX));
    match accept(&mut chain, &block, &g) {
        Acceptance::Invalid(BlockError::InvalidTransfer { index, .. }) => assert_eq!(index, 3),
        other => panic!("expected an invalid transfer, got {other:?}"),
    }
    assert_eq!(chain.tip().height, 0);
    let _ = a.mine(1, 1);
}

#[test]
fn the_signature_cache_vouches_only_for_the_bytes_it_verified() {
    let g = test_genesis();
    let dir = tempfile::tempdir().unwrap();
    let mut chain = open(dir.path(), &g);
    let a = Branch::new(&g);
    let good = a.transfers(4, 1);
    // As the mempool does after verifying each of them.
    for t in &good {
        chain.remember_verified(t.txid());
    }
    // A copy of a cached transfer with one signature bit flipped is a different txid:
    // it is verified, and fails.
    let mut forged = good.clone();
    forged[2].signature[40] ^= 1;
    let parent = a.parent_info();
    let mut block =
        assemble_block(&g.params, &parent, parent.timestamp_ms + 1000, Address([1; 20]), &forged).unwrap();
    assert!(grind(&mut block.header, u64::MAX));
    match accept(&mut chain, &block, &g) {
        Acceptance::Invalid(BlockError::InvalidTransfer { index, .. }) => assert_eq!(index, 3),
        other => panic!("expected an invalid transfer, got {other:?}"),
    }
    // The block of the cached transfers themselves connects.
    let mut block =
        assemble_block(&g.params, &parent, parent.timestamp_ms + 1000, Address([1; 20]), &good).unwrap();
    assert!(grind(&mut block.header, u64::MAX));
    assert_eq!(accept(&mut chain, &block, &g), Acceptance::Connected);
    assert_eq!(chain.tip().height, 1);
}

#[test]
fn duplicates_and_out_of_order_delivery_change_nothing() {
    let g = test_genesis();
    let mut reference = Branch::new(&g);
    for _ in 0..12 {
        reference.mine(2, 1);
    }
    let blocks: Vec<Block> = reference.blocks[1..].to_vec();

    // In reverse: all wait as orphans until block 1 arrives, then all connect.
    let dir = tempfile::tempdir().unwrap();
    let mut chain = open(dir.path(), &g);
    for b in blocks.iter().rev().take(blocks.len() - 1) {
        assert_eq!(accept(&mut chain, b, &g), Acceptance::Orphan { missing_parent: b.header.prev });
        assert_eq!(accept(&mut chain, b, &g), Acceptance::Duplicate);
        assert!(chain.is_known(&b.hash()));
    }
    assert_eq!(chain.orphan_count(), blocks.len() - 1);
    let r = chain.accept_block(blocks[0].clone(), now(&g)).unwrap();
    assert_eq!(r.acceptance, Acceptance::Connected);
    assert_eq!(r.tip_change.unwrap().connected.len(), blocks.len());
    assert_eq!(chain.orphan_count(), 0);
    assert_matches_branch(&chain, &reference);
    for b in &blocks {
        let r = chain.accept_block(b.clone(), now(&g)).unwrap();
        assert_eq!(r.acceptance, Acceptance::Duplicate);
        assert!(r.tip_change.is_none());
    }
    assert_matches_branch(&chain, &reference);

    // A fixed shuffle, each block twice.
    let order = [5usize, 0, 11, 3, 3, 7, 1, 2, 10, 4, 6, 9, 8, 0, 11];
    let dir2 = tempfile::tempdir().unwrap();
    let mut chain2 = open(dir2.path(), &g);
    for &i in &order {
        chain2.accept_block(blocks[i].clone(), now(&g)).unwrap();
    }
    assert_matches_branch(&chain2, &reference);
    drop(chain);
    drop(chain2);
    assert_db_consistent(dir.path(), &g);
    assert_db_consistent(dir2.path(), &g);
}

#[test]
fn equal_work_tie_keeps_the_first_seen() {
    let g = test_genesis();
    let dir = tempfile::tempdir().unwrap();
    let mut chain = open(dir.path(), &g);
    let mut a = Branch::new(&g);
    let mut b = Branch::new(&g);
    let ba = a.mine(1, 1);
    let bb = b.mine(1, 2);
    assert_eq!(accept(&mut chain, &ba, &g), Acceptance::Connected);
    assert_eq!(accept(&mut chain, &bb, &g), Acceptance::SideBranch);
    assert_eq!(chain.tip().hash, ba.hash());
    drop(chain);
    let chain = open(dir.path(), &g);
    assert_eq!(chain.tip().hash, ba.hash());
}

#[test]
fn headers_first_then_bodies_in_any_order() {
    let g = test_genesis();
    let mut reference = Branch::new(&g);
    for _ in 0..10 {
        reference.mine(2, 1);
    }
    let dir = tempfile::tempdir().unwrap();
    let mut chain = open(dir.path(), &g);
    let headers: Vec<BlockHeader> = reference.headers[1..].to_vec();
    // Not connected: the first header's parent is unknown.
    let r = chain.accept_headers(&headers[3..], now(&g)).unwrap();
    assert!(r.unconnected && r.added == 0);
    let r = chain.accept_headers(&headers, now(&g)).unwrap();
    assert_eq!((r.added, r.unconnected, r.invalid.is_none()), (10, false, true));
    assert_eq!(chain.accept_headers(&headers, now(&g)).unwrap().added, 0);
    assert_eq!(chain.best_header().hash, reference.tip().hash());
    assert_eq!(chain.tip().height, 0);
    let missing = chain.missing_blocks(100);
    assert_eq!(missing, headers.iter().map(BlockHeader::hash).collect::<Vec<_>>());
    assert_eq!(chain.missing_blocks(3).len(), 3);
    assert_eq!(chain.block_status(&headers[4].hash()), Some(BlockStatus::HeaderOnly));
    assert_eq!(chain.header(&headers[4].hash()), Some(headers[4]));

    // Bodies from the top down: stored, connected when block 1 arrives.
    for b in reference.blocks[2..].iter().rev() {
        assert_eq!(accept(&mut chain, b, &g), Acceptance::SideBranch);
    }
    assert_eq!(chain.missing_blocks(100), vec![headers[0].hash()]);
    let r = chain.accept_block(reference.blocks[1].clone(), now(&g)).unwrap();
    assert_eq!(r.acceptance, Acceptance::Connected);
    assert_eq!(r.tip_change.unwrap().connected.len(), 10);
    assert!(chain.missing_blocks(100).is_empty());
    assert_matches_branch(&chain, &reference);

    // Locator and headers_after serve the best chain.
    let loc = chain.locator();
    assert_eq!(loc[0], reference.tip().hash());
    assert_eq!(*loc.last().unwrap(), g.hash());
    let after = chain.headers_after(&[headers[5].hash()], 100);
    assert_eq!(after, headers[6..].to_vec());
    assert_eq!(chain.headers_after(&[], 3), headers[..3].to_vec());

    // A header with a broken chain link is reported.
    let mut next = reference.clone();
    let h11 = next.mine(0, 1).header;
    let mut h12 = next.mine(0, 1).header;
    h12.prev = headers[0].hash();
    let r = chain.accept_headers(&[h11, h12], now(&g)).unwrap();
    assert_eq!(r.added, 1);
    assert!(matches!(r.invalid, Some((_, BlockError::WrongParent { .. }))));
    drop(chain);
    assert_db_consistent(dir.path(), &g);
}

#[test]
fn reopen_gives_the_same_tip_and_state() {
    let g = test_genesis();
    let dir = tempfile::tempdir().unwrap();
    let mut reference = Branch::new(&g);
    {
        let mut chain = open(dir.path(), &g);
        for _ in 0..20 {
            let b = reference.mine(3, 1);
            accept(&mut chain, &b, &g);
        }
        assert_matches_branch(&chain, &reference);
    }
    let mut chain = open(dir.path(), &g);
    assert_matches_branch(&chain, &reference);
    assert_eq!(chain.tip_parent_info(), reference.parent_info());
    assert_eq!(chain.block(&reference.tip().hash()).unwrap().as_ref(), reference.blocks.last());
    // And it carries on from there.
    let b = reference.mine(1, 1);
    assert_eq!(accept(&mut chain, &b, &g), Acceptance::Connected);
    drop(chain);

    let mut other = g.clone();
    other.params.block_reward = Amount(1);
    assert!(matches!(Chain::open(dir.path(), &other), Err(ChainError::WrongGenesis { .. })));
}

#[test]
fn in_memory_chain_behaves_like_rocksdb() {
    let g = test_genesis();
    let mut chain = Chain::open_in_memory(&g);
    let mut reference = Branch::new(&g);
    for _ in 0..5 {
        let b = reference.mine(2, 1);
        assert_eq!(accept(&mut chain, &b, &g), Acceptance::Connected);
    }
    assert_matches_branch(&chain, &reference);
    let report = cairn_node::chain::check_store(chain.store(), &g).unwrap();
    assert!(report.is_consistent(), "{report}");
}

#[test]
fn check_db_passes_on_good_db_and_reports_corruption() {
    let g = test_genesis();
    let dir = tempfile::tempdir().unwrap();
    let mut reference = Branch::new(&g);
    {
        let mut chain = open(dir.path(), &g);
        for _ in 0..8 {
            let b = reference.mine(3, 1);
            accept(&mut chain, &b, &g);
        }
    }
    let report = check_db(dir.path(), &g).unwrap();
    assert!(report.is_consistent(), "{report}");
    assert_eq!(report.tip_height, 8);
    assert_eq!(report.blocks_checked, 9);

    let corrupt = |f: &dyn Fn(&mut Batch)| {
        let store = RocksStore::open(&dir.path().join("chain")).unwrap();
        let mut b = Batch::new();
        f(&mut b);
        store.write(b).unwrap();
    };
    // A balance changed behind the chain's back.
    let victim = address_of(&dev_keys()[0]);
    let acc = reference.state[&victim];
    let bumped = Account { balance: Amount(acc.balance.0 + 1), nonce: acc.nonce };
    corrupt(&|b| b.put(Column::Accounts, victim.0, cairn_core::encoding::encode(&bumped)));
    let report = check_db(dir.path(), &g).unwrap();
    assert!(!report.is_consistent());
    assert!(report.problems.iter().any(|p| p.contains("account")), "{report}");
    corrupt(&|b| b.put(Column::Accounts, victim.0, cairn_core::encoding::encode(&acc)));
    assert!(check_db(dir.path(), &g).unwrap().is_consistent());

    // A tx index entry lost.
    let txid = reference.blocks[4].transactions[1].txid();
    corrupt(&|b| b.delete(Column::TxIndex, txid.0));
    let report = check_db(dir.path(), &g).unwrap();
    assert!(report.problems.iter().any(|p| p.contains(&txid.to_hex())), "{report}");

    // A stray height entry.
    corrupt(&|b| b.put(Column::Heights, 99u64.to_be_bytes(), [7u8; 32]));
    let report = check_db(dir.path(), &g).unwrap();
    assert!(report.problems.iter().any(|p| p.contains("height index")), "{report}");
}

#[test]
fn corrupt_index_record_is_an_error_not_a_panic() {
    let g = test_genesis();
    let dir = tempfile::tempdir().unwrap();
    let mut reference = Branch::new(&g);
    {
        let mut chain = open(dir.path(), &g);
        let b = reference.mine(1, 1);
        accept(&mut chain, &b, &g);
    }
    {
        let store = RocksStore::open(&dir.path().join("chain")).unwrap();
        let mut b = Batch::new();
        b.put(Column::Index, reference.tip().hash().0, vec![1, 2, 3]);
        store.write(b).unwrap();
    }
    assert!(matches!(Chain::open(dir.path(), &g), Err(ChainError::Corrupt(_))));
}
