//! Fork choice and commits: moving the tip to the most-work valid candidate by
//! disconnecting and connecting blocks, each in one write batch; marking blocks
//! invalid; the tip change reported; the WAL fsync policy.

use super::accounts::AccountCache;
use super::index::{Idx, NONE};
use super::indexes::IndexJob;
use super::{Chain, ChainError, TipChange};
use crate::failstop::fail_stop;
use crate::store::{height_key, meta_key, status, Batch, Column, IndexRecord, KvStore};
use cairn_core::block::{Block, BlockHeader};
use cairn_core::encoding;
use cairn_core::state::{Account, AccountSource, BlockUndo, StateError};
use cairn_core::validation::apply_block_with_senders;
use cairn_core::validation::BlockError;
use cairn_core::{Address, BlockHash, Transaction, Txid};
use std::collections::HashMap;
use std::sync::Arc;

/// Fsync the WAL at most this often (see [`crate::store`] for why not every batch).
pub(super) const FSYNC_INTERVAL_MS: u64 = 1_000;

/// Blocks at hand in the call under way, by hash: those it stored (the block handed in,
/// orphans it unlocked) and those a reorg read. A body is decoded at most once per
/// call: connected from here rather than read back, and handed out in the
/// [`TipChange`]. The txids computed when a block was checked are kept with it, so
/// that connecting it (tx index, address index) does not hash every transaction again.
#[derive(Default)]
pub(super) struct Fresh {
    blocks: HashMap<BlockHash, Arc<Block>>,
    txids: HashMap<BlockHash, Vec<Txid>>,
    /// Senders known before the connection (a block rebuilt from the mempool, see
    /// `CheckedBlock::rebuilt`), in transaction order.
    senders: HashMap<BlockHash, Vec<Address>>,
}

impl Fresh {
    pub(super) fn new() -> Fresh {
        Fresh::default()
    }

    pub(super) fn insert(&mut self, hash: BlockHash, block: Arc<Block>) {
        self.blocks.insert(hash, block);
    }

    /// A block with its txids and, when known, its senders (see [`sender_of`]), both in
    /// transaction order.
    pub(super) fn insert_checked(
        &mut self,
        hash: BlockHash,
        block: Arc<Block>,
        txids: Vec<Txid>,
        senders: Option<Vec<Address>>,
    ) {
        if txids.len() == block.transactions.len() {
            self.txids.insert(hash, txids);
        }
        if let Some(senders) = senders {
            self.senders.insert(hash, senders);
        }
        self.blocks.insert(hash, block);
    }

    pub(super) fn remove(&mut self, hash: &BlockHash) -> Option<Arc<Block>> {
        self.take(hash).map(|(block, _)| block)
    }

    /// A block and its txids when they are known.
    fn take(&mut self, hash: &BlockHash) -> Option<(Arc<Block>, Option<Vec<Txid>>)> {
        self.senders.remove(hash);
        let txids = self.txids.remove(hash);
        self.blocks.remove(hash).map(|b| (b, txids))
    }
}

/// Reads accounts straight from the store (the state at the committed tip).
pub(super) struct StateView<'a>(pub(super) &'a dyn KvStore);

impl AccountSource for StateView<'_> {
    fn account(&self, address: &Address) -> Result<Option<Account>, StateError> {
        let bytes = self.0.get(Column::Accounts, &address.0).map_err(|e| StateError(e.to_string()))?;
        decode_account(address, bytes)
    }
}

/// The accounts a block touches, taken from the account cache or read from the store in
/// one batched lookup before the block is applied (serial point reads cost ~15 us each
/// on a state of a million accounts, see docs/PERFORMANCE-LOG.md); anything not prefetched
/// falls back to the store.
pub(super) struct Prefetched<'a> {
    accounts: HashMap<Address, Option<Account>>,
    /// Each transaction's sender (the coinbase's recipient at index 0), derived once
    /// here and handed to [`apply_block_with_senders`].
    pub(super) senders: Vec<Address>,
    store: StateView<'a>,
}

impl<'a> Prefetched<'a> {
    pub(super) fn load(
        store: &'a dyn KvStore,
        cache: &AccountCache,
        block: &Block,
        known_senders: Option<Vec<Address>>,
    ) -> Result<Prefetched<'a>, StateError> {
        // Senders the caller knew (one per transaction), or derived here from each
        // transfer's public key.
        let senders: Vec<Address> = match known_senders {
            Some(s) if s.len() == block.transactions.len() => {
                debug_assert!(
                    block.transactions.iter().zip(&s).all(|(tx, a)| sender_of(tx) == *a),
                    "a known sender that is not the transaction's"
                );
                s
            }
            _ => block.transactions.iter().map(sender_of).collect(),
        };
        // Each address once, from the cache or (the misses) read below: deduplicated
        // through the map rather than by sorting every address of the block (about two
        // per transfer, most of them repeats); only the misses are sorted, for MultiGet.
        let mut accounts: HashMap<Address, Option<Account>> =
            HashMap::with_capacity(block.transactions.len());
        let mut misses: Vec<Address> = Vec::new();
        let mut touch = |a: Address| {
            if let std::collections::hash_map::Entry::Vacant(e) = accounts.entry(a) {
                match cache.get(&a) {
                    Some(account) => {
                        e.insert(account);
                    }
                    None => misses.push(a),
                }
            }
        };
        for (tx, sender) in block.transactions.iter().zip(&senders) {
            touch(*sender);
            if let Transaction::Transfer(st) = tx {
                touch(st.transfer.to);
            }
        }
        misses.sort_unstable();
        misses.dedup();
        let keys: Vec<&[u8]> = misses.iter().map(|a| &a.0[..]).collect();
        let values = store.multi_get(Column::Accounts, &keys).map_err(|e| StateError(e.to_string()))?;
        for (address, value) in misses.iter().zip(values) {
            accounts.insert(*address, decode_account(address, value)?);
        }
        Ok(Prefetched { accounts, senders, store: StateView(store) })
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

/// The account a transaction's entry in a block's senders names, as the connection
/// counts it ([`Prefetched::senders`], [`super::CheckedBlock::rebuilt`]): a transfer's
/// sender, and the coinbase's recipient (whose slot [`apply_block_with_senders`] does
/// not read, but whose account the coinbase credits, so it is prefetched too).
pub fn sender_of(tx: &Transaction) -> Address {
    match tx {
        Transaction::Transfer(st) => st.transfer.sender(),
        Transaction::Coinbase(cb) => cb.to,
    }
}

pub(super) fn decode_account(
    address: &Address,
    bytes: Option<Vec<u8>>,
) -> Result<Option<Account>, StateError> {
    bytes
        .map(|b| encoding::decode::<Account>(&b))
        .transpose()
        .map_err(|e| StateError(format!("corrupt account {address}: {e}")))
}

impl Chain {
    /// Moves the tip to the best candidate until none beats it. A block that fails to
    /// connect is marked invalid with its descendants and the loop goes on, which
    /// returns to the best valid chain.
    /// Blocks in `fresh` are connected from there; those read from the store are added.
    pub(super) fn activate_best_chain(
        &mut self,
        failures: &mut HashMap<Idx, BlockError>,
        fresh: &mut Fresh,
    ) -> Result<(), ChainError> {
        loop {
            let tip = self.index.tip();
            let Some(best) = self.index.best_candidate() else { break };
            if !self.index.beats_tip(best) {
                break;
            }
            let fork = self.index.fork_point(tip, best);
            while self.index.tip() != fork {
                self.disconnect_tip(fresh)?;
            }
            for b in self.index.path_after(fork, best) {
                if let Err(e) = self.connect(b, fresh)? {
                    let hash = self.index.e(b).hash;
                    tracing::warn!(%hash, error = %e, "block failed to connect; marking it and its descendants invalid");
                    self.mark_failed(b, &e)?;
                    failures.insert(b, e);
                    break;
                }
            }
        }
        self.index.prune_candidates();
        Ok(())
    }

    pub(super) fn read_block(&self, hash: &BlockHash) -> Result<Block, ChainError> {
        self.block(hash)?
            .ok_or_else(|| ChainError::Corrupt(format!("body of indexed block {hash} is missing")))
    }

    /// Connects `idx` (a child of the tip) in one batch, taking its body from `fresh`
    /// when it is there and from the store (into `fresh`) otherwise. The outer error is
    /// ours; the inner one means the block is invalid.
    pub(super) fn connect(
        &mut self,
        idx: Idx,
        fresh: &mut Fresh,
    ) -> Result<Result<(), BlockError>, ChainError> {
        let hash = self.index.e(idx).hash;
        let height = self.index.e(idx).height;
        if self.index.e(idx).prev != self.index.tip() {
            return Err(ChainError::Corrupt(format!("connecting {hash}, which is not a child of the tip")));
        }
        let block: &Arc<Block> = match fresh.blocks.entry(hash) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => e.insert(Arc::new(self.read_block(&hash)?)),
        };
        let known = fresh.senders.remove(&hash);
        let state =
            Prefetched::load(&*self.store, &self.accounts, block, known).map_err(|e| ChainError::Db(e.0))?;
        let (changes, undo) =
            match apply_block_with_senders(&state, block, Some(&state.senders), &self.genesis.params) {
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
        b.put(Column::Meta, meta_key::TIP, hash.0);
        self.commit(b);
        self.unfsynced = true;
        // Committed: the cache may say so (every account the block read, it wrote).
        for (a, acc) in changes.accounts {
            self.accounts.set(a, Some(acc));
        }
        self.index.connected(idx);
        // Kept in `fresh` too, for the tip change (the mempool's removals): shared, not
        // copied.
        let txids = fresh.txids.get(&hash).cloned();
        let block = Arc::clone(block);
        self.indexes.submit(IndexJob::Connect { hash, height, block, txids });
        Ok(Ok(()))
    }

    /// Disconnects the tip in one batch, restoring the accounts from its undo data. Its
    /// body, read from the store, is added to `fresh`.
    pub(super) fn disconnect_tip(&mut self, fresh: &mut Fresh) -> Result<(), ChainError> {
        let idx = self.index.tip();
        let e = self.index.e(idx);
        let (hash, height, prev) = (e.hash, e.height, e.prev);
        if prev == NONE {
            return Err(ChainError::Corrupt("asked to disconnect genesis".into()));
        }
        let block = match fresh.remove(&hash) {
            Some(b) => b,
            None => Arc::new(self.read_block(&hash)?),
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
        let prev_hash = self.index.e(prev).hash;
        b.put(Column::Meta, meta_key::TIP, prev_hash.0);
        self.commit(b);
        self.unfsynced = true;
        for (a, prior) in undo.prior {
            self.accounts.set(a, prior);
        }
        self.indexes.submit(IndexJob::Disconnect { prev: prev_hash, height, block: block.clone() });
        fresh.insert(hash, block);
        self.index.disconnected_tip();
        Ok(())
    }

    /// Marks `idx` FAILED and its descendants FAILED_CHILD, in memory and on disk, and
    /// records why `idx` failed (see [`Chain::invalid_reason`]) in the same batch.
    pub(super) fn mark_failed(&mut self, idx: Idx, reason: &BlockError) -> Result<(), ChainError> {
        let mut b = Batch::new();
        b.put(Column::Meta, meta_key::invalid_reason(&self.index.e(idx).hash), reason.to_string());
        for i in self.index.mark_failed(idx) {
            let e = self.index.e(i);
            let mut record = self.read_record(&e.hash)?;
            record.status = e.status & status::ALL;
            b.put(Column::Index, e.hash.0, record.encode());
        }
        self.commit(b);
        self.unfsynced = true;
        Ok(())
    }

    /// The net change of the best chain from `old_tip` to the current tip; blocks in
    /// `fresh` are taken from there, the others read from the store.
    pub(super) fn tip_change_since(
        &self,
        old_tip: Idx,
        mut fresh: Fresh,
    ) -> Result<Option<TipChange>, ChainError> {
        let new_tip = self.index.tip();
        if new_tip == old_tip {
            return Ok(None);
        }
        let fork = self.index.fork_point(old_tip, new_tip);
        let mut load = |idx: Idx| -> Result<(Arc<Block>, Option<Vec<Txid>>), ChainError> {
            let hash = self.index.e(idx).hash;
            match fresh.take(&hash) {
                Some(x) => Ok(x),
                None => Ok((Arc::new(self.read_block(&hash)?), None)),
            }
        };
        let mut change = TipChange::default();
        for &c in self.index.path_after(fork, old_tip).iter().rev() {
            change.disconnected.push(load(c)?.0);
        }
        for c in self.index.path_after(fork, new_tip) {
            let (block, txids) = load(c)?;
            change.connected_txids.push(txids.unwrap_or_else(|| block.txids()));
            change.connected.push(block);
        }
        Ok(Some(change))
    }

    /// At most once a second of commits, has the index writer sync the WAL (on its
    /// thread when it has one, see `indexes.rs`): everything written before this call is
    /// durable once it has. A failed sync stops the node there.
    pub(super) fn maybe_fsync_wal(&mut self, now_ms: u64) -> Result<(), ChainError> {
        if self.unfsynced && now_ms.saturating_sub(self.last_fsync_ms) >= FSYNC_INTERVAL_MS {
            self.indexes.submit(IndexJob::SyncWal);
            self.unfsynced = false;
            self.last_fsync_ms = now_ms;
        }
        Ok(())
    }

    /// Writes a batch after open. A write the store refuses (disk full, I/O error)
    /// leaves memory ahead of or behind disk, and the store would refuse the next one
    /// too: the node stops ([`fail_stop`]) rather than go on answering errors. What is
    /// on disk is the last committed batch, which [`Chain::open`] resumes from.
    pub(super) fn commit(&self, b: Batch) {
        if let Err(e) = self.store.write(b) {
            fail_stop(format_args!("the chain store refused a write: {e}"));
        }
    }

    /// Makes every committed batch durable against a power cut (an fsync of the WAL),
    /// the index entries queued for the index writer included (it waits for them).
    /// Done automatically at most once a second of commits and on drop.
    pub fn fsync_wal(&mut self) -> Result<(), ChainError> {
        self.indexes.wait()?;
        self.store.sync()?;
        self.unfsynced = false;
        Ok(())
    }

    pub(super) fn take_seq(&mut self) -> u64 {
        let s = self.next_seq;
        self.next_seq += 1;
        s
    }

    pub(super) fn record_of(&self, idx: Idx, header: &BlockHeader) -> IndexRecord {
        let e = self.index.e(idx);
        IndexRecord { header: *header, work: e.work, seq: e.seq, status: e.status & status::ALL }
    }

    pub(super) fn read_record(&self, hash: &BlockHash) -> Result<IndexRecord, ChainError> {
        let bytes = self
            .store
            .get(Column::Index, &hash.0)?
            .ok_or_else(|| ChainError::Corrupt(format!("index entry of {hash} is missing")))?;
        Ok(IndexRecord::decode(&bytes)?)
    }
}
