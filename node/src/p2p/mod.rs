//! Peer-to-peer networking.
//!
//! - [`wire`]: frames and messages, byte for byte as docs/PROTOCOL.md describes them.
//! - [`protocol`]: the peer protocol as a state machine with no I/O (handshake, ping,
//!   peer exchange, gossip, headers-first sync, misbehaviour).
//! - [`ledger`]: the one door from the protocol to the rest of the node
//!   ([`ledger::Ledger`], implemented by [`Node`]).
//! - [`addrbook`]: known addresses and bans (saved as `peers.json` / `bans.json`).
//! - [`discovery`]: routable addresses, what may be told to whom, our external address.
//! - [`downloads`]: which block bodies are requested from whom.
//! - [`presync`]: headers of low-work branches are checked before any is stored.
//! - [`siphash`]: SipHash-2-4, for the short transfer ids of compact blocks.
//! - `net`: the thin tokio driver that runs the protocol over TCP.
//!
//! The protocol is also driven by a deterministic simulator (node/tests/it/p2p_sim.rs).

pub mod addrbook;
pub mod discovery;
pub mod downloads;
pub mod ledger;
pub mod loglimit;
mod net;
pub mod presync;
pub mod progress;
pub mod protocol;
pub mod siphash;
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
    /// How often sync progress is logged while syncing.
    pub progress_interval_ms: u64,
    /// `--external-addr`: advertised as ours instead of what peers report.
    pub external_addrs: Vec<SocketAddr>,
    /// The genesis file's seed names, resolved at start and whenever the address book
    /// is nearly empty, then the chain's fixed addresses ([`discovery::fixed_seeds`]).
    pub dns_seeds: Vec<String>,
    /// `--no-seeds`: neither seed names nor fixed addresses.
    pub no_seeds: bool,
    /// `--connect`: `seeds` are the only peers dialled (no seeds, no learned addresses).
    pub connect_only: bool,
}

/// What RPC needs from the P2P layer: [`P2p::network`], handed to [`crate::rpc::start`].
pub trait Network: Send + Sync {
    fn peers(&self) -> Vec<cairn_api::PeerInfo>;
    fn add_peer(&self, addr: SocketAddr) -> Result<(), String>;
    /// Drops the peer listening at `addr` and refuses it until unblocked. Returns
    /// false if it was already blocked.
    fn block_peer(&self, addr: SocketAddr) -> Result<bool, String>;
    /// Lifts [`Network::block_peer`]. Returns false if `addr` was not blocked.
    fn unblock_peer(&self, addr: SocketAddr) -> Result<bool, String>;
    /// True while a peer has shown more work than our tip and we are fetching it.
    fn is_syncing(&self) -> bool;
    /// Peer sockets open now: ready peers plus connections still in the handshake.
    fn peer_sockets(&self) -> usize;
    /// `net_getInfo`.
    fn info(&self) -> cairn_api::NetInfo;
}

/// The running P2P layer. It owns the protocol thread and every task (listener, dials,
/// connections, ticker, relay of node events); [`P2p::shutdown`] stops them. Dropping
/// it without `shutdown` stops them too, without waiting.
pub struct P2p {
    running: net::Running,
}

impl P2p {
    /// The bound listen address.
    pub fn local_addr(&self) -> SocketAddr {
        self.running.local_addr
    }

    /// The handle RPC lists, adds and blocks peers through.
    pub fn network(&self) -> Arc<dyn Network> {
        self.running.network()
    }

    /// Stops the tasks (closing every peer socket) and the protocol thread, which saves
    /// the address book and bans (`peers.json`, `bans.json`) and drops the protocol,
    /// and with it its reference to the node. Returns once all that is done.
    pub async fn shutdown(self) {
        self.running.shutdown().await;
    }
}

/// Starts listening and connecting; returns once the listener is bound.
pub async fn start(node: Arc<Node>, config: P2pConfig) -> anyhow::Result<P2p> {
    Ok(P2p { running: net::start(node, config).await? })
}
