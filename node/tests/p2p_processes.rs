//! Real `cairn-node` processes on loopback: three nodes (one mining, two with one
//! `--peer` each) reach the same tip and learn each other's addresses; a node restarted
//! after the others moved on catches up. Every wait polls with a deadline; children are
//! killed by a Drop guard.
#![allow(clippy::unwrap_used)] // test helpers fail loudly

use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct NodeProc {
    child: Child,
    rpc: String,
    p2p: String,
    log: PathBuf,
}

impl Drop for NodeProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(dir: &Path, extra: &[&str]) -> NodeProc {
    std::fs::create_dir_all(dir).expect("data dir");
    let log =
        dir.join(format!("stdout-{}.log", Instant::now().elapsed().as_nanos() ^ std::process::id() as u128));
    let out = std::fs::File::create(&log).expect("log file");
    let err = out.try_clone().expect("log file");
    let mut args = vec![
        "--dev",
        "--data-dir",
        dir.to_str().expect("utf-8 path"),
        "--listen",
        "127.0.0.1:0",
        "--rpc-addr",
        "127.0.0.1:0",
    ];
    args.extend_from_slice(extra);
    let child = Command::new(env!("CARGO_BIN_EXE_cairn-node"))
        .args(&args)
        .env("RUST_LOG", "info")
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err))
        .spawn()
        .expect("spawn cairn-node");
    let mut node = NodeProc { child, rpc: String::new(), p2p: String::new(), log };
    let (rpc, p2p) = wait(Duration::from_secs(60), "node start", || {
        let text = std::fs::read_to_string(&node.log).unwrap_or_default();
        let find = |m: &str| text.lines().find_map(|l| l.split(m).nth(1).map(|s| s.trim().to_string()));
        find("RPC listening on http://").zip(find("P2P listening on "))
    });
    node.rpc = rpc;
    node.p2p = p2p;
    node
}

fn wait<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One JSON-RPC call over a hand-written HTTP/1.1 POST.
fn rpc(addr: &str, method: &str, params: Value) -> Option<Value> {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).to_string();
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let req = format!(
        "POST / HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).ok()?;
    let mut resp = String::new();
    s.read_to_string(&mut resp).ok()?;
    let start = resp.find("\r\n\r\n")? + 4;
    let v: Value = serde_json::from_str(resp[start..].trim()).ok()?;
    v.get("result").cloned()
}

fn info(n: &NodeProc) -> Option<Value> {
    rpc(&n.rpc, "chain_getInfo", json!([]))
}

fn height(n: &NodeProc) -> u64 {
    info(n).and_then(|i| i["height"].as_u64()).unwrap_or(0)
}

fn peer_ports(n: &NodeProc) -> Vec<String> {
    rpc(&n.rpc, "net_peers", json!([]))
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter_map(|p| p["addr"].as_str().map(str::to_string))
        .collect()
}

fn same_tip(nodes: &[&NodeProc], min_height: u64) -> bool {
    let infos: Vec<Value> = nodes.iter().filter_map(|n| info(n)).collect();
    infos.len() == nodes.len()
        && infos.iter().all(|i| i["best_hash"] == infos[0]["best_hash"])
        && infos[0]["height"].as_u64().unwrap_or(0) >= min_height
}

#[test]
fn three_processes_share_a_tip_and_a_restarted_node_catches_up() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let a = start(&tmp.path().join("a"), &[]);
    let b = start(&tmp.path().join("b"), &["--no-mine", "--peer", &a.p2p]);
    let c_dir = tmp.path().join("c");
    let c = start(&c_dir, &["--no-mine", "--peer", &b.p2p]);

    wait(Duration::from_secs(60), "three nodes on one tip at height >= 3", || {
        same_tip(&[&a, &b, &c], 3).then_some(())
    });
    // Peer exchange: each node knows (is connected to) both others, though A was told
    // of nobody and C only of B.
    wait(Duration::from_secs(60), "full mesh", || {
        let ok = [(&a, [&b.p2p, &c.p2p]), (&b, [&a.p2p, &c.p2p]), (&c, [&a.p2p, &b.p2p])].iter().all(
            |(n, others)| {
                let peers = peer_ports(n);
                others.iter().all(|o| peers.iter().any(|p| p == *o))
            },
        );
        ok.then_some(())
    });

    // Stop C, let the others move on, restart C: it catches up.
    let c_height = height(&c);
    drop(c);
    let target = c_height + 5;
    wait(Duration::from_secs(60), "A and B move on", || {
        (height(&a) >= target && same_tip(&[&a, &b], target)).then_some(())
    });
    let c = start(&c_dir, &["--no-mine", "--peer", &b.p2p]);
    wait(Duration::from_secs(60), "restarted C catches up", || {
        let goal = height(&a);
        (height(&c) >= goal.min(target)).then_some(())
    });
    assert!(c_dir.join("peers.json").exists(), "address book saved");
    drop((a, b, c));
}
