//! A network partition with real `cairn-node` processes on loopback.
//!
//! Five nodes found through one seed are cut into two sides with the admin RPC
//! `net_blockPeer` (each node refuses the other side's listen addresses, so peer exchange
//! cannot reconnect them); both sides mine and each confirms a different wallet
//! transfer. Once one side has clearly more work, `net_unblockPeer` heals the cut. Every
//! node must then follow the side that was heavier, the lighter side's transfer must come
//! back (re-mined), and no node may show coins created or lost.
#![allow(clippy::unwrap_used)]

use cairn_core::{Address, Genesis, Target};
use cairn_tests::*;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::time::Duration;

const BLOCK_MS: u64 = 250;
/// Side A is nodes 0 and 1, side B nodes 2, 3 and 4.
const SIDE_A: [usize; 2] = [0, 1];
const SIDE_B: [usize; 3] = [2, 3, 4];
/// One miner on side A, two on side B. Which side ends up heavier is measured, not
/// assumed: on a shared machine the miners do not get equal CPU.
const MINERS: [usize; 3] = [0, 2, 3];
/// How far (in blocks of the current difficulty) the heavier side must lead before the
/// cut is healed, so the lighter side cannot overtake it while the two reconnect.
const LEAD_BLOCKS: u128 = 8;

fn hex_u128(s: &str) -> u128 {
    u128::from_str_radix(s, 16).unwrap_or_else(|e| panic!("work {s:?} does not fit the test's u128: {e}"))
}

/// `(total_work, work of the next block, best_hash, height)` from chain_getInfo.
fn work_of(node: &NodeProcess) -> anyhow::Result<(u128, u128, String, u64)> {
    let info = node.info()?;
    let total = hex_u128(info["total_work"].as_str().unwrap_or_default());
    let target: Target = info["target"].as_str().unwrap_or_default().parse()?;
    let next = hex_u128(&target.work().to_hex());
    Ok((
        total,
        next,
        info["best_hash"].as_str().unwrap_or_default().to_string(),
        info["height"].as_u64().unwrap(),
    ))
}

fn side<'a>(nodes: &'a [NodeProcess], ids: &[usize]) -> Vec<&'a NodeProcess> {
    ids.iter().map(|i| &nodes[*i]).collect()
}

/// Every address that can hold coins: the genesis allocations (which include the miner
/// addresses, dev accounts 9, 7 and 6) and the transfer recipients.
fn holders(genesis: &Genesis, recipients: &[Address]) -> Vec<String> {
    let mut all: Vec<String> = genesis.allocations.iter().map(|a| a.address.to_text()).collect();
    for i in MINERS {
        all.push(dev_address(9 - i));
    }
    all.extend(recipients.iter().map(Address::to_text));
    all.sort();
    all.dedup();
    all
}

/// Checks at one tip of `node` that the balances of `holders` add up to the genesis
/// allocations plus one block reward per block: fees only move coins. Retries until the
/// tip stays put while the balances are read.
fn assert_supply(node: &NodeProcess, genesis: &Genesis, holders: &[String]) {
    let allocated: u128 = genesis.allocations.iter().map(|a| u128::from(a.balance.0)).sum();
    let reward = u128::from(genesis.params.block_reward.0);
    let (height, sum) = wait_until(Duration::from_secs(30), "a stable tip to sum balances at", || {
        let before = node.info()?;
        let mut sum = 0u128;
        for a in holders {
            sum += u128::from(node.balance(a)?);
        }
        let after = node.info()?;
        Ok((before["best_hash"] == after["best_hash"]).then(|| (after["height"].as_u64().unwrap(), sum)))
    });
    assert_eq!(
        sum,
        allocated + reward * u128::from(height),
        "node {}: balances at height {height} do not add up",
        node.rpc_url
    );
}

/// Links between the two sides, as (node, peer address) from each node's `net_peers`.
fn cross_links(nodes: &[NodeProcess]) -> anyhow::Result<Vec<(usize, SocketAddr)>> {
    let mut out = Vec::new();
    for (i, n) in nodes.iter().enumerate() {
        let other: &[usize] = if SIDE_A.contains(&i) { &SIDE_B } else { &SIDE_A };
        for p in n.peer_addrs()? {
            if other.iter().any(|j| nodes[*j].p2p_addr == p) {
                out.push((i, p));
            }
        }
    }
    Ok(out)
}

/// Waits until every link in `links` (node, peer) is up and, when `cut`, no node has a
/// peer on the other side.
fn wait_links(nodes: &[NodeProcess], links: &[(usize, usize)], cut: bool) {
    let what = if cut { "the partition to take effect" } else { "the links to come up" };
    wait_until(Duration::from_secs(60), what, || {
        if cut && !cross_links(nodes)?.is_empty() {
            return Ok(None);
        }
        for (a, b) in links {
            if !nodes[*a].peer_addrs()?.contains(&nodes[*b].p2p_addr) {
                return Ok(None);
            }
        }
        Ok(Some(()))
    });
}

fn admin(node: &NodeProcess, method: &str, addr: SocketAddr) -> Value {
    node.admin_rpc(method, json!([addr.to_string()])).unwrap()
}

/// Sends `amount` from dev account `from` to `to` with the wallet through `node` and
/// waits until it is confirmed there; returns the txid.
fn wallet_send(node: &NodeProcess, wallet_dir: &std::path::Path, from: usize, to: &Address) -> String {
    let from_addr = dev_address(from);
    let imported =
        wallet_json(&node.rpc_url, wallet_dir, "pw", &["import"], Some(&dev_key_hex(from))).unwrap();
    assert_eq!(imported["address"], json!(from_addr));
    let args =
        ["send", "--from", &from_addr, "--to", &to.to_text(), "--amount", "777000", "--fee", "25", "--wait"];
    let sent = wallet_json(&node.rpc_url, wallet_dir, "pw", &args, None).unwrap();
    sent["txid"].as_str().unwrap().to_string()
}

/// The transfer's status at `node`: Some(block hash) when confirmed on the best chain,
/// None when pending, an error when unknown or confirmed off the best chain.
fn tx_state(node: &NodeProcess, txid: &str) -> anyhow::Result<Option<String>> {
    let st = node.rpc("chain_getTransaction", json!([txid]))?;
    match st["status"].as_str() {
        Some("pending") => Ok(None),
        Some("confirmed") => {
            let hash = st["block_hash"].as_str().unwrap_or_default().to_string();
            let block = node.rpc("chain_getBlock", json!([hash]))?;
            anyhow::ensure!(
                block["confirmations"].as_u64().unwrap_or(0) > 0,
                "confirmed in {hash}, off the best chain"
            );
            Ok(Some(hash))
        }
        _ => anyhow::bail!("{txid} unknown at {}", node.rpc_url),
    }
}

#[test]
fn a_partition_heals_onto_the_heavier_side_and_no_coins_appear_or_vanish() {
    let tmp = tempfile::tempdir().unwrap();
    let genesis_path = write_fast_genesis(tmp.path(), BLOCK_MS).unwrap();
    let genesis = Genesis::from_json(&std::fs::read_to_string(&genesis_path).unwrap()).unwrap();
    let nodes = start_seeded_network(tmp.path(), &genesis_path, 5, &MINERS).unwrap();
    let all: Vec<&NodeProcess> = nodes.iter().collect();
    wait_same_tip(&all, 2, Duration::from_secs(120));

    // Cut: every node refuses the other side's listen addresses, then each side is made
    // connected on its own (a star around node 0 and node 2).
    for a in SIDE_A {
        for b in SIDE_B {
            assert_eq!(admin(&nodes[a], "net_blockPeer", nodes[b].p2p_addr), json!(true));
            assert_eq!(admin(&nodes[b], "net_blockPeer", nodes[a].p2p_addr), json!(true));
        }
    }
    let inside = [(1, 0), (3, 2), (4, 2)];
    for (from, to) in inside {
        admin(&nodes[from], "net_addPeer", nodes[to].p2p_addr);
    }
    wait_links(&nodes, &inside, true);
    let cut_height = nodes.iter().map(|n| n.height().unwrap()).max().unwrap();

    // Each side confirms its own wallet transfer (sent through a node that does not mine).
    let to_a = Address([0xa1; 20]);
    let to_b = Address([0xb2; 20]);
    let tx_a = wallet_send(&nodes[1], &tmp.path().join("wallet-a"), 1, &to_a);
    let tx_b = wallet_send(&nodes[4], &tmp.path().join("wallet-b"), 2, &to_b);

    // Wait for each side to agree on a tip holding its transfer, and for one side to
    // lead the other by LEAD_BLOCKS blocks' work. Neither side sees the other's transfer.
    let (a_ids, b_ids) = (side(&nodes, &SIDE_A), side(&nodes, &SIDE_B));
    let (heavy, light, heavy_tip, heavy_height, light_tip, light_tx, light_tx_block) =
        wait_until(Duration::from_secs(180), "one side to lead clearly", || {
            let (a, b) = (a_ids[0], b_ids[0]);
            let (wa, na, tip_a, ha) = work_of(a)?;
            let (wb, nb, tip_b, hb) = work_of(b)?;
            let same = |ids: &[&NodeProcess], tip: &str| -> anyhow::Result<bool> {
                Ok(ids.iter().all(|n| n.best_hash().is_ok_and(|h| h == tip)))
            };
            if !same(&a_ids, &tip_a)? || !same(&b_ids, &tip_b)? || ha <= cut_height || hb <= cut_height {
                return Ok(None);
            }
            let (Some(block_a), Some(block_b)) = (tx_state(a, &tx_a)?, tx_state(b, &tx_b)?) else {
                return Ok(None);
            };
            // The cut holds although peer exchange and outbound maintenance keep trying.
            let crossing = cross_links(&nodes)?;
            assert!(crossing.is_empty(), "the sides reconnected during the partition: {crossing:?}");
            assert!(tx_state(a, &tx_b).is_err(), "side A learned side B's transfer during the partition");
            assert!(tx_state(b, &tx_a).is_err(), "side B learned side A's transfer during the partition");
            let margin = LEAD_BLOCKS * na.max(nb);
            Ok(if wa > wb + margin {
                Some((SIDE_A.to_vec(), SIDE_B.to_vec(), tip_a, ha, tip_b, tx_b.clone(), block_b))
            } else if wb > wa + margin {
                Some((SIDE_B.to_vec(), SIDE_A.to_vec(), tip_b, hb, tip_a, tx_a.clone(), block_a))
            } else {
                None
            })
        });
    eprintln!(
        "cut at height {cut_height}; heavier side {heavy:?} at height {heavy_height} ({heavy_tip}); \
         lighter side {light:?} at {light_tip}"
    );
    let holders = holders(&genesis, &[to_a, to_b]);
    for n in &nodes {
        assert_supply(n, &genesis, &holders);
    }

    // Heal: lift every block and reconnect the sides once (peer exchange does the rest).
    for a in SIDE_A {
        for b in SIDE_B {
            assert_eq!(admin(&nodes[a], "net_unblockPeer", nodes[b].p2p_addr), json!(true));
            assert_eq!(admin(&nodes[b], "net_unblockPeer", nodes[a].p2p_addr), json!(true));
        }
    }
    admin(&nodes[light[0]], "net_addPeer", nodes[heavy[0]].p2p_addr);
    wait_links(&nodes, &[(light[0], heavy[0])], false);

    // Every node follows the heavier side: its tip at heal time is on every best chain,
    // and the lighter side's transfer is re-mined (first back in its mempools, then
    // confirmed on the winning chain at every node, in the same block everywhere).
    wait_same_tip(&all, heavy_height, Duration::from_secs(120));
    let light_block =
        wait_until(Duration::from_secs(120), "the lighter side's transfer to be re-mined", || {
            let mut blocks = Vec::new();
            for n in &nodes {
                let got = n.rpc("chain_getBlockHash", json!([heavy_height]))?;
                assert_eq!(got, json!(heavy_tip), "node {} left the heavier side's chain", n.rpc_url);
                match tx_state(n, &light_tx)? {
                    Some(b) => blocks.push(b),
                    None => return Ok(None),
                }
            }
            Ok(blocks.windows(2).all(|w| w[0] == w[1]).then(|| blocks[0].clone()))
        });
    // It was re-mined, not kept: the lighter side's blocks are off every best chain.
    assert_ne!(light_block, light_tx_block);
    let heavy_tx = if light_tx == tx_a { &tx_b } else { &tx_a };
    for n in &nodes {
        for gone in [&light_tip, &light_tx_block] {
            // Unknown (a heavier-side node may never have fetched it) or off the best chain.
            let b = n.rpc("chain_getBlock", json!([gone])).unwrap();
            let off = b.is_null() || b["confirmations"] == json!(0);
            assert!(off, "{gone} still on the best chain of {}: {b}", n.rpc_url);
        }
        assert!(tx_state(n, heavy_tx).unwrap().is_some(), "heavier side's transfer lost at {}", n.rpc_url);
        assert_supply(n, &genesis, &holders);
    }
    eprintln!("lighter side's transfer re-mined in {light_block}");

    // Each recipient got its amount exactly once, and each sender paid exactly once.
    for (from, to) in [(1, to_a), (2, to_b)] {
        for n in &nodes {
            assert_eq!(n.balance(&to.to_text()).unwrap(), 777_000);
            let acct = n.rpc("state_getAccount", json!([dev_address(from)])).unwrap();
            assert_eq!(acct["nonce"], json!(1));
            assert_eq!(acct["balance"], json!(cairn_core::genesis::DEV_BALANCE.0 - 777_000 - 25));
        }
    }
}
