//! Real `cairn-node` processes on loopback: three nodes (one mining, two with one
//! `--peer` each) reach the same tip and learn each other's addresses; a node restarted
//! after the others moved on catches up. Every wait polls with a deadline; children are
//! killed by a Drop guard.
#![allow(clippy::unwrap_used)] // test helpers fail loudly

use cairn_tests::{wait_until, NodeOptions, NodeProcess};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

fn start(dir: &Path, extra: &[&str]) -> NodeProcess {
    NodeProcess::start(dir, &NodeOptions::dev(env!("CARGO_BIN_EXE_cairn-node"), extra))
        .expect("start cairn-node")
}

fn wait<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    wait_until(timeout, what, || Ok(f()))
}

fn info(n: &NodeProcess) -> Option<Value> {
    n.rpc("chain_getInfo", json!([])).ok()
}

fn height(n: &NodeProcess) -> u64 {
    info(n).and_then(|i| i["height"].as_u64()).unwrap_or(0)
}

fn peer_ports(n: &NodeProcess) -> Vec<SocketAddr> {
    n.peer_addrs().unwrap_or_default()
}

fn same_tip(nodes: &[&NodeProcess], min_height: u64) -> bool {
    let infos: Vec<Value> = nodes.iter().filter_map(|n| info(n)).collect();
    infos.len() == nodes.len()
        && infos.iter().all(|i| i["best_hash"] == infos[0]["best_hash"])
        && infos[0]["height"].as_u64().unwrap_or(0) >= min_height
}

#[test]
fn three_processes_share_a_tip_and_a_restarted_node_catches_up() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let a = start(&tmp.path().join("a"), &[]);
    let b = start(&tmp.path().join("b"), &["--no-mine", "--peer", &a.p2p_addr.to_string()]);
    let c_dir = tmp.path().join("c");
    let mut c = start(&c_dir, &["--no-mine", "--peer", &b.p2p_addr.to_string()]);

    wait(Duration::from_secs(60), "three nodes on one tip at height >= 3", || {
        same_tip(&[&a, &b, &c], 3).then_some(())
    });
    // Peer exchange: each node knows (is connected to) both others, though A was told
    // of nobody and C only of B.
    wait(Duration::from_secs(60), "full mesh", || {
        let ok =
            [(&a, [b.p2p_addr, c.p2p_addr]), (&b, [a.p2p_addr, c.p2p_addr]), (&c, [a.p2p_addr, b.p2p_addr])]
                .iter()
                .all(|(n, others)| {
                    let peers = peer_ports(n);
                    others.iter().all(|o| peers.iter().any(|p| p == o))
                });
        ok.then_some(())
    });

    // Stop C, let the others move on, restart C: it catches up.
    let c_height = height(&c);
    c.kill();
    let target = c_height + 5;
    wait(Duration::from_secs(60), "A and B move on", || {
        (height(&a) >= target && same_tip(&[&a, &b], target)).then_some(())
    });
    c.restart().expect("restart C");
    wait(Duration::from_secs(60), "restarted C catches up", || {
        let goal = height(&a);
        (height(&c) >= goal.min(target)).then_some(())
    });
    assert!(c_dir.join("peers.json").exists(), "address book saved");
    drop((a, b, c));
}
