//! RPC throughput, each figure beside the limit it is measured against in the same run:
//!
//! - tx_submit admissions/s with 32 concurrent HTTP clients, beside the single-thread
//!   signature verification rate (admission verifies every signature);
//! - chain_getInfo calls/s, beside `rpc_ping` (a registered method that does nothing),
//!   both with 32 concurrent HTTP clients.
//!
//! Runs an in-process node on a throwaway chain (the dev parameters with 32 funded bench
//! accounts, one per client, so each client submits its own sender's nonces in order).
//! Figures are printed, not asserted.
//!
//! `cargo run --release -p cairn-node --example bench_rpc [-- TXS_PER_CLIENT]`

use cairn_api::CairnApiClient;
use cairn_core::genesis::{Allocation, Genesis};
use cairn_core::transaction::{address_of, public_key_of, signing_key_from_bytes, SignedTransfer, Transfer};
use cairn_core::{encoding, Address, Amount};
use cairn_node::chain::Chain;
use cairn_node::mempool::{Mempool, MempoolConfig};
use cairn_node::node::Node;
use cairn_node::rpc;
use jsonrpsee::core::client::ClientT;
use jsonrpsee::http_client::HttpClientBuilder;
use std::time::{Duration, Instant};

const CLIENTS: usize = 32;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let per_client: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(300);
    let keys: Vec<_> = (0..CLIENTS)
        .map(|i| signing_key_from_bytes(&cairn_core::hash::sha256(format!("bench {i}").as_bytes())))
        .collect::<Result<_, _>>()?;
    let mut genesis = Genesis::dev();
    genesis.name = "cairn-bench".into();
    genesis.allocations =
        keys.iter().map(|k| Allocation { address: address_of(k), balance: Amount(1 << 60) }).collect();
    let chain_id = genesis.params.chain_id;

    println!("signing {} transfers...", per_client * CLIENTS);
    let txs: Vec<Vec<String>> = keys
        .iter()
        .map(|k| {
            (0..per_client as u64)
                .map(|nonce| {
                    let t = Transfer {
                        chain_id,
                        nonce,
                        from: public_key_of(k),
                        to: Address([7; 20]),
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

    // Single-thread verification rate on the same transfers.
    let sample: Vec<SignedTransfer> = txs[0]
        .iter()
        .take(2000)
        .map(|h| encoding::decode(&hex::decode(h).expect("hex")).expect("decode"))
        .collect();
    let start = Instant::now();
    for t in &sample {
        t.verify(chain_id).expect("valid");
    }
    let verify_rate = sample.len() as f64 / start.elapsed().as_secs_f64();

    let dir = tempfile::tempdir()?;
    let chain = Chain::open(dir.path(), &genesis)?;
    let mempool = Mempool::with_config(MempoolConfig {
        max_per_sender: per_client + 1,
        max_bytes: 1 << 30,
        ..MempoolConfig::default()
    });
    let node = Node::new(chain, mempool, genesis);
    let cookie = rpc::Cookie::create(dir.path())?;
    let server = rpc::start(node.clone(), "127.0.0.1:0".parse()?, &cookie).await?;
    let url = format!("http://{}", server.local_addr);

    // tx_submit: each client submits its own sender's transfers in nonce order.
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
    let in_pool = node.mempool().len();

    let get_info = calls_per_second(&url, Duration::from_secs(3), "chain_getInfo").await?;
    let ping = calls_per_second(&url, Duration::from_secs(3), "rpc_ping").await?;

    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!();
    println!("cores available:                       {threads}");
    println!("signature verification, 1 thread:      {verify_rate:>10.0} /s");
    println!("tx_submit admissions, {CLIENTS} HTTP clients: {submit_rate:>10.0} /s ({admitted} admitted, {in_pool} in mempool)");
    println!("rpc_ping (does nothing), {CLIENTS} clients:  {ping:>10.0} calls/s");
    println!("chain_getInfo, {CLIENTS} clients:            {get_info:>10.0} calls/s");
    let _ = server.handle.stop();
    Ok(())
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
