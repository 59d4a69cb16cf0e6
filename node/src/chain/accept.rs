//! Blocks and headers coming in: the stateless and contextual checks, storing a body
//! with its index entry, the orphan pool, and the bounded set of rejected hashes.
//! Fork choice itself is in [`super::commit`].

use super::commit::Fresh;
use super::index::{Idx, NONE};
use super::sigcache::SigCache;
use super::{AcceptResult, Acceptance, Chain, ChainError, HeadersResult};
use crate::store::{meta_key, status, Batch, Column};
use cairn_core::block::{Block, BlockHeader};
use cairn_core::encoding;
use cairn_core::transaction::{DecodedKeys, PublicKeyBytes};
use cairn_core::validation::{
    check_block_structure, check_block_structure_with_txids, check_header_contextual, check_header_stateless,
    check_transfers_at_with, BlockError,
};
use cairn_core::{Address, BlockHash, ChainParams, Txid};
use rayon::prelude::*;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

/// Invalid blocks remembered without an index entry (bad proof of work relative to
/// the schedule, children of invalid blocks, orphans with bad signatures): bounded.
pub(super) const MAX_REJECTED: usize = 4096;

#[derive(Default)]
pub(super) struct Rejected {
    errors: HashMap<BlockHash, BlockError>,
    order: VecDeque<BlockHash>,
}

impl Rejected {
    pub(super) fn insert(&mut self, hash: BlockHash, error: BlockError) {
        if self.errors.insert(hash, error).is_none() {
            self.order.push_back(hash);
            if self.order.len() > MAX_REJECTED {
                if let Some(old) = self.order.pop_front() {
                    self.errors.remove(&old);
                }
            }
        }
    }
    pub(super) fn get(&self, hash: &BlockHash) -> Option<&BlockError> {
        self.errors.get(hash)
    }
}

/// What happened to one block in [`Chain::process_block`].
pub(super) enum Processed {
    Rejected(BlockError),
    Orphan(BlockHash),
    /// Stored at this index; the block's txids, in transaction order.
    Stored(Idx, Vec<Txid>),
}

/// Signatures checked together on one rayon thread ([`check_transfers_at_with`]): one
/// field inversion per batch instead of one per signature, and batches enough for both
/// cores and an early stop at the first invalid one.
const SIGNATURES_PER_BATCH: usize = 32;

/// Verifies every transfer's signature on the rayon pool; the reported error is the
/// lowest failing index, as a serial check would report.
pub fn check_signatures_parallel(block: &Block, chain_id: u32) -> Result<(), BlockError> {
    check_signatures_except(block, chain_id, |_| false, &mut DecodedKeys::default())
}

/// [`check_signatures_parallel`], skipping the transfers at indexes for which
/// `verified` says this node has checked these very bytes already. `keys` holds
/// decoded public keys from the block before (any keys will do: an entry is the
/// decoding of its exact bytes); on return it holds those of this block's senders.
pub(super) fn check_signatures_except(
    block: &Block,
    chain_id: u32,
    verified: impl Fn(usize) -> bool + Sync,
    keys: &mut DecodedKeys,
) -> Result<(), BlockError> {
    let todo: Vec<usize> = (1..block.transactions.len()).filter(|&i| !verified(i)).collect();
    *keys = senders_keys(block, &todo, keys);
    let keys = &*keys;
    let first_err = todo
        .par_chunks(SIGNATURES_PER_BATCH)
        .map(|indexes| check_transfers_at_with(block, indexes, chain_id, keys))
        .find_first(Result::is_err);
    match first_err {
        Some(Err(e)) => Err(e),
        _ => Ok(()),
    }
}

/// The public keys of the senders among `todo`: taken from `prior` when there,
/// otherwise each decompressed once, on the rayon pool. (A sender with one transfer
/// costs one decompression either way, here or inside its check; a sender seen in the
/// block before costs none.)
fn senders_keys(block: &Block, todo: &[usize], prior: &DecodedKeys) -> DecodedKeys {
    let mut senders: HashSet<&PublicKeyBytes> = HashSet::with_capacity(todo.len());
    for &i in todo {
        if let Some(st) = block.transactions[i].as_transfer() {
            senders.insert(&st.transfer.from);
        }
    }
    let mut keys = DecodedKeys::default();
    let mut to_decode = Vec::with_capacity(senders.len());
    for from in senders {
        match prior.entry(from) {
            Some(entry) => keys.extend([entry]),
            None => to_decode.push(from),
        }
    }
    keys.extend(
        to_decode.into_par_iter().with_min_len(16).filter_map(DecodedKeys::decode).collect::<Vec<_>>(),
    );
    keys
}

/// What [`Chain::process_block`] may take as already checked.
pub(super) enum Prechecked {
    /// Nothing: every check runs.
    Nothing,
    /// The signatures (an orphan whose signatures were checked when it was stored).
    Signatures,
    /// The header's proof of work and the structure passed, giving `txids`, and the
    /// signature check gave `signatures` ([`CheckedBlock::check`]).
    All { txids: Vec<Txid>, signatures: Result<(), BlockError> },
}

/// A block whose stateless checks already ran ([`CheckedBlock::check`], on any thread,
/// without the chain): the header's proof of work, the structure (size, coinbase,
/// txids, merkle root) and every signature. A caller with blocks in a row (an import)
/// checks the next block while [`Chain::accept_checked`] stores, applies and commits
/// this one, so that both cores work through the serial part of each block.
///
/// The verdicts are only consulted where [`Chain::accept_block`] would have run those
/// checks, in the same order, so a block is refused with the same error either way
/// and nothing of an invalid block is stored.
#[derive(Clone, Debug)]
pub struct CheckedBlock {
    /// Shared, so that whoever keeps the block while it connects (a P2P layer serving
    /// it, the index writer, the tip change) holds it without copying it.
    block: Arc<Block>,
    hash: BlockHash,
    /// The parameters it was checked against: a chain of other parameters checks again.
    params: ChainParams,
    /// `None` when the header or the structure failed: [`Chain::accept_checked`] then
    /// runs those checks again itself (they are cheap to fail).
    pub(super) checked: Option<(Vec<Txid>, Result<(), BlockError>)>,
    /// Each transaction's sender (the coinbase's recipient first), when the caller
    /// knew them already (a block rebuilt from the mempool, whose entries carry them),
    /// so that the connection does not derive them again.
    senders: Option<Vec<Address>>,
}

impl CheckedBlock {
    /// Checks `block` against `params` (signatures on the rayon pool). `keys`: public
    /// keys decoded for the block before, reused when a sender sends again; on return,
    /// this block's (pass the same value to the next call).
    pub fn check(block: Block, params: &ChainParams, keys: &mut DecodedKeys) -> CheckedBlock {
        CheckedBlock::check_except(block, params, keys, |txids| vec![false; txids.len()])
    }

    /// [`CheckedBlock::check`], skipping the signatures of the transfers for which
    /// `verified` (given the block's txids) says this node has checked these very bytes
    /// already.
    fn check_except(
        block: Block,
        params: &ChainParams,
        keys: &mut DecodedKeys,
        verified: impl FnOnce(&[Txid]) -> Vec<bool>,
    ) -> CheckedBlock {
        let hash = block.hash();
        let checked = match check_header_stateless(&block.header)
            .and_then(|()| check_block_structure(&block, params))
        {
            Ok(txids) => {
                let known = verified(&txids);
                let signatures = check_signatures_except(
                    &block,
                    params.chain_id,
                    |i| known.get(i).copied().unwrap_or(false),
                    keys,
                );
                Some((txids, signatures))
            }
            Err(_) => None,
        };
        CheckedBlock { block: Arc::new(block), hash, params: *params, checked, senders: None }
    }

    /// A block rebuilt from a compact block (`p2p/protocol/compact.rs`): `txids` are
    /// those of its transactions, computed by this node from these very bytes (the
    /// mempool's, and those of the transfers the peer sent), and **every transfer's
    /// signature has passed on this node**: those from the mempool when they were
    /// admitted, the others in the caller's check. The header and the structure
    /// (size, coinbase, duplicates, merkle root against `txids`) are checked here,
    /// without hashing a transaction again; on failure, the error (nothing is vouched
    /// for). `senders`: each transaction's sender, the coinbase's recipient first (the
    /// mempool's, derived when each transfer was admitted, and those of the transfers
    /// the peer sent); the connection takes them as they are.
    pub(crate) fn rebuilt(
        block: Block,
        txids: Vec<Txid>,
        senders: Vec<Address>,
        params: &ChainParams,
    ) -> Result<CheckedBlock, BlockError> {
        check_header_stateless(&block.header)?;
        check_block_structure_with_txids(&block, &txids, params)?;
        let hash = block.hash();
        Ok(CheckedBlock {
            block: Arc::new(block),
            hash,
            params: *params,
            checked: Some((txids, Ok(()))),
            senders: Some(senders),
        })
    }

    /// The block, unchecked again (for a path that takes a plain block).
    pub fn into_block(self) -> Block {
        Arc::unwrap_or_clone(self.block)
    }

    pub fn block(&self) -> &Block {
        &self.block
    }

    /// The block itself, shared (no copy).
    pub fn shared(&self) -> Arc<Block> {
        self.block.clone()
    }

    pub fn hash(&self) -> BlockHash {
        self.hash
    }

    /// The block's txids when every check passed (header, structure, signatures).
    pub fn passed(&self) -> Option<&[Txid]> {
        match &self.checked {
            Some((txids, Ok(()))) => Some(txids),
            _ => None,
        }
    }
}

/// Checks blocks from the network before their turn, off the chain lock, for
/// [`Chain::accept_checked`]: [`CheckedBlock::check`] against the chain's parameters,
/// except that a transfer the chain's signature cache vouches for (say, one admitted to
/// the mempool) is not verified again, as [`Chain::accept_block`] would not verify it.
/// The cache is consulted when the block is checked, which may be before an entry
/// arrives (the transfer is then verified here, once) but never vouches for a transfer
/// that did not verify, so the verdict is the one [`Chain::accept_block`] would reach.
/// Made by [`Chain::block_checker`]; clones share the cache.
#[derive(Clone)]
pub struct BlockChecker {
    params: ChainParams,
    cache: SigCache,
}

impl BlockChecker {
    /// Checks `block` (signatures on the rayon pool; call it where waiting for the pool
    /// is fine, never with the chain lock held). `keys`: as in [`CheckedBlock::check`].
    pub fn check(&self, block: Block, keys: &mut DecodedKeys) -> CheckedBlock {
        CheckedBlock::check_except(block, &self.params, keys, |txids| self.cache.known(txids))
    }
}

impl Chain {
    /// A [`BlockChecker`] for blocks to be connected with [`Chain::accept_checked`].
    pub fn block_checker(&self) -> BlockChecker {
        BlockChecker { params: self.genesis.params, cache: self.sig_cache.clone() }
    }

    /// Validates and stores a block, following the most-work valid chain.
    pub fn accept_block(&mut self, block: Block, now_ms: u64) -> Result<AcceptResult, ChainError> {
        let hash = block.hash();
        self.accept(Arc::new(block), hash, Prechecked::Nothing, None, now_ms)
    }

    /// [`Chain::accept_block`] of a block whose stateless checks already ran: same
    /// result, same errors, without checking again what [`CheckedBlock::check`] did.
    pub fn accept_checked(&mut self, checked: CheckedBlock, now_ms: u64) -> Result<AcceptResult, ChainError> {
        let CheckedBlock { block, hash, params, checked, senders } = checked;
        let pre = match checked {
            Some((txids, signatures)) if params == self.genesis.params => {
                Prechecked::All { txids, signatures }
            }
            _ => Prechecked::Nothing,
        };
        self.accept(block, hash, pre, senders, now_ms)
    }

    /// Accepts blocks in order, each exactly as [`Chain::accept_block`] would (same
    /// results, same errors, the same stored), with the stateless checks of the next
    /// blocks ([`CheckedBlock::check`]: proof of work, structure, txids, merkle root and
    /// every signature, on the rayon pool) running on a thread of their own while this
    /// one is stored, applied and committed, at most two blocks ahead. For blocks whose
    /// transfers this node has not seen (an import, a sync): the signature cache is not
    /// consulted ahead.
    ///
    /// `each` gets every block's hash and result in order; an `Err` from it, from the
    /// source or from the chain stops the import, and the blocks after are not looked
    /// at.
    pub fn accept_blocks<E>(
        &mut self,
        blocks: impl Iterator<Item = Result<Block, E>> + Send,
        now_ms: u64,
        mut each: impl FnMut(BlockHash, AcceptResult) -> Result<(), E>,
    ) -> Result<(), E>
    where
        E: From<ChainError> + Send,
    {
        let params = self.genesis.params;
        std::thread::scope(|s| {
            let (tx, rx) = std::sync::mpsc::sync_channel::<Result<CheckedBlock, E>>(1);
            s.spawn(move || {
                let mut keys = DecodedKeys::default();
                for block in blocks {
                    let item = block.map(|b| CheckedBlock::check(b, &params, &mut keys));
                    let failed = item.is_err();
                    // A closed channel: the importer stopped.
                    if tx.send(item).is_err() || failed {
                        break;
                    }
                }
            });
            // Returning drops `rx`, which ends the checking thread at its next send.
            for item in rx {
                let checked = item?;
                let hash = checked.hash();
                let result = self.accept_checked(checked, now_ms)?;
                each(hash, result)?;
            }
            Ok(())
        })
    }

    fn accept(
        &mut self,
        block: Arc<Block>,
        hash: BlockHash,
        pre: Prechecked,
        senders: Option<Vec<Address>>,
        now_ms: u64,
    ) -> Result<AcceptResult, ChainError> {
        if self.rejected.get(&hash).is_some() || self.orphans.contains(&hash) {
            return Ok(AcceptResult { acceptance: Acceptance::Duplicate, tip_change: None });
        }
        if let Some(idx) = self.index.get(&hash) {
            if self.index.e(idx).has(status::HAVE_BODY | status::FAILED_MASK) {
                return Ok(AcceptResult { acceptance: Acceptance::Duplicate, tip_change: None });
            }
        }
        let old_tip = self.index.tip();
        let (idx, txids) = match self.process_block(&block, hash, now_ms, pre)? {
            Processed::Rejected(e) => {
                return Ok(AcceptResult { acceptance: Acceptance::Invalid(e), tip_change: None })
            }
            Processed::Orphan(missing_parent) => {
                let size = block.encoded_len();
                self.orphans.insert(hash, Arc::unwrap_or_clone(block), size);
                return Ok(AcceptResult {
                    acceptance: Acceptance::Orphan { missing_parent },
                    tip_change: None,
                });
            }
            Processed::Stored(idx, txids) => (idx, txids),
        };
        let mut fresh = Fresh::new();
        fresh.insert_checked(hash, block, txids, senders);
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
    pub(super) fn failed_root(&self, mut idx: Idx) -> BlockHash {
        loop {
            let e = self.index.e(idx);
            if e.has(status::FAILED) || e.prev == NONE || !self.index.e(e.prev).has(status::FAILED_MASK) {
                return e.hash;
            }
            idx = e.prev;
        }
    }

    /// Checks a block and stores it if it may be valid. Does not run fork choice.
    pub(super) fn process_block(
        &mut self,
        block: &Block,
        hash: BlockHash,
        now_ms: u64,
        pre: Prechecked,
    ) -> Result<Processed, ChainError> {
        let params = self.genesis.params;
        // The signatures' verdict when it is already known (`None`: check them here).
        let (txids, mut signatures) = match pre {
            Prechecked::All { txids, signatures } => (txids, Some(signatures)),
            pre => {
                if let Err(e) = check_header_stateless(&block.header) {
                    // Free to produce: not worth remembering.
                    return Ok(Processed::Rejected(e));
                }
                let txids = match check_block_structure(block, &params) {
                    Ok(txids) => txids,
                    // Only a body that matches the header condemns the header; a
                    // mismatching one may be a corrupted copy of a good block.
                    Err(e) => {
                        if e != BlockError::BadMerkleRoot
                            && block.compute_merkle_root() == block.header.merkle_root
                        {
                            return self.body_invalid(hash, block, e);
                        }
                        return Ok(Processed::Rejected(e));
                    }
                };
                (txids, matches!(pre, Prechecked::Signatures).then_some(Ok(())))
            }
        };
        let existing = self.index.get(&hash);
        let parent = self.index.get(&block.header.prev);
        let Some(parent) = parent else {
            let verdict = match signatures.take() {
                Some(verdict) => verdict,
                None => self.check_signatures(block, &txids),
            };
            if let Err(e) = verdict {
                self.rejected.insert(hash, e.clone());
                return Ok(Processed::Rejected(e));
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
        let verdict = match signatures.take() {
            Some(verdict) => verdict,
            None => self.check_signatures(block, &txids),
        };
        if let Err(e) = verdict {
            return self.body_invalid(hash, block, e);
        }
        // Store the body and its index entry together.
        let idx = match existing {
            Some(idx) => {
                self.index.set_has_body(idx);
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
        self.index.body_linked(idx);
        Ok(Processed::Stored(idx, txids))
    }

    /// Verifies the signatures of `block` (whose txids are `txids`) that the signature
    /// cache does not vouch for.
    /// The public keys decoded for the block before are reused, and this block's kept
    /// for the next.
    pub(super) fn check_signatures(&mut self, block: &Block, txids: &[Txid]) -> Result<(), BlockError> {
        // Looked up under the cache's lock once, which is not held while the rayon
        // threads check.
        let known = self.sig_cache.known(txids);
        check_signatures_except(
            block,
            self.genesis.params.chain_id,
            |i| known.get(i).copied().unwrap_or(false),
            &mut self.recent_keys,
        )
    }

    /// Records that the transfer `txid` passed [`cairn_core::SignedTransfer::verify`] on
    /// this node (it was admitted to the mempool, or a compact block brought it), so that
    /// a block carrying it skips the signature check. See [`sigcache`].
    pub fn remember_verified(&mut self, txid: Txid) {
        self.sig_cache.insert(txid);
    }

    /// The signature cache vouches that the transfer `txid` passed
    /// [`cairn_core::SignedTransfer::verify`] on this node.
    pub fn was_verified(&self, txid: &Txid) -> bool {
        self.sig_cache.contains(txid)
    }

    /// A handle on this chain's signature cache, for asking it without the chain lock
    /// (the P2P ledger's compact-block checks: [`crate::node::Node::sig_cache`]).
    pub(crate) fn sig_cache_handle(&self) -> super::sigcache::SigCache {
        self.sig_cache.clone()
    }

    /// A block whose body (matching its header) breaks a rule. With its parent indexed
    /// and its header fine in context, it gets a FAILED index entry so that its
    /// descendants are refused too, even after a restart.
    pub(super) fn body_invalid(
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

    /// Stores orphans waiting for `parent` (and theirs, recursively), adding those
    /// stored to `fresh`.
    pub(super) fn connect_orphans_of(
        &mut self,
        parent: BlockHash,
        now_ms: u64,
        fresh: &mut Fresh,
    ) -> Result<(), ChainError> {
        let mut queue = vec![parent];
        while let Some(p) = queue.pop() {
            for child in self.orphans.take_children(&p) {
                let hash = child.hash();
                if let Processed::Stored(_, txids) =
                    self.process_block(&child, hash, now_ms, Prechecked::Signatures)?
                {
                    queue.push(hash);
                    fresh.insert_checked(hash, Arc::new(child), txids, None);
                }
            }
        }
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
}
