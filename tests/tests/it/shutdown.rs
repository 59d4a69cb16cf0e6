//! A clean shutdown, against real node processes.
//!
//! `sigterm_and_sigint_stop_the_node_cleanly`: a mining `--dev` node with a real peer
//! connected and one peer banned gets SIGTERM. It exits with status 0 within 5 s, its
//! last log line is `shutdown complete`, `peers.json` and `bans.json` were written again
//! after the signal (holding the peer and the ban), the database was closed (`database
//! closed` logged, no write-ahead log left to replay), and `cairn-node check-db` finds the
//! data dir consistent at once. Started again on the same data dir, it resumes at the
//! height it stopped at, and stops just as cleanly on SIGINT.
//!
//! `a_port_already_taken_stops_the_node_cleanly_at_start`: the RPC or the metrics port
//! taken: exit status 1 with the address in the error, and the same clean close.

#![allow(clippy::unwrap_used)]

use cairn_core::genesis::Genesis;
use cairn_tests::adversary::{magic_of, Peer};
use cairn_tests::{bin, strip_ansi, wait_until, NodeOptions, NodeProcess};
use std::path::Path;
use std::process::{Command, ExitStatus};
use std::time::{Duration, Instant, SystemTime};

/// The last non-empty line of the node's log (stderr), without colour codes.
fn last_log_line(node: &NodeProcess) -> String {
    let text = std::fs::read_to_string(&node.log).unwrap_or_default();
    let line = text.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or_default();
    strip_ansi(line)
}

/// Sends `signal` and waits up to `limit` for the exit: the status and how long it took.
fn signal_and_wait(node: &mut NodeProcess, signal: i32, limit: Duration) -> (ExitStatus, Duration) {
    let sent = Instant::now();
    node.signal(signal);
    let status = node.wait_exit(limit);
    let took = sent.elapsed();
    let status =
        status.unwrap_or_else(|| panic!("the node did not exit within {limit:?}:\n{}", node.log_text()));
    (status, took)
}

fn modified(path: &Path) -> SystemTime {
    std::fs::metadata(path).and_then(|m| m.modified()).unwrap_or(SystemTime::UNIX_EPOCH)
}

/// The node let go of the database before exiting: it logged `database closed` (the last
/// reference to the node was dropped), and RocksDB flushed its memtables on close, so
/// the write-ahead log files it leaves are empty and the next open replays nothing.
fn assert_closed_cleanly(node: &NodeProcess, data_dir: &Path) {
    let log = node.log_text();
    assert!(log.contains("database closed"), "no `database closed` in the log:\n{log}");
    for entry in std::fs::read_dir(data_dir.join("chain")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "log") {
            let len = std::fs::metadata(&path).unwrap().len();
            assert_eq!(len, 0, "{} holds {len} bytes of WAL after a clean shutdown", path.display());
        }
    }
}

fn check_db(data_dir: &Path) -> std::process::Output {
    Command::new(bin("cairn-node")).args(["check-db", "--dev", "--data-dir"]).arg(data_dir).output().unwrap()
}

fn height(node: &NodeProcess) -> u64 {
    node.info().ok().and_then(|i| i["height"].as_u64()).unwrap_or(0)
}

#[test]
fn sigterm_and_sigint_stop_the_node_cleanly() {
    let tmp = tempfile::tempdir().unwrap();
    let peer =
        NodeProcess::start(&tmp.path().join("peer"), &NodeOptions { dev: true, ..NodeOptions::default() })
            .unwrap();
    let data_dir = tmp.path().join("node");
    std::fs::create_dir_all(&data_dir).unwrap();
    let opts = NodeOptions { dev: true, mine: true, peers: vec![peer.p2p_addr], ..NodeOptions::default() };
    let mut node = NodeProcess::start(&data_dir, &opts).unwrap();

    // A real peer connected, a few mined blocks, and the first address-book save done.
    wait_until(Duration::from_secs(60), "a connected peer and height 2", || {
        let info = node.info()?;
        let peers = info["peers"].as_u64().unwrap_or(0);
        Ok((peers >= 1 && info["height"].as_u64().unwrap_or(0) >= 2).then_some(()))
    });
    wait_until(Duration::from_secs(30), "the first save of peers.json", || {
        Ok(data_dir.join("peers.json").exists().then_some(()))
    });
    // A peer that sends an unknown command is banned (in memory; saved later).
    let genesis = Genesis::dev();
    let mut bad = Peer::connect(node.p2p_addr, magic_of(&genesis)).unwrap();
    let bad_local = bad.local;
    bad.send(200, &[]).unwrap();
    wait_until(Duration::from_secs(10), "the bad peer dropped", || {
        Ok(node.log_text().contains("banning peer").then_some(()))
    });
    let height_before = height(&node);
    // (File times come from the kernel's coarse clock, a few ms behind the system
    // clock: what shows a write at shutdown is that they changed.)
    let saved_before = ["peers.json", "bans.json"].map(|name| modified(&data_dir.join(name)));

    let (status, took) = signal_and_wait(&mut node, libc::SIGTERM, Duration::from_secs(5));
    assert!(status.success(), "exit status {status} after SIGTERM:\n{}", node.log_text());
    assert!(took < Duration::from_secs(5), "took {took:?}");
    let last = last_log_line(&node);
    assert!(last.ends_with("shutdown complete"), "last log line: {last:?}\n{}", node.log_text());
    for (name, before) in ["peers.json", "bans.json"].into_iter().zip(saved_before) {
        assert!(modified(&data_dir.join(name)) > before, "{name} not written at shutdown");
    }
    let peers = std::fs::read_to_string(data_dir.join("peers.json")).unwrap();
    assert!(peers.contains(&peer.p2p_addr.to_string()), "peers.json lacks {}: {peers}", peer.p2p_addr);
    let bans = std::fs::read_to_string(data_dir.join("bans.json")).unwrap();
    assert!(bans.contains(&bad_local.to_string()), "bans.json lacks {bad_local}: {bans}");
    assert_closed_cleanly(&node, &data_dir);

    let out = check_db(&data_dir);
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && report.contains("consistent"), "check-db: {report}");

    // Again on the same data dir: it resumes where it stopped, and SIGINT stops it too.
    node.restart().unwrap();
    assert!(height(&node) >= height_before, "restarted below height {height_before}");
    let (status, _) = signal_and_wait(&mut node, libc::SIGINT, Duration::from_secs(5));
    assert!(status.success(), "exit status {status} after SIGINT:\n{}", node.log_text());
    let last = last_log_line(&node);
    assert!(last.ends_with("shutdown complete"), "last log line: {last:?}");
    assert_closed_cleanly(&node, &data_dir);
    let out = check_db(&data_dir);
    assert!(out.status.success(), "check-db after SIGINT: {}", String::from_utf8_lossy(&out.stdout));
}

/// A port already taken (RPC, then metrics: both start after P2P) stops the node at
/// start with an error that names the address, exit status 1, and still a clean close:
/// P2P stopped, `database closed` logged, no warning that something held the node, and a
/// data dir that `check-db` finds consistent.
#[test]
fn a_port_already_taken_stops_the_node_cleanly_at_start() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().to_string();
    for option in ["--rpc-addr", "--metrics-addr"] {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let data_arg = data.to_str().unwrap();
        let mut args = vec!["--dev", "--no-mine", "--data-dir", data_arg, "--listen", "127.0.0.1:0"];
        if option == "--metrics-addr" {
            args.extend(["--rpc-addr", "127.0.0.1:0"]);
        }
        args.extend([option, port.as_str()]);
        let out = Command::new(bin("cairn-node")).args(&args).output().unwrap();
        let log = strip_ansi(&String::from_utf8_lossy(&out.stderr));
        assert_eq!(out.status.code(), Some(1), "{option}: {log}");
        let what = if option == "--rpc-addr" { "RPC" } else { "metrics" };
        assert!(log.contains(&format!("cannot listen for {what} on {port}")), "{option}: {log}");
        assert!(log.contains("P2P stopped"), "{option}: {log}");
        assert!(log.contains("database closed"), "{option}: {log}");
        assert!(!log.contains("still referenced"), "{option}: {log}");
        let check = Command::new(bin("cairn-node"))
            .args(["check-db", "--dev", "--data-dir", data_arg])
            .output()
            .unwrap();
        assert!(check.status.success(), "{option}: check-db: {}", String::from_utf8_lossy(&check.stderr));
    }
}
