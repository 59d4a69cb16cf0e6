//! The canonical binary encoding.
//!
//! Everything that is hashed, signed, stored or sent goes through [`encode`] and
//! [`decode`], so the format can be swapped in one place. The format is bincode 2 with
//! fixed-width little-endian integers: `u32`/`u64` take 4/8 bytes, a `Vec` is a `u64`
//! length followed by its items, an enum is a `u32` variant index followed by its fields,
//! a fixed array `[u8; N]` is its N bytes with no prefix.
//!
//! Decoding is strict: the declared length of every container is checked against
//! [`MAX_DECODE_BYTES`] before anything is allocated, and bytes left over after the value
//! are an error, so `encode(decode(b)) == b` for every `b` that decodes.

use bincode::config::{Configuration, Fixint, Limit, LittleEndian};
use thiserror::Error;

/// The most bytes a single decode may claim (and so allocate), whatever a length prefix
/// says. It is above every message and block size limit.
pub const MAX_DECODE_BYTES: usize = 8 * 1024 * 1024;

type Config = Configuration<LittleEndian, Fixint, Limit<MAX_DECODE_BYTES>>;

const CONFIG: Config = bincode::config::standard()
    .with_little_endian()
    .with_fixed_int_encoding()
    .with_limit::<MAX_DECODE_BYTES>();

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum DecodeError {
    #[error("malformed encoding: {0}")]
    Malformed(String),
    #[error("{0} trailing bytes after the value")]
    TrailingBytes(usize),
}

/// Encodes a value canonically.
pub fn encode<T: bincode::Encode>(value: &T) -> Vec<u8> {
    // Encoding into a Vec only fails when the size limit is exceeded, which the types
    // in this crate cannot reach when they were built within the consensus limits; a
    // value past it is a programming error upstream.
    bincode::encode_to_vec(value, CONFIG).expect("value exceeds the canonical encoding limit")
}

/// The length of the canonical encoding without building it.
pub fn encoded_len<T: bincode::Encode>(value: &T) -> usize {
    let mut writer = bincode::enc::write::SizeWriter::default();
    bincode::encode_into_writer(value, &mut writer, CONFIG)
        .expect("value exceeds the canonical encoding limit");
    writer.bytes_written
}

/// Bytes of stack buffer [`with_encoded`] tries before it allocates: a transaction
/// (149 bytes as a transfer) and a transfer (81) fit.
const STACK_ENCODING_BYTES: usize = 256;

/// Calls `f` with the canonical encoding of `value` (the bytes [`encode`] returns),
/// built in a buffer on the stack when it fits in 256 bytes and in a `Vec` otherwise:
/// hashing a transaction's encoding (its txid, a transfer's signing hash) then
/// allocates nothing.
pub fn with_encoded<T: bincode::Encode, R>(value: &T, f: impl FnOnce(&[u8]) -> R) -> R {
    let mut buf = [0u8; STACK_ENCODING_BYTES];
    match bincode::encode_into_slice(value, &mut buf[..], CONFIG) {
        Ok(n) => f(&buf[..n]),
        // Too long for the buffer (the only way encoding into a slice fails here).
        Err(_) => f(&encode(value)),
    }
}

/// Decodes exactly one value from `bytes`; leftover bytes are an error.
pub fn decode<T: bincode::Decode<()>>(bytes: &[u8]) -> Result<T, DecodeError> {
    let (value, used) = bincode::decode_from_slice::<T, _>(bytes, CONFIG)
        .map_err(|e| DecodeError::Malformed(e.to_string()))?;
    if used != bytes.len() {
        return Err(DecodeError::TrailingBytes(bytes.len() - used));
    }
    Ok(value)
}
