//! Import throughput of the chain store: validate + apply + commit, in transfers per
//! second, beside the single-thread signature verification rate measured in the same run.
//!
//! ```text
//! cargo run --release -p cairn-node --example bench_import -- [--blocks N] [--transfers N] [--senders N]
//! ```
//!
//! Blocks full of signed transfers are generated first (fixed seed: sender i's key is
//! SHA-256 of `cairn bench sender i`), then imported into a fresh RocksDB chain in a
//! temp dir. Nothing is asserted: the figures are printed.

use cairn_core::assemble::{assemble_block, grind};
use cairn_core::block::{Block, BlockHeader};
use cairn_core::difficulty::median_time_past;
use cairn_core::genesis::{Allocation, Genesis};
use cairn_core::hash::sha256;
use cairn_core::transaction::{address_of, public_key_of, signing_key_from_bytes, Transfer};
use cairn_core::validation::ParentInfo;
use cairn_core::{Address, Amount, SignedTransfer};
use cairn_node::chain::{Acceptance, Chain};
use rayon::prelude::*;
use std::time::Instant;

struct Args {
    blocks: usize,
    transfers: usize,
    senders: usize,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args { blocks: 20, transfers: 4000, senders: 500 };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || -> Result<usize, String> {
            it.next().ok_or(format!("{flag} needs a value"))?.parse().map_err(|e| format!("{flag}: {e}"))
        };
        match flag.as_str() {
            "--blocks" => a.blocks = value()?,
            "--transfers" => a.transfers = value()?,
            "--senders" => a.senders = value()?.max(1),
            "-h" | "--help" => {
                return Err("usage: bench_import [--blocks N] [--transfers PER_BLOCK] [--senders N]".into());
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(a)
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

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    let keys: Vec<_> = (0..args.senders)
        .map(|i| {
            signing_key_from_bytes(&sha256(format!("cairn bench sender {i}").as_bytes())).expect("valid key")
        })
        .collect();
    let mut genesis = Genesis::dev();
    genesis.name = "cairn-bench".into();
    genesis.params.initial_target =
        "7fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff".parse().expect("hex");
    genesis.params.pow_limit = genesis.params.initial_target;
    genesis.params.max_block_bytes = cairn_core::genesis::MAX_BLOCK_BYTES_LIMIT;
    genesis.allocations = keys
        .iter()
        .map(|k| Allocation { address: address_of(k), balance: Amount(1_000_000_000_000) })
        .collect();
    let params = genesis.params;

    println!(
        "generating {} blocks x {} transfers from {} senders...",
        args.blocks, args.transfers, args.senders
    );
    let t0 = Instant::now();
    let mut headers = vec![genesis.block().header];
    let mut blocks: Vec<Block> = Vec::with_capacity(args.blocks);
    let mut nonces = vec![0u64; keys.len()];
    for h in 0..args.blocks {
        // Round-robin senders; each sender's transfers stay in nonce order.
        let plan: Vec<(usize, u64)> = (0..args.transfers)
            .map(|i| {
                let s = (h * args.transfers + i) % keys.len();
                let n = nonces[s];
                nonces[s] += 1;
                (s, n)
            })
            .collect();
        let transfers: Vec<SignedTransfer> = plan
            .par_iter()
            .enumerate()
            .map(|(i, &(s, nonce))| {
                let mut to = [0u8; 20];
                to[..8].copy_from_slice(&((h * args.transfers + i) as u64).to_le_bytes());
                Transfer {
                    chain_id: params.chain_id,
                    nonce,
                    from: public_key_of(&keys[s]),
                    to: Address(to),
                    amount: Amount(1 + (i as u64 % 1000)),
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
        blocks.push(block);
    }
    println!("generated in {:.1} s", t0.elapsed().as_secs_f64());

    // Single-thread verification rate, on the first block's transfers.
    let sample: Vec<&SignedTransfer> =
        blocks[0].transactions.iter().filter_map(|t| t.as_transfer()).take(2000).collect();
    let t1 = Instant::now();
    for t in &sample {
        t.verify(params.chain_id).expect("valid signature");
    }
    let single = sample.len() as f64 / t1.elapsed().as_secs_f64();

    let dir = tempfile::tempdir().expect("temp dir");
    let mut chain = Chain::open(dir.path(), &genesis).expect("open chain");
    let total: usize = blocks.iter().map(|b| b.transactions.len() - 1).sum();
    let now = params.timestamp_ms + 1_000_000_000_000;
    let t2 = Instant::now();
    for b in blocks {
        let r = chain.accept_block(b, now).expect("import");
        assert_eq!(r.acceptance, Acceptance::Connected);
    }
    chain.sync().expect("sync");
    let secs = t2.elapsed().as_secs_f64();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("cores (available_parallelism): {cores}, rayon threads: {}", rayon::current_num_threads());
    println!("single-thread k256 verification: {single:.0} signatures/s");
    println!(
        "import (validate + apply + commit, RocksDB): {total} transfers in {secs:.2} s = {:.0} transfers/s ({:.2}x single-thread verification)",
        total as f64 / secs,
        total as f64 / secs / single
    );
    println!("tip height {}", chain.tip().height);
}
