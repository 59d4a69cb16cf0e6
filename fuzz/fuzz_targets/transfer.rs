//! Transfer decoding and verification (core/src/transaction.rs): a decoded transfer
//! re-encodes to the same bytes, and verifying it (signature, public key, amounts)
//! never panics.
#![no_main]

use cairn_core::encoding::{decode, encode};
use cairn_core::transaction::{SignedTransfer, Transaction};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(t) = decode::<SignedTransfer>(data) {
        assert_eq!(encode(&t), data);
        // Its own chain id, so verification gets past the chain check to the key and
        // signature; and another, which must fail.
        let ok = t.verify(t.transfer.chain_id).is_ok();
        assert!(t.verify(t.transfer.chain_id.wrapping_add(1)).is_err());
        let _ = (t.txid(), t.transfer.sender(), t.transfer.total_cost(), ok);
    }
    if let Ok(tx) = decode::<Transaction>(data) {
        assert_eq!(encode(&tx), data);
        let _ = tx.txid();
    }
});
