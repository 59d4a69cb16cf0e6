//! The in-memory block index: a compact entry per indexed block (header-only or full),
//! linked to its parent and children, plus the best chain and the best header chain as
//! arrays by height.
//!
//! Memory per block: an [`Entry`] is 112 bytes (hash 32, cumulative work 32, height,
//! timestamp, anchor timestamp and sequence 8 each, four u32 links/ids, status) plus
//! about 45 bytes in the hash map (key, value, control byte and load-factor slack) and
//! 4 bytes in each of the two height arrays: about **170 bytes per block**, so a million
//! blocks cost about 170 MB. Full headers are not kept: they are read from the `index`
//! column family when asked for.

use cairn_core::block::BlockHeader;
use cairn_core::{BlockHash, Work};
use std::collections::{BTreeSet, HashMap};

/// Position of an entry in the arena.
pub type Idx = u32;
/// "No entry" for links.
pub const NONE: Idx = u32::MAX;

/// In-memory only status bit: this block and all its ancestors have bodies.
pub const CHAIN_COMPLETE: u8 = 0x80;

#[derive(Clone, Debug)]
pub struct Entry {
    pub hash: BlockHash,
    pub work: Work,
    pub height: u64,
    pub timestamp_ms: u64,
    /// Timestamp of block 1 on this block's chain (the difficulty anchor).
    pub anchor_ms: u64,
    pub seq: u64,
    pub prev: Idx,
    pub first_child: Idx,
    pub next_sibling: Idx,
    /// [`crate::store::status`] flags, plus [`CHAIN_COMPLETE`].
    pub status: u8,
}

impl Entry {
    pub fn has(&self, flag: u8) -> bool {
        self.status & flag != 0
    }
}

/// Orders candidates best first: most work, then first seen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct CandidateKey {
    pub neg_work: std::cmp::Reverse<Work>,
    pub seq: u64,
    pub idx: Idx,
}

#[derive(Default)]
pub struct BlockIndex {
    pub entries: Vec<Entry>,
    pub by_hash: HashMap<BlockHash, Idx>,
    /// Best (connected) chain by height.
    pub best: Vec<Idx>,
    /// The most-work valid-or-unchecked header chain by height.
    pub header_chain: Vec<Idx>,
    /// Full-data, not-failed blocks that might beat the tip.
    pub candidates: BTreeSet<CandidateKey>,
    /// Blocks with a body whose parent is not [`CHAIN_COMPLETE`] yet, by parent.
    pub unlinked: HashMap<Idx, Vec<Idx>>,
}

impl BlockIndex {
    pub fn get(&self, hash: &BlockHash) -> Option<Idx> {
        self.by_hash.get(hash).copied()
    }

    pub fn e(&self, idx: Idx) -> &Entry {
        &self.entries[idx as usize]
    }

    pub fn e_mut(&mut self, idx: Idx) -> &mut Entry {
        &mut self.entries[idx as usize]
    }

    pub fn tip(&self) -> Idx {
        *self.best.last().expect("the best chain always holds genesis")
    }

    pub fn best_header(&self) -> Idx {
        *self.header_chain.last().expect("the header chain always holds genesis")
    }

    /// Adds an entry under `prev` (NONE for genesis) and links it as a child.
    pub fn insert(
        &mut self,
        header: &BlockHeader,
        hash: BlockHash,
        work: Work,
        seq: u64,
        status: u8,
        prev: Idx,
    ) -> Idx {
        let idx = self.entries.len() as Idx;
        let anchor_ms = match header.height {
            0 | 1 => header.timestamp_ms,
            _ => self.e(prev).anchor_ms,
        };
        let next_sibling = if prev == NONE { NONE } else { self.e(prev).first_child };
        self.entries.push(Entry {
            hash,
            work,
            height: header.height,
            timestamp_ms: header.timestamp_ms,
            anchor_ms,
            seq,
            prev,
            first_child: NONE,
            next_sibling,
            status,
        });
        if prev != NONE {
            self.e_mut(prev).first_child = idx;
        }
        self.by_hash.insert(hash, idx);
        idx
    }

    pub fn children(&self, idx: Idx) -> Vec<Idx> {
        let mut out = Vec::new();
        let mut c = self.e(idx).first_child;
        while c != NONE {
            out.push(c);
            c = self.e(c).next_sibling;
        }
        out
    }

    /// The last common ancestor of two entries.
    pub fn fork_point(&self, mut a: Idx, mut b: Idx) -> Idx {
        while self.e(a).height > self.e(b).height {
            a = self.e(a).prev;
        }
        while self.e(b).height > self.e(a).height {
            b = self.e(b).prev;
        }
        while a != b {
            a = self.e(a).prev;
            b = self.e(b).prev;
        }
        a
    }

    pub fn on_best_chain(&self, idx: Idx) -> bool {
        self.best.get(self.e(idx).height as usize) == Some(&idx)
    }

    /// Timestamps of `idx` and up to `n - 1` of its ancestors.
    pub fn recent_timestamps(&self, mut idx: Idx, n: usize) -> Vec<u64> {
        let mut v = Vec::with_capacity(n);
        while idx != NONE && v.len() < n {
            v.push(self.e(idx).timestamp_ms);
            idx = self.e(idx).prev;
        }
        v
    }

    pub fn candidate_key(&self, idx: Idx) -> CandidateKey {
        let e = self.e(idx);
        CandidateKey { neg_work: std::cmp::Reverse(e.work), seq: e.seq, idx }
    }

    /// True when `a` beats `b` as a chain tip: more work, or as much and seen first.
    pub fn better(&self, a: Idx, b: Idx) -> bool {
        self.candidate_key(a) < self.candidate_key(b)
    }

    /// True when `idx` has strictly more work than the tip: the only way to move the
    /// tip (on a tie the chain we are on, seen first, stays).
    pub fn beats_tip(&self, idx: Idx) -> bool {
        self.e(idx).work > self.e(self.tip()).work
    }

    /// Makes `idx` the best header if it beats the current one; updates the array.
    pub fn consider_header(&mut self, idx: Idx) {
        if self.better(idx, self.best_header()) {
            self.set_header_chain(idx);
        }
    }

    /// Rewrites the best header chain array to end at `idx`.
    pub fn set_header_chain(&mut self, idx: Idx) {
        let height = self.e(idx).height as usize;
        self.header_chain.truncate(height + 1);
        let mut cur = idx;
        let mut h = height;
        while cur != NONE {
            if h < self.header_chain.len() {
                if self.header_chain[h] == cur {
                    break;
                }
                self.header_chain[h] = cur;
            } else {
                self.header_chain.resize(h + 1, cur);
            }
            cur = self.e(cur).prev;
            h = h.wrapping_sub(1);
        }
    }

    /// Recomputes the best header from scratch (after a subtree was marked failed).
    pub fn recompute_best_header(&mut self) {
        let mut best = self.best[0];
        for (i, e) in self.entries.iter().enumerate() {
            if e.status & crate::store::status::FAILED_MASK == 0 && self.better(i as Idx, best) {
                best = i as Idx;
            }
        }
        self.header_chain.clear();
        self.set_header_chain(best);
    }
}
