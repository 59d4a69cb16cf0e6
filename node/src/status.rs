//! `cairn-node status`: asks a running node over JSON-RPC (`chain_getInfo`,
//! `mempool_getInfo`, `node_getStatus`) and prints what an operator checks first: chain,
//! height and best hash, sync progress, peers in and out, mempool, hashrate, uptime and
//! version; `--json` prints one JSON object for scripts.

use anyhow::Context;
use cairn_api::{CairnApiClient, ChainInfo, MempoolInfo, NodeStatus};
use clap::Args;
use jsonrpsee::http_client::HttpClientBuilder;
use serde_json::json;
use std::time::Duration;

#[derive(Args, Debug)]
pub struct StatusArgs {
    /// The node's JSON-RPC URL.
    #[arg(long, value_name = "URL", default_value = "http://127.0.0.1:7332")]
    pub rpc: String,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: &StatusArgs) -> anyhow::Result<()> {
    let runtime =
        tokio::runtime::Builder::new_current_thread().enable_all().build().context("cannot start tokio")?;
    let (info, mempool, status) = runtime
        .block_on(fetch(&args.rpc))
        .with_context(|| format!("cannot get the status of the node at {}", args.rpc))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&to_json(&args.rpc, &info, &mempool, &status))?);
    } else {
        print!("{}", to_text(&args.rpc, &info, &mempool, &status));
    }
    Ok(())
}

async fn fetch(url: &str) -> anyhow::Result<(ChainInfo, MempoolInfo, NodeStatus)> {
    let client = HttpClientBuilder::default().request_timeout(Duration::from_secs(10)).build(url)?;
    let (info, mempool, status) =
        tokio::try_join!(client.chain_get_info(), client.mempool_get_info(), client.node_get_status())?;
    Ok((info, mempool, status))
}

/// Our height as a percent of the best header's.
fn sync_percent(s: &NodeStatus) -> f64 {
    if s.header_height == 0 {
        100.0
    } else {
        (s.height.min(s.header_height) as f64 * 100.0 / s.header_height as f64).min(100.0)
    }
}

fn to_json(url: &str, info: &ChainInfo, mempool: &MempoolInfo, s: &NodeStatus) -> serde_json::Value {
    json!({
        "rpc": url,
        "version": s.version,
        "uptime_s": s.uptime_s,
        "started_ms": s.started_ms,
        "chain_id": info.chain_id,
        "genesis_hash": info.genesis_hash,
        "height": info.height,
        "best_hash": info.best_hash,
        "sync": {
            "syncing": s.syncing,
            "height": s.height,
            "header_height": s.header_height,
            "percent": (sync_percent(s) * 10.0).round() / 10.0,
        },
        "peers": { "inbound": s.peers_inbound, "outbound": s.peers_outbound },
        "mempool": { "transfers": mempool.size, "bytes": mempool.bytes, "min_fee": mempool.min_fee },
        "hashrate": info.hashrate,
    })
}

fn to_text(url: &str, info: &ChainInfo, mempool: &MempoolInfo, s: &NodeStatus) -> String {
    let sync = if s.syncing {
        format!("syncing, {}/{} ({:.1}%)", s.height, s.header_height, sync_percent(s))
    } else {
        format!("synced (best header {})", s.header_height)
    };
    let hashrate =
        if info.hashrate == 0 { "0 H/s (not mining)".to_string() } else { format!("{} H/s", info.hashrate) };
    let rows = [
        ("node", format!("{} at {url}, up {}", s.version, uptime(s.uptime_s))),
        ("chain", format!("{} (genesis {})", info.chain_id, info.genesis_hash)),
        ("height", info.height.to_string()),
        ("best", info.best_hash.to_string()),
        ("sync", sync),
        (
            "peers",
            format!(
                "{} ({} in, {} out)",
                s.peers_inbound + s.peers_outbound,
                s.peers_inbound,
                s.peers_outbound
            ),
        ),
        (
            "mempool",
            format!("{} transfers, {} bytes, min fee {}", mempool.size, mempool.bytes, mempool.min_fee),
        ),
        ("hashrate", hashrate),
    ];
    rows.iter().map(|(k, v)| format!("{k:<9} {v}\n")).collect()
}

/// `45s`, `3m05s`, `2h07m`, `3d04h`.
fn uptime(s: u64) -> String {
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        3600..86_400 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{:02}h", s / 86_400, s % 86_400 / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uptimes_read_like_durations() {
        assert_eq!(uptime(0), "0s");
        assert_eq!(uptime(185), "3m05s");
        assert_eq!(uptime(7620), "2h07m");
        assert_eq!(uptime(3 * 86_400 + 4 * 3600 + 59), "3d04h");
    }
}
