//! Building blocks: a template from a parent and transfers, and a simple nonce search.
//!
//! The node's miner searches nonces with its own optimised loop; [`grind`] is the plain
//! version for tests, tools and simulations.

use crate::address::Address;
use crate::amount::Amount;
use crate::block::{Block, BlockHeader, BLOCK_VERSION};
use crate::merkle;
use crate::params::ChainParams;
use crate::transaction::{Coinbase, SignedTransfer, Transaction};
use crate::validation::ParentInfo;

/// An unmined block (nonce 0) on `parent`: coinbase paying reward + fees to `miner`,
/// then `transfers` in the given order. The timestamp is raised to one past the
/// parent's median time past if needed. `None` if the fees overflow.
pub fn assemble_block(
    params: &ChainParams,
    parent: &ParentInfo,
    timestamp_ms: u64,
    miner: Address,
    transfers: &[SignedTransfer],
) -> Option<Block> {
    let mut fees = Amount::ZERO;
    for t in transfers {
        fees = fees.checked_add(t.transfer.fee)?;
    }
    let height = parent.height + 1;
    let coinbase = Coinbase { height, to: miner, amount: params.block_reward.checked_add(fees)? };
    let mut transactions = Vec::with_capacity(transfers.len() + 1);
    transactions.push(Transaction::Coinbase(coinbase));
    transactions.extend(transfers.iter().copied().map(Transaction::Transfer));
    let txids: Vec<_> = transactions.iter().map(Transaction::txid).collect();
    let header = BlockHeader {
        version: BLOCK_VERSION,
        height,
        prev: parent.hash,
        merkle_root: merkle::merkle_root(&txids),
        timestamp_ms: timestamp_ms.max(parent.median_time_past_ms + 1),
        target: parent.next_target(params),
        nonce: 0,
    };
    Some(Block { header, transactions })
}

/// Tries nonces from the header's current one until the hash meets the target or
/// `max_tries` are spent. Returns true when found (the header holds the winning nonce).
pub fn grind(header: &mut BlockHeader, max_tries: u64) -> bool {
    for _ in 0..max_tries {
        if header.meets_own_target() {
            return true;
        }
        header.nonce = header.nonce.wrapping_add(1);
    }
    header.meets_own_target()
}
