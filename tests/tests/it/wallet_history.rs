//! End-to-end: `cairn-wallet history` against real `cairn-node --dev` processes, with
//! transfers sent by the wallet itself: a mining node for confirmed transfers (both
//! sides, dates, fees, confirmations, the miner's coinbases, --limit) and a node that
//! does not mine for pending ones (marked as such).

#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test

use cairn_tests::{dev_address, dev_key_hex, wallet, wallet_json, NodeOptions, NodeProcess};
use serde_json::Value;
use std::path::Path;

const PW: &str = "correct horse battery staple";

fn history_text(rpc: &str, dir: &Path, args: &[&str]) -> String {
    let mut full = vec!["history"];
    full.extend_from_slice(args);
    let out = wallet(rpc, dir, PW, &full, None).unwrap();
    assert!(out.status.success(), "wallet {full:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn history_json(rpc: &str, dir: &Path, args: &[&str]) -> Value {
    let mut full = vec!["history"];
    full.extend_from_slice(args);
    wallet_json(rpc, dir, PW, &full, None).unwrap()
}

/// The text line of the transaction `txid`.
fn line_of<'a>(text: &'a str, txid: &str) -> &'a str {
    text.lines().find(|l| l.ends_with(txid)).unwrap_or_else(|| panic!("no line for {txid} in:\n{text}"))
}

fn import(rpc: &str, dir: &Path, i: usize) {
    wallet_json(rpc, dir, PW, &["import"], Some(&format!("{}\n", dev_key_hex(i)))).unwrap();
}

#[test]
fn wallet_history_shows_what_came_in_and_went_out() {
    let tmp = tempfile::tempdir().unwrap();
    let node = NodeProcess::start(
        &tmp.path().join("node"),
        &NodeOptions { dev: true, mine: true, ..Default::default() },
    )
    .expect("start cairn-node --dev");
    let rpc = node.rpc_url.clone();
    let dir = tmp.path().join("wallet");
    import(&rpc, &dir, 2);
    import(&rpc, &dir, 3);
    let (alice, bob) = (dev_address(2), dev_address(3));

    let sent = |from: &str, to: &str, amount: &str, fee: &str| -> String {
        let v = wallet_json(
            &rpc,
            &dir,
            PW,
            &["send", "--from", from, "--to", to, "--amount", amount, "--fee", fee, "--wait"],
            None,
        )
        .unwrap();
        v["txid"].as_str().unwrap().to_string()
    };
    let t1 = sent(&alice, &bob, "1000000", "2000");
    let t2 = sent(&bob, &alice, "250000", "1500");

    // Bob: t2 out (newest), then t1 in.
    let h = history_json(&rpc, &dir, &[&bob]);
    let entries = h["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 2, "{h}");
    assert_eq!(entries[0]["txid"], t2.as_str());
    assert_eq!(
        (entries[0]["direction"].as_str(), entries[0]["counterparty"].as_str()),
        (Some("out"), Some(alice.as_str()))
    );
    assert_eq!((entries[0]["amount"].as_u64(), entries[0]["fee"].as_u64()), (Some(250_000), Some(1_500)));
    assert_eq!(entries[1]["txid"], t1.as_str());
    assert_eq!(
        (entries[1]["direction"].as_str(), entries[1]["amount"].as_u64()),
        (Some("in"), Some(1_000_000))
    );
    assert!(entries[1]["confirmations"].as_u64().unwrap() > entries[0]["confirmations"].as_u64().unwrap());
    assert!(entries[0]["confirmations"].as_u64().unwrap() >= 1);
    assert_eq!(h["pending"].as_array().unwrap().len(), 0);
    assert_eq!(h["more"], false);

    // The same as text: dated lines with direction, counterparty, amount, fee, confirmations.
    let text = history_text(&rpc, &dir, &[&bob]);
    let l2 = line_of(&text, &t2);
    assert!(
        l2.contains(" out ") && l2.contains("-250,000") && l2.contains(&alice) && l2.contains("fee 1,500"),
        "{l2}"
    );
    assert!(l2.contains(" conf ") && l2.contains(" UTC "), "{l2}");
    // The date is the block's, as the node reports it.
    let height = entries[0]["height"].as_u64().unwrap();
    let block = node.rpc("chain_getBlockByHeight", serde_json::json!([height])).unwrap();
    let stamp = block["timestamp_ms"].as_u64().unwrap();
    assert_eq!(entries[0]["timestamp_ms"].as_u64(), Some(stamp));
    assert!(l2.starts_with(entries[0]["time"].as_str().unwrap()), "{l2}");
    let l1 = line_of(&text, &t1);
    assert!(
        l1.contains(" in ") && l1.contains("+1,000,000") && l1.contains("from") && l1.contains(&alice),
        "{l1}"
    );
    assert!(!l1.contains("PENDING"));

    // The miner (dev account 0) has a coinbase a block: --limit caps them and says so.
    let miner = dev_address(0);
    let text = history_text(&rpc, &dir, &[&miner, "--limit", "3"]);
    let lines: Vec<&str> = text.lines().filter(|l| l.contains("coinbase")).collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(text.contains("older entries not shown"), "{text}");
    let h = history_json(&rpc, &dir, &[&miner, "--limit", "150"]);
    let heights: Vec<u64> =
        h["entries"].as_array().unwrap().iter().map(|e| e["height"].as_u64().unwrap()).collect();
    // More than one RPC page (100) when the chain is that long, each block once, newest first.
    assert!(heights.windows(2).all(|w| w[0] == w[1] + 1), "{heights:?}");

    // A mistyped address never reaches the node.
    let mut typo: Vec<char> = bob.chars().collect();
    typo[5] = if typo[5] == 'a' { 'b' } else { 'a' };
    let typo: String = typo.into_iter().collect();
    let out = wallet(&rpc, &dir, PW, &["history", &typo], None).unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("checksum"));
}

#[test]
fn wallet_history_marks_pending_transfers() {
    let tmp = tempfile::tempdir().unwrap();
    let node = NodeProcess::start(
        &tmp.path().join("node"),
        &NodeOptions { dev: true, mine: false, ..Default::default() },
    )
    .expect("start cairn-node --dev --no-mine");
    let rpc = node.rpc_url.clone();
    let dir = tmp.path().join("wallet");
    import(&rpc, &dir, 4);
    let (carol, dave) = (dev_address(4), dev_address(5));
    let v = wallet_json(
        &rpc,
        &dir,
        PW,
        &["send", "--from", &carol, "--to", &dave, "--amount", "7000", "--fee", "300"],
        None,
    )
    .unwrap();
    let txid = v["txid"].as_str().unwrap().to_string();

    for (who, direction, amount, side) in [(&carol, "out", "-7,000", "to"), (&dave, "in", "+7,000", "from")] {
        let text = history_text(&rpc, &dir, &[who]);
        let line = line_of(&text, &txid);
        assert!(line.contains("PENDING") && line.contains(direction) && line.contains(amount), "{line}");
        assert!(line.contains(side), "{line}");
        let h = history_json(&rpc, &dir, &[who]);
        assert_eq!(h["entries"].as_array().unwrap().len(), 0);
        let p = &h["pending"][0];
        assert_eq!((p["txid"].as_str(), p["direction"].as_str()), (Some(txid.as_str()), Some(direction)));
    }
    // A node with nothing for an address says so.
    let text = history_text(&rpc, &dir, &[&dev_address(9)]);
    assert!(text.starts_with("No transactions for"), "{text}");
}
