//! The transaction merkle tree.
//!
//! Leaves are `SHA-256(0x00 || txid)`, inner nodes `SHA-256(0x01 || left || right)`. A
//! level with an odd number of nodes promotes its last node unchanged to the next level;
//! nothing is ever duplicated, so (unlike Bitcoin's tree) two different transaction lists
//! can never share a root. The prefixes keep a leaf from being read as an inner node.

use crate::hash::{tag, tagged_hash, Txid};

fn leaf(txid: &Txid) -> [u8; 32] {
    tagged_hash(tag::MERKLE_LEAF, &[&txid.0])
}

fn node(left: &[u8; 32], right: &[u8; 32]) -> [u8; 32] {
    tagged_hash(tag::MERKLE_NODE, &[left, right])
}

fn next_level(level: &[[u8; 32]]) -> Vec<[u8; 32]> {
    level
        .chunks(2)
        .map(|pair| match pair {
            [l, r] => node(l, r),
            [only] => *only,
            _ => unreachable!("chunks(2) yields one or two items"),
        })
        .collect()
}

/// The merkle root of a list of txids. The root of an empty list is all zeros (a valid
/// block always has at least its coinbase).
pub fn merkle_root(txids: &[Txid]) -> [u8; 32] {
    if txids.is_empty() {
        return [0; 32];
    }
    let mut level: Vec<[u8; 32]> = txids.iter().map(leaf).collect();
    while level.len() > 1 {
        level = next_level(&level);
    }
    level[0]
}

/// Proof that the txid at `index` of a list of `leaf_count` txids is under a root.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MerkleProof {
    pub index: u32,
    pub leaf_count: u32,
    /// Sibling hashes from the leaf level upward; levels where the node was promoted
    /// have no sibling and no entry.
    #[serde(with = "hex_hashes")]
    pub siblings: Vec<[u8; 32]>,
}

/// Builds the proof for the transaction at `index`, or `None` if out of range.
pub fn merkle_proof(txids: &[Txid], index: usize) -> Option<MerkleProof> {
    if index >= txids.len() {
        return None;
    }
    let mut level: Vec<[u8; 32]> = txids.iter().map(leaf).collect();
    let mut idx = index;
    let mut siblings = Vec::new();
    while level.len() > 1 {
        let sib = idx ^ 1;
        if sib < level.len() {
            siblings.push(level[sib]);
        }
        level = next_level(&level);
        idx /= 2;
    }
    Some(MerkleProof {
        index: u32::try_from(index).ok()?,
        leaf_count: u32::try_from(txids.len()).ok()?,
        siblings,
    })
}

impl MerkleProof {
    /// Recomputes the root from `txid` and the proof; true when it equals `root`.
    pub fn verify(&self, txid: &Txid, root: &[u8; 32]) -> bool {
        if self.index >= self.leaf_count {
            return false;
        }
        let mut hash = leaf(txid);
        let mut idx = self.index as u64;
        let mut count = u64::from(self.leaf_count);
        let mut siblings = self.siblings.iter();
        while count > 1 {
            let promoted = idx == count - 1 && count % 2 == 1;
            if !promoted {
                let Some(sib) = siblings.next() else { return false };
                hash = if idx % 2 == 0 { node(&hash, sib) } else { node(sib, &hash) };
            }
            idx /= 2;
            count = count.div_ceil(2);
        }
        siblings.next().is_none() && &hash == root
    }
}

mod hex_hashes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[[u8; 32]], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(v.iter().map(hex::encode))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<[u8; 32]>, D::Error> {
        let v = Vec::<String>::deserialize(d)?;
        v.iter().map(|s| crate::hash::parse_hex32(s).map_err(serde::de::Error::custom)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: u8) -> Vec<Txid> {
        (0..n).map(|i| Txid([i; 32])).collect()
    }

    #[test]
    fn every_proof_verifies_for_every_size() {
        for n in 1..=17u8 {
            let txids = ids(n);
            let root = merkle_root(&txids);
            for i in 0..n as usize {
                let p = merkle_proof(&txids, i).unwrap();
                assert!(p.verify(&txids[i], &root), "n={n} i={i}");
                assert!(!p.verify(&Txid([0xee; 32]), &root));
                let mut wrong_index = p.clone();
                wrong_index.index = (wrong_index.index + 1) % u32::from(n);
                if n > 1 {
                    assert!(!wrong_index.verify(&txids[i], &root));
                }
            }
        }
    }

    #[test]
    fn duplicating_the_last_leaf_changes_the_root() {
        // CVE-2012-2459: in Bitcoin, [a, b, c] and [a, b, c, c] share a root.
        let three = ids(3);
        let mut four = three.clone();
        four.push(three[2]);
        assert_ne!(merkle_root(&three), merkle_root(&four));
    }

    #[test]
    fn a_leaf_is_not_an_inner_node() {
        let two = ids(2);
        let root = merkle_root(&two);
        // Presenting the root itself as a single "txid" must not give the same root.
        assert_ne!(merkle_root(&[Txid(root)]), root);
    }
}
