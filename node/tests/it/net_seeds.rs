//! Bootstrap from the genesis file's seed names, with real processes on loopback: a node
//! started with no `--peer` resolves the seeds with the system resolver (`localhost`),
//! skips one that does not resolve (logged, not fatal) and joins; `--connect` dials only
//! the address given, though the seeds and peer exchange offer others.
#![allow(clippy::unwrap_used)] // test helpers fail loudly

use cairn_core::genesis::Genesis;
use cairn_tests::{wait_until, NodeOptions, NodeProcess};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The dev chain's genesis, with `seeds`, as a file (seeds are not committed to, so the
/// chain is the built-in dev chain).
fn genesis_with_seeds(dir: &Path, seeds: &[String]) -> PathBuf {
    let mut g = Genesis::dev();
    g.seeds = seeds.to_vec();
    assert_eq!(g.hash(), Genesis::dev().hash());
    let path = dir.join("genesis.json");
    std::fs::write(&path, g.to_json()).unwrap();
    path
}

fn start(dir: &Path, genesis: &Path, extra: &[&str]) -> NodeProcess {
    let opts = NodeOptions {
        bin: Some(env!("CARGO_BIN_EXE_cairn-node").into()),
        genesis: Some(genesis.to_path_buf()),
        extra: extra.iter().map(|s| s.to_string()).collect(),
        ..NodeOptions::default()
    };
    NodeProcess::start(dir, &opts).expect("start cairn-node")
}

fn peers(n: &NodeProcess) -> Vec<SocketAddr> {
    n.peer_addrs().unwrap_or_default()
}

/// The peers `n` dialled.
fn outbound(n: &NodeProcess) -> Vec<SocketAddr> {
    let list = n.rpc("net_peers", serde_json::json!([])).unwrap_or_default();
    list.as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["inbound"] == false)
        .filter_map(|p| p["addr"].as_str()?.parse().ok())
        .collect()
}

#[test]
fn a_node_with_no_peer_joins_through_the_genesis_seeds_and_connect_means_only() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let a = NodeProcess::start(
        &tmp.path().join("a"),
        &NodeOptions::dev(env!("CARGO_BIN_EXE_cairn-node"), &["--no-mine"]),
    )
    .unwrap();
    let seeds = vec!["no-such-seed.invalid:7333".to_string(), format!("localhost:{}", a.p2p_addr.port())];
    let genesis = genesis_with_seeds(tmp.path(), &seeds);

    // B: no --peer, only the seeds.
    let b = start(&tmp.path().join("b"), &genesis, &[]);
    wait_until(Duration::from_secs(30), "B connected to A through the seed name", || {
        Ok(peers(&b).contains(&a.p2p_addr).then_some(()))
    });
    let log = b.log_text();
    assert!(log.contains("cannot resolve seed") && log.contains("no-such-seed.invalid"), "{log}");

    // C: the same seeds, but --connect B: it reaches B, learns of A from B (and the
    // seeds name A), and never dials A. (A may dial C: --connect is about C's own
    // dials, inbound peers are still welcome.)
    let c = start(&tmp.path().join("c"), &genesis, &["--connect", &b.p2p_addr.to_string()]);
    wait_until(Duration::from_secs(30), "C connected to B", || {
        Ok(outbound(&c).contains(&b.p2p_addr).then_some(()))
    });
    let watch = Instant::now() + Duration::from_secs(5);
    while Instant::now() < watch {
        let now = outbound(&c);
        assert!(now.iter().all(|p| *p == b.p2p_addr), "--connect B, but C dialled {now:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(!c.log_text().contains("seed resolved"), "--connect resolves no seeds");
}
