//! Low-work header defence ("presync").
//!
//! Headers are cheap to make where difficulty is low, so a peer could feed us millions
//! of valid headers on a branch with little work, and every stored header costs memory
//! and disk. So a batch of headers whose branch would still have less work than
//! [`threshold`] (our tip's work less [`WINDOW_BLOCKS`] blocks' worth) is not stored.
//! Instead the branch is checked header by header (linkage, proof of work, the target
//! the difficulty rule gives, timestamps) while only a rolling summary is kept: the last
//! header's [`ParentInfo`], the recent timestamps, the branch's work, and the hash at
//! one height in every [`COMMIT_INTERVAL`] (a random offset per branch).
//!
//! - If the branch ends below the threshold it is forgotten: nothing was stored.
//! - If its work reaches the threshold, we ask the peer for the same headers again from
//!   the fork point ("redownload") and store them as they come, each batch first checked
//!   against the recorded hashes. A peer that sends a different chain the second time
//!   is banned; what it got stored is at most the headers after the last recorded hash
//!   it passed (fewer than [`COMMIT_INTERVAL`]), and getting that far cost it as much
//!   work as our whole chain.
//!
//! Memory per peer (from the field sizes): the summary, a few hundred bytes, plus 40 bytes
//! per [`COMMIT_INTERVAL`] headers, at most [`MAX_PRESYNC_HEADERS`] headers (about 200 KB).

use cairn_core::block::BlockHeader;
use cairn_core::difficulty::median_time_past;
use cairn_core::params::ChainParams;
use cairn_core::validation::{check_header_contextual, check_header_stateless, BlockError, ParentInfo};
use cairn_core::{BlockHash, Work};
use std::collections::{HashMap, VecDeque};
use thiserror::Error;

/// Branches within this many blocks' work of our tip are stored as they arrive, so
/// siblings and short races near the tip are known at once.
pub const WINDOW_BLOCKS: u64 = 8;
/// One header hash is recorded per this many presynced headers.
pub const COMMIT_INTERVAL: u64 = 1_000;
/// A presync longer than this drops the peer: no honest branch below our tip's work is
/// this long on a Cairn chain.
pub const MAX_PRESYNC_HEADERS: u64 = 5_000_000;

/// The work a branch needs before its headers are stored: our tip's work less
/// [`WINDOW_BLOCKS`] blocks at the next block's target.
pub fn threshold(tip_work: Work, next_block_work: Work) -> Work {
    let window = next_block_work.0.saturating_mul(WINDOW_BLOCKS.into());
    Work(tip_work.0.saturating_sub(window))
}

#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum PresyncError {
    /// The batch does not continue the branch (an honest peer whose chain changed
    /// under us can cause this: start over).
    #[error("headers do not continue the branch being checked")]
    NotContinued,
    #[error("invalid header {0}: {1}")]
    Invalid(BlockHash, BlockError),
    #[error("more than {MAX_PRESYNC_HEADERS} headers below our tip's work")]
    TooLong,
    #[error("redownloaded header at height {0} differs from the one checked before")]
    Mismatch(u64),
}

/// What to do after a presync batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// Still below the threshold and the batch was full: ask for headers after this one.
    More(BlockHash),
    /// The branch reached the threshold: ask again from this (stored) fork point and
    /// store what comes back.
    Redownload(BlockHash),
    /// The branch ended below the threshold: forget it.
    Done,
}

/// One peer's branch being presynced or redownloaded.
#[derive(Debug)]
pub struct Presync {
    /// The stored header the branch forks from.
    fork: BlockHash,
    /// The last header checked (as the parent of the next).
    last: ParentInfo,
    /// Timestamps of `last` and its ancestors, oldest first, as many as the
    /// median-time rule looks at.
    recent: VecDeque<u64>,
    work: Work,
    count: u64,
    offset: u64,
    commitments: HashMap<u64, BlockHash>,
    /// Set once the branch reached the threshold: the height and hash of the last
    /// header checked, where the redownload is complete.
    redownload_until: Option<(u64, BlockHash)>,
}

impl Presync {
    /// Starts at the stored header `fork`, given its context: its [`ParentInfo`], its
    /// cumulative work, and its own and its ancestors' timestamps, newest first (as
    /// [`crate::chain::Chain::header_context`] gives them).
    pub fn new(fork: ParentInfo, work: Work, mut recent: Vec<u64>, offset: u64) -> Presync {
        // The window drops its oldest entry as headers come: keep it in chain order, not
        // sorted by value (timestamps need not increase).
        recent.reverse();
        Presync {
            fork: fork.hash,
            last: fork,
            recent: recent.into(),
            work,
            count: 0,
            offset: offset % COMMIT_INTERVAL,
            commitments: HashMap::new(),
            redownload_until: None,
        }
    }

    pub fn is_redownloading(&self) -> bool {
        self.redownload_until.is_some()
    }

    /// Checks a batch that continues the branch. `full` says the peer may have more.
    pub fn feed(
        &mut self,
        headers: &[BlockHeader],
        full: bool,
        params: &ChainParams,
        now_ms: u64,
        threshold: Work,
    ) -> Result<Next, PresyncError> {
        debug_assert!(!self.is_redownloading());
        if headers.first().is_some_and(|h| h.prev != self.last.hash) {
            return Err(PresyncError::NotContinued);
        }
        for h in headers {
            let hash = h.hash();
            if h.prev != self.last.hash {
                return Err(PresyncError::Invalid(
                    hash,
                    BlockError::WrongParent { expected: self.last.hash, got: h.prev },
                ));
            }
            check_header_stateless(h).map_err(|e| PresyncError::Invalid(hash, e))?;
            check_header_contextual(h, &self.last, params, now_ms)
                .map_err(|e| PresyncError::Invalid(hash, e))?;
            self.count += 1;
            if self.count > MAX_PRESYNC_HEADERS {
                return Err(PresyncError::TooLong);
            }
            self.work = self.work.saturating_add(h.target.work());
            self.recent.push_back(h.timestamp_ms);
            while self.recent.len() > params.median_time_blocks as usize {
                self.recent.pop_front();
            }
            let anchor = if h.height <= 1 { h.timestamp_ms } else { self.last.anchor_timestamp_ms };
            self.last = ParentInfo {
                hash,
                height: h.height,
                timestamp_ms: h.timestamp_ms,
                median_time_past_ms: median_time_past(self.recent.make_contiguous()),
                anchor_timestamp_ms: anchor,
            };
            if h.height % COMMIT_INTERVAL == self.offset {
                self.commitments.insert(h.height, hash);
            }
        }
        if self.work >= threshold {
            self.commitments.insert(self.last.height, self.last.hash);
            self.redownload_until = Some((self.last.height, self.last.hash));
            return Ok(Next::Redownload(self.fork));
        }
        Ok(if full { Next::More(self.last.hash) } else { Next::Done })
    }

    /// Checks a redownloaded batch against the recorded hashes before it is stored.
    /// Returns true when the batch reaches the end of what was presynced.
    pub fn check_redownload(&self, headers: &[BlockHeader]) -> Result<bool, PresyncError> {
        let Some((end_height, end_hash)) = self.redownload_until else { return Ok(true) };
        let mut done = false;
        // Only headers at a recorded height are hashed (the end is one of them).
        for h in headers {
            if let Some(expected) = self.commitments.get(&h.height) {
                let hash = h.hash();
                if hash != *expected {
                    return Err(PresyncError::Mismatch(h.height));
                }
                done |= h.height == end_height && hash == end_hash;
            }
        }
        Ok(done)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use cairn_core::assemble::grind;
    use cairn_core::block::BLOCK_VERSION;
    use cairn_core::genesis::Genesis;
    use cairn_core::merkle::merkle_root;

    fn easy_genesis() -> Genesis {
        let mut g = Genesis::dev();
        let easy = "7fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff".parse().unwrap();
        g.params.initial_target = easy;
        g.params.pow_limit = easy;
        g
    }

    /// `n` headers on genesis, one target spacing apart (so every target is the initial
    /// one), each `salt` ms later than the schedule so branches differ.
    fn branch(g: &Genesis, n: u64, salt: u64) -> (ParentInfo, Vec<BlockHeader>) {
        let gen = g.block().header;
        let start = ParentInfo::of_genesis(&gen);
        let mut p = Presync::new(start, Work::ZERO, vec![gen.timestamp_ms], 0);
        let mut out = Vec::new();
        for i in 1..=n {
            let mut h = BlockHeader {
                version: BLOCK_VERSION,
                height: i,
                prev: p.last.hash,
                merkle_root: merkle_root(&[]),
                timestamp_ms: gen.timestamp_ms + salt + i * g.params.target_block_time_ms,
                target: p.last.next_target(&g.params),
                nonce: 0,
            };
            assert!(grind(&mut h, 1_000));
            p.feed(std::slice::from_ref(&h), true, &g.params, u64::MAX / 2, Work(u64::MAX.into())).unwrap();
            out.push(h);
        }
        (start, out)
    }

    #[test]
    fn a_branch_below_the_threshold_ends_without_redownload() {
        let g = easy_genesis();
        let (start, headers) = branch(&g, 2_500, 1);
        let w = g.params.initial_target.work();
        let threshold = Work(w.0 * 3_000);
        let mut p = Presync::new(start, Work::ZERO, vec![start.timestamp_ms], 7);
        let next = p.feed(&headers[..2_000], true, &g.params, u64::MAX / 2, threshold).unwrap();
        assert_eq!(next, Next::More(headers[1_999].hash()));
        let next = p.feed(&headers[2_000..], false, &g.params, u64::MAX / 2, threshold).unwrap();
        assert_eq!(next, Next::Done);
        assert!(!p.is_redownloading());
        // Three recorded hashes (heights 7, 1007 and 2007), not 2 500 headers.
        assert_eq!(p.commitments.len(), 3);
    }

    #[test]
    fn reaching_the_threshold_asks_again_and_only_the_same_chain_passes() {
        let g = easy_genesis();
        let (start, headers) = branch(&g, 2_500, 1);
        let (_, other) = branch(&g, 2_500, 2);
        let w = g.params.initial_target.work();
        let threshold = Work(w.0 * 2_200);
        let mut p = Presync::new(start, Work::ZERO, vec![start.timestamp_ms], 3);
        assert_eq!(
            p.feed(&headers[..2_000], true, &g.params, u64::MAX / 2, threshold).unwrap(),
            Next::More(headers[1_999].hash())
        );
        assert_eq!(
            p.feed(&headers[2_000..], false, &g.params, u64::MAX / 2, threshold).unwrap(),
            Next::Redownload(start.hash)
        );
        assert!(p.is_redownloading());
        assert_eq!(p.check_redownload(&headers[..2_000]), Ok(false));
        assert_eq!(p.check_redownload(&headers[2_000..]), Ok(true));
        // Another chain is caught at the first recorded height.
        assert_eq!(p.check_redownload(&other[..2_000]), Err(PresyncError::Mismatch(3)));
    }

    #[test]
    fn bad_headers_are_refused() {
        let g = easy_genesis();
        let (start, headers) = branch(&g, 10, 1);
        let mut p = Presync::new(start, Work::ZERO, vec![start.timestamp_ms], 0);
        // Not continuing the branch.
        assert_eq!(
            p.feed(&headers[1..], true, &g.params, u64::MAX / 2, Work::ZERO),
            Err(PresyncError::NotContinued)
        );
        // A wrong target.
        let mut bad = headers[..3].to_vec();
        bad[2].target = "00ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff".parse().unwrap();
        assert!(matches!(
            p.feed(&bad, true, &g.params, u64::MAX / 2, Work(u64::MAX.into())),
            Err(PresyncError::Invalid(..))
        ));
    }

    #[test]
    fn threshold_is_tip_work_less_the_window() {
        let w = Work(100u64.into());
        assert_eq!(threshold(Work(10_000u64.into()), w), Work((10_000 - 100 * WINDOW_BLOCKS).into()));
        assert_eq!(threshold(Work(10u64.into()), w), Work::ZERO);
    }
}
