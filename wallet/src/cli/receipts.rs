//! `tx` and `tx --verify`: a transaction's status, and every check of its receipt the
//! wallet can do itself.

use super::{Ctx, Report};
use crate::amount::format_amount;
use crate::receipt;
use crate::rpc::Node;
use anyhow::{anyhow, bail, Result};
use cairn_core::Txid;
use serde_json::{json, Value};
use std::fmt::Write as _;

/// How many headers after a transfer's block `tx --verify` checks at most.
pub const MAX_DESCENDANTS_CHECKED: u64 = 100;

pub(super) async fn cmd_tx(ctx: &Ctx, txid: Txid, verify: bool) -> Result<Report> {
    let node = ctx.node()?;
    let status = node.transaction(&txid).await?.ok_or_else(|| {
        anyhow!(
            "transaction {txid} is unknown to the node at {} (neither pending nor in its best chain)",
            node.url()
        )
    })?;
    let tx = &status.tx;
    let mut json = json!({
        "txid": txid,
        "status": status.status,
        "kind": tx.kind,
        "from": tx.from,
        "to": tx.to,
        "amount": tx.amount,
        "fee": tx.fee,
        "nonce": tx.nonce,
        "block_hash": status.block_hash,
        "height": status.height,
        "confirmations": status.confirmations,
    });
    let mut text = format!("txid      {txid}\n");
    match (&status.block_hash, status.height) {
        (Some(hash), Some(height)) => {
            let _ = writeln!(
                text,
                "status    {} in block {hash} at height {height} ({} confirmations)",
                status.status, status.confirmations
            );
        }
        _ => {
            let _ = writeln!(text, "status    {}", status.status);
        }
    }
    match &tx.from {
        Some(from) => {
            let _ = writeln!(
                text,
                "transfer  {} from {from} to {} (fee {}, nonce {})",
                format_amount(tx.amount),
                tx.to,
                format_amount(tx.fee),
                tx.nonce
            );
        }
        None => {
            let _ = writeln!(text, "{}  {} to {}", tx.kind, format_amount(tx.amount), tx.to);
        }
    }
    if verify {
        let (verified, lines) = verify_receipt(&node, &txid, &status).await?;
        json["verified"] = verified;
        text.push_str(&lines);
    }
    Ok(Report::new(json, text))
}

/// `tx --verify`: every check the wallet can do itself, then the node's best chain.
async fn verify_receipt(
    node: &Node,
    txid: &Txid,
    status: &cairn_api::RpcTxStatus,
) -> Result<(Value, String)> {
    if status.status != "confirmed" {
        bail!("cannot verify {txid} yet: it is {} (not in a block)", status.status);
    }
    let fail = |what: &str, e: receipt::ReceiptError| anyhow!("verification failed ({what}): {e}");
    let mut text = String::from("verified by the wallet itself:\n");
    let info = node.chain_info().await?;

    let contents_checked = if status.tx.kind == "transfer" {
        let st = receipt::check_transfer_contents(txid, &status.tx.hex).map_err(|e| fail("contents", e))?;
        st.verify(info.chain_id).map_err(|e| anyhow!("verification failed (signature): {e}"))?;
        text.push_str("  ok  the transfer's contents hash to the txid, and its signature is valid\n");
        true
    } else {
        false
    };

    let proof = node.tx_proof(txid).await?.ok_or_else(|| {
        anyhow!("the node has no inclusion proof for {txid} (was its block just reorganised out? try again)")
    })?;
    let v = receipt::verify_proof(txid, &proof).map_err(|e| fail("inclusion proof", e))?;
    let _ = writeln!(text, "  ok  the header hashes to block {} at height {}", v.block_hash, v.height);
    let _ = writeln!(
        text,
        "  ok  proof of work: the block hash is at most the header's target {}",
        v.header.target
    );
    let _ = writeln!(
        text,
        "  ok  merkle proof: the txid is transaction {} of {} under the header's merkle root {}",
        v.leaf_index + 1,
        v.leaf_count,
        hex::encode(v.header.merkle_root)
    );

    let best = node.block_hash(v.height).await?;
    if best != Some(v.block_hash) {
        bail!(
            "verification failed (best chain): the node's block at height {} is {}, not {}: the transfer's block is not on its best chain",
            v.height,
            best.map_or("missing".to_string(), |h| h.to_hex()),
            v.block_hash
        );
    }
    let _ = writeln!(text, "  ok  the node's best chain has this block at height {}", v.height);

    let last = info.height.min(v.height.saturating_add(MAX_DESCENDANTS_CHECKED));
    let mut parent = v.block_hash;
    let mut descendants = 0u64;
    for height in v.height + 1..=last {
        let Some(block) = node.block_by_height(height).await? else { break };
        parent = receipt::check_descendant(&parent, &block)
            .map_err(|e| fail("later headers; the chain may have changed meanwhile, try again", e))?;
        descendants += 1;
    }
    let _ =
        writeln!(text, "  ok  {descendants} later header(s) link back to it, each meeting its own target");
    text.push_str(
        "not checked: that each target follows the difficulty rules (that takes the whole header chain)\n",
    );
    let json = json!({
        "contents": contents_checked,
        "header_hash": true,
        "proof_of_work": true,
        "merkle_proof": true,
        "best_chain": true,
        "descendants": descendants,
        "block_hash": v.block_hash,
        "height": v.height,
        "merkle_root": hex::encode(v.header.merkle_root),
        "target": v.header.target,
        "leaf_index": v.leaf_index,
        "leaf_count": v.leaf_count,
    });
    Ok((json, text))
}
