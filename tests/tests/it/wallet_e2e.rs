//! End-to-end: the `cairn-wallet` binary against a real `cairn-node --dev` process.
//!
//! Binaries come from the target directory next to this test executable (the harness's
//! `bin`, or `$CAIRN_BIN_DIR`): run `cargo build -p cairn-node -p cairn-wallet` (or
//! `scripts/test.sh`, which builds every binary) before `cargo test -p cairn-tests`.
//! The node runs on `127.0.0.1:0` in a temporary data dir and is killed when the
//! `NodeProcess` guard drops, also when the test fails. Every wait polls with a deadline.

#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test

use cairn_tests::{dev_address, dev_key_hex, wait_until, wallet, wallet_json, NodeOptions, NodeProcess};
use serde_json::{json, Value};
use std::path::Path;
use std::process::Output;
use std::time::Duration;

const PW: &str = "correct horse battery staple";

fn start_dev_node(dir: &Path) -> NodeProcess {
    NodeProcess::start(dir, &NodeOptions { dev: true, mine: true, ..Default::default() })
        .expect("start cairn-node --dev")
}

/// Runs the wallet expecting failure; returns stderr.
fn wallet_err(rpc: &str, dir: &Path, password: &str, args: &[&str], stdin: Option<&str>) -> String {
    let out: Output = wallet(rpc, dir, password, args, stdin).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        !out.status.success(),
        "wallet {args:?} should fail; stdout: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(out.stdout.is_empty(), "wallet {args:?} printed to stdout although it failed");
    stderr
}

fn u64_of(v: &Value, field: &str) -> u64 {
    v[field].as_u64().unwrap_or_else(|| panic!("no integer `{field}` in {v}"))
}

#[test]
fn wallet_against_a_dev_node() {
    let tmp = tempfile::tempdir().unwrap();
    let node = start_dev_node(&tmp.path().join("node"));
    let rpc = node.rpc_url.clone();
    let dir = tmp.path().join("wallet");

    // Import dev account 0 (key = SHA-256("cairn dev account 0")), create a new key.
    let imported = wallet_json(&rpc, &dir, PW, &["import"], Some(&format!("{}\n", dev_key_hex(0)))).unwrap();
    let alice = dev_address(0);
    assert_eq!(imported["address"], json!(alice));
    let bob = wallet_json(&rpc, &dir, PW, &["new"], None).unwrap()["address"].as_str().unwrap().to_string();
    let listed = wallet_json(&rpc, &dir, PW, &["list"], None).unwrap();
    let mut expected = vec![alice.clone(), bob.clone()];
    expected.sort();
    assert_eq!(listed["addresses"], json!(expected));

    // Send to the new key and wait for the block.
    let sent = wallet_json(
        &rpc,
        &dir,
        PW,
        &["send", "--from", &alice, "--to", &bob, "--amount", "1000000", "--fee", "2000", "--wait"],
        None,
    )
    .unwrap();
    let txid = sent["txid"].as_str().unwrap().to_string();
    assert_eq!(txid.len(), 64);
    assert!(u64_of(&sent, "height") >= 1, "{sent}");
    assert_eq!(sent["block_hash"].as_str().unwrap().len(), 64);

    let b = wallet_json(&rpc, &dir, PW, &["balance", &bob], None).unwrap();
    assert_eq!((u64_of(&b, "balance"), u64_of(&b, "nonce")), (1_000_000, 0), "{b}");
    let a = wallet_json(&rpc, &dir, PW, &["balance", &alice], None).unwrap();
    // Dev account 0 is also the dev miner, so its balance keeps growing; its nonce is exact.
    assert_eq!(u64_of(&a, "nonce"), 1, "{a}");
    assert_eq!(a["address"], json!(alice));

    // Three transfers in a row from the new key, no waiting: each takes the next
    // pending nonce, and all three confirm.
    let carol = dev_address(5);
    let mut txids = Vec::new();
    for i in 0..3u64 {
        let amount = (10_000 + i).to_string();
        let s = wallet_json(
            &rpc,
            &dir,
            PW,
            &["send", "--from", &bob, "--to", &carol, "--amount", &amount, "--fee", "1000"],
            None,
        )
        .unwrap();
        assert_eq!(u64_of(&s, "nonce"), i, "{s}");
        txids.push(s["txid"].as_str().unwrap().to_string());
    }
    for t in &txids {
        wait_until(Duration::from_secs(60), "the three transfers to confirm", || {
            let v = wallet_json(&rpc, &dir, PW, &["tx", t], None)?;
            Ok((v["status"] == json!("confirmed")).then_some(()))
        });
    }
    let b = wallet_json(&rpc, &dir, PW, &["balance", &bob], None).unwrap();
    let spent = 10_000 + 10_001 + 10_002 + 3 * 1000;
    assert_eq!((u64_of(&b, "balance"), u64_of(&b, "nonce")), (1_000_000 - spent, 3), "{b}");

    // A verified receipt: the wallet checks the header, PoW, merkle proof and best chain.
    let v = wallet_json(&rpc, &dir, PW, &["tx", &txid, "--verify"], None).unwrap();
    assert_eq!(v["status"], json!("confirmed"), "{v}");
    assert_eq!(v["verified"]["merkle_proof"], json!(true), "{v}");
    assert_eq!(v["verified"]["proof_of_work"], json!(true), "{v}");
    assert_eq!(v["verified"]["best_chain"], json!(true), "{v}");
    assert_eq!(v["verified"]["block_hash"], sent["block_hash"], "{v}");
    let human = wallet(&rpc, &dir, PW, &["tx", &txid, "--verify"], None).unwrap();
    assert!(human.status.success());
    let text = String::from_utf8_lossy(&human.stdout);
    assert!(text.contains("merkle proof"), "{text}");

    // Offline signing with a stale nonce: the node refuses and the wallet shows why.
    let signed = wallet_json(
        &rpc,
        &dir,
        PW,
        &["sign", "--from", &bob, "--to", &carol, "--amount", "1", "--fee", "1000", "--nonce", "0"],
        None,
    )
    .unwrap();
    let hex = signed["hex"].as_str().unwrap();
    let err = wallet_err(&rpc, &dir, PW, &["submit", hex], None);
    assert!(err.contains("transfer refused by the node") && err.contains("nonce"), "{err}");

    // An offline-signed transfer with the right nonce is accepted by `submit`.
    let signed = wallet_json(
        &rpc,
        &dir,
        PW,
        &["sign", "--from", &bob, "--to", &carol, "--amount", "1", "--fee", "1000", "--nonce", "3"],
        None,
    )
    .unwrap();
    let submitted = wallet_json(&rpc, &dir, PW, &["submit", signed["hex"].as_str().unwrap()], None).unwrap();
    assert_eq!(submitted["txid"], signed["txid"]);

    // Errors a person understands.
    let err =
        wallet_err(&rpc, &dir, PW, &["send", "--from", &bob, "--to", &carol, "--amount", "999999999"], None);
    assert!(err.contains("insufficient balance"), "{err}");
    let err =
        wallet_err(&rpc, &dir, "wrong", &["send", "--from", &bob, "--to", &carol, "--amount", "1"], None);
    assert!(err.contains("wrong password"), "{err}");
    let err = wallet_err(&rpc, &dir, PW, &["send", "--from", &carol, "--to", &bob, "--amount", "1"], None);
    assert!(err.contains("not in the wallet"), "{err}");
    let mut typo: Vec<char> = carol.chars().collect();
    typo[3] = if typo[3] == 'a' { 'b' } else { 'a' };
    let typo: String = typo.into_iter().collect();
    let err = wallet_err(&rpc, &dir, PW, &["send", "--from", &bob, "--to", &typo, "--amount", "1"], None);
    assert!(err.contains("checksum"), "{err}");
    let closed =
        format!("http://{}", std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap());
    let err = wallet_err(&closed, &dir, PW, &["balance", &bob], None);
    assert!(err.contains("cannot reach the node") && err.contains(&closed), "{err}");
    let err = wallet_err(&rpc, &dir, PW, &["tx", &"ab".repeat(32)], None);
    assert!(err.contains("unknown to the node"), "{err}");
}
