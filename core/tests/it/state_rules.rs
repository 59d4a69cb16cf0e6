//! The state transition: apply and undo, supply, per-sender ordering.

use crate::support::*;
use cairn_core::state::{commit_to_map, total_supply, undo_in_map, TransferStateError};
use cairn_core::transaction::address_of;
use cairn_core::validation::{apply_block, BlockError};
use proptest::prelude::*;

#[test]
fn a_transfer_moves_exactly_amount_and_fee() {
    let (a, b) = (address_of(&key(0)), address_of(&key(1)));
    let miner = address_of(&key(9));
    let mut state = easy_genesis().initial_state();
    let before = state.clone();
    let block = block_one(&[transfer(&key(0), 0, b, 700, 30)]);
    let (changes, _) = apply_block(&state, &block, &params()).unwrap();
    commit_to_map(&mut state, &changes);
    assert_eq!(state[&a].balance.0, before[&a].balance.0 - 730);
    assert_eq!(state[&a].nonce, 1);
    assert_eq!(state[&b].balance.0, before[&b].balance.0 + 700);
    assert_eq!(state[&b].nonce, 0);
    assert_eq!(state[&miner].balance.0, before[&miner].balance.0 + params().block_reward.0 + 30);
}

#[test]
fn several_transfers_of_one_sender_apply_in_nonce_order() {
    let b = address_of(&key(1));
    let ok = block_one(&[transfer(&key(0), 0, b, 1, 1), transfer(&key(0), 1, b, 1, 1)]);
    apply_block(&easy_genesis().initial_state(), &ok, &params()).unwrap();
    let reversed = block_one(&[transfer(&key(0), 1, b, 1, 1), transfer(&key(0), 0, b, 1, 1)]);
    let err = apply_block(&easy_genesis().initial_state(), &reversed, &params()).unwrap_err();
    assert_eq!(
        err,
        BlockError::Transfer { index: 1, error: TransferStateError::Nonce { expected: 0, got: 1 } }
    );
}

#[test]
fn a_sender_cannot_spend_more_than_it_has_across_a_block() {
    let poor = cairn_core::genesis::dev_keys()[0].clone();
    let mut state = easy_genesis().initial_state();
    let addr = address_of(&poor);
    state.get_mut(&addr).unwrap().balance = cairn_core::Amount(100);
    let b = address_of(&key(1));
    let block = block_one(&[transfer(&poor, 0, b, 50, 1), transfer(&poor, 1, b, 50, 1)]);
    let err = apply_block(&state, &block, &params()).unwrap_err();
    assert!(matches!(
        err,
        BlockError::Transfer { index: 2, error: TransferStateError::InsufficientBalance { .. } }
    ));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    /// Any valid block: supply grows by exactly the reward, and undo restores the exact
    /// previous state (including which accounts exist).
    #[test]
    fn undo_restores_exactly_and_supply_grows_by_the_reward(
        spec in proptest::collection::vec((0usize..4, 0usize..12, 0u64..1_000_000, 0u64..1000), 0..12)
    ) {
        let mut nonces = [0u64; 4];
        let txs: Vec<_> = spec.iter().map(|(from, to, amount, fee)| {
            // Recipients 10 and 11 are fresh addresses that do not exist yet.
            let to_addr = if *to < 10 { address_of(&key(*to)) } else { cairn_core::Address([*to as u8; 20]) };
            let t = transfer(&key(*from), nonces[*from], to_addr, *amount, *fee);
            nonces[*from] += 1;
            t
        }).collect();
        let block = block_one(&txs);
        let mut state = easy_genesis().initial_state();
        let before = state.clone();
        let supply_before = total_supply(before.values());
        let (changes, undo) = apply_block(&state, &block, &params()).unwrap();
        commit_to_map(&mut state, &changes);
        prop_assert_eq!(total_supply(state.values()), supply_before + u128::from(params().block_reward.0));
        undo_in_map(&mut state, &undo);
        prop_assert_eq!(state, before);
    }
}
