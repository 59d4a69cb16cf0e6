//! Decoded public keys shared by every check of a transfer outside a block
//! ([`crate::node::verify`]: `tx_submit`; [`verify_all`], in batches: transfers relayed
//! by peers, a compact block's fetched transfers).
//! Decompressing a sender's 33-byte key is a square root in the field, about a tenth of a
//! verification (docs/PERFORMANCE-LOG.md), and a busy sender (a faucet, an exchange, a
//! wallet under a script) sends many transfers with the same key. Block checks keep
//! their own per-block set ([`cairn_core::transaction::DecodedKeys`]).
//!
//! Bounded: [`SHARDS`] maps of at most [`PER_SHARD`] keys each; a full shard is emptied
//! and starts again, so keys an attacker sprays cost the decoding they would have cost
//! anyway and never grow memory. An entry is keyed by the exact compressed bytes it was
//! decoded from, and [`SignedTransfer::verify_with_key`] uses it only for those bytes, so
//! a cached key gives the same result and the same error as decoding it again.

use cairn_core::transaction::{DecodedKeys, PublicKeyBytes, SignedTransfer, TxError};
use k256::ecdsa::VerifyingKey;
use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};

pub const SHARDS: usize = 16;
pub const PER_SHARD: usize = 256;

type Shard = Mutex<HashMap<PublicKeyBytes, VerifyingKey>>;

static KEYS: LazyLock<[Shard; SHARDS]> = LazyLock::new(|| std::array::from_fn(|_| Mutex::default()));

fn shard(bytes: &PublicKeyBytes) -> &'static Shard {
    // Byte 0 is the parity prefix; byte 1 starts the x coordinate.
    &KEYS[usize::from(bytes[1]) % SHARDS]
}

/// The decoding of `bytes`, from the cache or decompressed now (and then cached). `None`
/// if the bytes are not a point on the curve (never cached).
pub fn decoded(bytes: &PublicKeyBytes) -> Option<(PublicKeyBytes, VerifyingKey)> {
    let shard = shard(bytes);
    // A poisoned map is still a map of correct decodings: take it.
    if let Some(key) = shard.lock().unwrap_or_else(|e| e.into_inner()).get(bytes) {
        return Some((*bytes, *key));
    }
    // Decompress outside the lock.
    let entry = DecodedKeys::decode(bytes)?;
    let mut map = shard.lock().unwrap_or_else(|e| e.into_inner());
    if map.len() >= PER_SHARD {
        map.clear();
    }
    map.insert(entry.0, entry.1);
    Some(entry)
}

/// [`SignedTransfer::verify`] with the sender's key from the cache.
pub fn verify(tx: &SignedTransfer, chain_id: u32) -> Result<(), TxError> {
    // A key that does not decode: `verify_with_key` decodes it again and says so.
    tx.verify_with_key(chain_id, decoded(&tx.transfer.from).as_ref())
}

/// [`verify`] of each of `txs`, in order, with the same results: the senders' keys from
/// the cache, the signature equations together
/// ([`cairn_core::transaction::verify_all_with_keys`]).
pub fn verify_all(txs: &[&SignedTransfer], chain_id: u32) -> Vec<Result<(), TxError>> {
    // Keys that do not decode are left out: the check decodes them again and says so.
    let keys: DecodedKeys = txs.iter().filter_map(|tx| decoded(&tx.transfer.from)).collect();
    cairn_core::transaction::verify_all_with_keys(txs, chain_id, &keys)
}

/// Keys held now, all shards together.
pub fn len() -> usize {
    KEYS.iter().map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).len()).sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_core::transaction::{public_key_of, Transfer};
    use cairn_core::{Address, Amount};
    use k256::ecdsa::SigningKey;

    fn signed(seed: u8, nonce: u64) -> (SigningKey, SignedTransfer) {
        let k = SigningKey::from_slice(&[seed.max(1); 32]).unwrap();
        let t = Transfer {
            chain_id: 7,
            nonce,
            from: public_key_of(&k),
            to: Address([9; 20]),
            amount: Amount(5),
            fee: Amount(1),
        };
        let st = t.sign(&k).unwrap();
        (k, st)
    }

    #[test]
    fn a_cached_key_gives_the_same_result_and_error_as_decoding_it() {
        let (_, good) = signed(1, 0);
        let (_, other) = signed(2, 0);
        // Twice each: the second time the key comes from the cache.
        for _ in 0..2 {
            let mut forged = good;
            forged.signature = other.signature;
            let mut tampered = good;
            tampered.transfer.amount = Amount(6);
            let mut garbage = good;
            garbage.transfer.from = [0xff; 33];
            let mut wrong_chain = good;
            wrong_chain.transfer.chain_id = 8;
            for st in [good, other, forged, tampered, garbage, wrong_chain] {
                assert_eq!(verify(&st, 7), st.verify(7));
            }
        }
        assert!(decoded(&public_key_of(&SigningKey::from_slice(&[1; 32]).unwrap())).is_some());
        assert!(decoded(&[0xff; 33]).is_none(), "bytes off the curve are not a key");
    }

    #[test]
    fn the_cache_never_holds_more_than_its_bound() {
        // Keys enough to fill every shard several times over (other tests in this
        // process add a few; the bound holds whatever they do).
        for seed in 0..(SHARDS * PER_SHARD * 3 / 2) {
            let mut bytes = [0u8; 32];
            bytes[..8].copy_from_slice(&(seed as u64 + 1000).to_be_bytes());
            bytes[31] = 1;
            let k = SigningKey::from_slice(&bytes).unwrap();
            assert!(decoded(&public_key_of(&k)).is_some());
            assert!(len() <= SHARDS * PER_SHARD);
        }
    }
}
