//! End-to-end tests of a network of real `cairn-node` processes on loopback: peer
//! discovery through one seed, convergence, transfers seen identically everywhere,
//! double spends, crashes and late joiners.
#![allow(clippy::unwrap_used)]

use cairn_core::encoding::encode;
use cairn_core::genesis::dev_keys;
use cairn_core::transaction::{public_key_of, Transfer};
use cairn_core::{Address, Amount};
use cairn_tests::*;
use serde_json::{json, Value};
use std::path::Path;
use std::time::Duration;

const CHAIN_ID: u32 = 4242; // write_fast_genesis

/// `n` nodes of a fast local chain found through node 0; the first `miners` mine.
fn start_network(root: &Path, n: usize, miners: usize, block_ms: u64) -> Vec<NodeProcess> {
    let genesis = write_fast_genesis(root, block_ms).unwrap();
    let miners: Vec<usize> = (0..miners).collect();
    start_seeded_network(root, &genesis, n, &miners).unwrap()
}

/// Waits until every node reports the same best hash at height >= `min_height`.
fn wait_converged(nodes: &[NodeProcess], min_height: u64, timeout: Duration) -> String {
    let nodes: Vec<&NodeProcess> = nodes.iter().collect();
    wait_same_tip(&nodes, min_height, timeout)
}

fn signed_hex(from: usize, nonce: u64, to: Address, amount: u64, fee: u64) -> String {
    let key = &dev_keys()[from];
    let t = Transfer {
        chain_id: CHAIN_ID,
        nonce,
        from: public_key_of(key),
        to,
        amount: Amount(amount),
        fee: Amount(fee),
    };
    hex::encode(encode(&t.sign(key).unwrap()))
}

fn account(node: &NodeProcess, address: &str) -> Value {
    node.rpc("state_getAccount", json!([address])).unwrap()
}

#[test]
fn five_nodes_find_each_other_through_one_seed_and_agree_on_a_wallet_transfer() {
    let tmp = tempfile::tempdir().unwrap();
    let nodes = start_network(tmp.path(), 5, 2, 250);

    // Peer exchange: every node learns of more than the seed.
    wait_until(Duration::from_secs(90), "every node to have 2+ peers", || {
        for n in &nodes {
            let peers = n.rpc("net_peers", json!([]))?;
            if peers.as_array().map_or(0, Vec::len) < 2 {
                return Ok(None);
            }
        }
        Ok(Some(()))
    });
    wait_converged(&nodes, 3, Duration::from_secs(120));

    // A transfer sent with the wallet through node 3 (not mining).
    let wallet_dir = tmp.path().join("wallet");
    let rpc3 = nodes[3].rpc_url.clone();
    let sender = wallet_json(&rpc3, &wallet_dir, "pw", &["import"], Some(&dev_key_hex(4))).unwrap();
    assert_eq!(sender["address"], dev_address(4));
    let recipient = wallet_json(&rpc3, &wallet_dir, "pw", &["new"], None).unwrap()["address"]
        .as_str()
        .unwrap()
        .to_string();
    let sent = wallet_json(
        &rpc3,
        &wallet_dir,
        "pw",
        &[
            "send",
            "--from",
            &dev_address(4),
            "--to",
            &recipient,
            "--amount",
            "12345",
            "--fee",
            "10",
            "--wait",
        ],
        None,
    )
    .unwrap();
    assert!(sent["height"].as_u64().unwrap() >= 1, "{sent}");

    // Every node's RPC shows the same balances once it has the block.
    let before = cairn_core::genesis::DEV_BALANCE.0;
    wait_until(Duration::from_secs(60), "every node to show the transfer", || {
        for n in &nodes {
            let r = account(n, &recipient);
            let s = account(n, &dev_address(4));
            if r["balance"] != json!(12345) || s["nonce"] != json!(1) {
                return Ok(None);
            }
            assert_eq!(s["balance"], json!(before - 12345 - 10));
        }
        Ok(Some(()))
    });
}

#[test]
fn a_double_spend_sent_to_two_nodes_confirms_exactly_once() {
    let tmp = tempfile::tempdir().unwrap();
    let nodes = start_network(tmp.path(), 3, 2, 250);
    wait_converged(&nodes, 2, Duration::from_secs(90));

    let a = Address([0xa1; 20]);
    let b = Address([0xb2; 20]);
    let to_a = signed_hex(5, 0, a, 1000, 10);
    let to_b = signed_hex(5, 0, b, 2000, 10);
    // Same sender and nonce, different recipients, to two different nodes.
    let ra = nodes[0].rpc("tx_submit", json!([to_a]));
    let rb = nodes[1].rpc("tx_submit", json!([to_b]));
    assert!(ra.is_ok() || rb.is_ok(), "both refused: {ra:?} {rb:?}");

    wait_until(Duration::from_secs(90), "the sender's transfer to confirm", || {
        Ok((account(&nodes[2], &dev_address(5))["nonce"] == json!(1)).then_some(()))
    });
    // Let a few more blocks settle any race, then every node must agree that exactly
    // one of the two was confirmed.
    let h = nodes[2].height().unwrap();
    wait_converged(&nodes, h + 3, Duration::from_secs(90));
    for n in &nodes {
        let got_a = account(n, &a.to_text())["balance"].as_u64().unwrap();
        let got_b = account(n, &b.to_text())["balance"].as_u64().unwrap();
        assert!(
            (got_a, got_b) == (1000, 0) || (got_a, got_b) == (0, 2000),
            "node {}: a={got_a} b={got_b}",
            n.rpc_url
        );
        assert_eq!(account(n, &dev_address(5))["nonce"], json!(1));
    }
}

#[test]
fn a_killed_node_rejoins_and_a_late_node_syncs_200_blocks() {
    let tmp = tempfile::tempdir().unwrap();
    let mut nodes = start_network(tmp.path(), 2, 1, 40);
    wait_converged(&nodes, 20, Duration::from_secs(120));

    // SIGKILL the follower, let the miner move on, restart it: it catches up.
    nodes[1].kill();
    let h = nodes[0].height().unwrap();
    wait_until(Duration::from_secs(60), "miner to move on", || {
        Ok((nodes[0].height()? >= h + 20).then_some(()))
    });
    nodes[1].restart().unwrap();
    wait_converged(&nodes, h + 20, Duration::from_secs(120));

    // A fresh node joining after 200+ blocks syncs to the tip.
    wait_until(Duration::from_secs(180), "200 blocks", || Ok((nodes[0].height()? >= 200).then_some(())));
    let genesis = tmp.path().join("genesis.json");
    let late = NodeProcess::start(
        &tmp.path().join("late"),
        &NodeOptions { genesis: Some(genesis), peers: vec![nodes[1].p2p_addr], ..NodeOptions::default() },
    )
    .unwrap();
    nodes.push(late);
    wait_converged(&nodes, 200, Duration::from_secs(180));
}
