//! Proof of work: 256-bit targets and the work they represent.
//!
//! A header is valid work when its hash, read as a 256-bit big-endian integer, is at most
//! the header's target. The work of a target is the expected number of hashes to meet it,
//! `floor(2^256 / (target + 1))`; fork choice compares sums of work, never heights.

use crate::hash::BlockHash;
use primitive_types::U256;
use std::fmt;
use std::str::FromStr;

/// A 256-bit target, stored big-endian so that byte order matches hash comparison.
#[derive(Clone, Copy, PartialEq, Eq, Hash, bincode::Encode, bincode::Decode)]
pub struct Target(pub [u8; 32]);

impl Target {
    pub fn from_u256(v: U256) -> Self {
        Target(v.to_big_endian())
    }
    pub fn to_u256(&self) -> U256 {
        U256::from_big_endian(&self.0)
    }
    /// True when `hash` meets this target.
    pub fn is_met_by(&self, hash: &BlockHash) -> bool {
        // Both are big-endian 256-bit numbers, so byte-wise comparison is numeric.
        hash.0 <= self.0
    }
    /// The expected number of hashes to find a header meeting this target.
    pub fn work(&self) -> Work {
        let t = self.to_u256();
        if t == U256::MAX {
            return Work(U256::one());
        }
        // 2^256 / (t + 1) computed without 2^256: (2^256 - t - 1) / (t + 1) + 1, saturating
        // at 2^256 - 1 for the zero target.
        Work(((!t) / (t + U256::one())).saturating_add(U256::one()))
    }
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Target({})", self.to_hex())
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl FromStr for Target {
    type Err = crate::hash::HexError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        crate::hash::parse_hex32(s).map(Target)
    }
}

impl serde::Serialize for Target {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> serde::Deserialize<'de> for Target {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Accumulated proof of work: a 256-bit count of expected hashes.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Work(pub U256);

impl Work {
    pub const ZERO: Work = Work(U256::zero());

    /// Saturating: cumulative work cannot reach 2^256 in practice, and saturating keeps
    /// comparisons meaningful if it ever did.
    pub fn saturating_add(self, rhs: Work) -> Work {
        Work(self.0.saturating_add(rhs.0))
    }
    pub fn to_be_bytes(&self) -> [u8; 32] {
        self.0.to_big_endian()
    }
    pub fn from_be_bytes(b: &[u8; 32]) -> Work {
        Work(U256::from_big_endian(b))
    }
    /// Lowercase hex without leading zeros (at least one digit), as RPC shows it.
    pub fn to_hex(&self) -> String {
        format!("{:x}", self.0)
    }
}

impl fmt::Debug for Work {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Work(0x{:x})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn work_of_simple_targets() {
        // target = 2^255 - 1 means half of all hashes qualify: work 2.
        let t = Target::from_u256((U256::one() << 255) - 1);
        assert_eq!(t.work().0, U256::from(2));
        // target = 2^240 - 1: 2^16 hashes on average.
        let t = Target::from_u256((U256::one() << 240) - 1);
        assert_eq!(t.work().0, U256::from(65536));
        assert_eq!(Target([0xff; 32]).work().0, U256::one());
        assert_eq!(Target([0; 32]).work().0, U256::MAX);
    }

    #[test]
    fn lower_target_means_more_work() {
        let easy = Target::from_u256(U256::one() << 250);
        let hard = Target::from_u256(U256::one() << 240);
        assert!(hard.work() > easy.work());
    }

    #[test]
    fn hash_comparison_is_numeric() {
        let t = Target::from_u256(U256::from(0x1000u64));
        let mut h = [0u8; 32];
        h[30] = 0x10; // 0x1000
        assert!(t.is_met_by(&BlockHash(h)));
        h[31] = 1; // 0x1001
        assert!(!t.is_met_by(&BlockHash(h)));
    }
}
