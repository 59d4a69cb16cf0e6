//! The chain: block index, fork choice by cumulative work, reorgs, crash-safe commits.
//!
//! [`Chain`] owns the store ([`crate::store`]) and the in-memory block index
//! ([`index`]). It is the only writer of the chain's column families.
//!
//! # How a block goes in
//!
//! 1. Stateless checks ([`cairn_core::validation`]): header version and proof of work,
//!    structure, merkle root, then every transfer's signature with
//!    [`check_transfer_at_with`](cairn_core::validation::check_transfer_at_with) **in
//!    parallel on all cores** (rayon), the public key of each sender decompressed once
//!    for all its transfers and kept for the next block. A body that does not match its header (bad merkle root) is
//!    refused without blaming the header, since the right body may still come.
//!    An import of blocks in a row ([`Chain::accept_blocks`]) runs these checks for
//!    the next blocks on a thread of its own ([`CheckedBlock::check`]) while this one
//!    goes through steps 2 and 3, so the serial part of a block (storing, applying,
//!    the write batch) overlaps the next block's signature checks; the verdicts are
//!    consulted where step 1 would run, so errors and what is stored are the same.
//!    Blocks from peers get the same overlap from the P2P readers, which check each
//!    block asked for ([`BlockChecker`], off the chain lock, consulting the
//!    signature cache) before [`Chain::accept_checked`] connects it.
//! 2. Parent unknown: the block waits in the bounded [`orphans`] pool. Parent known but
//!    invalid: refused as [`BlockError::InvalidAncestor`]. Otherwise the contextual
//!    header checks run against the parent, and the block is stored (body + index entry,
//!    one batch) on whatever branch it extends.
//! 3. Fork choice: every stored block whose ancestors all have bodies and that has more
//!    work than the tip is a candidate. The best candidate (most cumulative work, ties to
//!    the one indexed first) is activated: disconnect back to the fork point with the
//!    undo data, then connect the new branch block by block, applying the state
//!    transition ([`cairn_core::validation::apply_block`]) in order. If a block fails, it and
//!    its descendants are marked invalid (persisted) and fork choice runs again, which
//!    brings the node back to the best valid chain. The tip only moves to strictly more
//!    work: on a tie the chain we are on, seen first, stays. (After a reorg that fails
//!    part-way, "the chain we are on" is the new branch's last valid block when it has
//!    as much work as the old tip: the tip stays there rather than going back.)
//!
//! # Atomicity
//!
//! Connecting a block is one batch: accounts, undo, index status, height index and the
//! tip. Disconnecting is one batch too. So the stored tip always matches
//! the stored state, and [`Chain::open`] after a kill -9 finds a consistent chain at the
//! last committed tip without replaying anything: it loads the compact index (see
//! [`index`] for its size per block) and resumes fork choice, which finishes a reorg that
//! a crash interrupted. Durability choices are in [`crate::store`].
//!
//! The tx index and the address history index (when on, see [`history`]) follow in
//! batches of their own, written behind the chain by the index writer ([`indexes`]),
//! which a reopened chain catches up with the tip first.
//!
//! [`check_db`] replays the stored best chain from genesis and compares.
//!
//! # Files
//!
//! `open.rs` (create, load the index, resume), `accept.rs` (blocks and headers in, the
//! orphan pool, rejected hashes), `commit.rs` (fork choice, connect, disconnect,
//! marking invalid, the WAL fsync), `query.rs` (read-only questions), `index.rs` (the
//! in-memory index, which keeps its own invariants), `check.rs` (`check-db`),
//! `history.rs` (the address history index: build on open, paging; block summaries),
//! `indexes.rs` (the index writer, and the indexes' catch-up on open).

mod accept;
mod accounts;
mod check;
mod commit;
mod history;
mod index;
mod indexes;
mod open;
mod orphans;
mod query;
pub(crate) mod sigcache;
#[cfg(test)]
mod tests;

pub use accept::BlockChecker;
pub use accept::{check_signatures_parallel, CheckedBlock};
pub use accounts::ACCOUNT_CACHE_ENTRIES;
#[cfg(feature = "rocksdb")]
pub use check::check_db;
pub use check::{check_store, AddressIndexCheck, CheckReport};
pub use history::{BlockSummary, ChainOptions, HistoryCursor, HistoryEntry, HistoryPage, BUILD_BATCH_BLOCKS};

use accept::Rejected;
use accounts::AccountCache;
pub use commit::sender_of;
use commit::StateView;

use crate::store::{KvStore, RecordError, StoreError};
use cairn_core::block::{Block, BlockHeader};
use cairn_core::genesis::Genesis;
use cairn_core::state::{Account, AccountSource, StateError};
use cairn_core::transaction::DecodedKeys;
use cairn_core::validation::BlockError;
use cairn_core::{Address, BlockHash, Txid, Work};
use index::BlockIndex;
use indexes::IndexWriter;
use orphans::OrphanPool;
use sigcache::SigCache;
use std::sync::Arc;
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

/// How the best chain changed. `disconnected` is tip-first, `connected` parent-first;
/// `connected_txids[i]` are the txids of `connected[i]`'s transactions, in order
/// (those its check computed, so that the mempool does not hash them again).
#[derive(Clone, Debug, Default)]
pub struct TipChange {
    pub disconnected: Vec<Arc<Block>>,
    pub connected: Vec<Arc<Block>>,
    pub connected_txids: Vec<Vec<Txid>>,
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

pub struct Chain {
    store: Arc<dyn KvStore>,
    genesis: Genesis,
    genesis_hash: BlockHash,
    index: BlockIndex,
    orphans: OrphanPool,
    rejected: Rejected,
    next_seq: u64,
    last_fsync_ms: u64,
    unfsynced: bool,
    sig_cache: SigCache,
    /// The public keys of the senders of the last block whose signatures were checked,
    /// decoded once, for the next block (a sender often sends again): at most one
    /// block's senders.
    recent_keys: DecodedKeys,
    /// Committed account states kept in memory (`accounts.rs`).
    accounts: AccountCache,
    options: ChainOptions,
    /// Writes the tx and address indexes behind the chain (see `indexes.rs`).
    indexes: IndexWriter,
}

impl Drop for Chain {
    fn drop(&mut self) {
        // The index entries still queued go in before the last fsync.
        self.indexes.finish();
        if self.unfsynced {
            if let Err(e) = self.store.sync() {
                tracing::warn!(error = %e, "syncing the chain store on close failed");
            }
        }
    }
}

impl AccountSource for Chain {
    fn account(&self, address: &Address) -> Result<Option<Account>, StateError> {
        match self.accounts.get(address) {
            Some(account) => Ok(account),
            None => StateView(&*self.store).account(address),
        }
    }
}

/// Cumulative work of a block on top of `parent_work` (shared with [`check`]).
fn add_work(parent_work: Work, header: &BlockHeader) -> Work {
    parent_work.saturating_add(header.target.work())
}
