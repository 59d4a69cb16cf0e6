//! `check-db`: replays the stored best chain from genesis with cairn-core and compares
//! every derived record with what is stored.
//!
//! Checked: the genesis hash and schema; that the tip's ancestry is in the index with
//! the right heights, cumulative work and a VALID status; every best-chain body (hash,
//! stateless and contextual rules, state transition); the undo data of each block
//! against a fresh computation; that the height index and undo column hold nothing
//! else; that the stored accounts equal the replayed state exactly. The tx and address
//! indexes are checked against the chain they reach (meta's `indexed`, see
//! `indexes.rs`: the tip, or after a crash a block behind it or on a branch the chain
//! left): the tx index entry of every transaction of that chain and nothing else; the
//! address history index rebuilt from its blocks and compared entry by entry with the
//! stored one (missing, different and extra entries are each named), or, when the
//! index is off, found empty. Memory: the replayed account state, the best chain's
//! hashes (32 bytes per block) and the rebuilt address index (about 110 bytes per
//! entry, two entries per transfer).

use super::history::describe_addr_key;
use super::{add_work, check_signatures_parallel, ChainError};
#[cfg(feature = "rocksdb")]
use crate::store::RocksStore;
use crate::store::{
    self, height_key, meta_key, status, Column, IndexRecord, KvStore, TxLocationRecord, SCHEMA_VERSION,
};
use crate::store::{addr_entries, decode_addr_entries, AddrBlockEntries, ADDR_INDEX_VERSION, ADDR_KEY_LEN};
use cairn_core::block::Block;
use cairn_core::difficulty::median_time_past;
use cairn_core::encoding;
use cairn_core::genesis::Genesis;
use cairn_core::state::{commit_to_map, Account, BlockUndo};
use cairn_core::validation::apply_block;
use cairn_core::validation::{
    check_block_structure, check_header_contextual, check_header_stateless, ParentInfo,
};
use cairn_core::{Address, BlockHash};
use std::collections::{BTreeMap, VecDeque};
use std::fmt;
#[cfg(feature = "rocksdb")]
use std::path::Path;

/// Problems beyond this many are counted, not listed.
const MAX_LISTED: usize = 100;

/// The outcome of [`check_db`].
#[derive(Clone, Debug, Default)]
pub struct CheckReport {
    pub tip_hash: Option<BlockHash>,
    pub tip_height: u64,
    pub blocks_checked: u64,
    pub transactions_checked: u64,
    pub accounts_checked: u64,
    pub address_index: AddressIndexCheck,
    /// The height of the block the tx and address indexes reach (`indexes.rs`); below
    /// the tip after a crash, until the node opens the chain again and catches up.
    pub indexed_height: Option<u64>,
    /// What does not match, one line each (at most 100 listed).
    pub problems: Vec<String>,
    /// Problems found beyond those listed.
    pub more_problems: usize,
}

/// What [`check_db`] did with the address history index.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AddressIndexCheck {
    /// The check stopped before it (a problem earlier made a rebuild meaningless).
    #[default]
    NotChecked,
    /// The index is off (and was found empty, or the problems say otherwise).
    Off,
    /// This many stored entries were compared with a rebuild from the blocks.
    Compared(u64),
}

impl CheckReport {
    pub fn is_consistent(&self) -> bool {
        self.problems.is_empty()
    }

    fn problem(&mut self, p: String) {
        if self.problems.len() < MAX_LISTED {
            self.problems.push(p);
        } else {
            self.more_problems += 1;
        }
    }
}

impl fmt::Display for CheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.tip_hash {
            Some(h) => writeln!(f, "tip: height {} hash {h}", self.tip_height)?,
            None => writeln!(f, "tip: unknown")?,
        }
        writeln!(
            f,
            "checked {} blocks, {} transactions, {} accounts",
            self.blocks_checked, self.transactions_checked, self.accounts_checked
        )?;
        if let Some(h) = self.indexed_height.filter(|&h| h != self.tip_height) {
            writeln!(
                f,
                "tx and address indexes: at height {h} (the node catches them up when it opens the chain)"
            )?;
        }
        match self.address_index {
            AddressIndexCheck::Compared(n) => {
                writeln!(f, "address history index: {n} keys (an address in a block) compared with a rebuild from the blocks")?
            }
            AddressIndexCheck::Off => writeln!(f, "address history index: off")?,
            AddressIndexCheck::NotChecked => writeln!(f, "address history index: not checked")?,
        }
        if self.is_consistent() {
            write!(f, "consistent")
        } else {
            writeln!(f, "{} problems:", self.problems.len() + self.more_problems)?;
            for p in &self.problems {
                writeln!(f, "  - {p}")?;
            }
            if self.more_problems > 0 {
                writeln!(f, "  ... and {} more", self.more_problems)?;
            }
            Ok(())
        }
    }
}

/// Checks the chain database in `data_dir` (the node must not be running: RocksDB
/// allows one process at a time). `Err` only when the database cannot be read at all.
#[cfg(feature = "rocksdb")]
pub fn check_db(data_dir: &Path, genesis: &Genesis) -> Result<CheckReport, ChainError> {
    let path = data_dir.join("chain");
    if !path.join("CURRENT").exists() {
        return Err(ChainError::Db(format!("no chain database in {}", data_dir.display())));
    }
    let store = RocksStore::open(&path)?;
    check_store(&store, genesis)
}

/// [`check_db`] on any store.
pub fn check_store(store: &dyn KvStore, genesis: &Genesis) -> Result<CheckReport, ChainError> {
    let mut report = CheckReport::default();
    let params = genesis.params;
    let genesis_hash = genesis.hash();

    // Meta.
    if store.get(Column::Meta, meta_key::SCHEMA)?.as_deref() != Some(&SCHEMA_VERSION.to_le_bytes()[..]) {
        report.problem(format!("schema version is not {SCHEMA_VERSION}"));
    }
    match store.get(Column::Meta, meta_key::GENESIS)? {
        Some(g) if g == genesis_hash.0 => {}
        other => {
            report.problem(format!("stored genesis {:?} is not {genesis_hash}", other.map(hex::encode)));
            return Ok(report);
        }
    }
    let tip = match store.get(Column::Meta, meta_key::TIP)?.map(|t| store::hash_from_bytes(&t, "tip")) {
        Some(Ok(t)) => t,
        other => {
            report.problem(format!("no readable tip in meta: {other:?}"));
            return Ok(report);
        }
    };
    report.tip_hash = Some(tip);

    // The tip's ancestry, through the index.
    let mut chain: Vec<(BlockHash, IndexRecord)> = Vec::new();
    let mut cur = tip;
    loop {
        let record = match store.get(Column::Index, &cur.0)?.map(|b| IndexRecord::decode(&b)) {
            Some(Ok(r)) => r,
            other => {
                report.problem(format!("best-chain block {cur} has no readable index entry: {other:?}"));
                return Ok(report);
            }
        };
        if record.header.hash() != cur {
            report.problem(format!("index entry under {cur} holds another header"));
            return Ok(report);
        }
        let height = record.header.height;
        let prev = record.header.prev;
        chain.push((cur, record));
        if height == 0 {
            break;
        }
        if let Some((_, child)) = chain.get(chain.len().wrapping_sub(2)) {
            if child.header.height != height + 1 {
                report.problem(format!("heights break at {cur}"));
                return Ok(report);
            }
        }
        cur = prev;
    }
    chain.reverse();
    report.tip_height = (chain.len() - 1) as u64;
    if chain[0].0 != genesis_hash {
        report.problem(format!("the best chain starts at {}, not at genesis {genesis_hash}", chain[0].0));
        return Ok(report);
    }
    for (h, (hash, r)) in chain.iter().enumerate() {
        let want = status::HAVE_BODY | status::VALID;
        if r.status & want != want || r.status & status::FAILED_MASK != 0 {
            report.problem(format!("best-chain block {h} ({hash}) has status {:#x}", r.status));
        }
    }

    // Height index: exactly the best chain.
    let mut height_entries = 0u64;
    let mut bad_heights = Vec::new();
    store.for_each(Column::Heights, &mut |k, v| {
        height_entries += 1;
        let height = <[u8; 8]>::try_from(k).map(u64::from_be_bytes).ok();
        let ok = match height.and_then(|h| chain.get(h as usize)) {
            Some((hash, _)) => v == hash.0,
            None => false,
        };
        if !ok {
            bad_heights.push(format!(
                "height index entry {} -> {} is not on the best chain",
                hex::encode(k),
                hex::encode(v)
            ));
        }
        true
    })?;
    for p in bad_heights {
        report.problem(p);
    }
    if height_entries != chain.len() as u64 {
        report.problem(format!(
            "height index has {height_entries} entries, the best chain {} blocks",
            chain.len()
        ));
    }
    for (h, (hash, _)) in chain.iter().enumerate() {
        if store.get(Column::Heights, &height_key(h as u64))?.as_deref() != Some(&hash.0[..]) {
            report.problem(format!("height index at {h} does not name {hash}"));
        }
    }

    // Genesis.
    match store.get(Column::Bodies, &genesis_hash.0)? {
        Some(b) if b == encoding::encode(&genesis.block()) => {}
        _ => report.problem("genesis body is missing or different".into()),
    }
    report.blocks_checked = 1;

    // The tx and address indexes reach the block in meta's `indexed` (written behind
    // the chain, see `indexes.rs`): after a crash it may be behind the tip, or on a
    // branch the chain has left. They must hold exactly the chain ending there: the
    // best chain up to where that branch leaves it, then the branch's own blocks.
    let Some((fork_height, branch)) = indexed_branch(store, &chain, tip, &mut report)? else {
        return Ok(report);
    };

    // Replay.
    let mut state = genesis.initial_state();
    let mut work = genesis.block().header.target.work();
    if chain[0].1.work != work {
        report.problem("genesis cumulative work is wrong".into());
    }
    let window = params.median_time_blocks as usize;
    let mut recent: VecDeque<u64> = VecDeque::from([params.timestamp_ms]);
    let mut anchor_ms = params.timestamp_ms;
    let mut txs = 0u64;
    let mut indexed_txs = 0u64;
    let mut addr_index: BTreeMap<[u8; ADDR_KEY_LEN], AddrBlockEntries> = BTreeMap::new();
    for h in 1..chain.len() {
        let (hash, record) = &chain[h];
        let parent = ParentInfo {
            hash: chain[h - 1].0,
            height: (h - 1) as u64,
            timestamp_ms: chain[h - 1].1.header.timestamp_ms,
            median_time_past_ms: median_time_past(recent.make_contiguous()),
            anchor_timestamp_ms: anchor_ms,
        };
        let block: Block = match store.get(Column::Bodies, &hash.0)?.map(|b| encoding::decode(&b)) {
            Some(Ok(b)) => b,
            other => {
                report.problem(format!(
                    "block {h} ({hash}): body missing or undecodable: {:?}",
                    other.map(|r| r.err())
                ));
                return Ok(report);
            }
        };
        if block.header != record.header {
            report.problem(format!("block {h} ({hash}): body's header differs from the index"));
            return Ok(report);
        }
        // The future-drift rule is about arrival time, not replay: use the block's own.
        let rules = check_header_stateless(&block.header)
            .and_then(|_| check_block_structure(&block, &params).map(|_| ()))
            .and_then(|_| check_signatures_parallel(&block, params.chain_id))
            .and_then(|_| {
                check_header_contextual(&block.header, &parent, &params, block.header.timestamp_ms)
            });
        if let Err(e) = rules {
            report.problem(format!("block {h} ({hash}) breaks a rule: {e}"));
            return Ok(report);
        }
        let (changes, undo) = match apply_block(&state, &block, &params) {
            Ok(x) => x,
            Err(e) => {
                report.problem(format!("block {h} ({hash}) does not apply: {e}"));
                return Ok(report);
            }
        };
        match store.get(Column::Undo, &hash.0)?.map(|b| encoding::decode::<BlockUndo>(&b)) {
            Some(Ok(u)) if u == undo => {}
            other => report.problem(format!(
                "block {h} ({hash}): stored undo data wrong or missing: {:?}",
                other.map(|r| r.is_ok())
            )),
        }
        commit_to_map(&mut state, &changes);
        work = add_work(work, &block.header);
        if record.work != work {
            report.problem(format!("block {h} ({hash}): stored cumulative work is wrong"));
        }
        if h as u64 <= fork_height {
            indexed_txs += check_tx_index(store, &block, *hash, h as u64, &mut report)?;
            addr_index.extend(addr_entries(&block, h as u64));
        }
        txs += block.transactions.len() as u64;
        if h == 1 {
            anchor_ms = block.header.timestamp_ms;
        }
        recent.push_front(block.header.timestamp_ms);
        recent.truncate(window);
        report.blocks_checked += 1;
    }
    report.transactions_checked = txs;
    for (h, hash) in branch {
        match store.get(Column::Bodies, &hash.0)?.map(|b| encoding::decode::<Block>(&b)) {
            Some(Ok(block)) => {
                indexed_txs += check_tx_index(store, &block, hash, h, &mut report)?;
                addr_index.extend(addr_entries(&block, h));
            }
            other => report.problem(format!(
                "indexed block {h} ({hash}) off the best chain: body missing or undecodable: {:?}",
                other.map(|r| r.err())
            )),
        }
    }

    // Tx index and undo hold nothing but the best chain's.
    let mut tx_entries = 0u64;
    store.for_each(Column::TxIndex, &mut |_, _| {
        tx_entries += 1;
        true
    })?;
    if tx_entries != indexed_txs {
        report.problem(format!(
            "tx index has {tx_entries} entries, the indexed chain {indexed_txs} transactions"
        ));
    }
    let mut undo_entries = 0u64;
    store.for_each(Column::Undo, &mut |_, _| {
        undo_entries += 1;
        true
    })?;
    if undo_entries != (chain.len() - 1) as u64 {
        report.problem(format!("undo has {undo_entries} entries, the best chain {} blocks", chain.len() - 1));
    }

    // Accounts: exactly the replayed state.
    let mut account_problems = Vec::new();
    let mut accounts = 0u64;
    store.for_each(Column::Accounts, &mut |k, v| {
        accounts += 1;
        let (Ok(a), Ok(acc)) = (<[u8; 20]>::try_from(k), encoding::decode::<Account>(v)) else {
            account_problems.push(format!("malformed account entry {}", hex::encode(k)));
            return true;
        };
        let a = Address(a);
        match state.remove(&a) {
            Some(want) if want == acc => {}
            want => account_problems.push(format!("account {a}: stored {acc:?}, replay gives {want:?}")),
        }
        true
    })?;
    for p in account_problems {
        report.problem(p);
    }
    for (a, acc) in state {
        report.problem(format!("account {a} ({acc:?}) is missing from the store"));
    }
    report.accounts_checked = accounts;
    check_addr_index(store, addr_index, &mut report)?;
    Ok(report)
}

/// Compares the stored address history index with `expected`, rebuilt from the blocks.
fn check_addr_index(
    store: &dyn KvStore,
    mut expected: BTreeMap<[u8; ADDR_KEY_LEN], AddrBlockEntries>,
    report: &mut CheckReport,
) -> Result<(), ChainError> {
    let on = match store.get(Column::Meta, meta_key::ADDR_INDEX)? {
        None => false,
        Some(v) if v == [ADDR_INDEX_VERSION] => true,
        Some(v) => {
            report.problem(format!(
                "address index marker holds {}, expected version {ADDR_INDEX_VERSION}",
                hex::encode(v)
            ));
            true
        }
    };
    let mut problems = Vec::new();
    let mut stored = 0u64;
    store.for_each(Column::AddrIndex, &mut |k, v| {
        stored += 1;
        if !on {
            return true;
        }
        let want = <[u8; ADDR_KEY_LEN]>::try_from(k).ok().and_then(|k| expected.remove(&k));
        match (want, decode_addr_entries(v)) {
            (None, _) => problems.push(format!(
                "address index entry {} names no best-chain transaction touching that address",
                describe_addr_key(k)
            )),
            (Some(want), Ok(got)) if got == want => {}
            (Some(want), got) => problems.push(format!(
                "address index entry {}: stored {:?}, the blocks give {want:?}",
                describe_addr_key(k),
                got.map_err(|e| e.to_string())
            )),
        }
        true
    })?;
    report.address_index = if on { AddressIndexCheck::Compared(stored) } else { AddressIndexCheck::Off };
    if !on {
        if stored > 0 {
            report.problem(format!("address index is off (no marker in meta) but holds {stored} entries"));
        }
        return Ok(());
    }
    for p in problems {
        report.problem(p);
    }
    for (k, want) in expected {
        report.problem(format!("address index entry {} is missing ({want:?})", describe_addr_key(&k)));
    }
    Ok(())
}

/// The tx index entries of `block` (at `height`, hashed `hash`) checked; returns how many
/// transactions it has.
fn check_tx_index(
    store: &dyn KvStore,
    block: &Block,
    hash: BlockHash,
    height: u64,
    report: &mut CheckReport,
) -> Result<u64, ChainError> {
    for (i, tx) in block.transactions.iter().enumerate() {
        let txid = tx.txid();
        let want = TxLocationRecord { block_hash: hash, height, index: i as u32 };
        match store.get(Column::TxIndex, &txid.0)?.map(|b| TxLocationRecord::decode(&b)) {
            Some(Ok(r)) if r == want => {}
            other => report.problem(format!(
                "tx {txid} (block {height}, index {i}): tx index has {:?}",
                other.map(|r| r.ok())
            )),
        }
    }
    Ok(block.transactions.len() as u64)
}

/// The height where the indexed chain leaves the best chain, and its blocks above
/// that (height, hash), lowest first.
type IndexedBranch = (u64, Vec<(u64, BlockHash)>);

/// Where the indexes' chain (ending at meta's `indexed`, the tip when absent) leaves
/// the best chain `chain`: that height, and the blocks of the indexed chain above it
/// (height, hash), lowest first. `None` after reporting a problem that ends the check.
fn indexed_branch(
    store: &dyn KvStore,
    chain: &[(BlockHash, IndexRecord)],
    tip: BlockHash,
    report: &mut CheckReport,
) -> Result<Option<IndexedBranch>, ChainError> {
    let marker =
        match store.get(Column::Meta, meta_key::INDEXED)?.map(|m| store::hash_from_bytes(&m, "indexed")) {
            None => tip,
            Some(Ok(m)) => m,
            Some(Err(e)) => {
                report.problem(format!("meta's indexed block is unreadable: {e}"));
                return Ok(None);
            }
        };
    let mut branch = Vec::new();
    let mut cur = marker;
    loop {
        let record = match store.get(Column::Index, &cur.0)?.map(|b| IndexRecord::decode(&b)) {
            Some(Ok(r)) => r,
            other => {
                report.problem(format!("indexed block {cur} has no readable index entry: {other:?}"));
                return Ok(None);
            }
        };
        let height = record.header.height;
        if chain.get(height as usize).is_some_and(|(h, _)| *h == cur) {
            branch.reverse();
            report.indexed_height = Some(height + branch.len() as u64);
            return Ok(Some((height, branch)));
        }
        if record.status & status::VALID == 0 || height == 0 {
            report.problem(format!("indexed block {cur} at height {height} was never connected"));
            return Ok(None);
        }
        branch.push((height, cur));
        cur = record.header.prev;
    }
}
