//! Block validity rules, including attacks that hit real chains.

use crate::support::*;
use cairn_core::block::Block;
use cairn_core::state::TransferStateError;
use cairn_core::transaction::{address_of, Coinbase, Transaction, TxError};
use cairn_core::validation::{apply_block, check_block_stateless, check_header_contextual, BlockError};
use cairn_core::{Address, Amount};
use k256::ecdsa::Signature;
use k256::elliptic_curve::ops::Neg;

fn fix_merkle(b: &mut Block) {
    b.header.merkle_root = b.compute_merkle_root();
    remine(b);
}

#[test]
fn a_well_formed_block_passes_every_check() {
    let t = transfer(&key(0), 0, address_of(&key(1)), 500, 10);
    let b = block_one(&[t]);
    let p = params();
    check_block_stateless(&b, &p).unwrap();
    check_header_contextual(&b.header, &genesis_parent(), &p, b.header.timestamp_ms).unwrap();
    apply_block(&easy_genesis().initial_state(), &b, &p).unwrap();
}

#[test]
fn duplicate_txids_are_invalid() {
    let t = transfer(&key(0), 0, address_of(&key(1)), 500, 10);
    let mut b = block_one(&[t]);
    b.transactions.push(Transaction::Transfer(t));
    fix_merkle(&mut b);
    assert!(matches!(check_block_stateless(&b, &params()), Err(BlockError::DuplicateTxid(_))));
}

#[test]
fn merkle_duplicated_leaf_mutation_is_caught() {
    // Bitcoin's CVE-2012-2459: appending a copy of the last transaction kept the root.
    let txs: Vec<_> = (0..2).map(|n| transfer(&key(0), n, address_of(&key(1)), 5, 1)).collect();
    let b = block_one(&txs);
    let mut mutated = b.clone();
    mutated.transactions.push(*b.transactions.last().unwrap());
    // Same header, so same proof of work: only the merkle rule can catch it.
    assert!(matches!(
        check_block_stateless(&mutated, &params()),
        Err(BlockError::DuplicateTxid(_)) | Err(BlockError::BadMerkleRoot)
    ));
    assert_ne!(mutated.compute_merkle_root(), b.header.merkle_root);
}

#[test]
fn coinbase_must_be_first_and_only_first_and_carry_the_height() {
    let t = transfer(&key(0), 0, address_of(&key(1)), 500, 10);
    let b = block_one(&[t]);

    let mut swapped = b.clone();
    swapped.transactions.swap(0, 1);
    fix_merkle(&mut swapped);
    assert_eq!(check_block_stateless(&swapped, &params()), Err(BlockError::NoCoinbase));

    let mut two = b.clone();
    two.transactions.push(Transaction::Coinbase(Coinbase {
        height: 1,
        to: Address([1; 20]),
        amount: Amount(1),
    }));
    fix_merkle(&mut two);
    assert_eq!(check_block_stateless(&two, &params()), Err(BlockError::ExtraCoinbase { index: 2 }));

    let mut wrong_height = b.clone();
    if let Transaction::Coinbase(cb) = &mut wrong_height.transactions[0] {
        cb.height = 7;
    }
    fix_merkle(&mut wrong_height);
    assert_eq!(
        check_block_stateless(&wrong_height, &params()),
        Err(BlockError::CoinbaseHeight { expected: 1, got: 7 })
    );

    let mut empty = b;
    empty.transactions.clear();
    fix_merkle(&mut empty);
    assert_eq!(check_block_stateless(&empty, &params()), Err(BlockError::NoCoinbase));
}

#[test]
fn coinbase_must_pay_exactly_reward_plus_fees() {
    let t = transfer(&key(0), 0, address_of(&key(1)), 500, 10);
    for delta in [-1i64, 1] {
        let mut b = block_one(&[t]);
        if let Transaction::Coinbase(cb) = &mut b.transactions[0] {
            cb.amount = Amount((cb.amount.0 as i64 + delta) as u64);
        }
        fix_merkle(&mut b);
        check_block_stateless(&b, &params()).unwrap();
        let err = apply_block(&easy_genesis().initial_state(), &b, &params()).unwrap_err();
        assert!(matches!(err, BlockError::CoinbaseAmount { .. }), "{err:?}");
    }
}

#[test]
fn proof_of_work_and_version_are_checked() {
    let mut b = block_one(&[]);
    b.header.target = cairn_core::Target([0; 32]);
    assert_eq!(check_block_stateless(&b, &params()), Err(BlockError::BadProofOfWork));
    let mut b = block_one(&[]);
    b.header.version = 2;
    assert_eq!(check_block_stateless(&b, &params()), Err(BlockError::BadVersion(2)));
}

#[test]
fn oversized_block_is_rejected() {
    let mut p = params();
    p.max_block_bytes = 1024;
    let txs: Vec<_> = (0..10).map(|n| transfer(&key(0), n, address_of(&key(1)), 5, 1)).collect();
    let b = block_one(&txs);
    assert!(matches!(check_block_stateless(&b, &p), Err(BlockError::TooLarge { .. })));
}

#[test]
fn transfers_for_another_chain_or_with_high_s_are_invalid() {
    let mut wrong_chain = transfer(&key(0), 0, address_of(&key(1)), 5, 1);
    wrong_chain.transfer.chain_id += 1;
    let wrong_chain = wrong_chain.transfer.sign(&key(0)).unwrap();
    let b = block_one(&[wrong_chain]);
    assert!(matches!(
        check_block_stateless(&b, &params()),
        Err(BlockError::InvalidTransfer { index: 1, error: TxError::WrongChain { .. } })
    ));

    let mut high_s = transfer(&key(0), 0, address_of(&key(1)), 5, 1);
    let sig = Signature::from_slice(&high_s.signature).unwrap();
    let (r, s) = sig.split_scalars();
    high_s.signature = Signature::from_scalars(r, s.neg()).unwrap().to_bytes().into();
    let b = block_one(&[high_s]);
    assert_eq!(
        check_block_stateless(&b, &params()),
        Err(BlockError::InvalidTransfer { index: 1, error: TxError::HighS })
    );
}

#[test]
fn timestamps_must_exceed_the_median_and_stay_within_the_drift() {
    let p = params();
    let parent = genesis_parent();
    let b = block_one(&[]);
    let mut h = b.header;
    let now = p.timestamp_ms + 1_000_000;

    h.timestamp_ms = parent.median_time_past_ms;
    assert!(matches!(check_header_contextual(&h, &parent, &p, now), Err(BlockError::TimestampTooOld { .. })));
    h.timestamp_ms = parent.median_time_past_ms + 1;
    assert_eq!(check_header_contextual(&h, &parent, &p, now), Ok(()));

    h.timestamp_ms = now + p.max_future_drift_ms;
    assert_eq!(check_header_contextual(&h, &parent, &p, now), Ok(()));
    h.timestamp_ms = now + p.max_future_drift_ms + 1;
    let err = check_header_contextual(&h, &parent, &p, now).unwrap_err();
    assert!(matches!(err, BlockError::TimestampTooNew { .. }));
    assert!(!err.is_peer_fault(), "a block from the future may become valid: not the peer's fault");
}

#[test]
fn wrong_target_height_or_parent_is_rejected() {
    let p = params();
    let parent = genesis_parent();
    let b = block_one(&[]);
    let now = b.header.timestamp_ms;
    let mut h = b.header;
    h.target = cairn_core::Target([0x0f; 32]);
    assert!(matches!(check_header_contextual(&h, &parent, &p, now), Err(BlockError::WrongTarget { .. })));
    let mut h = b.header;
    h.height = 2;
    assert!(matches!(check_header_contextual(&h, &parent, &p, now), Err(BlockError::WrongHeight { .. })));
    let mut h = b.header;
    h.prev = cairn_core::BlockHash([9; 32]);
    assert!(matches!(check_header_contextual(&h, &parent, &p, now), Err(BlockError::WrongParent { .. })));
}

#[test]
fn replayed_nonce_is_rejected() {
    let t = transfer(&key(0), 0, address_of(&key(1)), 500, 10);
    let b = block_one(&[t]);
    let mut state = easy_genesis().initial_state();
    let (changes, _) = apply_block(&state, &b, &params()).unwrap();
    cairn_core::state::commit_to_map(&mut state, &changes);
    // The same transfer again, in a later block: its nonce is spent.
    let err = apply_block(&state, &b, &params()).unwrap_err();
    assert_eq!(
        err,
        BlockError::Transfer { index: 1, error: TransferStateError::Nonce { expected: 1, got: 0 } }
    );
}

#[test]
fn amounts_near_u64_max_never_wrap() {
    // amount + fee overflows: rejected statelessly.
    let t = transfer(&key(0), 0, address_of(&key(1)), u64::MAX, 1);
    let b = block_one(&[t]);
    assert_eq!(
        check_block_stateless(&b, &params()),
        Err(BlockError::InvalidTransfer { index: 1, error: TxError::AmountOverflow })
    );
    // A sender who cannot afford u64::MAX - 1 is refused, not wrapped.
    let t = transfer(&key(0), 0, address_of(&key(1)), u64::MAX - 1, 1);
    let b = block_one(&[t]);
    let err = apply_block(&easy_genesis().initial_state(), &b, &params()).unwrap_err();
    assert!(matches!(
        err,
        BlockError::Transfer { error: TransferStateError::InsufficientBalance { .. }, .. }
    ));
    // A recipient whose balance would pass u64::MAX: overflow error.
    let mut state = easy_genesis().initial_state();
    let rich = address_of(&key(1));
    state.insert(rich, cairn_core::state::Account { balance: Amount(u64::MAX - 10), nonce: 0 });
    let t = transfer(&key(0), 0, rich, 11, 1);
    let b = block_one(&[t]);
    assert_eq!(apply_block(&state, &b, &params()).unwrap_err(), BlockError::BalanceOverflow { index: 1 });
}
