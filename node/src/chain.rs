//! The chain: block index, fork choice by cumulative work, reorgs, crash-safe commits.
//!
//! [`Chain`] owns the store ([`crate::store`]) and the in-memory block index
//! ([`index`]). It is the only writer of the chain's column families.
//!
//! # How a block goes in
//!
//! 1. Stateless checks ([`cairn_core::validation`]): header version and proof of work,
//!    structure, merkle root, then every transfer's signature with
//!    [`check_transfer_at`] **in parallel on all cores** (rayon). A body that does not
//!    match its header (bad merkle root) is refused without blaming the header, since
//!    the right body may still come.
//! 2. Parent unknown: the block waits in the bounded [`orphans`] pool. Parent known but
//!    invalid: refused as [`BlockError::InvalidAncestor`]. Otherwise the contextual
//!    header checks run against the parent, and the block is stored (body + index entry,
//!    one batch) on whatever branch it extends.
//! 3. Fork choice: every stored block whose ancestors all have bodies and that has more
//!    work than the tip is a candidate. The best candidate (most cumulative work, ties to
//!    the one indexed first) is activated: disconnect back to the fork point with the
//!    undo data, then connect the new branch block by block, applying the state
//!    transition ([`cairn_core::state::apply_block`]) in order. If a block fails, it and
//!    its descendants are marked invalid (persisted) and fork choice runs again, which
//!    brings the node back to the best valid chain. The tip only moves to strictly more
//!    work: on a tie the chain we are on, seen first, stays. (After a reorg that fails
//!    part-way, "the chain we are on" is the new branch's last valid block when it has
//!    as much work as the old tip: the tip stays there rather than going back.)
//!
//! # Atomicity
//!
//! Connecting a block is one batch: accounts, undo, index status, height index, tx
//! index and the tip. Disconnecting is one batch too. So the stored tip always matches
//! the stored state, and [`Chain::open`] after a kill -9 finds a consistent chain at the
//! last committed tip without replaying anything: it loads the compact index (see
//! [`index`] for its size per block) and resumes fork choice, which finishes a reorg that
//! a crash interrupted. Durability choices are in [`crate::store`].
//!
//! [`check_db`] replays the stored best chain from genesis and compares.

mod check;
mod index;
mod orphans;
pub(crate) mod sigcache;
#[cfg(test)]
mod tests;

#[cfg(feature = "rocksdb")]
pub use check::check_db;
pub use check::{check_store, CheckReport};

use crate::failstop::fail_stop;
#[cfg(feature = "rocksdb")]
use crate::store::RocksStore;
use crate::store::{
    self, height_key, meta_key, status, Batch, Column, IndexRecord, KvStore, MemStore, RecordError,
    StoreError, TxLocationRecord, SCHEMA_VERSION,
};
use cairn_core::block::{Block, BlockHeader};
use cairn_core::difficulty::median_time_past;
use cairn_core::encoding;
use cairn_core::genesis::{ChainParams, Genesis};
use cairn_core::state::{apply_block, Account, AccountSource, BlockUndo, StateError};
use cairn_core::validation::{
    check_block_structure, check_header_contextual, check_header_stateless, check_transfer_at, BlockError,
    ParentInfo,
};
use cairn_core::{Address, BlockHash, Transaction, Txid, Work};
use index::{BlockIndex, Idx, CHAIN_COMPLETE, NONE};
use orphans::OrphanPool;
use rayon::prelude::*;
use sigcache::{SigCache, SIG_CACHE_ENTRIES};
use std::collections::{HashMap, VecDeque};
#[cfg(feature = "rocksdb")]
use std::path::Path;
use thiserror::Error;

/// A failure of our own storage (never the fault of a peer).
#[derive(Debug, Error)]
pub enum ChainError {
    #[error("database error: {0}")]
    Db(String),
    #[error("database is corrupt: {0}")]
    Corrupt(String),
    #[error("data dir holds a different chain (genesis {stored}, expected {expected})")]
    WrongGenesis { stored: BlockHash, expected: BlockHash },
}

/// The best chain's tip.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TipInfo {
    pub hash: BlockHash,
    pub height: u64,
    pub total_work: Work,
    pub timestamp_ms: u64,
}

/// How the best chain changed. `disconnected` is tip-first, `connected` parent-first.
#[derive(Clone, Debug, Default)]
pub struct TipChange {
    pub disconnected: Vec<Block>,
    pub connected: Vec<Block>,
}

/// What became of a block handed to [`Chain::accept_block`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Acceptance {
    /// Already stored or already known invalid; nothing changed.
    Duplicate,
    /// Its parent is unknown: held in the bounded orphan pool until the parent arrives.
    Orphan { missing_parent: BlockHash },
    /// Valid as far as can be checked off the best chain, stored on a side branch.
    SideBranch,
    /// Now part of the best chain.
    Connected,
    /// Invalid (it and its descendants are remembered as invalid).
    Invalid(BlockError),
}

#[derive(Clone, Debug)]
pub struct AcceptResult {
    pub acceptance: Acceptance,
    /// Set when the best chain changed (this block, orphans it unlocked, or a reorg).
    pub tip_change: Option<TipChange>,
}

/// Where a confirmed transaction is on the best chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TxLocation {
    pub block_hash: BlockHash,
    pub height: u64,
    pub index: u32,
}

/// Result of [`Chain::accept_headers`].
#[derive(Clone, Debug, Default)]
pub struct HeadersResult {
    /// Headers newly added to the index.
    pub added: usize,
    /// The first header that failed validation, if any (the rest were not looked at).
    pub invalid: Option<(BlockHash, BlockError)>,
    /// The first header's parent is unknown.
    pub unconnected: bool,
}

impl From<StoreError> for ChainError {
    fn from(e: StoreError) -> Self {
        ChainError::Db(e.to_string())
    }
}

impl From<RecordError> for ChainError {
    fn from(e: RecordError) -> Self {
        ChainError::Corrupt(e.to_string())
    }
}

/// What the index says about a block (see [`Chain::block_status`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockStatus {
    /// Header indexed, body not downloaded.
    HeaderOnly,
    /// Body stored, not connected yet (side branch, or waiting for an ancestor's body).
    Stored,
    /// Connected at least once: fully valid (it may be on a side branch now).
    Valid,
    /// Invalid, or descends from an invalid block.
    Invalid,
}

/// Invalid blocks remembered without an index entry (bad proof of work relative to
/// the schedule, children of invalid blocks, orphans with bad signatures): bounded.
const MAX_REJECTED: usize = 4096;
/// Fsync the WAL at most this often (see [`crate::store`] for why not every batch).
const FSYNC_INTERVAL_MS: u64 = 1_000;

#[derive(Default)]
struct Rejected {
    errors: HashMap<BlockHash, BlockError>,
    order: VecDeque<BlockHash>,
}

impl Rejected {
    fn insert(&mut self, hash: BlockHash, error: BlockError) {
        if self.errors.insert(hash, error).is_none() {
            self.order.push_back(hash);
            if self.order.len() > MAX_REJECTED {
                if let Some(old) = self.order.pop_front() {
                    self.errors.remove(&old);
                }
            }
        }
    }
    fn get(&self, hash: &BlockHash) -> Option<&BlockError> {
        self.errors.get(hash)
    }
}

/// Blocks at hand in the call under way, by hash: those it stored (the block handed in,
/// orphans it unlocked) and those a reorg read. A body is decoded at most once per
/// call: connected from here rather than read back, and handed out in the
/// [`TipChange`].
type Fresh = HashMap<BlockHash, Block>;

/// What happened to one block in [`Chain::process_block`].
enum Processed {
    Rejected(BlockError),
    Orphan(BlockHash),
    Stored(Idx),
}

/// Reads accounts straight from the store (the state at the committed tip).
struct StateView<'a>(&'a dyn KvStore);

impl AccountSource for StateView<'_> {
    fn account(&self, address: &Address) -> Result<Option<Account>, StateError> {
        let bytes = self.0.get(Column::Accounts, &address.0).map_err(|e| StateError(e.to_string()))?;
        decode_account(address, bytes)
    }
}

/// The accounts a block touches, read from the store in one batched lookup before the
/// block is applied (serial point reads cost ~15 us each on a state of a million
/// accounts, see docs/PERFORMANCE.md); anything not prefetched falls back to the store.
struct Prefetched<'a> {
    accounts: HashMap<Address, Option<Account>>,
    store: StateView<'a>,
}

impl<'a> Prefetched<'a> {
    fn load(store: &'a dyn KvStore, block: &Block) -> Result<Prefetched<'a>, StateError> {
        let mut addresses: Vec<Address> = Vec::with_capacity(block.transactions.len() * 2);
        for tx in &block.transactions {
            match tx {
                Transaction::Transfer(st) => {
                    addresses.push(st.transfer.sender());
                    addresses.push(st.transfer.to);
                }
                Transaction::Coinbase(cb) => addresses.push(cb.to),
            }
        }
        addresses.sort_unstable();
        addresses.dedup();
        let keys: Vec<&[u8]> = addresses.iter().map(|a| &a.0[..]).collect();
        let values = store.multi_get(Column::Accounts, &keys).map_err(|e| StateError(e.to_string()))?;
        let mut accounts = HashMap::with_capacity(addresses.len());
        for (address, value) in addresses.iter().zip(values) {
            accounts.insert(*address, decode_account(address, value)?);
        }
        Ok(Prefetched { accounts, store: StateView(store) })
    }
}

impl AccountSource for Prefetched<'_> {
    fn account(&self, address: &Address) -> Result<Option<Account>, StateError> {
        match self.accounts.get(address) {
            Some(a) => Ok(*a),
            None => self.store.account(address),
        }
    }
}

fn decode_account(address: &Address, bytes: Option<Vec<u8>>) -> Result<Option<Account>, StateError> {
    bytes
        .map(|b| encoding::decode::<Account>(&b))
        .transpose()
        .map_err(|e| StateError(format!("corrupt account {address}: {e}")))
}

/// Verifies every transfer's signature on the rayon pool; the reported error is the
/// lowest failing index, as a serial check would report.
pub fn check_signatures_parallel(block: &Block, chain_id: u32) -> Result<(), BlockError> {
    check_signatures_except(block, chain_id, |_| false)
}

/// [`check_signatures_parallel`], skipping the transfers at indexes for which
/// `verified` says this node has checked these very bytes already.
fn check_signatures_except(
    block: &Block,
    chain_id: u32,
    verified: impl Fn(usize) -> bool + Sync,
) -> Result<(), BlockError> {
    let first_err = (1..block.transactions.len())
        .into_par_iter()
        .with_min_len(16)
        .filter(|&i| !verified(i))
        .map(|i| check_transfer_at(block, i, chain_id))
        .find_first(Result::is_err);
    match first_err {
        Some(Err(e)) => Err(e),
        _ => Ok(()),
    }
}

pub struct Chain {
    store: Box<dyn KvStore>,
    genesis: Genesis,
    genesis_hash: BlockHash,
    index: BlockIndex,
    orphans: OrphanPool,
    rejected: Rejected,
    next_seq: u64,
    last_fsync_ms: u64,
    unfsynced: bool,
    sig_cache: SigCache,
}

impl Chain {
    /// Opens (or creates) the chain in `data_dir`, in time independent of chain length.
    #[cfg(feature = "rocksdb")]
    pub fn open(data_dir: &Path, genesis: &Genesis) -> Result<Chain, ChainError> {
        std::fs::create_dir_all(data_dir)
            .map_err(|e| ChainError::Db(format!("creating {}: {e}", data_dir.display())))?;
        let store = RocksStore::open(&data_dir.join("chain"))?;
        Chain::open_with_store(Box::new(store), genesis)
    }

    /// A chain on a fresh in-memory store (tests, the P2P simulator).
    pub fn open_in_memory(genesis: &Genesis) -> Chain {
        // A fresh MemStore cannot fail to read or write, and the genesis batch is ours.
        Chain::open_with_store(Box::new(MemStore::new()), genesis).expect("a fresh in-memory chain opens")
    }

    /// Opens the chain on any store: creates it when empty, else loads the index and
    /// resumes fork choice (finishing a reorg a crash interrupted).
    pub fn open_with_store(store: Box<dyn KvStore>, genesis: &Genesis) -> Result<Chain, ChainError> {
        let genesis_hash = genesis.hash();
        let mut chain = Chain {
            store,
            genesis: genesis.clone(),
            genesis_hash,
            index: BlockIndex::default(),
            orphans: OrphanPool::default(),
            rejected: Rejected::default(),
            next_seq: 1,
            last_fsync_ms: 0,
            unfsynced: false,
            sig_cache: SigCache::new(SIG_CACHE_ENTRIES),
        };
        match chain.store.get(Column::Meta, meta_key::GENESIS)? {
            None => chain.initialize()?,
            Some(stored) => {
                let stored = store::hash_from_bytes(&stored, "genesis hash")?;
                if stored != genesis_hash {
                    return Err(ChainError::WrongGenesis { stored, expected: genesis_hash });
                }
            }
        }
        let schema = chain.store.get(Column::Meta, meta_key::SCHEMA)?;
        if schema.as_deref() != Some(&SCHEMA_VERSION.to_le_bytes()[..]) {
            return Err(ChainError::Corrupt(format!(
                "schema version {schema:?}, this node reads version {SCHEMA_VERSION}"
            )));
        }
        chain.load_index()?;
        let mut failures = HashMap::new();
        chain.activate_best_chain(&mut failures, &mut Fresh::new())?;
        chain.fsync_wal()?;
        Ok(chain)
    }

    /// Writes genesis: its block, index entry, height, allocations and the tip.
    fn initialize(&mut self) -> Result<(), ChainError> {
        let block = self.genesis.block();
        let hash = self.genesis_hash;
        let mut b = Batch::new();
        b.put(Column::Bodies, hash.0, encoding::encode(&block));
        let record = IndexRecord {
            header: block.header,
            work: block.header.target.work(),
            seq: 0,
            status: status::HAVE_BODY | status::VALID,
        };
        b.put(Column::Index, hash.0, record.encode());
        b.put(Column::Heights, height_key(0), hash.0);
        for a in &self.genesis.allocations {
            b.put(Column::Accounts, a.address.0, encoding::encode(&Account { balance: a.balance, nonce: 0 }));
        }
        b.put(Column::Meta, meta_key::SCHEMA, SCHEMA_VERSION.to_le_bytes());
        b.put(Column::Meta, meta_key::GENESIS, hash.0);
        b.put(Column::Meta, meta_key::TIP, hash.0);
        self.store.write(b)?;
        Ok(())
    }

    /// Loads the compact index from the `index` column family and rebuilds the best
    /// chain, the best header chain and the fork-choice candidates.
    fn load_index(&mut self) -> Result<(), ChainError> {
        let mut records = Vec::new();
        let mut bad: Option<ChainError> = None;
        self.store.for_each(Column::Index, &mut |k, v| {
            match (store::hash_from_bytes(k, "index key"), IndexRecord::decode(v)) {
                (Ok(h), Ok(r)) => records.push((h, r)),
                (Err(e), _) | (_, Err(e)) => {
                    bad = Some(e.into());
                    return false;
                }
            }
            true
        })?;
        if let Some(e) = bad {
            return Err(e);
        }
        // Parents before children.
        records.sort_unstable_by_key(|(_, r)| (r.header.height, r.seq));
        let mut max_seq = 0;
        for (hash, r) in records {
            max_seq = max_seq.max(r.seq);
            if r.header.height == 0 {
                if hash != self.genesis_hash {
                    return Err(ChainError::Corrupt(format!("index holds a second height-0 block {hash}")));
                }
                self.index.insert(&r.header, hash, r.header.target.work(), r.seq, r.status, NONE);
                continue;
            }
            let Some(prev) = self.index.get(&r.header.prev) else {
                // Only possible if a header batch was lost but its child's was not;
                // the entry is unreachable, so leave it out.
                tracing::warn!(%hash, "index entry without a parent entry; ignored");
                continue;
            };
            if self.index.e(prev).height + 1 != r.header.height {
                return Err(ChainError::Corrupt(format!("index entry {hash} has a wrong height")));
            }
            let work = self.index.e(prev).work.saturating_add(r.header.target.work());
            let mut st = r.status;
            if self.index.e(prev).has(status::FAILED_MASK) {
                st |= status::FAILED_CHILD;
            }
            self.index.insert(&r.header, hash, work, r.seq, st, prev);
        }
        self.next_seq = max_seq + 1;
        if self.index.get(&self.genesis_hash).is_none() {
            return Err(ChainError::Corrupt("genesis is not in the index".into()));
        }

        let tip = self
            .store
            .get(Column::Meta, meta_key::TIP)?
            .ok_or_else(|| ChainError::Corrupt("no tip in meta".into()))?;
        let tip = store::hash_from_bytes(&tip, "tip")?;
        let tip_idx = self
            .index
            .get(&tip)
            .ok_or_else(|| ChainError::Corrupt(format!("tip {tip} is not in the index")))?;
        let mut best = Vec::with_capacity(self.index.e(tip_idx).height as usize + 1);
        let mut cur = tip_idx;
        while cur != NONE {
            let e = self.index.e(cur);
            if !e.has(status::VALID) || !e.has(status::HAVE_BODY) || e.has(status::FAILED_MASK) {
                return Err(ChainError::Corrupt(format!("best-chain block {} is not marked valid", e.hash)));
            }
            best.push(cur);
            cur = e.prev;
        }
        best.reverse();
        self.index.best = best;

        // Chain completeness and candidates, parents first (the arena is in that order).
        for i in 0..self.index.entries.len() as Idx {
            let e = self.index.e(i);
            if !e.has(status::HAVE_BODY) {
                continue;
            }
            let prev = e.prev;
            if prev == NONE || self.index.e(prev).has(CHAIN_COMPLETE) {
                self.index.e_mut(i).status |= CHAIN_COMPLETE;
                if !self.index.e(i).has(status::FAILED_MASK) && self.index.beats_tip(i) {
                    let key = self.index.candidate_key(i);
                    self.index.candidates.insert(key);
                }
            } else {
                self.index.unlinked.entry(prev).or_default().push(i);
            }
        }
        self.index.recompute_best_header();
        Ok(())
    }

    pub fn params(&self) -> &ChainParams {
        &self.genesis.params
    }
    pub fn genesis(&self) -> &Genesis {
        &self.genesis
    }
    pub fn genesis_hash(&self) -> BlockHash {
        self.genesis_hash
    }

    fn tip_info_of(&self, idx: Idx) -> TipInfo {
        let e = self.index.e(idx);
        TipInfo { hash: e.hash, height: e.height, total_work: e.work, timestamp_ms: e.timestamp_ms }
    }

    pub fn tip(&self) -> TipInfo {
        self.tip_info_of(self.index.tip())
    }
    /// The most-work header chain's tip (ahead of [`Chain::tip`] while syncing).
    pub fn best_header(&self) -> TipInfo {
        self.tip_info_of(self.index.best_header())
    }

    fn parent_info(&self, idx: Idx) -> ParentInfo {
        let e = self.index.e(idx);
        let stamps = self.index.recent_timestamps(idx, self.genesis.params.median_time_blocks as usize);
        ParentInfo {
            hash: e.hash,
            height: e.height,
            timestamp_ms: e.timestamp_ms,
            median_time_past_ms: median_time_past(&stamps),
            anchor_timestamp_ms: e.anchor_ms,
        }
    }

    /// What a child of the current tip must satisfy (height, target, median time).
    pub fn tip_parent_info(&self) -> ParentInfo {
        self.parent_info(self.index.tip())
    }

    /// Validates and stores a block, following the most-work valid chain.
    pub fn accept_block(&mut self, block: Block, now_ms: u64) -> Result<AcceptResult, ChainError> {
        let hash = block.hash();
        if self.rejected.get(&hash).is_some() || self.orphans.contains(&hash) {
            return Ok(AcceptResult { acceptance: Acceptance::Duplicate, tip_change: None });
        }
        if let Some(idx) = self.index.get(&hash) {
            if self.index.e(idx).has(status::HAVE_BODY | status::FAILED_MASK) {
                return Ok(AcceptResult { acceptance: Acceptance::Duplicate, tip_change: None });
            }
        }
        let old_tip = self.index.tip();
        let idx = match self.process_block(&block, hash, now_ms, false)? {
            Processed::Rejected(e) => {
                return Ok(AcceptResult { acceptance: Acceptance::Invalid(e), tip_change: None })
            }
            Processed::Orphan(missing_parent) => {
                let size = block.encoded_len();
                self.orphans.insert(hash, block, size);
                return Ok(AcceptResult {
                    acceptance: Acceptance::Orphan { missing_parent },
                    tip_change: None,
                });
            }
            Processed::Stored(idx) => idx,
        };
        let mut fresh = Fresh::new();
        fresh.insert(hash, block);
        self.connect_orphans_of(hash, now_ms, &mut fresh)?;
        let mut failures = HashMap::new();
        self.activate_best_chain(&mut failures, &mut fresh)?;
        let e = self.index.e(idx);
        let acceptance = if e.has(status::FAILED_MASK) {
            Acceptance::Invalid(match failures.remove(&idx) {
                Some(err) => err,
                None => BlockError::InvalidAncestor(self.failed_root(idx)),
            })
        } else if self.index.on_best_chain(idx) {
            Acceptance::Connected
        } else {
            Acceptance::SideBranch
        };
        let tip_change = self.tip_change_since(old_tip, fresh)?;
        self.maybe_fsync_wal(now_ms)?;
        Ok(AcceptResult { acceptance, tip_change })
    }

    /// The nearest ancestor (or self) marked FAILED, whose error its descendants share.
    fn failed_root(&self, mut idx: Idx) -> BlockHash {
        loop {
            let e = self.index.e(idx);
            if e.has(status::FAILED) || e.prev == NONE || !self.index.e(e.prev).has(status::FAILED_MASK) {
                return e.hash;
            }
            idx = e.prev;
        }
    }

    /// Checks a block and stores it if it may be valid. Does not run fork choice.
    fn process_block(
        &mut self,
        block: &Block,
        hash: BlockHash,
        now_ms: u64,
        sigs_checked: bool,
    ) -> Result<Processed, ChainError> {
        let params = self.genesis.params;
        if let Err(e) = check_header_stateless(&block.header) {
            // Free to produce: not worth remembering.
            return Ok(Processed::Rejected(e));
        }
        let txids = match check_block_structure(block, &params) {
            Ok(txids) => txids,
            // Only a body that matches the header condemns the header; a mismatching
            // one may be a corrupted copy of a good block.
            Err(e) => {
                if e != BlockError::BadMerkleRoot && block.compute_merkle_root() == block.header.merkle_root {
                    return self.body_invalid(hash, block, e);
                }
                return Ok(Processed::Rejected(e));
            }
        };
        let existing = self.index.get(&hash);
        let parent = self.index.get(&block.header.prev);
        let Some(parent) = parent else {
            if !sigs_checked {
                if let Err(e) = self.check_signatures(block, &txids) {
                    self.rejected.insert(hash, e.clone());
                    return Ok(Processed::Rejected(e));
                }
            }
            return Ok(Processed::Orphan(block.header.prev));
        };
        if self.index.e(parent).has(status::FAILED_MASK) {
            let e = BlockError::InvalidAncestor(self.failed_root(parent));
            self.rejected.insert(hash, e.clone());
            return Ok(Processed::Rejected(e));
        }
        if existing.is_none() {
            if let Err(e) = check_header_contextual(&block.header, &self.parent_info(parent), &params, now_ms)
            {
                if !matches!(e, BlockError::TimestampTooNew { .. }) {
                    self.rejected.insert(hash, e.clone());
                }
                return Ok(Processed::Rejected(e));
            }
        }
        if !sigs_checked {
            if let Err(e) = self.check_signatures(block, &txids) {
                return self.body_invalid(hash, block, e);
            }
        }
        // Store the body and its index entry together.
        let idx = match existing {
            Some(idx) => {
                self.index.e_mut(idx).status |= status::HAVE_BODY;
                idx
            }
            None => {
                let work = self.index.e(parent).work.saturating_add(block.header.target.work());
                let seq = self.take_seq();
                self.index.insert(&block.header, hash, work, seq, status::HAVE_BODY, parent)
            }
        };
        let mut b = Batch::new();
        b.put(Column::Bodies, hash.0, encoding::encode(block));
        b.put(Column::Index, hash.0, self.record_of(idx, &block.header).encode());
        self.commit(b);
        self.unfsynced = true;
        self.index.consider_header(idx);
        self.on_body_stored(idx);
        Ok(Processed::Stored(idx))
    }

    /// Verifies the signatures of `block` (whose txids are `txids`) that the signature
    /// cache does not vouch for.
    fn check_signatures(&self, block: &Block, txids: &[Txid]) -> Result<(), BlockError> {
        let cache = &self.sig_cache;
        check_signatures_except(block, self.genesis.params.chain_id, |i| {
            txids.get(i).is_some_and(|id| cache.contains(id))
        })
    }

    /// Records that the transfer `txid` passed [`cairn_core::SignedTransfer::verify`] on
    /// this node (it was admitted to the mempool), so that a block carrying it skips the
    /// signature check. See [`sigcache`].
    pub fn remember_verified(&mut self, txid: Txid) {
        self.sig_cache.insert(txid);
    }

    /// A block whose body (matching its header) breaks a rule. With its parent indexed
    /// and its header fine in context, it gets a FAILED index entry so that its
    /// descendants are refused too, even after a restart.
    fn body_invalid(
        &mut self,
        hash: BlockHash,
        block: &Block,
        e: BlockError,
    ) -> Result<Processed, ChainError> {
        self.rejected.insert(hash, e.clone());
        if let Some(idx) = self.index.get(&hash) {
            self.mark_failed(idx, &e)?;
        } else if let Some(parent) = self.index.get(&block.header.prev) {
            let header_ok = !self.index.e(parent).has(status::FAILED_MASK)
                && check_header_contextual(
                    &block.header,
                    &self.parent_info(parent),
                    &self.genesis.params,
                    u64::MAX / 2,
                )
                .is_ok();
            if header_ok {
                let work = self.index.e(parent).work.saturating_add(block.header.target.work());
                let seq = self.take_seq();
                let idx = self.index.insert(&block.header, hash, work, seq, status::FAILED, parent);
                let mut b = Batch::new();
                b.put(Column::Index, hash.0, self.record_of(idx, &block.header).encode());
                b.put(Column::Meta, meta_key::invalid_reason(&hash), e.to_string());
                self.commit(b);
            }
        }
        Ok(Processed::Rejected(e))
    }

    fn take_seq(&mut self) -> u64 {
        let s = self.next_seq;
        self.next_seq += 1;
        s
    }

    fn record_of(&self, idx: Idx, header: &BlockHeader) -> IndexRecord {
        let e = self.index.e(idx);
        IndexRecord { header: *header, work: e.work, seq: e.seq, status: e.status & status::ALL }
    }

    fn read_record(&self, hash: &BlockHash) -> Result<IndexRecord, ChainError> {
        let bytes = self
            .store
            .get(Column::Index, &hash.0)?
            .ok_or_else(|| ChainError::Corrupt(format!("index entry of {hash} is missing")))?;
        Ok(IndexRecord::decode(&bytes)?)
    }

    /// Updates completeness after `idx` got its body: it and any waiting descendants
    /// become candidates once all their ancestors have bodies.
    fn on_body_stored(&mut self, idx: Idx) {
        let prev = self.index.e(idx).prev;
        if prev != NONE && !self.index.e(prev).has(CHAIN_COMPLETE) {
            self.index.unlinked.entry(prev).or_default().push(idx);
            return;
        }
        let mut stack = vec![idx];
        while let Some(i) = stack.pop() {
            self.index.e_mut(i).status |= CHAIN_COMPLETE;
            if !self.index.e(i).has(status::FAILED_MASK) && self.index.beats_tip(i) {
                let key = self.index.candidate_key(i);
                self.index.candidates.insert(key);
            }
            if let Some(children) = self.index.unlinked.remove(&i) {
                stack.extend(children);
            }
        }
    }

    /// Stores orphans waiting for `parent` (and theirs, recursively), adding those
    /// stored to `fresh`.
    fn connect_orphans_of(
        &mut self,
        parent: BlockHash,
        now_ms: u64,
        fresh: &mut Fresh,
    ) -> Result<(), ChainError> {
        let mut queue = vec![parent];
        while let Some(p) = queue.pop() {
            for child in self.orphans.take_children(&p) {
                let hash = child.hash();
                if let Processed::Stored(_) = self.process_block(&child, hash, now_ms, true)? {
                    queue.push(hash);
                    fresh.insert(hash, child);
                }
            }
        }
        Ok(())
    }

    /// Moves the tip to the best candidate until none beats it. A block that fails to
    /// connect is marked invalid with its descendants and the loop goes on, which
    /// returns to the best valid chain.
    /// Blocks in `fresh` are connected from there; those read from the store are added.
    fn activate_best_chain(
        &mut self,
        failures: &mut HashMap<Idx, BlockError>,
        fresh: &mut Fresh,
    ) -> Result<(), ChainError> {
        loop {
            let tip = self.index.tip();
            let Some(best) = self.index.candidates.first().map(|k| k.idx) else { break };
            if !self.index.beats_tip(best) {
                break;
            }
            let fork = self.index.fork_point(tip, best);
            while self.index.tip() != fork {
                self.disconnect_tip(fresh)?;
            }
            let mut path = Vec::new();
            let mut c = best;
            while c != fork {
                path.push(c);
                c = self.index.e(c).prev;
            }
            for &b in path.iter().rev() {
                if let Err(e) = self.connect(b, fresh)? {
                    let hash = self.index.e(b).hash;
                    tracing::warn!(%hash, error = %e, "block failed to connect; marking it and its descendants invalid");
                    self.mark_failed(b, &e)?;
                    failures.insert(b, e);
                    break;
                }
            }
        }
        let index = &self.index;
        let keep: Vec<_> = index.candidates.iter().filter(|k| index.beats_tip(k.idx)).copied().collect();
        self.index.candidates = keep.into_iter().collect();
        Ok(())
    }

    fn read_block(&self, hash: &BlockHash) -> Result<Block, ChainError> {
        self.block(hash)?
            .ok_or_else(|| ChainError::Corrupt(format!("body of indexed block {hash} is missing")))
    }

    /// Connects `idx` (a child of the tip) in one batch, taking its body from `fresh`
    /// when it is there and from the store (into `fresh`) otherwise. The outer error is
    /// ours; the inner one means the block is invalid.
    fn connect(&mut self, idx: Idx, fresh: &mut Fresh) -> Result<Result<(), BlockError>, ChainError> {
        let hash = self.index.e(idx).hash;
        let height = self.index.e(idx).height;
        if self.index.e(idx).prev != self.index.tip() {
            return Err(ChainError::Corrupt(format!("connecting {hash}, which is not a child of the tip")));
        }
        let block: &Block = match fresh.entry(hash) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => e.insert(self.read_block(&hash)?),
        };
        let state = Prefetched::load(&*self.store, block).map_err(|e| ChainError::Db(e.0))?;
        let (changes, undo) = match apply_block(&state, block, &self.genesis.params) {
            Ok(x) => x,
            Err(BlockError::State(e)) => return Err(ChainError::Db(e.0)),
            Err(e) => return Ok(Err(e)),
        };
        let mut b = Batch::new();
        for (a, acc) in &changes.accounts {
            b.put(Column::Accounts, a.0, encoding::encode(acc));
        }
        b.put(Column::Undo, hash.0, encoding::encode(&undo));
        let mut record = self.record_of(idx, &block.header);
        record.status |= status::VALID;
        b.put(Column::Index, hash.0, record.encode());
        b.put(Column::Heights, height_key(height), hash.0);
        for (i, tx) in block.transactions.iter().enumerate() {
            let loc = TxLocationRecord { block_hash: hash, height, index: i as u32 };
            b.put(Column::TxIndex, tx.txid().0, loc.encode());
        }
        b.put(Column::Meta, meta_key::TIP, hash.0);
        self.commit(b);
        self.unfsynced = true;
        self.index.e_mut(idx).status |= status::VALID;
        self.index.best.push(idx);
        let key = self.index.candidate_key(idx);
        self.index.candidates.remove(&key);
        Ok(Ok(()))
    }

    /// Disconnects the tip in one batch, restoring the accounts from its undo data. Its
    /// body, read from the store, is added to `fresh`.
    fn disconnect_tip(&mut self, fresh: &mut Fresh) -> Result<(), ChainError> {
        let idx = self.index.tip();
        let e = self.index.e(idx);
        let (hash, height, prev) = (e.hash, e.height, e.prev);
        if prev == NONE {
            return Err(ChainError::Corrupt("asked to disconnect genesis".into()));
        }
        let block = match fresh.remove(&hash) {
            Some(b) => b,
            None => self.read_block(&hash)?,
        };
        let undo_bytes = self
            .store
            .get(Column::Undo, &hash.0)?
            .ok_or_else(|| ChainError::Corrupt(format!("undo data of best-chain block {hash} is missing")))?;
        let undo: BlockUndo = encoding::decode(&undo_bytes)
            .map_err(|e| ChainError::Corrupt(format!("undo data of {hash}: {e}")))?;
        let mut b = Batch::new();
        for (a, prior) in &undo.prior {
            match prior {
                Some(acc) => b.put(Column::Accounts, a.0, encoding::encode(acc)),
                None => b.delete(Column::Accounts, a.0),
            }
        }
        b.delete(Column::Undo, hash.0);
        b.delete(Column::Heights, height_key(height));
        for tx in &block.transactions {
            b.delete(Column::TxIndex, tx.txid().0);
        }
        b.put(Column::Meta, meta_key::TIP, self.index.e(prev).hash.0);
        self.commit(b);
        self.unfsynced = true;
        fresh.insert(hash, block);
        self.index.best.pop();
        // It stays a valid block we could return to.
        let key = self.index.candidate_key(idx);
        self.index.candidates.insert(key);
        Ok(())
    }

    /// Marks `idx` FAILED and its descendants FAILED_CHILD, in memory and on disk, and
    /// records why `idx` failed (see [`Chain::invalid_reason`]) in the same batch.
    fn mark_failed(&mut self, idx: Idx, reason: &BlockError) -> Result<(), ChainError> {
        let mut b = Batch::new();
        b.put(Column::Meta, meta_key::invalid_reason(&self.index.e(idx).hash), reason.to_string());
        let mut stack = vec![(idx, status::FAILED)];
        let mut header_hit = false;
        while let Some((i, flag)) = stack.pop() {
            let e = self.index.e(i);
            let (hash, height, prev) = (e.hash, e.height as usize, e.prev);
            let key = self.index.candidate_key(i);
            self.index.candidates.remove(&key);
            if let Some(v) = self.index.unlinked.get_mut(&prev) {
                v.retain(|&c| c != i);
            }
            header_hit |= self.index.header_chain.get(height) == Some(&i);
            self.index.e_mut(i).status |= flag;
            let mut record = self.read_record(&hash)?;
            record.status = self.index.e(i).status & status::ALL;
            b.put(Column::Index, hash.0, record.encode());
            for c in self.index.children(i) {
                stack.push((c, status::FAILED_CHILD));
            }
        }
        self.commit(b);
        self.unfsynced = true;
        if header_hit {
            self.index.recompute_best_header();
        }
        Ok(())
    }

    /// The net change of the best chain from `old_tip` to the current tip; blocks in
    /// `fresh` are taken from there, the others read from the store.
    fn tip_change_since(&self, old_tip: Idx, mut fresh: Fresh) -> Result<Option<TipChange>, ChainError> {
        let new_tip = self.index.tip();
        if new_tip == old_tip {
            return Ok(None);
        }
        let fork = self.index.fork_point(old_tip, new_tip);
        let mut load = |idx: Idx| -> Result<Block, ChainError> {
            let hash = self.index.e(idx).hash;
            match fresh.remove(&hash) {
                Some(block) => Ok(block),
                None => self.read_block(&hash),
            }
        };
        let mut change = TipChange::default();
        let mut c = old_tip;
        while c != fork {
            change.disconnected.push(load(c)?);
            c = self.index.e(c).prev;
        }
        let mut c = new_tip;
        while c != fork {
            change.connected.push(load(c)?);
            c = self.index.e(c).prev;
        }
        change.connected.reverse();
        Ok(Some(change))
    }

    fn maybe_fsync_wal(&mut self, now_ms: u64) -> Result<(), ChainError> {
        if self.unfsynced && now_ms.saturating_sub(self.last_fsync_ms) >= FSYNC_INTERVAL_MS {
            if let Err(e) = self.fsync_wal() {
                // After a failed fsync the kernel may have dropped the dirty pages: what
                // is on disk is unknown, and retrying would report success falsely.
                fail_stop(format_args!("syncing the chain store failed: {e}"));
            }
            self.last_fsync_ms = now_ms;
        }
        Ok(())
    }

    /// Writes a batch after open. A write the store refuses (disk full, I/O error)
    /// leaves memory ahead of or behind disk, and the store would refuse the next one
    /// too: the node stops ([`fail_stop`]) rather than go on answering errors. What is
    /// on disk is the last committed batch, which [`Chain::open`] resumes from.
    fn commit(&self, b: Batch) {
        if let Err(e) = self.store.write(b) {
            fail_stop(format_args!("the chain store refused a write: {e}"));
        }
    }

    /// Makes every committed batch durable against a power cut (an fsync of the WAL).
    /// Done automatically at most once a second of commits and on drop.
    pub fn fsync_wal(&mut self) -> Result<(), ChainError> {
        self.store.sync()?;
        self.unfsynced = false;
        Ok(())
    }

    /// Adds headers (parent first) to the index without bodies, for headers-first sync.
    pub fn accept_headers(
        &mut self,
        headers: &[BlockHeader],
        now_ms: u64,
    ) -> Result<HeadersResult, ChainError> {
        let mut result = HeadersResult::default();
        let mut b = Batch::new();
        let mut added = Vec::new();
        let mut expected_prev: Option<BlockHash> = None;
        for (i, header) in headers.iter().enumerate() {
            let hash = header.hash();
            if let Some(p) = expected_prev {
                if header.prev != p {
                    result.invalid = Some((hash, BlockError::WrongParent { expected: p, got: header.prev }));
                    break;
                }
            }
            expected_prev = Some(hash);
            if let Some(e) = self.rejected.get(&hash) {
                result.invalid = Some((hash, e.clone()));
                break;
            }
            if let Some(idx) = self.index.get(&hash) {
                if self.index.e(idx).has(status::FAILED_MASK) {
                    result.invalid = Some((hash, BlockError::InvalidAncestor(self.failed_root(idx))));
                    break;
                }
                continue;
            }
            if let Err(e) = check_header_stateless(header) {
                result.invalid = Some((hash, e));
                break;
            }
            let Some(parent) = self.index.get(&header.prev) else {
                // Only the first can lack a parent: the others follow a header just added.
                debug_assert_eq!(i, 0);
                result.unconnected = true;
                break;
            };
            if self.index.e(parent).has(status::FAILED_MASK) {
                let e = BlockError::InvalidAncestor(self.failed_root(parent));
                self.rejected.insert(hash, e.clone());
                result.invalid = Some((hash, e));
                break;
            }
            if let Err(e) =
                check_header_contextual(header, &self.parent_info(parent), &self.genesis.params, now_ms)
            {
                if !matches!(e, BlockError::TimestampTooNew { .. }) {
                    self.rejected.insert(hash, e.clone());
                }
                result.invalid = Some((hash, e));
                break;
            }
            let work = self.index.e(parent).work.saturating_add(header.target.work());
            let seq = self.take_seq();
            let idx = self.index.insert(header, hash, work, seq, 0, parent);
            b.put(Column::Index, hash.0, self.record_of(idx, header).encode());
            self.index.consider_header(idx);
            added.push(hash);
            result.added += 1;
        }
        if !b.is_empty() {
            self.commit(b);
            self.unfsynced = true;
        }
        // Orphans may build on the new headers; their bodies can now be stored (they
        // cannot be connected before the headers' own bodies arrive).
        // (Fork choice does not run here, so the stored orphans are not needed again.)
        let mut fresh = Fresh::new();
        for hash in added {
            self.connect_orphans_of(hash, now_ms, &mut fresh)?;
        }
        self.maybe_fsync_wal(now_ms)?;
        Ok(result)
    }

    /// Hashes of blocks on the best header chain whose bodies we lack, lowest first.
    pub fn missing_blocks(&self, max: usize) -> Vec<BlockHash> {
        let hc = &self.index.header_chain;
        let best = &self.index.best;
        let mut h = (best.len() - 1).min(hc.len() - 1);
        while h > 0 && hc[h] != best[h] {
            h -= 1;
        }
        let mut out = Vec::new();
        for &idx in &hc[h + 1..] {
            if out.len() >= max {
                break;
            }
            let e = self.index.e(idx);
            if !e.has(status::HAVE_BODY) {
                out.push(e.hash);
            }
        }
        out
    }

    /// Blocks whose bodies we lack on the way from the best chain to `target`, lowest
    /// first, at most `max`: what to download to reach a peer's best block. Empty when
    /// `target` is not indexed, is invalid, or has every body up to it.
    pub fn missing_blocks_toward(&self, target: &BlockHash, max: usize) -> Vec<BlockHash> {
        let Some(t) = self.index.get(target) else { return Vec::new() };
        let te = self.index.e(t);
        if te.has(status::FAILED_MASK) || te.has(CHAIN_COMPLETE) {
            return Vec::new();
        }
        let height = te.height as usize;
        let hc = &self.index.header_chain;
        if hc.get(height) == Some(&t) {
            // On the best header chain (the common case, and the long one while
            // syncing): scan the array from where it leaves the best chain.
            let best = &self.index.best;
            let mut h = (best.len() - 1).min(height);
            while h > 0 && hc[h] != best[h] {
                h -= 1;
            }
            return hc[h + 1..=height]
                .iter()
                .map(|&i| self.index.e(i))
                .filter(|e| !e.has(status::HAVE_BODY))
                .take(max)
                .map(|e| e.hash)
                .collect();
        }
        // A side branch: walk back to the best chain.
        let mut path = Vec::new();
        let mut c = t;
        while c != NONE && !self.index.on_best_chain(c) {
            let e = self.index.e(c);
            if !e.has(status::HAVE_BODY) {
                path.push(e.hash);
            }
            c = e.prev;
        }
        path.reverse();
        path.truncate(max);
        path
    }

    /// Cumulative work of any indexed block, `None` if it is not indexed or invalid.
    pub fn work_of(&self, hash: &BlockHash) -> Option<Work> {
        let e = self.index.e(self.index.get(hash)?);
        (!e.has(status::FAILED_MASK)).then_some(e.work)
    }

    /// What checking headers on top of a stored, valid one needs: its [`ParentInfo`], its
    /// cumulative work, and its own and its ancestors' timestamps as far back as the
    /// median-time rule looks, newest first (see [`crate::p2p::presync`]).
    pub fn header_context(&self, hash: &BlockHash) -> Option<(ParentInfo, Work, Vec<u64>)> {
        let idx = self.index.get(hash)?;
        let e = self.index.e(idx);
        if e.has(status::FAILED_MASK) {
            return None;
        }
        let stamps = self.index.recent_timestamps(idx, self.genesis.params.median_time_blocks as usize);
        Some((self.parent_info(idx), e.work, stamps))
    }

    /// Work of one block at the target the next block on the tip must meet.
    pub fn next_block_work(&self) -> Work {
        self.tip_parent_info().next_target(&self.genesis.params).work()
    }

    pub fn header(&self, hash: &BlockHash) -> Option<BlockHeader> {
        self.index.get(hash)?;
        match self.read_record(hash) {
            Ok(r) => Some(r.header),
            Err(e) => {
                tracing::error!(%hash, error = %e, "cannot read an indexed header");
                None
            }
        }
    }
    /// Height of any indexed block (best chain or not).
    pub fn height_of(&self, hash: &BlockHash) -> Option<u64> {
        self.index.get(hash).map(|i| self.index.e(i).height)
    }
    pub fn is_on_best_chain(&self, hash: &BlockHash) -> bool {
        self.index.get(hash).is_some_and(|i| self.index.on_best_chain(i))
    }
    /// Known: in the index (header or full block), in the orphan pool, or remembered
    /// invalid.
    pub fn is_known(&self, hash: &BlockHash) -> bool {
        self.index.get(hash).is_some() || self.orphans.contains(hash) || self.rejected.get(hash).is_some()
    }
    /// What the index says about a block; `None` when it is not indexed (remembered-
    /// invalid blocks without an index entry also give `None`: see [`Chain::is_known`]).
    pub fn block_status(&self, hash: &BlockHash) -> Option<BlockStatus> {
        let e = self.index.e(self.index.get(hash)?);
        Some(if e.has(status::FAILED_MASK) {
            BlockStatus::Invalid
        } else if e.has(status::VALID) {
            BlockStatus::Valid
        } else if e.has(status::HAVE_BODY) {
            BlockStatus::Stored
        } else {
            BlockStatus::HeaderOnly
        })
    }
    /// Why an indexed block is [`BlockStatus::Invalid`]: the rule it broke, as recorded
    /// when it was marked, or for a descendant of such a block, which block that was.
    /// `None` when the block is not indexed or not invalid.
    pub fn invalid_reason(&self, hash: &BlockHash) -> Result<Option<String>, ChainError> {
        let Some(idx) = self.index.get(hash) else { return Ok(None) };
        let e = self.index.e(idx);
        if !e.has(status::FAILED_MASK) {
            return Ok(None);
        }
        if !e.has(status::FAILED) {
            return Ok(Some(BlockError::InvalidAncestor(self.failed_root(idx)).to_string()));
        }
        Ok(Some(match self.store.get(Column::Meta, &meta_key::invalid_reason(hash))? {
            Some(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            // Marked by a version of the node that did not record reasons.
            None => "invalid (reason not recorded)".to_string(),
        }))
    }
    /// Number of blocks in the orphan pool.
    pub fn orphan_count(&self) -> usize {
        self.orphans.len()
    }
    pub fn best_hash_at(&self, height: u64) -> Option<BlockHash> {
        let idx = *self.index.best.get(usize::try_from(height).ok()?)?;
        Some(self.index.e(idx).hash)
    }
    pub fn block(&self, hash: &BlockHash) -> Result<Option<Block>, ChainError> {
        let Some(bytes) = self.block_bytes(hash)? else { return Ok(None) };
        let block: Block =
            encoding::decode(&bytes).map_err(|e| ChainError::Corrupt(format!("stored block {hash}: {e}")))?;
        Ok(Some(block))
    }
    /// The canonical encoding of a stored block, as stored (not decoded): what a peer's
    /// `getdata` is answered with, without decoding and encoding it again.
    pub fn block_bytes(&self, hash: &BlockHash) -> Result<Option<Vec<u8>>, ChainError> {
        Ok(self.store.get(Column::Bodies, &hash.0)?)
    }
    pub fn account(&self, address: &Address) -> Result<Account, ChainError> {
        Ok(StateView(&*self.store)
            .account(address)
            .map_err(|e| ChainError::Corrupt(e.0))?
            .unwrap_or_default())
    }
    /// Every stored account, in address order (tests and tools; O(accounts)).
    pub fn all_accounts(&self) -> Result<Vec<(Address, Account)>, ChainError> {
        let mut out = Vec::new();
        let mut bad = None;
        self.store.for_each(Column::Accounts, &mut |k, v| {
            match (<[u8; 20]>::try_from(k), encoding::decode::<Account>(v)) {
                (Ok(a), Ok(acc)) => out.push((Address(a), acc)),
                _ => {
                    bad = Some(ChainError::Corrupt(format!("account entry {}", hex::encode(k))));
                    return false;
                }
            }
            true
        })?;
        match bad {
            Some(e) => Err(e),
            None => Ok(out),
        }
    }
    pub fn tx_location(&self, txid: &Txid) -> Result<Option<TxLocation>, ChainError> {
        let Some(bytes) = self.store.get(Column::TxIndex, &txid.0)? else { return Ok(None) };
        let r = TxLocationRecord::decode(&bytes)?;
        Ok(Some(TxLocation { block_hash: r.block_hash, height: r.height, index: r.index }))
    }
    /// Block locator of the best chain: tip, then exponentially sparser, then genesis.
    pub fn locator(&self) -> Vec<BlockHash> {
        let best = &self.index.best;
        let mut out = Vec::new();
        let mut h = best.len() - 1;
        let mut step = 1;
        loop {
            out.push(self.index.e(best[h]).hash);
            if h == 0 {
                break;
            }
            if out.len() >= 10 {
                step *= 2;
            }
            h = h.saturating_sub(step);
        }
        out
    }
    /// Best-chain headers after the first locator entry we have on the best chain.
    pub fn headers_after(&self, locator: &[BlockHash], max: usize) -> Vec<BlockHeader> {
        let start = locator
            .iter()
            .find_map(|h| self.index.get(h).filter(|&i| self.index.on_best_chain(i)))
            .map_or(1, |i| self.index.e(i).height as usize + 1);
        let mut out = Vec::new();
        for &idx in self.index.best.iter().skip(start).take(max) {
            let hash = self.index.e(idx).hash;
            match self.read_record(&hash) {
                Ok(r) => out.push(r.header),
                Err(e) => {
                    tracing::error!(%hash, error = %e, "cannot read an indexed header");
                    break;
                }
            }
        }
        out
    }
    /// The store, read-only use (`check-db`, tests).
    pub fn store(&self) -> &dyn KvStore {
        &*self.store
    }
}

impl Drop for Chain {
    fn drop(&mut self) {
        if self.unfsynced {
            if let Err(e) = self.store.sync() {
                tracing::warn!(error = %e, "syncing the chain store on close failed");
            }
        }
    }
}

impl AccountSource for Chain {
    fn account(&self, address: &Address) -> Result<Option<Account>, StateError> {
        StateView(&*self.store).account(address)
    }
}

/// Cumulative work of a block on top of `parent_work` (shared with [`check`]).
fn add_work(parent_work: Work, header: &BlockHeader) -> Work {
    parent_work.saturating_add(header.target.work())
}
