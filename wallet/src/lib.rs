//! cairn-wallet: the Cairn command-line wallet.
//!
//! A short tour:
//! - [`keystore`]: one encrypted file per key (scrypt + ChaCha20-Poly1305), written
//!   atomically with private modes; the only code that touches private keys on disk.
//! - [`password`]: where a password comes from (file, environment, or a no-echo prompt).
//! - [`rpc`]: the JSON-RPC client and the translation of its errors into sentences.
//! - [`receipt`]: checks a confirmed transfer's merkle proof, header hash and proof of
//!   work locally, trusting the node for nothing it can prove.
//! - [`nonces`]: the per-address lock and record that give parallel and back-to-back
//!   sends consecutive nonces.
//! - [`amount`]: amounts as people read and type them.
//! - [`cli`]: the command line and each subcommand.
//!
//! Signing and verification use cairn-core, the same code the node validates with; the
//! wallet talks to a node only through JSON-RPC.

pub mod amount;
pub mod cli;
pub mod keystore;
pub mod nonces;
pub mod password;
pub mod receipt;
pub mod rpc;
