//! Block validity rules, split by what they need.
//!
//! - [`check_block_stateless`]: needs only the block and the chain parameters (size,
//!   structure, coinbase placement, merkle root, duplicate txids, proof of work,
//!   signatures). It can run on any thread, before the parent is even known.
//! - [`check_header_contextual`]: needs the parent (height, prev hash, target schedule,
//!   median-time-past, future drift against the caller's clock).
//! - [`apply_block`]: needs the account state (nonces, balances, coinbase amount), read
//!   through [`AccountSource`]; returns the changes and undo data without writing.
//!
//! Every error says what was wrong; [`BlockError::is_peer_fault`] says whether whoever
//! sent the block should be penalised for it.

use crate::address::Address;
use crate::amount::Amount;
use crate::block::{Block, BlockHeader, BLOCK_VERSION};
use crate::difficulty;
use crate::hash::{BlockHash, Txid};
use crate::merkle;
use crate::params::ChainParams;
use crate::pow::Target;
use crate::state::{
    debit_sender, Account, AccountSource, BlockUndo, StateChanges, StateError, TransferStateError,
};
use crate::transaction::{self, DecodedKeys, SignedTransfer, Transaction, TxError};
use std::collections::{HashMap, HashSet};
use thiserror::Error;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BlockError {
    #[error("block is {size} bytes, the limit is {max}")]
    TooLarge { size: usize, max: usize },
    #[error("unsupported block version {0}")]
    BadVersion(u32),
    #[error("block hash does not meet its target")]
    BadProofOfWork,
    #[error("block has no coinbase as its first transaction")]
    NoCoinbase,
    #[error("transaction {index} is a coinbase; only the first may be")]
    ExtraCoinbase { index: usize },
    #[error("coinbase is for height {got}, block is at height {expected}")]
    CoinbaseHeight { expected: u64, got: u64 },
    #[error("merkle root does not match the transactions")]
    BadMerkleRoot,
    #[error("duplicate transaction {0}")]
    DuplicateTxid(Txid),
    #[error("transfer {index} is invalid: {error}")]
    InvalidTransfer { index: usize, error: TxError },
    #[error("block height {got}, expected {expected}")]
    WrongHeight { expected: u64, got: u64 },
    #[error("block does not build on the given parent")]
    WrongParent { expected: BlockHash, got: BlockHash },
    #[error("block target {got:?}, the schedule requires {expected:?}")]
    WrongTarget { expected: Target, got: Target },
    #[error("timestamp {timestamp_ms} is not after the median time past {median_ms}")]
    TimestampTooOld { timestamp_ms: u64, median_ms: u64 },
    #[error("timestamp {timestamp_ms} is more than the allowed drift ahead of now (limit {limit_ms})")]
    TimestampTooNew { timestamp_ms: u64, limit_ms: u64 },
    #[error("transfer {index} cannot be applied: {error}")]
    Transfer { index: usize, error: TransferStateError },
    #[error("transfer {index} overflows the recipient's balance")]
    BalanceOverflow { index: usize },
    #[error("sum of fees overflows")]
    FeeOverflow,
    #[error("coinbase pays {got}, must pay reward plus fees = {expected}")]
    CoinbaseAmount { expected: Amount, got: Amount },
    /// The block builds on a block already found invalid (descendants of an invalid
    /// block are invalid whatever they contain).
    #[error("block builds on invalid block {0}")]
    InvalidAncestor(BlockHash),
    #[error(transparent)]
    State(#[from] StateError),
}

impl BlockError {
    /// True when the block is invalid whatever the time or local state: the peer that
    /// sent it sent invalid data. A block too far in the future may become valid later,
    /// and a storage failure is ours, so neither is the peer's fault.
    pub fn is_peer_fault(&self) -> bool {
        !matches!(self, BlockError::TimestampTooNew { .. } | BlockError::State(_))
    }
}

/// Version and proof of work of a header alone: cheap, so it is checked first and
/// before a block is relayed.
pub fn check_header_stateless(header: &BlockHeader) -> Result<(), BlockError> {
    if header.version != BLOCK_VERSION {
        return Err(BlockError::BadVersion(header.version));
    }
    if !header.meets_own_target() {
        return Err(BlockError::BadProofOfWork);
    }
    Ok(())
}

/// Structure without signatures: size, coinbase first and only first with the block's
/// height, no duplicate txids, merkle root. Returns the txids so callers need not
/// hash again.
pub fn check_block_structure(block: &Block, params: &ChainParams) -> Result<Vec<Txid>, BlockError> {
    let txids = block.txids();
    check_block_structure_with_txids(block, &txids, params)?;
    Ok(txids)
}

/// [`check_block_structure`] for a caller that holds the block's txids already (a
/// block rebuilt from a compact block, whose transfers came from the mempool with
/// theirs): `txids` must be those of `block.transactions`, in order, computed from
/// these very transactions. A list of another length fails as [`BlockError::BadMerkleRoot`].
pub fn check_block_structure_with_txids(
    block: &Block,
    txids: &[Txid],
    params: &ChainParams,
) -> Result<(), BlockError> {
    let size = block.encoded_len();
    let max = params.max_block_bytes as usize;
    if size > max {
        return Err(BlockError::TooLarge { size, max });
    }
    match block.transactions.first() {
        Some(Transaction::Coinbase(cb)) => {
            if cb.height != block.header.height {
                return Err(BlockError::CoinbaseHeight { expected: block.header.height, got: cb.height });
            }
        }
        _ => return Err(BlockError::NoCoinbase),
    }
    if let Some(index) =
        block.transactions.iter().skip(1).position(|tx| matches!(tx, Transaction::Coinbase(_)))
    {
        return Err(BlockError::ExtraCoinbase { index: index + 1 });
    }
    if txids.len() != block.transactions.len() {
        return Err(BlockError::BadMerkleRoot);
    }
    let mut seen = HashSet::with_capacity(txids.len());
    for id in txids {
        if !seen.insert(*id) {
            return Err(BlockError::DuplicateTxid(*id));
        }
    }
    if merkle::merkle_root(txids) != block.header.merkle_root {
        return Err(BlockError::BadMerkleRoot);
    }
    Ok(())
}

/// Verifies the signature and static rules of transfer `index` of `block`.
pub fn check_transfer_at(block: &Block, index: usize, chain_id: u32) -> Result<(), BlockError> {
    match &block.transactions[index] {
        Transaction::Transfer(st) => {
            st.verify(chain_id).map_err(|error| BlockError::InvalidTransfer { index, error })
        }
        Transaction::Coinbase(_) => Ok(()),
    }
}

/// [`check_transfer_at`] of each of `indexes` (increasing), the senders' public keys
/// taken from `keys` when there and the signature equations run together
/// ([`transaction::verify_all_with_keys`]); the error is the first failing index's.
pub fn check_transfers_at_with(
    block: &Block,
    indexes: &[usize],
    chain_id: u32,
    keys: &DecodedKeys,
) -> Result<(), BlockError> {
    let at: Vec<(usize, &SignedTransfer)> =
        indexes.iter().filter_map(|&i| block.transactions[i].as_transfer().map(|st| (i, st))).collect();
    let txs: Vec<&SignedTransfer> = at.iter().map(|(_, st)| *st).collect();
    let verdicts = transaction::verify_all_with_keys(&txs, chain_id, keys);
    match at.iter().zip(verdicts).find_map(|((index, _), v)| v.err().map(|error| (*index, error))) {
        Some((index, error)) => Err(BlockError::InvalidTransfer { index, error }),
        None => Ok(()),
    }
}

/// Every check that needs nothing but the block, signatures verified one after another.
/// (The node runs the same per-transfer check, [`check_transfer_at`], across cores.)
pub fn check_block_stateless(block: &Block, params: &ChainParams) -> Result<Vec<Txid>, BlockError> {
    check_header_stateless(&block.header)?;
    let txids = check_block_structure(block, params)?;
    for index in 1..block.transactions.len() {
        check_transfer_at(block, index, params.chain_id)?;
    }
    Ok(txids)
}

/// What the contextual checks need to know about a block's parent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParentInfo {
    pub hash: BlockHash,
    pub height: u64,
    pub timestamp_ms: u64,
    /// Median of the timestamps of the parent and its ancestors, up to
    /// `params.median_time_blocks` of them.
    pub median_time_past_ms: u64,
    /// Timestamp of block 1 on the parent's chain (the difficulty anchor); unused when
    /// the parent is genesis.
    pub anchor_timestamp_ms: u64,
}

impl ParentInfo {
    /// The genesis block as a parent: its median time past is its own timestamp, and
    /// there is no anchor yet (block 1's target is the initial one).
    pub fn of_genesis(genesis: &BlockHeader) -> ParentInfo {
        ParentInfo {
            hash: genesis.hash(),
            height: 0,
            timestamp_ms: genesis.timestamp_ms,
            median_time_past_ms: genesis.timestamp_ms,
            anchor_timestamp_ms: 0,
        }
    }

    /// The target a child of this parent must carry.
    pub fn next_target(&self, params: &ChainParams) -> Target {
        difficulty::next_target(params, self.height, self.timestamp_ms, self.anchor_timestamp_ms)
    }
}

/// Height, parent, target schedule and timestamp rules. `now_ms` is the caller's clock.
pub fn check_header_contextual(
    header: &BlockHeader,
    parent: &ParentInfo,
    params: &ChainParams,
    now_ms: u64,
) -> Result<(), BlockError> {
    let expected_height = parent.height + 1;
    if header.height != expected_height {
        return Err(BlockError::WrongHeight { expected: expected_height, got: header.height });
    }
    if header.prev != parent.hash {
        return Err(BlockError::WrongParent { expected: parent.hash, got: header.prev });
    }
    let expected = parent.next_target(params);
    if header.target != expected {
        return Err(BlockError::WrongTarget { expected, got: header.target });
    }
    if header.timestamp_ms <= parent.median_time_past_ms {
        return Err(BlockError::TimestampTooOld {
            timestamp_ms: header.timestamp_ms,
            median_ms: parent.median_time_past_ms,
        });
    }
    let limit_ms = now_ms.saturating_add(params.max_future_drift_ms);
    if header.timestamp_ms > limit_ms {
        return Err(BlockError::TimestampTooNew { timestamp_ms: header.timestamp_ms, limit_ms });
    }
    Ok(())
}

struct Overlay<'a, S: AccountSource + ?Sized> {
    source: &'a S,
    current: HashMap<Address, Account>,
    prior: HashMap<Address, Option<Account>>,
}

impl<'a, S: AccountSource + ?Sized> Overlay<'a, S> {
    fn get(&mut self, a: &Address) -> Result<Account, StateError> {
        if let Some(acc) = self.current.get(a) {
            return Ok(*acc);
        }
        let stored = self.source.account(a)?;
        self.prior.insert(*a, stored);
        let acc = stored.unwrap_or_default();
        self.current.insert(*a, acc);
        Ok(acc)
    }
    fn set(&mut self, a: Address, acc: Account) {
        self.current.insert(a, acc);
    }
}

/// Applies `block` to the state read from `source`.
///
/// Transfers apply in block order: each must carry its sender's current nonce and the
/// sender must afford amount + fee. The coinbase is checked last: its amount must equal
/// `block_reward + sum(fees)` exactly, so the supply grows by exactly the reward. The
/// block's structure and signatures are assumed checked already
/// ([`check_block_stateless`]).
pub fn apply_block<S: AccountSource + ?Sized>(
    source: &S,
    block: &Block,
    params: &ChainParams,
) -> Result<(StateChanges, BlockUndo), BlockError> {
    apply_block_with_senders(source, block, None, params)
}

/// [`apply_block`] with the senders' addresses at hand (a caller that derived them
/// already, say to read the accounts ahead): `senders[i]` must be
/// `Transfer::sender()` of transaction `i` for every transfer (any address at the
/// coinbase's index). Without them, or with a list of another length, each is derived
/// here.
pub fn apply_block_with_senders<S: AccountSource + ?Sized>(
    source: &S,
    block: &Block,
    senders: Option<&[Address]>,
    params: &ChainParams,
) -> Result<(StateChanges, BlockUndo), BlockError> {
    let senders = senders.filter(|s| s.len() == block.transactions.len());
    let mut overlay = Overlay { source, current: HashMap::new(), prior: HashMap::new() };
    let mut fees = Amount::ZERO;
    for (index, tx) in block.transactions.iter().enumerate().skip(1) {
        let Transaction::Transfer(st) = tx else {
            return Err(BlockError::ExtraCoinbase { index });
        };
        let t = &st.transfer;
        let sender = match senders {
            Some(s) => s[index],
            None => t.sender(),
        };
        let before = overlay.get(&sender).map_err(BlockError::State)?;
        let after = debit_sender(before, t).map_err(|error| BlockError::Transfer { index, error })?;
        overlay.set(sender, after);
        let to = overlay.get(&t.to).map_err(BlockError::State)?;
        let credited = to.balance.checked_add(t.amount).ok_or(BlockError::BalanceOverflow { index })?;
        overlay.set(t.to, Account { balance: credited, nonce: to.nonce });
        fees = fees.checked_add(t.fee).ok_or(BlockError::FeeOverflow)?;
    }
    let Some(Transaction::Coinbase(cb)) = block.transactions.first() else {
        return Err(BlockError::NoCoinbase);
    };
    let expected = params.block_reward.checked_add(fees).ok_or(BlockError::FeeOverflow)?;
    if cb.amount != expected {
        return Err(BlockError::CoinbaseAmount { expected, got: cb.amount });
    }
    let miner = overlay.get(&cb.to).map_err(BlockError::State)?;
    let paid = miner.balance.checked_add(cb.amount).ok_or(BlockError::BalanceOverflow { index: 0 })?;
    overlay.set(cb.to, Account { balance: paid, nonce: miner.nonce });

    let mut accounts: Vec<(Address, Account)> = overlay.current.into_iter().collect();
    accounts.sort_unstable_by_key(|(a, _)| *a);
    let mut prior: Vec<(Address, Option<Account>)> = overlay.prior.into_iter().collect();
    prior.sort_unstable_by_key(|(a, _)| *a);
    Ok((StateChanges { accounts }, BlockUndo { prior }))
}
