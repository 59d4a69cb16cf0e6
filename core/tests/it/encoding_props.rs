//! The canonical encoding: round trips, strictness and bounded allocation.

use cairn_core::block::{Block, BlockHeader};
use cairn_core::encoding::{decode, encode, with_encoded, DecodeError};
use cairn_core::transaction::{Coinbase, SignedTransfer, Transaction, Transfer};
use cairn_core::{Address, Amount, BlockHash, Target};
use proptest::prelude::*;

fn arb_transfer() -> impl Strategy<Value = SignedTransfer> {
    (
        any::<u32>(),
        any::<u64>(),
        any::<[u8; 32]>(),
        any::<[u8; 20]>(),
        any::<u64>(),
        any::<u64>(),
        any::<[u8; 32]>(),
        any::<[u8; 32]>(),
    )
        .prop_map(|(chain_id, nonce, pk, to, amount, fee, r, s)| {
            let mut from = [2u8; 33];
            from[1..].copy_from_slice(&pk);
            let mut signature = [0u8; 64];
            signature[..32].copy_from_slice(&r);
            signature[32..].copy_from_slice(&s);
            SignedTransfer {
                transfer: Transfer {
                    chain_id,
                    nonce,
                    from,
                    to: Address(to),
                    amount: Amount(amount),
                    fee: Amount(fee),
                },
                signature,
            }
        })
}

fn arb_block() -> impl Strategy<Value = Block> {
    (
        any::<u64>(),
        any::<[u8; 32]>(),
        any::<u64>(),
        any::<u64>(),
        proptest::collection::vec(arb_transfer(), 0..8),
    )
        .prop_map(|(height, prev, ts, nonce, transfers)| {
            let mut transactions =
                vec![Transaction::Coinbase(Coinbase { height, to: Address([1; 20]), amount: Amount(5) })];
            transactions.extend(transfers.into_iter().map(Transaction::Transfer));
            Block {
                header: BlockHeader {
                    version: 1,
                    height,
                    prev: BlockHash(prev),
                    merkle_root: [3; 32],
                    timestamp_ms: ts,
                    target: Target([0xff; 32]),
                    nonce,
                },
                transactions,
            }
        })
}

proptest! {
    /// The stack-buffer encoding that txids and signing hashes are hashed from is the
    /// canonical one, for values that fit the buffer (transactions, transfers) and for
    /// those that do not (most blocks, which take the `Vec` path).
    #[test]
    fn with_encoded_sees_the_canonical_bytes(block in arb_block()) {
        prop_assert_eq!(with_encoded(&block, <[u8]>::to_vec), encode(&block));
        for tx in &block.transactions {
            prop_assert_eq!(with_encoded(tx, <[u8]>::to_vec), encode(tx));
            if let Some(st) = tx.as_transfer() {
                prop_assert_eq!(with_encoded(&st.transfer, <[u8]>::to_vec), encode(&st.transfer));
            }
        }
    }

    #[test]
    fn block_round_trips(block in arb_block()) {
        let bytes = encode(&block);
        let back: Block = decode(&bytes).unwrap();
        prop_assert_eq!(&back, &block);
        prop_assert_eq!(encode(&back), bytes);
        prop_assert_eq!(block.encoded_len(), encode(&block).len());
    }

    #[test]
    fn decode_then_encode_is_identity_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        if let Ok(tx) = decode::<Transaction>(&bytes) {
            prop_assert_eq!(encode(&tx), bytes.clone());
        }
        if let Ok(b) = decode::<Block>(&bytes) {
            prop_assert_eq!(encode(&b), bytes);
        }
    }

    #[test]
    fn mutated_encodings_never_panic(block in arb_block(), flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8)) {
        let mut bytes = encode(&block);
        for (i, x) in flips {
            let n = bytes.len();
            bytes[i % n] ^= x;
        }
        if let Ok(b) = decode::<Block>(&bytes) {
            prop_assert_eq!(encode(&b), bytes);
        }
    }
}

#[test]
fn trailing_bytes_are_rejected() {
    let mut bytes = encode(&Address([1; 20]));
    bytes.push(0);
    assert_eq!(decode::<Address>(&bytes), Err(DecodeError::TrailingBytes(1)));
}

#[test]
fn truncated_input_is_an_error() {
    let bytes = encode(&Address([1; 20]));
    assert!(decode::<Address>(&bytes[..19]).is_err());
}

#[test]
fn huge_length_prefix_is_rejected_before_allocating() {
    // A block header followed by a transaction count of 2^62: decoding must fail on the
    // limit check, not try to reserve the memory.
    let header = encode(&BlockHeader {
        version: 1,
        height: 0,
        prev: BlockHash::ZERO,
        merkle_root: [0; 32],
        timestamp_ms: 0,
        target: Target([0; 32]),
        nonce: 0,
    });
    let mut bytes = header;
    bytes.extend_from_slice(&(1u64 << 62).to_le_bytes());
    let err = decode::<Block>(&bytes).unwrap_err();
    assert!(matches!(err, DecodeError::Malformed(_)), "{err:?}");
}

#[test]
fn unknown_enum_variant_is_rejected() {
    let mut bytes =
        encode(&Transaction::Coinbase(Coinbase { height: 1, to: Address([0; 20]), amount: Amount(1) }));
    bytes[0] = 7;
    assert!(decode::<Transaction>(&bytes).is_err());
}
