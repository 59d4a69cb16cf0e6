//! cairn-node: a Cairn full node.
//!
//! A short tour:
//! - [`store`]: the RocksDB schema and atomic write batches.
//! - [`chain`]: the block index, most-work fork choice, connect/disconnect with undo
//!   data, reorgs, headers-first bookkeeping, `check-db`.
//! - [`mempool`]: pending transfers: admission, fee ordering, replacement, eviction.
//! - [`miner`]: block templates and the nonce search threads.
//! - [`p2p`]: the peer protocol (a state machine with no I/O), its wire format, and the
//!   tokio driver that runs it over TCP.
//! - [`rpc`]: the JSON-RPC server (the `cairn-api` trait) and cookie auth.
//! - [`explorer`]: the block explorer page served on the RPC port.
//! - [`metrics`]: Prometheus metrics, counted where events happen; [`metrics_server`]:
//!   the state read at scrape time and the `/metrics` server.
//! - [`failstop`]: how the node stops when one of its own invariants breaks.
//! - [`node`]: the glue: one [`node::Node`] owns the chain and mempool, and every block
//!   or transfer from the miner, a peer or RPC goes through it.

pub mod chain;
pub mod explorer;
pub mod failstop;
pub mod keycache;
pub mod mempool;
pub mod metrics;
pub mod metrics_server;
pub mod miner;
pub mod node;
pub mod p2p;
pub mod rpc;
pub mod store;

/// Milliseconds since the Unix epoch, from the system clock. The only wall clock the
/// node reads (intervals, such as the miner's hash rate and the P2P driver's timers, use
/// monotonic time); core and the peer protocol take the time as a parameter.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
