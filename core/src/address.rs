//! Account addresses and their checksummed text form.
//!
//! An address is the first 20 bytes of SHA-256 of the 33-byte compressed secp256k1
//! public key. Its text form is 48 lowercase hex characters: the 20 address bytes then a
//! 4-byte checksum, the first 4 bytes of `SHA-256("cairn/address-checksum/v1" || address)`.
//! Parsing accepts either case and rejects a wrong length, non-hex, or a checksum that
//! does not match, so a mistyped address is caught with probability 1 - 2^-32.

use crate::hash::{sha256, tag, tagged_hash};
use std::fmt;
use std::str::FromStr;
use thiserror::Error;

pub const ADDRESS_LEN: usize = 20;
const CHECKSUM_LEN: usize = 4;
/// Characters in the text form.
pub const ADDRESS_TEXT_LEN: usize = 2 * (ADDRESS_LEN + CHECKSUM_LEN);

/// Ordered as its bytes are, lexicographically (see the `Ord` impl).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, bincode::Encode, bincode::Decode)]
pub struct Address(pub [u8; ADDRESS_LEN]);

impl Ord for Address {
    /// The bytes' lexicographic order, compared as two big-endian integers (16 bytes,
    /// then 4) rather than through `memcmp`: the same order, several times cheaper in
    /// the sorts and ordered maps that key on addresses (a block's accounts).
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        let split = |a: &[u8; ADDRESS_LEN]| {
            let (hi, lo) = a.split_at(16);
            (
                u128::from_be_bytes(hi.try_into().expect("16 bytes")),
                u32::from_be_bytes(lo.try_into().expect("4 bytes")),
            )
        };
        split(&self.0).cmp(&split(&other.0))
    }
}

impl PartialOrd for Address {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AddressError {
    #[error("an address is {ADDRESS_TEXT_LEN} hex characters, got {0}")]
    Length(usize),
    #[error("an address must be hexadecimal")]
    NotHex,
    #[error("address checksum mismatch (mistyped address?)")]
    Checksum,
}

impl Address {
    /// The address of a compressed SEC1 public key.
    pub fn from_public_key(compressed: &[u8; 33]) -> Self {
        let digest = sha256(compressed);
        let mut a = [0u8; ADDRESS_LEN];
        a.copy_from_slice(&digest[..ADDRESS_LEN]);
        Address(a)
    }

    fn checksum(&self) -> [u8; CHECKSUM_LEN] {
        let h = tagged_hash(tag::ADDRESS_CHECKSUM, &[&self.0]);
        [h[0], h[1], h[2], h[3]]
    }

    /// The checksummed text form.
    pub fn to_text(&self) -> String {
        let mut bytes = [0u8; ADDRESS_LEN + CHECKSUM_LEN];
        bytes[..ADDRESS_LEN].copy_from_slice(&self.0);
        bytes[ADDRESS_LEN..].copy_from_slice(&self.checksum());
        hex::encode(bytes)
    }
}

impl FromStr for Address {
    type Err = AddressError;
    fn from_str(s: &str) -> Result<Self, AddressError> {
        let s = s.trim();
        if s.len() != ADDRESS_TEXT_LEN {
            return Err(AddressError::Length(s.len()));
        }
        let mut bytes = [0u8; ADDRESS_LEN + CHECKSUM_LEN];
        hex::decode_to_slice(s, &mut bytes).map_err(|_| AddressError::NotHex)?;
        let mut a = [0u8; ADDRESS_LEN];
        a.copy_from_slice(&bytes[..ADDRESS_LEN]);
        let addr = Address(a);
        if addr.checksum() != bytes[ADDRESS_LEN..] {
            return Err(AddressError::Checksum);
        }
        Ok(addr)
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_text())
    }
}

impl fmt::Debug for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Address({})", self.to_text())
    }
}

impl serde::Serialize for Address {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_text())
    }
}

impl<'de> serde::Deserialize<'de> for Address {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The integer comparison is the bytes' order: every pair among addresses that
    /// differ from a base at each position (both halves, the split between them) by the
    /// edge values 0x00, 0x01, 0x7f, 0x80, 0xfe, 0xff.
    #[test]
    fn order_is_the_bytes_order() {
        let mut all = vec![Address([0; 20]), Address([0xff; 20])];
        for base in [0x00u8, 0x80, 0xff] {
            for pos in 0..ADDRESS_LEN {
                for v in [0x00u8, 0x01, 0x7f, 0x80, 0xfe, 0xff] {
                    let mut b = [base; ADDRESS_LEN];
                    b[pos] = v;
                    all.push(Address(b));
                }
            }
        }
        for a in &all {
            for b in &all {
                assert_eq!(a.cmp(b), a.0.cmp(&b.0), "{a:?} vs {b:?}");
                assert_eq!(a.partial_cmp(b), Some(a.0.cmp(&b.0)));
            }
        }
    }

    #[test]
    fn text_round_trip_and_case_insensitive() {
        let a = Address([7u8; 20]);
        let t = a.to_text();
        assert_eq!(t.len(), ADDRESS_TEXT_LEN);
        assert_eq!(t.parse::<Address>().unwrap(), a);
        assert_eq!(t.to_uppercase().parse::<Address>().unwrap(), a);
    }

    #[test]
    fn every_single_character_typo_is_caught() {
        let a = Address([0x3c; 20]);
        let t = a.to_text();
        for i in 0..t.len() {
            for c in "0123456789abcdef".chars() {
                let mut chars: Vec<char> = t.chars().collect();
                if chars[i] == c {
                    continue;
                }
                chars[i] = c;
                let typo: String = chars.into_iter().collect();
                assert!(typo.parse::<Address>().is_err(), "typo at {i} accepted: {typo}");
            }
        }
    }

    #[test]
    fn bad_lengths_and_non_hex_are_rejected() {
        assert_eq!("abc".parse::<Address>(), Err(AddressError::Length(3)));
        let bad = "z".repeat(ADDRESS_TEXT_LEN);
        assert_eq!(bad.parse::<Address>(), Err(AddressError::NotHex));
    }
}
