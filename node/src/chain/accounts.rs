//! The account cache: the states of recently read or written accounts, kept in memory
//! over the store's `accounts` column, as Bitcoin Core keeps a coins cache over its
//! chainstate database. A block touches its senders' and recipients' accounts, and the
//! next blocks touch many of them again (a sender that keeps sending, the mempool
//! re-checking a sender's pending transfers right after its block); each read from
//! RocksDB is a search of the memtable and the levels, several microseconds with cold
//! caches (docs/PERFORMANCE-LOG.md), a read from here one hash lookup.
//!
//! Write-through, never ahead of the store: an entry is what the committed state holds
//! (`None`: no account). Connecting and disconnecting a block record what their batch
//! wrote only after the batch is committed, and a batch the store refuses stops the
//! node ([`super::commit`]), so the cache never holds a state the store does not.
//! Reads that miss go to the store; [`super::commit::Prefetched::load`] records what it
//! read. Memory only: a reopened chain starts empty.
//!
//! Bounded by entry count: a full cache is emptied and fills again (as the key cache,
//! `keycache.rs`), so an attacker's spray of addresses costs the reads it would have
//! cost anyway and never grows memory.

use cairn_core::state::Account;
use cairn_core::Address;
use std::collections::HashMap;

/// Entries kept by a node's chain: about 64 bytes each (a 20-byte address, a 24-byte
/// optional account, the map's overhead; by field sizes, not measured), 4 MiB at most.
pub const ACCOUNT_CACHE_ENTRIES: usize = 65_536;

#[derive(Debug, Default)]
pub(super) struct AccountCache {
    map: HashMap<Address, Option<Account>>,
    capacity: usize,
}

impl AccountCache {
    pub(super) fn new(capacity: usize) -> AccountCache {
        AccountCache { map: HashMap::new(), capacity }
    }

    /// The committed state of `address` when the cache holds it (`Some(None)`: known to
    /// have no account).
    pub(super) fn get(&self, address: &Address) -> Option<Option<Account>> {
        self.map.get(address).copied()
    }

    /// Records the committed state of `address` (read from the store, or written by a
    /// batch that has been committed).
    pub(super) fn set(&mut self, address: Address, account: Option<Account>) {
        if self.capacity == 0 {
            return;
        }
        if self.map.len() >= self.capacity && !self.map.contains_key(&address) {
            self.map.clear();
        }
        self.map.insert(address, account);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_core::Amount;

    #[test]
    fn holds_what_was_set_up_to_its_capacity_then_starts_again() {
        let a = |b: u8| Address([b; 20]);
        let acc = |n: u64| Some(Account { balance: Amount(n), nonce: n });
        let mut c = AccountCache::new(2);
        c.set(a(1), acc(1));
        c.set(a(2), None);
        assert_eq!(c.get(&a(1)), Some(acc(1)));
        assert_eq!(c.get(&a(2)), Some(None), "a known absence is an entry");
        assert_eq!(c.get(&a(3)), None);
        c.set(a(1), acc(5)); // an update takes no new slot
        assert_eq!((c.len(), c.get(&a(1))), (2, Some(acc(5))));
        c.set(a(3), acc(3)); // full: emptied, then this one
        assert_eq!((c.len(), c.get(&a(1)), c.get(&a(3))), (1, None, Some(acc(3))));
        let mut off = AccountCache::new(0);
        off.set(a(1), acc(1));
        assert_eq!(off.get(&a(1)), None);
    }
}
