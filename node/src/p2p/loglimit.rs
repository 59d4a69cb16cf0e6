//! Rate-limited logging of peer drops, bans and inbound connections, so that an attacker
//! who connects and misbehaves in a loop cannot flood the log: each reason is logged at most
//! [`LogLimiter::PER_WINDOW`] times a minute, and the lines held back are counted and
//! summed up in one "suppressed" line when the minute ends.
//!
//! Reasons are grouped by kind: the text before any `:` detail, with every word that
//! holds a digit (a hash, a height, an amount) replaced by `#`, so `invalid block 00ab…:
//! bad proof of work` and the next invalid block are one kind.

use std::collections::BTreeMap;

/// Counts, per kind of log line, what was logged and held back in the current window.
#[derive(Debug)]
pub struct LogLimiter {
    per_window: u32,
    window_ms: u64,
    kinds: BTreeMap<String, Window>,
}

#[derive(Debug, Clone, Copy)]
struct Window {
    start_ms: u64,
    logged: u32,
    suppressed: u64,
}

impl Default for LogLimiter {
    fn default() -> Self {
        LogLimiter::new(Self::PER_WINDOW, 60_000)
    }
}

impl LogLimiter {
    /// Lines of one kind logged per window by default.
    pub const PER_WINDOW: u32 = 10;
    /// Kinds tracked at once; past that, new kinds share one.
    const MAX_KINDS: usize = 64;

    pub fn new(per_window: u32, window_ms: u64) -> LogLimiter {
        LogLimiter { per_window, window_ms, kinds: BTreeMap::new() }
    }

    /// The kind of a reason (see the module docs).
    pub fn kind(what: &str, reason: &str) -> String {
        let head = reason.split(':').next().unwrap_or_default();
        let words: Vec<&str> = head
            .split_whitespace()
            .map(|w| if w.bytes().any(|b| b.is_ascii_digit()) { "#" } else { w })
            .collect();
        format!("{what}: {}", words.join(" "))
    }

    /// Whether a line of `kind` may be logged at `now_ms`; if not, it is counted.
    pub fn allow(&mut self, kind: String, now_ms: u64) -> bool {
        let kind = if self.kinds.len() >= Self::MAX_KINDS && !self.kinds.contains_key(&kind) {
            "other".to_string()
        } else {
            kind
        };
        let w = self.kinds.entry(kind).or_insert(Window { start_ms: now_ms, logged: 0, suppressed: 0 });
        if w.logged < self.per_window {
            w.logged += 1;
            true
        } else {
            w.suppressed += 1;
            false
        }
    }

    /// Ends the windows that are over: each kind that held lines back, with how many.
    pub fn expire(&mut self, now_ms: u64) -> Vec<(String, u64)> {
        let window_ms = self.window_ms;
        let mut summaries = Vec::new();
        self.kinds.retain(|kind, w| {
            if now_ms.saturating_sub(w.start_ms) < window_ms {
                return true;
            }
            if w.suppressed > 0 {
                summaries.push((kind.clone(), w.suppressed));
            }
            false
        });
        summaries
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_most_n_lines_of_a_kind_per_minute_then_a_summary() {
        let mut l = LogLimiter::new(3, 60_000);
        let ban = |n: u32| LogLimiter::kind("ban", &format!("invalid block {n:064x}: bad proof of work"));
        assert_eq!(ban(1), "ban: invalid block #");
        // An attack: 1000 invalid blocks from as many peers within the minute.
        let logged = (0..1000).filter(|&i| l.allow(ban(i), 1_000 + u64::from(i))).count();
        assert_eq!(logged, 3);
        // Another reason is not held back by the first one's flood.
        assert!(l.allow(LogLimiter::kind("ban", "unrequested block"), 2_000));
        assert!(l.expire(60_999).is_empty(), "the window is not over yet");
        assert_eq!(l.expire(61_000), vec![("ban: invalid block #".to_string(), 997)]);
        // A new window: lines are logged again.
        assert!(l.allow(ban(5), 61_500));
        // A kind that held nothing back ends without a summary.
        assert!(l.expire(200_000).is_empty());
    }

    #[test]
    fn kinds_are_bounded() {
        let mut l = LogLimiter::new(1, 60_000);
        for i in 0..1000 {
            l.allow(format!("drop: weird reason {}", "x".repeat(i % 200)), 0);
        }
        assert!(l.kinds.len() <= LogLimiter::MAX_KINDS + 1);
        let summaries = l.expire(60_000);
        assert_eq!(summaries.iter().map(|(_, n)| n).sum::<u64>(), 1000 - 64 - 1);
    }
}
