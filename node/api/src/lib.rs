//! The Cairn JSON-RPC API, defined once.
//!
//! [`CairnApiServer`] is implemented by the node; [`CairnApiClient`] is the typed client
//! the wallet (and tests) call through any jsonrpsee client. Method names are fixed by
//! the design: `chain_*`, `state_*`, `tx_*`, `mempool_*`, `net_*`.
//!
//! Parameters that carry hashes, addresses or hex are taken as strings so the node can
//! answer a malformed one with a message that says exactly what was wrong (bad hex, bad
//! address checksum), rather than a generic deserialization error.

use cairn_core::merkle::MerkleProof;
use cairn_core::{Address, BlockHash, Txid};
use jsonrpsee::core::{RpcResult, SubscriptionResult};
use jsonrpsee::proc_macros::rpc;
use serde::{Deserialize, Serialize};

/// JSON-RPC error codes used beyond the standard ones (-32700 parse error, -32600
/// invalid request, -32601 method not found, -32602 invalid params, -32603 internal).
pub mod codes {
    /// tx_submit: the transfer was refused; the message says why.
    pub const TX_REJECTED: i32 = -32010;
    /// An admin method was called without the cookie.
    pub const UNAUTHORIZED: i32 = -32001;
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainInfo {
    pub chain_id: u32,
    pub genesis_hash: BlockHash,
    pub height: u64,
    pub best_hash: BlockHash,
    /// Cumulative work of the best chain, lowercase hex.
    pub total_work: String,
    /// Target of the next block, 64 hex characters.
    pub target: String,
    pub mempool_size: usize,
    pub peers: usize,
    pub syncing: bool,
    /// Hashes per second of this node's miner over the last few seconds (0 when not mining).
    pub hashrate: u64,
    /// Open P2P sockets: the `peers` plus connections still in the handshake.
    #[serde(default)]
    pub peer_sockets: usize,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RpcTransaction {
    pub txid: Txid,
    /// "coinbase" or "transfer".
    pub kind: String,
    /// Sender address (transfers only).
    pub from: Option<Address>,
    pub to: Address,
    pub amount: u64,
    pub fee: u64,
    /// Transfer nonce; for a coinbase, the block height it pays for.
    pub nonce: u64,
    /// Canonical encoding, hex (what tx_submit accepts, for transfers).
    pub hex: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RpcBlock {
    pub hash: BlockHash,
    pub height: u64,
    pub version: u32,
    pub prev: BlockHash,
    pub merkle_root: String,
    pub timestamp_ms: u64,
    pub target: String,
    pub nonce: u64,
    /// Canonical 124-byte header encoding, hex: hash it to check the proof of work.
    pub header_hex: String,
    /// Bytes of the block's canonical encoding; `None` when the node has only the header.
    pub size: Option<usize>,
    /// Blocks on top of this one on the best chain, counting itself (tip height - height
    /// + 1); 0 if off the best chain.
    pub confirmations: u64,
    /// What the node knows of the block: [`block_status::MAIN`], [`block_status::SIDE`],
    /// [`block_status::INVALID`] or [`block_status::HEADER_ONLY`].
    pub status: String,
    /// For an invalid block, the rule it broke (or the invalid ancestor it builds on).
    pub invalid_reason: Option<String>,
    /// `None` when the node has only the header.
    pub transactions: Option<Vec<RpcTransaction>>,
}

/// Values of [`RpcBlock::status`].
pub mod block_status {
    /// On the best chain.
    pub const MAIN: &str = "main";
    /// Body stored, off the best chain, not found invalid (valid when last connected,
    /// or never connected because its branch never had the most work).
    pub const SIDE: &str = "side";
    /// Failed validation, or builds on a block that did; `invalid_reason` says which.
    pub const INVALID: &str = "invalid";
    /// Only the header is known (its proof of work and header rules checked); the body
    /// has not been downloaded.
    pub const HEADER_ONLY: &str = "header-only";
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RpcTxStatus {
    pub tx: RpcTransaction,
    /// "pending" or "confirmed".
    pub status: String,
    pub block_hash: Option<BlockHash>,
    pub height: Option<u64>,
    pub confirmations: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RpcTxProof {
    pub txid: Txid,
    pub block_hash: BlockHash,
    pub height: u64,
    /// The block's 124-byte header, hex. Its SHA-256 is `block_hash`; its merkle root
    /// is bytes 44..76.
    pub header_hex: String,
    pub proof: MerkleProof,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewHead {
    pub hash: BlockHash,
    pub height: u64,
    pub prev: BlockHash,
    pub timestamp_ms: u64,
    /// Number of blocks disconnected from the previous best chain before this head was
    /// connected (0 for a plain extension).
    pub reorg_depth: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RpcAccount {
    pub address: Address,
    pub balance: u64,
    /// The nonce the next transfer must carry, at the tip.
    pub nonce: u64,
    /// The nonce after this account's transfers pending in the mempool.
    pub pending_nonce: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MempoolInfo {
    pub size: usize,
    pub bytes: usize,
    /// Lowest fee the mempool admits now.
    pub min_fee: u64,
    pub txids: Vec<Txid>,
}

/// `mempool_estimateFee`: what a transfer should pay now, and the figures behind it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeeEstimate {
    /// The fee to pay: the larger of `admit_fee` and `next_block_fee`.
    pub fee: u64,
    /// The node's minimum fee, also the smallest step of a replacement.
    pub min_fee: u64,
    /// The lowest fee admitted now: `min_fee`, or more when the pool is full and a
    /// newcomer must outrank the transfers evicted to make room.
    pub admit_fee: u64,
    /// The fee that ranks a transfer within the next block in the pool's order
    /// (`min_fee` while the whole pool fits in one block).
    pub next_block_fee: u64,
    /// Size of a transfer, in bytes, that the figures assume.
    pub tx_bytes: usize,
    pub pool_bytes: usize,
    pub pool_max_bytes: usize,
    /// Bytes of transfers one block holds.
    pub block_bytes: usize,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerInfo {
    pub addr: String,
    pub inbound: bool,
    pub height: u64,
    pub ping_ms: Option<u64>,
    pub user_agent: String,
}

// --- This node on the network (net_getInfo) ---

/// `net_getInfo`: where this node listens and how the network sees it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetInfo {
    /// The P2P protocol version spoken (docs/PROTOCOL.md).
    pub protocol_version: u32,
    /// The bound P2P listen address(es), as `IP:PORT`.
    pub listen: Vec<String>,
    /// The address(es) advertised to peers as ours; empty until one is known.
    pub external: Vec<ExternalAddr>,
    /// A peer has dialled us and finished the handshake since the start: we are
    /// reachable from outside (false: behind a NAT or firewall, or nobody tried yet).
    pub inbound_seen: bool,
}

/// One external address and how it was learned.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExternalAddr {
    /// `IP:PORT`.
    pub addr: String,
    /// `"configured"` (`--external-addr`) or `"peers"` (reported by peers in `groups`
    /// network groups, docs/PROTOCOL.md "Discovery").
    pub learned: String,
    /// With `"peers"`: how many network groups reported it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub groups: Option<u64>,
}

// --- Address history, block lists and pending transfers (state_getHistory,
// chain_getBlocks, mempool_getTransfers) ---

/// Most entries `state_getHistory` returns per page (also its default `limit`).
pub const MAX_HISTORY_LIMIT: u64 = 100;
/// Most blocks `chain_getBlocks` returns per call.
pub const MAX_BLOCKS_PER_CALL: u64 = 100;
/// Most transfers `mempool_getTransfers` returns per call (also its default `limit`).
pub const MAX_MEMPOOL_TRANSFERS: u64 = 1000;
/// `state_getHistory` on a node started with `--no-address-index`.
pub const ADDRESS_INDEX_OFF: i32 = -32020;

/// Values of `direction` in history entries.
pub mod direction {
    /// A coinbase paid to the address.
    pub const COINBASE: &str = "coinbase";
    /// A transfer to the address from another one.
    pub const IN: &str = "in";
    /// A transfer from the address to another one.
    pub const OUT: &str = "out";
    /// A transfer from the address to itself (only the fee leaves it).
    pub const SELF: &str = "self";
}

/// A confirmed transaction as one address sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RpcHistoryEntry {
    pub txid: Txid,
    pub height: u64,
    pub block_hash: BlockHash,
    /// The block's timestamp (ms since the epoch).
    pub timestamp_ms: u64,
    /// [`direction`]: "in", "out", "self" or "coinbase".
    pub direction: String,
    /// The other side: the recipient of "out", the sender of "in", the address itself
    /// for "self"; `None` for a coinbase.
    pub counterparty: Option<Address>,
    pub amount: u64,
    /// Paid by the sender ("out", "self"); 0 for a coinbase.
    pub fee: u64,
    /// The transfer's nonce (the sender's); for a coinbase, the height it pays for.
    pub nonce: u64,
    /// tip height - height + 1.
    pub confirmations: u64,
}

/// A transfer in the mempool as one address sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RpcPendingEntry {
    pub txid: Txid,
    /// "in", "out" or "self".
    pub direction: String,
    pub counterparty: Address,
    pub amount: u64,
    pub fee: u64,
    pub nonce: u64,
    /// When this node admitted it (ms since the epoch).
    pub received_ms: u64,
}

/// One page of an address's history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RpcHistory {
    pub address: Address,
    /// The tip the page was read at (confirmations count from it).
    pub tip_height: u64,
    /// Confirmed entries, newest first (by height, then position in the block).
    pub entries: Vec<RpcHistoryEntry>,
    /// The address's transfers in the mempool, newest first: on the first page (no
    /// `before`) only, empty on the others.
    pub pending: Vec<RpcPendingEntry>,
    /// Pass as `before` to get the next (older) page; `None` on the last page.
    pub next: Option<String>,
}

/// A best-chain block as lists and charts need it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RpcBlockSummary {
    pub height: u64,
    pub hash: BlockHash,
    pub prev: BlockHash,
    pub timestamp_ms: u64,
    /// The block's target, 64 hex characters.
    pub target: String,
    /// Transactions, the coinbase included.
    pub tx_count: u64,
    /// Bytes of the block's canonical encoding.
    pub size: usize,
}

/// A pending transfer in the mempool.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RpcMempoolTransfer {
    pub txid: Txid,
    pub from: Address,
    pub to: Address,
    pub amount: u64,
    pub fee: u64,
    pub nonce: u64,
    /// Canonical size in a block, bytes.
    pub size: usize,
    /// fee / size, for display (the node orders by the exact fraction).
    pub fee_rate: f64,
    /// When this node admitted it (ms since the epoch).
    pub received_ms: u64,
}

/// `mempool_getTransfers`: the highest fee rates first.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RpcMempoolTransfers {
    /// All pending transfers (the list holds at most `limit` of them).
    pub size: usize,
    pub transfers: Vec<RpcMempoolTransfer>,
}

/// `node_getStatus`: what `chain_getInfo` does not say about the node itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStatus {
    /// `cairn-node/<version>`, the user agent the node sends its peers.
    pub version: String,
    /// When the node process started, in ms since the Unix epoch.
    pub started_ms: u64,
    /// Seconds since then.
    pub uptime_s: u64,
    /// Our tip's height.
    pub height: u64,
    /// Height of the best valid header known: what the node syncs toward.
    pub header_height: u64,
    pub syncing: bool,
    pub peers_inbound: usize,
    pub peers_outbound: usize,
}

#[rpc(server, client)]
pub trait CairnApi {
    #[method(name = "chain_getInfo")]
    async fn chain_get_info(&self) -> RpcResult<ChainInfo>;

    #[method(name = "chain_getBlockHash")]
    async fn chain_get_block_hash(&self, height: u64) -> RpcResult<Option<BlockHash>>;

    #[method(name = "chain_getBlock")]
    async fn chain_get_block(&self, hash: String) -> RpcResult<Option<RpcBlock>>;

    #[method(name = "chain_getBlockByHeight")]
    async fn chain_get_block_by_height(&self, height: u64) -> RpcResult<Option<RpcBlock>>;

    #[method(name = "chain_getTransaction")]
    async fn chain_get_transaction(&self, txid: String) -> RpcResult<Option<RpcTxStatus>>;

    #[method(name = "chain_getTxProof")]
    async fn chain_get_tx_proof(&self, txid: String) -> RpcResult<Option<RpcTxProof>>;

    #[subscription(name = "chain_subscribeNewHeads" => "chain_newHead", unsubscribe = "chain_unsubscribeNewHeads", item = NewHead)]
    async fn chain_subscribe_new_heads(&self) -> SubscriptionResult;

    #[method(name = "state_getAccount")]
    async fn state_get_account(&self, address: String) -> RpcResult<RpcAccount>;

    #[method(name = "tx_submit")]
    async fn tx_submit(&self, hex: String) -> RpcResult<Txid>;

    #[method(name = "mempool_getInfo")]
    async fn mempool_get_info(&self) -> RpcResult<MempoolInfo>;

    /// `from` (optional): the sender, whose own pending transfers a new one never evicts.
    #[method(name = "mempool_estimateFee")]
    async fn mempool_estimate_fee(&self, from: Option<String>) -> RpcResult<FeeEstimate>;

    #[method(name = "net_peers")]
    async fn net_peers(&self) -> RpcResult<Vec<PeerInfo>>;

    /// This node on the network: listen and external addresses, whether peers reach it.
    #[method(name = "net_getInfo")]
    async fn net_get_info(&self) -> RpcResult<NetInfo>;

    /// Admin: connect to a peer. Needs the cookie.
    #[method(name = "net_addPeer", with_extensions)]
    async fn net_add_peer(&self, addr: String) -> RpcResult<bool>;

    /// Admin: disconnect the peer whose listen address is `addr` (IP:PORT) and refuse
    /// to dial it or accept its handshake until `net_unblockPeer`. Needs the cookie.
    /// Returns false if it was already blocked.
    #[method(name = "net_blockPeer", with_extensions)]
    async fn net_block_peer(&self, addr: String) -> RpcResult<bool>;

    /// Admin: accept `addr` again. Needs the cookie. Returns false if it was not blocked.
    #[method(name = "net_unblockPeer", with_extensions)]
    async fn net_unblock_peer(&self, addr: String) -> RpcResult<bool>;

    /// An address's confirmed history, newest first, `limit` (1 to 100, default 100)
    /// entries per page after the cursor `before` (the `next` of the previous page),
    /// with its pending transfers on the first page.
    #[method(name = "state_getHistory")]
    async fn state_get_history(
        &self,
        address: String,
        before: Option<String>,
        limit: Option<u64>,
    ) -> RpcResult<RpcHistory>;

    /// Up to `count` (1 to 100) best-chain blocks from `from_height` up, oldest first;
    /// fewer when the tip is nearer.
    #[method(name = "chain_getBlocks")]
    async fn chain_get_blocks(&self, from_height: u64, count: u64) -> RpcResult<Vec<RpcBlockSummary>>;

    /// Pending transfers, highest fee rate first, at most `limit` (1 to 1000, default 1000).
    #[method(name = "mempool_getTransfers")]
    async fn mempool_get_transfers(&self, limit: Option<u64>) -> RpcResult<RpcMempoolTransfers>;

    /// The node's version, uptime, sync target and peers by direction (`cairn-node status`).
    #[method(name = "node_getStatus")]
    async fn node_get_status(&self) -> RpcResult<NodeStatus>;
}
