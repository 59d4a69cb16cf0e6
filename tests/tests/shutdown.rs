//! A clean shutdown, against real node processes.
//!
//! `sigterm_and_sigint_stop_the_node_cleanly`: a mining `--dev` node with a real peer
//! connected and one peer banned gets SIGTERM. It exits with status 0 within 5 s, its
//! last log line is `shutdown complete`, `peers.json` and `bans.json` were written again
//! after the signal (holding the peer and the ban), and `cairn-node check-db` finds the data
//! dir consistent at once. Started again on the same data dir, it resumes at the height
//! it stopped at, and stops just as cleanly on SIGINT.

#![allow(clippy::unwrap_used)]

use cairn_core::genesis::Genesis;
use cairn_tests::adversary::{magic_of, Peer};
use cairn_tests::{bin, rpc, wait_until, NodeOptions, NodeProcess};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant, SystemTime};

/// A `cairn-node --dev` process with its own data dir and log, for the signals and the
/// exit status (the shared harness only kills).
struct Node {
    child: Option<Child>,
    log: PathBuf,
    rpc_url: String,
    p2p_addr: std::net::SocketAddr,
}

impl Node {
    fn start(data_dir: &Path, peer: std::net::SocketAddr, run: u32) -> Node {
        let log = data_dir.with_file_name(format!("node-run{run}.log"));
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(bin("cairn-node"))
            .args(["--dev", "--data-dir"])
            .arg(data_dir)
            .args(["--listen", "127.0.0.1:0", "--rpc-addr", "127.0.0.1:0", "--peer", &peer.to_string()])
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap();
        let mut node = Node { child: Some(child), log, rpc_url: String::new(), p2p_addr: peer };
        let (rpc_url, p2p) = wait_until(Duration::from_secs(60), "the node's addresses", || {
            if let Some(status) = node.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                anyhow::bail!("node exited early with {status}: {}", node.log_text());
            }
            let text = node.log_text();
            Ok(word_after(&text, "RPC listening on ").zip(word_after(&text, "P2P listening on ")))
        });
        node.rpc_url = rpc_url;
        node.p2p_addr = p2p.parse().unwrap();
        node
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn info(&self) -> anyhow::Result<serde_json::Value> {
        rpc(&self.rpc_url, "chain_getInfo", json!([]))
    }

    /// Sends `signal` and waits up to `limit` for the exit; the status and how long it took.
    fn signal_and_wait(&mut self, signal: i32, limit: Duration) -> (ExitStatus, Duration) {
        let child = self.child.as_mut().unwrap();
        let sent = Instant::now();
        #[allow(unsafe_code)] // plain kill(2) on our own child's pid
        unsafe {
            libc::kill(child.id() as i32, signal);
        }
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                self.child = None;
                return (status, sent.elapsed());
            }
            assert!(sent.elapsed() < limit, "the node did not exit within {limit:?}:\n{}", self.log_text());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The last line of the log, without colour codes.
    fn last_log_line(&self) -> String {
        let text = self.log_text();
        let line = text.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or_default();
        strip_ansi(line)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn word_after(text: &str, marker: &str) -> Option<String> {
    let rest = &text[text.find(marker)? + marker.len()..];
    let word: String = rest.chars().take_while(|c| !c.is_whitespace()).collect();
    (!word.is_empty()).then_some(word)
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn modified(path: &Path) -> SystemTime {
    std::fs::metadata(path).and_then(|m| m.modified()).unwrap_or(SystemTime::UNIX_EPOCH)
}

fn check_db(data_dir: &Path) -> std::process::Output {
    Command::new(bin("cairn-node")).args(["check-db", "--dev", "--data-dir"]).arg(data_dir).output().unwrap()
}

fn height(node: &Node) -> u64 {
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
    let mut node = Node::start(&data_dir, peer.p2p_addr, 1);

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

    let (status, took) = node.signal_and_wait(libc::SIGTERM, Duration::from_secs(5));
    assert!(status.success(), "exit status {status} after SIGTERM:\n{}", node.log_text());
    assert!(took < Duration::from_secs(5), "took {took:?}");
    let last = node.last_log_line();
    assert!(last.ends_with("shutdown complete"), "last log line: {last:?}\n{}", node.log_text());
    for (name, before) in ["peers.json", "bans.json"].into_iter().zip(saved_before) {
        assert!(modified(&data_dir.join(name)) > before, "{name} not written at shutdown");
    }
    let peers = std::fs::read_to_string(data_dir.join("peers.json")).unwrap();
    assert!(peers.contains(&peer.p2p_addr.to_string()), "peers.json lacks {}: {peers}", peer.p2p_addr);
    let bans = std::fs::read_to_string(data_dir.join("bans.json")).unwrap();
    assert!(bans.contains(&bad_local.to_string()), "bans.json lacks {bad_local}: {bans}");

    let out = check_db(&data_dir);
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && report.contains("consistent"), "check-db: {report}");

    // Again on the same data dir: it resumes where it stopped, and SIGINT stops it too.
    let mut node = Node::start(&data_dir, peer.p2p_addr, 2);
    wait_until(Duration::from_secs(30), "the restarted node's RPC", || Ok(node.info().ok()));
    assert!(height(&node) >= height_before, "restarted below height {height_before}");
    let (status, _) = node.signal_and_wait(libc::SIGINT, Duration::from_secs(5));
    assert!(status.success(), "exit status {status} after SIGINT:\n{}", node.log_text());
    let last = node.last_log_line();
    assert!(last.ends_with("shutdown complete"), "last log line: {last:?}");
    let out = check_db(&data_dir);
    assert!(out.status.success(), "check-db after SIGINT: {}", String::from_utf8_lossy(&out.stdout));
}
