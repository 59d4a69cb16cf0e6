//! What simulated nodes share, so that a block delivered to 10,000 of them is held once.
//!
//! Every simulated node keeps its own chain, mempool and protocol state, and decides
//! everything for itself; what it would hold as a private copy of data that is the same
//! at every node is held once, behind `Arc`, and compared byte for byte (or field for
//! field) before it is shared, so a node that wrote something else keeps its own:
//!
//! - [`SharedStore`]: each node's key-value store (the [`KvStore`] the real node's chain
//!   writes through, in memory). A value of at least [`SHARE_VALUE_BYTES`] (a block's
//!   body) is shared with every other store that wrote the same value under the same
//!   column and key. A batch writing at least [`SEGMENT_OPS`] entries of one column (a
//!   block's transaction index and address index entries) keeps them as one segment,
//!   shared with every store whose batch wrote exactly the same entries.
//! - [`BlockShare`]: the decoded block the protocol keeps for compact relay
//!   ([`cairn_node::node::Node::share_blocks`]).
//! - the signature cache: one set of the txids a simulated miner verified backs every
//!   node's own cache ([`cairn_node::chain::Chain::share_verified`]; docs/SCALE.md,
//!   "Signatures").
//!
//! Messages in flight are shared by the engine (`engine.rs`, `Payload::Shared`).

use cairn_core::block::Block;
use cairn_core::{BlockHash, Txid};
use cairn_node::store::{Batch, Column, KvStore, Op, StoreError};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, Weak};

/// Values at least this long are shared between stores (block bodies).
pub const SHARE_VALUE_BYTES: usize = 1024;
/// A batch with at least this many writes to one column, all puts, stores them as one
/// shared segment (a block's transaction and address index entries).
pub const SEGMENT_OPS: usize = 64;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The simulator is one thread; a poisoned lock only follows a panic that ends it.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn slot(c: Column) -> usize {
    Column::ALL.iter().position(|x| *x == c).expect("every column is in Column::ALL")
}

/// Entries one batch wrote to one column, in the batch's order, shared by every store
/// that wrote exactly these.
struct Segment {
    entries: Vec<(Vec<u8>, Vec<u8>)>,
    /// Indexes into `entries` in key order (keys are distinct).
    sorted: Vec<u32>,
}

impl Segment {
    /// `None` if a key is written twice (such a batch is applied entry by entry).
    fn new(puts: &[&Op]) -> Option<Segment> {
        let entries: Vec<(Vec<u8>, Vec<u8>)> =
            puts.iter().map(|o| (o.key.clone(), o.value.clone().unwrap_or_default())).collect();
        let mut sorted: Vec<u32> = (0..entries.len() as u32).collect();
        sorted.sort_unstable_by(|a, b| entries[*a as usize].0.cmp(&entries[*b as usize].0));
        if sorted.windows(2).any(|w| entries[w[0] as usize].0 == entries[w[1] as usize].0) {
            return None;
        }
        Some(Segment { entries, sorted })
    }

    fn get(&self, key: &[u8]) -> Option<&[u8]> {
        let i = self.sorted.binary_search_by(|i| self.entries[*i as usize].0.as_slice().cmp(key)).ok()?;
        Some(&self.entries[self.sorted[i] as usize].1)
    }

    /// The batch's puts are exactly these entries, in this order.
    fn matches(&self, puts: &[&Op]) -> bool {
        self.entries.len() == puts.len()
            && self
                .entries
                .iter()
                .zip(puts)
                .all(|((k, v), o)| *k == o.key && o.value.as_deref() == Some(&v[..]))
    }

    fn same_keys(&self, deletes: &[&Op]) -> bool {
        if self.entries.len() != deletes.len() {
            return false;
        }
        let mut keys: Vec<&[u8]> = deletes.iter().map(|o| o.key.as_slice()).collect();
        keys.sort_unstable();
        keys.iter().zip(&self.sorted).all(|(k, i)| *k == self.entries[*i as usize].0.as_slice())
    }
}

/// A large value's column and key.
type ValueKey = (Column, Vec<u8>);
/// A segment's column, first key and length.
type SegmentKey = (Column, Vec<u8>, usize);

/// What every [`SharedStore`] of one simulation shares.
#[derive(Default)]
pub struct StoreShare {
    values: Mutex<HashMap<ValueKey, Weak<[u8]>>>,
    segments: Mutex<HashMap<SegmentKey, Vec<Weak<Segment>>>>,
}

impl StoreShare {
    fn value(&self, column: Column, key: &[u8], value: &[u8]) -> Arc<[u8]> {
        if value.len() < SHARE_VALUE_BYTES {
            return Arc::from(value);
        }
        let mut values = lock(&self.values);
        if let Some(v) = values.get(&(column, key.to_vec())).and_then(Weak::upgrade) {
            if *v == *value {
                return v;
            }
        }
        let v: Arc<[u8]> = Arc::from(value);
        values.insert((column, key.to_vec()), Arc::downgrade(&v));
        v
    }

    fn segment(&self, column: Column, puts: &[&Op]) -> Option<Arc<Segment>> {
        let id = (column, puts[0].key.clone(), puts.len());
        let mut segments = lock(&self.segments);
        let list = segments.entry(id).or_default();
        list.retain(|w| w.strong_count() > 0);
        if let Some(s) = list.iter().filter_map(Weak::upgrade).find(|s| s.matches(puts)) {
            return Some(s);
        }
        let s = Arc::new(Segment::new(puts)?);
        list.push(Arc::downgrade(&s));
        Some(s)
    }
}

/// One column of one store: the shared segments, oldest first, under the entries
/// written one by one since (`None`: deleted, hiding a segment's entry).
#[derive(Default)]
struct Table {
    own: BTreeMap<Vec<u8>, Option<Arc<[u8]>>>,
    segments: Vec<Arc<Segment>>,
}

impl Table {
    fn get(&self, key: &[u8]) -> Option<&[u8]> {
        match self.own.get(key) {
            Some(v) => v.as_deref(),
            None => self.segments.iter().rev().find_map(|s| s.get(key)),
        }
    }

    fn in_segments(&self, key: &[u8]) -> bool {
        self.segments.iter().any(|s| s.get(key).is_some())
    }

    fn delete(&mut self, key: &[u8]) {
        if self.in_segments(key) {
            self.own.insert(key.to_vec(), None);
        } else {
            self.own.remove(key);
        }
    }

    /// Every entry in key order (`lower <= key < upper` when given).
    fn merged(&self, range: Option<(&[u8], &[u8])>) -> Vec<(&[u8], &[u8])> {
        let inside = |k: &[u8]| range.is_none_or(|(lo, hi)| k >= lo && k < hi);
        if self.segments.is_empty() {
            return self
                .own
                .iter()
                .filter(|(k, _)| inside(k))
                .filter_map(|(k, v)| Some((k.as_slice(), v.as_deref()?)))
                .collect();
        }
        let mut all: BTreeMap<&[u8], &[u8]> = BTreeMap::new();
        for s in &self.segments {
            for (k, v) in &s.entries {
                if inside(k) {
                    all.insert(k, v);
                }
            }
        }
        for (k, v) in &self.own {
            if !inside(k) {
                continue;
            }
            match v {
                Some(v) => all.insert(k, v),
                None => all.remove(k.as_slice()),
            };
        }
        all.into_iter().collect()
    }
}

/// A simulated node's store: in memory, like the node's own `MemStore`, but holding
/// what other nodes wrote identically once for all of them (see the module doc).
pub struct SharedStore {
    tables: Mutex<Vec<Table>>,
    share: Arc<StoreShare>,
}

impl SharedStore {
    pub fn new(share: Arc<StoreShare>) -> SharedStore {
        SharedStore { tables: Mutex::new(Column::ALL.iter().map(|_| Table::default()).collect()), share }
    }
}

impl KvStore for SharedStore {
    fn get(&self, column: Column, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(lock(&self.tables)[slot(column)].get(key).map(<[u8]>::to_vec))
    }

    fn write(&self, batch: Batch) -> Result<(), StoreError> {
        let mut tables = lock(&self.tables);
        for column in Column::ALL {
            let ops: Vec<&Op> = batch.ops().iter().filter(|o| o.column == column).collect();
            if ops.is_empty() {
                continue;
            }
            let table = &mut tables[slot(column)];
            if ops.len() >= SEGMENT_OPS && ops.iter().all(|o| o.value.is_some()) {
                if let Some(seg) = self.share.segment(column, &ops) {
                    for (k, _) in &seg.entries {
                        table.own.remove(k);
                    }
                    table.segments.push(seg);
                    continue;
                }
            }
            if ops.len() >= SEGMENT_OPS && ops.iter().all(|o| o.value.is_none()) {
                // Undoing a block: its segment goes whole.
                if let Some(at) = table.segments.iter().rposition(|s| s.same_keys(&ops)) {
                    table.segments.remove(at);
                    for o in &ops {
                        table.delete(&o.key);
                    }
                    continue;
                }
            }
            for o in ops {
                match &o.value {
                    Some(v) => {
                        let v = self.share.value(column, &o.key, v);
                        table.own.insert(o.key.clone(), Some(v));
                    }
                    None => table.delete(&o.key),
                }
            }
        }
        Ok(())
    }

    fn for_each(&self, column: Column, f: &mut dyn FnMut(&[u8], &[u8]) -> bool) -> Result<(), StoreError> {
        let tables = lock(&self.tables);
        for (k, v) in tables[slot(column)].merged(None) {
            if !f(k, v) {
                break;
            }
        }
        Ok(())
    }

    fn sync(&self) -> Result<(), StoreError> {
        Ok(())
    }

    fn for_each_rev_in(
        &self,
        column: Column,
        lower: &[u8],
        upper: &[u8],
        f: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StoreError> {
        if lower >= upper {
            return Ok(());
        }
        let tables = lock(&self.tables);
        for (k, v) in tables[slot(column)].merged(Some((lower, upper))).into_iter().rev() {
            if !f(k, v) {
                break;
            }
        }
        Ok(())
    }
}

/// One decoded copy of each block the protocols keep ([`cairn_node::node::BlockShare`]).
#[derive(Clone, Default)]
pub struct BlockShare {
    blocks: Arc<Mutex<HashMap<BlockHash, Weak<Block>>>>,
}

impl BlockShare {
    /// The shared copy of `block` if one is held and equal, else `block` (now shared).
    pub fn keep(&self, block: Arc<Block>) -> Arc<Block> {
        let hash = block.hash();
        let mut blocks = lock(&self.blocks);
        if let Some(b) = blocks.get(&hash).and_then(Weak::upgrade) {
            if *b == *block {
                return b;
            }
        }
        blocks.retain(|_, w| w.strong_count() > 0);
        blocks.insert(hash, Arc::downgrade(&block));
        block
    }
}

/// The txids a simulated miner verified: every node's signature cache trusts them.
#[derive(Clone, Default)]
pub struct Verified(Arc<RwLock<HashSet<Txid>>>);

impl Verified {
    pub fn extend(&self, txids: impl IntoIterator<Item = Txid>) {
        self.0.write().unwrap_or_else(PoisonError::into_inner).extend(txids);
    }

    pub fn contains(&self, txid: &Txid) -> bool {
        self.0.read().unwrap_or_else(PoisonError::into_inner).contains(txid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(b: &mut Batch, c: Column, k: u32, v: u8) {
        b.put(c, k.to_be_bytes(), vec![v; 8]);
    }

    fn get(s: &SharedStore, c: Column, k: u32) -> Option<Vec<u8>> {
        s.get(c, &k.to_be_bytes()).expect("memory")
    }

    /// Two stores that write the same block-sized batch share its segment and its
    /// large value; each still reads, overwrites and deletes as a store of its own.
    #[test]
    fn equal_writes_are_shared_and_each_store_stays_its_own() {
        let share = Arc::new(StoreShare::default());
        let (a, b) = (SharedStore::new(share.clone()), SharedStore::new(share.clone()));
        let batch = || {
            let mut w = Batch::new();
            for k in 0..100 {
                put(&mut w, Column::TxIndex, k, 1);
            }
            w.put(Column::Bodies, [7u8; 32], vec![9u8; 5000]);
            w
        };
        a.write(batch()).expect("memory");
        b.write(batch()).expect("memory");
        {
            let (ta, tb) = (lock(&a.tables), lock(&b.tables));
            let (sa, sb) = (&ta[slot(Column::TxIndex)], &tb[slot(Column::TxIndex)]);
            assert!(sa.own.is_empty() && Arc::ptr_eq(&sa.segments[0], &sb.segments[0]));
            let body = |t: &Vec<Table>| t[slot(Column::Bodies)].own[&vec![7u8; 32]].clone().expect("stored");
            assert!(Arc::ptr_eq(&body(&ta), &body(&tb)));
        }
        // a overwrites one entry and deletes another: b does not see it.
        let mut w = Batch::new();
        put(&mut w, Column::TxIndex, 5, 2);
        w.delete(Column::TxIndex, 6u32.to_be_bytes());
        a.write(w).expect("memory");
        assert_eq!(get(&a, Column::TxIndex, 5), Some(vec![2; 8]));
        assert_eq!(get(&a, Column::TxIndex, 6), None);
        assert_eq!(get(&b, Column::TxIndex, 5), Some(vec![1; 8]));
        assert_eq!(get(&b, Column::TxIndex, 6), Some(vec![1; 8]));
        let mut seen = Vec::new();
        a.for_each(Column::TxIndex, &mut |k, v| {
            seen.push((k.to_vec(), v[0]));
            true
        })
        .expect("memory");
        assert_eq!(seen.len(), 99);
        assert!(seen.windows(2).all(|w| w[0].0 < w[1].0), "in key order");
        let mut rev = Vec::new();
        a.for_each_rev_in(Column::TxIndex, &4u32.to_be_bytes(), &8u32.to_be_bytes(), &mut |k, v| {
            rev.push((u32::from_be_bytes(k.try_into().expect("4 bytes")), v[0]));
            true
        })
        .expect("memory");
        assert_eq!(rev, vec![(7, 1), (5, 2), (4, 1)]);
        // Undoing the block (every key deleted) takes its segment away: nothing is left.
        let mut w = Batch::new();
        for k in (0..100u32).rev() {
            w.delete(Column::TxIndex, k.to_be_bytes());
        }
        b.write(w).expect("memory");
        assert!((0..100).all(|k| get(&b, Column::TxIndex, k).is_none()));
        assert!(lock(&b.tables)[slot(Column::TxIndex)].segments.is_empty());
        assert_eq!(get(&a, Column::TxIndex, 0), Some(vec![1; 8]), "a keeps its entries");
        // A batch with other entries is a segment of its own.
        let mut w = Batch::new();
        for k in 0..100 {
            put(&mut w, Column::TxIndex, k, 3);
        }
        b.write(w).expect("memory");
        assert_eq!(get(&b, Column::TxIndex, 0), Some(vec![3; 8]));
        assert_eq!(get(&a, Column::TxIndex, 0), Some(vec![1; 8]));
    }
}
