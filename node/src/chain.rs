//! The chain: block index, fork choice by cumulative work, reorgs, crash-safe commits.
//!
//! (API fixed; implementation in progress.)

use cairn_core::block::{Block, BlockHeader};
use cairn_core::genesis::{ChainParams, Genesis};
use cairn_core::state::{Account, AccountSource, StateError};
use cairn_core::validation::{BlockError, ParentInfo};
use cairn_core::{Address, BlockHash, Txid, Work};
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

pub struct Chain {
    _private: (),
}

impl Chain {
    /// Opens (or creates) the chain in `data_dir`, in time independent of chain length.
    pub fn open(_data_dir: &Path, _genesis: &Genesis) -> Result<Chain, ChainError> {
        todo!()
    }
    pub fn params(&self) -> &ChainParams {
        todo!()
    }
    pub fn genesis_hash(&self) -> BlockHash {
        todo!()
    }
    pub fn tip(&self) -> TipInfo {
        todo!()
    }
    /// The most-work header chain's tip (ahead of [`Chain::tip`] while syncing).
    pub fn best_header(&self) -> TipInfo {
        todo!()
    }
    /// What a child of the current tip must satisfy (height, target, median time).
    pub fn tip_parent_info(&self) -> ParentInfo {
        todo!()
    }
    /// Validates and stores a block, following the most-work valid chain.
    pub fn accept_block(&mut self, _block: Block, _now_ms: u64) -> Result<AcceptResult, ChainError> {
        todo!()
    }
    /// Adds headers (parent first) to the index without bodies, for headers-first sync.
    pub fn accept_headers(&mut self, _headers: &[BlockHeader], _now_ms: u64) -> Result<HeadersResult, ChainError> {
        todo!()
    }
    /// Hashes of blocks on the best header chain whose bodies we lack, lowest first.
    pub fn missing_blocks(&self, _max: usize) -> Vec<BlockHash> {
        todo!()
    }
    pub fn header(&self, _hash: &BlockHash) -> Option<BlockHeader> {
        todo!()
    }
    /// Height of any indexed block (best chain or not).
    pub fn height_of(&self, _hash: &BlockHash) -> Option<u64> {
        todo!()
    }
    pub fn is_on_best_chain(&self, _hash: &BlockHash) -> bool {
        todo!()
    }
    /// Known: in the index (header or full block), or remembered invalid.
    pub fn is_known(&self, _hash: &BlockHash) -> bool {
        todo!()
    }
    pub fn has_block(&self, _hash: &BlockHash) -> bool {
        todo!()
    }
    pub fn best_hash_at(&self, _height: u64) -> Option<BlockHash> {
        todo!()
    }
    pub fn block(&self, _hash: &BlockHash) -> Result<Option<Block>, ChainError> {
        todo!()
    }
    /// The stored canonical encoding of a block (served to peers without re-encoding).
    pub fn block_bytes(&self, _hash: &BlockHash) -> Result<Option<Vec<u8>>, ChainError> {
        todo!()
    }
    pub fn account(&self, _address: &Address) -> Result<Account, ChainError> {
        todo!()
    }
    pub fn tx_location(&self, _txid: &Txid) -> Result<Option<TxLocation>, ChainError> {
        todo!()
    }
    /// Block locator of the best chain: tip, then exponentially sparser, then genesis.
    pub fn locator(&self) -> Vec<BlockHash> {
        todo!()
    }
    /// Best-chain headers after the first locator entry we have on the best chain.
    pub fn headers_after(&self, _locator: &[BlockHash], _max: usize) -> Vec<BlockHeader> {
        todo!()
    }
}

impl AccountSource for Chain {
    fn account(&self, address: &Address) -> Result<Option<Account>, StateError> {
        let _ = address;
        todo!()
    }
}
