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

pub struct RpcFigures {
    pub submit_rate: f64,
    pub admitted: usize,
    /// CPU time of the whole process (clients and server) per admission, and per ping.
    pub submit_cpu_us: f64,
    pub get_info: f64,
    pub ping: f64,
    pub ping_cpu_us: f64,
}

const CLIENTS: usize = 32;

/// tx_submit with 32 HTTP clients (each submitting its own sender's transfers in nonce
/// order), then chain_getInfo and the do-nothing `rpc_ping`, 32 clients each.
pub fn rpc(rt: &tokio::runtime::Runtime, per_client: usize, window: Duration) -> anyhow::Result<RpcFigures> {
    let keys: Vec<_> = (0..CLIENTS).map(|i| gen::key("rpc", i)).collect();
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
    let dir = tempfile::tempdir()?;
    let chain = Chain::open(dir.path(), &genesis)?;
    let mempool = Mempool::with_config(MempoolConfig {
        max_per_sender: per_client + 1,
        max_bytes: 1 << 30,
        ..MempoolConfig::default()
    });
    let node = Node::new(chain, mempool, genesis);
    rt.block_on(async move {
        let cookie = rpc::Cookie::create(dir.path())?;
        let server = rpc::start(node.clone(), None, "127.0.0.1:0".parse()?, &cookie).await?;
        let url = format!("http://{}", server.local_addr);
        let cpu0 = crate::limits::cpu_secs();
        let start = Instant::now();
        let mut tasks = Vec::new();
        for list in txs {
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
        let mut admitted = 0;
        for t in tasks {
            admitted += t.await?;
        }
        let submit_rate = admitted as f64 / start.elapsed().as_secs_f64();
        let submit_cpu_us = (crate::limits::cpu_secs() - cpu0) * 1e6 / admitted.max(1) as f64;
        anyhow::ensure!(
            admitted == per_client * CLIENTS && node.mempool().len() == admitted,
            "only {admitted} of {} transfers admitted",
            per_client * CLIENTS
        );
        let get_info = calls_per_second(&url, window, "chain_getInfo").await?;
        let cpu0 = crate::limits::cpu_secs();
        let ping = calls_per_second(&url, window, "rpc_ping").await?;
        let ping_cpu_us = (crate::limits::cpu_secs() - cpu0) * 1e6 / (ping * window.as_secs_f64()).max(1.0);
        let _ = server.handle.stop();
        Ok(RpcFigures { submit_rate, admitted, submit_cpu_us, get_info, ping, ping_cpu_us })
    })
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
