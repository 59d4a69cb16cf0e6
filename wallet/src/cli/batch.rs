//! `send-many`: pay many recipients from one address with consecutive nonces.
//!
//! The whole file is read and checked before anything is signed: a bad line is reported
//! with its line number and nothing is sent. Then the key is unlocked once, the
//! address's nonce lock taken (see `crate::nonces`), every transfer signed with the next
//! nonces in line order and submitted in that order. A transfer the node refuses stops
//! the batch there: the ones after it would carry nonces with a gap, which the node
//! refuses, so they are reported as not sent. One output line (or JSON object) per input
//! transfer, in line order.

use super::transfers::{
    amount_plus_fee, auto_fee_reason, node_fees, parse_fee, sign_with, submit_signed, unlock, FeeChoice,
    Unsigned,
};
use super::wait::{wait_confirmations, Waited};
use super::{parse_address, Ctx, Report};
use crate::amount::{format_amount, parse_amount};
use crate::nonces::{now_ms, Handed, NonceBook};
use anyhow::{anyhow, bail, Context, Result};
use cairn_core::{Address, Amount, Txid};
use clap::Args;
use serde_json::{json, Value};
use std::fmt::Write as _;
use std::io::Read;
use std::time::{Duration, Instant};

/// `cairn-wallet send-many --help`.
pub const SEND_MANY_HELP: &str = "\
Pay many recipients from one address: one transfer per line of FILE, with consecutive
nonces, submitted in line order.

Each line is `ADDRESS AMOUNT` or `ADDRESS,AMOUNT` (CSV). Blank lines and lines starting
with `#` are skipped, and so is a first line `to,amount` (a CSV header). FILE `-` reads
standard input. Every line is checked before anything is signed: a bad line is reported
with its line number and nothing is sent.

Prints one line per transfer, in line order: its txid, or why it was not sent (with
--json, one JSON object per line). If the node refuses a transfer, the ones after it are
not sent (their nonces would leave a gap). Exits non-zero if any transfer was not sent
(or, with --wait, not confirmed).";

/// Largest batch file read.
const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;
/// Most bad lines listed in one refusal.
const MAX_REPORTED_ERRORS: usize = 20;

#[derive(Args, Debug)]
pub struct SendManyArgs {
    /// The paying address (its key must be in the wallet).
    #[arg(long, value_parser = parse_address, value_name = "ADDRESS")]
    pub from: Address,
    /// File of `ADDRESS AMOUNT` or `ADDRESS,AMOUNT` lines; `-` for standard input.
    #[arg(value_name = "FILE")]
    pub file: String,
    /// Fee of each transfer in base units, or `auto` (the node's estimate, as for `send`).
    #[arg(long, value_parser = parse_fee, default_value = "auto", value_name = "N|auto")]
    pub fee: FeeChoice,
    /// Wait until every sent transfer is in a block (a transfer that leaves the pool
    /// without being mined is reported with the reason).
    #[arg(long)]
    pub wait: bool,
    /// With --wait: how many blocks must hold or follow each transfer's block.
    #[arg(long, default_value_t = 1, value_name = "N", requires = "wait", value_parser = clap::value_parser!(u64).range(1..))]
    pub confirmations: u64,
    /// Give up waiting after this many seconds (for the whole batch).
    #[arg(long, default_value_t = 120, value_name = "SECS", requires = "wait")]
    pub timeout: u64,
}

/// One transfer of a batch file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatchLine {
    /// 1-based line number in the file.
    pub line: usize,
    pub to: Address,
    pub amount: Amount,
}

/// Parses a batch file. On any bad line, returns every bad line's message (`line N:
/// ...`) instead.
pub fn parse_batch(text: &str) -> Result<Vec<BatchLine>, Vec<String>> {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    let mut seen_data = false;
    for (i, raw) in text.lines().enumerate() {
        let line = i.saturating_add(1);
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        // The address ends at the first comma or blank; the rest is the amount (which
        // may itself use `,` between digit groups).
        let (to_text, amount_text) = match trimmed.find(|c: char| c == ',' || c.is_whitespace()) {
            Some(at) => {
                (&trimmed[..at], trimmed[at..].trim_start_matches(|c: char| c == ',' || c.is_whitespace()))
            }
            None => (trimmed, ""),
        };
        let unquote = |s: &str| s.trim().trim_matches('"').trim().to_string();
        let (to_text, amount_text) = (unquote(to_text), unquote(amount_text));
        if !seen_data && to_text.eq_ignore_ascii_case("to") {
            // A CSV header.
            seen_data = true;
            continue;
        }
        seen_data = true;
        if amount_text.is_empty() {
            errors.push(format!(
                "line {line}: expected `ADDRESS AMOUNT` or `ADDRESS,AMOUNT`, found `{trimmed}`"
            ));
            continue;
        }
        let to = match to_text.parse::<Address>() {
            Ok(a) => a,
            Err(e) => {
                errors.push(format!("line {line}: bad address `{to_text}`: {e}"));
                continue;
            }
        };
        match parse_amount(&amount_text) {
            Ok(Amount(0)) => errors.push(format!("line {line}: amount 0 pays nothing")),
            Ok(amount) => out.push(BatchLine { line, to, amount }),
            Err(e) => errors.push(format!("line {line}: {e}")),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

fn read_file(file: &str) -> Result<String> {
    let mut text = String::new();
    if file == "-" {
        std::io::stdin()
            .take(MAX_FILE_BYTES)
            .read_to_string(&mut text)
            .context("cannot read the batch from standard input")?;
    } else {
        std::fs::File::open(file)
            .and_then(|f| f.take(MAX_FILE_BYTES).read_to_string(&mut text))
            .with_context(|| format!("cannot read {file}"))?;
    }
    Ok(text)
}

/// What became of one line.
enum Outcome {
    Sent { txid: Txid, nonce: u64 },
    Failed { status: &'static str, error: String, txid: Option<Txid>, nonce: Option<u64> },
    Confirmed { txid: Txid, nonce: u64, block_hash: cairn_core::BlockHash, height: u64, confirmations: u64 },
}

pub(super) async fn cmd_send_many(ctx: &Ctx, args: SendManyArgs) -> Result<Report> {
    let name = if args.file == "-" { "standard input".to_string() } else { args.file.clone() };
    let text = read_file(&args.file)?;
    let lines = match parse_batch(&text) {
        Ok(lines) => lines,
        Err(errors) => {
            let more = errors.len().saturating_sub(MAX_REPORTED_ERRORS);
            let mut msg = format!(
                "{name}: {} bad line{}; nothing was signed or sent:",
                errors.len(),
                if errors.len() == 1 { "" } else { "s" }
            );
            for e in errors.iter().take(MAX_REPORTED_ERRORS) {
                msg.push_str("\n  ");
                msg.push_str(e);
            }
            if more > 0 {
                let _ = write!(msg, "\n  ... and {more} more");
            }
            bail!(msg);
        }
    };
    if lines.is_empty() {
        bail!("{name} has no transfers (lines `ADDRESS AMOUNT` or `ADDRESS,AMOUNT`)");
    }
    let ks = ctx.keystore()?;
    ks.require(&args.from)?;
    let node = ctx.node()?;
    let info = node.chain_info().await?;
    let account = node.account(&args.from).await?;
    let fee = match args.fee {
        FeeChoice::Fixed(f) => f,
        FeeChoice::Auto => {
            let estimate = node_fees(&node, &args.from).await?;
            if !ctx.json {
                eprintln!("fee {} each ({})", format_amount(estimate.fee), auto_fee_reason(&estimate));
            }
            Amount(estimate.fee)
        }
    };
    let mut total = Amount::ZERO;
    for l in &lines {
        total = amount_plus_fee(l.amount, fee).ok().and_then(|c| total.checked_add(c)).ok_or_else(|| {
            anyhow!("the batch adds up to more than the largest amount; nothing was signed or sent")
        })?;
    }
    if account.balance < total.0 {
        bail!(
            "insufficient balance: {} has {}, the {} transfers need {} (amounts plus {} fee each); nothing was signed or sent",
            args.from,
            format_amount(account.balance),
            lines.len(),
            format_amount(total.0),
            format_amount(fee.0)
        );
    }
    let key = unlock(ctx, &ks, &args.from)?;
    let mut book = NonceBook::lock(ks.dir(), &args.from, ctx.json)?;
    let account = node.account(&args.from).await?;
    book.prune(&node, account.nonce).await?;
    let first_nonce = account.pending_nonce;
    let mut signed = Vec::with_capacity(lines.len());
    for (i, l) in lines.iter().enumerate() {
        let nonce = u64::try_from(i)
            .ok()
            .and_then(|i| first_nonce.checked_add(i))
            .ok_or_else(|| anyhow!("the account's nonces are used up"))?;
        let unsigned =
            Unsigned { from: args.from, to: l.to, amount: l.amount, fee, nonce, chain_id: info.chain_id };
        signed.push(sign_with(&key, &unsigned)?);
    }
    drop(key);
    let mut outcomes: Vec<Outcome> = Vec::with_capacity(lines.len());
    let mut stopped_at: Option<usize> = None;
    for (l, st) in lines.iter().zip(&signed) {
        let nonce = st.transfer.nonce;
        if let Some(at) = stopped_at {
            outcomes.push(Outcome::Failed {
                status: "not_sent",
                error: format!("not sent: line {at} was refused, and this nonce ({nonce}) would leave a gap"),
                txid: None,
                nonce: Some(nonce),
            });
            continue;
        }
        match submit_signed(&node, st).await {
            Ok(txid) => {
                book.record(Handed {
                    nonce,
                    txid,
                    fee: fee.0,
                    amount: l.amount.0,
                    to: l.to,
                    at_ms: now_ms(),
                });
                outcomes.push(Outcome::Sent { txid, nonce });
            }
            Err(e) => {
                stopped_at = Some(l.line);
                outcomes.push(Outcome::Failed {
                    status: "refused",
                    error: format!("{:#}", anyhow::Error::from(e)),
                    txid: None,
                    nonce: Some(nonce),
                });
            }
        }
    }
    if let Err(e) = book.save() {
        eprintln!("warning: {e:#}");
    }
    drop(book);

    if args.wait {
        let timeout = Duration::from_secs(args.timeout);
        let deadline = Instant::now() + timeout;
        for o in outcomes.iter_mut() {
            let Outcome::Sent { txid, nonce } = *o else { continue };
            let waited = Waited { txid, from: &args.from, nonce, wallet_dir: ks.dir() };
            *o = match wait_confirmations(&node, &waited, args.confirmations, timeout, deadline).await {
                Ok(c) => Outcome::Confirmed {
                    txid,
                    nonce,
                    block_hash: c.block_hash,
                    height: c.height,
                    confirmations: c.confirmations,
                },
                Err(e) => Outcome::Failed {
                    status: "unconfirmed",
                    error: format!("{e:#}"),
                    txid: Some(txid),
                    nonce: Some(nonce),
                },
            };
        }
    }

    let mut json_lines = Vec::with_capacity(lines.len());
    let mut text = String::new();
    let mut failed = 0usize;
    for (l, o) in lines.iter().zip(&outcomes) {
        let mut j = json!({ "line": l.line, "to": l.to, "amount": l.amount.0, "fee": fee.0 });
        let what = format!("{} to {}", format_amount(l.amount.0), l.to);
        match o {
            Outcome::Sent { txid, nonce } => {
                j["status"] = json!("sent");
                j["txid"] = json!(txid);
                j["nonce"] = json!(nonce);
                let _ = writeln!(text, "line {}: sent {what}, nonce {nonce}, txid {txid}", l.line);
            }
            Outcome::Confirmed { txid, nonce, block_hash, height, confirmations } => {
                j["status"] = json!("confirmed");
                j["confirmations"] = json!(confirmations);
                j["txid"] = json!(txid);
                j["nonce"] = json!(nonce);
                j["block_hash"] = json!(block_hash);
                j["height"] = json!(height);
                let _ = writeln!(
                    text,
                    "line {}: confirmed at height {height}: {what}, nonce {nonce}, txid {txid}",
                    l.line
                );
            }
            Outcome::Failed { status, error, txid, nonce } => {
                failed = failed.saturating_add(1);
                j["status"] = json!(status);
                j["error"] = json!(error);
                if let Some(t) = txid {
                    j["txid"] = json!(t);
                }
                if let Some(n) = nonce {
                    j["nonce"] = json!(n);
                }
                let _ = writeln!(text, "line {}: {}: {what}: {error}", l.line, status.replace('_', " "));
            }
        }
        json_lines.push(j);
    }
    let sent = lines.len().saturating_sub(failed);
    let note = format!(
        "{sent} of {} transfers {} from {} (fee {} each, nonces from {first_nonce})",
        lines.len(),
        if args.wait { "confirmed" } else { "sent" },
        args.from,
        format_amount(fee.0)
    );
    Ok(Report {
        json: Value::Array(json_lines),
        text,
        note: Some(note),
        json_lines: true,
        failure: (failed > 0).then(|| {
            format!(
                "{failed} of {} transfers {} (see their lines)",
                lines.len(),
                if args.wait { "were not confirmed" } else { "were not sent" }
            )
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_core::genesis::dev_key_bytes;
    use cairn_core::transaction::{address_of, signing_key_from_bytes};

    fn addr(i: usize) -> Address {
        address_of(&signing_key_from_bytes(&dev_key_bytes(i)).unwrap())
    }

    #[test]
    fn lines_csv_header_comments_and_digit_groups() {
        let text = format!(
            "to,amount\n# payouts\n\n{},1000\n{} 2_000\n  {}\t3,000 \n\"{}\",\"4\"\r\n",
            addr(1),
            addr(2),
            addr(3),
            addr(4)
        );
        let lines = parse_batch(&text).unwrap();
        let got: Vec<(usize, Address, u64)> = lines.iter().map(|l| (l.line, l.to, l.amount.0)).collect();
        assert_eq!(got, vec![(4, addr(1), 1000), (5, addr(2), 2000), (6, addr(3), 3000), (7, addr(4), 4)]);
    }

    #[test]
    fn every_bad_line_is_reported_with_its_number() {
        let mut typo = addr(2).to_text().into_bytes();
        typo[5] = if typo[5] == b'a' { b'b' } else { b'a' };
        let typo = String::from_utf8(typo).unwrap();
        let text = format!("{} 1\n{typo} 2\n{} x\n{}\n{} 0\n", addr(1), addr(3), addr(4), addr(5));
        let errors = parse_batch(&text).unwrap_err();
        assert_eq!(errors.len(), 4, "{errors:?}");
        assert!(errors[0].starts_with("line 2: bad address") && errors[0].contains("checksum"), "{errors:?}");
        assert!(errors[1].starts_with("line 3: ") && errors[1].contains("not an amount"), "{errors:?}");
        assert!(errors[2].starts_with("line 4: expected"), "{errors:?}");
        assert!(errors[3].starts_with("line 5: amount 0"), "{errors:?}");
    }
}
