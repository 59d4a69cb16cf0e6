//! Unit tests of [`Chain`] that need its insides or a store of its own (the scenario
//! tests are in `node/tests/chain_*.rs`).
#![allow(clippy::unwrap_used)] // test helpers fail loudly

use super::*;
use crate::store::{Batch, Column, KvStore, MemStore, StoreError};
use cairn_core::assemble::{assemble_block, grind};
use cairn_core::encoding;
use cairn_core::pow::Target;
use cairn_core::validation::ParentInfo;

/// Dev genesis with a target so easy that every nonce has a 1-in-2 chance.
fn easy_genesis() -> Genesis {
    let mut g = Genesis::dev();
    g.name = "cairn-chain-unit-test".into();
    let easy: Target = "7fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff".parse().unwrap();
    g.params.initial_target = easy;
    g.params.pow_limit = easy;
    g
}

/// Far enough ahead that no test block is "too new".
fn now(g: &Genesis) -> u64 {
    g.params.timestamp_ms + 10_000_000_000
}

/// A coinbase-only block on the chain's tip, a block time after it.
fn mine_on_tip(chain: &Chain, tag: u8) -> Block {
    let parent = chain.tip_parent_info();
    let t = parent.timestamp_ms + chain.params().target_block_time_ms;
    let mut block = assemble_block(chain.params(), &parent, t, Address([tag; 20]), &[]).unwrap();
    assert!(grind(&mut block.header, u64::MAX));
    block
}

#[test]
fn block_bytes_are_the_stored_canonical_encoding() {
    let g = easy_genesis();
    let mut chain = Chain::open_in_memory(&g);
    let block = mine_on_tip(&chain, 1);
    let hash = block.hash();
    assert_eq!(chain.block_bytes(&hash).unwrap(), None, "unknown before it is accepted");
    assert_eq!(chain.accept_block(block.clone(), now(&g)).unwrap().acceptance, Acceptance::Connected);
    assert_eq!(chain.block_bytes(&hash).unwrap(), Some(encoding::encode(&block)));
    assert_eq!(chain.block_bytes(&g.hash()).unwrap(), Some(encoding::encode(&g.block())));
    assert_eq!(chain.block_bytes(&BlockHash([7; 32])).unwrap(), None);
}

/// A fresh chain writes its genesis into the store's files before it opens: a genesis of
/// many allocations leaves nothing in the write-ahead log for a restart to replay and
/// no flush of it for the first blocks to wait behind, and every allocation reads back.
#[test]
#[cfg(feature = "rocksdb")]
fn a_large_genesis_is_flushed_when_the_chain_is_created() {
    use cairn_core::genesis::Allocation;
    use cairn_core::Amount;
    let mut g = easy_genesis();
    let address = |i: u32| {
        let mut a = [0u8; 20];
        a[..4].copy_from_slice(&i.to_be_bytes());
        Address(a)
    };
    g.allocations.extend(
        (0..50_000u32).map(|i| Allocation { address: address(i), balance: Amount(u64::from(i) + 1) }),
    );
    let dir = tempfile::tempdir().unwrap();
    let chain = Chain::open(dir.path(), &g).unwrap();
    let files: Vec<(String, u64)> = std::fs::read_dir(dir.path().join("chain"))
        .unwrap()
        .map(|e| e.unwrap())
        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.metadata().unwrap().len()))
        .collect();
    let wal: u64 = files.iter().filter(|(n, _)| n.ends_with(".log")).map(|(_, l)| l).sum();
    let sst: u64 = files.iter().filter(|(n, _)| n.ends_with(".sst")).map(|(_, l)| l).sum();
    // The genesis batch is about 50,000 x 40 bytes; what stays in the WAL is at most
    // the open's own small writes.
    assert!(wal < 64 * 1024, "the WAL holds {wal} bytes after opening: {files:?}");
    assert!(sst > 1_000_000, "the SST files hold {sst} bytes: {files:?}");
    for i in [0, 1, 24_999, 49_999] {
        assert_eq!(chain.account(&address(i)).unwrap().balance, Amount(u64::from(i) + 1));
    }
}

/// Data dirs written before the `peers` column family was dropped from the schema
/// still open: the obsolete family is dropped, everything else is kept.
#[test]
#[cfg(feature = "rocksdb")]
fn a_store_with_the_obsolete_peers_column_family_opens() {
    let g = easy_genesis();
    let dir = tempfile::tempdir().unwrap();
    let chain_dir = dir.path().join("chain");
    let tip = {
        let mut chain = Chain::open(dir.path(), &g).unwrap();
        for tag in 1..=3 {
            let block = mine_on_tip(&chain, tag);
            assert_eq!(chain.accept_block(block, now(&g)).unwrap().acceptance, Acceptance::Connected);
        }
        chain.tip()
    };
    // Lay the database out as the earlier node did: its column families plus `peers`.
    {
        let mut opts = rocksdb::Options::default();
        opts.create_missing_column_families(true);
        let names = Column::ALL.iter().map(|c| c.name()).chain(["peers"]);
        let db = rocksdb::DB::open_cf(&opts, &chain_dir, names).unwrap();
        db.put_cf(db.cf_handle("peers").unwrap(), b"k", b"v").unwrap();
    }
    assert!(rocksdb::DB::list_cf(&rocksdb::Options::default(), &chain_dir)
        .unwrap()
        .contains(&"peers".to_string()));

    let chain = Chain::open(dir.path(), &g).unwrap();
    assert_eq!(chain.tip(), tip);
    drop(chain);
    let families = rocksdb::DB::list_cf(&rocksdb::Options::default(), &chain_dir).unwrap();
    assert!(!families.contains(&"peers".to_string()), "obsolete family kept: {families:?}");
    let report = check_db(dir.path(), &g).unwrap();
    assert!(report.is_consistent(), "check-db: {report}");
    assert_eq!(report.tip_height, 3);
}

/// A [`MemStore`] that counts reads of the `bodies` column family.
struct CountingStore {
    inner: MemStore,
    body_reads: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl KvStore for CountingStore {
    fn get(&self, column: Column, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        if column == Column::Bodies {
            self.body_reads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        self.inner.get(column, key)
    }
    fn write(&self, batch: Batch) -> Result<(), StoreError> {
        self.inner.write(batch)
    }
    fn for_each(&self, column: Column, f: &mut dyn FnMut(&[u8], &[u8]) -> bool) -> Result<(), StoreError> {
        self.inner.for_each(column, f)
    }
    fn sync(&self) -> Result<(), StoreError> {
        self.inner.sync()
    }
}

/// The block being connected (and the orphans it unlocks) is connected from memory:
/// no body is read back from the store. A reorg reads the bodies it disconnects.
#[test]
fn connecting_a_handed_block_reads_no_body_back() {
    use std::sync::atomic::Ordering::SeqCst;
    let g = easy_genesis();
    let reads = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let store = CountingStore { inner: MemStore::new(), body_reads: reads.clone() };
    let mut chain = Chain::open_with_store(Box::new(store), &g).unwrap();
    // A second chain builds the blocks, so the child can arrive before its parent.
    let mut builder = Chain::open_in_memory(&g);
    let mut blocks = Vec::new();
    for tag in 1..=3 {
        let b = mine_on_tip(&builder, tag);
        builder.accept_block(b.clone(), now(&g)).unwrap();
        blocks.push(b);
    }
    reads.store(0, SeqCst);

    let r = chain.accept_block(blocks[0].clone(), now(&g)).unwrap();
    assert_eq!(r.acceptance, Acceptance::Connected);
    assert_eq!(r.tip_change.unwrap().connected, vec![Arc::new(blocks[0].clone())]);
    let r = chain.accept_block(blocks[2].clone(), now(&g)).unwrap();
    assert!(matches!(r.acceptance, Acceptance::Orphan { .. }));
    let r = chain.accept_block(blocks[1].clone(), now(&g)).unwrap();
    assert_eq!(r.acceptance, Acceptance::Connected);
    assert_eq!(
        r.tip_change.unwrap().connected,
        blocks[1..].iter().cloned().map(Arc::new).collect::<Vec<_>>()
    );
    assert_eq!(chain.tip().hash, blocks[2].hash());
    assert_eq!(reads.load(SeqCst), 0, "bodies read back while connecting");

    // A longer branch from block 1: the reorg reads each body it needs once: the two
    // blocks it disconnects and the two side-branch blocks stored earlier.
    let mut side = Chain::open_in_memory(&g);
    side.accept_block(blocks[0].clone(), now(&g)).unwrap();
    let mut branch = Vec::new();
    for tag in 11..=13 {
        let b = mine_on_tip(&side, tag);
        side.accept_block(b.clone(), now(&g)).unwrap();
        branch.push(b);
    }
    for b in &branch[..2] {
        assert_eq!(chain.accept_block(b.clone(), now(&g)).unwrap().acceptance, Acceptance::SideBranch);
    }
    reads.store(0, SeqCst);
    let r = chain.accept_block(branch[2].clone(), now(&g)).unwrap();
    assert_eq!(r.acceptance, Acceptance::Connected);
    let change = r.tip_change.unwrap();
    assert_eq!(change.disconnected.len(), 2);
    assert_eq!(change.connected, branch.into_iter().map(Arc::new).collect::<Vec<_>>());
    assert_eq!(reads.load(SeqCst), 4);
}

/// Sizes of the RocksDB write-ahead log files (`NNNNNN.log`) in `dir`.
#[cfg(feature = "rocksdb")]
fn wal_sizes(dir: &std::path::Path) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".log") {
            out.push((name, entry.metadata().unwrap().len()));
        }
    }
    out
}

/// Dropping the chain closes it for real: the WAL is fsynced and the memtables are
/// flushed, so the next open has no write-ahead log to replay and finds the tip.
#[test]
#[cfg(feature = "rocksdb")]
fn a_clean_close_leaves_no_wal_to_replay() {
    let g = easy_genesis();
    let dir = tempfile::tempdir().unwrap();
    let tip = {
        let mut chain = Chain::open(dir.path(), &g).unwrap();
        for tag in 1..=5 {
            let block = mine_on_tip(&chain, tag);
            assert_eq!(chain.accept_block(block, now(&g)).unwrap().acceptance, Acceptance::Connected);
        }
        let open_wal: u64 = wal_sizes(&dir.path().join("chain")).iter().map(|(_, n)| n).sum();
        assert!(open_wal > 0, "the blocks are in the WAL while open");
        chain.tip()
    };
    let wal = wal_sizes(&dir.path().join("chain"));
    assert!(wal.iter().all(|(_, n)| *n == 0), "WAL left to replay after a clean close: {wal:?}");
    let chain = Chain::open(dir.path(), &g).unwrap();
    assert_eq!(chain.tip(), tip);
}

/// A block on `parent` (height `parent.height + 1`) of transfers from the dev keys,
/// `per_key` from each of the first `keys`, nonces from `nonce`; the transfer at
/// `forged` (a transaction index) carries another transfer's signature. Merkle root
/// and proof of work match, so only the signature check can refuse it.
fn transfers_block(
    g: &Genesis,
    parent: &ParentInfo,
    keys: usize,
    per_key: u64,
    nonce: u64,
    forged: Option<usize>,
) -> Block {
    use cairn_core::transaction::{address_of, public_key_of, Transfer};
    let dev = cairn_core::genesis::dev_keys();
    let mut transfers = Vec::new();
    for n in nonce..nonce + per_key {
        for k in &dev[..keys] {
            let t = Transfer {
                chain_id: g.params.chain_id,
                nonce: n,
                from: public_key_of(k),
                to: address_of(&dev[9]),
                amount: cairn_core::Amount(1_000 + n),
                fee: cairn_core::Amount(1),
            };
            transfers.push(t.sign(k).unwrap());
        }
    }
    if let Some(i) = forged {
        transfers[i - 1].signature = transfers[i % transfers.len()].signature;
    }
    let t = parent.timestamp_ms + g.params.target_block_time_ms;
    let mut block = assemble_block(&g.params, parent, t, Address([7; 20]), &transfers).unwrap();
    assert!(grind(&mut block.header, u64::MAX));
    block
}

/// The parent info of `block` as the chain's tip (for building the next one off-chain).
fn parent_info(chain: &Chain) -> ParentInfo {
    chain.tip_parent_info()
}

/// The pipelined import ([`Chain::accept_blocks`]: block N+1's signatures checked on
/// another thread while N is stored, applied and committed) refuses a block with a bad
/// signature exactly as one `accept_block` after another does: the blocks before it
/// connected, it refused with the same error, nothing of it stored (no body, no tx
/// index entry, accounts as they were before it), and its child refused as its
/// descendant. Senders repeat across blocks, so the keys decoded for one block are
/// reused for the next.
#[test]
fn a_bad_signature_in_the_next_block_is_refused_by_the_pipelined_import_as_by_accept_block() {
    use cairn_core::transaction::TxError;
    use cairn_core::validation::BlockError;
    let g = easy_genesis();
    let mut builder = Chain::open_in_memory(&g);
    let mut blocks = Vec::new();
    for (nonce, per_key) in [(0, 3), (3, 2), (5, 1)] {
        let b = transfers_block(&g, &parent_info(&builder), 4, per_key, nonce, None);
        assert_eq!(builder.accept_block(b.clone(), now(&g)).unwrap().acceptance, Acceptance::Connected);
        blocks.push(b);
    }
    // Block 4 has a forged signature at transaction 6; block 5 builds on it.
    let bad = transfers_block(&g, &parent_info(&builder), 4, 2, 6, Some(6));
    let bad_hash = bad.hash();
    let bad_parent = ParentInfo {
        hash: bad_hash,
        height: bad.header.height,
        timestamp_ms: bad.header.timestamp_ms,
        median_time_past_ms: bad.header.timestamp_ms - 1,
        anchor_timestamp_ms: blocks[0].header.timestamp_ms,
    };
    let child = transfers_block(&g, &bad_parent, 2, 1, 8, None);
    blocks.extend([bad.clone(), child.clone()]);
    let expected_error = BlockError::InvalidTransfer { index: 6, error: TxError::BadSignature };

    let mut serial = Chain::open_in_memory(&g);
    let serial_results: Vec<Acceptance> =
        blocks.iter().map(|b| serial.accept_block(b.clone(), now(&g)).unwrap().acceptance).collect();
    let mut piped = Chain::open_in_memory(&g);
    let mut piped_results = Vec::new();
    piped
        .accept_blocks(blocks.iter().cloned().map(Ok::<_, ChainError>), now(&g), |hash, r| {
            piped_results.push((hash, r.acceptance));
            Ok(())
        })
        .unwrap();

    assert_eq!(
        piped_results.iter().map(|(h, _)| *h).collect::<Vec<_>>(),
        blocks.iter().map(Block::hash).collect::<Vec<_>>()
    );
    let piped_results: Vec<Acceptance> = piped_results.into_iter().map(|(_, a)| a).collect();
    assert_eq!(piped_results, serial_results);
    assert_eq!(piped_results[..3], [Acceptance::Connected, Acceptance::Connected, Acceptance::Connected]);
    assert_eq!(piped_results[3], Acceptance::Invalid(expected_error));
    assert_eq!(piped_results[4], Acceptance::Invalid(BlockError::InvalidAncestor(bad_hash)));
    for chain in [&piped, &serial] {
        assert_eq!(chain.tip(), builder.tip(), "the tip stays on the last valid block");
        assert_eq!(
            chain.all_accounts().unwrap(),
            builder.all_accounts().unwrap(),
            "state as before the bad block"
        );
        assert_eq!(chain.block(&bad_hash).unwrap(), None, "the bad block's body is not stored");
        assert_eq!(chain.block_status(&bad_hash), Some(BlockStatus::Invalid));
        for tx in bad.transactions.iter().chain(&child.transactions) {
            assert_eq!(chain.tx_location(&tx.txid()).unwrap(), None);
        }
    }
    let report = check_store(piped.store(), &g).unwrap();
    assert!(report.is_consistent(), "check-db: {report}");
}

/// A block checked against other chain parameters is checked again by the chain, so
/// a verdict reached under another chain id cannot be carried in.
#[test]
fn a_block_checked_against_other_parameters_is_checked_again() {
    let g = easy_genesis();
    let mut chain = Chain::open_in_memory(&g);
    let block = transfers_block(&g, &parent_info(&chain), 2, 1, 0, None);
    let mut other = g.params;
    other.chain_id += 1;
    let mut keys = cairn_core::transaction::DecodedKeys::default();
    let checked = CheckedBlock::check(block.clone(), &other, &mut keys);
    // Under the other chain id every transfer is for the wrong chain...
    assert!(matches!(checked.checked, Some((_, Err(_)))));
    // ...but this chain checks it again and connects it.
    assert_eq!(chain.accept_checked(checked, now(&g)).unwrap().acceptance, Acceptance::Connected);
    assert_eq!(chain.tip().hash, block.hash());
}

/// A block checked ahead by a [`BlockChecker`] (off the chain lock: a block from a peer)
/// skips the transfers the chain's signature cache vouches for, as `accept_block` does:
/// a block whose transfers this node verified on admission is not verified again. Shown
/// with a forged signature the cache was told (falsely) had verified: the checker takes
/// the cache's word, entries made after the checker was, included; without the entry the
/// forgery is found, and `accept_checked` refuses the block with `accept_block`'s error.
#[test]
fn a_block_checker_consults_the_signature_cache_without_the_chain_lock() {
    let g = easy_genesis();
    let mut chain = Chain::open_in_memory(&g);
    let checker = chain.block_checker();
    let forged = transfers_block(&g, &parent_info(&chain), 2, 1, 0, Some(1));
    let mut keys = cairn_core::transaction::DecodedKeys::default();
    let checked = checker.check(forged.clone(), &mut keys);
    let Some((txids, Err(error))) = checked.checked.clone() else {
        panic!("the forgery was not found: {:?}", checked.checked)
    };
    let mut serial = Chain::open_in_memory(&g);
    let expected = serial.accept_block(forged.clone(), now(&g)).unwrap().acceptance;
    assert_eq!(expected, Acceptance::Invalid(error));
    assert_eq!(chain.accept_checked(checked, now(&g)).unwrap().acceptance, expected);

    let fresh = Chain::open_in_memory(&g);
    let checker = fresh.block_checker();
    fresh.sig_cache.insert(txids[1]);
    let checked = checker.check(forged, &mut keys);
    assert!(matches!(checked.checked, Some((_, Ok(())))), "the cached transfer was verified again");
}

/// A store written before the index writer (tx and address indexes in each block's
/// batch) has no `indexed` key in meta: its indexes reach its tip, and opening it says
/// so rather than re-indexing or refusing.
#[test]
fn a_store_without_the_indexed_key_is_indexed_to_its_tip() {
    let g = easy_genesis();
    let store = MemStore::new();
    let (tip, coinbase) = {
        let mut chain = Chain::open_with_store(Box::new(store.clone()), &g).unwrap();
        for tag in 1..=3 {
            let block = mine_on_tip(&chain, tag);
            assert_eq!(chain.accept_block(block, now(&g)).unwrap().acceptance, Acceptance::Connected);
        }
        let tip = chain.tip().hash;
        let coinbase = chain.block(&tip).unwrap().unwrap().transactions[0].txid();
        (tip, coinbase)
    };
    let mut b = Batch::new();
    b.delete(Column::Meta, crate::store::meta_key::INDEXED);
    store.write(b).unwrap();
    let chain = Chain::open_with_store(Box::new(store.clone()), &g).unwrap();
    assert_eq!(store.get(Column::Meta, crate::store::meta_key::INDEXED).unwrap(), Some(tip.0.to_vec()));
    assert_eq!(chain.tx_location(&coinbase).unwrap().map(|l| (l.block_hash, l.height)), Some((tip, 3)));
    assert!(check_store(&store, &g).unwrap().is_consistent());
}

/// With the index writer on its own thread, a block's tx index entries may be written
/// after `accept_block` returns; `tx_location` and `history` wait for them, so a caller
/// never sees the lag. Closing the chain writes what is queued.
#[test]
#[cfg(feature = "rocksdb")]
fn reads_wait_for_the_index_writer_and_closing_flushes_it() {
    let g = easy_genesis();
    let dir = tempfile::tempdir().unwrap();
    let mut coinbases = Vec::new();
    {
        let mut chain = Chain::open(dir.path(), &g).unwrap();
        for tag in 1..=20u8 {
            let block = mine_on_tip(&chain, tag);
            let (hash, txid, to) = (block.hash(), block.transactions[0].txid(), Address([tag; 20]));
            assert_eq!(chain.accept_block(block, now(&g)).unwrap().acceptance, Acceptance::Connected);
            let loc = chain.tx_location(&txid).unwrap().expect("read right after the block");
            assert_eq!((loc.block_hash, loc.height), (hash, u64::from(tag)));
            let page = chain.history(&to, None, 10).unwrap().unwrap();
            assert_eq!(page.entries.len(), 1, "the coinbase's recipient has its entry");
            coinbases.push((txid, hash));
        }
        // Twenty more, not read before the chain closes.
        for tag in 21..=40u8 {
            let block = mine_on_tip(&chain, tag);
            coinbases.push((block.transactions[0].txid(), block.hash()));
            chain.accept_block(block, now(&g)).unwrap();
        }
    }
    let report = check_db(dir.path(), &g).unwrap();
    assert!(report.is_consistent(), "{report}");
    assert_eq!(report.indexed_height, Some(40), "the queued jobs were written on close");
    let chain = Chain::open(dir.path(), &g).unwrap();
    for (txid, hash) in coinbases {
        assert_eq!(chain.tx_location(&txid).unwrap().map(|l| l.block_hash), Some(hash));
    }
}

/// The index writer holds a block's entries back while blocks keep coming, but not
/// for ever: with no read to ask for them, they are written once the chain has been
/// quiet, and the metric's backlog falls to 0.
#[test]
#[cfg(feature = "rocksdb")]
fn index_entries_held_back_are_written_without_a_read() {
    let g = easy_genesis();
    let dir = tempfile::tempdir().unwrap();
    let mut chain = Chain::open(dir.path(), &g).unwrap();
    let mut blocks = Vec::new();
    for tag in 1..=5u8 {
        let block = mine_on_tip(&chain, tag);
        blocks.push((block.hash(), block.transactions[0].txid()));
        chain.accept_block(block, now(&g)).unwrap();
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while chain.index_backlog() > 0 {
        assert!(std::time::Instant::now() < deadline, "{} index jobs never written", chain.index_backlog());
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    // Read from the store itself: `tx_location` would ask the writer to flush.
    let tip = blocks.last().unwrap().0;
    assert_eq!(chain.store.get(Column::Meta, crate::store::meta_key::INDEXED).unwrap(), Some(tip.0.to_vec()));
    for (height, (hash, txid)) in blocks.iter().enumerate() {
        let stored = chain.store.get(Column::TxIndex, &txid.0).unwrap().expect("the coinbase's entry");
        let loc = crate::store::TxLocationRecord::decode(&stored).unwrap();
        assert_eq!((loc.block_hash, loc.height), (*hash, height as u64 + 1));
    }
}

/// The tx and address index columns and meta's `indexed`, to put back later.
fn index_state(store: &MemStore) -> Vec<(Column, Vec<u8>, Option<Vec<u8>>)> {
    let mut out = Vec::new();
    for c in [Column::TxIndex, Column::AddrIndex] {
        store
            .for_each(c, &mut |k, v| {
                out.push((c, k.to_vec(), Some(v.to_vec())));
                true
            })
            .unwrap();
    }
    let indexed = store.get(Column::Meta, crate::store::meta_key::INDEXED).unwrap();
    out.push((Column::Meta, crate::store::meta_key::INDEXED.to_vec(), indexed));
    out
}

/// After a crash that lost the index writer's jobs across a reorg, the indexes are on a
/// branch the chain has left: `check_store` accepts that (they match the chain they
/// reach), and opening the chain unindexes that branch and indexes the new one.
#[test]
fn indexes_left_on_an_abandoned_branch_are_caught_up_on_open() {
    let g = easy_genesis();
    let store = MemStore::new();
    let mut chain = Chain::open_with_store(Box::new(store.clone()), &g).unwrap();
    for tag in 1..=2 {
        let block = mine_on_tip(&chain, tag);
        chain.accept_block(block, now(&g)).unwrap();
    }
    let fork = chain.tip().hash;
    let mut abandoned = Vec::new();
    for tag in 3..=5 {
        let block = mine_on_tip(&chain, tag);
        abandoned.push(block.transactions[0].txid());
        assert_eq!(chain.accept_block(block, now(&g)).unwrap().acceptance, Acceptance::Connected);
    }
    let lost_after = index_state(&store);
    let mut parent = chain.index.get(&fork).unwrap();
    let mut winners = Vec::new();
    for tag in 10..=13 {
        let info = chain.parent_info(parent);
        let t = info.timestamp_ms + chain.params().target_block_time_ms;
        let mut block = assemble_block(chain.params(), &info, t, Address([tag; 20]), &[]).unwrap();
        assert!(grind(&mut block.header, u64::MAX));
        let hash = block.hash();
        winners.push((block.transactions[0].txid(), hash));
        chain.accept_block(block, now(&g)).unwrap();
        parent = chain.index.get(&hash).unwrap();
    }
    assert_eq!(chain.tip().hash, winners[3].1, "the longer branch won");
    drop(chain);

    // The crash: every index job after block 5 of the abandoned branch is lost.
    let mut b = Batch::new();
    for c in [Column::TxIndex, Column::AddrIndex] {
        store
            .for_each(c, &mut |k, _| {
                b.delete(c, k.to_vec());
                true
            })
            .unwrap();
    }
    for (c, k, v) in lost_after {
        b.put(c, k, v.unwrap());
    }
    store.write(b).unwrap();
    let report = check_store(&store, &g).unwrap();
    assert!(report.is_consistent(), "{report}");
    assert_eq!((report.tip_height, report.indexed_height), (6, Some(5)));

    let chain = Chain::open_with_store(Box::new(store.clone()), &g).unwrap();
    for txid in &abandoned {
        assert_eq!(chain.tx_location(txid).unwrap(), None, "{txid} was unindexed");
    }
    for (txid, hash) in &winners {
        assert_eq!(chain.tx_location(txid).unwrap().map(|l| l.block_hash), Some(*hash));
    }
    assert!(chain.history(&Address([4; 20]), None, 10).unwrap().unwrap().entries.is_empty());
    assert_eq!(chain.history(&Address([12; 20]), None, 10).unwrap().unwrap().entries.len(), 1);
    let report = check_store(&store, &g).unwrap();
    assert!(report.is_consistent(), "{report}");
    assert_eq!(report.indexed_height, Some(6));
}
