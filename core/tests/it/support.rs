//! Shared fixtures: an easy-target chain so blocks are found in a few hashes.

use cairn_core::assemble::{assemble_block, grind};
use cairn_core::block::Block;
use cairn_core::genesis::{dev_keys, Genesis};
use cairn_core::params::ChainParams;
use cairn_core::transaction::{address_of, public_key_of, SignedTransfer, Transfer};
use cairn_core::validation::ParentInfo;
use cairn_core::{Address, Amount};
use k256::ecdsa::SigningKey;

pub fn easy_genesis() -> Genesis {
    let mut g = Genesis::dev();
    g.params.initial_target =
        "7fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff".parse().unwrap();
    g.params.pow_limit = g.params.initial_target;
    g
}

pub fn params() -> ChainParams {
    easy_genesis().params
}

pub fn key(i: usize) -> SigningKey {
    dev_keys()[i].clone()
}

pub fn transfer(from: &SigningKey, nonce: u64, to: Address, amount: u64, fee: u64) -> SignedTransfer {
    Transfer {
        chain_id: params().chain_id,
        nonce,
        from: public_key_of(from),
        to,
        amount: Amount(amount),
        fee: Amount(fee),
    }
    .sign(from)
    .unwrap()
}

pub fn genesis_parent() -> ParentInfo {
    ParentInfo::of_genesis(&easy_genesis().block().header)
}

/// A mined block 1 on the easy genesis carrying `transfers`, paying `miner`.
pub fn block_one(transfers: &[SignedTransfer]) -> Block {
    let p = params();
    let miner = address_of(&key(9));
    let mut b = assemble_block(&p, &genesis_parent(), p.timestamp_ms + 1000, miner, transfers).unwrap();
    assert!(grind(&mut b.header, 1_000_000));
    b
}

/// Re-mines a block after its contents were tampered with (keeping the header's
/// merkle root as the caller left it).
pub fn remine(b: &mut Block) {
    b.header.nonce = 0;
    assert!(grind(&mut b.header, 1_000_000));
}
