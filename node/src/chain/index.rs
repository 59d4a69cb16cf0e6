//! The in-memory block index: a compact entry per indexed block (header-only or full),
//! linked to its parent and children, plus the best chain and the best header chain as
//! arrays by height.
//!
//! Memory per block: an [`Entry`] is 112 bytes (hash 32, cumulative work 32, height,
//! timestamp, anchor timestamp and sequence 8 each, three u32 links, status) plus
//! about 45 bytes in the hash map (key, value, control byte and load-factor slack) and
//! 4 bytes in each of the two height arrays: about **170 bytes per block**, so a million
//! blocks cost about 170 MB. Full headers are not kept: they are read from the `index`
//! column family when asked for.

use crate::store::status;
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

/// The index. It keeps these invariants itself (its fields are private; the chain
/// changes it only through the methods below):
/// - `best` runs from genesis to the tip by height, each entry the parent of the next;
///   every entry on it is VALID, has its body and is not failed.
/// - `header_chain` is the path to the best not-failed entry by [`BlockIndex::better`].
/// - An entry is [`CHAIN_COMPLETE`] when it and all its ancestors have bodies; a body
///   whose parent is not complete waits in `unlinked` under that parent.
/// - `candidates` holds the complete, not-failed entries that beat the tip, and only
///   those once fork choice has run ([`BlockIndex::prune_candidates`]).
#[derive(Default)]
pub struct BlockIndex {
    entries: Vec<Entry>,
    by_hash: HashMap<BlockHash, Idx>,
    /// Best (connected) chain by height.
    best: Vec<Idx>,
    /// The most-work valid-or-unchecked header chain by height.
    header_chain: Vec<Idx>,
    /// Full-data, not-failed blocks that might beat the tip.
    candidates: BTreeSet<CandidateKey>,
    /// Blocks with a body whose parent is not [`CHAIN_COMPLETE`] yet, by parent.
    unlinked: HashMap<Idx, Vec<Idx>>,
}

impl BlockIndex {
    pub fn get(&self, hash: &BlockHash) -> Option<Idx> {
        self.by_hash.get(hash).copied()
    }

    pub fn e(&self, idx: Idx) -> &Entry {
        &self.entries[idx as usize]
    }

    fn e_mut(&mut self, idx: Idx) -> &mut Entry {
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

    /// The entries after `ancestor` up to and including `to`, parent first (empty when
    /// `to` is `ancestor`). `ancestor` must be an ancestor of `to`.
    pub fn path_after(&self, ancestor: Idx, to: Idx) -> Vec<Idx> {
        let mut path = Vec::new();
        let mut c = to;
        while c != ancestor {
            path.push(c);
            c = self.e(c).prev;
        }
        path.reverse();
        path
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
    fn set_header_chain(&mut self, idx: Idx) {
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
            if e.status & status::FAILED_MASK == 0 && self.better(i as Idx, best) {
                best = i as Idx;
            }
        }
        self.header_chain.clear();
        self.set_header_chain(best);
    }

    /// The best-chain entry at `height`.
    pub fn best_at(&self, height: u64) -> Option<Idx> {
        self.best.get(usize::try_from(height).ok()?).copied()
    }

    /// The best chain from `height` up to the tip (empty past the tip).
    pub fn best_from(&self, height: usize) -> &[Idx] {
        self.best.get(height..).unwrap_or(&[])
    }

    /// Height of the tip.
    pub fn tip_height(&self) -> usize {
        self.best.len() - 1
    }

    /// The best header chain's entry at `height`.
    pub fn header_chain_at(&self, height: usize) -> Option<Idx> {
        self.header_chain.get(height).copied()
    }

    /// The highest height at or below `height` where the best header chain and the
    /// best chain hold the same entry (genesis at worst).
    pub fn header_chain_fork(&self, height: usize) -> usize {
        let mut h = height.min(self.best.len() - 1).min(self.header_chain.len() - 1);
        while h > 0 && self.header_chain[h] != self.best[h] {
            h -= 1;
        }
        h
    }

    /// The best header chain from `from` to `to` inclusive, by height (clamped to it).
    pub fn header_chain_range(&self, from: usize, to: usize) -> &[Idx] {
        let to = to.min(self.header_chain.len() - 1);
        self.header_chain.get(from..=to).unwrap_or(&[])
    }

    /// Sets the best chain to end at `tip` (at open). Fails with the first entry on the
    /// way that is not valid, not stored or failed, leaving the best chain as it was.
    pub fn set_best_chain(&mut self, tip: Idx) -> Result<(), BlockHash> {
        let mut best = Vec::with_capacity(self.e(tip).height as usize + 1);
        let mut cur = tip;
        while cur != NONE {
            let e = self.e(cur);
            if !e.has(status::VALID) || !e.has(status::HAVE_BODY) || e.has(status::FAILED_MASK) {
                return Err(e.hash);
            }
            best.push(cur);
            cur = e.prev;
        }
        best.reverse();
        self.best = best;
        Ok(())
    }

    /// Links every stored body (at open, once the best chain is set): completeness and
    /// candidates, parents first (the arena is in that order).
    pub fn link_stored_bodies(&mut self) {
        for i in 0..self.entries.len() as Idx {
            if self.e(i).has(status::HAVE_BODY) {
                self.body_linked(i);
            }
        }
    }

    /// Records that the body of `idx` is stored (before it is written, so that its
    /// record carries the flag); [`BlockIndex::body_linked`] follows once it is.
    pub fn set_has_body(&mut self, idx: Idx) {
        self.e_mut(idx).status |= status::HAVE_BODY;
    }

    /// Updates completeness after `idx` got its body: it and any waiting descendants
    /// become candidates once all their ancestors have bodies.
    pub fn body_linked(&mut self, idx: Idx) {
        let prev = self.e(idx).prev;
        if prev != NONE && !self.e(prev).has(CHAIN_COMPLETE) {
            self.unlinked.entry(prev).or_default().push(idx);
            return;
        }
        let mut stack = vec![idx];
        while let Some(i) = stack.pop() {
            self.e_mut(i).status |= CHAIN_COMPLETE;
            if !self.e(i).has(status::FAILED_MASK) && self.beats_tip(i) {
                let key = self.candidate_key(i);
                self.candidates.insert(key);
            }
            if let Some(children) = self.unlinked.remove(&i) {
                stack.extend(children);
            }
        }
    }

    /// The best candidate, if any (it may not beat the tip: see [`Self::beats_tip`]).
    pub fn best_candidate(&self) -> Option<Idx> {
        self.candidates.first().map(|k| k.idx)
    }

    /// Drops the candidates that no longer beat the tip.
    pub fn prune_candidates(&mut self) {
        let keep: Vec<_> = self.candidates.iter().filter(|k| self.beats_tip(k.idx)).copied().collect();
        self.candidates = keep.into_iter().collect();
    }

    /// `idx`, a child of the tip, was connected: it is VALID and the new tip.
    pub fn connected(&mut self, idx: Idx) {
        debug_assert_eq!(self.e(idx).prev, self.tip());
        self.e_mut(idx).status |= status::VALID;
        self.best.push(idx);
        let key = self.candidate_key(idx);
        self.candidates.remove(&key);
    }

    /// The tip was disconnected: its parent is the tip, and it stays a valid block
    /// (a candidate) the chain could return to.
    pub fn disconnected_tip(&mut self) {
        if let Some(idx) = self.best.pop() {
            let key = self.candidate_key(idx);
            self.candidates.insert(key);
        }
    }

    /// Marks `idx` FAILED and its descendants FAILED_CHILD: none of them is a candidate
    /// or waits for linking any more, and the best header chain avoids them. Returns
    /// the entries marked, `idx` first.
    pub fn mark_failed(&mut self, idx: Idx) -> Vec<Idx> {
        let mut marked = Vec::new();
        let mut stack = vec![(idx, status::FAILED)];
        let mut header_hit = false;
        while let Some((i, flag)) = stack.pop() {
            let e = self.e(i);
            let (height, prev) = (e.height as usize, e.prev);
            let key = self.candidate_key(i);
            self.candidates.remove(&key);
            if let Some(v) = self.unlinked.get_mut(&prev) {
                v.retain(|&c| c != i);
            }
            header_hit |= self.header_chain.get(height) == Some(&i);
            self.e_mut(i).status |= flag;
            marked.push(i);
            for c in self.children(i) {
                stack.push((c, status::FAILED_CHILD));
            }
        }
        if header_hit {
            self.recompute_best_header();
        }
        marked
    }
}
