//! The address history index (`addrindex`) on the real RocksDB backend: reorgs of depth
//! 1 and 10 leave it equal to a rebuild from the winning branch alone; turning it off
//! and on again drops and rebuilds it, and a database from before the index (no column
//! family) or with the index in the previous layout gets it (re)built on open; check-db names a corrupted, a stray and a
//! missing entry; and paging through any address's history with any page size returns
//! every entry exactly once, newest first (a property test against a model computed
//! from the blocks).
#![allow(clippy::unwrap_used)] // test helpers fail loudly

use crate::chain_store::{now, test_genesis, Branch};
use cairn_core::block::Block;
use cairn_core::genesis::{Genesis, DEV_CHAIN_ID};
use cairn_core::transaction::{address_of, public_key_of, Transfer};
use cairn_core::{Address, Amount, SignedTransfer, Transaction};
use cairn_node::chain::{check_db, Acceptance, AddressIndexCheck, Chain, ChainOptions, HistoryCursor};
use cairn_node::store::{
    addr_entries, addr_key, direction, encode_addr_entries, meta_key, AddrEntryRecord, Batch, Column,
    KvStore, RocksStore,
};
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::path::Path;

type Entries = Vec<(Vec<u8>, Vec<u8>)>;

fn addr_column(store: &dyn KvStore) -> Entries {
    let mut out = Vec::new();
    store
        .for_each(Column::AddrIndex, &mut |k, v| {
            out.push((k.to_vec(), v.to_vec()));
            true
        })
        .unwrap();
    out
}

/// The index a fresh in-memory chain builds from `blocks` (genesis first) alone.
fn rebuilt(g: &Genesis, blocks: &[Block]) -> Entries {
    let mut chain = Chain::open_in_memory(g);
    for b in &blocks[1..] {
        assert_eq!(chain.accept_block(b.clone(), now(g)).unwrap().acceptance, Acceptance::Connected);
    }
    addr_column(chain.store())
}

fn accept(chain: &mut Chain, b: &Block, g: &Genesis) -> Acceptance {
    chain.accept_block(b.clone(), now(g)).unwrap().acceptance
}

fn assert_db_consistent(dir: &Path, g: &Genesis) {
    let report = check_db(dir, g).unwrap();
    assert!(report.is_consistent(), "check-db: {report}");
}

fn reorg_leaves_index_equal_to_rebuild(depth: usize) {
    let g = test_genesis();
    let dir = tempfile::tempdir().unwrap();
    let mut chain = Chain::open(dir.path(), &g).unwrap();
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
    assert_eq!(addr_column(chain.store()), rebuilt(&g, &a.blocks));
    let mut b_branch = common.clone();
    for _ in 0..=depth {
        let b = b_branch.mine(2, 3);
        accept(&mut chain, &b, &g);
    }
    assert_eq!(chain.tip().hash, b_branch.tip().hash(), "the longer branch won");
    let after = addr_column(chain.store());
    assert_eq!(after, rebuilt(&g, &b_branch.blocks), "index after a reorg of depth {depth}");
    // The losing branch's miner (tag 2) has no entry left; the winner's has one per block.
    let loser = Address([2 ^ 0x5a; 20]);
    assert!(chain.history(&loser, None, 100).unwrap().unwrap().entries.is_empty());
    let winner = Address([3 ^ 0x5a; 20]);
    let page = chain.history(&winner, None, 100).unwrap().unwrap();
    assert_eq!(page.entries.len(), depth + 1);
    assert!(page.entries.iter().all(|e| e.record.direction == direction::COINBASE));
    assert_eq!(page.entries[0].block_hash, b_branch.tip().hash(), "newest first");
    drop(chain);
    assert_db_consistent(dir.path(), &g);
    // Reopening keeps it as it is.
    let chain = Chain::open(dir.path(), &g).unwrap();
    assert_eq!(addr_column(chain.store()), after);
}

#[test]
fn reorg_depth_1_leaves_the_address_index_equal_to_a_rebuild() {
    reorg_leaves_index_equal_to_rebuild(1);
}

#[test]
fn reorg_depth_10_leaves_the_address_index_equal_to_a_rebuild() {
    reorg_leaves_index_equal_to_rebuild(10);
}

#[test]
fn index_off_keeps_nothing_and_turning_it_on_builds_it_from_the_blocks() {
    let g = test_genesis();
    let dir = tempfile::tempdir().unwrap();
    let off = ChainOptions { address_index: false, ..ChainOptions::default() };
    let mut reference = Branch::new(&g);
    {
        let mut chain = Chain::open_with_options(dir.path(), &g, off).unwrap();
        for _ in 0..6 {
            let b = reference.mine(3, 1);
            assert_eq!(accept(&mut chain, &b, &g), Acceptance::Connected);
        }
        assert!(addr_column(chain.store()).is_empty());
        assert_eq!(chain.history(&address_of(&reference.keys[0]), None, 10).unwrap(), None);
    }
    assert_db_consistent(dir.path(), &g);
    // Opening with the index on builds it: the same as connecting with it on.
    let want = rebuilt(&g, &reference.blocks);
    assert!(!want.is_empty());
    {
        let mut chain = Chain::open(dir.path(), &g).unwrap();
        assert_eq!(addr_column(chain.store()), want);
        // And keeps it up from there.
        let b = reference.mine(2, 1);
        assert_eq!(accept(&mut chain, &b, &g), Acceptance::Connected);
        assert_eq!(addr_column(chain.store()), rebuilt(&g, &reference.blocks));
    }
    assert_db_consistent(dir.path(), &g);
    // Off again: the entries and the marker go, and check-db agrees.
    drop(Chain::open_with_options(dir.path(), &g, off).unwrap());
    let store = RocksStore::open(&dir.path().join("chain")).unwrap();
    assert!(addr_column(&store).is_empty());
    drop(store);
    let report = check_db(dir.path(), &g).unwrap();
    assert!(report.is_consistent(), "{report}");
    assert_eq!(report.address_index, AddressIndexCheck::Off);
    assert!(report.to_string().contains("address history index: off"), "{report}");
}

/// A database written before the index existed has neither the `addrindex` column
/// family nor the marker: the first open creates the family and builds the index.
#[test]
fn a_database_from_before_the_index_gets_it_built_on_open() {
    let g = test_genesis();
    let dir = tempfile::tempdir().unwrap();
    let mut reference = Branch::new(&g);
    {
        let mut chain = Chain::open_with_options(
            dir.path(),
            &g,
            ChainOptions { address_index: false, ..ChainOptions::default() },
        )
        .unwrap();
        for _ in 0..5 {
            let b = reference.mine(3, 1);
            assert_eq!(accept(&mut chain, &b, &g), Acceptance::Connected);
        }
    }
    {
        // Remove the family, as in a data dir of the previous node version.
        let path = dir.path().join("chain");
        let opts = rocksdb::Options::default();
        let families = rocksdb::DB::list_cf(&opts, &path).unwrap();
        let mut db = rocksdb::DB::open_cf(&opts, &path, &families).unwrap();
        db.drop_cf("addrindex").unwrap();
        drop(db);
        assert!(!rocksdb::DB::list_cf(&opts, &path).unwrap().contains(&"addrindex".to_string()));
    }
    let chain = Chain::open(dir.path(), &g).unwrap();
    let entries = addr_column(chain.store());
    assert_eq!(entries, rebuilt(&g, &reference.blocks));
    let page = chain.history(&address_of(&reference.keys[0]), None, 100).unwrap().unwrap();
    assert!(!page.entries.is_empty());
    drop(chain);
    let report = check_db(dir.path(), &g).unwrap();
    assert!(report.is_consistent(), "{report}");
    assert_eq!(report.address_index, AddressIndexCheck::Compared(entries.len() as u64));
    assert!(
        report.to_string().contains(&format!("address history index: {} keys", entries.len())),
        "{report}"
    );
}

/// A database whose index has the version-1 layout (a key per entry: address, height,
/// index in block) gets it rebuilt in today's layout (a key per address and block) on
/// open, because its marker names the old version; history and check-db then agree.
#[test]
fn an_index_of_the_previous_layout_is_rebuilt_on_open() {
    let g = test_genesis();
    let dir = tempfile::tempdir().unwrap();
    let mut reference = Branch::new(&g);
    {
        let mut chain = Chain::open(dir.path(), &g).unwrap();
        for _ in 0..5 {
            let b = reference.mine(3, 1);
            assert_eq!(accept(&mut chain, &b, &g), Acceptance::Connected);
        }
        // Key 0 sends twice and receives once in one block: three entries, one key.
        let t = transfers(&reference, &[(0, 1), (0, 2), (1, 0)]);
        let b = reference.mine_with(&t, g.params.target_block_time_ms, 1);
        assert_eq!(accept(&mut chain, &b, &g), Acceptance::Connected);
    }
    let want = rebuilt(&g, &reference.blocks);
    {
        // Rewrite the index as version 1 wrote it.
        let store = RocksStore::open(&dir.path().join("chain")).unwrap();
        let mut b = Batch::new();
        for (k, _) in addr_column(&store) {
            b.delete(Column::AddrIndex, k);
        }
        let mut old_keys = 0;
        for (height, block) in reference.blocks.iter().enumerate().skip(1) {
            for (key, entries) in addr_entries(block, height as u64) {
                for (index, record) in entries {
                    let mut old = key.to_vec();
                    old.extend_from_slice(&index.to_be_bytes());
                    b.put(Column::AddrIndex, old, record.encode().to_vec());
                    old_keys += 1;
                }
            }
        }
        b.put(Column::Meta, meta_key::ADDR_INDEX.to_vec(), vec![1]);
        store.write(b).unwrap();
        assert_eq!(addr_column(&store).len(), old_keys);
        assert!(old_keys > want.len(), "some address has two entries in one block");
    }
    let report = check_db(dir.path(), &g).unwrap();
    assert!(
        report.problems.iter().any(|p| p.contains("expected version 2")),
        "check-db should name the old layout: {report}"
    );
    let chain = Chain::open(dir.path(), &g).unwrap();
    assert_eq!(addr_column(chain.store()), want);
    let page = chain.history(&address_of(&reference.keys[0]), None, 100).unwrap().unwrap();
    assert!(!page.entries.is_empty());
    drop(chain);
    assert_db_consistent(dir.path(), &g);
}

#[test]
fn check_db_names_a_corrupted_a_stray_and_a_missing_address_index_entry() {
    let g = test_genesis();
    let dir = tempfile::tempdir().unwrap();
    let mut reference = Branch::new(&g);
    {
        let mut chain = Chain::open(dir.path(), &g).unwrap();
        for _ in 0..4 {
            let b = reference.mine(3, 1);
            accept(&mut chain, &b, &g);
        }
    }
    assert_db_consistent(dir.path(), &g);
    let write = |f: &dyn Fn(&mut Batch)| {
        let store = RocksStore::open(&dir.path().join("chain")).unwrap();
        let mut b = Batch::new();
        f(&mut b);
        store.write(b).unwrap();
    };
    // The first transfer of block 2, as its recipient sees it, with the amount changed.
    let Transaction::Transfer(st) = reference.blocks[2].transactions[1] else { panic!("a transfer") };
    let key = addr_key(&st.transfer.to, 2);
    let (_, good) = addr_entries(&reference.blocks[2], 2)
        .into_iter()
        .find(|(k, _)| *k == key)
        .expect("the recipient has entries in block 2");
    assert_eq!(good[0].0, 1, "the first entry is the block's first transfer");
    assert_eq!(
        good[0].1,
        AddrEntryRecord {
            txid: st.txid(),
            direction: direction::IN,
            counterparty: st.transfer.sender(),
            amount: st.transfer.amount.0,
            fee: st.transfer.fee.0,
            nonce: st.transfer.nonce,
        }
    );
    let mut bad = good.clone();
    bad[0].1.amount += 1;
    write(&|b| b.put(Column::AddrIndex, key, encode_addr_entries(&bad)));
    let report = check_db(dir.path(), &g).unwrap();
    let named = format!("{} at height 2", st.transfer.to);
    assert!(
        report.problems.iter().any(|p| p.contains(&named) && p.contains("address index")),
        "check-db should name {named}: {report}"
    );
    assert_eq!(report.problems.len(), 1, "{report}");
    write(&|b| b.put(Column::AddrIndex, key, encode_addr_entries(&good)));
    assert_db_consistent(dir.path(), &g);

    // A stray entry (a block that was never connected at that height) and a lost one.
    let stray = addr_key(&Address([0xee; 20]), 3);
    write(&|b| {
        b.put(Column::AddrIndex, stray, encode_addr_entries(&good));
        b.delete(Column::AddrIndex, key);
    });
    let report = check_db(dir.path(), &g).unwrap();
    let stray_name = format!("{} at height 3", Address([0xee; 20]));
    assert!(report.problems.iter().any(|p| p.contains(&stray_name)), "{report}");
    assert!(report.problems.iter().any(|p| p.contains(&named) && p.contains("missing")), "{report}");
    // A value of the wrong size is a problem, not a panic.
    write(&|b| b.put(Column::AddrIndex, key, vec![1, 2, 3]));
    let report = check_db(dir.path(), &g).unwrap();
    assert!(report.problems.iter().any(|p| p.contains(&named) && p.contains("3 bytes")), "{report}");
}

/// What the history of each address must be: every (height, index, direction) from
/// the blocks, newest first.
fn model(blocks: &[Block]) -> BTreeMap<Address, Vec<(u64, u32, u8)>> {
    let mut m: BTreeMap<Address, Vec<(u64, u32, u8)>> = BTreeMap::new();
    for (h, b) in blocks.iter().enumerate().skip(1) {
        for (i, tx) in b.transactions.iter().enumerate() {
            let at = (h as u64, i as u32);
            match tx {
                Transaction::Coinbase(cb) => {
                    m.entry(cb.to).or_default().push((at.0, at.1, direction::COINBASE))
                }
                Transaction::Transfer(st) => {
                    let (from, to) = (st.transfer.sender(), st.transfer.to);
                    if from == to {
                        m.entry(from).or_default().push((at.0, at.1, direction::SELF));
                    } else {
                        m.entry(from).or_default().push((at.0, at.1, direction::OUT));
                        m.entry(to).or_default().push((at.0, at.1, direction::IN));
                    }
                }
            }
        }
    }
    for v in m.values_mut() {
        v.reverse();
    }
    m
}

/// Transfers among the dev keys (and to themselves), picked by `plan`: (from, to) pairs.
fn transfers(branch: &Branch, plan: &[(usize, usize)]) -> Vec<SignedTransfer> {
    let mut nonces: BTreeMap<usize, u64> = BTreeMap::new();
    plan.iter()
        .map(|&(f, t)| {
            let key = &branch.keys[f];
            let from = address_of(key);
            let next = nonces.entry(f).or_insert_with(|| branch.state.get(&from).map_or(0, |a| a.nonce));
            let nonce = *next;
            *next += 1;
            Transfer {
                chain_id: DEV_CHAIN_ID,
                nonce,
                from: public_key_of(key),
                to: address_of(&branch.keys[t]),
                amount: Amount(10 + t as u64),
                fee: Amount(1 + f as u64),
            }
            .sign(key)
            .unwrap()
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    /// Paging with any page size visits every entry exactly once, newest first, and
    /// the pages' cursors chain up; a cursor from the middle resumes right after it.
    #[test]
    fn pagination_returns_every_entry_exactly_once(
        blocks in prop::collection::vec(prop::collection::vec((0usize..4, 0usize..4), 0..5), 1..9),
        limit in 1usize..6,
    ) {
        let g = test_genesis();
        let mut chain = Chain::open_in_memory(&g);
        let mut branch = Branch::new(&g);
        for (n, plan) in blocks.iter().enumerate() {
            let t = transfers(&branch, plan);
            // Two miners, so coinbases interleave with other entries.
            let tag = if n % 2 == 0 { 1 } else { 2 };
            let b = branch.mine_with(&t, g.params.target_block_time_ms, tag);
            prop_assert_eq!(chain.accept_block(b, now(&g)).unwrap().acceptance, Acceptance::Connected);
        }
        let model = model(&branch.blocks);
        prop_assert!(!model.is_empty());
        for (address, want) in &model {
            let mut got = Vec::new();
            let mut cursor: Option<HistoryCursor> = None;
            loop {
                let page = chain.history(address, cursor, limit).unwrap().unwrap();
                prop_assert!(page.entries.len() <= limit);
                for e in &page.entries {
                    prop_assert_eq!(chain.best_hash_at(e.height), Some(e.block_hash));
                    got.push((e.height, e.index, e.record.direction));
                }
                match page.next {
                    Some(next) => {
                        prop_assert_eq!(page.entries.len(), limit, "only a full page has a next one");
                        let last = page.entries.last().unwrap();
                        prop_assert_eq!((next.height, next.index), (last.height, last.index));
                        cursor = Some(next);
                    }
                    None => break,
                }
            }
            prop_assert_eq!(&got, want, "history of {}", address);
            // Resuming from any entry gives exactly the ones after it.
            if let Some(&(h, i, _)) = want.get(want.len() / 2) {
                let page = chain.history(address, Some(HistoryCursor { height: h, index: i }), 1000).unwrap().unwrap();
                let rest: Vec<_> = page.entries.iter().map(|e| (e.height, e.index, e.record.direction)).collect();
                prop_assert_eq!(&rest[..], &want[want.len() / 2 + 1..]);
                prop_assert_eq!(page.next, None);
            }
        }
        // An address that never appeared has an empty history.
        let page = chain.history(&Address([0x77; 20]), None, limit).unwrap().unwrap();
        prop_assert!(page.entries.is_empty() && page.next.is_none());
    }
}
