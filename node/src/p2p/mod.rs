//! Peer-to-peer networking. (In progress.)

use crate::node::Node;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

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
    let _ = (node, &config);
    Ok(config.listen)
}
