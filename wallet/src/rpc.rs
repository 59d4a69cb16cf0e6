//! The node's JSON-RPC API, as the wallet calls it.
//!
//! A thin wrapper over the typed `CairnApiClient` from cairn-api that turns jsonrpsee's
//! errors into sentences: which URL could not be reached, which method the node refused
//! and the node's own reason (for tx_submit, why the transfer was refused).

use cairn_api::{
    codes, CairnApiClient, ChainInfo, FeeEstimate, MempoolInfo, RpcAccount, RpcBlock, RpcHistory, RpcTxProof,
    RpcTxStatus,
};
use cairn_core::{Address, BlockHash, Txid};
use jsonrpsee::core::ClientError;
use jsonrpsee::http_client::{HttpClient, HttpClientBuilder};
use std::future::Future;
use std::time::Duration;
use thiserror::Error;

/// The node's RPC address when none is given.
pub const DEFAULT_RPC_URL: &str = "http://127.0.0.1:7332";
/// How long one RPC call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Error)]
pub enum RpcError {
    #[error("invalid RPC URL {url}: {detail}")]
    BadUrl { url: String, detail: String },
    #[error("cannot reach the node at {url}: {detail} (is cairn-node running? set the address with --rpc)")]
    Unreachable { url: String, detail: String },
    #[error("the node at {url} did not answer {method} within {} s", CALL_TIMEOUT.as_secs())]
    Timeout { url: String, method: &'static str },
    #[error("transfer refused by the node: {reason}")]
    Refused { reason: String },
    #[error("the node refused {method}: {message} (JSON-RPC error {code})")]
    Node { method: &'static str, code: i32, message: String },
    #[error("unexpected answer from the node at {url} to {method}: {detail}")]
    Protocol { url: String, method: &'static str, detail: String },
}

/// An error and its chain of causes, joined with ": ".
fn describe(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}

/// A connection to one node.
pub struct Node {
    client: HttpClient,
    url: String,
}

impl Node {
    /// Prepares a client for `url` (`http://` is assumed when no scheme is given). No
    /// request is made until the first call.
    pub fn new(url: &str) -> Result<Node, RpcError> {
        let url = if url.contains("://") { url.to_string() } else { format!("http://{url}") };
        let client = HttpClientBuilder::default()
            .request_timeout(CALL_TIMEOUT)
            .build(&url)
            .map_err(|e| RpcError::BadUrl { url: url.clone(), detail: describe(&e) })?;
        Ok(Node { client, url })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    fn explain(&self, method: &'static str, err: ClientError) -> RpcError {
        match err {
            ClientError::Call(obj) if method == "tx_submit" && obj.code() == codes::TX_REJECTED => {
                RpcError::Refused { reason: obj.message().to_string() }
            }
            ClientError::Call(obj) => {
                RpcError::Node { method, code: obj.code(), message: obj.message().to_string() }
            }
            ClientError::Transport(e) => {
                RpcError::Unreachable { url: self.url.clone(), detail: describe(&*e) }
            }
            ClientError::RequestTimeout => RpcError::Timeout { url: self.url.clone(), method },
            ClientError::ParseError(e) => RpcError::Protocol {
                url: self.url.clone(),
                method,
                detail: format!("cannot parse the answer: {e}"),
            },
            other => RpcError::Protocol { url: self.url.clone(), method, detail: describe(&other) },
        }
    }

    async fn call<T>(
        &self,
        method: &'static str,
        fut: impl Future<Output = Result<T, ClientError>>,
    ) -> Result<T, RpcError> {
        fut.await.map_err(|e| self.explain(method, e))
    }

    pub async fn chain_info(&self) -> Result<ChainInfo, RpcError> {
        self.call("chain_getInfo", self.client.chain_get_info()).await
    }

    pub async fn account(&self, address: &Address) -> Result<RpcAccount, RpcError> {
        self.call("state_getAccount", self.client.state_get_account(address.to_text())).await
    }

    pub async fn mempool_info(&self) -> Result<MempoolInfo, RpcError> {
        self.call("mempool_getInfo", self.client.mempool_get_info()).await
    }

    /// The node's fee estimate for a transfer from `from`.
    pub async fn estimate_fee(&self, from: &Address) -> Result<FeeEstimate, RpcError> {
        self.call("mempool_estimateFee", self.client.mempool_estimate_fee(Some(from.to_text()))).await
    }

    pub async fn submit(&self, hex: String) -> Result<Txid, RpcError> {
        self.call("tx_submit", self.client.tx_submit(hex)).await
    }

    pub async fn transaction(&self, txid: &Txid) -> Result<Option<RpcTxStatus>, RpcError> {
        self.call("chain_getTransaction", self.client.chain_get_transaction(txid.to_hex())).await
    }

    pub async fn tx_proof(&self, txid: &Txid) -> Result<Option<RpcTxProof>, RpcError> {
        self.call("chain_getTxProof", self.client.chain_get_tx_proof(txid.to_hex())).await
    }

    pub async fn block_hash(&self, height: u64) -> Result<Option<BlockHash>, RpcError> {
        self.call("chain_getBlockHash", self.client.chain_get_block_hash(height)).await
    }

    pub async fn block_by_height(&self, height: u64) -> Result<Option<RpcBlock>, RpcError> {
        self.call("chain_getBlockByHeight", self.client.chain_get_block_by_height(height)).await
    }

    /// One page of `address`'s history: at most `limit` entries older than the cursor
    /// `before` (the `next` of the previous page; `None`: the newest).
    pub async fn history(
        &self,
        address: &Address,
        before: Option<String>,
        limit: u64,
    ) -> Result<RpcHistory, RpcError> {
        self.call("state_getHistory", self.client.state_get_history(address.to_text(), before, Some(limit)))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn unreachable_node_names_the_url() {
        // Bind then drop a listener so the port is very likely closed.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let node = Node::new(&format!("127.0.0.1:{port}")).unwrap();
        let err = node.chain_info().await.unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, RpcError::Unreachable { .. }), "{text}");
        assert!(text.contains(&format!("http://127.0.0.1:{port}")), "{text}");
    }

    #[test]
    fn bad_url_is_an_error() {
        assert!(matches!(Node::new("http://exa mple:x"), Err(RpcError::BadUrl { .. })));
    }
}
