//! Generated, reproducible chains: keys and addresses from fixed seeds, blocks of signed
//! transfers, long chains of empty blocks. Block timestamps follow the target block time
//! exactly from the genesis timestamp, so the difficulty stays at the (trivial) initial
//! target and every block is valid for a real node whatever the wall clock says.

use cairn_core::assemble::{assemble_block, grind};
use cairn_core::block::{Block, BlockHeader};
use cairn_core::difficulty::median_time_past;
use cairn_core::genesis::{Allocation, Genesis};
use cairn_core::hash::sha256;
use cairn_core::transaction::{address_of, public_key_of, signing_key_from_bytes, Transfer};
use cairn_core::validation::ParentInfo;
use cairn_core::{Address, Amount, SignedTransfer};
use cairn_node::chain::{Acceptance, Chain};
use k256::ecdsa::SigningKey;
use rayon::prelude::*;
use std::path::Path;

/// A "now" far after every generated timestamp, for in-process imports.
pub fn far_future(genesis: &Genesis) -> u64 {
    genesis.params.timestamp_ms + 1_000_000_000_000
}

/// Key `i` of family `tag`: SHA-256 of `cairn bench <tag> <i>`.
pub fn key(tag: &str, i: usize) -> SigningKey {
    signing_key_from_bytes(&sha256(format!("cairn bench {tag} {i}").as_bytes())).expect("a valid key")
}

/// Account `i` of a pre-funded population: the first 20 bytes of SHA-256 of
/// `cairn bench account <i>`.
pub fn account(i: usize) -> Address {
    let h = sha256(format!("cairn bench account {i}").as_bytes());
    let mut a = [0u8; 20];
    a.copy_from_slice(&h[..20]);
    Address(a)
}

/// The dev chain's rules with a trivial proof of work, `senders` funded, and `accounts`
/// extra funded accounts (the population transfers go to).
pub fn genesis(name: &str, senders: &[SigningKey], accounts: usize) -> Genesis {
    let mut g = Genesis::dev();
    g.name = name.into();
    g.params.initial_target =
        "7fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff".parse().expect("hex");
    g.params.pow_limit = g.params.initial_target;
    g.allocations = senders
        .iter()
        .map(|k| Allocation { address: address_of(k), balance: Amount(1_000_000_000_000) })
        .chain((0..accounts).map(|i| Allocation { address: account(i), balance: Amount(1) }))
        .collect();
    g
}

fn parent_info(headers: &[BlockHeader], median_blocks: usize) -> ParentInfo {
    let tip = headers.last().expect("genesis is there");
    let stamps: Vec<u64> = headers.iter().rev().take(median_blocks).map(|h| h.timestamp_ms).collect();
    ParentInfo {
        hash: tip.hash(),
        height: tip.height,
        timestamp_ms: tip.timestamp_ms,
        median_time_past_ms: median_time_past(&stamps),
        anchor_timestamp_ms: headers.get(1).map_or(tip.timestamp_ms, |h| h.timestamp_ms),
    }
}

/// `blocks` blocks of `per_block` transfers each, senders round-robin (each sender's
/// transfers in nonce order), recipient of transfer number `n` given by `to(n)`.
pub fn transfer_blocks(
    genesis: &Genesis,
    keys: &[SigningKey],
    blocks: usize,
    per_block: usize,
    to: &(dyn Fn(usize) -> Address + Sync),
) -> Vec<Block> {
    let params = genesis.params;
    let mut headers = vec![genesis.block().header];
    let mut out = Vec::with_capacity(blocks);
    let mut nonces = vec![0u64; keys.len()];
    for h in 0..blocks {
        let plan: Vec<(usize, u64)> = (0..per_block)
            .map(|i| {
                let s = (h * per_block + i) % keys.len();
                nonces[s] += 1;
                (s, nonces[s] - 1)
            })
            .collect();
        let transfers: Vec<SignedTransfer> = plan
            .par_iter()
            .enumerate()
            .map(|(i, &(s, nonce))| {
                let n = h * per_block + i;
                Transfer {
                    chain_id: params.chain_id,
                    nonce,
                    from: public_key_of(&keys[s]),
                    to: to(n),
                    amount: Amount(1 + (n as u64 % 1000)),
                    fee: Amount(1),
                }
                .sign(&keys[s])
                .expect("signing")
            })
            .collect();
        let parent = parent_info(&headers, params.median_time_blocks as usize);
        let mut block = assemble_block(
            &params,
            &parent,
            parent.timestamp_ms + params.target_block_time_ms,
            Address([0xbe; 20]),
            &transfers,
        )
        .expect("fees fit");
        assert!(grind(&mut block.header, u64::MAX));
        headers.push(block.header);
        out.push(block);
    }
    out
}

/// A fresh address per transfer: every transfer creates an account.
pub fn fresh_recipient(n: usize) -> Address {
    let mut to = [0u8; 20];
    to[..8].copy_from_slice(&(n as u64).to_le_bytes());
    to[19] = 0xfe;
    Address(to)
}

/// Writes a chain of `n` empty blocks on `genesis` into `dir`.
pub fn empty_chain(dir: &Path, genesis: &Genesis, n: u64) -> anyhow::Result<()> {
    let params = genesis.params;
    let mut chain = Chain::open(dir, genesis)?;
    let now = far_future(genesis);
    for _ in chain.tip().height..n {
        let parent = chain.tip_parent_info();
        let mut block = assemble_block(
            &params,
            &parent,
            parent.timestamp_ms + params.target_block_time_ms,
            Address([0xbe; 20]),
            &[],
        )
        .expect("an empty block assembles");
        assert!(grind(&mut block.header, u64::MAX));
        let r = chain.accept_block(block, now)?;
        anyhow::ensure!(
            r.acceptance == Acceptance::Connected,
            "empty block not connected: {:?}",
            r.acceptance
        );
    }
    chain.fsync_wal()?;
    Ok(())
}
