//! Why the mempool refuses a transfer: its own file, with nothing but amounts in it, so
//! that whoever reports a refusal (the metrics, the P2P ledger) need not depend on the
//! mempool itself.

use cairn_core::Amount;
use thiserror::Error;

/// Why a transfer was refused. The message is what tx_submit's caller sees.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MempoolError {
    #[error("duplicate: transfer is already in the mempool")]
    Duplicate,
    #[error("fee too low: {fee} is below the minimum fee {min_fee}")]
    FeeTooLow { fee: Amount, min_fee: Amount },
    #[error("nonce too low: account's next nonce is {expected}, transfer has {got}")]
    NonceTooLow { expected: u64, got: u64 },
    #[error(
        "nonce gap: account's next nonce (counting pending transfers) is {expected}, transfer has {got}"
    )]
    NonceGap { expected: u64, got: u64 },
    #[error("insufficient balance: have {balance} after pending transfers, need {needed}")]
    InsufficientBalance { balance: Amount, needed: Amount },
    #[error("replacement fee too low: pending transfer with this nonce pays {old_fee}, a replacement must pay at least {min_fee}")]
    ReplacementFeeTooLow { old_fee: Amount, min_fee: Amount },
    #[error("replacement would leave later pending transfers unaffordable (need {needed}, have {balance})")]
    ReplacementUnaffordable { balance: Amount, needed: Amount },
    #[error("too many pending transfers from this sender (limit {limit})")]
    TooManyFromSender { limit: usize },
    #[error("mempool full: fee rate too low to evict anything (pay at least {min_fee} for this size)")]
    Full { min_fee: Amount },
    #[error("amount overflow: amount plus fee is more than the largest amount (18446744073709551615)")]
    Overflow,
    #[error("amount overflow: with this transfer, the sender's pending transfers would cost more than the largest amount (18446744073709551615)")]
    PendingOverflow,
    #[error("nonce overflow: the account's nonces are used up")]
    NonceOverflow,
    #[error("state unavailable: {0}")]
    State(String),
}

impl MempoolError {
    /// True when the sender of the transfer sent something that can never be valid
    /// (a bad signature, wrong chain), as opposed to e.g. a fee too low right now.
    /// Everything the mempool itself refuses depends on state, time or load, except an
    /// overflowing amount (which signature verification already rules out).
    pub fn is_peer_fault(&self) -> bool {
        matches!(self, MempoolError::Overflow)
    }

    /// True when the very same transfer may be admitted later: it waits for its
    /// predecessor (a nonce gap), for funds, or for room. The P2P layer does not
    /// remember these as rejects, so the transfer is fetched again when announced again.
    /// The others (fee below the minimum, nonce already used, a replacement that does
    /// not pay enough) stay refused.
    pub fn is_temporary(&self) -> bool {
        matches!(
            self,
            MempoolError::NonceGap { .. }
                | MempoolError::InsufficientBalance { .. }
                | MempoolError::ReplacementUnaffordable { .. }
                | MempoolError::TooManyFromSender { .. }
                | MempoolError::Full { .. }
                | MempoolError::State(_)
        )
    }
}
