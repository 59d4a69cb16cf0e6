//! Unit tests of [`Chain`] that need its insides or a store of its own (the scenario
//! tests are in `node/tests/chain_*.rs`).
#![allow(clippy::unwrap_used)] // test helpers fail loudly

use super::*;
use cairn_core::assemble::{assemble_block, grind};
use cairn_core::pow::Target;

/// Dev genesis with a target so easy that every nonce has a 1-in-2 chance.
fn easy_genesis() -> Genesis {
    let mut g = Genesis::dev();
    g.name = "cairn-chain-unit-test".into();
    let easy: Target = "7fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff".parse().unwrap();
    g.params.initial_target = easy;
    g.params.pow_limit = easy;
    g
}

/// Far enough ahead that no test block is "too new".
fn now(g: &Genesis) -> u64 {
    g.params.timestamp_ms + 10_000_000_000
}

/// A coinbase-only block on the chain's tip, a block time after it.
fn mine_on_tip(chain: &Chain, tag: u8) -> Block {
    let parent = chain.tip_parent_info();
    let t = parent.timestamp_ms + chain.params().target_block_time_ms;
    let mut block = assemble_block(chain.params(), &parent, t, Address([tag; 20]), &[]).unwrap();
    assert!(grind(&mut block.header, u64::MAX));
    block
}

#[test]
fn block_bytes_are_the_stored_canonical_encoding() {
    let g = easy_genesis();
    let mut chain = Chain::open_in_memory(&g);
    let block = mine_on_tip(&chain, 1);
    let hash = block.hash();
    assert_eq!(chain.block_bytes(&hash).unwrap(), None, "unknown before it is accepted");
    assert_eq!(chain.accept_block(block.clone(), now(&g)).unwrap().acceptance, Acceptance::Connected);
    assert_eq!(chain.block_bytes(&hash).unwrap(), Some(encoding::encode(&block)));
    assert_eq!(chain.block_bytes(&g.hash()).unwrap(), Some(encoding::encode(&g.block())));
    assert_eq!(chain.block_bytes(&BlockHash([7; 32])).unwrap(), None);
}
