//! Account state: accounts, the [`AccountSource`] trait, a block's changes and undo data.
//!
//! The state maps an address to `{ balance, nonce }`; an address never seen has balance
//! 0 and nonce 0. The state transition of a block, [`crate::validation::apply_block`],
//! reads the state through the small [`AccountSource`] trait (the node backs it with
//! RocksDB, tests with a map) and returns [`StateChanges`], the new values of every
//! account it touched, plus a [`BlockUndo`] that restores the old ones exactly. It never
//! writes: the caller commits the changes atomically.

use crate::address::Address;
use crate::amount::Amount;
use crate::transaction::Transfer;
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
