//! The mempool: transfers waiting for a block.
//!
//! This module owns admission (against the tip state plus the sender's pending
//! transfers), ordering by fee rate, replacement, the byte cap with eviction, expiry, and
//! keeping the pool consistent with the chain across block connects and reorgs. It does
//! not verify signatures: callers ([`crate::node::Node::submit_transfer`]) do that first,
//! outside any lock, and hand over only verified transfers.
//!
//! Invariant: for every sender, the pending transfers carry the consecutive nonces
//! `state.nonce, state.nonce + 1, ...` and the state balance covers all of them in that
//! order. So any prefix of a sender's queue applies cleanly on top of the tip, and a
//! block template may take transfers from each sender in nonce order.
//!
//! Decisions where the design was silent:
//! - **Nonce gaps are refused**, not held: a transfer whose nonce is above the sender's
//!   next nonce (state nonce plus pending transfers) is rejected with
//!   [`MempoolError::NonceGap`], which says which nonce is expected. Holding future
//!   transfers would need a second, separately bounded pool; wallets ask the node for the
//!   pending nonce (`state_getAccount.pending_nonce`) and never need gaps.
//! - A sender may have at most [`MempoolConfig::max_per_sender`] pending transfers.
//! - Replacement (same sender and nonce) needs a fee at least the old fee plus the
//!   minimum fee (so strictly higher), and the sender's later pending transfers must
//!   still be affordable afterwards.
//! - When the byte cap is reached, the transfers with the lowest fee rate are evicted
//!   together with the same sender's later transfers (which would otherwise be gapped),
//!   but never the newcomer's own predecessors; if the newcomer's fee rate does not beat
//!   what would have to go, it is refused with [`MempoolError::Full`].
//! - Transfers expire [`MempoolConfig::expiry_ms`] after admission (with their
//!   sender's later transfers).
//!
//! Arithmetic: every amount here is an [`Amount`], which has checked operations only,
//! and `clippy::arithmetic_side_effects` is denied in this module, so no `+`, `-` or `*`
//! on any integer can panic or wrap. A sum of amounts that would pass `u64::MAX` is a
//! refusal ([`MempoolError::Overflow`], [`MempoolError::PendingOverflow`]), never a
//! panic and never a wrap. Sizes and counters use saturating operations where they are
//! bounded far below their type's range (sizes by the byte cap, `next_seq` by the number
//! of admissions).
#![deny(clippy::arithmetic_side_effects)]

use cairn_core::block::Block;
use cairn_core::encoding;
use cairn_core::state::{debit_sender, Account, AccountSource, TransferStateError};
use cairn_core::transaction::Transaction;
use cairn_core::{Address, Amount, SignedTransfer, Txid};
use std::borrow::Borrow;
use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap, HashSet};

pub(crate) mod error;
#[cfg(any(test, fuzzing))]
pub mod model;

pub use error::MempoolError;

/// Limits and policy.
#[derive(Clone, Debug)]
pub struct MempoolConfig {
    /// Cap on the summed canonical sizes of pending transfers.
    pub max_bytes: usize,
    /// Lowest fee admitted, and the smallest fee bump of a replacement.
    pub min_fee: Amount,
    pub max_per_sender: usize,
    /// How long a transfer may wait before it is dropped.
    pub expiry_ms: u64,
}

impl Default for MempoolConfig {
    fn default() -> Self {
        MempoolConfig {
            max_bytes: 64 * 1024 * 1024,
            min_fee: Amount(1),
            max_per_sender: 256,
            expiry_ms: 24 * 60 * 60 * 1000,
        }
    }
}

/// Fee per byte as a fraction, compared exactly by cross-multiplication; newer entries
/// rank below older ones of the same rate (so eviction drops the newest first).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Priority {
    fee: u64,
    size: u64,
    seq: u64,
}

impl Ord for Priority {
    fn cmp(&self, other: &Self) -> Ordering {
        // A u64 times a u64 always fits in a u128: no saturation ever happens.
        let a = u128::from(self.fee).saturating_mul(u128::from(other.size));
        let b = u128::from(other.fee).saturating_mul(u128::from(self.size));
        a.cmp(&b).then_with(|| other.seq.cmp(&self.seq))
    }
}

impl PartialOrd for Priority {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

#[derive(Clone, Debug)]
struct Entry {
    tx: SignedTransfer,
    sender: Address,
    size: usize,
    added_ms: u64,
    priority: Priority,
}

/// A pending transfer as the mempool's listings give it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PendingTransfer {
    pub txid: Txid,
    pub tx: SignedTransfer,
    pub sender: Address,
    /// Canonical size in a block (what the fee rate is per).
    pub size: usize,
    /// When it was admitted (ms since the epoch).
    pub added_ms: u64,
    /// Admission order (larger is later).
    pub seq: u64,
}

impl PendingTransfer {
    fn of(txid: Txid, e: &Entry) -> PendingTransfer {
        PendingTransfer {
            txid,
            tx: e.tx,
            sender: e.sender,
            size: e.size,
            added_ms: e.added_ms,
            seq: e.priority.seq,
        }
    }
}

/// A sender's pending transfers, keyed by nonce (consecutive, see the module invariant).
#[derive(Clone, Debug, Default)]
struct SenderQueue {
    txs: BTreeMap<u64, Txid>,
    /// Sum of amount + fee over `txs`. By the module invariant it is at most the
    /// sender's balance, so it never reaches past `Amount::MAX`.
    spent: Amount,
}

pub struct Mempool {
    config: MempoolConfig,
    entries: HashMap<Txid, Entry>,
    senders: HashMap<Address, SenderQueue>,
    by_priority: BTreeSet<(Priority, Txid)>,
    by_age: BTreeSet<(u64, u64, Txid)>,
    bytes: usize,
    next_seq: u64,
}

/// The fee a transfer should pay now, as [`Mempool::estimate_fee`] works it out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FeeEstimate {
    /// The configured minimum fee (also the smallest step of a replacement).
    pub min_fee: Amount,
    /// The lowest fee admitted now: `min_fee`, or more when the pool is full and the
    /// newcomer must outrank what would be evicted to make room.
    pub admit_fee: Amount,
    /// The fee that ranks the newcomer within the next block's room in the pool's order:
    /// `min_fee` while the whole pool fits in a block.
    pub next_block_fee: Amount,
    /// The larger of `admit_fee` and `next_block_fee`: what a wallet should pay.
    pub fee: Amount,
    pub tx_bytes: usize,
    pub pool_bytes: usize,
    pub pool_max_bytes: usize,
    pub block_bytes: usize,
}

/// Canonical size of every transfer (the encoding is fixed-width): what the fee
/// estimate assumes.
pub fn standard_transfer_size() -> usize {
    let t = SignedTransfer {
        transfer: cairn_core::Transfer {
            chain_id: 0,
            nonce: 0,
            from: [0; 33],
            to: Address([0; 20]),
            amount: Amount::ZERO,
            fee: Amount::ZERO,
        },
        signature: [0; 64],
    };
    transfer_size(&t)
}

/// Canonical size of a transfer inside a block (with its enum tag): what it costs in a
/// block and in the mempool's byte cap.
pub fn transfer_size(tx: &SignedTransfer) -> usize {
    encoding::encoded_len(&Transaction::Transfer(*tx))
}

fn cost(tx: &SignedTransfer) -> Result<Amount, MempoolError> {
    tx.transfer.total_cost().ok_or(MempoolError::Overflow)
}

fn state_account(state: &dyn AccountSource, a: &Address) -> Result<Account, MempoolError> {
    state.account(a).map(Option::unwrap_or_default).map_err(|e| MempoolError::State(e.to_string()))
}

impl Mempool {
    pub fn new(max_bytes: usize) -> Self {
        Self::with_config(MempoolConfig { max_bytes, ..MempoolConfig::default() })
    }

    pub fn with_config(config: MempoolConfig) -> Self {
        Mempool {
            config,
            entries: HashMap::new(),
            senders: HashMap::new(),
            by_priority: BTreeSet::new(),
            by_age: BTreeSet::new(),
            bytes: 0,
            next_seq: 0,
        }
    }

    pub fn config(&self) -> &MempoolConfig {
        &self.config
    }

    pub fn contains(&self, txid: &Txid) -> bool {
        self.entries.contains_key(txid)
    }

    pub fn get(&self, txid: &Txid) -> Option<SignedTransfer> {
        self.entries.get(txid).map(|e| e.tx)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Calls `f` with every pending transfer, its txid and its sender (derived once, at
    /// admission), in no particular order (the short-id match of a compact block,
    /// `p2p::protocol::compact`).
    pub fn for_each(&self, mut f: impl FnMut(&Txid, &SignedTransfer, &Address)) {
        for (txid, e) in &self.entries {
            f(txid, &e.tx, &e.sender);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Summed canonical sizes of the pending transfers.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The lowest fee a transfer of the usual size would need to be admitted now: the
    /// configured minimum, or more when the pool is full and something must be evicted.
    pub fn min_fee(&self) -> Amount {
        let floor = self.config.min_fee;
        if self.bytes.saturating_add(200) <= self.config.max_bytes {
            return floor;
        }
        match self.by_priority.first() {
            // Beat the lowest entry's rate: for the same size, one more than its fee
            // (a floor shown to wallets: at most the largest amount).
            Some((p, _)) => floor.max(Amount(p.fee).saturating_add(Amount(1))),
            None => floor,
        }
    }

    /// What a transfer of `tx_bytes` from `sender` (if known) should pay now
    /// (`mempool_estimateFee`), given that a block holds `block_bytes` of transfers. See
    /// [`FeeEstimate`].
    pub fn estimate_fee(&self, tx_bytes: usize, block_bytes: usize, sender: Option<&Address>) -> FeeEstimate {
        let floor = self.config.min_fee;
        // The fee that ranks a transfer of `tx_bytes` strictly above `p`'s fee rate.
        let beat = |p: &Priority| -> Amount {
            let size = u128::try_from(tx_bytes).unwrap_or(u128::MAX);
            let scaled = u128::from(p.fee).saturating_mul(size).checked_div(u128::from(p.size.max(1)));
            let fee = scaled.and_then(|f| u64::try_from(f).ok()).unwrap_or(u64::MAX);
            floor.max(Amount(fee).saturating_add(Amount(1)))
        };
        // Admission: if the newcomer does not fit, it must outrank the lowest entries whose
        // removal makes room (never the sender's own, as in `make_room`); the highest of
        // those is the one to beat.
        let mut admit_fee = floor;
        let mut over = self.bytes.saturating_add(tx_bytes).saturating_sub(self.config.max_bytes);
        if over > 0 {
            for (p, id) in self.by_priority.iter() {
                let Some(e) = self.entries.get(id) else { continue };
                if Some(&e.sender) == sender {
                    continue;
                }
                admit_fee = beat(p);
                over = over.saturating_sub(e.size);
                if over == 0 {
                    break;
                }
            }
        }
        // The next block: in the pool's order, the entry at which a block's room runs out
        // (leaving none for the newcomer) is the one to beat. Sender nonce order can push
        // some entries later than their rate alone would; this is an estimate.
        let mut next_block_fee = floor;
        let mut used = 0usize;
        for (p, id) in self.by_priority.iter().rev() {
            used = used.saturating_add(self.entries.get(id).map_or(0, |e| e.size));
            if used.saturating_add(tx_bytes) > block_bytes {
                next_block_fee = beat(p);
                break;
            }
        }
        FeeEstimate {
            min_fee: floor,
            admit_fee,
            next_block_fee,
            fee: admit_fee.max(next_block_fee),
            tx_bytes,
            pool_bytes: self.bytes,
            pool_max_bytes: self.config.max_bytes,
            block_bytes,
        }
    }

    /// The nonce `address` would use next, counting its pending transfers.
    pub fn pending_nonce(&self, address: &Address, state_nonce: u64) -> u64 {
        match self.senders.get(address).and_then(|q| q.txs.last_key_value()) {
            Some((&last, _)) if last >= state_nonce => last.saturating_add(1),
            _ => state_nonce,
        }
    }

    /// Pending txids, highest priority first.
    pub fn txids(&self) -> Vec<Txid> {
        self.by_priority.iter().rev().map(|(_, id)| *id).collect()
    }

    /// Up to `limit` pending transfers, highest fee rate first (ties: admitted first),
    /// the order block templates take them in (each sender's still in nonce order
    /// there). For `mempool_getTransfers`.
    pub fn top_by_fee_rate(&self, limit: usize) -> Vec<PendingTransfer> {
        self.by_priority
            .iter()
            .rev()
            .take(limit)
            .filter_map(|(_, id)| self.entries.get(id).map(|e| PendingTransfer::of(*id, e)))
            .collect()
    }

    /// The pending transfers `address` sends or receives, newest admission first, found
    /// by a scan of the pool (O(pending transfers): no index by sender or recipient is
    /// read here). For `state_getHistory`.
    pub fn pending_for(&self, address: &Address) -> Vec<PendingTransfer> {
        let mut out: Vec<PendingTransfer> = self
            .entries
            .iter()
            .filter(|(_, e)| e.sender == *address || e.tx.transfer.to == *address)
            .map(|(id, e)| PendingTransfer::of(*id, e))
            .collect();
        out.sort_unstable_by_key(|p| std::cmp::Reverse(p.seq));
        out
    }

    /// Admits a transfer whose signature was already verified.
    pub fn add_verified(
        &mut self,
        tx: SignedTransfer,
        state: &dyn AccountSource,
        now_ms: u64,
    ) -> Result<Txid, MempoolError> {
        self.expire(now_ms);
        let txid = tx.txid();
        if self.entries.contains_key(&txid) {
            return Err(MempoolError::Duplicate);
        }
        let t = &tx.transfer;
        if t.fee < self.config.min_fee {
            return Err(MempoolError::FeeTooLow { fee: t.fee, min_fee: self.config.min_fee });
        }
        let tx_cost = cost(&tx)?;
        let sender = t.sender();
        let account = state_account(state, &sender)?;
        let (pending, spent, same_nonce) = match self.senders.get(&sender) {
            Some(q) => (q.txs.len(), q.spent, q.txs.get(&t.nonce).copied()),
            None => (0, Amount::ZERO, None),
        };
        let next_nonce = u64::try_from(pending)
            .ok()
            .and_then(|p| account.nonce.checked_add(p))
            .ok_or(MempoolError::NonceOverflow)?;
        if t.nonce < account.nonce {
            return Err(MempoolError::NonceTooLow { expected: account.nonce, got: t.nonce });
        }
        let size = transfer_size(&tx);

        if let Some(old_id) = same_nonce {
            return self.replace(tx, txid, old_id, sender, account, spent, size, now_ms);
        }
        if t.nonce > next_nonce {
            return Err(MempoolError::NonceGap { expected: next_nonce, got: t.nonce });
        }
        if pending >= self.config.max_per_sender {
            return Err(MempoolError::TooManyFromSender { limit: self.config.max_per_sender });
        }
        // The account as it will be after every pending transfer of this sender; the same
        // rule block application uses then decides. (`spent` is at most the balance by the
        // module invariant; were it ever more, nothing is left, and the transfer is refused.)
        let after_pending = Account { balance: account.balance.saturating_sub(spent), nonce: next_nonce };
        debit_sender(after_pending, t).map_err(|e| match e {
            TransferStateError::InsufficientBalance { balance, .. } => {
                MempoolError::InsufficientBalance { balance, needed: tx_cost }
            }
            TransferStateError::Nonce { expected, got } => MempoolError::NonceGap { expected, got },
            TransferStateError::Overflow => MempoolError::Overflow,
            TransferStateError::NonceOverflow => MempoolError::NonceOverflow,
        })?;
        let priority = self.priority(t.fee.0, size);
        self.make_room(size, priority, &sender)?;
        self.insert(txid, tx, sender, size, now_ms, priority);
        Ok(txid)
    }

    #[allow(clippy::too_many_arguments)]
    fn replace(
        &mut self,
        tx: SignedTransfer,
        txid: Txid,
        old_id: Txid,
        sender: Address,
        account: Account,
        spent: Amount,
        size: usize,
        now_ms: u64,
    ) -> Result<Txid, MempoolError> {
        let old_entry = self.entries.get(&old_id).cloned().ok_or(MempoolError::Duplicate)?;
        let old = old_entry.tx;
        // The smallest bump is the minimum fee, and at least 1 so a replacement always
        // pays strictly more. An old fee of `Amount::MAX` cannot be outbid.
        let bump = self.config.min_fee.max(Amount(1));
        let min_fee = old.transfer.fee.checked_add(bump);
        if min_fee.is_none_or(|min_fee| tx.transfer.fee < min_fee) {
            return Err(MempoolError::ReplacementFeeTooLow {
                old_fee: old.transfer.fee,
                min_fee: min_fee.unwrap_or(Amount::MAX),
            });
        }
        let new_cost = cost(&tx)?;
        // What the sender's pending transfers cost with the replacement in the old one's
        // place. Past `Amount::MAX`, no balance can pay it.
        let needed = spent
            .checked_sub(cost(&old)?)
            .and_then(|rest| rest.checked_add(new_cost))
            .ok_or(MempoolError::PendingOverflow)?;
        if needed > account.balance {
            // Unaffordable: say whether the replacement itself is (after the transfers
            // before it), or only together with the ones after it.
            let before: Option<Amount> = Amount::checked_sum(
                self.senders
                    .get(&sender)
                    .into_iter()
                    .flat_map(|q| q.txs.range(..tx.transfer.nonce))
                    .filter_map(|(_, id)| self.entries.get(id))
                    .map(|e| e.tx.transfer.total_cost().unwrap_or(Amount::MAX)),
            );
            let balance = before.map_or(Amount::ZERO, |b| account.balance.saturating_sub(b));
            return Err(if new_cost > balance {
                MempoolError::InsufficientBalance { balance, needed: new_cost }
            } else {
                MempoolError::ReplacementUnaffordable { balance: account.balance, needed }
            });
        }
        let priority = self.priority(tx.transfer.fee.0, size);
        // Remove only the old entry (no cascade: the replacement takes its nonce).
        self.remove_one(&old_id);
        if let Err(e) = self.make_room(size, priority, &sender) {
            // Put the old one back as it was (its own size, age and rank); nothing else
            // changed.
            let Entry { tx, size, added_ms, priority, .. } = old_entry;
            self.insert(old_id, tx, sender, size, added_ms, priority);
            return Err(e);
        }
        self.insert(txid, tx, sender, size, now_ms, priority);
        Ok(txid)
    }

    fn priority(&mut self, fee: u64, size: usize) -> Priority {
        self.next_seq = self.next_seq.saturating_add(1);
        Priority { fee, size: u64::try_from(size).unwrap_or(u64::MAX), seq: self.next_seq }
    }

    /// Evicts lowest-priority entries (with their senders' later transfers) until `size`
    /// more bytes fit, or refuses if that would mean evicting something that ranks at or
    /// above the newcomer. Plans first, so a refusal changes nothing.
    fn make_room(&mut self, size: usize, newcomer: Priority, sender: &Address) -> Result<(), MempoolError> {
        let wanted = self.bytes.saturating_add(size);
        if wanted <= self.config.max_bytes {
            return Ok(());
        }
        let mut freed = 0usize;
        let mut victims: Vec<Txid> = Vec::new();
        let mut planned: HashSet<Txid> = HashSet::new();
        for (p, id) in self.by_priority.iter() {
            if wanted.saturating_sub(freed) <= self.config.max_bytes {
                break;
            }
            if planned.contains(id) {
                continue;
            }
            let Some(e) = self.entries.get(id) else { continue };
            if &e.sender == sender {
                // Evicting the newcomer's own predecessors would gap it.
                continue;
            }
            if *p >= newcomer {
                return Err(MempoolError::Full { min_fee: self.min_fee() });
            }
            for later in self.chain_from(&e.sender, e.tx.transfer.nonce) {
                if planned.insert(later) {
                    freed = freed.saturating_add(self.entries.get(&later).map_or(0, |x| x.size));
                }
            }
            victims.push(*id);
        }
        if wanted.saturating_sub(freed) > self.config.max_bytes {
            return Err(MempoolError::Full { min_fee: self.min_fee() });
        }
        crate::metrics::mempool_evicted("full", planned.len());
        for id in victims {
            self.remove_with_descendants(&id);
        }
        Ok(())
    }

    /// Txids of `sender`'s pending transfers with nonce >= `nonce`.
    fn chain_from(&self, sender: &Address, nonce: u64) -> Vec<Txid> {
        self.senders
            .get(sender)
            .map(|q| q.txs.range(nonce..).map(|(_, id)| *id).collect())
            .unwrap_or_default()
    }

    fn insert(
        &mut self,
        txid: Txid,
        tx: SignedTransfer,
        sender: Address,
        size: usize,
        now_ms: u64,
        priority: Priority,
    ) {
        let q = self.senders.entry(sender).or_default();
        q.txs.insert(tx.transfer.nonce, txid);
        // Callers admitted `tx` against the balance, so the sum stays at most the balance
        // (the module invariant); saturating keeps even a breach a refusal, not a wrap.
        q.spent = q.spent.saturating_add(cost(&tx).unwrap_or(Amount::MAX));
        self.by_priority.insert((priority, txid));
        self.by_age.insert((now_ms, priority.seq, txid));
        self.bytes = self.bytes.saturating_add(size);
        self.entries.insert(txid, Entry { tx, sender, size, added_ms: now_ms, priority });
    }

    /// Removes one entry, leaving its sender's later transfers alone (callers fix those).
    fn remove_one(&mut self, txid: &Txid) -> Option<Entry> {
        let e = self.take_entry(txid)?;
        self.by_priority.remove(&(e.priority, *txid));
        self.by_age.remove(&(e.added_ms, e.priority.seq, *txid));
        Some(e)
    }

    /// Removes an entry and its sender's later transfers, which it would leave gapped.
    fn remove_with_descendants(&mut self, txid: &Txid) {
        let Some(e) = self.entries.get(txid) else { return };
        for id in self.chain_from(&e.sender.clone(), e.tx.transfer.nonce) {
            self.remove_one(&id);
        }
    }

    /// Drops transfers older than the expiry (and their senders' later transfers).
    pub fn expire(&mut self, now_ms: u64) {
        let cutoff = now_ms.saturating_sub(self.config.expiry_ms);
        let before = self.entries.len();
        while let Some(&(added, _, id)) = self.by_age.first() {
            if added >= cutoff {
                break;
            }
            self.remove_with_descendants(&id);
        }
        crate::metrics::mempool_evicted("expired", before.saturating_sub(self.entries.len()));
    }

    /// Re-checks `sender`'s queue against the state: drops transfers the state has passed
    /// (nonce too low) and everything from the first one that no longer applies.
    fn revalidate_sender(&mut self, sender: &Address, state: &dyn AccountSource) {
        let Some(q) = self.senders.get(sender) else { return };
        let ids: Vec<(u64, Txid)> = q.txs.iter().map(|(n, id)| (*n, *id)).collect();
        let mut account = match state_account(state, sender) {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "state read failed; dropping sender's pending transfers");
                for (_, id) in ids {
                    self.remove_one(&id);
                }
                return;
            }
        };
        let mut broken = false;
        for (nonce, id) in ids {
            if nonce < account.nonce || broken {
                self.remove_one(&id);
                continue;
            }
            let Some(e) = self.entries.get(&id) else { continue };
            match debit_sender(account, &e.tx.transfer) {
                Ok(next) => account = next,
                Err(_) => {
                    broken = true;
                    self.remove_one(&id);
                }
            }
        }
    }

    /// Drops what the block confirmed and what it made invalid. `txids` are the
    /// block's, in transaction order (the chain computed them when it checked the
    /// block; they are not hashed again here).
    pub fn on_block_connected(&mut self, block: &Block, txids: &[Txid], state: &dyn AccountSource) {
        debug_assert_eq!(txids.len(), block.transactions.len());
        if self.entries.is_empty() {
            // Nothing to confirm and no queue to re-check (a sync, or a block no node had
            // seen): not worth hashing each transfer's key for its sender.
            return;
        }
        let mut senders = HashSet::new();
        // Taken out of `entries` and the sender queues at once (one lookup each); the
        // ordered sets follow below.
        let mut confirmed: Vec<(Priority, u64, Txid)> = Vec::new();
        let pool_before = self.entries.len();
        for (tx, txid) in block.transactions.iter().zip(txids) {
            let Transaction::Transfer(st) = tx else { continue };
            match self.take_entry(txid) {
                // A pending copy has these very bytes, so the same sender.
                Some(e) => {
                    senders.insert(e.sender);
                    confirmed.push((e.priority, e.added_ms, *txid));
                }
                // A transfer we did not hold still moves its sender's nonce.
                None => {
                    senders.insert(st.transfer.sender());
                }
            }
        }
        // A block that took the whole pool empties both ordered sets; one that takes a
        // large part of it has them swept once rather than searched once per entry.
        if self.entries.is_empty() {
            self.by_priority.clear();
            self.by_age.clear();
        } else if confirmed.len().saturating_mul(4) >= pool_before {
            let entries = &self.entries;
            self.by_priority.retain(|(_, id)| entries.contains_key(id));
            self.by_age.retain(|(_, _, id)| entries.contains_key(id));
        } else {
            for (priority, added_ms, txid) in confirmed {
                self.by_priority.remove(&(priority, txid));
                self.by_age.remove(&(added_ms, priority.seq, txid));
            }
        }
        for s in senders {
            self.revalidate_sender(&s, state);
        }
    }

    /// Takes an entry out of `entries`, the byte count and its sender's queue, but not
    /// out of the ordered sets (the caller's part: [`Mempool::remove_one`] does both).
    fn take_entry(&mut self, txid: &Txid) -> Option<Entry> {
        let e = self.entries.remove(txid)?;
        self.bytes = self.bytes.saturating_sub(e.size);
        if let Some(q) = self.senders.get_mut(&e.sender) {
            q.txs.remove(&e.tx.transfer.nonce);
            q.spent = q.spent.saturating_sub(cost(&e.tx).unwrap_or(Amount::ZERO));
            if q.txs.is_empty() {
                self.senders.remove(&e.sender);
            }
        }
        Some(e)
    }

    /// Returns transfers of disconnected blocks that are still valid against `state`
    /// (the tip after the whole reorg), and re-checks every pending transfer, since
    /// undoing blocks also undoes credits that pending transfers may have spent.
    pub fn on_blocks_disconnected<B: Borrow<Block>>(
        &mut self,
        blocks: &[B],
        state: &dyn AccountSource,
        now_ms: u64,
    ) {
        // Candidates per sender and nonce: pending entries first, then returned transfers
        // where the slot is free or they pay more.
        let mut candidates: HashMap<Address, BTreeMap<u64, (SignedTransfer, u64)>> = HashMap::new();
        let old: Vec<Entry> = self.entries.values().cloned().collect();
        for e in &old {
            candidates.entry(e.sender).or_default().insert(e.tx.transfer.nonce, (e.tx, e.added_ms));
        }
        for b in blocks {
            for tx in b.borrow().transactions.iter().filter_map(Transaction::as_transfer) {
                let slot = candidates.entry(tx.transfer.sender()).or_default();
                match slot.get(&tx.transfer.nonce) {
                    Some((have, _)) if have.transfer.fee >= tx.transfer.fee => {}
                    _ => {
                        slot.insert(tx.transfer.nonce, (*tx, now_ms));
                    }
                }
            }
        }
        *self = Mempool { next_seq: self.next_seq, ..Mempool::with_config(self.config.clone()) };
        let mut senders: Vec<_> = candidates.into_iter().collect();
        senders.sort_by_key(|(a, _)| *a);
        for (sender, txs) in senders {
            let Ok(mut account) = state_account(state, &sender) else { continue };
            for (nonce, (tx, added)) in txs {
                if nonce < account.nonce {
                    continue;
                }
                if self.senders.get(&sender).map_or(0, |q| q.txs.len()) >= self.config.max_per_sender {
                    break;
                }
                match debit_sender(account, &tx.transfer) {
                    Ok(next) => account = next,
                    Err(_) => break,
                }
                let size = transfer_size(&tx);
                let p = self.priority(tx.transfer.fee.0, size);
                self.insert(tx.txid(), tx, sender, size, added, p);
            }
        }
        // Returned transfers may push the pool past its cap: trim from the bottom.
        while self.bytes > self.config.max_bytes {
            let Some(&(_, id)) = self.by_priority.first() else { break };
            self.remove_with_descendants(&id);
        }
        self.expire(now_ms);
    }

    /// Transfers for a block of at most `max_bytes` of transfers whose fees add up to at
    /// most `fee_room` (the largest amount minus the block reward, so the coinbase fits):
    /// highest fee rate first, each sender's in nonce order, each applied to `state` in
    /// block order with the consensus rules (the sender's nonce and balance, the
    /// recipient's balance not passing the largest amount). A transfer that does not
    /// apply ends its sender's part of the template.
    pub fn select(
        &self,
        state: &dyn AccountSource,
        max_bytes: usize,
        fee_room: Amount,
    ) -> Vec<SignedTransfer> {
        struct Head {
            priority: Priority,
            sender: Address,
            nonce: u64,
        }
        impl PartialEq for Head {
            fn eq(&self, o: &Self) -> bool {
                self.priority == o.priority
            }
        }
        impl Eq for Head {}
        impl PartialOrd for Head {
            fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
                Some(self.cmp(o))
            }
        }
        impl Ord for Head {
            fn cmp(&self, o: &Self) -> Ordering {
                self.priority.cmp(&o.priority)
            }
        }

        let mut heap = BinaryHeap::new();
        let mut accounts: HashMap<Address, Account> = HashMap::new();
        for (sender, q) in &self.senders {
            if let Some((&nonce, id)) = q.txs.first_key_value() {
                if let Some(e) = self.entries.get(id) {
                    heap.push(Head { priority: e.priority, sender: *sender, nonce });
                }
            }
        }
        let mut out = Vec::new();
        let mut used = 0usize;
        let mut fees = Amount::ZERO;
        let account_of = |accounts: &HashMap<Address, Account>, a: &Address| match accounts.get(a) {
            Some(acc) => Ok(*acc),
            None => state_account(state, a),
        };
        while let Some(head) = heap.pop() {
            let Some(q) = self.senders.get(&head.sender) else { continue };
            let Some(e) = q.txs.get(&head.nonce).and_then(|id| self.entries.get(id)) else { continue };
            let t = &e.tx.transfer;
            let Some(used_after) = used.checked_add(e.size).filter(|&u| u <= max_bytes) else {
                // Sizes are nearly uniform; a sender whose next transfer does not fit is
                // done (its later ones cannot go before it).
                continue;
            };
            let Some(fees_after) = fees.checked_add(t.fee).filter(|&f| f <= fee_room) else { continue };
            let Ok(account) = account_of(&accounts, &head.sender) else { continue };
            let Ok(debited) = debit_sender(account, t) else { continue };
            // The credit, applied after the debit as block application does (a transfer
            // to oneself sees its own debit).
            let to = if t.to == head.sender { Ok(debited) } else { account_of(&accounts, &t.to) };
            let Ok(to) = to else { continue };
            let Some(credited) = to.balance.checked_add(t.amount) else { continue };
            accounts.insert(head.sender, debited);
            accounts.insert(t.to, Account { balance: credited, nonce: to.nonce });
            used = used_after;
            fees = fees_after;
            out.push(e.tx);
            if let Some((&n, id)) = head.nonce.checked_add(1).and_then(|next| q.txs.range(next..).next()) {
                if let Some(e2) = self.entries.get(id) {
                    heap.push(Head { priority: e2.priority, sender: head.sender, nonce: n });
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_core::block::{BlockHeader, BLOCK_VERSION};
    use cairn_core::transaction::{address_of, public_key_of, signing_key_from_bytes, Coinbase, Transfer};
    use cairn_core::{BlockHash, Target};
    use k256::ecdsa::SigningKey;

    const CHAIN: u32 = 9;

    fn key(n: u8) -> SigningKey {
        signing_key_from_bytes(&[n; 32]).unwrap()
    }

    fn tx(k: &SigningKey, nonce: u64, amount: u64, fee: u64) -> SignedTransfer {
        Transfer {
            chain_id: CHAIN,
            nonce,
            from: public_key_of(k),
            to: Address([0xee; 20]),
            amount: Amount(amount),
            fee: Amount(fee),
        }
        .sign(k)
        .unwrap()
    }

    fn state(funded: &[(&SigningKey, u64, u64)]) -> HashMap<Address, Account> {
        funded
            .iter()
            .map(|(k, balance, nonce)| (address_of(k), Account { balance: Amount(*balance), nonce: *nonce }))
            .collect()
    }

    fn block(txs: &[SignedTransfer]) -> Block {
        let mut transactions =
            vec![Transaction::Coinbase(Coinbase { height: 1, to: Address([1; 20]), amount: Amount(0) })];
        transactions.extend(txs.iter().copied().map(Transaction::Transfer));
        Block {
            header: BlockHeader {
                version: BLOCK_VERSION,
                height: 1,
                prev: BlockHash::ZERO,
                merkle_root: [0; 32],
                timestamp_ms: 0,
                target: Target([0xff; 32]),
                nonce: 0,
            },
            transactions,
        }
    }

    /// Applies transfers to a map state the way a block would (sender side only).
    fn apply(st: &mut HashMap<Address, Account>, txs: &[SignedTransfer]) {
        for t in txs {
            let s = t.transfer.sender();
            let after = debit_sender(st[&s], &t.transfer).unwrap();
            st.insert(s, after);
        }
    }

    #[test]
    fn admits_in_nonce_order_and_counts_pending_nonce() {
        let k = key(1);
        let st = state(&[(&k, 1_000, 0)]);
        let mut m = Mempool::new(1 << 20);
        m.add_verified(tx(&k, 0, 10, 1), &st, 0).unwrap();
        m.add_verified(tx(&k, 1, 10, 1), &st, 0).unwrap();
        assert_eq!(m.len(), 2);
        assert_eq!(m.pending_nonce(&address_of(&k), 0), 2);
        assert_eq!(m.bytes(), 2 * transfer_size(&tx(&k, 0, 10, 1)));
    }

    #[test]
    fn refuses_duplicate_low_nonce_gap_fee_and_balance() {
        let k = key(1);
        let st = state(&[(&k, 100, 5)]);
        let mut m = Mempool::with_config(MempoolConfig { min_fee: Amount(2), ..MempoolConfig::default() });
        let t = tx(&k, 5, 10, 2);
        m.add_verified(t, &st, 0).unwrap();
        assert_eq!(m.add_verified(t, &st, 0), Err(MempoolError::Duplicate));
        assert_eq!(
            m.add_verified(tx(&k, 4, 10, 2), &st, 0),
            Err(MempoolError::NonceTooLow { expected: 5, got: 4 })
        );
        assert_eq!(
            m.add_verified(tx(&k, 7, 10, 2), &st, 0),
            Err(MempoolError::NonceGap { expected: 6, got: 7 })
        );
        assert_eq!(
            m.add_verified(tx(&k, 6, 10, 1), &st, 0),
            Err(MempoolError::FeeTooLow { fee: Amount(1), min_fee: Amount(2) })
        );
        // 100 - 12 pending = 88 left; 80 + 9 = 89 is too much.
        assert_eq!(
            m.add_verified(tx(&k, 6, 80, 9), &st, 0),
            Err(MempoolError::InsufficientBalance { balance: Amount(88), needed: Amount(89) })
        );
        m.add_verified(tx(&k, 6, 80, 8), &st, 0).unwrap();
        assert!(MempoolError::NonceGap { expected: 6, got: 7 }.to_string().contains("nonce gap"));
    }

    #[test]
    fn no_double_admission_of_the_same_nonce_without_higher_fee() {
        let k = key(1);
        let st = state(&[(&k, 1_000, 0)]);
        let mut m = Mempool::new(1 << 20);
        m.add_verified(tx(&k, 0, 10, 5), &st, 0).unwrap();
        // Same nonce, different transfer, same fee: not a replacement.
        assert_eq!(
            m.add_verified(tx(&k, 0, 11, 5), &st, 0),
            Err(MempoolError::ReplacementFeeTooLow { old_fee: Amount(5), min_fee: Amount(6) })
        );
        assert_eq!(m.len(), 1);
    }

    #[test]
    fn replacement_with_higher_fee_takes_the_slot() {
        let k = key(1);
        let st = state(&[(&k, 1_000, 0)]);
        let mut m = Mempool::new(1 << 20);
        let old = m.add_verified(tx(&k, 0, 10, 5), &st, 0).unwrap();
        m.add_verified(tx(&k, 1, 10, 5), &st, 0).unwrap();
        let new = m.add_verified(tx(&k, 0, 10, 6), &st, 0).unwrap();
        assert!(!m.contains(&old));
        assert!(m.contains(&new));
        assert_eq!(m.len(), 2);
        assert_eq!(m.pending_nonce(&address_of(&k), 0), 2);
    }

    #[test]
    fn replacement_must_keep_later_transfers_affordable() {
        let k = key(1);
        let st = state(&[(&k, 100, 0)]);
        let mut m = Mempool::new(1 << 20);
        m.add_verified(tx(&k, 0, 40, 5), &st, 0).unwrap();
        m.add_verified(tx(&k, 1, 40, 5), &st, 0).unwrap();
        let err = m.add_verified(tx(&k, 0, 40, 20), &st, 0).unwrap_err();
        assert!(matches!(err, MempoolError::ReplacementUnaffordable { .. }), "{err}");
        assert_eq!(m.len(), 2);
    }

    #[test]
    fn template_orders_by_fee_and_keeps_nonce_order() {
        let (a, b) = (key(1), key(2));
        let st = state(&[(&a, 1_000, 0), (&b, 1_000, 0)]);
        let mut m = Mempool::new(1 << 20);
        // a: low fee then high fee; b: middle fee.
        m.add_verified(tx(&a, 0, 1, 1), &st, 0).unwrap();
        m.add_verified(tx(&a, 1, 1, 100), &st, 0).unwrap();
        m.add_verified(tx(&b, 0, 1, 50), &st, 0).unwrap();
        let sel = m.select(&st, 1 << 20, Amount::MAX);
        let order: Vec<(u8, u64)> = sel
            .iter()
            .map(|t| (if t.transfer.sender() == address_of(&a) { b'a' } else { b'b' }, t.transfer.nonce))
            .collect();
        // a's nonce 1 pays most but cannot precede a's nonce 0.
        assert_eq!(order, vec![(b'b', 0), (b'a', 0), (b'a', 1)]);
        // The size limit is respected.
        let one = transfer_size(&sel[0]);
        assert_eq!(m.select(&st, 2 * one + 1, Amount::MAX).len(), 2);
        // txids() lists by priority.
        assert_eq!(m.txids()[0], tx(&a, 1, 1, 100).txid());
    }

    #[test]
    fn eviction_drops_the_lowest_fee_rate_and_its_descendants() {
        let (a, b, c) = (key(1), key(2), key(3));
        let st = state(&[(&a, 1_000, 0), (&b, 1_000, 0), (&c, 1_000, 0)]);
        let size = transfer_size(&tx(&a, 0, 1, 1));
        let mut m = Mempool::new(3 * size);
        m.add_verified(tx(&a, 0, 1, 2), &st, 0).unwrap();
        m.add_verified(tx(&a, 1, 1, 9), &st, 0).unwrap();
        m.add_verified(tx(&b, 0, 1, 5), &st, 0).unwrap();
        // Full. A low newcomer is refused and changes nothing.
        assert!(matches!(m.add_verified(tx(&c, 0, 1, 2), &st, 0), Err(MempoolError::Full { .. })));
        assert_eq!(m.len(), 3);
        assert!(m.min_fee() > Amount(2));
        // A better one evicts a's nonce 0 (lowest) and with it a's nonce 1.
        m.add_verified(tx(&c, 0, 1, 6), &st, 0).unwrap();
        assert_eq!(m.len(), 2);
        assert!(!m.contains(&tx(&a, 1, 1, 9).txid()));
        assert!(m.contains(&tx(&b, 0, 1, 5).txid()));
        assert_eq!(m.bytes(), 2 * size);
    }

    #[test]
    fn eviction_never_gaps_the_newcomer() {
        let (a, b) = (key(1), key(2));
        let st = state(&[(&a, 1_000, 0), (&b, 1_000, 0)]);
        let size = transfer_size(&tx(&a, 0, 1, 1));
        let mut m = Mempool::new(2 * size);
        m.add_verified(tx(&a, 0, 1, 1), &st, 0).unwrap();
        m.add_verified(tx(&b, 0, 1, 3), &st, 0).unwrap();
        // a's nonce 1 must not evict a's nonce 0; b's ranks above it: refused.
        assert!(matches!(m.add_verified(tx(&a, 1, 1, 2), &st, 0), Err(MempoolError::Full { .. })));
        // Paying more than b evicts b instead.
        m.add_verified(tx(&a, 1, 1, 4), &st, 0).unwrap();
        assert!(!m.contains(&tx(&b, 0, 1, 3).txid()));
        assert_eq!(m.len(), 2);
    }

    #[test]
    fn block_connect_removes_confirmed_and_invalidated() {
        let (a, b) = (key(1), key(2));
        let mut st = state(&[(&a, 1_000, 0), (&b, 1_000, 0)]);
        let mut m = Mempool::new(1 << 20);
        let a0 = tx(&a, 0, 1, 1);
        m.add_verified(a0, &st, 0).unwrap();
        m.add_verified(tx(&a, 1, 1, 1), &st, 0).unwrap();
        m.add_verified(tx(&b, 0, 1, 1), &st, 0).unwrap();
        // A block confirms a0 and a conflicting transfer of b (same nonce, other content).
        let b0_other = tx(&b, 0, 2, 1);
        apply(&mut st, &[a0, b0_other]);
        let confirming = block(&[a0, b0_other]);
        m.on_block_connected(&confirming, &confirming.txids(), &st);
        assert_eq!(m.len(), 1);
        assert!(m.contains(&tx(&a, 1, 1, 1).txid()));
        assert_eq!(m.pending_nonce(&address_of(&b), 1), 1);
    }

    /// A block that takes a few of the pool's transfers has them removed one by one, a
    /// block that takes most of it has the ordered sets swept: either way the pool is
    /// left as if each had been removed alone.
    #[test]
    fn a_block_taking_a_few_or_most_of_the_pool_leaves_it_consistent() {
        let keys: Vec<SigningKey> = (1..=8).map(key).collect();
        let funded: Vec<(&SigningKey, u64, u64)> = keys.iter().map(|k| (k, 1_000, 0)).collect();
        let mut st = state(&funded);
        let mut m = Mempool::new(1 << 20);
        for (i, k) in keys.iter().enumerate() {
            for nonce in 0..3 {
                m.add_verified(tx(k, nonce, 1, 1 + (i as u64 + nonce) % 4), &st, nonce).unwrap();
            }
        }
        assert_eq!(m.len(), 24);
        // 2 of 24: below a quarter of the pool.
        let few = [tx(&keys[0], 0, 1, 1), tx(&keys[1], 0, 1, 2)];
        apply(&mut st, &few);
        let b = block(&few);
        m.on_block_connected(&b, &b.txids(), &st);
        model::check_invariants(&m, &st).unwrap();
        assert_eq!(m.len(), 22);
        assert!(few.iter().all(|t| !m.contains(&t.txid()) && !m.txids().contains(&t.txid())));
        // 18 of the 22 left: the rest of senders 2 to 7.
        let most: Vec<SignedTransfer> = (2..8)
            .flat_map(|i| (0..3).map(move |n| (i, n)))
            .map(|(i, n)| tx(&keys[i], n, 1, 1 + (i as u64 + n) % 4))
            .collect();
        apply(&mut st, &most);
        let b = block(&most);
        m.on_block_connected(&b, &b.txids(), &st);
        model::check_invariants(&m, &st).unwrap();
        assert_eq!(m.len(), 4);
        let left: Vec<Txid> = [(0, 1), (0, 2), (1, 1), (1, 2)]
            .iter()
            .map(|&(i, n)| tx(&keys[i], n, 1, 1 + (i as u64 + n) % 4).txid())
            .collect();
        let mut listed = m.txids();
        listed.sort();
        let mut want = left.clone();
        want.sort();
        assert_eq!(listed, want);
        // The age order survived too: expiry drops exactly what is left.
        m.expire(u64::MAX);
        model::check_invariants(&m, &st).unwrap();
        assert_eq!(m.len(), 0);
    }

    #[test]
    fn reorg_returns_still_valid_transfers() {
        let (a, b) = (key(1), key(2));
        let before = state(&[(&a, 1_000, 0), (&b, 1_000, 0)]);
        let mut m = Mempool::new(1 << 20);
        let a0 = tx(&a, 0, 1, 1);
        let b0 = tx(&b, 0, 1, 1);
        let mut after = before.clone();
        apply(&mut after, &[a0, b0]);
        // a's next transfer was pending on top of the block.
        m.add_verified(tx(&a, 1, 1, 1), &after, 0).unwrap();
        // Reorg to a branch that contains b0 but not a0: state is `before` plus b0.
        let mut reorged = before.clone();
        apply(&mut reorged, &[b0]);
        m.on_blocks_disconnected(&[block(&[a0, b0])], &reorged, 0);
        assert!(m.contains(&a0.txid()), "a0 came back");
        assert!(!m.contains(&b0.txid()), "b0 is confirmed on the new branch");
        assert!(m.contains(&tx(&a, 1, 1, 1).txid()), "a1 still chains on a0");
        assert_eq!(m.len(), 2);
        // Template gives a0 before a1.
        let sel = m.select(&reorged, 1 << 20, Amount::MAX);
        assert_eq!(sel.iter().map(|t| t.transfer.nonce).collect::<Vec<_>>(), vec![0, 1]);
    }

    #[test]
    fn reorg_drops_transfers_that_spent_undone_credits() {
        let (a, b) = (key(1), key(2));
        let before = state(&[(&a, 1_000, 0), (&b, 0, 0)]);
        // a pays b 500 in a block; b then has a pending transfer spending it.
        let pay = Transfer {
            chain_id: CHAIN,
            nonce: 0,
            from: public_key_of(&a),
            to: address_of(&b),
            amount: Amount(500),
            fee: Amount(1),
        }
        .sign(&a)
        .unwrap();
        let mut after = before.clone();
        apply(&mut after, &[pay]);
        after.insert(address_of(&b), Account { balance: Amount(500), nonce: 0 });
        let mut m = Mempool::new(1 << 20);
        m.add_verified(tx(&b, 0, 400, 1), &after, 0).unwrap();
        // The block is undone and `pay` (returned) is the only valid thing left.
        m.on_blocks_disconnected(&[block(&[pay])], &before, 0);
        assert!(m.contains(&pay.txid()));
        assert!(!m.contains(&tx(&b, 0, 400, 1).txid()));
    }

    #[test]
    fn expiry_drops_old_transfers_with_descendants() {
        let (a, b) = (key(1), key(2));
        let st = state(&[(&a, 1_000, 0), (&b, 1_000, 0)]);
        let mut m = Mempool::with_config(MempoolConfig { expiry_ms: 1_000, ..MempoolConfig::default() });
        m.add_verified(tx(&a, 0, 1, 1), &st, 0).unwrap();
        m.add_verified(tx(&a, 1, 1, 1), &st, 900).unwrap();
        m.add_verified(tx(&b, 0, 1, 1), &st, 500).unwrap();
        m.expire(1_200);
        assert_eq!(m.len(), 1);
        assert!(m.contains(&tx(&b, 0, 1, 1).txid()));
    }

    #[test]
    fn fee_estimate_follows_the_pool() {
        let (a, b, c) = (key(1), key(2), key(3));
        let st = state(&[(&a, 1_000, 0), (&b, 1_000, 0), (&c, 1_000, 0)]);
        let size = transfer_size(&tx(&a, 0, 1, 1));
        assert_eq!(size, standard_transfer_size());
        let mut m = Mempool::with_config(MempoolConfig {
            max_bytes: 3 * size,
            min_fee: Amount(2),
            ..MempoolConfig::default()
        });
        // Empty: the minimum, everywhere.
        let e = m.estimate_fee(size, 10 * size, None);
        assert_eq!((e.admit_fee, e.next_block_fee, e.fee), (Amount(2), Amount(2), Amount(2)));
        m.add_verified(tx(&a, 0, 1, 7), &st, 0).unwrap();
        m.add_verified(tx(&b, 0, 1, 5), &st, 0).unwrap();
        assert_eq!(m.estimate_fee(size, 10 * size, None).fee, Amount(2), "room left: the minimum");
        m.add_verified(tx(&c, 0, 1, 9), &st, 0).unwrap();
        // Full: beat the lowest (5), and that fee is really admitted.
        let e = m.estimate_fee(size, 10 * size, None);
        assert_eq!((e.admit_fee, e.fee), (Amount(6), Amount(6)));
        let d = key(4);
        let st2 = state(&[(&d, 1_000, 0)]);
        assert!(matches!(m.add_verified(tx(&d, 0, 1, 5), &st2, 0), Err(MempoolError::Full { .. })));
        // b's own transfers are never evicted for b's next one: beat the next lowest.
        assert_eq!(m.estimate_fee(size, 10 * size, Some(&address_of(&b))).fee, Amount(8));
        m.add_verified(tx(&d, 0, 1, e.fee.0), &st2, 0).unwrap();
        // Blocks of two transfers: the pool holds 6, 7, 9; the next block takes 9 and 7,
        // and a newcomer must beat 7 to be among them.
        let e = m.estimate_fee(size, 2 * size, None);
        assert_eq!(e.next_block_fee, Amount(8));
        assert_eq!(e.fee, Amount(8));
    }

    #[test]
    fn per_sender_limit() {
        let a = key(1);
        let st = state(&[(&a, 1_000, 0)]);
        let mut m = Mempool::with_config(MempoolConfig { max_per_sender: 2, ..MempoolConfig::default() });
        m.add_verified(tx(&a, 0, 1, 1), &st, 0).unwrap();
        m.add_verified(tx(&a, 1, 1, 1), &st, 0).unwrap();
        assert_eq!(
            m.add_verified(tx(&a, 2, 1, 1), &st, 0),
            Err(MempoolError::TooManyFromSender { limit: 2 })
        );
    }
}
