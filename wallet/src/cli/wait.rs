//! `--wait`: polling the node until a transfer has the confirmations asked for, and
//! saying what happened when it never will (it left the pool without being mined).
//!
//! A transfer the node admitted is in its pool until a block takes it. If the node then
//! no longer knows it, it left without being mined; the account tells which way:
//! - the account's confirmed nonce passed it: another transfer with the same nonce was
//!   mined instead (it was replaced, possibly through another node);
//! - another pending transfer holds its nonce: it was replaced (`--replace`, or a
//!   transfer with the same nonce and a higher fee from elsewhere);
//! - neither: it was dropped, evicted from a full pool by better-paying transfers, or
//!   expired. It will not be mined unless it is sent again.
//!
//! A node that cannot be reached for a while (a restart) does not end the wait: the
//! wallet keeps asking until the deadline.
//!
//! [`find_holder`] (which pending transfer holds a nonce) lives here too; `send` uses it
//! to explain a refused nonce.

use crate::amount::format_amount;
use crate::nonces::read_book;
use crate::rpc::{Node, RpcError};
use anyhow::{bail, Result};
use cairn_core::{Address, BlockHash, Txid};
use std::path::Path;
use std::time::{Duration, Instant};

/// How often the node is asked.
const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// A transfer with enough confirmations.
#[derive(Clone, Copy, Debug)]
pub(super) struct Confirmed {
    pub block_hash: BlockHash,
    pub height: u64,
    pub confirmations: u64,
}

/// What is being waited for.
pub(super) struct Waited<'a> {
    pub txid: Txid,
    pub from: &'a Address,
    pub nonce: u64,
    pub wallet_dir: &'a Path,
}

/// True for errors that may pass by themselves (the node restarting or busy).
fn transient(e: &RpcError) -> bool {
    matches!(e, RpcError::Unreachable { .. } | RpcError::Timeout { .. })
}

/// Waits until `w.txid` is in a block of the best chain with at least `confirmations`
/// blocks counting its own, until `deadline`.
pub(super) async fn wait_confirmations(
    node: &Node,
    w: &Waited<'_>,
    confirmations: u64,
    timeout: Duration,
    deadline: Instant,
) -> Result<Confirmed> {
    let txid = w.txid;
    let mut last = "pending".to_string();
    loop {
        match node.transaction(&txid).await {
            Ok(Some(status)) => {
                if let (true, Some(block_hash), Some(height)) =
                    (status.status == "confirmed", status.block_hash, status.height)
                {
                    if status.confirmations >= confirmations {
                        return Ok(Confirmed { block_hash, height, confirmations: status.confirmations });
                    }
                    last = format!(
                        "in block {block_hash} at height {height}, {} of {confirmations} confirmations",
                        status.confirmations
                    );
                } else {
                    last = status.status;
                }
            }
            Ok(None) => {
                if let Some(reason) = left_pool(node, w).await? {
                    bail!("{reason}");
                }
            }
            Err(e) if transient(&e) => last = format!("{e}"),
            Err(e) => return Err(e.into()),
        }
        if Instant::now() >= deadline {
            bail!(
                "transfer {txid} is not confirmed after {} s ({last}); it may still be: check with \
                 `cairn-wallet tx {txid}`",
                timeout.as_secs()
            );
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// Why a transfer the node no longer knows left the pool, or `None` if the node knows it
/// again by the time the account is read (it was mined meanwhile).
async fn left_pool(node: &Node, w: &Waited<'_>) -> Result<Option<String>> {
    let txid = w.txid;
    let account = node.account(w.from).await?;
    if node.transaction(&txid).await?.is_some() {
        return Ok(None);
    }
    let head = format!("transfer {txid} left the pool without being mined");
    if account.nonce > w.nonce {
        // A replacement this wallet sent is named by its book, if it was still there.
        let other = read_book(w.wallet_dir, w.from)
            .into_iter()
            .find(|h| h.nonce == w.nonce && h.txid != txid)
            .map(|h| format!(" ({} paying fee {})", h.txid, format_amount(h.fee)))
            .unwrap_or_default();
        return Ok(Some(format!(
            "{head}: it was replaced, and the other transfer with nonce {} from {}{other} was mined instead",
            w.nonce, w.from
        )));
    }
    if account.pending_nonce > w.nonce {
        let by = match find_holder(node, w.wallet_dir, w.from, w.nonce).await? {
            Some(h) => format!("pending transfer {} (fee {})", h.txid, format_amount(h.fee)),
            None => format!("another pending transfer with nonce {}", w.nonce),
        };
        return Ok(Some(format!("{head}: it was replaced by {by}")));
    }
    Ok(Some(format!(
        "{head}: the node dropped it (evicted from a full pool by transfers paying more, or expired), \
         and will not mine it; send it again (`--fee auto` picks a fee the pool admits now)"
    )))
}

/// A pending transfer that holds a nonce of the sender.
#[derive(Clone, Debug)]
pub(super) struct Holder {
    pub txid: Txid,
    pub nonce: u64,
    pub fee: u64,
    pub amount: u64,
    pub to: Address,
}

/// Largest number of pending transfers the wallet looks through to find the one that
/// holds a nonce, when its own records do not name it.
const MAX_POOL_SCAN: usize = 20_000;

/// The pending transfer from `from` with `nonce`: the wallet's own record first (checked
/// against the node), else a search of the node's pool.
pub(super) async fn find_holder(
    node: &Node,
    wallet_dir: &Path,
    from: &Address,
    nonce: u64,
) -> Result<Option<Holder>> {
    let mut candidates: Vec<Txid> =
        read_book(wallet_dir, from).into_iter().filter(|h| h.nonce == nonce).map(|h| h.txid).collect();
    candidates.extend(node.mempool_info().await?.txids.into_iter().take(MAX_POOL_SCAN));
    for txid in candidates {
        let Some(status) = node.transaction(&txid).await? else { continue };
        let t = status.tx;
        if status.status == "pending" && t.from == Some(*from) && t.nonce == nonce {
            return Ok(Some(Holder { txid: t.txid, nonce, fee: t.fee, amount: t.amount, to: t.to }));
        }
    }
    Ok(None)
}
