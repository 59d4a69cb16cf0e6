//! The sync-progress line: while the node catches up, every few seconds, where it is
//! (height / best header height, percent), how fast it goes (blocks and transfers per
//! second since the last line) and when it should be done (ETA at that rate). Pure
//! bookkeeping: the protocol feeds it on its tick and when a block arrives.

use std::fmt;

/// The counts since the last progress line.
#[derive(Debug, Default)]
pub struct SyncProgress {
    since_ms: u64,
    since_height: u64,
    transfers: u64,
}

/// One progress line's figures.
#[derive(Debug, Clone, PartialEq)]
pub struct Progress {
    pub height: u64,
    pub target: u64,
    pub percent: f64,
    pub blocks_per_s: f64,
    pub transfers_per_s: f64,
    /// Seconds left at the current rate; `None` while nothing connects.
    pub eta_s: Option<u64>,
}

impl SyncProgress {
    /// Starts counting at `now_ms`, from our tip at `height` (a sync begins).
    pub fn restart(&mut self, now_ms: u64, height: u64) {
        *self = SyncProgress { since_ms: now_ms, since_height: height, transfers: 0 };
    }

    /// A block with `transfers` transfers (not counting the coinbase) was accepted.
    pub fn add_transfers(&mut self, transfers: usize) {
        self.transfers = self.transfers.saturating_add(transfers as u64);
    }

    /// The figures for a line now, our tip at `height` and the best header at `target`,
    /// if `interval_ms` has passed since the last one; counting starts again.
    pub fn due(&mut self, now_ms: u64, interval_ms: u64, height: u64, target: u64) -> Option<Progress> {
        let elapsed_ms = now_ms.saturating_sub(self.since_ms);
        if elapsed_ms < interval_ms.max(1) {
            return None;
        }
        let seconds = elapsed_ms as f64 / 1000.0;
        let blocks_per_s = height.saturating_sub(self.since_height) as f64 / seconds;
        let transfers_per_s = self.transfers as f64 / seconds;
        let target = target.max(height);
        let percent = if target == 0 { 100.0 } else { height as f64 * 100.0 / target as f64 };
        let eta_s = (blocks_per_s > 0.0).then(|| ((target - height) as f64 / blocks_per_s).ceil() as u64);
        self.restart(now_ms, height);
        Some(Progress { height, target, percent, blocks_per_s, transfers_per_s, eta_s })
    }
}

/// An ETA as people read it: `45s`, `3m05s`, `2h07m`, or `unknown`.
pub struct Eta(pub Option<u64>);

impl fmt::Display for Eta {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            None => f.write_str("unknown"),
            Some(s) if s < 60 => write!(f, "{s}s"),
            Some(s) if s < 3600 => write!(f, "{}m{:02}s", s / 60, s % 60),
            Some(s) => write!(f, "{}h{:02}m", s / 3600, (s % 3600) / 60),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_percent_and_eta_since_the_last_line() {
        let mut p = SyncProgress::default();
        p.restart(10_000, 100);
        p.add_transfers(30);
        assert_eq!(p.due(14_999, 5_000, 150, 1100), None, "not yet due");
        p.add_transfers(20);
        let line = p.due(15_000, 5_000, 200, 1100).unwrap();
        assert_eq!(line.blocks_per_s, 20.0);
        assert_eq!(line.transfers_per_s, 10.0);
        assert!((line.percent - 200.0 * 100.0 / 1100.0).abs() < 1e-9);
        assert_eq!(line.eta_s, Some(45));
        // Counting starts again: nothing connected since gives no ETA.
        let line = p.due(20_000, 5_000, 200, 1100).unwrap();
        assert_eq!((line.blocks_per_s, line.transfers_per_s, line.eta_s), (0.0, 0.0, None));
        assert_eq!(Eta(line.eta_s).to_string(), "unknown");
        assert_eq!(Eta(Some(185)).to_string(), "3m05s");
        assert_eq!(Eta(Some(7620)).to_string(), "2h07m");
        assert_eq!(Eta(Some(0)).to_string(), "0s");
    }
}
