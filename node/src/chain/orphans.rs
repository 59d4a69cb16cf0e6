//! The orphan pool: blocks whose parent is not indexed yet, held until it arrives.
//!
//! Bounded by count and by bytes; when full, the oldest orphan is dropped (it can be
//! fetched again through headers-first sync). Orphans passed the stateless checks, so
//! the pool never holds a block with a bad signature or structure, but their proof of
//! work is only checked against their own target: the bound is what protects memory.

use cairn_core::block::Block;
use cairn_core::BlockHash;
use std::collections::{HashMap, VecDeque};

/// Most orphans held.
pub const MAX_ORPHANS: usize = 256;
/// Most bytes of orphan blocks (canonical encoding) held.
pub const MAX_ORPHAN_BYTES: usize = 32 * 1024 * 1024;

struct Orphan {
    block: Block,
    size: usize,
}

#[derive(Default)]
pub struct OrphanPool {
    blocks: HashMap<BlockHash, Orphan>,
    by_parent: HashMap<BlockHash, Vec<BlockHash>>,
    /// Arrival order, oldest first; may name orphans already taken out (skipped lazily).
    order: VecDeque<BlockHash>,
    bytes: usize,
}

impl OrphanPool {
    pub fn contains(&self, hash: &BlockHash) -> bool {
        self.blocks.contains_key(hash)
    }

    pub fn len(&self) -> usize {
        self.blocks.len()
    }

    /// Adds an orphan, evicting the oldest ones to stay within the bounds.
    pub fn insert(&mut self, hash: BlockHash, block: Block, size: usize) {
        if self.blocks.contains_key(&hash) || size > MAX_ORPHAN_BYTES {
            return;
        }
        while !self.blocks.is_empty()
            && (self.blocks.len() >= MAX_ORPHANS || self.bytes + size > MAX_ORPHAN_BYTES)
        {
            let Some(old) = self.order.pop_front() else { break };
            self.remove(&old);
        }
        self.by_parent.entry(block.header.prev).or_default().push(hash);
        self.blocks.insert(hash, Orphan { block, size });
        self.order.push_back(hash);
        self.bytes += size;
        // Keep the order queue from growing with stale names.
        if self.order.len() > 2 * MAX_ORPHANS {
            let blocks = &self.blocks;
            self.order.retain(|h| blocks.contains_key(h));
        }
    }

    fn remove(&mut self, hash: &BlockHash) -> Option<Block> {
        let o = self.blocks.remove(hash)?;
        self.bytes -= o.size;
        let prev = o.block.header.prev;
        if let Some(v) = self.by_parent.get_mut(&prev) {
            v.retain(|h| h != hash);
            if v.is_empty() {
                self.by_parent.remove(&prev);
            }
        }
        Some(o.block)
    }

    /// Takes out every orphan whose parent is `parent`.
    pub fn take_children(&mut self, parent: &BlockHash) -> Vec<Block> {
        let Some(hashes) = self.by_parent.remove(parent) else { return Vec::new() };
        hashes
            .iter()
            .filter_map(|h| {
                let o = self.blocks.remove(h)?;
                self.bytes -= o.size;
                Some(o.block)
            })
            .collect()
    }
}
