//! The JSON-RPC server.
//!
//! This module owns the server side of the `cairn-api` trait: one jsonrpsee server
//! serving HTTP and WebSocket on `--rpc-addr`, request limits, cookie authentication for
//! admin methods, parameter parsing with precise error messages, and the new-heads
//! subscription. A plain `GET` is the block explorer's (crate::explorer).
//!
//! Cookie auth works like Bitcoin Core's: at each start the node writes a random cookie
//! to `<data-dir>/.cookie` (mode 0600). An HTTP middleware checks the `Authorization:
//! Basic` header (user `__cookie__`, password the cookie) and marks the request with
//! [`Authorized`]; admin methods read the mark through jsonrpsee's request extensions.
//! Reads and `tx_submit` need no auth.
//!
//! Handlers that touch the chain or mempool run on the blocking pool: the locks are
//! std mutexes that block import may hold for a while, and signature verification is
//! CPU work; neither should stall the async workers that serve other connections.
//! Two hot calls avoid that hop when they can: `tx_submit` admits on the rayon thread
//! that checked the signature, and `chain_getInfo` reads on the async worker, each only
//! if both locks are free at once (`try_lock`, which never waits); otherwise they go to
//! the blocking pool like the rest.

use crate::chain::BlockStatus;
use crate::chain::HistoryCursor;
use crate::node::{Node, NodeEvent, Origin, SubmitError};
use crate::p2p::Network;
use crate::store;
use cairn_api::{
    block_status, codes, CairnApiServer, ChainInfo, FeeEstimate, MempoolInfo, NewHead, PeerInfo, RpcAccount,
    RpcBlock, RpcTransaction, RpcTxProof, RpcTxStatus,
};
use cairn_api::{
    RpcBlockSummary, RpcHistory, RpcHistoryEntry, RpcMempoolTransfer, RpcMempoolTransfers, RpcPendingEntry,
    ADDRESS_INDEX_OFF, MAX_BLOCKS_PER_CALL, MAX_HISTORY_LIMIT, MAX_MEMPOOL_TRANSFERS,
};
use cairn_core::block::{Block, BlockHeader};
use cairn_core::transaction::{SignedTransfer, Transaction};
use cairn_core::{encoding, merkle, Address, BlockHash, Txid};
use futures::future::Either;
use jsonrpsee::core::{async_trait, RpcResult, SubscriptionResult};
use jsonrpsee::server::middleware::rpc::{
    Batch, MethodResponse, Notification, Request, RpcServiceBuilder, RpcServiceT,
};
use jsonrpsee::server::{
    BatchRequestConfig, PendingSubscriptionSink, ServerConfig, ServerHandle, SubscriptionMessage,
};
use jsonrpsee::types::error::{
    ErrorObjectOwned, INTERNAL_ERROR_CODE, INVALID_PARAMS_CODE, INVALID_REQUEST_CODE,
};
use jsonrpsee::types::Id;
use jsonrpsee::Extensions;
use std::future::Future;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::sync::broadcast::error::RecvError;

/// Largest request body (HTTP) or message (WebSocket). A signed transfer is under 400
/// hex characters, so this leaves room for batches while refusing memory abuse.
pub const MAX_REQUEST_BYTES: u32 = 512 * 1024;
/// Largest response: a full block as JSON is a few times its binary size.
pub const MAX_RESPONSE_BYTES: u32 = 64 * 1024 * 1024;
pub const MAX_CONNECTIONS: u32 = 128;
pub const MAX_BATCH: u32 = 100;
pub const MAX_SUBSCRIPTIONS_PER_CONNECTION: u32 = 16;
/// User name of cookie auth.
pub const COOKIE_USER: &str = "__cookie__";

/// Marks a request that carried the right cookie.
#[derive(Clone, Copy, Debug)]
pub struct Authorized;

/// The cookie file: written at start, removed when dropped.
pub struct Cookie {
    path: PathBuf,
    secret: String,
}

impl Cookie {
    /// Writes a fresh random cookie to `<data_dir>/.cookie` with mode 0600.
    pub fn create(data_dir: &Path) -> std::io::Result<Cookie> {
        use rand::RngCore;
        let mut bytes = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        let secret = hex::encode(bytes);
        let path = data_dir.join(".cookie");
        let tmp = data_dir.join(".cookie.tmp");
        let _ = std::fs::remove_file(&tmp);
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = opts.open(&tmp)?;
        f.write_all(format!("{COOKIE_USER}:{secret}").as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)?;
        Ok(Cookie { path, secret })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The `Authorization` header value that this cookie accepts.
    pub fn header_value(&self) -> String {
        use base64::Engine;
        let creds =
            base64::engine::general_purpose::STANDARD.encode(format!("{COOKIE_USER}:{}", self.secret));
        format!("Basic {creds}")
    }
}

impl Drop for Cookie {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Tower layer that checks the `Authorization` header against the cookie.
#[derive(Clone)]
struct AuthLayer {
    expected: Arc<str>,
}

impl<S> tower::Layer<S> for AuthLayer {
    type Service = AuthService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        AuthService { inner, expected: self.expected.clone() }
    }
}

#[derive(Clone)]
struct AuthService<S> {
    inner: S,
    expected: Arc<str>,
}

/// Compares without an early exit, so response timing says nothing about the cookie.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl<S, B> tower::Service<http::Request<B>> for AuthService<S>
where
    S: tower::Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        let ok = req
            .headers()
            .get(http::header::AUTHORIZATION)
            .is_some_and(|v| constant_time_eq(v.as_bytes(), self.expected.as_bytes()));
        // Never trust a mark a client could have set some other way.
        req.extensions_mut().remove::<Authorized>();
        if ok {
            req.extensions_mut().insert(Authorized);
        }
        self.inner.call(req)
    }
}

/// RPC middleware refusing a batch of more than [`MAX_BATCH`] calls as a whole with
/// -32600 (invalid request), the code JSON-RPC 2.0 gives a request that is not valid.
/// The body limit bounds what the server parses before this counts the calls.
#[derive(Clone)]
struct BatchLimit<S> {
    inner: S,
}

impl<S> RpcServiceT for BatchLimit<S>
where
    S: RpcServiceT<
            MethodResponse = MethodResponse,
            BatchResponse = MethodResponse,
            NotificationResponse = MethodResponse,
        > + Send
        + Sync
        + Clone
        + 'static,
{
    type MethodResponse = MethodResponse;
    type NotificationResponse = MethodResponse;
    type BatchResponse = MethodResponse;

    fn call<'a>(&self, request: Request<'a>) -> impl Future<Output = MethodResponse> + Send + 'a {
        self.inner.call(request)
    }

    fn batch<'a>(&self, requests: Batch<'a>) -> impl Future<Output = MethodResponse> + Send + 'a {
        let calls = requests.len();
        if calls > MAX_BATCH as usize {
            let error = ErrorObjectOwned::owned(
                INVALID_REQUEST_CODE,
                format!("invalid request: a batch holds at most {MAX_BATCH} calls, this one has {calls}"),
                None::<()>,
            );
            Either::Left(std::future::ready(MethodResponse::error(Id::Null, error)))
        } else {
            Either::Right(self.inner.batch(requests))
        }
    }

    fn notification<'a>(&self, n: Notification<'a>) -> impl Future<Output = MethodResponse> + Send + 'a {
        self.inner.notification(n)
    }
}

/// RPC middleware counting and timing every call by method and outcome
/// ([`crate::metrics::RpcMetrics`]); a batch is counted and timed as one call of
/// method `batch`.
#[derive(Clone)]
struct CallMetrics<S> {
    inner: S,
    metrics: &'static crate::metrics::RpcMetrics,
}

impl<S> RpcServiceT for CallMetrics<S>
where
    S: RpcServiceT<
            MethodResponse = MethodResponse,
            BatchResponse = MethodResponse,
            NotificationResponse = MethodResponse,
        > + Send
        + Sync
        + Clone
        + 'static,
{
    type MethodResponse = MethodResponse;
    type NotificationResponse = MethodResponse;
    type BatchResponse = MethodResponse;

    fn call<'a>(&self, request: Request<'a>) -> impl Future<Output = MethodResponse> + Send + 'a {
        let (metrics, started) = (self.metrics, std::time::Instant::now());
        let method = metrics.method_index(request.method_name());
        let response = self.inner.call(request);
        async move {
            let response = response.await;
            metrics.record(method, response.is_success(), started.elapsed());
            response
        }
    }

    fn batch<'a>(&self, requests: Batch<'a>) -> impl Future<Output = MethodResponse> + Send + 'a {
        let (metrics, started) = (self.metrics, std::time::Instant::now());
        let response = self.inner.batch(requests);
        async move {
            let response = response.await;
            let batch = metrics.method_index(crate::metrics::RPC_BATCH);
            metrics.record(batch, response.is_success(), started.elapsed());
            response
        }
    }

    fn notification<'a>(&self, n: Notification<'a>) -> impl Future<Output = MethodResponse> + Send + 'a {
        self.inner.notification(n)
    }
}

/// A running RPC server.
pub struct RpcServer {
    pub local_addr: SocketAddr,
    pub handle: ServerHandle,
}

/// Starts the server on `addr` serving `node`, and the P2P layer through `network`
/// (`None`: the `net_*` methods answer that P2P is not running); admin methods accept
/// `cookie`.
pub async fn start(
    node: Arc<Node>,
    network: Option<Arc<dyn Network>>,
    addr: SocketAddr,
    cookie: &Cookie,
) -> anyhow::Result<RpcServer> {
    let config = ServerConfig::builder()
        .max_request_body_size(MAX_REQUEST_BYTES)
        .max_response_body_size(MAX_RESPONSE_BYTES)
        .max_connections(MAX_CONNECTIONS)
        .max_subscriptions_per_connection(MAX_SUBSCRIPTIONS_PER_CONNECTION)
        // jsonrpsee's own limit answers -32010, the code of a tx_submit refusal;
        // [`BatchLimit`] answers an oversize batch with -32600 instead.
        .set_batch_request_config(BatchRequestConfig::Unlimited)
        .build();
    let http_mw = tower::ServiceBuilder::new()
        .layer(AuthLayer { expected: Arc::from(cookie.header_value().as_str()) })
        // Plain GETs: the block explorer page (crate::explorer); the rest goes on to RPC.
        .layer(crate::explorer::ExplorerLayer);
    let module = methods(node, network)?;
    let metrics = crate::metrics::rpc_methods(module.method_names());
    let server = jsonrpsee::server::Server::builder()
        .set_config(config)
        .set_http_middleware(http_mw)
        .set_rpc_middleware(
            RpcServiceBuilder::new()
                .layer_fn(move |inner| CallMetrics { inner, metrics })
                .layer_fn(|inner| BatchLimit { inner }),
        )
        .build(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen for RPC on {addr}: {e}"))?;
    let local_addr = server.local_addr()?;
    let handle = server.start(module);
    Ok(RpcServer { local_addr, handle })
}

/// Every RPC method, without a server: what [`start`] serves, and what in-process
/// callers (the fuzz targets in fuzz/) call with raw JSON.
pub fn methods(
    node: Arc<Node>,
    network: Option<Arc<dyn Network>>,
) -> anyhow::Result<jsonrpsee::RpcModule<()>> {
    let mut module = jsonrpsee::RpcModule::new(());
    module.merge(RpcImpl { node, network }.into_rpc())?;
    // A method that does nothing: the benchmark's yardstick for the server's own cost.
    module.register_method("rpc_ping", |_, _, _| "pong")?;
    Ok(module)
}

struct RpcImpl {
    node: Arc<Node>,
    network: Option<Arc<dyn Network>>,
}

fn invalid_params(msg: impl Into<String>) -> ErrorObjectOwned {
    ErrorObjectOwned::owned(INVALID_PARAMS_CODE, msg, None::<()>)
}

fn internal(msg: impl std::fmt::Display) -> ErrorObjectOwned {
    ErrorObjectOwned::owned(INTERNAL_ERROR_CODE, format!("internal error: {msg}"), None::<()>)
}

/// A refusal from the P2P layer (e.g. "is blocked"), passed on as it was worded.
fn network_error(msg: String) -> ErrorObjectOwned {
    ErrorObjectOwned::owned(INTERNAL_ERROR_CODE, msg, None::<()>)
}

fn parse_hash(what: &str, s: &str) -> Result<[u8; 32], ErrorObjectOwned> {
    cairn_core::hash::parse_hex32(s.trim()).map_err(|e| invalid_params(format!("bad {what}: {e}")))
}

fn parse_address(s: &str) -> Result<Address, ErrorObjectOwned> {
    s.parse::<Address>().map_err(|e| invalid_params(format!("bad address: {e}")))
}

/// Accepts the canonical encoding of a signed transfer, or of a transaction holding one.
fn parse_transfer_hex(s: &str) -> Result<SignedTransfer, ErrorObjectOwned> {
    let s = s.trim();
    let s = s.strip_prefix("0x").unwrap_or(s);
    if s.len() > 4096 {
        return Err(invalid_params(format!("bad transfer: {} hex characters is far too long", s.len())));
    }
    let bytes = hex::decode(s).map_err(|e| invalid_params(format!("bad hex: {e}")))?;
    if let Ok(t) = encoding::decode::<SignedTransfer>(&bytes) {
        return Ok(t);
    }
    match encoding::decode::<Transaction>(&bytes) {
        Ok(Transaction::Transfer(t)) => Ok(t),
        Ok(Transaction::Coinbase(_)) => Err(invalid_params("bad transfer: a coinbase cannot be submitted")),
        Err(_) => Err(invalid_params(format!(
            "bad transfer: {} bytes are not the canonical encoding of a signed transfer ({} bytes)",
            bytes.len(),
            encoding::encoded_len(&SignedTransfer {
                transfer: cairn_core::Transfer {
                    chain_id: 0,
                    nonce: 0,
                    from: [0; 33],
                    to: Address::default(),
                    amount: cairn_core::Amount(0),
                    fee: cairn_core::Amount(0),
                },
                signature: [0; 64],
            })
        ))),
    }
}

/// Runs `f` on the blocking pool.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ErrorObjectOwned> + Send + 'static,
) -> Result<T, ErrorObjectOwned> {
    tokio::task::spawn_blocking(f).await.map_err(internal)?
}

pub fn rpc_transaction(tx: &Transaction) -> RpcTransaction {
    match tx {
        Transaction::Coinbase(cb) => RpcTransaction {
            txid: tx.txid(),
            kind: "coinbase".into(),
            from: None,
            to: cb.to,
            amount: cb.amount.0,
            fee: 0,
            nonce: cb.height,
            hex: hex::encode(encoding::encode(tx)),
        },
        Transaction::Transfer(st) => RpcTransaction {
            txid: tx.txid(),
            kind: "transfer".into(),
            from: Some(st.transfer.sender()),
            to: st.transfer.to,
            amount: st.transfer.amount.0,
            fee: st.transfer.fee.0,
            nonce: st.transfer.nonce,
            hex: hex::encode(encoding::encode(st)),
        },
    }
}

/// The RPC view of a block: the header, and the body when it is stored.
fn rpc_block(
    header: &BlockHeader,
    body: Option<&Block>,
    confirmations: u64,
    status: &str,
    invalid_reason: Option<String>,
) -> RpcBlock {
    RpcBlock {
        hash: header.hash(),
        height: header.height,
        version: header.version,
        prev: header.prev,
        merkle_root: hex::encode(header.merkle_root),
        timestamp_ms: header.timestamp_ms,
        target: header.target.to_hex(),
        nonce: header.nonce,
        header_hex: hex::encode(header.to_bytes()),
        size: body.map(Block::encoded_len),
        confirmations,
        status: status.to_string(),
        invalid_reason,
        transactions: body.map(|b| b.transactions.iter().map(rpc_transaction).collect()),
    }
}

/// What `chain_getInfo` reads under the chain lock.
struct TipSummary {
    chain_id: u32,
    genesis_hash: BlockHash,
    tip: crate::chain::TipInfo,
    target: cairn_core::Target,
    behind: bool,
}

impl TipSummary {
    fn of(chain: &crate::chain::Chain) -> TipSummary {
        let tip = chain.tip();
        let params = *chain.params();
        TipSummary {
            chain_id: params.chain_id,
            genesis_hash: chain.genesis_hash(),
            target: chain.tip_parent_info().next_target(&params),
            behind: chain.best_header().total_work > tip.total_work,
            tip,
        }
    }
}

/// Any block the node has indexed (best chain, side branch, invalid, or header only);
/// `None` for one it has never indexed.
fn block_json(node: &Node, hash: &BlockHash) -> Result<Option<RpcBlock>, ErrorObjectOwned> {
    let chain = node.chain();
    let Some(state) = chain.block_status(hash) else { return Ok(None) };
    let body = chain.block(hash).map_err(internal)?;
    let Some(header) = body.as_ref().map(|b| b.header).or_else(|| chain.header(hash)) else {
        return Err(internal(format!("indexed block {hash} has no stored header")));
    };
    let (status, confirmations, reason) = if chain.is_on_best_chain(hash) {
        (block_status::MAIN, chain.tip().height.saturating_sub(header.height) + 1, None)
    } else {
        match state {
            BlockStatus::Invalid => (block_status::INVALID, 0, chain.invalid_reason(hash).map_err(internal)?),
            BlockStatus::HeaderOnly => (block_status::HEADER_ONLY, 0, None),
            BlockStatus::Stored | BlockStatus::Valid => (block_status::SIDE, 0, None),
        }
    };
    drop(chain);
    Ok(Some(rpc_block(&header, body.as_ref(), confirmations, status, reason)))
}

#[async_trait]
impl CairnApiServer for RpcImpl {
    async fn chain_get_info(&self) -> RpcResult<ChainInfo> {
        // Everything it reads is in memory: when the chain and mempool locks are free it
        // answers on this async worker without waiting for either; when one is held (a
        // block import, an admission) it waits on the blocking pool, as every call did.
        let quick = self.node.try_chain().map(|c| TipSummary::of(&c));
        let quick = quick.and_then(|t| self.node.try_mempool().map(|m| (t, m.len())));
        let (tip, mempool_size) = match quick {
            Some(read) => read,
            None => {
                let node = self.node.clone();
                blocking(move || {
                    let tip = TipSummary::of(&node.chain());
                    Ok((tip, node.mempool().len()))
                })
                .await?
            }
        };
        let (peers, syncing, peer_sockets) = match &self.network {
            // The P2P layer knows whether a peer can deliver what we lack; a header-only
            // branch nobody offers is not "syncing".
            Some(n) => (n.peers().len(), n.is_syncing(), n.peer_sockets()),
            None => (0, tip.behind, 0),
        };
        Ok(ChainInfo {
            chain_id: tip.chain_id,
            genesis_hash: tip.genesis_hash,
            height: tip.tip.height,
            best_hash: tip.tip.hash,
            total_work: tip.tip.total_work.to_hex(),
            target: tip.target.to_hex(),
            mempool_size,
            peers,
            syncing,
            hashrate: self.node.hashrate(),
            peer_sockets,
        })
    }

    async fn chain_get_block_hash(&self, height: u64) -> RpcResult<Option<BlockHash>> {
        let node = self.node.clone();
        blocking(move || Ok(node.chain().best_hash_at(height))).await
    }

    async fn chain_get_block(&self, hash: String) -> RpcResult<Option<RpcBlock>> {
        let hash = BlockHash(parse_hash("block hash", &hash)?);
        let node = self.node.clone();
        blocking(move || block_json(&node, &hash)).await
    }

    async fn chain_get_block_by_height(&self, height: u64) -> RpcResult<Option<RpcBlock>> {
        let node = self.node.clone();
        blocking(move || {
            let Some(hash) = node.chain().best_hash_at(height) else { return Ok(None) };
            block_json(&node, &hash)
        })
        .await
    }

    async fn chain_get_transaction(&self, txid: String) -> RpcResult<Option<RpcTxStatus>> {
        let txid = Txid(parse_hash("txid", &txid)?);
        let node = self.node.clone();
        blocking(move || {
            if let Some(tx) = node.mempool().get(&txid) {
                return Ok(Some(RpcTxStatus {
                    tx: rpc_transaction(&Transaction::Transfer(tx)),
                    status: "pending".into(),
                    block_hash: None,
                    height: None,
                    confirmations: 0,
                }));
            }
            let chain = node.chain();
            let Some(loc) = chain.tx_location(&txid).map_err(internal)? else { return Ok(None) };
            let Some(block) = chain.block(&loc.block_hash).map_err(internal)? else { return Ok(None) };
            let tip = chain.tip().height;
            drop(chain);
            let Some(tx) = block.transactions.get(loc.index as usize) else {
                return Err(internal("transaction index points past its block"));
            };
            Ok(Some(RpcTxStatus {
                tx: rpc_transaction(tx),
                status: "confirmed".into(),
                block_hash: Some(loc.block_hash),
                height: Some(loc.height),
                confirmations: tip.saturating_sub(loc.height) + 1,
            }))
        })
        .await
    }

    async fn chain_get_tx_proof(&self, txid: String) -> RpcResult<Option<RpcTxProof>> {
        let txid = Txid(parse_hash("txid", &txid)?);
        let node = self.node.clone();
        blocking(move || {
            let chain = node.chain();
            let Some(loc) = chain.tx_location(&txid).map_err(internal)? else { return Ok(None) };
            let Some(block) = chain.block(&loc.block_hash).map_err(internal)? else { return Ok(None) };
            drop(chain);
            let proof = merkle::merkle_proof(&block.txids(), loc.index as usize)
                .ok_or_else(|| internal("transaction index points past its block"))?;
            Ok(Some(RpcTxProof {
                txid,
                block_hash: loc.block_hash,
                height: loc.height,
                header_hex: hex::encode(block.header.to_bytes()),
                proof,
            }))
        })
        .await
    }

    async fn chain_subscribe_new_heads(&self, pending: PendingSubscriptionSink) -> SubscriptionResult {
        // Subscribe before accepting so no head between the two is missed.
        let mut events = self.node.subscribe();
        let sink = pending.accept().await?;
        tokio::spawn(async move {
            loop {
                let event = tokio::select! {
                    _ = sink.closed() => return,
                    e = events.recv() => e,
                };
                let (connected, disconnected) = match event {
                    Ok(NodeEvent::NewTip { connected, disconnected, .. }) => (connected, disconnected),
                    Ok(_) => continue,
                    Err(RecvError::Lagged(n)) => {
                        tracing::debug!(skipped = n, "new-heads subscriber lagged");
                        continue;
                    }
                    Err(RecvError::Closed) => return,
                };
                let heads = connected.iter().map(|h| (h.hash(), h));
                for (i, (hash, header)) in heads.enumerate() {
                    let head = NewHead {
                        hash,
                        height: header.height,
                        prev: header.prev,
                        timestamp_ms: header.timestamp_ms,
                        reorg_depth: if i == 0 { disconnected } else { 0 },
                    };
                    let Ok(msg) = serde_json::value::to_raw_value(&head) else { continue };
                    if sink.send(SubscriptionMessage::from(msg)).await.is_err() {
                        return;
                    }
                }
            }
        });
        Ok(())
    }

    async fn state_get_account(&self, address: String) -> RpcResult<RpcAccount> {
        let address = parse_address(&address)?;
        let node = self.node.clone();
        blocking(move || {
            let account = node.chain().account(&address).map_err(internal)?;
            let pending_nonce = node.mempool().pending_nonce(&address, account.nonce);
            Ok(RpcAccount { address, balance: account.balance.0, nonce: account.nonce, pending_nonce })
        })
        .await
    }

    async fn tx_submit(&self, hex: String) -> RpcResult<Txid> {
        let tx = parse_transfer_hex(&hex)?;
        // The signature is checked, and the transfer admitted, on the rayon pool, off the
        // async workers and with no lock held during the check (see `submit_on_cores`).
        let admitted = crate::node::submit_on_cores(self.node.clone(), tx, Origin::Rpc)
            .await
            .ok_or_else(|| internal("the signature check panicked"))?;
        admitted.map(|(txid, _)| txid).map_err(|e| {
            let msg = match &e {
                SubmitError::Invalid(inner) => format!("transfer refused: {inner}"),
                SubmitError::Rejected(inner) => format!("transfer refused: {inner}"),
                SubmitError::Duplicate => "transfer refused: duplicate: already in the mempool".to_string(),
            };
            ErrorObjectOwned::owned(codes::TX_REJECTED, msg, None::<()>)
        })
    }

    async fn mempool_get_info(&self) -> RpcResult<MempoolInfo> {
        let node = self.node.clone();
        blocking(move || {
            let m = node.mempool();
            Ok(MempoolInfo { size: m.len(), bytes: m.bytes(), min_fee: m.min_fee().0, txids: m.txids() })
        })
        .await
    }

    async fn mempool_estimate_fee(&self, from: Option<String>) -> RpcResult<FeeEstimate> {
        let from = from.map(|a| parse_address(&a)).transpose()?;
        let node = self.node.clone();
        blocking(move || {
            let block_bytes = crate::miner::transfer_budget(node.chain().params());
            let e = node.mempool().estimate_fee(
                crate::mempool::standard_transfer_size(),
                block_bytes,
                from.as_ref(),
            );
            Ok(FeeEstimate {
                fee: e.fee.0,
                min_fee: e.min_fee.0,
                admit_fee: e.admit_fee.0,
                next_block_fee: e.next_block_fee.0,
                tx_bytes: e.tx_bytes,
                pool_bytes: e.pool_bytes,
                pool_max_bytes: e.pool_max_bytes,
                block_bytes: e.block_bytes,
            })
        })
        .await
    }

    async fn net_peers(&self) -> RpcResult<Vec<PeerInfo>> {
        Ok(self.network.as_ref().map(|n| n.peers()).unwrap_or_default())
    }

    async fn net_get_info(&self) -> RpcResult<cairn_api::NetInfo> {
        Ok(self.network()?.info())
    }

    async fn net_add_peer(&self, ext: &Extensions, addr: String) -> RpcResult<bool> {
        require_admin(ext, "net_addPeer")?;
        let sa = parse_peer_addr(&addr)?;
        let net = self.network()?;
        net.add_peer(sa).map_err(network_error)?;
        Ok(true)
    }

    async fn net_block_peer(&self, ext: &Extensions, addr: String) -> RpcResult<bool> {
        require_admin(ext, "net_blockPeer")?;
        let sa = parse_peer_addr(&addr)?;
        self.network()?.block_peer(sa).map_err(network_error)
    }

    async fn net_unblock_peer(&self, ext: &Extensions, addr: String) -> RpcResult<bool> {
        require_admin(ext, "net_unblockPeer")?;
        let sa = parse_peer_addr(&addr)?;
        self.network()?.unblock_peer(sa).map_err(network_error)
    }

    async fn state_get_history(
        &self,
        address: String,
        before: Option<String>,
        limit: Option<u64>,
    ) -> RpcResult<RpcHistory> {
        let address = parse_address(&address)?;
        let before = before.as_deref().map(parse_cursor).transpose()?;
        let limit = check_limit("limit", limit.unwrap_or(MAX_HISTORY_LIMIT), MAX_HISTORY_LIMIT)?;
        let node = self.node.clone();
        blocking(move || history_json(&node, address, before, limit)).await
    }

    async fn chain_get_blocks(&self, from_height: u64, count: u64) -> RpcResult<Vec<RpcBlockSummary>> {
        let count = check_limit("count", count, MAX_BLOCKS_PER_CALL)?;
        let node = self.node.clone();
        blocking(move || {
            let chain = node.chain();
            let tip = chain.tip().height;
            if from_height > tip {
                return Err(invalid_params(format!(
                    "from_height {from_height} is above the tip (height {tip})"
                )));
            }
            let blocks = chain.block_summaries(from_height, count).map_err(internal)?;
            drop(chain);
            Ok(blocks
                .into_iter()
                .map(|b| RpcBlockSummary {
                    height: b.header.height,
                    hash: b.hash,
                    prev: b.header.prev,
                    timestamp_ms: b.header.timestamp_ms,
                    target: b.header.target.to_hex(),
                    tx_count: b.tx_count,
                    size: b.size,
                })
                .collect())
        })
        .await
    }

    async fn mempool_get_transfers(&self, limit: Option<u64>) -> RpcResult<RpcMempoolTransfers> {
        let limit = check_limit("limit", limit.unwrap_or(MAX_MEMPOOL_TRANSFERS), MAX_MEMPOOL_TRANSFERS)?;
        let node = self.node.clone();
        blocking(move || {
            let m = node.mempool();
            let size = m.len();
            let top = m.top_by_fee_rate(limit);
            drop(m);
            let transfers = top
                .into_iter()
                .map(|p| RpcMempoolTransfer {
                    txid: p.txid,
                    from: p.sender,
                    to: p.tx.transfer.to,
                    amount: p.tx.transfer.amount.0,
                    fee: p.tx.transfer.fee.0,
                    nonce: p.tx.transfer.nonce,
                    size: p.size,
                    fee_rate: p.tx.transfer.fee.0 as f64 / p.size.max(1) as f64,
                    received_ms: p.added_ms,
                })
                .collect();
            Ok(RpcMempoolTransfers { size, transfers })
        })
        .await
    }

    async fn node_get_status(&self) -> RpcResult<cairn_api::NodeStatus> {
        let node = self.node.clone();
        let network = self.network.clone();
        blocking(move || {
            let chain = node.chain();
            let (height, header_height) = (chain.tip().height, chain.best_header().height);
            let behind = chain.best_header().total_work > chain.tip().total_work;
            drop(chain);
            let peers = network.as_ref().map(|n| n.peers()).unwrap_or_default();
            let inbound = peers.iter().filter(|p| p.inbound).count();
            let (started_ms, uptime) = process_started();
            Ok(cairn_api::NodeStatus {
                version: format!("cairn-node/{}", env!("CARGO_PKG_VERSION")),
                started_ms,
                uptime_s: uptime.as_secs(),
                height,
                header_height,
                syncing: network.as_ref().map_or(behind, |n| n.is_syncing()),
                peers_inbound: inbound,
                peers_outbound: peers.len() - inbound,
            })
        })
        .await
    }
}

// --- state_getHistory, chain_getBlocks, mempool_getTransfers ---

/// A page size between 1 and `max`.
fn check_limit(what: &str, n: u64, max: u64) -> Result<usize, ErrorObjectOwned> {
    if n == 0 || n > max {
        return Err(invalid_params(format!("{what} must be between 1 and {max}, got {n}")));
    }
    usize::try_from(n).map_err(|_| invalid_params(format!("{what} {n} is too large")))
}

/// A history cursor as `next` gives it: `HEIGHT:INDEX`.
fn parse_cursor(s: &str) -> Result<HistoryCursor, ErrorObjectOwned> {
    let bad = || {
        invalid_params(format!(
            "bad cursor {s:?}: expected HEIGHT:INDEX, as returned in `next` by the previous page"
        ))
    };
    let (h, i) = s.trim().split_once(':').ok_or_else(bad)?;
    let height = h.parse::<u64>().map_err(|_| bad())?;
    let index = i.parse::<u32>().map_err(|_| bad())?;
    Ok(HistoryCursor { height, index })
}

fn format_cursor(c: HistoryCursor) -> String {
    format!("{}:{}", c.height, c.index)
}

fn history_json(
    node: &Node,
    address: Address,
    before: Option<HistoryCursor>,
    limit: usize,
) -> Result<RpcHistory, ErrorObjectOwned> {
    let chain = node.chain();
    let tip_height = chain.tip().height;
    let Some(page) = chain.history(&address, before, limit).map_err(internal)? else {
        return Err(ErrorObjectOwned::owned(
            ADDRESS_INDEX_OFF,
            "address history is off on this node (started with --no-address-index)",
            None::<()>,
        ));
    };
    let entries = page
        .entries
        .iter()
        .map(|e| {
            let r = &e.record;
            RpcHistoryEntry {
                txid: r.txid,
                height: e.height,
                block_hash: e.block_hash,
                timestamp_ms: e.timestamp_ms,
                direction: store::direction::name(r.direction).to_string(),
                counterparty: (r.direction != store::direction::COINBASE).then_some(r.counterparty),
                amount: r.amount,
                fee: r.fee,
                nonce: r.nonce,
                confirmations: tip_height.saturating_sub(e.height) + 1,
            }
        })
        .collect();
    // Pending transfers go with the first page only, so paging lists each once. The
    // chain lock is still held (lock order: chain, then mempool), so a transfer is
    // either confirmed on this page's tip or pending, never both or neither.
    let pending = if before.is_some() {
        Vec::new()
    } else {
        node.mempool()
            .pending_for(&address)
            .into_iter()
            .map(|p| {
                let t = &p.tx.transfer;
                let (direction, counterparty) = if p.sender == t.to {
                    (cairn_api::direction::SELF, t.to)
                } else if p.sender == address {
                    (cairn_api::direction::OUT, t.to)
                } else {
                    (cairn_api::direction::IN, p.sender)
                };
                RpcPendingEntry {
                    txid: p.txid,
                    direction: direction.to_string(),
                    counterparty,
                    amount: t.amount.0,
                    fee: t.fee.0,
                    nonce: t.nonce,
                    received_ms: p.added_ms,
                }
            })
            .collect()
    };
    drop(chain);
    Ok(RpcHistory { address, tip_height, entries, pending, next: page.next.map(format_cursor) })
}

/// When the process started: `cairn-node`'s main calls [`mark_started`] first thing; an
/// in-process caller that did not counts from its first `node_getStatus`.
static STARTED: std::sync::OnceLock<(u64, std::time::Instant)> = std::sync::OnceLock::new();

/// Fixes the start time `node_getStatus` reports uptime from.
pub fn mark_started() {
    process_started();
}

/// The start time in ms since the Unix epoch, and the time since.
fn process_started() -> (u64, std::time::Duration) {
    let (ms, at) = *STARTED.get_or_init(|| (crate::now_ms(), std::time::Instant::now()));
    (ms, at.elapsed())
}

impl RpcImpl {
    fn network(&self) -> Result<&Arc<dyn Network>, ErrorObjectOwned> {
        self.network.as_ref().ok_or_else(|| internal("P2P is not running"))
    }
}

/// Refuses an admin call that did not carry the cookie.
fn require_admin(ext: &Extensions, method: &str) -> Result<(), ErrorObjectOwned> {
    if ext.get::<Authorized>().is_some() {
        return Ok(());
    }
    Err(ErrorObjectOwned::owned(
        codes::UNAUTHORIZED,
        format!("unauthorized: {method} needs HTTP basic auth with the cookie from <data-dir>/.cookie"),
        None::<()>,
    ))
}

/// A peer's address as `IP:PORT` (no host names: the P2P layer matches addresses exactly).
fn parse_peer_addr(addr: &str) -> Result<SocketAddr, ErrorObjectOwned> {
    addr.trim().parse().map_err(|_| invalid_params(format!("bad peer address {addr:?}: expected IP:PORT")))
}
