//! Block headers and blocks.

use crate::encoding;
use crate::hash::{BlockHash, Txid};
use crate::merkle;
use crate::pow::Target;
use crate::transaction::Transaction;
use sha2::{Digest, Sha256};

/// The only block version this implementation accepts.
pub const BLOCK_VERSION: u32 = 1;
/// Size of a header's canonical encoding.
pub const HEADER_LEN: usize = 124;
/// Byte offset of the nonce within the encoded header (it is the last field, so a miner
/// can hash the unchanging prefix once).
pub const HEADER_NONCE_OFFSET: usize = HEADER_LEN - 8;

/// A block header. Encoded as 124 bytes: version u32, height u64, prev 32 bytes,
/// merkle root 32 bytes, timestamp u64 (milliseconds since the Unix epoch), target 32
/// bytes (big-endian), nonce u64; integers little-endian.
#[derive(Clone, Copy, PartialEq, Eq, Debug, bincode::Encode, bincode::Decode)]
pub struct BlockHeader {
    pub version: u32,
    pub height: u64,
    pub prev: BlockHash,
    pub merkle_root: [u8; 32],
    pub timestamp_ms: u64,
    pub target: Target,
    pub nonce: u64,
}

impl BlockHeader {
    /// The canonical encoding, built without allocating.
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0..4].copy_from_slice(&self.version.to_le_bytes());
        b[4..12].copy_from_slice(&self.height.to_le_bytes());
        b[12..44].copy_from_slice(&self.prev.0);
        b[44..76].copy_from_slice(&self.merkle_root);
        b[76..84].copy_from_slice(&self.timestamp_ms.to_le_bytes());
        b[84..116].copy_from_slice(&self.target.0);
        b[116..124].copy_from_slice(&self.nonce.to_le_bytes());
        b
    }

    /// SHA-256 of the 124-byte encoding. This is both the block's id and its
    /// proof-of-work hash.
    pub fn hash(&self) -> BlockHash {
        BlockHash(Sha256::digest(self.to_bytes()).into())
    }

    /// True when the header's hash meets its own target.
    pub fn meets_own_target(&self) -> bool {
        self.target.is_met_by(&self.hash())
    }
}

/// A block: a header and its transactions, the first of which is the coinbase.
#[derive(Clone, PartialEq, Eq, Debug, bincode::Encode, bincode::Decode)]
pub struct Block {
    pub header: BlockHeader,
    pub transactions: Vec<Transaction>,
}

impl Block {
    pub fn hash(&self) -> BlockHash {
        self.header.hash()
    }

    pub fn txids(&self) -> Vec<Txid> {
        self.transactions.iter().map(Transaction::txid).collect()
    }

    /// The merkle root of this block's transactions as they are (not the header's).
    pub fn compute_merkle_root(&self) -> [u8; 32] {
        merkle::merkle_root(&self.txids())
    }

    pub fn encoded_len(&self) -> usize {
        encoding::encoded_len(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn to_bytes_matches_canonical_encoding() {
        let h = BlockHeader {
            version: 1,
            height: 0x0102030405060708,
            prev: BlockHash([0xaa; 32]),
            merkle_root: [0xbb; 32],
            timestamp_ms: 1_700_000_000_000,
            target: Target([0x0f; 32]),
            nonce: u64::MAX - 5,
        };
        let canonical = encoding::encode(&h);
        assert_eq!(canonical.len(), HEADER_LEN);
        assert_eq!(canonical, h.to_bytes().to_vec());
        assert_eq!(encoding::decode::<BlockHeader>(&canonical).unwrap(), h);
    }
}
