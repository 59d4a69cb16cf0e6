//! The address history index (`addrindex`, see [`crate::store`] for its layout): turning
//! it on or off when the chain opens, building it from the stored best chain, paging
//! through an address's entries newest first, and the block summaries that explorers
//! list and chart.
//!
//! The entries of a block are written and deleted behind its connection and
//! disconnection, in the order of these, by the index writer (`indexes.rs`); reads wait
//! for it, so they always match the tip.
//!
//! Opening a database whose `meta` lacks the `addrindex` key with the index on (a
//! database from before the index, or one run with it off) builds the index before
//! the node starts: one pass over the best chain's bodies, in batches of
//! [`BUILD_BATCH_BLOCKS`] blocks, the last of which sets the key. A crash during the
//! build leaves the key unset, so the next open clears what was written and starts
//! again. Opening with the index off deletes the key and the entries (they would go
//! stale at the next block).

use super::{Chain, ChainError};
use crate::store::{
    self, addr_entries, addr_key, decode_addr_entries, encode_addr_entries, meta_key, AddrEntryRecord, Batch,
    Column, ADDR_INDEX_VERSION, ADDR_KEY_LEN,
};
use cairn_core::block::{BlockHeader, HEADER_LEN};
use cairn_core::{encoding, Address, BlockHash};

/// Blocks per batch when building the index on open.
pub const BUILD_BATCH_BLOCKS: u64 = 1_000;
/// Keys per batch when clearing the index (each pass scans from the start, over the
/// deletions of the passes before it, so passes are few and large: ~6 MB of keys).
const CLEAR_BATCH_KEYS: usize = 100_000;

/// How the chain is kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChainOptions {
    /// Keep the address history index (`state_getHistory`). On by default.
    pub address_index: bool,
    /// Write the tx and address indexes on a thread of their own, behind the chain
    /// (`indexes.rs`), rather than inline after each block. On by default; off for
    /// [`Chain::open_with_store`] and [`Chain::open_in_memory`].
    pub index_thread: bool,
    /// Accounts kept in memory over the store ([`super::accounts`]): at most this many;
    /// 0 keeps none. [`super::ACCOUNT_CACHE_ENTRIES`] by default; 0 for
    /// [`Chain::open_with_store`] and [`Chain::open_in_memory`], whose stores are
    /// memory already (and the simulator runs thousands of them).
    pub account_cache: usize,
}

impl Default for ChainOptions {
    fn default() -> Self {
        ChainOptions { address_index: true, index_thread: true, account_cache: super::ACCOUNT_CACHE_ENTRIES }
    }
}

/// A position in an address's history: the block height and the transaction's index
/// in that block. Pages run newest first; a page ends before its cursor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HistoryCursor {
    pub height: u64,
    pub index: u32,
}

/// One confirmed transaction as an address sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HistoryEntry {
    pub height: u64,
    pub index: u32,
    pub block_hash: BlockHash,
    pub timestamp_ms: u64,
    pub record: AddrEntryRecord,
}

/// One page of history, newest first; `next` is the cursor of the following page
/// (`None` on the last page).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HistoryPage {
    pub entries: Vec<HistoryEntry>,
    pub next: Option<HistoryCursor>,
}

/// A best-chain block as lists and charts show it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockSummary {
    pub hash: BlockHash,
    pub header: BlockHeader,
    pub tx_count: u64,
    /// Bytes of the block's canonical encoding.
    pub size: usize,
}

impl Chain {
    /// Whether this chain keeps the address history index.
    pub fn has_address_index(&self) -> bool {
        self.options.address_index
    }

    /// Builds or drops the index to match the options (see the module doc).
    pub(super) fn sync_address_index(&mut self) -> Result<(), ChainError> {
        let marked = self.store.get(Column::Meta, meta_key::ADDR_INDEX)?;
        match (self.options.address_index, marked) {
            (true, Some(v)) if v == [ADDR_INDEX_VERSION] => Ok(()),
            (true, _) => self.build_address_index(),
            (false, None) => Ok(()),
            (false, Some(_)) => {
                let mut b = Batch::new();
                b.delete(Column::Meta, meta_key::ADDR_INDEX);
                self.store.write(b)?;
                tracing::info!("address history index turned off: removing its entries");
                self.clear_address_index()
            }
        }
    }

    fn clear_address_index(&mut self) -> Result<(), ChainError> {
        loop {
            let mut keys = Vec::new();
            self.store.for_each(Column::AddrIndex, &mut |k, _| {
                keys.push(k.to_vec());
                keys.len() < CLEAR_BATCH_KEYS
            })?;
            if keys.is_empty() {
                return Ok(());
            }
            let mut b = Batch::new();
            for k in keys {
                b.delete(Column::AddrIndex, k);
            }
            self.store.write(b)?;
        }
    }

    fn build_address_index(&mut self) -> Result<(), ChainError> {
        let tip = self.index.tip_height() as u64;
        // A fresh chain (genesis only) has nothing to index: only say so when there is.
        if tip > 0 {
            tracing::info!(blocks = tip, "building the address history index from the stored best chain");
        }
        self.clear_address_index()?;
        let started = std::time::Instant::now();
        let mut b = Batch::new();
        for height in 1..=tip {
            let hash = self
                .best_hash_at(height)
                .ok_or_else(|| ChainError::Corrupt(format!("best chain has no block at height {height}")))?;
            let block = self.read_block(&hash)?;
            for (k, v) in addr_entries(&block, height) {
                b.put(Column::AddrIndex, k, encode_addr_entries(&v));
            }
            if height % BUILD_BATCH_BLOCKS == 0 {
                self.store.write(std::mem::take(&mut b))?;
                tracing::info!(height, of = tip, "building the address history index");
            }
        }
        b.put(Column::Meta, meta_key::ADDR_INDEX, [ADDR_INDEX_VERSION]);
        self.store.write(b)?;
        self.store.sync()?;
        if tip > 0 {
            tracing::info!(
                blocks = tip,
                secs = started.elapsed().as_secs_f64(),
                "address history index built"
            );
        }
        Ok(())
    }

    /// Up to `limit` confirmed entries of `address`, newest first, before `before`
    /// (from the tip when `None`). `Ok(None)` when the index is off.
    pub fn history(
        &self,
        address: &Address,
        before: Option<HistoryCursor>,
        limit: usize,
    ) -> Result<Option<HistoryPage>, ChainError> {
        if !self.options.address_index {
            return Ok(None);
        }
        self.indexes.wait()?;
        let lower = addr_key(address, 0);
        // Keys hold whole blocks: scan up to and including the cursor's block, and skip
        // its entries at or after the cursor's position. No real block is at u64::MAX.
        let upper = addr_key(address, before.map_or(u64::MAX, |c| c.height.saturating_add(1)));
        let mut raw: Vec<(u64, u32, AddrEntryRecord)> = Vec::new();
        let mut bad: Option<ChainError> = None;
        self.store.for_each_rev_in(Column::AddrIndex, &lower, &upper, &mut |k, v| {
            match (store::parse_addr_key(k), decode_addr_entries(v)) {
                (Ok((_, h)), Ok(block_entries)) => {
                    for (i, r) in block_entries.into_iter().rev() {
                        if before.is_none_or(|c| (h, i) < (c.height, c.index)) {
                            raw.push((h, i, r));
                        }
                        if raw.len() > limit {
                            return false;
                        }
                    }
                }
                (Err(e), _) | (_, Err(e)) => {
                    bad = Some(ChainError::Corrupt(format!("address index entry {}: {e}", hex::encode(k))));
                    return false;
                }
            }
            true
        })?;
        if let Some(e) = bad {
            return Err(e);
        }
        let more = raw.len() > limit;
        raw.truncate(limit);
        let mut entries = Vec::with_capacity(raw.len());
        for (height, index, record) in raw {
            let Some(idx) = self.index.best_at(height) else {
                return Err(ChainError::Corrupt(format!(
                    "address index entry of {address} at height {height} is above the tip"
                )));
            };
            let e = self.index.e(idx);
            entries.push(HistoryEntry {
                height,
                index,
                block_hash: e.hash,
                timestamp_ms: e.timestamp_ms,
                record,
            });
        }
        let next = if more {
            entries.last().map(|e| HistoryCursor { height: e.height, index: e.index })
        } else {
            None
        };
        Ok(Some(HistoryPage { entries, next }))
    }

    /// Summaries of up to `count` best-chain blocks from `from_height` up (fewer past
    /// the tip): one read of each stored body, not decoded past its header and
    /// transaction count.
    pub fn block_summaries(&self, from_height: u64, count: usize) -> Result<Vec<BlockSummary>, ChainError> {
        let mut out = Vec::with_capacity(count.min(1024));
        for height in (from_height..=u64::MAX).take(count) {
            let Some(idx) = self.index.best_at(height) else { break };
            let hash = self.index.e(idx).hash;
            let bytes = self
                .block_bytes(&hash)?
                .ok_or_else(|| ChainError::Corrupt(format!("body of best-chain block {hash} is missing")))?;
            let corrupt = |what: &str| ChainError::Corrupt(format!("stored block {hash}: {what}"));
            // A block encodes as its header, then the transaction list's u64 LE length.
            let header: BlockHeader = bytes
                .get(..HEADER_LEN)
                .ok_or_else(|| corrupt("shorter than a header"))
                .and_then(|h| encoding::decode(h).map_err(|e| corrupt(&e.to_string())))?;
            let count_bytes: [u8; 8] = bytes
                .get(HEADER_LEN..HEADER_LEN + 8)
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| corrupt("no transaction count"))?;
            out.push(BlockSummary {
                hash,
                header,
                tx_count: u64::from_le_bytes(count_bytes),
                size: bytes.len(),
            });
        }
        Ok(out)
    }
}

/// The key of an `addrindex` entry, for messages.
pub fn describe_addr_key(key: &[u8]) -> String {
    match store::parse_addr_key(key) {
        Ok((a, h)) => format!("{a} at height {h}"),
        Err(_) => {
            format!("malformed key {} ({} bytes, expected {ADDR_KEY_LEN})", hex::encode(key), key.len())
        }
    }
}
