//! Receipts: checking, without trusting the node, that a transfer is in a block.
//!
//! From chain_getTxProof the wallet gets a header (124 bytes, hex) and a merkle proof.
//! It checks, itself: the header hashes to the claimed block hash at the claimed height;
//! the hash meets the header's own target (the proof of work); the merkle proof leads from
//! the txid to the header's merkle root. Then, with [`check_descendant`], that headers
//! fetched for the following heights link back to it by `prev` hash and each carries its
//! own proof of work, so a forger would have to mine all of them.
//!
//! What this cannot prove alone: that each target is the one the difficulty rules demand
//! (that needs the whole header chain and the genesis parameters). The output says so.

use cairn_api::{RpcBlock, RpcTxProof};
use cairn_core::block::HEADER_LEN;
use cairn_core::{encoding, BlockHash, BlockHeader, SignedTransfer, Txid};
use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ReceiptError {
    #[error("the proof is for txid {got}, not {expected}")]
    WrongTxid { expected: Txid, got: Txid },
    #[error("the header is not {HEADER_LEN} bytes of hex: {0}")]
    BadHeader(String),
    #[error("the header hashes to {computed}, but the node says the block is {claimed}")]
    HashMismatch { computed: BlockHash, claimed: BlockHash },
    #[error("the header is at height {header}, but the node says {claimed}")]
    HeightMismatch { header: u64, claimed: u64 },
    #[error("proof of work fails: block hash {hash} is above the header's target {target}")]
    InsufficientWork { hash: BlockHash, target: String },
    #[error("the merkle proof does not lead from txid {txid} to the header's merkle root {root}")]
    MerkleMismatch { txid: Txid, root: String },
    #[error("header at height {height} does not link back: its prev is {prev}, expected {expected}")]
    BrokenLink { height: u64, prev: BlockHash, expected: BlockHash },
    #[error("the transaction's contents do not hash to its txid {0}")]
    ContentMismatch(Txid),
}

/// What a proof established.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub block_hash: BlockHash,
    pub height: u64,
    pub header: BlockHeader,
    pub leaf_index: u32,
    pub leaf_count: u32,
}

/// Decodes a hex header and checks it hashes to `claimed`, sits at `height`, and meets
/// its own target.
fn checked_header(header_hex: &str, claimed: &BlockHash, height: u64) -> Result<BlockHeader, ReceiptError> {
    let bytes = hex::decode(header_hex).map_err(|e| ReceiptError::BadHeader(e.to_string()))?;
    if bytes.len() != HEADER_LEN {
        return Err(ReceiptError::BadHeader(format!("got {} bytes", bytes.len())));
    }
    let header: BlockHeader = encoding::decode(&bytes).map_err(|e| ReceiptError::BadHeader(e.to_string()))?;
    let computed = header.hash();
    if &computed != claimed {
        return Err(ReceiptError::HashMismatch { computed, claimed: *claimed });
    }
    if header.height != height {
        return Err(ReceiptError::HeightMismatch { header: header.height, claimed: height });
    }
    if !header.meets_own_target() {
        return Err(ReceiptError::InsufficientWork { hash: computed, target: header.target.to_hex() });
    }
    Ok(header)
}

/// Checks a proof from chain_getTxProof for `txid`.
pub fn verify_proof(txid: &Txid, proof: &RpcTxProof) -> Result<Verified, ReceiptError> {
    if &proof.txid != txid {
        return Err(ReceiptError::WrongTxid { expected: *txid, got: proof.txid });
    }
    let header = checked_header(&proof.header_hex, &proof.block_hash, proof.height)?;
    if !proof.proof.verify(txid, &header.merkle_root) {
        return Err(ReceiptError::MerkleMismatch { txid: *txid, root: hex::encode(header.merkle_root) });
    }
    Ok(Verified {
        block_hash: proof.block_hash,
        height: proof.height,
        header,
        leaf_index: proof.proof.index,
        leaf_count: proof.proof.leaf_count,
    })
}

/// Checks that `block` (fetched for the height after `parent`) links to `parent` and
/// carries valid proof of work; returns its hash, the parent of the next one.
pub fn check_descendant(parent: &BlockHash, block: &RpcBlock) -> Result<BlockHash, ReceiptError> {
    let header = checked_header(&block.header_hex, &block.hash, block.height)?;
    if &header.prev != parent {
        return Err(ReceiptError::BrokenLink { height: block.height, prev: header.prev, expected: *parent });
    }
    Ok(block.hash)
}

/// Checks that a transfer's canonical encoding (hex, as chain_getTransaction gives it)
/// hashes to `txid`, so the amounts and addresses shown are the ones the proof covers.
pub fn check_transfer_contents(txid: &Txid, hex_text: &str) -> Result<SignedTransfer, ReceiptError> {
    let bytes = hex::decode(hex_text).map_err(|_| ReceiptError::ContentMismatch(*txid))?;
    let st: SignedTransfer = encoding::decode(&bytes).map_err(|_| ReceiptError::ContentMismatch(*txid))?;
    if &st.txid() != txid {
        return Err(ReceiptError::ContentMismatch(*txid));
    }
    Ok(st)
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_core::assemble::grind;
    use cairn_core::merkle::{merkle_proof, merkle_root};
    use cairn_core::transaction::{public_key_of, signing_key_from_bytes};
    use cairn_core::{Address, Amount, Target, Transaction, Transfer};

    fn easy_target() -> Target {
        let mut t = [0xff; 32];
        t[0] = 0x0f;
        Target(t)
    }

    fn transfer(n: u64) -> SignedTransfer {
        let k = signing_key_from_bytes(&[3; 32]).unwrap();
        Transfer {
            chain_id: 1337,
            nonce: n,
            from: public_key_of(&k),
            to: Address([1; 20]),
            amount: Amount(5),
            fee: Amount(1),
        }
        .sign(&k)
        .unwrap()
    }

    fn mined(height: u64, prev: BlockHash, txids: &[Txid]) -> BlockHeader {
        let mut h = BlockHeader {
            version: 1,
            height,
            prev,
            merkle_root: merkle_root(txids),
            timestamp_ms: 1_767_225_600_000 + height,
            target: easy_target(),
            nonce: 0,
        };
        assert!(grind(&mut h, 1_000_000));
        h
    }

    fn sample() -> (Txid, RpcTxProof, BlockHeader) {
        let txs: Vec<Txid> = (0..5).map(|n| Transaction::Transfer(transfer(n)).txid()).collect();
        let header = mined(7, BlockHash([9; 32]), &txs);
        let proof = RpcTxProof {
            txid: txs[3],
            block_hash: header.hash(),
            height: 7,
            header_hex: hex::encode(header.to_bytes()),
            proof: merkle_proof(&txs, 3).unwrap(),
        };
        (txs[3], proof, header)
    }

    #[test]
    fn a_good_proof_verifies() {
        let (txid, proof, header) = sample();
        let v = verify_proof(&txid, &proof).unwrap();
        assert_eq!(v.header, header);
        assert_eq!((v.leaf_index, v.leaf_count), (3, 5));
    }

    #[test]
    fn each_forgery_is_caught() {
        let (txid, proof, header) = sample();

        let mut p = proof.clone();
        p.block_hash = BlockHash([1; 32]);
        assert!(matches!(verify_proof(&txid, &p), Err(ReceiptError::HashMismatch { .. })));

        let mut p = proof.clone();
        p.height = 8;
        assert!(matches!(verify_proof(&txid, &p), Err(ReceiptError::HeightMismatch { .. })));

        let mut p = proof.clone();
        p.proof.siblings[0][0] ^= 1;
        assert!(matches!(verify_proof(&txid, &p), Err(ReceiptError::MerkleMismatch { .. })));

        let other = Transaction::Transfer(transfer(99)).txid();
        let mut p = proof.clone();
        p.txid = other;
        assert!(matches!(verify_proof(&other, &p), Err(ReceiptError::MerkleMismatch { .. })));
        assert!(matches!(verify_proof(&txid, &p), Err(ReceiptError::WrongTxid { .. })));

        // A header whose hash misses its target: honest hash, no work.
        let mut lazy = header;
        lazy.target = Target([0; 32]);
        let mut p = proof.clone();
        p.header_hex = hex::encode(lazy.to_bytes());
        p.block_hash = lazy.hash();
        assert!(matches!(verify_proof(&txid, &p), Err(ReceiptError::InsufficientWork { .. })));

        let mut p = proof;
        p.header_hex.truncate(100);
        assert!(matches!(verify_proof(&txid, &p), Err(ReceiptError::BadHeader(_))));
    }

    fn rpc_block(h: &BlockHeader) -> RpcBlock {
        RpcBlock {
            hash: h.hash(),
            height: h.height,
            version: h.version,
            prev: h.prev,
            merkle_root: hex::encode(h.merkle_root),
            timestamp_ms: h.timestamp_ms,
            target: h.target.to_hex(),
            nonce: h.nonce,
            header_hex: hex::encode(h.to_bytes()),
            size: Some(0),
            confirmations: 1,
            status: "main".into(),
            invalid_reason: None,
            transactions: Some(vec![]),
        }
    }

    #[test]
    fn descendants_must_link_and_carry_work() {
        let (_, _, header) = sample();
        let child = mined(8, header.hash(), &[Txid([5; 32])]);
        assert_eq!(check_descendant(&header.hash(), &rpc_block(&child)), Ok(child.hash()));
        let stranger = mined(8, BlockHash([4; 32]), &[Txid([5; 32])]);
        assert!(matches!(
            check_descendant(&header.hash(), &rpc_block(&stranger)),
            Err(ReceiptError::BrokenLink { .. })
        ));
    }

    #[test]
    fn transfer_contents_must_hash_to_the_txid() {
        let st = transfer(1);
        let txid = st.txid();
        let hex_text = hex::encode(encoding::encode(&st));
        assert_eq!(check_transfer_contents(&txid, &hex_text), Ok(st));
        let mut other = st;
        other.transfer.amount = Amount(6);
        let forged = hex::encode(encoding::encode(&other));
        assert!(check_transfer_contents(&txid, &forged).is_err());
    }
}
