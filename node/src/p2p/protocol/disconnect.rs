//! Why the protocol drops a peer: its own file, so that whoever counts the reasons (the
//! metrics) need not depend on the protocol itself.

use crate::p2p::wire::WireError;
use thiserror::Error;

/// Why we dropped a peer. Logged; the serious ones also ban.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum DisconnectReason {
    #[error("handshake timed out")]
    HandshakeTimeout,
    #[error("no pong in time")]
    PingTimeout,
    #[error("peer is on another network: {0}")]
    WrongNetwork(String),
    #[error("connected to ourselves")]
    SelfConnection,
    #[error("already connected to this node")]
    Duplicate,
    #[error("too many inbound peers")]
    TooManyPeers,
    #[error("address is banned")]
    Banned,
    #[error("blocked by the operator (net_blockPeer)")]
    Blocked,
    #[error("protocol violation: {0}")]
    Protocol(String),
    #[error("misbehaviour: {0}")]
    Misbehaviour(String),
    #[error("malformed frame: {0}")]
    Wire(WireError),
    #[error("stalled block download")]
    Stalled,
    #[error("claimed more work but did not deliver headers")]
    NoHeaders,
    #[error("did not deliver a block of the chain it showed us")]
    NotDelivered,
    #[error("send queue full (peer reads too slowly)")]
    SlowReader,
    #[error("connection closed")]
    Closed,
}
