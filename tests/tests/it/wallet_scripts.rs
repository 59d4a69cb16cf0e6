//! End-to-end: the wallet as a payout script uses it, against a real `cairn-node --dev`
//! process: parallel sends from one address, refusals of a taken nonce, batches, the
//! automatic fee, and waiting for confirmations.
//!
//! Each test starts its own node on `127.0.0.1:0` in a temporary data dir (killed when
//! the `NodeProcess` guard drops) and its own wallet dir. Every wait polls with a deadline.

#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test

use cairn_tests::{bin, dev_address, dev_key_hex, wait_until, wallet, wallet_json, NodeProcess};
use serde_json::{json, Value};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

const PW: &str = "payout password";

/// A wallet dir holding dev account `i`; returns its address.
fn import_dev(rpc: &str, dir: &Path, i: usize) -> String {
    let v = wallet_json(rpc, dir, PW, &["import"], Some(&format!("{}\n", dev_key_hex(i)))).unwrap();
    assert_eq!(v["address"], json!(dev_address(i)));
    dev_address(i)
}

/// Runs the wallet expecting failure; returns stderr (and checks nothing went to stdout).
fn wallet_fails(rpc: &str, dir: &Path, args: &[&str]) -> String {
    let out = wallet(rpc, dir, PW, args, None).unwrap();
    assert!(
        !out.status.success(),
        "wallet {args:?} should fail; stdout: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).to_string()
}

fn u64_of(v: &Value, field: &str) -> u64 {
    v[field].as_u64().unwrap_or_else(|| panic!("no integer `{field}` in {v}"))
}

fn account(node: &NodeProcess, address: &str) -> Value {
    node.rpc("state_getAccount", json!([address])).unwrap()
}

fn pool_txids(node: &NodeProcess) -> Vec<String> {
    let info = node.rpc("mempool_getInfo", json!([])).unwrap();
    info["txids"].as_array().unwrap().iter().map(|t| t.as_str().unwrap().to_string()).collect()
}

fn tx_status(node: &NodeProcess, txid: &str) -> String {
    let v = node.rpc("chain_getTransaction", json!([txid])).unwrap();
    v["status"].as_str().unwrap_or("unknown").to_string()
}

/// Waits until every txid is confirmed on the node's best chain.
fn wait_all_confirmed(node: &NodeProcess, txids: &[String], timeout: Duration) {
    wait_until(timeout, "the transfers to confirm", || {
        Ok(txids.iter().all(|t| tx_status(node, t) == "confirmed").then_some(()))
    });
}

#[test]
fn eight_parallel_sends_from_one_address_get_consecutive_nonces() {
    let node = NodeProcess::start_dev(bin("cairn-node"), &[]);
    let rpc = node.url();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wallet");
    let from = import_dev(&rpc, &dir, 3);

    // Eight processes started at once, none waiting for another.
    let children: Vec<_> = (0..8u64)
        .map(|i| {
            Command::new(bin("cairn-wallet"))
                .arg("--rpc")
                .arg(&rpc)
                .arg("--wallet-dir")
                .arg(&dir)
                .args(["--json", "send", "--from", &from, "--to", &dev_address(4), "--amount"])
                .arg((1_000 + i).to_string())
                .env("CAIRN_WALLET_PASSWORD", PW)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut nonces = Vec::new();
    let mut txids = Vec::new();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "a parallel send failed: {}", String::from_utf8_lossy(&out.stderr));
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        nonces.push(u64_of(&v, "nonce"));
        txids.push(v["txid"].as_str().unwrap().to_string());
    }
    nonces.sort();
    assert_eq!(nonces, (0..8).collect::<Vec<u64>>());
    wait_all_confirmed(&node, &txids, Duration::from_secs(90));
    assert_eq!(u64_of(&account(&node, &from), "nonce"), 8);
}

#[test]
fn a_taken_nonce_is_refused_in_words_and_replace_takes_its_place() {
    // No miner: transfers stay pending.
    let node = NodeProcess::start_dev(bin("cairn-node"), &["--no-mine"]);
    let rpc = node.url();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wallet");
    let from = import_dev(&rpc, &dir, 3);
    let to = dev_address(4);

    let first = wallet_json(
        &rpc,
        &dir,
        PW,
        &["send", "--from", &from, "--to", &to, "--amount", "100", "--fee", "1000"],
        None,
    )
    .unwrap();
    let first_txid = first["txid"].as_str().unwrap().to_string();
    assert_eq!(u64_of(&first, "nonce"), 0);

    // `--nonce 0` again without a fee that pays for a replacement: refused before
    // anything is signed, naming the transfer that holds the nonce and the two ways on.
    let err =
        wallet_fails(&rpc, &dir, &["send", "--from", &from, "--to", &to, "--amount", "5", "--nonce", "0"]);
    assert!(err.contains(&format!("nonce 0 of {from} is taken by pending transfer {first_txid}")), "{err}");
    assert!(err.contains("fee 1,000"), "{err}");
    assert!(err.contains(&format!("--replace {first_txid}")), "{err}");
    assert!(err.contains("minimum replacement fee, 1,001"), "{err}");
    assert!(err.contains("leave out --nonce") && err.contains("next free nonce (1)"), "{err}");
    assert_eq!(pool_txids(&node), vec![first_txid.clone()], "nothing was sent");

    // A nonce ahead of the next free one, and one already confirmed-or-gapped: clear too.
    let err =
        wallet_fails(&rpc, &dir, &["send", "--from", &from, "--to", &to, "--amount", "5", "--nonce", "5"]);
    assert!(err.contains("gap") && err.contains("next free nonce of") && err.contains(" is 1"), "{err}");

    // The first way forward: --replace, the wallet computing the minimum fee.
    let replaced = wallet_json(
        &rpc,
        &dir,
        PW,
        &["send", "--from", &from, "--to", &to, "--amount", "5", "--replace", &first_txid],
        None,
    )
    .unwrap();
    assert_eq!(replaced["replaced"], json!(first_txid));
    assert_eq!(u64_of(&replaced, "nonce"), 0);
    assert_eq!(u64_of(&replaced, "fee"), 1_001, "{replaced}");
    let second_txid = replaced["txid"].as_str().unwrap().to_string();
    assert_eq!(pool_txids(&node), vec![second_txid.clone()]);

    // `--replace` with a fee below that minimum is refused with the minimum.
    let err = wallet_fails(
        &rpc,
        &dir,
        &["send", "--from", &from, "--to", &to, "--amount", "5", "--replace", &second_txid, "--fee", "1001"],
    );
    assert!(err.contains("must pay at least 1,002"), "{err}");

    // `--nonce N` with a fee that pays for it is a deliberate replacement.
    let third = wallet_json(
        &rpc,
        &dir,
        PW,
        &["send", "--from", &from, "--to", &to, "--amount", "6", "--nonce", "0", "--fee", "5000"],
        None,
    )
    .unwrap();
    assert_eq!(third["replaced"], json!(second_txid));

    // The second way forward: no --nonce takes the next free one.
    let next =
        wallet_json(&rpc, &dir, PW, &["send", "--from", &from, "--to", &to, "--amount", "5"], None).unwrap();
    assert_eq!(u64_of(&next, "nonce"), 1);
    assert_eq!(pool_txids(&node).len(), 2);
}

/// A fresh recipient address for line `i` of a batch (nobody holds its key).
fn recipient(i: usize) -> String {
    let mut bytes = [0xa0u8; 20];
    bytes[..8].copy_from_slice(&(i as u64).to_be_bytes());
    cairn_core::Address(bytes).to_text()
}

#[test]
fn send_many_pays_200_recipients_in_line_order() {
    let node = NodeProcess::start_dev(bin("cairn-node"), &[]);
    let rpc = node.url();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wallet");
    let from = import_dev(&rpc, &dir, 3);

    // A CSV header, a comment and a blank line, then 200 `to,amount` lines (from file
    // line 4 on).
    let mut file = String::from("to,amount\n# monthly payouts\n\n");
    for i in 0..200 {
        file.push_str(&format!("{},{}\n", recipient(i), 1_000 + i));
    }
    let path = tmp.path().join("payouts.csv");
    std::fs::write(&path, &file).unwrap();

    let out = wallet(
        &rpc,
        &dir,
        PW,
        &["--json", "send-many", "--from", &from, path.to_str().unwrap(), "--wait", "--timeout", "120"],
        None,
    )
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "send-many failed: {stderr}");
    let objects: Vec<Value> =
        String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(objects.len(), 200);
    let mut last_height = 0;
    for (i, o) in objects.iter().enumerate() {
        // One object per input line, in line order, with consecutive nonces.
        assert_eq!(u64_of(o, "line"), i as u64 + 4, "{o}");
        assert_eq!(o["to"], json!(recipient(i)), "{o}");
        assert_eq!(u64_of(o, "nonce"), i as u64, "{o}");
        assert_eq!(o["status"], json!("confirmed"), "{o}");
        let height = u64_of(o, "height");
        assert!(height >= last_height, "line {} confirmed before the line above it: {o}", i + 4);
        last_height = height;
        assert_eq!(tx_status(&node, o["txid"].as_str().unwrap()), "confirmed");
    }
    for i in [0, 99, 199] {
        assert_eq!(node.balance(&recipient(i)).unwrap(), 1_000 + i as u64);
    }
    assert_eq!(u64_of(&account(&node, &from), "nonce"), 200);

    // Text mode, from standard input: one line per transfer.
    let out = wallet(
        &rpc,
        &dir,
        PW,
        &["send-many", "--from", &from, "-"],
        Some(&format!("{} 5\n{} 6\n", recipient(500), recipient(501))),
    )
    .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(lines[0].starts_with("line 1: sent 5 to ") && lines[0].contains("nonce 200"), "{text}");
    assert!(lines[1].starts_with("line 2: sent 6 to ") && lines[1].contains("nonce 201"), "{text}");
}

#[test]
fn send_many_with_a_bad_line_sends_nothing() {
    let node = NodeProcess::start_dev(bin("cairn-node"), &["--no-mine"]);
    let rpc = node.url();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wallet");
    let from = import_dev(&rpc, &dir, 3);
    let before = account(&node, &from);

    let mut typo: Vec<char> = recipient(36).chars().collect();
    typo[7] = if typo[7] == '0' { '1' } else { '0' };
    let typo: String = typo.into_iter().collect();
    let mut file = String::new();
    for i in 0..50 {
        let to = if i == 36 { typo.clone() } else { recipient(i) };
        file.push_str(&format!("{to} {}\n", 10 + i));
    }
    let out = wallet(&rpc, &dir, PW, &["send-many", "--from", &from, "-"], Some(&file)).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(out.stdout.is_empty(), "{}", String::from_utf8_lossy(&out.stdout));
    assert!(stderr.contains("1 bad line; nothing was signed or sent"), "{stderr}");
    assert!(
        stderr.contains(&format!("line 37: bad address `{typo}`")) && stderr.contains("checksum"),
        "{stderr}"
    );
    // The node saw nothing: same nonces, empty pool.
    assert_eq!(account(&node, &from), before);
    assert!(pool_txids(&node).is_empty());
}

/// Signs a transfer of dev account `i` and submits it with tx_submit.
fn submit_dev_transfer(node: &NodeProcess, i: usize, nonce: u64, fee: u64) -> String {
    let key = &cairn_core::genesis::dev_keys()[i];
    let signed = cairn_core::Transfer {
        chain_id: cairn_core::genesis::DEV_CHAIN_ID,
        nonce,
        from: cairn_core::transaction::public_key_of(key),
        to: cairn_core::Address([0x55; 20]),
        amount: cairn_core::Amount(1),
        fee: cairn_core::Amount(fee),
    }
    .sign(key)
    .unwrap();
    let hex = hex::encode(cairn_core::encoding::encode(&signed));
    node.rpc("tx_submit", json!([hex])).unwrap().as_str().unwrap().to_string()
}

#[test]
fn auto_fee_is_the_minimum_on_an_empty_pool_and_more_on_a_full_one() {
    // Room for a handful of transfers, and no miner to empty the pool.
    let node = NodeProcess::start_dev(bin("cairn-node"), &["--no-mine", "--mempool-max-bytes", "1000"]);
    let rpc = node.url();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wallet");
    let from = import_dev(&rpc, &dir, 3);
    let estimate = node.rpc("mempool_estimateFee", json!([])).unwrap();
    let min_fee = u64_of(&estimate, "min_fee");
    assert_eq!(u64_of(&estimate, "fee"), min_fee, "{estimate}");

    // Empty pool: the minimum, shown before sending and stated after.
    let out =
        wallet(&rpc, &dir, PW, &["send", "--from", &from, "--to", &dev_address(4), "--amount", "7"], None)
            .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains(&format!("fee {min_fee} (auto: the node's minimum fee")), "{stderr}");
    assert!(stdout.contains(&format!("(fee {min_fee}, nonce 0)")), "{stdout}");

    // Fill the pool with better-paying transfers from other accounts until a newcomer
    // would have to evict something.
    let mut fee = 5_000;
    for i in [1, 2, 4, 5, 6, 7, 8, 9] {
        let e = node.rpc("mempool_estimateFee", json!([from])).unwrap();
        if u64_of(&e, "admit_fee") > min_fee {
            break;
        }
        submit_dev_transfer(&node, i, 0, fee);
        fee += 100;
    }
    let estimate = node.rpc("mempool_estimateFee", json!([from])).unwrap();
    let auto = u64_of(&estimate, "fee");
    assert!(auto > 5_000, "the estimate outbids the lowest of the others: {estimate}");

    // The wallet pays that, and the node admits it (evicting the lowest).
    let sent = wallet_json(
        &rpc,
        &dir,
        PW,
        &["send", "--from", &from, "--to", &dev_address(4), "--amount", "8"],
        None,
    )
    .unwrap();
    assert_eq!(u64_of(&sent, "fee"), auto, "{sent}");
    assert!(u64_of(&sent, "fee") > min_fee);
    assert_eq!(sent["fee_auto"], json!(true));
    assert!(pool_txids(&node).contains(&sent["txid"].as_str().unwrap().to_string()));
    // A fixed fee at the minimum is refused by a full pool, and the wallet says why.
    let err = wallet_fails(
        &rpc,
        &dir,
        &["send", "--from", &from, "--to", &dev_address(4), "--amount", "9", "--fee", &min_fee.to_string()],
    );
    assert!(err.contains("mempool full"), "{err}");
}

#[test]
fn wait_counts_confirmations() {
    let node = NodeProcess::start_dev(bin("cairn-node"), &[]);
    let rpc = node.url();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wallet");
    let from = import_dev(&rpc, &dir, 3);
    let sent = wallet_json(
        &rpc,
        &dir,
        PW,
        &[
            "send",
            "--from",
            &from,
            "--to",
            &dev_address(4),
            "--amount",
            "10",
            "--wait",
            "--confirmations",
            "3",
        ],
        None,
    )
    .unwrap();
    assert!(u64_of(&sent, "confirmations") >= 3, "{sent}");
    // Three blocks: its own and two on top, on the node's best chain.
    assert!(node.height().unwrap() >= u64_of(&sent, "height") + 2, "{sent}");
    let status = node.rpc("chain_getTransaction", json!([sent["txid"]])).unwrap();
    assert_eq!(status["block_hash"], sent["block_hash"]);
    // --confirmations needs --wait, and 0 is not a number of confirmations.
    let err = wallet_fails(
        &rpc,
        &dir,
        &["send", "--from", &from, "--to", &from, "--amount", "1", "--confirmations", "2"],
    );
    assert!(err.contains("--wait"), "{err}");
}

/// Starts `cairn-wallet ARGS` without waiting for it.
fn spawn_wallet(rpc: &str, dir: &Path, args: &[&str]) -> std::process::Child {
    Command::new(bin("cairn-wallet"))
        .arg("--rpc")
        .arg(rpc)
        .arg("--wallet-dir")
        .arg(dir)
        .args(args)
        .env("CAIRN_WALLET_PASSWORD", PW)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits until the pool holds exactly `n` transfers, and returns their txids.
fn wait_pool_len(node: &NodeProcess, n: usize) -> Vec<String> {
    wait_until(Duration::from_secs(30), "the pool to fill", || {
        let ids = pool_txids(node);
        Ok((ids.len() == n).then_some(ids))
    })
}

#[test]
fn wait_says_when_a_transfer_left_the_pool_without_being_mined() {
    let node = NodeProcess::start_dev(bin("cairn-node"), &["--no-mine", "--mempool-max-bytes", "1000"]);
    let rpc = node.url();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wallet");
    let from = import_dev(&rpc, &dir, 3);
    let to = dev_address(4);

    // Nothing mines: the wait ends at its timeout and says the transfer is still pending.
    let err = wallet_fails(
        &rpc,
        &dir,
        &["send", "--from", &from, "--to", &to, "--amount", "1", "--wait", "--timeout", "1"],
    );
    assert!(err.contains("is not confirmed after 1 s (pending)"), "{err}");
    let first = pool_txids(&node)[0].clone();

    // Replaced: one process waits for a transfer, another replaces it.
    let waiter = spawn_wallet(
        &rpc,
        &dir,
        &["send", "--from", &from, "--to", &to, "--amount", "2", "--wait", "--timeout", "60"],
    );
    let waited = wait_pool_len(&node, 2).into_iter().find(|t| *t != first).unwrap();
    let replaced = wallet_json(
        &rpc,
        &dir,
        PW,
        &["send", "--from", &from, "--to", &to, "--amount", "3", "--replace", &waited],
        None,
    )
    .unwrap();
    let out = waiter.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains(&format!("transfer {waited} left the pool without being mined")), "{stderr}");
    assert!(
        stderr.contains(&format!("replaced by pending transfer {}", replaced["txid"].as_str().unwrap())),
        "{stderr}"
    );

    // Evicted: a cheap transfer from another account waits; better-paying ones fill the
    // pool and push it out.
    let cheap_from = import_dev(&rpc, &dir, 9);
    let waiter = spawn_wallet(
        &rpc,
        &dir,
        &[
            "send",
            "--from",
            &cheap_from,
            "--to",
            &to,
            "--amount",
            "4",
            "--fee",
            "2",
            "--wait",
            "--timeout",
            "60",
        ],
    );
    let before = pool_txids(&node);
    let cheap = wait_until(Duration::from_secs(30), "the cheap transfer to be pending", || {
        Ok(pool_txids(&node).into_iter().find(|t| !before.contains(t)))
    });
    let mut fee = 10_000;
    for i in [1, 2, 4, 5, 6, 7, 8] {
        if !pool_txids(&node).contains(&cheap) {
            break;
        }
        submit_dev_transfer(&node, i, 0, fee);
        fee += 100;
    }
    assert!(!pool_txids(&node).contains(&cheap), "the cheap transfer was not evicted");
    let out = waiter.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains(&format!("transfer {cheap} left the pool without being mined")), "{stderr}");
    assert!(stderr.contains("evicted from a full pool"), "{stderr}");
}

/// A child process killed (SIGKILL) and reaped when the test ends, also when it fails.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_send_waits_for_the_address_lock_and_a_killed_holder_leaves_none_behind() {
    let node = NodeProcess::start_dev(bin("cairn-node"), &["--no-mine"]);
    let rpc = node.url();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wallet");
    let from = import_dev(&rpc, &dir, 3);
    // Another process holds the address's lock: a shell takes it with util-linux `flock`
    // (the same flock(2)) on fd 9, then becomes `sleep` with fd 9 still open.
    let lock = dir.join("nonces").join(format!("{from}.lock"));
    std::fs::create_dir_all(lock.parent().unwrap()).unwrap();
    let ready = tmp.path().join("locked");
    let script =
        format!("exec 9>'{}' && flock 9 && touch '{}' && exec sleep 120", lock.display(), ready.display());
    let mut holder = KillOnDrop(Command::new("sh").args(["-c", &script]).spawn().unwrap());
    wait_until(Duration::from_secs(10), "the other process to hold the lock", || {
        Ok(ready.exists().then_some(()))
    });

    let stderr_path = tmp.path().join("send.stderr");
    let mut send = KillOnDrop(
        Command::new(bin("cairn-wallet"))
            .arg("--rpc")
            .arg(&rpc)
            .arg("--wallet-dir")
            .arg(&dir)
            .args(["send", "--from", &from, "--to", &dev_address(4), "--amount", "1"])
            .env("CAIRN_WALLET_PASSWORD", PW)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr_path).unwrap())
            .spawn()
            .unwrap(),
    );
    // It waits and says so, and sends nothing while the lock is held...
    let waiting = format!("waiting for another cairn-wallet process that is sending from {from}");
    wait_until(Duration::from_secs(20), "the send to say it waits for the lock", || {
        Ok(std::fs::read_to_string(&stderr_path)?.contains(&waiting).then_some(()))
    });
    assert!(send.0.try_wait().unwrap().is_none(), "the send did not wait for the lock");
    assert!(pool_txids(&node).is_empty());
    // ...and goes on once the holder is killed: the OS released its lock.
    holder.0.kill().unwrap();
    holder.0.wait().unwrap();
    let status = wait_until(Duration::from_secs(30), "the send to finish", || Ok(send.0.try_wait()?));
    assert!(status.success(), "{}", std::fs::read_to_string(&stderr_path).unwrap());
    assert_eq!(pool_txids(&node).len(), 1);
}
