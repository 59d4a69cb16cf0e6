//! Account state and the state transition of a block.
//!
//! The state maps an address to `{ balance, nonce }`; an address never seen has balance
//! 0 and nonce 0. [`apply_block`] reads the state through the small [`AccountSource`]
//! trait (the node backs it with RocksDB, tests with a map) and returns the new values
//! of every account it touched plus the undo data that restores the old ones exactly.
//! It never writes: the caller commits the changes atomically.

use crate::address::Address;
use crate::amount::Amount;
use crate::block::Block;
use crate::genesis::ChainParams;
use crate::transaction::{Transaction, Transfer};
use crate::validation::BlockError;
use std::collections::{BTreeMap, HashMap};
use thiserror::Error;

#[derive(
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    Debug,
    bincode::Encode,
    bincode::Decode,
    serde::Serialize,
    serde::Deserialize,
)]
pub struct Account {
    pub balance: Amount,
    /// The nonce the account's next transfer must carry.
    pub nonce: u64,
}

/// A failure of the storage behind an [`AccountSource`] (not a consensus failure).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("state storage error: {0}")]
pub struct StateError(pub String);

/// Read access to account state.
pub trait AccountSource {
    fn account(&self, address: &Address) -> Result<Option<Account>, StateError>;
}

impl AccountSource for HashMap<Address, Account> {
    fn account(&self, address: &Address) -> Result<Option<Account>, StateError> {
        Ok(self.get(address).copied())
    }
}

impl AccountSource for BTreeMap<Address, Account> {
    fn account(&self, address: &Address) -> Result<Option<Account>, StateError> {
        Ok(self.get(address).copied())
    }
}

/// The values before a block of every account it touched (`None`: did not exist).
/// Applying it in any order restores the state before the block.
#[derive(Clone, Debug, Default, PartialEq, Eq, bincode::Encode, bincode::Decode)]
pub struct BlockUndo {
    pub prior: Vec<(Address, Option<Account>)>,
}

/// The values after a block of every account it touched, sorted by address.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StateChanges {
    pub accounts: Vec<(Address, Account)>,
}

/// Why a transfer cannot be applied to its sender's account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum TransferStateError {
    #[error("nonce mismatch: account expects {expected}, transfer has {got}")]
    Nonce { expected: u64, got: u64 },
    #[error("insufficient balance: have {balance}, need {needed}")]
    InsufficientBalance { balance: Amount, needed: Amount },
    #[error("amount plus fee overflows")]
    Overflow,
    #[error("nonce overflow: the account's nonces are used up")]
    NonceOverflow,
}

/// Checks a transfer against its sender's current account and returns the sender's
/// account after it. Shared by block application and mempool admission.
pub fn debit_sender(sender: Account, t: &Transfer) -> Result<Account, TransferStateError> {
    if t.nonce != sender.nonce {
        return Err(TransferStateError::Nonce { expected: sender.nonce, got: t.nonce });
    }
    let needed = t.total_cost().ok_or(TransferStateError::Overflow)?;
    let balance = sender
        .balance
        .checked_sub(needed)
        .ok_or(TransferStateError::InsufficientBalance { balance: sender.balance, needed })?;
    let nonce = sender.nonce.checked_add(1).ok_or(TransferStateError::NonceOverflow)?;
    Ok(Account { balance, nonce })
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
/// ([`crate::validation::check_block_stateless`]).
pub fn apply_block<S: AccountSource + ?Sized>(
    source: &S,
    block: &Block,
    params: &ChainParams,
) -> Result<(StateChanges, BlockUndo), BlockError> {
    let mut overlay = Overlay { source, current: HashMap::new(), prior: HashMap::new() };
    let mut fees = Amount::ZERO;
    for (index, tx) in block.transactions.iter().enumerate().skip(1) {
        let Transaction::Transfer(st) = tx else {
            return Err(BlockError::ExtraCoinbase { index });
        };
        let t = &st.transfer;
        let sender = t.sender();
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

/// Writes changes into a map-backed state (tests and tools).
pub fn commit_to_map(state: &mut HashMap<Address, Account>, changes: &StateChanges) {
    for (a, acc) in &changes.accounts {
        state.insert(*a, *acc);
    }
}

/// Restores a map-backed state from undo data.
pub fn undo_in_map(state: &mut HashMap<Address, Account>, undo: &BlockUndo) {
    for (a, prior) in &undo.prior {
        match prior {
            Some(acc) => state.insert(*a, *acc),
            None => state.remove(a),
        };
    }
}

/// Sum of all balances (for supply checks).
pub fn total_supply<'a>(accounts: impl IntoIterator<Item = &'a Account>) -> u128 {
    accounts.into_iter().map(|a| u128::from(a.balance.0)).sum()
}
