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
    let mut chain = TransferChain::new(genesis, per_block);
    (0..blocks).map(|_| chain.next_block(keys, to)).collect()
}

/// The chain [`transfer_blocks`] makes, one block at a time (for chains too long to
/// hold in memory).
pub struct TransferChain {
    params: cairn_core::params::ChainParams,
    headers: Vec<BlockHeader>,
    nonces: Vec<u64>,
    per_block: usize,
}

impl TransferChain {
    pub fn new(genesis: &Genesis, per_block: usize) -> TransferChain {
        TransferChain {
            params: genesis.params,
            headers: vec![genesis.block().header],
            nonces: Vec::new(),
            per_block,
        }
    }

    pub fn next_block(&mut self, keys: &[SigningKey], to: &(dyn Fn(usize) -> Address + Sync)) -> Block {
        let (params, per_block) = (self.params, self.per_block);
        let h = self.headers.len() - 1;
        self.nonces.resize(keys.len(), 0);
        let plan: Vec<(usize, u64)> = (0..per_block)
            .map(|i| {
                let s = (h * per_block + i) % keys.len();
                self.nonces[s] += 1;
                (s, self.nonces[s] - 1)
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
        let parent = parent_info(&self.headers, params.median_time_blocks as usize);
        let mut block = assemble_block(
            &params,
            &parent,
            parent.timestamp_ms + params.target_block_time_ms,
            Address([0xbe; 20]),
            &transfers,
        )
        .expect("fees fit");
        assert!(grind(&mut block.header, u64::MAX));
        self.headers.push(block.header);
        block
    }
}

/// A chain of `blocks` x `per_block` transfers from [`TransferChain`], kept in a file
/// (each block's canonical encoding after its length as a little-endian u32) so that
/// it is generated once: `path` must name the parameters (and the genesis); the file
/// appears whole or not at all (written beside it, then renamed).
pub fn cached_transfer_chain(
    path: &Path,
    genesis: &Genesis,
    keys: &[SigningKey],
    blocks: usize,
    per_block: usize,
    to: &(dyn Fn(usize) -> Address + Sync),
) -> anyhow::Result<bool> {
    use std::io::Write;
    if path.exists() {
        return Ok(false);
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("partial");
    let mut out = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
    let mut chain = TransferChain::new(genesis, per_block);
    for _ in 0..blocks {
        let bytes = cairn_core::encoding::encode(&chain.next_block(keys, to));
        out.write_all(&u32::try_from(bytes.len())?.to_le_bytes())?;
        out.write_all(&bytes)?;
    }
    out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    std::fs::rename(&tmp, path)?;
    Ok(true)
}

/// The blocks of a file written by [`cached_transfer_chain`], read one at a time.
pub fn read_blocks(path: &Path) -> anyhow::Result<impl Iterator<Item = anyhow::Result<Block>>> {
    use std::io::Read;
    let mut file = std::io::BufReader::new(std::fs::File::open(path)?);
    Ok(std::iter::from_fn(move || {
        let mut len = [0u8; 4];
        match file.read_exact(&mut len) {
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return None,
            Err(e) => return Some(Err(e.into())),
            Ok(()) => {}
        }
        let mut bytes = vec![0u8; u32::from_le_bytes(len) as usize];
        Some(
            file.read_exact(&mut bytes)
                .map_err(anyhow::Error::from)
                .and_then(|()| Ok(cairn_core::encoding::decode::<Block>(&bytes)?)),
        )
    }))
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
