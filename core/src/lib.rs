//! cairn-core: everything two Cairn nodes must agree on, and nothing else.
//!
//! A short tour, bottom-up: each module imports only modules listed before it (unit
//! tests aside), so the imports form no cycle.
//! - [`encoding`]: the one canonical binary encoding (bincode 2, fixed-width little-endian
//!   integers, bounded lengths, trailing bytes rejected) for all that is hashed, signed,
//!   stored or sent.
//! - [`hash`]: SHA-256 with domain tags, and the [`BlockHash`] / [`Txid`] newtypes.
//! - [`address`]: 20-byte account addresses and their checksummed text form.
//! - [`amount`]: [`Amount`], a `u64` of base units with checked arithmetic only.
//! - [`pow`]: 256-bit [`Target`] and [`Work`], and the proof-of-work check.
//! - [`params`]: [`ChainParams`], every consensus parameter of a chain.
//! - [`ecmult`]: `a·G + b·Q` in variable time on k256's point arithmetic, with G's window
//!   tables built once (the bulk of a signature check).
//! - [`ecdsa`]: the ECDSA signature equation on k256's arithmetic, one signature or many
//!   at once.
//! - [`transaction`]: transfers, their signing hash, low-S ECDSA signatures, coinbases.
//! - [`merkle`]: the domain-separated transaction merkle tree and inclusion proofs.
//! - [`block`]: headers, blocks and the header hash.
//! - [`difficulty`]: the ASERT per-block target schedule and median-time-past.
//! - [`state`]: accounts, the [`state::AccountSource`] trait, a block's changes and undo
//!   data.
//! - [`validation`]: stateless and contextual block checks, the state transition
//!   [`validation::apply_block`], and their error enums.
//! - [`genesis`]: genesis.json, the genesis block, the built-in dev chain and dev keys.
//! - [`assemble`]: block templates and a plain nonce search for tests and tools.
//!
//! **Invariant:** this crate does no I/O: no sockets, no disk, no clock, no threads.
//! Callers pass the current time in where a rule needs it.

pub mod address;
pub mod amount;
pub mod assemble;
pub mod block;
pub mod difficulty;
pub mod ecdsa;
pub mod ecmult;
pub mod encoding;
pub mod genesis;
pub mod hash;
pub mod merkle;
pub mod params;
pub mod pow;
pub mod state;
pub mod transaction;
pub mod validation;

pub use address::Address;
pub use amount::Amount;
pub use block::{Block, BlockHeader};
pub use genesis::Genesis;
pub use hash::{BlockHash, Txid};
pub use params::ChainParams;
pub use pow::{Target, Work};
pub use transaction::{Coinbase, SignedTransfer, Transaction, Transfer};
