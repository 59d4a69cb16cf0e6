//! Scenarios about the node as a program: real `cairn-node` processes on loopback
//! (restart time, resident memory, sync from a peer, block propagation).

use crate::limits::{cpu_between_ms, minor_faults, threads_cpu_ns};
use anyhow::{bail, Context};
use cairn_api::{CairnApiClient, NewHead};
use cairn_core::assemble::{assemble_block, grind};
use cairn_core::genesis::Genesis;
use cairn_core::transaction::{address_of, public_key_of, Transfer};
use cairn_core::{Address, Amount, BlockHash, SignedTransfer};
use cairn_node::chain::Chain;
use cairn_node::mempool::{Mempool, MempoolConfig};
use cairn_node::node::{Node, Origin};
use cairn_node::{miner, p2p};
use cairn_tests::{rpc, NodeOptions, NodeProcess};
use jsonrpsee::ws_client::WsClientBuilder;
use serde_json::json;
use std::collections::{BTreeMap, HashMap};
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

impl Sync {
    /// The transfers of the blocks the syncing node reached (all of them once it is at
    /// the target).
    pub fn synced_transfers(&self) -> f64 {
        self.transfers as f64 * (self.reached as f64 / self.target as f64)
    }

    /// Both nodes' CPU over the sync, for a row's note.
    pub fn cpu_note(&self) -> String {
        format!(
            "syncing node {:.2} s CPU = {} tx per CPU-second, serving node {:.2} s CPU",
            self.cpu_secs,
            crate::report::num(self.synced_transfers() / self.cpu_secs),
            self.source_cpu_secs
        )
    }
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

/// The kinds of block the propagation scenario relays (issue 17's three cases).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockKind {
    /// The coinbase only.
    Empty,
    /// 1,000 transfers submitted to the first node and relayed to every mempool first.
    InMempool,
    /// 1,000 transfers the bench signed and put in the block itself: no node had seen
    /// them before the block.
    Unseen,
}

/// The P2P commands counted as a block's relay: announcing, fetching and delivering
/// blocks and headers, whole or compact. Not counted: `tx` (transfer relay), `ping`,
/// `pong`, `addr`, `getaddr`, `version`, `verack`. `inv`, `getdata` and `notfound`
/// also carry transfers; the bench counts a block only once the transfer relay before
/// it has gone quiet (see [`settle`]).
pub const BLOCK_RELAY_COMMANDS: [&str; 10] = [
    "inv",
    "getdata",
    "notfound",
    "getheaders",
    "headers",
    "block",
    "sendcmpct",
    "cmpctblock",
    "getblocktxn",
    "blocktxn",
];

/// What was measured for the blocks of one kind.
#[derive(Debug, Default)]
pub struct KindFigures {
    /// Per block: time from the first node's submit until the last node reported it, ms.
    pub ms: Vec<f64>,
    /// Per block: its import on the first node (`submit_block`), ms.
    pub import_ms: Vec<f64>,
    /// Per block: its encoded size, bytes.
    pub block_bytes: Vec<usize>,
    /// Per block: bytes of the block-relay commands all nodes sent, divided by the
    /// number of nodes.
    pub sent_per_node: Vec<f64>,
    /// Per block: the most block-relay bytes one node sent.
    pub sent_max: Vec<u64>,
    /// Over all blocks: block-relay bytes all nodes sent and received (equal when every
    /// frame sent was counted by its receiver within the window).
    pub sent_total: u64,
    pub received_total: u64,
    /// Over all blocks, by command: bytes all nodes sent.
    pub by_command: BTreeMap<&'static str, u64>,
    /// Per process (node 1 to n - 1), per block: when it reported the block, ms after
    /// the first node's submit.
    pub node_ms: Vec<Vec<f64>>,
    /// Per block: CPU the node processes (1 to n - 1) ran from just before the first
    /// node's submit until the last of them reported the block, summed, ms.
    pub nodes_cpu_ms: Vec<f64>,
    /// Per block: the same for the bench's own process (the first node, and the bench's
    /// subscription clients), ms.
    pub source_cpu_ms: Vec<f64>,
    /// Per block: minor page faults of the node processes (1 to n - 1) over the same
    /// window, summed: pages of memory they touched for the first time.
    pub nodes_minflt: Vec<u64>,
}

pub struct Propagation {
    pub empty: KindFigures,
    pub in_mempool: KindFigures,
    pub unseen: KindFigures,
    /// Per in-mempool block: from the first transfer's submission until every node's
    /// mempool held all of them (polled), ms; 5,000 when they never did.
    pub relay_ms: Vec<f64>,
    /// Rounds in which some mempool still lacked transfers after 5 s.
    pub relay_incomplete: usize,
    /// Times the wire did not go quiet for 250 ms within 5 s around a block (its bytes
    /// were counted anyway).
    pub unsettled: usize,
    /// Empty blocks relayed first and not counted (high-bandwidth peers get chosen).
    pub warmup: usize,
    pub hops: usize,
}

/// Block-relay bytes each node has sent and received so far, by command (the node's
/// `cairn_p2p_sent_bytes_total` / `cairn_p2p_received_bytes_total`).
#[derive(Clone, Debug, PartialEq, Eq)]
struct WireBytes {
    sent: [u64; BLOCK_RELAY_COMMANDS.len()],
    received: [u64; BLOCK_RELAY_COMMANDS.len()],
    /// `tx` bytes sent and received: only to see that the transfer relay is over.
    tx: u64,
}

/// Where a node's byte counters are read: the in-process first node's own metrics, or
/// a process's `/metrics`.
enum Meter {
    InProcess,
    Scrape(String),
}

impl Meter {
    fn read(&self) -> anyhow::Result<WireBytes> {
        match self {
            Meter::InProcess => {
                let m = cairn_node::metrics::get();
                Ok(WireBytes {
                    sent: BLOCK_RELAY_COMMANDS.map(|c| m.p2p_bytes_out.get(c)),
                    received: BLOCK_RELAY_COMMANDS.map(|c| m.p2p_bytes_in.get(c)),
                    tx: m.p2p_bytes_out.get("tx") + m.p2p_bytes_in.get("tx"),
                })
            }
            Meter::Scrape(url) => {
                let text = http_get(url)?;
                let value = |family: &str, command: &str| -> u64 {
                    let series = format!("{family}{{command=\"{command}\"}} ");
                    text.lines()
                        .find_map(|l| l.strip_prefix(&series))
                        .and_then(|v| v.trim().parse::<f64>().ok())
                        .map_or(0, |v| v as u64)
                };
                Ok(WireBytes {
                    sent: BLOCK_RELAY_COMMANDS.map(|c| value("cairn_p2p_sent_bytes_total", c)),
                    received: BLOCK_RELAY_COMMANDS.map(|c| value("cairn_p2p_received_bytes_total", c)),
                    tx: value("cairn_p2p_sent_bytes_total", "tx")
                        + value("cairn_p2p_received_bytes_total", "tx"),
                })
            }
        }
    }
}

/// The body of an HTTP GET of `url` (`http://ADDR/PATH`), 10 s at most.
fn http_get(url: &str) -> anyhow::Result<String> {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://").context("not an http:// URL")?;
    let (addr, path) = rest.split_once('/').map_or((rest, "/".to_string()), |(a, p)| (a, format!("/{p}")));
    let mut s = std::net::TcpStream::connect(addr).with_context(|| format!("connect {addr}"))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes())?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let raw = String::from_utf8(raw).context("metrics are not UTF-8")?;
    let (head, body) = raw.split_once("\r\n\r\n").context("no end of headers")?;
    anyhow::ensure!(head.starts_with("HTTP/1.1 200"), "GET {url}: {}", head.lines().next().unwrap_or(""));
    Ok(body.to_string())
}

/// Reads every node's counters until they have not moved for 250 ms (polled every 25
/// ms), or for 5 s; the last reading, and whether the wire went quiet.
fn settle(meters: &[Meter]) -> anyhow::Result<(Vec<WireBytes>, bool)> {
    let read_all = || meters.iter().map(Meter::read).collect::<anyhow::Result<Vec<_>>>();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut last = read_all()?;
    let mut since = Instant::now();
    loop {
        std::thread::sleep(Duration::from_millis(25));
        let now = read_all()?;
        if now != last {
            last = now;
            since = Instant::now();
        } else if since.elapsed() >= Duration::from_millis(250) {
            return Ok((last, true));
        }
        if Instant::now() >= deadline {
            return Ok((last, false));
        }
    }
}

/// `n` nodes on loopback in a line: an in-process node (the block source, real P2P
/// code) and `n - 1` cairn-node processes, each peering with the previous one. Blocks
/// are made by the first node (trivial proof of work) and submitted to it; every
/// process reports new heads over a WebSocket subscription. After `warmup` uncounted
/// empty blocks, the three kinds take turns (empty, in every mempool, unseen) until
/// each has had its count. Around each block the nodes' byte counters are read once
/// the wire is quiet.
pub fn propagation(
    rt: &tokio::runtime::Runtime,
    work: &Path,
    n: usize,
    counts: [(BlockKind, usize); 3],
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
        let opts = NodeOptions {
            genesis: Some(genesis_file.clone()),
            peers: vec![prev],
            extra: vec!["--metrics-addr".into(), "127.0.0.1:0".into()],
            ..NodeOptions::default()
        };
        procs.push(NodeProcess::start(&work.join(format!("n{i}")), &opts)?);
    }
    let mut meters = vec![Meter::InProcess];
    for p in &procs {
        let text = p.stdout_text();
        let url = text
            .lines()
            .find_map(|l| l.strip_prefix("metrics listening on "))
            .context("a node printed no metrics address")?;
        meters.push(Meter::Scrape(url.trim().to_string()));
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

    // Per block: (process index, arrival) as reported.
    let mut arrivals: HashMap<BlockHash, Vec<(usize, Instant)>> = HashMap::new();
    let mut wait_all = |hash: BlockHash,
                        rx: &mut tokio::sync::mpsc::UnboundedReceiver<_>|
     -> anyhow::Result<Vec<(usize, Instant)>> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(v) = arrivals.get(&hash) {
                if v.len() == procs.len() {
                    return Ok(v.clone());
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
                Ok(Some((i, h, t))) => arrivals.entry(h).or_default().push((i, t)),
                Ok(None) => bail!("subscriptions closed"),
                Err(_) => {}
            }
        }
    };

    // `CAIRN_BENCH_WINDOWS=FILE`: each counted block's window (its kind, then the
    // submit and the last arrival in CLOCK_MONOTONIC nanoseconds, the clock of
    // `perf record -k CLOCK_MONOTONIC`), one line per block, to cut a system-wide
    // profile down to the blocks' windows.
    let mut windows = file_named_by("CAIRN_BENCH_WINDOWS")?;
    // `CAIRN_BENCH_TRACE=FILE`: per counted block, each node's arrival and the
    // block-relay bytes it received, by command.
    let mut trace = file_named_by("CAIRN_BENCH_TRACE")?;
    // `CAIRN_BENCH_THREADS=FILE`: per counted block, the node processes' minor faults,
    // and their CPU, run-queue wait and times on a core from the submit to the last
    // arrival, summed by thread name.
    let mut threads = file_named_by("CAIRN_BENCH_THREADS")?;
    let warmup = 2;
    let mut out = Propagation {
        empty: KindFigures::default(),
        in_mempool: KindFigures::default(),
        unseen: KindFigures::default(),
        relay_ms: vec![],
        relay_incomplete: 0,
        unsettled: 0,
        warmup,
        hops: n - 1,
    };
    // The schedule: the warm-up, then one block of each kind in turn while it has
    // blocks left, so that the kinds share the machine's ups and downs.
    let mut schedule = vec![(BlockKind::Empty, false); warmup];
    let most = counts.iter().map(|(_, c)| *c).max().unwrap_or(0);
    for round in 0..most {
        schedule.extend(counts.iter().filter(|(_, c)| round < *c).map(|(k, _)| (*k, true)));
    }
    let miner_addr = Address([0xbe; 20]);
    let chain_id = genesis.params.chain_id;
    let mut nonces = vec![0u64; senders.len()];
    let mut sign_next = |i: usize| -> anyhow::Result<SignedTransfer> {
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
        Ok(t)
    };
    for (kind, counted) in schedule {
        let mut block = match kind {
            BlockKind::Empty => miner::block_template(&source, miner_addr).context("template")?,
            BlockKind::InMempool => {
                // Transfers go through the first node's mempool and are relayed like any
                // others; the block is built once every node holds them, or after 5 s (the
                // block carries its transfers whole either way).
                let relay_start = Instant::now();
                for i in 0..full_size {
                    source
                        .verify_and_submit(sign_next(i)?, Origin::Local, cairn_node::now_ms())
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
                miner::block_template(&source, miner_addr).context("template")?
            }
            BlockKind::Unseen => {
                // Signed here and never submitted to any node: the block is the first
                // any node sees of them.
                let transfers = (0..full_size).map(&mut sign_next).collect::<anyhow::Result<Vec<_>>>()?;
                let (params, parent) = {
                    let chain = source.chain();
                    (*chain.params(), chain.tip_parent_info())
                };
                assemble_block(&params, &parent, cairn_node::now_ms(), miner_addr, &transfers)
                    .context("assemble")?
            }
        };
        anyhow::ensure!(grind(&mut block.header, u64::MAX), "grind");
        if kind != BlockKind::Empty {
            anyhow::ensure!(
                block.transactions.len() - 1 == full_size,
                "the block holds {} transfers",
                block.transactions.len() - 1
            );
        }
        let (before, quiet_before) = settle(&meters)?;
        let hash = block.hash();
        let size = block.encoded_len();
        let pids: Vec<u32> = procs.iter().filter_map(NodeProcess::pid).collect();
        let cpu_before: Vec<_> = pids.iter().map(|p| threads_cpu_ns(*p)).collect();
        let by_name_before = threads.is_some().then(|| cpu_by_thread_name(&pids));
        let faults_before: u64 = pids.iter().map(|p| minor_faults(*p)).sum();
        let source_before = threads_cpu_ns(std::process::id());
        let t0 = Instant::now();
        let t0_mono_ns = monotonic_ns();
        source.submit_block(block, Origin::Local, cairn_node::now_ms())?;
        let imported = t0.elapsed();
        let reached = wait_all(hash, &mut rx)?;
        let source_cpu = cpu_between_ms(&source_before, &threads_cpu_ns(std::process::id()));
        let faults: u64 = pids.iter().map(|p| minor_faults(*p)).sum::<u64>().saturating_sub(faults_before);
        let nodes_cpu: f64 =
            pids.iter().zip(&cpu_before).map(|(p, b)| cpu_between_ms(b, &threads_cpu_ns(*p))).sum();
        let by_name_after = threads.is_some().then(|| cpu_by_thread_name(&pids));
        let (after, quiet_after) = settle(&meters)?;
        if !counted {
            continue;
        }
        out.unsettled += usize::from(!quiet_before) + usize::from(!quiet_after);
        let last = reached.iter().map(|(_, t)| *t).max().expect("n > 1");
        let last_ms = last.duration_since(t0).as_secs_f64() * 1e3;
        if let Some(w) = windows.as_mut() {
            use std::io::Write;
            let end = t0_mono_ns + last.duration_since(t0).as_nanos() as u64;
            writeln!(w, "{kind:?} {t0_mono_ns} {end}")?;
        }
        let f = match kind {
            BlockKind::Empty => &mut out.empty,
            BlockKind::InMempool => &mut out.in_mempool,
            BlockKind::Unseen => &mut out.unseen,
        };
        f.ms.push(last_ms);
        f.import_ms.push(imported.as_secs_f64() * 1e3);
        f.block_bytes.push(size);
        f.nodes_cpu_ms.push(nodes_cpu);
        f.source_cpu_ms.push(source_cpu);
        f.nodes_minflt.push(faults);
        f.node_ms.resize(procs.len(), Vec::new());
        for (i, t) in &reached {
            f.node_ms[*i].push(t.duration_since(t0).as_secs_f64() * 1e3);
        }
        if let Some(w) = trace.as_mut() {
            use std::io::Write;
            write!(w, "{kind:?} {last_ms:.2}")?;
            let mut by_node = reached.clone();
            by_node.sort_by_key(|(i, _)| *i);
            for (i, t) in by_node {
                // Process i is meter i + 1 (meter 0 is the in-process first node).
                let got: Vec<String> = BLOCK_RELAY_COMMANDS
                    .iter()
                    .zip(after[i + 1].received.iter().zip(&before[i + 1].received))
                    .filter(|(_, (a, b))| a > b)
                    .map(|(c, (a, b))| format!("{c}={}", a - b))
                    .collect();
                write!(w, " | n{} {:.2} {}", i + 1, t.duration_since(t0).as_secs_f64() * 1e3, got.join(","))?;
            }
            writeln!(w)?;
        }
        if let (Some(w), Some(b), Some(a)) = (threads.as_mut(), &by_name_before, &by_name_after) {
            use std::io::Write;
            write!(w, "{kind:?} {last_ms:.2} minflt {faults}")?;
            for (name, &(cpu, wait, slices)) in a {
                let (cpu0, wait0, slices0) = b.get(name).copied().unwrap_or_default();
                let (cpu, wait) = (cpu.saturating_sub(cpu0), wait.saturating_sub(wait0));
                if cpu + wait > 0 {
                    let slices = slices.saturating_sub(slices0);
                    write!(w, " | {name} {:.2} {:.2} {slices}", cpu as f64 / 1e6, wait as f64 / 1e6)?;
                }
            }
            writeln!(w)?;
        }
        let mut sent_max = 0;
        let mut sent_all = 0;
        for (b, a) in before.iter().zip(&after) {
            let sent: u64 = a.sent.iter().zip(&b.sent).map(|(x, y)| x.saturating_sub(*y)).sum();
            let received: u64 = a.received.iter().zip(&b.received).map(|(x, y)| x.saturating_sub(*y)).sum();
            for (c, (x, y)) in BLOCK_RELAY_COMMANDS.iter().zip(a.sent.iter().zip(&b.sent)) {
                *f.by_command.entry(c).or_default() += x.saturating_sub(*y);
            }
            sent_max = sent_max.max(sent);
            sent_all += sent;
            f.received_total += received;
        }
        f.sent_total += sent_all;
        f.sent_max.push(sent_max);
        f.sent_per_node.push(sent_all as f64 / meters.len() as f64);
    }
    drop(procs);
    Ok(out)
}

/// Nanoseconds run and waited for a core, and times put on a core (the three fields of
/// `schedstat`), by the threads of `pids`, summed by thread name, with a name's
/// trailing number dropped (`rayon-3` counts as `rayon`), in name order.
fn cpu_by_thread_name(pids: &[u32]) -> std::collections::BTreeMap<String, (u64, u64, u64)> {
    let mut out = std::collections::BTreeMap::<String, (u64, u64, u64)>::new();
    for pid in pids {
        for (_, dir) in crate::limits::threads_of(&pid.to_string()) {
            let Some([ran, waited, slices]) = crate::limits::schedstat(&dir) else { continue };
            let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
            let name = comm.trim().trim_end_matches(|c: char| c.is_ascii_digit() || c == '-' || c == '_');
            let e = out.entry(name.to_string()).or_default();
            e.0 += ran;
            e.1 += waited;
            e.2 += slices;
        }
    }
    out
}

/// The file the environment variable `var` names, created; `None` when it is unset.
fn file_named_by(var: &str) -> anyhow::Result<Option<std::fs::File>> {
    std::env::var_os(var)
        .map(|path| std::fs::File::create(&path).with_context(|| format!("create {path:?} ({var})")))
        .transpose()
}

/// CLOCK_MONOTONIC now, in nanoseconds (what `Instant` reads on Linux, as a number).
fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC always exists on Linux.
    #[allow(unsafe_code)]
    unsafe {
        libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts)
    };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
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
