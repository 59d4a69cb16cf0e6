//! `send`, `sign` and `submit`: building, signing and submitting transfers.
//!
//! `send` and `sign` differ only in where the nonce, fee and chain id come from (the node,
//! or the command line) and in what they do with the result; both sign through
//! [`sign_transfer`].

use super::wait::{find_holder, wait_confirmations, Holder, Waited};
use super::{parse_address, parse_txid, Ctx, Report};
use crate::amount::{format_amount, parse_amount};
use crate::keystore::Keystore;
use crate::nonces::{now_ms, Handed, NonceBook};
use crate::password::Purpose;
use crate::rpc::{Node, RpcError};
use anyhow::{anyhow, bail, Context, Result};
use cairn_api::FeeEstimate;
use cairn_core::genesis::DEV_CHAIN_ID;
use cairn_core::transaction::public_key_of;
use cairn_core::{encoding, Address, Amount, SignedTransfer, Transfer, Txid};
use clap::Args;
use k256::ecdsa::SigningKey;
use serde_json::json;
use std::fmt::Write as _;
use std::io::Read;
use std::path::Path;
use std::time::{Duration, Instant};

/// JSON-RPC "method not found": a node older than `mempool_estimateFee`.
const METHOD_NOT_FOUND: i32 = -32601;

/// `--fee`: a number of base units, or `auto`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FeeChoice {
    Auto,
    Fixed(Amount),
}

pub fn parse_fee(text: &str) -> Result<FeeChoice, String> {
    if text.trim().eq_ignore_ascii_case("auto") {
        return Ok(FeeChoice::Auto);
    }
    parse_amount(text).map(FeeChoice::Fixed).map_err(|e| format!("{e}, or `auto`"))
}

/// The node's fee estimate. A node without `mempool_estimateFee` (an older version)
/// gives its current minimum fee from `mempool_getInfo` for every figure.
pub(super) async fn node_fees(node: &Node, from: &Address) -> Result<FeeEstimate> {
    match node.estimate_fee(from).await {
        Ok(e) => Ok(e),
        Err(RpcError::Node { code: METHOD_NOT_FOUND, .. }) => {
            let info = node.mempool_info().await?;
            Ok(FeeEstimate {
                fee: info.min_fee,
                min_fee: info.min_fee,
                admit_fee: info.min_fee,
                next_block_fee: info.min_fee,
                tx_bytes: 0,
                pool_bytes: info.bytes,
                pool_max_bytes: 0,
                block_bytes: 0,
            })
        }
        Err(e) => Err(e.into()),
    }
}

/// Why the automatic fee is what it is, in words.
pub(super) fn auto_fee_reason(e: &FeeEstimate) -> String {
    if e.fee <= e.min_fee {
        "auto: the node's minimum fee; its pool has room and fits in the next block".to_string()
    } else if e.admit_fee >= e.next_block_fee {
        format!(
            "auto: the node's pool is full ({} of {} bytes), and this outbids the transfers it would evict; the node's minimum is {}",
            format_amount(e.pool_bytes as u64),
            format_amount(e.pool_max_bytes as u64),
            format_amount(e.min_fee)
        )
    } else {
        format!(
            "auto: the node's pool holds more than a block, and this outbids what fills the next block; the node's minimum is {}",
            format_amount(e.min_fee)
        )
    }
}

#[derive(Args, Debug)]
pub struct SendArgs {
    #[arg(long, value_parser = parse_address, value_name = "ADDRESS")]
    pub from: Address,
    #[arg(long, value_parser = parse_address, value_name = "ADDRESS")]
    pub to: Address,
    /// Amount in base units (digits; `_` or `,` may separate groups).
    #[arg(long, value_parser = parse_amount, value_name = "N")]
    pub amount: Amount,
    /// Fee in base units, or `auto`: the fee the node estimates gets the transfer admitted
    /// and into the next block (its minimum fee unless the pool is full or holds more than
    /// a block). The fee chosen is shown before the password is asked.
    #[arg(long, value_parser = parse_fee, default_value = "auto", value_name = "N|auto")]
    pub fee: FeeChoice,
    /// Use this nonce instead of the next free one. A nonce a pending transfer holds is a
    /// replacement and needs a higher --fee; `--replace TXID` does the same more simply.
    #[arg(long, value_name = "N", conflicts_with = "replace")]
    pub nonce: Option<u64>,
    /// Replace the pending transfer TXID (from the same address): this transfer takes its
    /// nonce, and pays at least the fee the node requires for a replacement.
    #[arg(long, value_parser = parse_txid, value_name = "TXID")]
    pub replace: Option<Txid>,
    /// Wait until the transfer is in a block; print the block hash and height. Fails
    /// with the reason if the transfer leaves the pool without being mined (replaced,
    /// evicted or expired).
    #[arg(long)]
    pub wait: bool,
    /// With --wait: how many blocks must hold or follow the transfer's block.
    #[arg(long, default_value_t = 1, value_name = "N", requires = "wait", value_parser = clap::value_parser!(u64).range(1..))]
    pub confirmations: u64,
    /// Give up waiting after this many seconds.
    #[arg(long, default_value_t = 120, value_name = "SECS", requires = "wait")]
    pub timeout: u64,
}

#[derive(Args, Debug)]
pub struct SignArgs {
    #[arg(long, value_parser = parse_address, value_name = "ADDRESS")]
    pub from: Address,
    #[arg(long, value_parser = parse_address, value_name = "ADDRESS")]
    pub to: Address,
    #[arg(long, value_parser = parse_amount, value_name = "N")]
    pub amount: Amount,
    #[arg(long, value_parser = parse_amount, value_name = "N")]
    pub fee: Amount,
    /// The nonce the transfer must carry: `nonce` from `cairn-wallet balance` (its
    /// `pending_nonce` when the sender has transfers waiting in the mempool).
    #[arg(long, value_name = "N")]
    pub nonce: u64,
    /// Chain the transfer is for (signed into it); the dev chain's id by default.
    #[arg(long, default_value_t = DEV_CHAIN_ID, value_name = "N")]
    pub chain_id: u32,
}

/// A transfer before signing: everything but the sender's public key, which comes from
/// the unlocked key.
pub(super) struct Unsigned {
    pub from: Address,
    pub to: Address,
    pub amount: Amount,
    pub fee: Amount,
    pub nonce: u64,
    pub chain_id: u32,
}

/// Amount plus fee, or an error when the sum is past the largest amount.
pub(super) fn amount_plus_fee(amount: Amount, fee: Amount) -> Result<Amount> {
    amount.checked_add(fee).ok_or_else(|| anyhow!("amount plus fee is larger than the largest amount"))
}

/// Asks for the password of `from` and unlocks its key. The password is dropped once
/// used; the key wipes itself when dropped.
pub(super) fn unlock(ctx: &Ctx, ks: &Keystore, from: &Address) -> Result<SigningKey> {
    let password = ctx.password(Purpose::Unlock(&from.to_text()))?;
    let key = ks.load(from, password.as_bytes())?;
    drop(password);
    Ok(key)
}

/// Signs the transfer with an unlocked key and checks it verifies as the node will
/// check it.
pub(super) fn sign_with(key: &SigningKey, t: &Unsigned) -> Result<SignedTransfer> {
    let transfer = Transfer {
        chain_id: t.chain_id,
        nonce: t.nonce,
        from: public_key_of(key),
        to: t.to,
        amount: t.amount,
        fee: t.fee,
    };
    let signed = transfer.sign(key).context("cannot sign the transfer")?;
    signed.verify(t.chain_id).context("the wallet produced a transfer that does not verify")?;
    Ok(signed)
}

/// Asks for the password of `t.from`, unlocks its key and signs the transfer.
fn sign_transfer(ctx: &Ctx, ks: &Keystore, t: &Unsigned) -> Result<SignedTransfer> {
    let key = unlock(ctx, ks, &t.from)?;
    sign_with(&key, t)
}

/// Submits a signed transfer and checks the node reports the txid it has.
pub(super) async fn submit_signed(node: &Node, signed: &SignedTransfer) -> Result<Txid, SubmitFailure> {
    let local_txid = signed.txid();
    let txid = node.submit(hex::encode(encoding::encode(signed))).await.map_err(SubmitFailure::Rpc)?;
    if txid != local_txid {
        return Err(SubmitFailure::Other(anyhow!(
            "the node accepted the transfer as txid {txid}, but its txid is {local_txid}: the node is misbehaving"
        )));
    }
    Ok(txid)
}

/// Why a submission failed: the node's RPC error (kept whole so a refusal can be
/// explained), or something else.
#[derive(Debug)]
pub(super) enum SubmitFailure {
    Rpc(RpcError),
    Other(anyhow::Error),
}

impl From<SubmitFailure> for anyhow::Error {
    fn from(f: SubmitFailure) -> anyhow::Error {
        match f {
            SubmitFailure::Rpc(e) => e.into(),
            SubmitFailure::Other(e) => e,
        }
    }
}

/// The fee a replacement of `holder` must pay at least: its fee plus the node's minimum
/// fee (the smallest bump the node accepts), and at least one more.
fn replacement_min_fee(holder: &Holder, min_fee: u64) -> u64 {
    holder.fee.saturating_add(min_fee.max(1))
}

/// The refusal of a nonce a pending transfer holds, in words: which transfer, and the two
/// ways forward.
fn taken_nonce_error(from: &Address, holder: &Holder, min_fee: u64, next_free: u64) -> anyhow::Error {
    anyhow!(
        "nonce {nonce} of {from} is taken by pending transfer {txid} ({amount} to {to}, fee {fee}).\n\
         Either replace that transfer: `cairn-wallet send --replace {txid} ...` (same nonce; the wallet \
         pays the minimum replacement fee, {min}, unless --fee asks for more), \
         or leave out --nonce to send this one with the next free nonce ({next_free}).",
        nonce = holder.nonce,
        txid = holder.txid,
        amount = format_amount(holder.amount),
        to = holder.to,
        fee = format_amount(holder.fee),
        min = format_amount(replacement_min_fee(holder, min_fee)),
    )
}

/// Turns the node's refusal of a transfer with `nonce` into a sentence that says what
/// happened and what to do, when the refusal is about the nonce.
async fn explain_refusal(
    node: &Node,
    wallet_dir: &Path,
    from: &Address,
    nonce: u64,
    chosen: bool,
    min_fee: u64,
    failure: SubmitFailure,
) -> anyhow::Error {
    let SubmitFailure::Rpc(RpcError::Refused { reason }) = &failure else { return failure.into() };
    if reason.contains("replacement fee too low") {
        let next_free = node.account(from).await.map(|a| a.pending_nonce).ok();
        if let (Ok(Some(holder)), Some(next_free)) =
            (find_holder(node, wallet_dir, from, nonce).await, next_free)
        {
            if chosen {
                return taken_nonce_error(from, &holder, min_fee, next_free);
            }
            // The wallet took the next free nonce under its lock, so the transfer that
            // holds it was sent from outside this wallet directory at the same moment.
            return anyhow!(
                "nonce {nonce} of {from} was taken at the same moment by transfer {} (fee {}), sent \
                 from outside this wallet directory (another wallet directory or machine with this \
                 key); nothing was sent: run the command again to use the next free nonce ({next_free})",
                holder.txid,
                format_amount(holder.fee)
            );
        }
    } else if reason.contains("nonce too low") {
        return anyhow!(
            "{}: nonce {nonce} of {from} is already used by a confirmed transfer (the transfer it \
             was to replace was mined meanwhile?); leave out --nonce and --replace to use the next \
             free one",
            anyhow::Error::from(failure)
        );
    }
    failure.into()
}

pub(super) async fn cmd_send(ctx: &Ctx, args: SendArgs) -> Result<Report> {
    let ks = ctx.keystore()?;
    ks.require(&args.from)?;
    let node = ctx.node()?;
    let info = node.chain_info().await?;
    let account = node.account(&args.from).await?;
    let estimate = node_fees(&node, &args.from).await?;
    let min_fee = estimate.min_fee;
    // The pending transfer this one replaces, if the user asked for a nonce one holds.
    let replaces: Option<Holder> = match (args.replace, args.nonce) {
        (Some(txid), _) => Some(replace_target(&node, &args.from, &txid).await?),
        (None, Some(n)) if n < account.nonce => bail!(
            "nonce {n} of {} is already used by a confirmed transfer (the next free nonce is {}); \
             leave out --nonce to use the next free one",
            args.from,
            account.pending_nonce
        ),
        (None, Some(n)) if n > account.pending_nonce => bail!(
            "nonce {n} would leave a gap: the next free nonce of {} is {} (the node refuses gaps); \
             leave out --nonce to use it",
            args.from,
            account.pending_nonce
        ),
        (None, Some(n)) if n < account.pending_nonce => {
            // None: it was confirmed or dropped meanwhile, and the node decides below.
            find_holder(&node, ks.dir(), &args.from, n).await?
        }
        _ => None,
    };
    let fee = match (args.fee, &replaces) {
        (FeeChoice::Fixed(f), Some(h)) if f.0 < replacement_min_fee(h, min_fee) => {
            if args.replace.is_some() {
                bail!(
                    "a replacement of {} must pay at least {} (its fee {} plus the node's minimum fee); \
                     leave out --fee and the wallet pays that",
                    h.txid,
                    format_amount(replacement_min_fee(h, min_fee)),
                    format_amount(h.fee)
                );
            }
            return Err(taken_nonce_error(&args.from, h, min_fee, account.pending_nonce));
        }
        (FeeChoice::Fixed(f), _) => f,
        (FeeChoice::Auto, Some(h)) if args.nonce.is_some() => {
            return Err(taken_nonce_error(&args.from, h, min_fee, account.pending_nonce));
        }
        (FeeChoice::Auto, Some(h)) => {
            let min = replacement_min_fee(h, min_fee);
            if !ctx.json {
                eprintln!(
                    "fee {} (auto: {}, the minimum to replace {} which pays {})",
                    format_amount(min.max(estimate.fee)),
                    if min >= estimate.fee { "exactly" } else { "more than" },
                    h.txid,
                    format_amount(h.fee)
                );
            }
            Amount(min.max(estimate.fee))
        }
        (FeeChoice::Auto, None) => {
            if !ctx.json {
                eprintln!("fee {} ({})", format_amount(estimate.fee), auto_fee_reason(&estimate));
            }
            Amount(estimate.fee)
        }
    };
    let total = amount_plus_fee(args.amount, fee)?;
    // Checked before asking for the password or signing anything. The balance is the
    // one at the tip; the node also counts pending transfers and says so if they use it.
    if account.balance < total.0 {
        bail!(
            "insufficient balance: {} has {}, the transfer needs {} (amount {} + fee {})",
            args.from,
            format_amount(account.balance),
            format_amount(total.0),
            format_amount(args.amount.0),
            format_amount(fee.0)
        );
    }
    let key = unlock(ctx, &ks, &args.from)?;
    // From reading the nonce to recording the node's answer, no other wallet process
    // hands out a nonce of this address (see `crate::nonces`).
    let mut book = NonceBook::lock(ks.dir(), &args.from, ctx.json)?;
    let account = node.account(&args.from).await?;
    book.prune(&node, account.nonce).await?;
    let nonce = match (&replaces, args.nonce) {
        (Some(h), _) => h.nonce,
        (None, Some(n)) => n,
        (None, None) => account.pending_nonce,
    };
    let unsigned =
        Unsigned { from: args.from, to: args.to, amount: args.amount, fee, nonce, chain_id: info.chain_id };
    let signed = sign_with(&key, &unsigned)?;
    drop(key);
    let txid = match submit_signed(&node, &signed).await {
        Ok(txid) => txid,
        Err(failure) => {
            return Err(explain_refusal(
                &node,
                ks.dir(),
                &args.from,
                nonce,
                args.nonce.is_some(),
                min_fee,
                failure,
            )
            .await)
        }
    };
    book.record(Handed { nonce, txid, fee: fee.0, amount: args.amount.0, to: args.to, at_ms: now_ms() });
    if let Err(e) = book.save() {
        // The transfer is sent; only the wallet's note of it is lost (the node's pending
        // nonce still counts it).
        eprintln!("warning: {e:#}");
    }
    drop(book);
    let mut json = json!({
        "txid": txid, "from": args.from, "to": args.to, "amount": args.amount.0, "fee": fee.0, "nonce": nonce,
        "fee_auto": args.fee == FeeChoice::Auto,
    });
    let mut text = format!(
        "Sent {} from {} to {} (fee {}, nonce {})\ntxid {txid}\n",
        format_amount(args.amount.0),
        args.from,
        args.to,
        format_amount(fee.0),
        nonce
    );
    if let Some(h) = &replaces {
        json["replaced"] = json!(h.txid);
        let _ = writeln!(text, "replaces pending transfer {} (fee {})", h.txid, format_amount(h.fee));
    }
    if args.wait {
        let timeout = Duration::from_secs(args.timeout);
        let waited = Waited { txid, from: &args.from, nonce, wallet_dir: ks.dir() };
        let c =
            wait_confirmations(&node, &waited, args.confirmations, timeout, Instant::now() + timeout).await?;
        json["block_hash"] = json!(c.block_hash);
        json["height"] = json!(c.height);
        json["confirmations"] = json!(c.confirmations);
        let _ = writeln!(
            text,
            "confirmed in block {} at height {} ({} confirmation{})",
            c.block_hash,
            c.height,
            c.confirmations,
            if c.confirmations == 1 { "" } else { "s" }
        );
    }
    Ok(Report::new(json, text))
}

/// The pending transfer `txid` that `send --replace` replaces, checked to be pending and
/// from `from`.
async fn replace_target(node: &Node, from: &Address, txid: &Txid) -> Result<Holder> {
    let Some(status) = node.transaction(txid).await? else {
        bail!(
            "cannot replace {txid}: the node does not know it (it was never sent to this node, or it \
             left the pool: evicted or expired); send a new transfer instead"
        );
    };
    if status.status != "pending" {
        bail!(
            "cannot replace {txid}: it is already {} (block {}, height {})",
            status.status,
            status.block_hash.map(|h| h.to_string()).unwrap_or_default(),
            status.height.map(|h| h.to_string()).unwrap_or_default()
        );
    }
    let t = status.tx;
    if t.from != Some(*from) {
        bail!(
            "cannot replace {txid}: it is from {}, not from {from}",
            t.from.map(|a| a.to_text()).unwrap_or_else(|| "a coinbase".into())
        );
    }
    Ok(Holder { txid: t.txid, nonce: t.nonce, fee: t.fee, amount: t.amount, to: t.to })
}

pub(super) fn cmd_sign(ctx: &Ctx, args: SignArgs) -> Result<Report> {
    let ks = ctx.keystore()?;
    ks.require(&args.from)?;
    amount_plus_fee(args.amount, args.fee)?;
    let unsigned = Unsigned {
        from: args.from,
        to: args.to,
        amount: args.amount,
        fee: args.fee,
        nonce: args.nonce,
        chain_id: args.chain_id,
    };
    let signed = sign_transfer(ctx, &ks, &unsigned)?;
    let hex_text = hex::encode(encoding::encode(&signed));
    let txid = signed.txid();
    Ok(Report {
        json_lines: false,
        failure: None,
        json: json!({ "hex": hex_text, "txid": txid, "chain_id": args.chain_id, "nonce": args.nonce }),
        text: format!("{hex_text}\n"),
        note: Some(format!(
            "Signed {} from {} to {} (fee {}, nonce {}, chain {}); txid {txid}\nSubmit it with `cairn-wallet submit HEX`.",
            format_amount(args.amount.0),
            args.from,
            args.to,
            format_amount(args.fee.0),
            args.nonce,
            args.chain_id
        )),
    })
}

/// Decodes a signed transfer from hex, with errors that say what is wrong.
pub fn decode_signed_hex(text: &str) -> Result<SignedTransfer> {
    let t = text.trim();
    let t = t.strip_prefix("0x").unwrap_or(t);
    let bytes = hex::decode(t).map_err(|e| anyhow!("the transfer is not valid hex: {e}"))?;
    encoding::decode::<SignedTransfer>(&bytes)
        .map_err(|e| anyhow!("the hex is not an encoded signed transfer: {e}"))
}

pub(super) async fn cmd_submit(ctx: &Ctx, hex_arg: &str) -> Result<Report> {
    let text = if hex_arg == "-" {
        let mut s = String::new();
        std::io::stdin()
            .take(1 << 20)
            .read_to_string(&mut s)
            .context("cannot read the transfer from stdin")?;
        s
    } else {
        hex_arg.to_string()
    };
    let signed = decode_signed_hex(&text)?;
    let node = ctx.node()?;
    let txid = submit_signed(&node, &signed).await?;
    Ok(Report::new(json!({ "txid": txid }), format!("txid {txid}\n")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keystore::KdfParams;
    use cairn_core::genesis::dev_key_bytes;
    use cairn_core::transaction::{address_of, signing_key_from_bytes};

    /// Signs the way `sign` does, from a key stored in a keystore, and checks the
    /// result with core's verification and decoding (what the node runs).
    #[test]
    fn offline_signed_transfer_verifies_in_core() {
        let tmp = tempfile::tempdir().unwrap();
        let ks = Keystore::new(tmp.path().join("w"));
        let pw = tmp.path().join("pw");
        std::fs::write(&pw, "pw\n").unwrap();
        let key = signing_key_from_bytes(&dev_key_bytes(0)).unwrap();
        let from = ks.add(&key, b"pw", KdfParams { log_n: 4, r: 8, p: 1 }).unwrap();
        let to = address_of(&signing_key_from_bytes(&dev_key_bytes(1)).unwrap());
        let ctx = Ctx {
            rpc: "http://127.0.0.1:1".into(),
            wallet_dir: Some(ks.dir().to_path_buf()),
            password_file: Some(pw),
            json: false,
        };
        let args =
            SignArgs { from, to, amount: Amount(1234), fee: Amount(10), nonce: 7, chain_id: DEV_CHAIN_ID };
        let report = cmd_sign(&ctx, args).unwrap();
        let hex_text = report.json["hex"].as_str().unwrap();
        let st = decode_signed_hex(hex_text).unwrap();
        assert_eq!(st.verify(DEV_CHAIN_ID), Ok(()));
        assert!(st.verify(DEV_CHAIN_ID + 1).is_err());
        assert_eq!(st.transfer.sender(), from);
        assert_eq!(st.transfer.to, to);
        assert_eq!((st.transfer.amount, st.transfer.fee, st.transfer.nonce), (Amount(1234), Amount(10), 7));
        assert_eq!(report.json["txid"].as_str().unwrap(), st.txid().to_hex());
        assert_eq!(report.text.trim(), hex_text);
    }

    #[test]
    fn sign_refuses_unknown_address_before_asking_a_password() {
        let tmp = tempfile::tempdir().unwrap();
        let from = address_of(&signing_key_from_bytes(&dev_key_bytes(2)).unwrap());
        // No password source at all: if the wallet asked, the error would be about that.
        let ctx = Ctx {
            rpc: String::new(),
            wallet_dir: Some(tmp.path().to_path_buf()),
            password_file: None,
            json: false,
        };
        let args =
            SignArgs { from, to: from, amount: Amount(1), fee: Amount(1), nonce: 0, chain_id: DEV_CHAIN_ID };
        let err = format!("{:#}", cmd_sign(&ctx, args).unwrap_err());
        assert!(err.contains("not in the wallet"), "{err}");
    }

    #[test]
    fn submit_hex_errors_are_clear() {
        assert!(format!("{:#}", decode_signed_hex("zz").unwrap_err()).contains("not valid hex"));
        assert!(
            format!("{:#}", decode_signed_hex("00").unwrap_err()).contains("not an encoded signed transfer")
        );
    }
}
