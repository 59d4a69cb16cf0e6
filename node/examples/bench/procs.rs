//! Scenarios about the node as a program: real `cairn-node` processes on loopback
//! (restart time, resident memory, sync from a peer, block propagation).

use anyhow::{bail, Context};
use cairn_api::{CairnApiClient, NewHead};
use cairn_core::assemble::grind;
use cairn_core::genesis::Genesis;
use cairn_core::transaction::{address_of, public_key_of, Transfer};
use cairn_core::{Address, Amount, BlockHash};
use cairn_node::chain::Chain;
use cairn_node::mempool::{Mempool, MempoolConfig};
use cairn_node::node::{Node, Origin};
use cairn_node::{miner, p2p};
use cairn_tests::{rpc, NodeOptions, NodeProcess};
use jsonrpsee::ws_client::WsClientBuilder;
use serde_json::json;
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Resident set size of a process, from /proc/<pid>/status (VmRSS), in MiB.
pub fn rss_mib(pid: u32) -> anyhow::Result<f64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = text.lines().find(|l| l.starts_with("VmRSS:")).context("no VmRSS line")?;
    let kib: f64 = line.split_whitespace().nth(1).context("VmRSS value")?.parse()?;
    Ok(kib / 1024.0)
}

pub fn height(url: &str) -> anyhow::Result<u64> {
    rpc(url, "chain_getInfo", json!([]))?["height"].as_u64().context("height in chain_getInfo")
}

/// Writes the genesis file real nodes read.
pub fn write_genesis(dir: &Path, genesis: &Genesis) -> anyhow::Result<std::path::PathBuf> {
    let path = dir.join("genesis.json");
    std::fs::write(&path, genesis.to_json())?;
    Ok(path)
}

/// A node process killed on drop (our own child, by its handle).
struct Spawned(Child);

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub struct Restart {
    pub secs: f64,
    pub rss_mib: f64,
}

/// Starts `cairn-node` on an existing data dir holding `expect_height` blocks and times
/// it from spawn to a chain_getInfo answer at that height (polled every 2 ms).
pub fn restart(
    bin: &Path,
    data_dir: &Path,
    genesis_file: &Path,
    expect_height: u64,
) -> anyhow::Result<Restart> {
    let start = Instant::now();
    let child = Command::new(bin)
        .args(["--data-dir", &data_dir.display().to_string()])
        .args(["--genesis", &genesis_file.display().to_string()])
        .args(["--rpc-addr", "127.0.0.1:0", "--listen", "127.0.0.1:0"])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("spawn cairn-node")?;
    let mut child = Spawned(child);
    let stdout = child.0.stdout.take().context("stdout")?;
    let mut url = None;
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        if let Some(u) = line.strip_prefix("RPC listening on ") {
            url = Some(u.trim().to_string());
            break;
        }
    }
    let url = url.context("the node exited before printing its RPC address")?;
    let deadline = start + Duration::from_secs(60);
    loop {
        if let Ok(h) = height(&url) {
            if h == expect_height {
                break;
            }
            bail!("restarted node answers at height {h}, expected {expect_height}");
        }
        if Instant::now() > deadline {
            bail!("restarted node did not answer within 60 s");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let secs = start.elapsed().as_secs_f64();
    let rss_mib = rss_mib(child.0.id())?;
    Ok(Restart { secs, rss_mib })
}

/// RSS of a fresh node on `genesis_file` with an empty data dir and no peers, `idle`
/// after its RPC first answered.
pub fn idle_rss(genesis_file: &Path, work: &Path, idle: Duration) -> anyhow::Result<f64> {
    let opts = NodeOptions { genesis: Some(genesis_file.to_path_buf()), ..NodeOptions::default() };
    let node = NodeProcess::start(&work.join("idle"), &opts)?;
    std::thread::sleep(idle);
    rss_mib(node.pid().context("pid")?)
}

pub struct Sync {
    pub transfers: usize,
    pub secs: f64,
    pub reached: u64,
    pub target: u64,
    pub rss_mib: f64,
    /// (seconds since the spawn, VmRSS in MiB) of the syncing node, every ~0.5 s and at the end.
    pub rss_samples: Vec<(f64, f64)>,
    /// CPU seconds (user + system) the syncing node used from its spawn to the end, and
    /// the serving node over the same time.
    pub cpu_secs: f64,
    pub source_cpu_secs: f64,
    /// Seconds from the spawn until the syncing node was first seen at height 1 or more
    /// (start-up, handshake, headers, the first block).
    pub first_block_secs: Option<f64>,
}

/// A node serving `source_dir` (a chain of `target` blocks holding `transfers` transfers)
/// and a fresh node (in `work/fresh_name`, started with `fresh_args` besides `--peer`)
/// peering with it: time from the fresh node's spawn until its tip is at `target`
/// (polled every 20 ms), and its RSS then.
#[allow(clippy::too_many_arguments)]
pub fn sync(
    genesis_file: &Path,
    source_dir: &Path,
    work: &Path,
    fresh_name: &str,
    fresh_args: &[&str],
    target: u64,
    transfers: usize,
    timeout: Duration,
) -> anyhow::Result<Sync> {
    let opts = NodeOptions { genesis: Some(genesis_file.to_path_buf()), ..NodeOptions::default() };
    let source = NodeProcess::start(source_dir, &opts)?;
    anyhow::ensure!(source.height()? == target, "source node is at {} not {target}", source.height()?);
    let source_stat = format!("/proc/{}/stat", source.pid().context("pid")?);
    let source_cpu0 = crate::limits::cpu_secs_of(&source_stat);
    let start = Instant::now();
    let fresh = NodeProcess::start(
        &work.join(fresh_name),
        &NodeOptions {
            peers: vec![source.p2p_addr],
            extra: fresh_args.iter().map(|a| a.to_string()).collect(),
            ..opts.clone()
        },
    )?;
    let mut reached = 0;
    let pid = fresh.pid().context("pid")?;
    let mut rss_samples = Vec::new();
    let mut first_block_secs = None;
    while start.elapsed() < timeout {
        reached = fresh.height().unwrap_or(reached);
        if reached >= 1 && first_block_secs.is_none() {
            first_block_secs = Some(start.elapsed().as_secs_f64());
        }
        if reached >= target {
            break;
        }
        // The syncing node's memory along the way, every half second (issue 17's long run).
        let t = start.elapsed().as_secs_f64();
        if rss_samples.last().is_none_or(|&(last, _)| t - last >= 0.5) {
            rss_samples.push((t, rss_mib(pid)?));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let secs = start.elapsed().as_secs_f64();
    let cpu_secs = crate::limits::cpu_secs_of(&format!("/proc/{pid}/stat"));
    let source_cpu_secs = crate::limits::cpu_secs_of(&source_stat) - source_cpu0;
    let rss = rss_mib(pid)?;
    rss_samples.push((secs, rss));
    Ok(Sync {
        transfers,
        secs,
        reached,
        target,
        rss_mib: rss,
        rss_samples,
        cpu_secs,
        source_cpu_secs,
        first_block_secs,
    })
}

pub struct Propagation {
    /// Per block: time from the first node's submit until the last node reported it, ms.
    pub empty_ms: Vec<f64>,
    pub full_ms: Vec<f64>,
    /// Per 1000-transfer block: its import time on the first node, ms.
    pub full_import_ms: Vec<f64>,
    /// Per 1000-transfer block: from the first transfer's submission until every
    /// node's mempool held all of them (polled), ms; 5,000 when they never did.
    pub relay_ms: Vec<f64>,
    /// Rounds in which some mempool still lacked transfers after 5 s.
    pub relay_incomplete: usize,
    pub hops: usize,
}

/// `n` nodes on loopback in a line: an in-process node (the block source, real P2P
/// code) and `n - 1` cairn-node processes, each peering with the previous one. Blocks
/// are made by the first node (trivial proof of work) and submitted to it; every
/// process reports new heads over a WebSocket subscription.
pub fn propagation(
    rt: &tokio::runtime::Runtime,
    work: &Path,
    n: usize,
    empty_blocks: usize,
    full_blocks: usize,
    full_size: usize,
) -> anyhow::Result<Propagation> {
    let senders: Vec<_> = (0..100).map(|i| crate::gen::key("net", i)).collect();
    let mut genesis = crate::gen::genesis("cairn-bench-net", &senders, 0);
    // A chain behind its schedule stays at the (trivial) proof-of-work limit.
    genesis.params.timestamp_ms = cairn_node::now_ms() - 3_600_000;
    std::fs::create_dir_all(work)?;
    let genesis_file = write_genesis(work, &genesis)?;
    let chain = Chain::open(&work.join("n0"), &genesis)?;
    let mempool = Mempool::with_config(MempoolConfig::default());
    let source = Node::new(chain, mempool, genesis.clone());
    // Held to the end of the run: dropping it would stop the source's P2P.
    let source_p2p = rt.block_on(p2p::start(
        source.clone(),
        p2p::P2pConfig {
            listen: "127.0.0.1:0".parse()?,
            seeds: vec![],
            max_peers: 32,
            data_dir: work.join("n0"),
            progress_interval_ms: p2p::protocol::Config::default().progress_interval_ms,
            external_addrs: vec![],
            dns_seeds: vec![],
            no_seeds: true,
            connect_only: false,
        },
    ))?;
    let source_addr = source_p2p.local_addr();
    let mut procs: Vec<NodeProcess> = Vec::new();
    for i in 1..n {
        let prev = procs.last().map_or(source_addr, |p| p.p2p_addr);
        let opts =
            NodeOptions { genesis: Some(genesis_file.clone()), peers: vec![prev], ..NodeOptions::default() };
        procs.push(NodeProcess::start(&work.join(format!("n{i}")), &opts)?);
    }
    // Wait for the line to be connected.
    let deadline = Instant::now() + Duration::from_secs(60);
    for (i, p) in procs.iter().enumerate() {
        let want = if i + 1 == procs.len() { 1 } else { 2 };
        loop {
            let peers = p.info().ok().and_then(|v| v["peers"].as_u64()).unwrap_or(0);
            if peers >= want {
                break;
            }
            if Instant::now() > deadline {
                bail!("node {} has {peers} peers, expected {want}", i + 1);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(usize, BlockHash, Instant)>();
    rt.block_on(async {
        for (i, p) in procs.iter().enumerate() {
            let ws = p.rpc_url.replace("http://", "ws://");
            let client = WsClientBuilder::default().build(&ws).await?;
            let mut sub = client.chain_subscribe_new_heads().await?;
            let tx = tx.clone();
            tokio::spawn(async move {
                let _client = client;
                while let Some(Ok(head)) = sub.next().await {
                    let head: NewHead = head;
                    if tx.send((i, head.hash, Instant::now())).is_err() {
                        break;
                    }
                }
            });
        }
        anyhow::Ok(())
    })?;

    let mut arrivals: HashMap<BlockHash, Vec<Instant>> = HashMap::new();
    let mut wait_all =
        |hash: BlockHash, rx: &mut tokio::sync::mpsc::UnboundedReceiver<_>| -> anyhow::Result<Instant> {
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                if let Some(v) = arrivals.get(&hash) {
                    if v.len() == procs.len() {
                        return Ok(*v.iter().max().expect("non-empty"));
                    }
                }
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    bail!(
                        "block {hash} reached {} of {} nodes in 30 s",
                        arrivals.get(&hash).map_or(0, Vec::len),
                        procs.len()
                    );
                }
                match rt.block_on(async { tokio::time::timeout(left, rx.recv()).await }) {
                    Ok(Some((_, h, t))) => arrivals.entry(h).or_default().push(t),
                    Ok(None) => bail!("subscriptions closed"),
                    Err(_) => {}
                }
            }
        };

    let mut out = Propagation {
        empty_ms: vec![],
        full_ms: vec![],
        full_import_ms: vec![],
        relay_ms: vec![],
        relay_incomplete: 0,
        hops: n - 1,
    };
    let miner_addr = Address([0xbe; 20]);
    let mut nonces = vec![0u64; senders.len()];
    for round in 0..empty_blocks + full_blocks {
        let full = round >= empty_blocks;
        if full {
            // Transfers go through the first node's mempool and are relayed like any
            // others; the block is built once every node holds them, or after 5 s (the
            // block carries its transfers whole either way).
            let chain_id = genesis.params.chain_id;
            let relay_start = Instant::now();
            for i in 0..full_size {
                let s = i % senders.len();
                let t = Transfer {
                    chain_id,
                    nonce: nonces[s],
                    from: public_key_of(&senders[s]),
                    to: address_of(&senders[(s + 1) % senders.len()]),
                    amount: Amount(1),
                    fee: Amount(1),
                }
                .sign(&senders[s])?;
                nonces[s] += 1;
                source
                    .verify_and_submit(t, Origin::Local, cairn_node::now_ms())
                    .map_err(|e| anyhow::anyhow!("submit: {e}"))?;
            }
            let deadline = Instant::now() + Duration::from_secs(5);
            let mut complete = true;
            for p in &procs {
                while p.info()?["mempool_size"].as_u64().unwrap_or(0) < full_size as u64 {
                    if Instant::now() >= deadline {
                        complete = false;
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
            out.relay_ms.push(relay_start.elapsed().as_secs_f64() * 1e3);
            if !complete {
                out.relay_incomplete += 1;
            }
        }
        let mut block = miner::block_template(&source, miner_addr).context("template")?;
        anyhow::ensure!(grind(&mut block.header, u64::MAX), "grind");
        if full {
            anyhow::ensure!(
                block.transactions.len() - 1 == full_size,
                "template holds {} transfers",
                block.transactions.len() - 1
            );
        }
        let hash = block.hash();
        let t0 = Instant::now();
        source.submit_block(block, Origin::Local, cairn_node::now_ms())?;
        let imported = t0.elapsed();
        let last = wait_all(hash, &mut rx)?;
        let ms = last.duration_since(t0).as_secs_f64() * 1e3;
        if full {
            out.full_ms.push(ms);
            out.full_import_ms.push(imported.as_secs_f64() * 1e3);
        } else {
            out.empty_ms.push(ms);
        }
    }
    drop(procs);
    Ok(out)
}

/// The `q` quantile (0..=1) of `v`, nearest rank.
pub fn quantile(v: &[f64], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let rank = ((q * s.len() as f64).ceil() as usize).clamp(1, s.len());
    s[rank - 1]
}
