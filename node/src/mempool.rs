//! The mempool. (API fixed; implementation in progress.)

use cairn_core::block::Block;
use cairn_core::state::AccountSource;
use cairn_core::{Address, SignedTransfer, Txid};
use thiserror::Error;

/// Why a transfer was refused. The message is what tx_submit's caller sees.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MempoolError {
    #[error("{0}")]
    Invalid(String),
}

impl MempoolError {
    /// True when the sender of the transfer sent something that can never be valid
    /// (a bad signature, wrong chain), as opposed to e.g. a fee too low right now.
    pub fn is_peer_fault(&self) -> bool {
        false
    }
}

pub struct Mempool {
    _private: (),
}

impl Mempool {
    pub fn new(_max_bytes: usize) -> Self {
        Mempool { _private: () }
    }
    pub fn contains(&self, _txid: &Txid) -> bool {
        false
    }
    pub fn get(&self, _txid: &Txid) -> Option<SignedTransfer> {
        None
    }
    /// Admits a transfer whose signature was already verified.
    pub fn add_verified(&mut self, _tx: SignedTransfer, _state: &dyn AccountSource, _now_ms: u64) -> Result<Txid, MempoolError> {
        Err(MempoolError::Invalid("mempool not implemented".into()))
    }
    /// Drops what the block confirmed and what it made invalid.
    pub fn on_block_connected(&mut self, _block: &Block, _state: &dyn AccountSource) {}
    /// Returns transfers of disconnected blocks that are still valid.
    pub fn on_blocks_disconnected(&mut self, _blocks: &[Block], _state: &dyn AccountSource, _now_ms: u64) {}
    /// The nonce `address` would use next, counting its pending transfers.
    pub fn pending_nonce(&self, _address: &Address, state_nonce: u64) -> u64 {
        state_nonce
    }
    pub fn len(&self) -> usize {
        0
    }
    pub fn is_empty(&self) -> bool {
        true
    }
}
