//! `cairn-node status` against running nodes: text and `--json` say what the node's own
//! RPC says (chain, height, best hash, sync, peers in and out, mempool, hashrate, uptime,
//! version), and an unreachable node is a clear error.
#![allow(clippy::unwrap_used)] // test helpers fail loudly

use cairn_core::encoding::encode;
use cairn_core::genesis::{dev_keys, DEV_CHAIN_ID};
use cairn_core::transaction::{public_key_of, Transfer};
use cairn_core::{Address, Amount};
use cairn_tests::{wait_until, NodeOptions, NodeProcess};
use serde_json::{json, Value};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(60);

fn status(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cairn-node")).arg("status").args(args).output().unwrap()
}

fn status_json(node: &NodeProcess) -> Value {
    let out = status(&["--rpc", &node.url(), "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn status_text(node: &NodeProcess) -> String {
    let out = status(&["--rpc", &node.url()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// The value after `key` on its line of the text status.
fn row<'a>(text: &'a str, key: &str) -> &'a str {
    text.lines()
        .find_map(|l| l.strip_prefix(key).filter(|r| r.starts_with(' ')))
        .unwrap_or_else(|| panic!("no {key} row in:\n{text}"))
        .trim()
}

#[test]
fn status_reports_what_the_node_says_in_text_and_json() {
    let started = Instant::now();
    let bin = env!("CARGO_BIN_EXE_cairn-node");
    // Two nodes that do not mine, so the figures hold still: b dials a.
    let a = NodeProcess::start_dev(bin, &["--no-mine"]);
    let mut opts = NodeOptions::dev(bin, &["--no-mine"]);
    opts.peers = vec![a.p2p_addr];
    let b = NodeProcess::start_temp(&opts).unwrap();
    wait_until(T, "a and b peered", || {
        Ok((a.rpc("net_peers", json!([]))?.as_array().map_or(0, Vec::len) == 1).then_some(()))
    });
    // One pending transfer in a's mempool.
    let key = &dev_keys()[0];
    let t = Transfer {
        chain_id: DEV_CHAIN_ID,
        nonce: 0,
        from: public_key_of(key),
        to: Address([7; 20]),
        amount: Amount(5),
        fee: Amount(1_000),
    };
    a.rpc("tx_submit", json!([hex::encode(encode(&t.sign(key).unwrap()))])).unwrap();

    let info = a.info().unwrap();
    let mempool = a.rpc("mempool_getInfo", json!([])).unwrap();
    let s = status_json(&a);
    assert_eq!(s["rpc"], a.url());
    assert_eq!(s["version"], format!("cairn-node/{}", env!("CARGO_PKG_VERSION")));
    assert!(s["uptime_s"].as_u64().unwrap() <= started.elapsed().as_secs(), "{s}");
    for key in ["chain_id", "genesis_hash", "height", "best_hash", "hashrate"] {
        assert_eq!(s[key], info[key], "{key}: {s}");
    }
    assert_eq!(s["sync"], json!({"syncing": false, "height": 0, "header_height": 0, "percent": 100.0}));
    assert_eq!(s["peers"], json!({"inbound": 1, "outbound": 0}));
    assert_eq!(
        s["mempool"],
        json!({"transfers": 1, "bytes": mempool["bytes"], "min_fee": mempool["min_fee"]})
    );
    assert_eq!(status_json(&b)["peers"], json!({"inbound": 0, "outbound": 1}));

    let text = status_text(&a);
    assert!(row(&text, "node").starts_with(&format!(
        "cairn-node/{} at {}, up ",
        env!("CARGO_PKG_VERSION"),
        a.url()
    )));
    assert_eq!(
        row(&text, "chain"),
        format!("{} (genesis {})", info["chain_id"], info["genesis_hash"].as_str().unwrap())
    );
    assert_eq!(row(&text, "height"), "0");
    assert_eq!(row(&text, "best"), info["best_hash"].as_str().unwrap());
    assert_eq!(row(&text, "sync"), "synced (best header 0)");
    assert_eq!(row(&text, "peers"), "1 (1 in, 0 out)");
    assert_eq!(
        row(&text, "mempool"),
        format!("1 transfers, {} bytes, min fee {}", mempool["bytes"], mempool["min_fee"])
    );
    assert_eq!(row(&text, "hashrate"), "0 H/s (not mining)");
}

#[test]
fn status_of_a_mining_node_shows_its_hashrate_and_height() {
    let node = NodeProcess::start_dev(env!("CARGO_BIN_EXE_cairn-node"), &[]);
    wait_until(T, "a hashrate and 2 blocks", || {
        let info = node.info()?;
        Ok((info["hashrate"].as_u64() > Some(0) && info["height"].as_u64() >= Some(2)).then_some(()))
    });
    let s = status_json(&node);
    assert!(s["hashrate"].as_u64().unwrap() > 0, "{s}");
    assert!(s["height"].as_u64().unwrap() >= 2, "{s}");
    let text = status_text(&node);
    assert!(row(&text, "hashrate").ends_with(" H/s"), "{text}");
}

#[test]
fn status_of_no_node_is_a_clear_error() {
    // A port nobody listens on: bound, then closed.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("http://127.0.0.1:{port}");
    let out = status(&["--rpc", &url]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(&format!("cannot get the status of the node at {url}")), "{stderr}");
    assert!(out.stdout.is_empty());
}
