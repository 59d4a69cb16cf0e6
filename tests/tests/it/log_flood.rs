//! A peer that connects over and over cannot flood the node's log: inbound handshakes
//! and the drops that follow are logged at most `LogLimiter::PER_WINDOW` (10) times a
//! minute each (node/src/p2p/loglimit.rs), the rest at debug level.
#![allow(clippy::unwrap_used)]

use cairn_core::genesis::Genesis;
use cairn_tests::adversary::*;
use cairn_tests::*;
use serde_json::json;
use std::time::Duration;

/// A peer that claims no work.
const WORK_NONE: [u8; 32] = [0; 32];
/// Info lines of one kind per minute.
const PER_MINUTE: usize = 10;
/// More inbound peers than that, and fewer than the node's inbound slots (24).
const PEERS: usize = 16;

fn count(log: &str, what: &str) -> usize {
    strip_ansi(log).lines().filter(|l| l.contains(" INFO ") && l.contains(what)).count()
}

#[test]
fn sixteen_inbound_peers_and_their_drops_log_ten_lines_each() {
    let node = NodeProcess::start_dev(bin("cairn-node"), &["--no-mine"]);
    let genesis = Genesis::dev();
    let magic = magic_of(&genesis);
    let mut peers = Vec::new();
    for i in 0..PEERS {
        let mut p = Peer::connect(node.p2p_addr, magic).unwrap();
        p.handshake(&VersionFields::for_genesis(&genesis, WORK_NONE, &format!("flood/{i}"))).unwrap();
        peers.push(p);
    }
    wait_until(Duration::from_secs(10), "every flood peer is connected", || {
        let n = node.rpc("net_peers", json!([]))?.as_array().map_or(0, Vec::len);
        Ok((n == PEERS).then_some(()))
    });
    // The node logged each handshake by now (before net_peers listed it).
    let log = node.log_text();
    assert_eq!(count(&log, "peer connected"), PER_MINUTE, "{log}");

    for p in peers {
        p.close();
    }
    wait_until(Duration::from_secs(10), "every flood peer is gone", || {
        let n = node.rpc("net_peers", json!([]))?.as_array().map_or(0, Vec::len);
        Ok((n == 0).then_some(()))
    });
    let log = node.log_text();
    assert_eq!(count(&log, "peer disconnected"), PER_MINUTE, "{log}");
    // The node is still itself.
    assert!(node.height().is_ok());
}
