//! Connections under real network faults, against real node processes: every way a
//! connection can end leaves no socket behind, and a link that goes silent is noticed
//! and comes back on time.
//!
//! - `churn_leaves_no_socket_behind`: 1,000 connections closed in every way (FIN, RST,
//!   after the handshake or before, duplicates, dropped by the node, banned, timed out)
//!   against one node; its open fds return to where they started, none of its sockets
//!   is left in CLOSE-WAIT, and its socket count agrees with its peers at every check.
//! - `silent_link_is_dropped_and_heals`: two nodes across a veth link into a network
//!   namespace; an nftables rule drops their traffic (no reset, just silence). Both
//!   drop the other within 45 s and reconnect within 5 s once the rule is removed.
//!   Needs root, `ip` (iproute2) and `nft` (nftables): `scripts/setup.sh --test` installs them.

use cairn_core::genesis::Genesis;
use cairn_tests::adversary::{cmd, magic_of, Closed, Peer, VersionFields};
use cairn_tests::{wait_until, write_fast_genesis, NodeOptions, NodeProcess};
use std::collections::HashSet;
use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

/// Open file descriptors of process `pid`.
fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0)
}

/// The inodes of the sockets process `pid` has open.
fn socket_inodes(pid: u32) -> HashSet<u64> {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) else { return HashSet::new() };
    dir.filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter_map(|l| {
            let l = l.to_string_lossy().to_string();
            l.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
        })
        .collect()
}

/// Sockets of process `pid` in TCP state `state` (hex, as in /proc/net/tcp: 08 is
/// CLOSE-WAIT), as "local remote" text.
fn sockets_in_state(pid: u32, state: &str) -> Vec<String> {
    let mine = socket_inodes(pid);
    let mut out = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = std::fs::read_to_string(table).unwrap_or_default();
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() > 9 && f[3] == state && f[9].parse::<u64>().is_ok_and(|i| mine.contains(&i)) {
                out.push(format!("{} {}", f[1], f[2]));
            }
        }
    }
    out
}

/// `peer_sockets` and the number of peers from `chain_getInfo`.
fn sockets_and_peers(node: &NodeProcess) -> anyhow::Result<(u64, u64)> {
    let info = node.info()?;
    Ok((info["peer_sockets"].as_u64().unwrap_or(u64::MAX), info["peers"].as_u64().unwrap_or(u64::MAX)))
}

#[test]
fn churn_leaves_no_socket_behind() {
    let tmp = tempfile::tempdir().unwrap();
    let path = write_fast_genesis(tmp.path(), 1000).unwrap();
    let genesis = Genesis::from_json(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let magic = magic_of(&genesis);
    let node = NodeProcess::start(
        &tmp.path().join("node"),
        &NodeOptions { genesis: Some(path), ..NodeOptions::default() },
    )
    .unwrap();
    let pid = node.pid().unwrap();
    let addr = node.p2p_addr;
    let version = || VersionFields::for_genesis(&genesis, [0; 32], "churn");
    let start_fds = open_fds(pid);
    let started = Instant::now();

    // Connections that never say anything: the node drops them at its handshake timeout
    // while the churn below runs.
    let mut silent: Vec<Peer> = (0..5).map(|_| Peer::connect(addr, magic).unwrap()).collect();

    // A few peers held open across a check: the node's socket count is its peers plus
    // the connections still in the handshake, and its fds grew by as many.
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut p = Peer::connect(addr, magic).unwrap();
        p.handshake(&version()).unwrap();
        held.push(p);
    }
    wait_until(Duration::from_secs(10), "3 peers, 8 sockets and 8 more fds", || {
        Ok((sockets_and_peers(&node)? == (8, 3) && open_fds(pid) == start_fds + 8).then_some(()))
    });
    for p in held {
        p.close();
    }

    let mut counts = [0usize; 7];
    for i in 0..1000usize {
        let kind = i % 7;
        counts[kind] += 1;
        match kind {
            // Closed (FIN) before anything was said.
            0 => Peer::connect(addr, magic).unwrap().close(),
            // Reset (RST) before anything was said.
            1 => Peer::connect(addr, magic).unwrap().reset(),
            // A full handshake, then a clean close.
            2 => {
                let mut p = Peer::connect(addr, magic).unwrap();
                p.handshake(&version()).unwrap();
                p.close();
            }
            // A full handshake, then a reset: a killed peer.
            3 => {
                let mut p = Peer::connect(addr, magic).unwrap();
                p.handshake(&version()).unwrap();
                p.reset();
            }
            // The same node twice (same nonce): the node drops the second connection.
            4 => {
                let v = version();
                let mut first = Peer::connect(addr, magic).unwrap();
                first.handshake(&v).unwrap();
                let mut second = Peer::connect(addr, magic).unwrap();
                second.send(cmd::VERSION, &v.payload()).unwrap();
                assert_eq!(second.wait_closed(Duration::from_secs(10)), Closed::Yes, "duplicate kept");
                second.close();
                first.close();
            }
            // The node closes first: a message before the handshake is a protocol error.
            5 => {
                let mut p = Peer::connect(addr, magic).unwrap();
                p.send(cmd::PING, &7u64.to_le_bytes()).unwrap();
                assert_eq!(p.wait_closed(Duration::from_secs(10)), Closed::Yes, "protocol error");
                p.close();
            }
            // A malformed frame: banned and dropped. From 127.0.0.2, where bans (per
            // ip:port on loopback) cannot catch the other connections' ports.
            _ => {
                let mut p = Peer::connect_from("127.0.0.2:0".parse().unwrap(), addr, magic).unwrap();
                p.send_raw(&[magic[0], magic[1], magic[2], magic[3], 0, 0xff, 0xff, 0xff, 0xff]).unwrap();
                assert_eq!(p.wait_closed(Duration::from_secs(10)), Closed::Yes, "oversized frame");
                p.close();
            }
        }
    }
    let churn = started.elapsed();

    for p in silent.iter_mut() {
        assert_eq!(p.wait_closed(Duration::from_secs(20)), Closed::Yes, "handshake timeout");
    }
    silent.into_iter().for_each(Peer::close);

    let fds = wait_until(Duration::from_secs(20), "the node's fds back to their start", || {
        let n = open_fds(pid);
        if n <= start_fds {
            return Ok(Some(n));
        }
        let close_wait = sockets_in_state(pid, "08").len();
        anyhow::bail!("{n} fds open (started with {start_fds}), {close_wait} sockets in CLOSE-WAIT")
    });
    let close_wait = sockets_in_state(pid, "08");
    assert!(close_wait.is_empty(), "sockets left in CLOSE-WAIT: {close_wait:?}");
    wait_until(Duration::from_secs(10), "no peer and no peer socket", || {
        Ok((sockets_and_peers(&node)? == (0, 0)).then_some(()))
    });
    // And it still takes peers.
    let mut p = Peer::connect(addr, magic).unwrap();
    p.handshake(&version()).unwrap();
    wait_until(Duration::from_secs(10), "one peer, one socket", || {
        Ok((sockets_and_peers(&node)? == (1, 1)).then_some(()))
    });
    p.close();
    eprintln!(
        "churn: {counts:?} connections per kind in {churn:?}; fds {start_fds} at start, {fds} at the end; \
         {:?} in all",
        started.elapsed()
    );
}

/// Runs a command, failing with its output if it fails.
fn run(program: &str, args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new(program).args(args).output().map_err(|e| {
        anyhow::anyhow!(
            "cannot run {program} ({e}): run scripts/setup.sh --test to install iproute2 and nftables"
        )
    })?;
    if !out.status.success() {
        anyhow::bail!("{program} {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

/// A network namespace joined to ours by a veth pair, deleted (with the pair and any
/// rules in it) when dropped, whether the test passed or not.
struct Netns {
    name: String,
    /// Our end's address and the namespace's.
    outside: std::net::Ipv4Addr,
    inside: std::net::Ipv4Addr,
}

impl Netns {
    fn create() -> anyhow::Result<Netns> {
        // Unique per run: the pid names the namespace, the links and the subnet.
        let pid = std::process::id();
        let name = format!("cairn-conn-{pid}");
        let (out_if, in_if) = (format!("cc{pid}o"), format!("cc{pid}i"));
        let (b, c) = (100 + ((pid >> 8) % 100) as u8, (pid & 0xff) as u8);
        let outside = std::net::Ipv4Addr::new(10, b, c, 1);
        let inside = std::net::Ipv4Addr::new(10, b, c, 2);
        run("ip", &["netns", "add", &name])?;
        let ns = Netns { name, outside, inside };
        let n = ns.name.as_str();
        run("ip", &["link", "add", &out_if, "type", "veth", "peer", "name", &in_if])?;
        run("ip", &["link", "set", &in_if, "netns", n])?;
        run("ip", &["addr", "add", &format!("{outside}/24"), "dev", &out_if])?;
        run("ip", &["link", "set", &out_if, "up"])?;
        run("ip", &["-n", n, "addr", "add", &format!("{inside}/24"), "dev", &in_if])?;
        run("ip", &["-n", n, "link", "set", &in_if, "up"])?;
        run("ip", &["-n", n, "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// Silently drops, inside the namespace, every TCP segment to or from `ports`.
    fn drop_ports(&self, ports: &[u16]) -> anyhow::Result<()> {
        let set = ports.iter().map(u16::to_string).collect::<Vec<_>>().join(", ");
        let rules = format!(
            "table inet cairn_silence {{\n\
               chain input {{ type filter hook input priority 0; tcp dport {{ {set} }} drop; tcp sport {{ {set} }} drop; }}\n\
               chain output {{ type filter hook output priority 0; tcp dport {{ {set} }} drop; tcp sport {{ {set} }} drop; }}\n\
             }}\n"
        );
        let file = std::env::temp_dir().join(format!("{}.nft", self.name));
        std::fs::write(&file, rules)?;
        let result = run("ip", &["netns", "exec", &self.name, "nft", "-f", &file.to_string_lossy()]);
        let _ = std::fs::remove_file(&file);
        result
    }

    fn allow_all(&self) -> anyhow::Result<()> {
        run("ip", &["netns", "exec", &self.name, "nft", "delete", "table", "inet", "cairn_silence"])
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Deleting the namespace deletes its end of the veth pair, which takes ours along.
        if let Err(e) = run("ip", &["netns", "del", &self.name]) {
            eprintln!("cleaning up namespace {}: {e:#}", self.name);
        }
    }
}

/// Whether `node` has a ready peer listening at `addr`.
fn has_peer(node: &NodeProcess, addr: SocketAddr) -> anyhow::Result<bool> {
    Ok(node.peer_addrs()?.contains(&addr))
}

#[test]
fn silent_link_is_dropped_and_heals() {
    let tmp = tempfile::tempdir().unwrap();
    let genesis = write_fast_genesis(tmp.path(), 1000).unwrap();
    let ns = Netns::create().expect("network namespace (run as root, after scripts/setup.sh --test)");
    // Declared after `ns`, so the nodes are killed before the namespace goes.
    let outside = NodeProcess::start(
        &tmp.path().join("outside"),
        &NodeOptions {
            genesis: Some(genesis.clone()),
            listen: Some(SocketAddr::new(ns.outside.into(), 0)),
            ..NodeOptions::default()
        },
    )
    .unwrap();
    let inside = NodeProcess::start(
        &tmp.path().join("inside"),
        &NodeOptions {
            genesis: Some(genesis),
            listen: Some(SocketAddr::new(ns.inside.into(), 0)),
            rpc_addr: Some(SocketAddr::new(ns.inside.into(), 0)),
            netns: Some(ns.name.clone()),
            peers: vec![outside.p2p_addr],
            ..NodeOptions::default()
        },
    )
    .unwrap();
    let (a, b) = (outside.p2p_addr, inside.p2p_addr);
    wait_until(Duration::from_secs(30), "the two nodes connected", || {
        Ok((has_peer(&outside, b)? && has_peer(&inside, a)?).then_some(()))
    });

    // Silence: no FIN, no RST, nothing (the RPC port stays reachable).
    ns.drop_ports(&[a.port(), b.port()]).unwrap();
    let quiet = Instant::now();
    let (mut out_lost, mut in_lost) = (None, None);
    wait_until(Duration::from_secs(50), "both nodes to drop the silent peer", || {
        if out_lost.is_none() && !has_peer(&outside, b)? {
            out_lost = Some(quiet.elapsed());
        }
        if in_lost.is_none() && !has_peer(&inside, a)? {
            in_lost = Some(quiet.elapsed());
        }
        Ok(out_lost.zip(in_lost))
    });
    let (out_lost, in_lost) = (out_lost.unwrap(), in_lost.unwrap());
    assert!(out_lost <= Duration::from_secs(45), "outside node noticed only after {out_lost:?}");
    assert!(in_lost <= Duration::from_secs(45), "inside node noticed only after {in_lost:?}");
    // Their sockets went with them (dials in progress are not peer sockets).
    wait_until(Duration::from_secs(5), "no open peer socket on either side", || {
        Ok((sockets_and_peers(&outside)?.0 == 0 && sockets_and_peers(&inside)?.0 == 0).then_some(()))
    });

    // The partition goes on for 15 s more (a fault's length, not a synchronisation), so
    // the heal finds redials failing and backing off.
    std::thread::sleep(Duration::from_secs(15));
    ns.allow_all().unwrap();
    let healed = Instant::now();
    wait_until(Duration::from_secs(10), "the two nodes reconnected", || {
        Ok((has_peer(&outside, b)? && has_peer(&inside, a)?).then_some(()))
    });
    let back = healed.elapsed();
    assert!(back <= Duration::from_secs(5), "reconnected only after {back:?}");
    eprintln!("silent link: dropped after {out_lost:?} (outside) and {in_lost:?} (inside); back {back:?} after the heal");
}
