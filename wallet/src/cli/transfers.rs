//! `send`, `sign` and `submit`: building, signing and submitting transfers.
//!
//! `send` and `sign` differ only in where the nonce, fee and chain id come from (the node,
//! or the command line) and in what they do with the result; both sign through
//! [`sign_transfer`].

use super::{parse_address, Ctx, Report};
use crate::amount::{format_amount, parse_amount};
use crate::keystore::Keystore;
use crate::password::Purpose;
use crate::rpc::Node;
use anyhow::{anyhow, bail, Context, Result};
use cairn_core::genesis::DEV_CHAIN_ID;
use cairn_core::transaction::public_key_of;
use cairn_core::{encoding, Address, Amount, SignedTransfer, Transfer, Txid};
use clap::Args;
use serde_json::json;
use std::fmt::Write as _;
use std::io::Read;
use std::time::{Duration, Instant};

/// Fee `send` uses without `--fee` when the node's current minimum is lower.
pub const DEFAULT_FEE: u64 = 1_000;
/// How often `send --wait` asks the node whether the transfer is confirmed.
const POLL_INTERVAL: Duration = Duration::from_millis(250);

#[derive(Args, Debug)]
pub struct SendArgs {
    #[arg(long, value_parser = parse_address, value_name = "ADDRESS")]
    pub from: Address,
    #[arg(long, value_parser = parse_address, value_name = "ADDRESS")]
    pub to: Address,
    /// Amount in base units (digits; `_` or `,` may separate groups).
    #[arg(long, value_parser = parse_amount, value_name = "N")]
    pub amount: Amount,
    /// Fee in base units [default: the node's minimum fee, at least 1,000].
    #[arg(long, value_parser = parse_amount, value_name = "N")]
    pub fee: Option<Amount>,
    /// Wait until the transfer is in a block; print the block hash and height.
    #[arg(long)]
    pub wait: bool,
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
struct Unsigned {
    from: Address,
    to: Address,
    amount: Amount,
    fee: Amount,
    nonce: u64,
    chain_id: u32,
}

/// Amount plus fee, or an error when the sum is past the largest amount.
fn amount_plus_fee(amount: Amount, fee: Amount) -> Result<Amount> {
    amount.checked_add(fee).ok_or_else(|| anyhow!("amount plus fee is larger than the largest amount"))
}

/// Asks for the password of `t.from`, unlocks its key, signs the transfer and checks it
/// verifies as the node will check it. The password and key are dropped once used.
fn sign_transfer(ctx: &Ctx, ks: &Keystore, t: &Unsigned) -> Result<SignedTransfer> {
    let password = ctx.password(Purpose::Unlock(&t.from.to_text()))?;
    let key = ks.load(&t.from, password.as_bytes())?;
    drop(password);
    let transfer = Transfer {
        chain_id: t.chain_id,
        nonce: t.nonce,
        from: public_key_of(&key),
        to: t.to,
        amount: t.amount,
        fee: t.fee,
    };
    let signed = transfer.sign(&key).context("cannot sign the transfer")?;
    drop(key);
    signed.verify(t.chain_id).context("the wallet produced a transfer that does not verify")?;
    Ok(signed)
}

/// Submits a signed transfer and checks the node reports the txid it has.
async fn submit_signed(node: &Node, signed: &SignedTransfer) -> Result<Txid> {
    let local_txid = signed.txid();
    let txid = node.submit(hex::encode(encoding::encode(signed))).await?;
    if txid != local_txid {
        bail!("the node accepted the transfer as txid {txid}, but its txid is {local_txid}: the node is misbehaving");
    }
    Ok(txid)
}

pub(super) async fn cmd_send(ctx: &Ctx, args: SendArgs) -> Result<Report> {
    let ks = ctx.keystore()?;
    ks.require(&args.from)?;
    let node = ctx.node()?;
    let info = node.chain_info().await?;
    let account = node.account(&args.from).await?;
    let fee = match args.fee {
        Some(f) => f,
        None => Amount(node.mempool_info().await?.min_fee.max(DEFAULT_FEE)),
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
    let unsigned = Unsigned {
        from: args.from,
        to: args.to,
        amount: args.amount,
        fee,
        nonce: account.pending_nonce,
        chain_id: info.chain_id,
    };
    let signed = sign_transfer(ctx, &ks, &unsigned)?;
    let txid = submit_signed(&node, &signed).await?;
    let nonce = unsigned.nonce;
    let mut json = json!({
        "txid": txid, "from": args.from, "to": args.to, "amount": args.amount.0, "fee": fee.0, "nonce": nonce,
    });
    let mut text = format!(
        "Sent {} from {} to {} (fee {}, nonce {})\ntxid {txid}\n",
        format_amount(args.amount.0),
        args.from,
        args.to,
        format_amount(fee.0),
        nonce
    );
    if args.wait {
        let (block_hash, height) = wait_confirmed(&node, &txid, Duration::from_secs(args.timeout)).await?;
        json["block_hash"] = json!(block_hash);
        json["height"] = json!(height);
        let _ = writeln!(text, "confirmed in block {block_hash} at height {height}");
    }
    Ok(Report::new(json, text))
}

/// Polls chain_getTransaction until the transfer is in a block on the best chain.
async fn wait_confirmed(node: &Node, txid: &Txid, timeout: Duration) -> Result<(cairn_core::BlockHash, u64)> {
    let deadline = Instant::now() + timeout;
    let mut last = "unknown to the node".to_string();
    loop {
        if let Some(status) = node.transaction(txid).await? {
            if let (true, Some(hash), Some(height)) =
                (status.status == "confirmed", status.block_hash, status.height)
            {
                return Ok((hash, height));
            }
            last = status.status;
        }
        if Instant::now() >= deadline {
            bail!(
                "transfer {txid} was submitted but is not confirmed after {} s (status: {last}); check later with `cairn-wallet tx {txid}`",
                timeout.as_secs()
            );
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
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
        let ctx = Ctx { rpc: String::new(), wallet_dir: Some(tmp.path().to_path_buf()), password_file: None };
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
