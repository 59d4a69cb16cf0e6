//! Scenarios run inside this process on the node's own library code: import into
//! RocksDB, the miner's search threads, and the JSON-RPC server under 32 HTTP clients.

use crate::gen;
use cairn_api::CairnApiClient;
use cairn_core::block::Block;
use cairn_core::encoding;
use cairn_core::genesis::Genesis;
use cairn_core::transaction::{address_of, public_key_of, Transfer};
use cairn_core::{Address, Amount};
use cairn_node::chain::{Acceptance, Chain, ChainOptions};
use cairn_node::mempool::{Mempool, MempoolConfig};
use cairn_node::miner::{self, HeaderHasher, MinerConfig};
use cairn_node::node::Node;
use cairn_node::rpc;
use jsonrpsee::core::client::ClientT;
use jsonrpsee::http_client::HttpClientBuilder;
use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

pub struct ImportRun {
    pub transfers: usize,
    pub secs: f64,
    /// CPU time the process used meanwhile (all threads).
    pub cpu_secs: f64,
}

impl ImportRun {
    pub fn rate(&self) -> f64 {
        self.transfers as f64 / self.secs
    }
}

/// Imports `blocks` into a new RocksDB chain in `dir` (validate + apply + commit each,
/// then a WAL sync), timing only the import, not the opening. The chain keeps its
/// default options (the address history index on).
pub fn import(dir: &Path, genesis: &Genesis, blocks: Vec<Block>) -> anyhow::Result<ImportRun> {
    import_with(dir, genesis, blocks, ChainOptions::default())
}

/// [`import`] with the given chain options.
pub fn import_with(
    dir: &Path,
    genesis: &Genesis,
    blocks: Vec<Block>,
    options: ChainOptions,
) -> anyhow::Result<ImportRun> {
    import_iter(dir, genesis, blocks.into_iter().map(Ok), options)
}

/// [`import_with`] from blocks produced one at a time (read from a file for the long
/// run): producing them is inside the timing. Through [`Chain::accept_blocks`], which
/// checks the next blocks while one is committed (issue 17), as an import of many
/// blocks would.
pub fn import_iter(
    dir: &Path,
    genesis: &Genesis,
    blocks: impl Iterator<Item = anyhow::Result<Block>> + Send,
    options: ChainOptions,
) -> anyhow::Result<ImportRun> {
    let mut chain = Chain::open_with_options(dir, genesis, options)?;
    let mut transfers = 0;
    let now = gen::far_future(genesis);
    let cpu0 = crate::limits::cpu_secs();
    let start = Instant::now();
    chain.accept_blocks(blocks, now, |hash, r| {
        anyhow::ensure!(
            r.acceptance == Acceptance::Connected,
            "block {hash} not connected: {:?}",
            r.acceptance
        );
        let connected = r.tip_change.iter().flat_map(|c| &c.connected);
        transfers += connected.map(|b| b.transactions.len() - 1).sum::<usize>();
        Ok(())
    })?;
    chain.fsync_wal()?;
    let secs = start.elapsed().as_secs_f64();
    Ok(ImportRun { transfers, secs, cpu_secs: crate::limits::cpu_secs() - cpu0 })
}

/// The node's miner with one search thread on a target it cannot meet, for `duration`:
/// the hash rate the node itself reports (the coordinator's 2-second window).
pub fn miner_rate(duration: Duration) -> anyhow::Result<f64> {
    let mut g = Genesis::dev();
    g.name = "cairn-bench-miner".into();
    g.params.initial_target =
        "0000000000000000000000000000000000000000000000000000000000000001".parse().expect("hex");
    g.params.pow_limit = g.params.initial_target;
    let chain = Chain::open_in_memory(&g);
    let node = Node::new(chain, Mempool::with_config(MempoolConfig::default()), g);
    let handle = miner::start(node.clone(), MinerConfig { address: Address([1; 20]), threads: 1 })?;
    std::thread::sleep(duration);
    let rate = node.hashrate();
    handle.stop();
    anyhow::ensure!(rate > 0, "the miner reported no hash rate after {duration:?}");
    Ok(rate as f64)
}

/// `HeaderHasher::hash` in a bare loop on one thread (no job handling): what the search
/// loop could reach.
pub fn midstate_loop_rate(duration: Duration) -> f64 {
    let header = Genesis::dev().block().header;
    let mut h = HeaderHasher::new(&header);
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < duration {
        for _ in 0..4096 {
            black_box(h.hash(n));
            n += 1;
        }
    }
    n as f64 / start.elapsed().as_secs_f64()
}

/// One run of 32 clients, each submitting its own sender's transfers in nonce order.
pub struct SubmitRun {
    pub rate: f64,
    pub admitted: usize,
    /// CPU time of the whole process (clients and server) per admission.
    pub cpu_us: f64,
    /// The same without the client threads' CPU time: the server's (its async workers,
    /// the blocking pool and the rayon pool that checks the signatures).
    pub server_cpu_us: f64,
}

pub struct RpcFigures {
    /// With jsonrpsee's `HttpClient`, the client the wallet uses.
    pub jsonrpsee: SubmitRun,
    /// With [`RawHttp`]: a bare HTTP/1.1 keep-alive connection per client.
    pub raw: SubmitRun,
    pub get_info: f64,
    pub ping: f64,
    /// CPU time of the whole process (clients and server) per ping.
    pub ping_cpu_us: f64,
}

const CLIENTS: usize = 32;

/// How the 32 tx_submit clients speak HTTP.
#[derive(Clone, Copy, PartialEq)]
enum ClientKind {
    Jsonrpsee,
    Raw,
}

/// The name of the client runtime's threads, by which their CPU time is told apart
/// from the server's (both run in this process, on the same two cores).
const CLIENT_THREAD: &str = "bench-client";

/// tx_submit with 32 HTTP clients (each submitting its own sender's transfers in nonce
/// order), once with jsonrpsee's client and once with [`RawHttp`], each against a fresh
/// node; then chain_getInfo and the do-nothing `rpc_ping`, 32 jsonrpsee clients each.
pub fn rpc(rt: &tokio::runtime::Runtime, per_client: usize, window: Duration) -> anyhow::Result<RpcFigures> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let clients = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cores)
        .thread_name(CLIENT_THREAD)
        .enable_all()
        .build()?;
    let jsonrpsee = submit_run(rt, &clients, per_client, ClientKind::Jsonrpsee, "rpc")?;
    let dir = tempfile::tempdir()?;
    let (node, txs) = rpc_node(dir.path(), per_client, "rpc-raw")?;
    let (raw, server) = submit_with(rt, &clients, node, txs, dir.path(), ClientKind::Raw)?;
    // The same node, its mempool full, answers the read-only calls.
    let url = format!("http://{}", server.local_addr);
    let get_info = clients.block_on(calls_per_second(&url, window, "chain_getInfo"))?;
    let cpu0 = crate::limits::cpu_secs();
    let ping = clients.block_on(calls_per_second(&url, window, "rpc_ping"))?;
    let ping_cpu_us = (crate::limits::cpu_secs() - cpu0) * 1e6 / (ping * window.as_secs_f64()).max(1.0);
    let _ = server.handle.stop();
    Ok(RpcFigures { jsonrpsee, raw, get_info, ping, ping_cpu_us })
}

/// A node whose genesis funds 32 senders (keys named by `tag`), and each sender's
/// `per_client` transfers, hex-encoded, in nonce order.
fn rpc_node(
    dir: &Path,
    per_client: usize,
    tag: &str,
) -> anyhow::Result<(std::sync::Arc<Node>, Vec<Vec<String>>)> {
    let keys: Vec<_> = (0..CLIENTS).map(|i| gen::key(tag, i)).collect();
    let genesis = gen::genesis("cairn-bench-rpc", &keys, 0);
    let chain_id = genesis.params.chain_id;
    let txs: Vec<Vec<String>> = keys
        .iter()
        .map(|k| {
            (0..per_client as u64)
                .map(|nonce| {
                    let t = Transfer {
                        chain_id,
                        nonce,
                        from: public_key_of(k),
                        to: address_of(&keys[0]),
                        amount: Amount(1),
                        fee: Amount(1 + nonce % 50),
                    }
                    .sign(k)
                    .expect("sign");
                    hex::encode(encoding::encode(&t))
                })
                .collect()
        })
        .collect();
    let chain = Chain::open(dir, &genesis)?;
    let mempool = Mempool::with_config(MempoolConfig {
        max_per_sender: per_client + 1,
        max_bytes: 1 << 30,
        ..MempoolConfig::default()
    });
    Ok((Node::new(chain, mempool, genesis), txs))
}

fn submit_run(
    rt: &tokio::runtime::Runtime,
    clients: &tokio::runtime::Runtime,
    per_client: usize,
    kind: ClientKind,
    tag: &str,
) -> anyhow::Result<SubmitRun> {
    let dir = tempfile::tempdir()?;
    let (node, txs) = rpc_node(dir.path(), per_client, tag)?;
    let (run, server) = submit_with(rt, clients, node, txs, dir.path(), kind)?;
    let _ = server.handle.stop();
    Ok(run)
}

/// Serves `node` over JSON-RPC on `rt` and submits `txs` from 32 clients on `clients`,
/// one connection each; returns the figures and the still running server.
fn submit_with(
    rt: &tokio::runtime::Runtime,
    clients: &tokio::runtime::Runtime,
    node: std::sync::Arc<Node>,
    txs: Vec<Vec<String>>,
    dir: &Path,
    kind: ClientKind,
) -> anyhow::Result<(SubmitRun, rpc::RpcServer)> {
    let total: usize = txs.iter().map(Vec::len).sum();
    let cookie = rpc::Cookie::create(dir)?;
    let server = rt.block_on(rpc::start(node.clone(), None, "127.0.0.1:0".parse()?, &cookie))?;
    let addr = server.local_addr;
    let url = format!("http://{addr}");
    let (cpu0, client_cpu0) = (crate::limits::cpu_secs(), threads_cpu_secs(CLIENT_THREAD));
    let start = Instant::now();
    let admitted = clients.block_on(async {
        let mut tasks = Vec::new();
        for list in txs {
            match kind {
                ClientKind::Jsonrpsee => {
                    let client = HttpClientBuilder::default().build(&url)?;
                    tasks.push(tokio::spawn(async move {
                        let mut ok = 0usize;
                        for hex in list {
                            if client.tx_submit(hex).await.is_ok() {
                                ok += 1;
                            }
                        }
                        ok
                    }));
                }
                ClientKind::Raw => {
                    let mut client = RawHttp::connect(addr).await?;
                    tasks.push(tokio::spawn(async move {
                        let mut ok = 0usize;
                        for (id, hex) in list.into_iter().enumerate() {
                            let body = format!(
                                r#"{{"jsonrpc":"2.0","id":{id},"method":"tx_submit","params":["{hex}"]}}"#
                            );
                            match client.post(&body).await {
                                Ok(reply) if reply.starts_with(b"{") && !contains(reply, b"\"error\"") => {
                                    ok += 1
                                }
                                Ok(_) => {}
                                Err(_) => break,
                            }
                        }
                        ok
                    }));
                }
            }
        }
        let mut admitted = 0;
        for t in tasks {
            admitted += t.await?;
        }
        anyhow::Ok(admitted)
    })?;
    let rate = admitted as f64 / start.elapsed().as_secs_f64();
    let cpu = crate::limits::cpu_secs() - cpu0;
    let client_cpu = threads_cpu_secs(CLIENT_THREAD) - client_cpu0;
    anyhow::ensure!(
        admitted == total && node.mempool().len() == admitted,
        "only {admitted} of {total} transfers admitted"
    );
    let per = |secs: f64| secs * 1e6 / admitted.max(1) as f64;
    Ok((SubmitRun { rate, admitted, cpu_us: per(cpu), server_cpu_us: per(cpu - client_cpu) }, server))
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// CPU time (user + system) of this process's threads named `name`, in seconds.
fn threads_cpu_secs(name: &str) -> f64 {
    crate::limits::threads_of("self")
        .into_iter()
        .filter(|(_, dir)| std::fs::read_to_string(dir.join("comm")).is_ok_and(|c| c.trim_end() == name))
        .map(|(_, dir)| crate::limits::cpu_secs_of(&dir.join("stat").to_string_lossy()))
        .sum()
}

/// The leanest JSON-RPC client: one HTTP/1.1 keep-alive connection, a request written
/// whole, the response read by its `content-length`. A load generator that leaves the
/// node as much of the machine as it can (jsonrpsee's client costs several times more
/// CPU per call; PERFORMANCE.md has both figures).
pub struct RawHttp {
    stream: tokio::net::TcpStream,
    request: Vec<u8>,
    buf: Vec<u8>,
    /// Where the last response's body starts and ends in `buf`.
    body: (usize, usize),
}

impl RawHttp {
    pub async fn connect(addr: std::net::SocketAddr) -> anyhow::Result<RawHttp> {
        let stream = tokio::net::TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(RawHttp { stream, request: Vec::new(), buf: Vec::new(), body: (0, 0) })
    }

    /// POSTs `json` and returns the response's body (any status).
    pub async fn post(&mut self, json: &str) -> anyhow::Result<&[u8]> {
        use std::io::Write;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        // What the previous response left unread belongs to nothing: one request at a time.
        self.buf.drain(..self.body.1.min(self.buf.len()));
        self.request.clear();
        write!(
            self.request,
            "POST / HTTP/1.1\r\nhost: cairn\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            json.len()
        )?;
        self.request.extend_from_slice(json.as_bytes());
        self.stream.write_all(&self.request).await?;
        let mut chunk = [0u8; 4096];
        loop {
            if let Some(head_end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4) {
                let head = std::str::from_utf8(&self.buf[..head_end])?;
                let len: usize = head
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("content-length").then(|| v.trim().parse().ok())?
                    })
                    .ok_or_else(|| anyhow::anyhow!("a response without content-length"))?;
                while self.buf.len() < head_end + len {
                    let n = self.stream.read(&mut chunk).await?;
                    anyhow::ensure!(n > 0, "the server closed the connection mid-response");
                    self.buf.extend_from_slice(&chunk[..n]);
                }
                self.body = (head_end, head_end + len);
                return Ok(&self.buf[head_end..head_end + len]);
            }
            let n = self.stream.read(&mut chunk).await?;
            anyhow::ensure!(n > 0, "the server closed the connection");
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

async fn calls_per_second(url: &str, duration: Duration, method: &'static str) -> anyhow::Result<f64> {
    let deadline = Instant::now() + duration;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..CLIENTS {
        let client = HttpClientBuilder::default().build(url)?;
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while Instant::now() < deadline {
                let r: Result<serde_json::Value, _> = client.request(method, jsonrpsee::rpc_params![]).await;
                if r.is_ok() {
                    n += 1;
                }
            }
            n
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await?;
    }
    Ok(total as f64 / start.elapsed().as_secs_f64())
}
