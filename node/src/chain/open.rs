//! Opening the chain: creating a fresh store (genesis) or loading the compact index of
//! an existing one, then resuming fork choice, which finishes a reorg a crash cut short.

use super::accept::Rejected;
use super::accounts::AccountCache;
use super::commit::Fresh;
use super::index::{BlockIndex, NONE};
use super::indexes::IndexWriter;
use super::orphans::OrphanPool;
use super::sigcache::{SigCache, SIG_CACHE_ENTRIES};
use super::{Chain, ChainError, ChainOptions};
#[cfg(feature = "rocksdb")]
use crate::store::RocksStore;
use crate::store::{
    self, height_key, meta_key, status, Batch, Column, IndexRecord, KvStore, MemStore, SCHEMA_VERSION,
};
use cairn_core::encoding;
use cairn_core::genesis::Genesis;
use cairn_core::state::Account;
use cairn_core::transaction::DecodedKeys;
use std::collections::HashMap;
#[cfg(feature = "rocksdb")]
use std::path::Path;
use std::sync::Arc;

impl Chain {
    /// Opens (or creates) the chain in `data_dir`, in time independent of chain length.
    #[cfg(feature = "rocksdb")]
    pub fn open(data_dir: &Path, genesis: &Genesis) -> Result<Chain, ChainError> {
        Chain::open_with_options(data_dir, genesis, ChainOptions::default())
    }

    /// [`Chain::open`] with options other than the defaults.
    #[cfg(feature = "rocksdb")]
    pub fn open_with_options(
        data_dir: &Path,
        genesis: &Genesis,
        options: ChainOptions,
    ) -> Result<Chain, ChainError> {
        std::fs::create_dir_all(data_dir)
            .map_err(|e| ChainError::Db(format!("creating {}: {e}", data_dir.display())))?;
        let store = RocksStore::open(&data_dir.join("chain"))?;
        Chain::open_with_store_options(Box::new(store), genesis, options)
    }

    /// A chain on a fresh in-memory store (tests, the P2P simulator).
    /// Its indexes are written inline (see `indexes.rs`), as for [`Chain::open_with_store`].
    pub fn open_in_memory(genesis: &Genesis) -> Chain {
        // A fresh MemStore cannot fail to read or write, and the genesis batch is ours.
        Chain::open_with_store(Box::new(MemStore::new()), genesis).expect("a fresh in-memory chain opens")
    }

    /// Opens the chain on any store: creates it when empty, else loads the index and
    /// resumes fork choice (finishing a reorg a crash interrupted).
    /// The tx and address indexes are written inline, right after each block's batch,
    /// so that a run on it is deterministic (the simulator).
    pub fn open_with_store(store: Box<dyn KvStore>, genesis: &Genesis) -> Result<Chain, ChainError> {
        Chain::open_with_store_options(
            store,
            genesis,
            ChainOptions { index_thread: false, account_cache: 0, ..ChainOptions::default() },
        )
    }

    /// [`Chain::open_with_store`] with options other than the defaults. The address
    /// history index is built or dropped here to match them (see `history.rs`).
    pub fn open_with_store_options(
        store: Box<dyn KvStore>,
        genesis: &Genesis,
        options: ChainOptions,
    ) -> Result<Chain, ChainError> {
        let genesis_hash = genesis.hash();
        let store: Arc<dyn KvStore> = Arc::from(store);
        let mut chain = Chain {
            indexes: IndexWriter::inline(store.clone(), options.address_index),
            store,
            genesis: genesis.clone(),
            genesis_hash,
            index: BlockIndex::default(),
            orphans: OrphanPool::default(),
            rejected: Rejected::default(),
            next_seq: 1,
            last_fsync_ms: 0,
            unfsynced: false,
            sig_cache: SigCache::new(SIG_CACHE_ENTRIES),
            recent_keys: DecodedKeys::default(),
            accounts: AccountCache::new(options.account_cache),
            options,
        };
        match chain.store.get(Column::Meta, meta_key::GENESIS)? {
            None => chain.initialize()?,
            Some(stored) => {
                let stored = store::hash_from_bytes(&stored, "genesis hash")?;
                if stored != genesis_hash {
                    return Err(ChainError::WrongGenesis { stored, expected: genesis_hash });
                }
            }
        }
        let schema = chain.store.get(Column::Meta, meta_key::SCHEMA)?;
        if schema.as_deref() != Some(&SCHEMA_VERSION.to_le_bytes()[..]) {
            return Err(ChainError::Corrupt(format!(
                "schema version {schema:?}, this node reads version {SCHEMA_VERSION}"
            )));
        }
        chain.load_index()?;
        chain.catch_up_indexes()?;
        chain.sync_address_index()?;
        if options.index_thread {
            chain.indexes.start_thread()?;
        }
        let mut failures = HashMap::new();
        chain.activate_best_chain(&mut failures, &mut Fresh::new())?;
        chain.fsync_wal()?;
        Ok(chain)
    }

    /// Writes genesis: its block, index entry, height, allocations and the tip.
    pub(super) fn initialize(&mut self) -> Result<(), ChainError> {
        let block = self.genesis.block();
        let hash = self.genesis_hash;
        let mut b = Batch::new();
        b.put(Column::Bodies, hash.0, encoding::encode(&block));
        let record = IndexRecord {
            header: block.header,
            work: block.header.target.work(),
            seq: 0,
            status: status::HAVE_BODY | status::VALID,
        };
        b.put(Column::Index, hash.0, record.encode());
        b.put(Column::Heights, height_key(0), hash.0);
        for a in &self.genesis.allocations {
            b.put(Column::Accounts, a.address.0, encoding::encode(&Account { balance: a.balance, nonce: 0 }));
        }
        b.put(Column::Meta, meta_key::SCHEMA, SCHEMA_VERSION.to_le_bytes());
        b.put(Column::Meta, meta_key::GENESIS, hash.0);
        b.put(Column::Meta, meta_key::TIP, hash.0);
        b.put(Column::Meta, meta_key::INDEXED, hash.0);
        self.store.write(b)?;
        // Genesis goes to the store's files at once: a genesis of a million allocations
        // would otherwise sit in a memtable that every account lookup searches, and be
        // flushed in the background while the first blocks connect.
        self.store.flush()?;
        Ok(())
    }

    /// Loads the compact index from the `index` column family and rebuilds the best
    /// chain, the best header chain and the fork-choice candidates.
    pub(super) fn load_index(&mut self) -> Result<(), ChainError> {
        let mut records = Vec::new();
        let mut bad: Option<ChainError> = None;
        self.store.for_each(Column::Index, &mut |k, v| {
            match (store::hash_from_bytes(k, "index key"), IndexRecord::decode(v)) {
                (Ok(h), Ok(r)) => records.push((h, r)),
                (Err(e), _) | (_, Err(e)) => {
                    bad = Some(e.into());
                    return false;
                }
            }
            true
        })?;
        if let Some(e) = bad {
            return Err(e);
        }
        // Parents before children.
        records.sort_unstable_by_key(|(_, r)| (r.header.height, r.seq));
        let mut max_seq = 0;
        for (hash, r) in records {
            max_seq = max_seq.max(r.seq);
            if r.header.height == 0 {
                if hash != self.genesis_hash {
                    return Err(ChainError::Corrupt(format!("index holds a second height-0 block {hash}")));
                }
                self.index.insert(&r.header, hash, r.header.target.work(), r.seq, r.status, NONE);
                continue;
            }
            let Some(prev) = self.index.get(&r.header.prev) else {
                // Only possible if a header batch was lost but its child's was not;
                // the entry is unreachable, so leave it out.
                tracing::warn!(%hash, "index entry without a parent entry; ignored");
                continue;
            };
            if self.index.e(prev).height + 1 != r.header.height {
                return Err(ChainError::Corrupt(format!("index entry {hash} has a wrong height")));
            }
            let work = self.index.e(prev).work.saturating_add(r.header.target.work());
            let mut st = r.status;
            if self.index.e(prev).has(status::FAILED_MASK) {
                st |= status::FAILED_CHILD;
            }
            self.index.insert(&r.header, hash, work, r.seq, st, prev);
        }
        self.next_seq = max_seq + 1;
        if self.index.get(&self.genesis_hash).is_none() {
            return Err(ChainError::Corrupt("genesis is not in the index".into()));
        }

        let tip = self
            .store
            .get(Column::Meta, meta_key::TIP)?
            .ok_or_else(|| ChainError::Corrupt("no tip in meta".into()))?;
        let tip = store::hash_from_bytes(&tip, "tip")?;
        let tip_idx = self
            .index
            .get(&tip)
            .ok_or_else(|| ChainError::Corrupt(format!("tip {tip} is not in the index")))?;
        self.index
            .set_best_chain(tip_idx)
            .map_err(|hash| ChainError::Corrupt(format!("best-chain block {hash} is not marked valid")))?;
        self.index.link_stored_bodies();
        self.index.recompute_best_header();
        Ok(())
    }
}
