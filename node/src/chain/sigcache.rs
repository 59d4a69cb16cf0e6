//! The signature cache: txids of transfers whose signature this node has already
//! verified, so that a block made of transfers from our own mempool is not verified a
//! second time when it arrives.
//!
//! A txid commits to the whole signed transfer (chain id, fields, public key and the
//! exact signature bytes), so a hit means "these very bytes passed
//! [`cairn_core::SignedTransfer::verify`] on this node", never "a transfer like it did".
//! Entered are transfers admitted to the mempool ([`crate::node::Node::submit_transfer`]),
//! so an entry cost its sender a valid signature on a funded account, and the transfers
//! a compact block brought that were not in the mempool (prefilled or in `blocktxn`),
//! once they verified under a header that passed its proof of work and a rebuilt block
//! that matched its merkle root (`p2p/protocol/compact.rs`), so an entry cost its
//! sender a block's proof of work; the block's connection then checks none of them a
//! second time. The cache is bounded; the oldest entries leave first, which costs a
//! re-verification and nothing else. It is memory only: after a restart every
//! signature is checked again.
//!
//! The cache is shared: the chain consults and fills it under the chain lock, and a
//! block received from a peer is checked before its turn, off the chain lock
//! ([`super::BlockChecker`]), against the same cache, behind its own lock. That lock is
//! held for set lookups and inserts only, never while signatures are checked, so a
//! lone new block whose transfers are in the mempool is not verified in full again
//! however it is checked.
//!
//! The network simulator (`sim/`) backs every simulated node's cache with one shared
//! set ([`Chain::share_verified`]): the txids a simulated miner verified, so that a
//! block's signatures are checked once per run rather than once per node. A real node
//! never sets it.

use super::Chain;
use crate::failstop::lock_or_stop;
use cairn_core::Txid;
use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};

/// Vouches for txids verified elsewhere (the simulator's shared set).
pub type SharedVerified = Arc<dyn Fn(&Txid) -> bool + Send + Sync>;

/// Entries kept. By field sizes (not measured), about 80 bytes each for the set and the
/// queue, so ~16 MiB at most. A full 64 MiB mempool holds more transfers than this
/// (about 460,000 of 146 bytes); the oldest entries then leave first, which costs a
/// block carrying them a re-verification, nothing else.
pub const SIG_CACHE_ENTRIES: usize = 200_000;

/// A handle on the cache: clones share one set.
#[derive(Clone)]
pub struct SigCache {
    inner: Arc<Mutex<Entries>>,
}

struct Entries {
    known: HashSet<Txid>,
    order: VecDeque<Txid>,
    capacity: usize,
    /// Also trusted (the simulator's shared set); `None` in a real node.
    shared: Option<SharedVerified>,
}

impl Entries {
    fn contains(&self, txid: &Txid) -> bool {
        self.known.contains(txid) || self.shared.as_ref().is_some_and(|f| f(txid))
    }
}

impl SigCache {
    pub fn new(capacity: usize) -> SigCache {
        let entries = Entries { known: HashSet::new(), order: VecDeque::new(), capacity, shared: None };
        SigCache { inner: Arc::new(Mutex::new(entries)) }
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, Entries> {
        lock_or_stop(&self.inner, "signature cache")
    }

    /// Records that `txid`'s signature verified. A txid the shared set already vouches
    /// for takes no slot (the simulator's 10,000 nodes would each hold every txid of
    /// every block otherwise); a real node has no shared set.
    pub fn insert(&self, txid: Txid) {
        self.insert_many(&[txid]);
    }

    /// [`SigCache::insert`] for each of `txids`, under one lock.
    pub fn insert_many(&self, txids: &[Txid]) {
        let mut e = self.entries();
        for &txid in txids {
            if e.capacity == 0 || e.shared.as_ref().is_some_and(|f| f(&txid)) || !e.known.insert(txid) {
                continue;
            }
            e.order.push_back(txid);
            while e.order.len() > e.capacity {
                if let Some(old) = e.order.pop_front() {
                    e.known.remove(&old);
                }
            }
        }
    }

    pub fn contains(&self, txid: &Txid) -> bool {
        self.entries().contains(txid)
    }

    /// For each of `txids`, whether the cache vouches for it, looked up under one lock.
    pub fn known(&self, txids: &[Txid]) -> Vec<bool> {
        let e = self.entries();
        txids.iter().map(|t| e.contains(t)).collect()
    }
}

impl Chain {
    /// Trusts, besides this node's own signature cache, every txid `shared` vouches
    /// for. For the network simulator only, whose simulated nodes share one set of the
    /// transfers a simulated miner verified (docs/SCALE.md, "Signatures"); a real node
    /// never calls it.
    pub fn share_verified(&mut self, shared: SharedVerified) {
        self.sig_cache.entries().shared = Some(shared);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_newest_entries_up_to_capacity() {
        let c = SigCache::new(2);
        let id = |b: u8| Txid([b; 32]);
        c.insert(id(1));
        c.insert(id(2));
        c.insert(id(1)); // already there: no second slot, no reordering
        assert_eq!(c.entries().order.len(), 2);
        c.insert(id(3));
        assert!(!c.contains(&id(1)) && c.contains(&id(2)) && c.contains(&id(3)));
        let off = SigCache::new(0);
        off.insert(id(1));
        assert!(off.entries().order.is_empty() && !off.contains(&id(1)));
    }

    #[test]
    fn a_shared_set_vouches_besides_the_own_entries() {
        let c = SigCache::new(2);
        let id = |b: u8| Txid([b; 32]);
        c.insert(id(1));
        c.entries().shared = Some(Arc::new(move |t: &Txid| *t == id(9)));
        assert!(c.contains(&id(1)) && c.contains(&id(9)) && !c.contains(&id(2)));
        assert!(c.entries().order.len() == 1, "a shared hit takes no slot");
        // Nor does recording a txid the shared set vouches for; others still do.
        c.insert(id(9));
        assert!(c.entries().order.len() == 1 && !c.entries().known.contains(&id(9)) && c.contains(&id(9)));
        c.insert(id(2));
        assert!(c.entries().order.len() == 2 && c.contains(&id(2)));
    }

    #[test]
    fn handles_share_one_set() {
        let c = SigCache::new(4);
        let other = c.clone();
        let id = |b: u8| Txid([b; 32]);
        other.insert(id(1));
        assert!(c.contains(&id(1)));
        assert_eq!(c.known(&[id(2), id(1)]), vec![false, true]);
    }

    /// Many at once (a compact block's fetched transfers) is the same as one by one:
    /// repeats take one slot, and the oldest leave first even within one call.
    #[test]
    fn many_at_once_is_one_by_one() {
        let id = |b: u8| Txid([b; 32]);
        let ids = [id(1), id(2), id(1), id(3), id(4)];
        let (many, one) = (SigCache::new(3), SigCache::new(3));
        many.insert_many(&ids);
        for t in ids {
            one.insert(t);
        }
        let all: Vec<Txid> = (0..6).map(id).collect();
        assert_eq!(many.known(&all), one.known(&all));
        assert_eq!(many.known(&all), vec![false, false, true, true, true, false]);
        assert_eq!(many.entries().order, one.entries().order);
    }

    /// One step of [`random_sequences_match_a_plain_list`].
    #[derive(Clone, Debug)]
    enum Op {
        Insert(u8),
        InsertMany(Vec<u8>),
    }

    fn op() -> impl proptest::strategy::Strategy<Value = Op> {
        use proptest::prelude::*;
        prop_oneof![
            (0u8..12).prop_map(Op::Insert),
            proptest::collection::vec(0u8..12, 0..8).prop_map(Op::InsertMany),
        ]
    }

    proptest::proptest! {
        /// Random sequences of single and batched inserts, at capacities from 0 up and
        /// with or without a shared set, against a plain list of the distinct txids
        /// recorded, oldest first, cut to the capacity: after every step the cache
        /// vouches for exactly the list and the shared set, and holds no more than
        /// its capacity.
        #[test]
        fn random_sequences_match_a_plain_list(
            capacity in proptest::sample::select(vec![0usize, 1, 2, 3, 7]),
            shared in proptest::option::of(0u8..12),
            ops in proptest::collection::vec(op(), 0..40),
        ) {
            let id = |b: u8| Txid([b; 32]);
            let c = SigCache::new(capacity);
            if let Some(s) = shared {
                c.entries().shared = Some(Arc::new(move |t: &Txid| *t == id(s)));
            }
            let mut model: Vec<u8> = Vec::new();
            let record = |b: u8, model: &mut Vec<u8>| {
                if capacity == 0 || Some(b) == shared || model.contains(&b) {
                    return;
                }
                model.push(b);
                if model.len() > capacity {
                    model.remove(0);
                }
            };
            for op in ops {
                match op {
                    Op::Insert(b) => {
                        c.insert(id(b));
                        record(b, &mut model);
                    }
                    Op::InsertMany(bs) => {
                        c.insert_many(&bs.iter().map(|b| id(*b)).collect::<Vec<_>>());
                        for b in bs {
                            record(b, &mut model);
                        }
                    }
                }
                let all: Vec<Txid> = (0..12).map(id).collect();
                let want: Vec<bool> = (0..12u8).map(|b| model.contains(&b) || Some(b) == shared).collect();
                proptest::prop_assert_eq!(c.known(&all), want);
                let e = c.entries();
                proptest::prop_assert_eq!(e.order.iter().copied().collect::<Vec<_>>(), model.iter().map(|b| id(*b)).collect::<Vec<_>>());
                proptest::prop_assert_eq!(e.known.len(), e.order.len());
                proptest::prop_assert!(e.order.len() <= capacity);
            }
        }
    }
}
