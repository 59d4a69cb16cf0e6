//! `history ADDRESS [--limit N]`: what came in and went out of an address, newest first,
//! from the node's address history index (`state_getHistory`), pending transfers first.
//!
//! The wallet pages through the node's answers (at most 100 entries each) until it has
//! `--limit` confirmed entries or the history ends. Pending transfers (the node sends
//! them with the first page) are all shown and do not count toward the limit.

use super::{parse_address, Ctx, Report};
use crate::amount::format_amount;
use anyhow::Result;
use cairn_api::{RpcHistoryEntry, RpcPendingEntry, MAX_HISTORY_LIMIT};
use cairn_core::Address;
use serde_json::{json, Value};
use std::fmt::Write as _;

/// Most confirmed entries one `history` call shows.
pub const MAX_LIMIT: usize = 10_000;

#[derive(clap::Args, Debug)]
pub struct HistoryArgs {
    /// The address (any address, not only the wallet's own).
    #[arg(value_parser = parse_address, value_name = "ADDRESS")]
    pub address: Address,
    /// Show at most N confirmed entries (newest first); pending ones are always shown.
    #[arg(long, value_name = "N", default_value_t = 20, value_parser = parse_limit)]
    pub limit: usize,
}

fn parse_limit(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
        _ => Err(format!("expected a number from 1 to {MAX_LIMIT}")),
    }
}

pub(super) async fn cmd_history(ctx: &Ctx, args: HistoryArgs) -> Result<Report> {
    let node = ctx.node()?;
    let address = args.address;
    let mut entries: Vec<RpcHistoryEntry> = Vec::new();
    let mut pending: Vec<RpcPendingEntry> = Vec::new();
    let mut tip_height = 0;
    let mut before: Option<String> = None;
    let mut more = false;
    loop {
        let want = (args.limit - entries.len()).min(MAX_HISTORY_LIMIT as usize) as u64;
        let page = node.history(&address, before.clone(), want).await?;
        if before.is_none() {
            tip_height = page.tip_height;
            pending = page.pending;
        }
        entries.extend(page.entries);
        match page.next {
            Some(next) if entries.len() < args.limit => before = Some(next),
            Some(_) => {
                more = true;
                break;
            }
            None => break,
        }
    }
    // Later pages may have been read at a higher tip: count confirmations from the first.
    for e in &mut entries {
        e.confirmations = tip_height.saturating_sub(e.height).saturating_add(1);
    }
    let json = json!({
        "address": address,
        "tip_height": tip_height,
        "pending": pending.iter().map(|p| {
            let mut v = serde_json::to_value(p).unwrap_or(Value::Null);
            v["time"] = json!(format_utc(p.received_ms));
            v
        }).collect::<Vec<_>>(),
        "entries": entries.iter().map(|e| {
            let mut v = serde_json::to_value(e).unwrap_or(Value::Null);
            v["time"] = json!(format_utc(e.timestamp_ms));
            v
        }).collect::<Vec<_>>(),
        "more": more,
    });
    Ok(Report::new(json, text(&address, tip_height, &pending, &entries, more, args.limit)))
}

fn text(
    address: &Address,
    tip_height: u64,
    pending: &[RpcPendingEntry],
    entries: &[RpcHistoryEntry],
    more: bool,
    limit: usize,
) -> String {
    let mut out = String::new();
    if pending.is_empty() && entries.is_empty() {
        let _ = writeln!(out, "No transactions for {address} (tip height {tip_height}).");
        return out;
    }
    let _ = writeln!(out, "History of {address} at tip height {tip_height}, newest first:");
    for p in pending {
        let line = Line {
            time_ms: p.received_ms,
            status: "PENDING".to_string(),
            direction: &p.direction,
            amount: p.amount,
            counterparty: Some(p.counterparty),
            fee: p.fee,
            txid: p.txid.to_hex(),
        };
        let _ = writeln!(out, "{line}");
    }
    for e in entries {
        let line = Line {
            time_ms: e.timestamp_ms,
            status: format!("{} conf", e.confirmations),
            direction: &e.direction,
            amount: e.amount,
            counterparty: e.counterparty,
            fee: e.fee,
            txid: e.txid.to_hex(),
        };
        let _ = writeln!(out, "{line}");
    }
    if more {
        let _ = writeln!(out, "(older entries not shown: pass --limit {})", (limit * 2).min(MAX_LIMIT));
    }
    out
}

/// One line: time (UTC), status, direction, signed amount, counterparty, fee, txid.
struct Line<'a> {
    time_ms: u64,
    status: String,
    direction: &'a str,
    amount: u64,
    counterparty: Option<Address>,
    fee: u64,
    txid: String,
}

impl std::fmt::Display for Line<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (sign, side) = match self.direction {
            "in" => ("+", "from"),
            "out" => ("-", "to"),
            "coinbase" => ("+", "mined"),
            _ => (" ", "self"),
        };
        let amount = format!("{sign}{}", format_amount(self.amount));
        let who = self.counterparty.map(|a| a.to_text()).unwrap_or_default();
        let fee = if self.direction == "in" || self.direction == "coinbase" {
            String::new()
        } else {
            format!("fee {}", format_amount(self.fee))
        };
        write!(
            f,
            "{}  {:<9} {:<8} {:>14}  {:<5} {:<48}  {:<14} {}",
            format_utc(self.time_ms),
            self.status,
            self.direction,
            amount,
            side,
            who,
            fee,
            self.txid
        )
    }
}

/// `YYYY-MM-DD HH:MM:SS UTC` of a time in ms since the epoch (the proleptic Gregorian
/// calendar, as block timestamps are read everywhere).
pub fn format_utc(ms: u64) -> String {
    let secs = ms / 1000;
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// Year, month, day of `days` since 1970-01-01 (H. Hinnant's `civil_from_days`).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_utc_calendar_dates() {
        assert_eq!(format_utc(0), "1970-01-01 00:00:00 UTC");
        // The dev genesis timestamp.
        assert_eq!(format_utc(1_767_225_600_000), "2026-01-01 00:00:00 UTC");
        assert_eq!(format_utc(951_782_400_000 + 86_399_999), "2000-02-29 23:59:59 UTC");
        assert_eq!(format_utc(4_107_542_400_000), "2100-03-01 00:00:00 UTC");
    }

    #[test]
    fn limits_outside_the_range_are_refused() {
        assert!(parse_limit("0").is_err());
        assert!(parse_limit("10001").is_err());
        assert!(parse_limit("x").is_err());
        assert_eq!(parse_limit("100"), Ok(100));
    }
}
