//! The connection of a block whose transfers are all in the mempool (their signatures
//! in the signature cache), as every node but the miner does for a relayed block
//! (issue 17): `Node::submit_block` on a RocksDB chain, timed per block, with the
//! pieces that can be timed from outside (txids, merkle root, body encoding) beside it.
//! Prints, asserts nothing about times.

use crate::gen;
use cairn_core::encoding;
use cairn_node::chain::{Acceptance, Chain};
use cairn_node::mempool::{Mempool, MempoolConfig};
use cairn_node::node::{verify_many, Node, Origin};
use std::path::Path;
use std::time::Instant;

pub struct ConnectRun {
    /// Medians over the timed blocks, in ms.
    pub submit_ms: f64,
    pub txids_ms: f64,
    pub merkle_ms: f64,
    pub encode_ms: f64,
    pub blocks: usize,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// `warm + timed` blocks of `per_block` transfers from 100 senders to 10,000 funded
/// accounts; each block's transfers are admitted (verified) first, then the block is
/// submitted. The first `warm` blocks are not timed.
pub fn run(dir: &Path, warm: usize, timed: usize, per_block: usize) -> anyhow::Result<ConnectRun> {
    let senders: Vec<_> = (0..100).map(|i| gen::key("connect", i)).collect();
    let accounts = 10_000;
    let genesis = gen::genesis("cairn-bench-connect", &senders, accounts);
    let chain_id = genesis.params.chain_id;
    let blocks = gen::transfer_blocks(&genesis, &senders, warm + timed, per_block, &|n| {
        gen::account(n * 7919 % accounts)
    });
    let now = gen::far_future(&genesis);
    let chain = Chain::open(dir, &genesis)?;
    let node = Node::new(chain, Mempool::with_config(MempoolConfig::default()), genesis);
    let (mut submit, mut txids, mut merkle, mut encode) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (i, block) in blocks.into_iter().enumerate() {
        let transfers: Vec<_> = block.transactions.iter().filter_map(|t| t.as_transfer()).copied().collect();
        for checked in verify_many(transfers, chain_id) {
            let tx = checked.map_err(|e| anyhow::anyhow!("transfer refused: {:?}", e.error))?;
            node.submit_transfer(tx, Origin::Local, now).map_err(|e| anyhow::anyhow!("not admitted: {e}"))?;
        }
        anyhow::ensure!(node.mempool().len() == per_block, "mempool holds {}", node.mempool().len());
        let t = Instant::now();
        std::hint::black_box(block.txids());
        let t_txids = t.elapsed();
        let t = Instant::now();
        std::hint::black_box(block.compute_merkle_root());
        let t_merkle = t.elapsed();
        let t = Instant::now();
        std::hint::black_box(encoding::encode(&block));
        let t_encode = t.elapsed();
        let t = Instant::now();
        let (r, _) = node.submit_block(block, Origin::Peer(1), now)?;
        let t_submit = t.elapsed();
        anyhow::ensure!(r.acceptance == Acceptance::Connected, "block {i}: {:?}", r.acceptance);
        anyhow::ensure!(node.mempool().is_empty(), "mempool not emptied by the block");
        if i >= warm {
            submit.push(t_submit.as_secs_f64() * 1e3);
            txids.push(t_txids.as_secs_f64() * 1e3);
            merkle.push(t_merkle.as_secs_f64() * 1e3);
            encode.push(t_encode.as_secs_f64() * 1e3);
        }
    }
    Ok(ConnectRun {
        submit_ms: median(submit),
        txids_ms: median(txids),
        merkle_ms: median(merkle),
        encode_ms: median(encode),
        blocks: timed,
    })
}
