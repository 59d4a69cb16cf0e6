//! Genesis: the chain's name, parameters ([`ChainParams`], defined in [`crate::params`]),
//! its initial allocations and its first block.
//!
//! A chain is defined by its genesis file (`genesis.json`, see docs/CONSENSUS.md). The
//! genesis block has no transactions: its merkle-root field holds
//! `SHA-256("cairn/genesis/v1" || encode(GenesisCommitment))`, a commitment to every
//! parameter and allocation, so the genesis hash changes if anything in the file does.
//! Nodes compare genesis hashes in the P2P handshake.

use crate::address::Address;
use crate::amount::Amount;
use crate::block::{Block, BlockHeader, BLOCK_VERSION};
use crate::encoding::{self, MAX_DECODE_BYTES};
use crate::hash::{sha256, tag, tagged_hash, BlockHash};
use crate::params::ChainParams;
use crate::pow::Target;
use crate::state::Account;
use crate::transaction::{address_of, signing_key_from_bytes};
use k256::ecdsa::SigningKey;
use std::collections::{HashMap, HashSet};
use thiserror::Error;

/// An initial balance.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, bincode::Encode, bincode::Decode,
)]
#[serde(deny_unknown_fields)]
pub struct Allocation {
    pub address: Address,
    pub balance: Amount,
}

/// The contents of genesis.json.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Genesis {
    /// A human name for the chain; committed to like everything else.
    pub name: String,
    #[serde(flatten)]
    pub params: ChainParams,
    pub allocations: Vec<Allocation>,
    /// Seed host names (`"host:port"`) a node with no `--peer` resolves to find the
    /// network. Not committed to: the list can change without forking the chain.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub seeds: Vec<String>,
}

/// What the genesis block commits to.
#[derive(bincode::Encode)]
struct GenesisCommitment<'a> {
    name: &'a [u8],
    params: &'a ChainParams,
    allocations: &'a [Allocation],
}

#[derive(Debug, Error)]
pub enum GenesisError {
    #[error("genesis file is not valid: {0}")]
    Parse(#[from] serde_json::Error),
    #[error("genesis parameter {field} is invalid: {reason}")]
    BadValue { field: &'static str, reason: String },
    #[error("address {0} is allocated twice")]
    DuplicateAllocation(Address),
    #[error("allocations sum past the largest amount")]
    AllocationOverflow,
}

/// Largest `max_block_bytes` a genesis may set: blocks must fit a decode and a frame.
pub const MAX_BLOCK_BYTES_LIMIT: u32 = (MAX_DECODE_BYTES / 2) as u32;

impl Genesis {
    /// Parses and checks a genesis file's JSON text.
    pub fn from_json(text: &str) -> Result<Genesis, GenesisError> {
        let g: Genesis = serde_json::from_str(text)?;
        g.check()?;
        Ok(g)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("genesis serializes")
    }

    /// Checks the parameters make a workable chain.
    pub fn check(&self) -> Result<(), GenesisError> {
        let p = &self.params;
        let bad = |field, reason: &str| Err(GenesisError::BadValue { field, reason: reason.to_string() });
        if self.name.len() > 64 {
            return bad("name", "at most 64 bytes");
        }
        if p.initial_target.to_u256().is_zero() {
            return bad("initial_target", "must be non-zero");
        }
        if p.pow_limit.to_u256() < p.initial_target.to_u256() {
            return bad("pow_limit", "must be at least initial_target");
        }
        if p.target_block_time_ms == 0 {
            return bad("target_block_time_ms", "must be positive");
        }
        if p.half_life_ms < p.target_block_time_ms {
            return bad("half_life_ms", "must be at least target_block_time_ms");
        }
        if p.max_block_bytes < 1024 || p.max_block_bytes > MAX_BLOCK_BYTES_LIMIT {
            return bad("max_block_bytes", "must be between 1024 and 4194304");
        }
        if p.median_time_blocks == 0 || p.median_time_blocks > 101 {
            return bad("median_time_blocks", "must be between 1 and 101");
        }
        if self.seeds.len() > 64 {
            return bad("seeds", "at most 64 entries");
        }
        for s in &self.seeds {
            let ok = s.len() <= 255
                && s.rsplit_once(':')
                    .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
            if !ok {
                return Err(GenesisError::BadValue {
                    field: "seeds",
                    reason: format!("{s:?} is not HOST:PORT (at most 255 bytes)"),
                });
            }
        }
        let mut seen = HashSet::new();
        let mut total = Amount::ZERO;
        for a in &self.allocations {
            if !seen.insert(a.address) {
                return Err(GenesisError::DuplicateAllocation(a.address));
            }
            total = total.checked_add(a.balance).ok_or(GenesisError::AllocationOverflow)?;
        }
        Ok(())
    }

    /// The genesis block (height 0, no transactions, never mined).
    pub fn block(&self) -> Block {
        let commitment = GenesisCommitment {
            name: self.name.as_bytes(),
            params: &self.params,
            allocations: &self.allocations,
        };
        let header = BlockHeader {
            version: BLOCK_VERSION,
            height: 0,
            prev: BlockHash::ZERO,
            merkle_root: tagged_hash(tag::GENESIS, &[&encoding::encode(&commitment)]),
            timestamp_ms: self.params.timestamp_ms,
            target: self.params.initial_target,
            nonce: 0,
        };
        Block { header, transactions: Vec::new() }
    }

    pub fn hash(&self) -> BlockHash {
        self.block().hash()
    }

    /// The state at height 0.
    pub fn initial_state(&self) -> HashMap<Address, Account> {
        self.allocations.iter().map(|a| (a.address, Account { balance: a.balance, nonce: 0 })).collect()
    }

    /// The built-in development chain: 1 s blocks, a very low difficulty, and the 10
    /// dev accounts funded with [`DEV_BALANCE`] each.
    pub fn dev() -> Genesis {
        Genesis {
            name: "cairn-dev".to_string(),
            params: ChainParams {
                chain_id: DEV_CHAIN_ID,
                timestamp_ms: 1_767_225_600_000, // 2026-01-01T00:00:00Z
                initial_target: hex_target(
                    "00000fffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
                ),
                pow_limit: hex_target("7fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff"),
                target_block_time_ms: 1_000,
                half_life_ms: 10_000,
                block_reward: Amount(5_000_000_000),
                max_block_bytes: 1_000_000,
                median_time_blocks: 11,
                max_future_drift_ms: 15_000,
            },
            allocations: dev_keys()
                .iter()
                .map(|k| Allocation { address: address_of(k), balance: DEV_BALANCE })
                .collect(),
            seeds: Vec::new(),
        }
    }
}

fn hex_target(s: &str) -> Target {
    s.parse().expect("built-in target is valid hex")
}

/// Chain id of the built-in dev chain.
pub const DEV_CHAIN_ID: u32 = 1337;
/// Number of dev accounts.
pub const DEV_ACCOUNTS: usize = 10;
/// Initial balance of each dev account.
pub const DEV_BALANCE: Amount = Amount(1_000_000_000_000_000);

/// Private key of dev account `i`: SHA-256 of the ASCII text `cairn dev account i`.
pub fn dev_key_bytes(i: usize) -> [u8; 32] {
    sha256(format!("cairn dev account {i}").as_bytes())
}

/// The ten dev signing keys.
pub fn dev_keys() -> Vec<SigningKey> {
    (0..DEV_ACCOUNTS)
        .map(|i| {
            signing_key_from_bytes(&dev_key_bytes(i)).expect("a SHA-256 output is a valid secp256k1 key")
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_genesis_is_valid_and_round_trips_through_json() {
        let g = Genesis::dev();
        g.check().unwrap();
        let back = Genesis::from_json(&g.to_json()).unwrap();
        assert_eq!(back, g);
        assert_eq!(back.hash(), g.hash());
    }

    #[test]
    fn any_change_changes_the_genesis_hash() {
        let g = Genesis::dev();
        let mut other = g.clone();
        other.params.block_reward = Amount(1);
        assert_ne!(other.hash(), g.hash());
        let mut other = g.clone();
        other.allocations[3].balance = Amount(1);
        assert_ne!(other.hash(), g.hash());
    }

    #[test]
    fn seeds_are_read_checked_and_not_committed_to() {
        let g = Genesis::dev();
        let mut v: serde_json::Value = serde_json::from_str(&g.to_json()).unwrap();
        assert!(v.get("seeds").is_none(), "an empty list is not written");
        v["seeds"] = serde_json::json!(["seed.example.org:7333", "[2001:db8::1]:7333"]);
        let with = Genesis::from_json(&v.to_string()).unwrap();
        assert_eq!(with.seeds.len(), 2);
        assert_eq!(with.hash(), g.hash(), "seeds are not part of the genesis hash");
        v["seeds"] = serde_json::json!(["no-port.example.org"]);
        let err = Genesis::from_json(&v.to_string()).unwrap_err().to_string();
        assert!(err.contains("seeds") && err.contains("no-port.example.org"), "{err}");
    }

    #[test]
    fn missing_field_and_bad_values_are_clear_errors() {
        let g = Genesis::dev();
        let mut v: serde_json::Value = serde_json::from_str(&g.to_json()).unwrap();
        v.as_object_mut().unwrap().remove("block_reward");
        let err = Genesis::from_json(&v.to_string()).unwrap_err().to_string();
        assert!(err.contains("block_reward"), "{err}");

        let mut bad = g.clone();
        bad.params.target_block_time_ms = 0;
        let err = Genesis::from_json(&bad.to_json()).unwrap_err().to_string();
        assert!(err.contains("target_block_time_ms"), "{err}");

        let mut dup = g.clone();
        dup.allocations.push(dup.allocations[0]);
        assert!(matches!(dup.check(), Err(GenesisError::DuplicateAllocation(_))));

        let mut bad_addr: serde_json::Value = serde_json::from_str(&g.to_json()).unwrap();
        bad_addr["allocations"][0]["address"] = serde_json::json!("00");
        let err = Genesis::from_json(&bad_addr.to_string()).unwrap_err().to_string();
        assert!(err.contains("address"), "{err}");
    }
}
