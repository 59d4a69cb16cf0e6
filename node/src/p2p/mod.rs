//! Peer-to-peer networking.
//!
//! - [`wire`]: frames and messages, byte for byte as docs/PROTOCOL.md describes them.
//! - [`protocol`]: the peer protocol as a state machine with no I/O (handshake, ping,
//!   peer exchange, gossip, headers-first sync, misbehaviour).
//! - [`addrbook`]: known addresses and bans (saved as `peers.json` / `bans.json`).
//! - [`sync`]: which block bodies are requested from whom.
//! - [`presync`]: headers of low-work branches are checked before any is stored.
//! - `net`: the thin tokio driver that runs the protocol over TCP.
//!
//! The protocol is also driven by a deterministic simulator (node/tests/p2p_sim.rs).

pub mod addrbook;
mod net;
pub mod presync;
pub mod protocol;
pub mod sync;
mod waiting;
pub mod wire;

use crate::node::Node;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

/// Identifies one connection for its lifetime; never reused within a process.
pub type PeerId = u64;

/// What the P2P layer needs from the command line.
#[derive(Clone, Debug)]
pub struct P2pConfig {
    pub listen: SocketAddr,
    pub seeds: Vec<String>,
    pub max_peers: usize,
    pub data_dir: PathBuf,
}

/// Starts listening and connecting; returns once the listener is bound. Registers a
/// [`crate::node::Network`] with the node so RPC can list and add peers.
pub async fn start(node: Arc<Node>, config: P2pConfig) -> anyhow::Result<SocketAddr> {
    net::start(node, config).await
}
