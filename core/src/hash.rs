//! SHA-256 with domain tags, and the hash newtypes.
//!
//! Every hash that means something different is computed under a different tag, so no
//! byte string can be read as two things (a txid can never pass for a merkle node).

use sha2::{Digest, Sha256};
use std::fmt;
use std::str::FromStr;

/// Domain tags. Each is hashed as a prefix, followed by the bytes it covers.
pub mod tag {
    pub const TXID: &[u8] = b"cairn/txid/v1";
    pub const SIGHASH: &[u8] = b"cairn/transfer-sighash/v1";
    pub const MERKLE_LEAF: &[u8] = &[0x00];
    pub const MERKLE_NODE: &[u8] = &[0x01];
    pub const ADDRESS_CHECKSUM: &[u8] = b"cairn/address-checksum/v1";
    pub const GENESIS: &[u8] = b"cairn/genesis/v1";
}

/// SHA-256 of `tag || parts[0] || parts[1] || ...`.
pub fn tagged_hash(tag: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(tag);
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

/// Plain SHA-256.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

macro_rules! hash_newtype {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default,
                 bincode::Encode, bincode::Decode)]
        pub struct $name(pub [u8; 32]);

        impl $name {
            pub const ZERO: Self = Self([0; 32]);
            pub fn to_hex(&self) -> String {
                hex::encode(self.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&hex::encode(self.0))
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), hex::encode(self.0))
            }
        }

        impl FromStr for $name {
            type Err = HexError;
            fn from_str(s: &str) -> Result<Self, HexError> {
                parse_hex32(s).map(Self)
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.to_hex())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

hash_newtype!(
    /// The hash of a block header: SHA-256 of its 124-byte canonical encoding.
    BlockHash
);
hash_newtype!(
    /// A transaction id: tagged SHA-256 of the canonical encoding of the signed transaction.
    Txid
);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HexError {
    #[error("expected {expected} hex characters, got {got}")]
    Length { expected: usize, got: usize },
    #[error("invalid hex: {0}")]
    Invalid(String),
}

/// Parses 64 hex characters (either case, no prefix) into 32 bytes.
pub fn parse_hex32(s: &str) -> Result<[u8; 32], HexError> {
    let s = s.strip_prefix("0x").unwrap_or(s);
    if s.len() != 64 {
        return Err(HexError::Length { expected: 64, got: s.len() });
    }
    let mut out = [0u8; 32];
    hex::decode_to_slice(s, &mut out).map_err(|e| HexError::Invalid(e.to_string()))?;
    Ok(out)
}
