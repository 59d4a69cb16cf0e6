//! The sync-progress line: a fresh `cairn-node` catching up a few hundred blocks from a
//! real peer logs, every `--sync-progress-interval`, its height over the best header
//! height, the percent, blocks and transfers per second, and an ETA.
#![allow(clippy::unwrap_used)] // test helpers fail loudly

use cairn_core::assemble::{assemble_block, grind};
use cairn_core::genesis::{dev_keys, Genesis};
use cairn_core::transaction::{public_key_of, Transfer};
use cairn_core::{Address, Amount};
use cairn_node::chain::Chain;
use cairn_tests::{strip_ansi, wait_until, NodeOptions, NodeProcess};
use std::path::Path;
use std::time::Duration;

const BLOCKS: u64 = 1500;
const TRANSFERS_PER_BLOCK: u64 = 2;

/// A chain with the dev accounts but an easy target (a few hundred hashes a block).
fn easy_genesis(dir: &Path) -> (Genesis, std::path::PathBuf) {
    let mut g = Genesis::dev();
    g.name = "cairn-sync-progress".into();
    g.params.chain_id = 4343;
    g.params.initial_target =
        "00ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff".parse().unwrap();
    let path = dir.join("genesis.json");
    std::fs::write(&path, g.to_json()).unwrap();
    (g, path)
}

/// Writes `BLOCKS` blocks, each with `TRANSFERS_PER_BLOCK` transfers, into `dir`.
fn write_chain(dir: &Path, genesis: &Genesis) {
    let mut chain = Chain::open(dir, genesis).unwrap();
    let params = genesis.params;
    let keys = dev_keys();
    for h in 0..BLOCKS {
        let transfers: Vec<_> = (0..TRANSFERS_PER_BLOCK as usize)
            .map(|k| {
                Transfer {
                    chain_id: params.chain_id,
                    nonce: h,
                    from: public_key_of(&keys[k]),
                    to: Address([0x77; 20]),
                    amount: Amount(1),
                    fee: Amount(1_000),
                }
                .sign(&keys[k])
                .unwrap()
            })
            .collect();
        let parent = chain.tip_parent_info();
        let mut block = assemble_block(
            &params,
            &parent,
            parent.timestamp_ms + params.target_block_time_ms,
            Address([0xbe; 20]),
            &transfers,
        )
        .unwrap();
        assert!(grind(&mut block.header, u64::MAX));
        chain.accept_block(block, cairn_node::now_ms()).unwrap();
    }
    assert_eq!(chain.tip().height, BLOCKS);
    chain.fsync_wal().unwrap();
}

/// `H/T (P%), B blocks/s, X transfers/s, ETA E` from a progress line.
fn figures(line: &str) -> Option<(u64, u64, f64, f64, f64, String)> {
    let rest = &line[line.find("sync progress: ")? + "sync progress: ".len()..];
    let (h, rest) = rest.split_once('/')?;
    let (t, rest) = rest.split_once(" (")?;
    let (p, rest) = rest.split_once("%), ")?;
    let (b, rest) = rest.split_once(" blocks/s, ")?;
    let (x, rest) = rest.split_once(" transfers/s, ETA ")?;
    let eta = rest.split_whitespace().next()?.to_string();
    Some((h.parse().ok()?, t.parse().ok()?, p.parse().ok()?, b.parse().ok()?, x.parse().ok()?, eta))
}

#[test]
fn a_fresh_node_logs_sync_progress_while_it_catches_up() {
    let tmp = tempfile::tempdir().unwrap();
    let (genesis, genesis_path) = easy_genesis(tmp.path());
    write_chain(&tmp.path().join("source"), &genesis);
    let bin = env!("CARGO_BIN_EXE_cairn-node");
    let source = NodeProcess::start(
        &tmp.path().join("source"),
        &NodeOptions { bin: Some(bin.into()), genesis: Some(genesis_path.clone()), ..NodeOptions::default() },
    )
    .unwrap();
    assert_eq!(source.height().unwrap(), BLOCKS);

    let fresh = NodeProcess::start(
        &tmp.path().join("fresh"),
        &NodeOptions {
            bin: Some(bin.into()),
            genesis: Some(genesis_path),
            peers: vec![source.p2p_addr],
            extra: vec!["--sync-progress-interval".into(), "0.1".into()],
            ..NodeOptions::default()
        },
    )
    .unwrap();
    wait_until(Duration::from_secs(120), "the fresh node to sync", || {
        Ok((fresh.height()? == BLOCKS && fresh.log_text().contains("sync finished")).then_some(()))
    });

    let log: Vec<String> = fresh.log_text().lines().map(strip_ansi).collect();
    let lines: Vec<&String> = log.iter().filter(|l| l.contains("sync progress: ")).collect();
    assert!(!lines.is_empty(), "no sync progress line:\n{}", log.join("\n"));
    let mut moving = false;
    for line in &lines {
        let (height, target, percent, blocks_per_s, transfers_per_s, eta) =
            figures(line).unwrap_or_else(|| panic!("unreadable progress line: {line}"));
        assert!(line.contains("INFO") && line.contains("cairn_node::p2p"), "{line}");
        assert_eq!(target, BLOCKS, "the target is the best header height: {line}");
        assert!(height <= target, "{line}");
        let want = height as f64 * 100.0 / target as f64;
        assert!((percent - want).abs() <= 0.06, "{percent}% for {height}/{target}: {line}");
        assert!(blocks_per_s >= 0.0 && transfers_per_s >= 0.0, "{line}");
        if blocks_per_s > 0.0 {
            moving = true;
            // The transfers come with the blocks: two a block.
            assert!(transfers_per_s > 0.0, "{line}");
            assert!(eta != "unknown", "a moving sync has an ETA: {line}");
        }
    }
    assert!(moving, "no progress line saw blocks connect:\n{}", log.join("\n"));
    eprintln!("{} progress lines, e.g. {}", lines.len(), lines[lines.len() / 2]);
}
