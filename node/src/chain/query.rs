//! Read-only questions about the chain: tip, headers, locators, missing blocks, block
//! status, stored blocks, accounts, transaction locations.

use super::index::{Idx, CHAIN_COMPLETE, NONE};
use super::{BlockStatus, Chain, ChainError, TipInfo, TxLocation};
use crate::store::{meta_key, status, Column, KvStore, TxLocationRecord};
use cairn_core::block::{Block, BlockHeader};
use cairn_core::difficulty::median_time_past;
use cairn_core::encoding;
use cairn_core::genesis::Genesis;
use cairn_core::params::ChainParams;
use cairn_core::state::{Account, AccountSource};
use cairn_core::validation::{BlockError, ParentInfo};
use cairn_core::{Address, BlockHash, Txid, Work};

impl Chain {
    pub fn params(&self) -> &ChainParams {
        &self.genesis.params
    }

    pub fn genesis(&self) -> &Genesis {
        &self.genesis
    }

    pub fn genesis_hash(&self) -> BlockHash {
        self.genesis_hash
    }

    pub(super) fn tip_info_of(&self, idx: Idx) -> TipInfo {
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

    pub(super) fn parent_info(&self, idx: Idx) -> ParentInfo {
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

    /// Hashes of blocks on the best header chain whose bodies we lack, lowest first.
    pub fn missing_blocks(&self, max: usize) -> Vec<BlockHash> {
        let h = self.index.header_chain_fork(usize::MAX);
        let mut out = Vec::new();
        for &idx in self.index.header_chain_range(h + 1, usize::MAX) {
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
        if self.index.header_chain_at(height) == Some(t) {
            // On the best header chain (the common case, and the long one while
            // syncing): scan the array from where it leaves the best chain.
            let h = self.index.header_chain_fork(height);
            return self
                .index
                .header_chain_range(h + 1, height)
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
        let idx = self.index.best_at(height)?;
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
        Ok(AccountSource::account(self, address).map_err(|e| ChainError::Corrupt(e.0))?.unwrap_or_default())
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

    /// Where `txid` is on the best chain (after the index writer has caught up with the
    /// tip, see `indexes.rs`).
    pub fn tx_location(&self, txid: &Txid) -> Result<Option<TxLocation>, ChainError> {
        self.indexes.wait()?;
        let Some(bytes) = self.store.get(Column::TxIndex, &txid.0)? else { return Ok(None) };
        let r = TxLocationRecord::decode(&bytes)?;
        Ok(Some(TxLocation { block_hash: r.block_hash, height: r.height, index: r.index }))
    }

    /// Block locator of the best chain: tip, then exponentially sparser, then genesis.
    pub fn locator(&self) -> Vec<BlockHash> {
        let mut out = Vec::new();
        let mut h = self.index.tip_height();
        let mut step = 1;
        loop {
            out.push(self.index.e(self.index.best_from(h)[0]).hash);
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
        for &idx in self.index.best_from(start).iter().take(max) {
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

    /// The store, read-only use (`check-db`, tests), once the index writer has written
    /// every job handed to it (see `indexes.rs`), so that what is read matches the tip.
    pub fn store(&self) -> &dyn KvStore {
        if let Err(e) = self.indexes.wait() {
            tracing::error!(error = %e, "reading the store with index entries still unwritten");
        }
        &*self.store
    }
}
