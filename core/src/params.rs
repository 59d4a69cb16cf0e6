//! The consensus parameters of a chain.
//!
//! Low in the import graph: [`ChainParams`] needs only [`Amount`] and [`Target`], so
//! the rule modules (difficulty, validation, assemble) take it without importing genesis.
//! Its values come from genesis.json ([`crate::genesis::Genesis`], which also checks
//! them).

use crate::amount::Amount;
use crate::pow::Target;

/// Every consensus parameter of a chain.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, bincode::Encode, bincode::Decode,
)]
#[serde(deny_unknown_fields)]
pub struct ChainParams {
    /// Signed into every transfer; transfers for another chain are invalid.
    pub chain_id: u32,
    /// Genesis block timestamp (ms since the Unix epoch).
    pub timestamp_ms: u64,
    /// Target of block 1, and the base of the difficulty schedule.
    pub initial_target: Target,
    /// The easiest target the schedule may ever reach.
    pub pow_limit: Target,
    /// The block interval the difficulty schedule aims for.
    pub target_block_time_ms: u64,
    /// The schedule halves (or doubles) the target for every half-life the chain runs
    /// behind (or ahead of) schedule.
    pub half_life_ms: u64,
    /// New coins in every block's coinbase, on top of the fees.
    pub block_reward: Amount,
    /// Largest canonical encoding of a block.
    pub max_block_bytes: u32,
    /// A block's timestamp must exceed the median of this many previous timestamps.
    pub median_time_blocks: u32,
    /// A block's timestamp may be at most this far ahead of the receiving node's clock.
    pub max_future_drift_ms: u64,
}
