//! The storage layer: a small key-value interface with column families and atomic write
//! batches, and its two backends, RocksDB ([`RocksStore`]) and memory ([`MemStore`]).
//!
//! This module owns the on-disk schema: which column families exist, how keys and
//! values are laid out, and the write options. It knows nothing of fork choice or
//! validation; [`crate::chain`] decides what goes into each batch.
//!
//! # Schema (schema version 1)
//!
//! | column family | key | value |
//! |---|---|---|
//! | `bodies`   | block hash (32) | canonical encoding of the whole block |
//! | `index`    | block hash (32) | [`IndexRecord`]: header (124) · cumulative work (32, big-endian) · first-seen sequence (u64 LE) · status flags (u8) = 165 bytes |
//! | `heights`  | height (u64 big-endian, so keys sort by height) | best-chain block hash (32) |
//! | `accounts` | address (20) | canonical encoding of `Account` (balance u64 LE · nonce u64 LE) |
//! | `undo`     | block hash (32) | canonical encoding of `BlockUndo` (for best-chain blocks only) |
//! | `txindex`  | txid (32) | [`TxLocationRecord`]: block hash (32) · height (u64 LE) · index in block (u32 LE) |
//! | `addrindex` | address (20) · height (u64 big-endian) | the address's transactions in that block, in block order: per transaction its index in the block (u32 LE) · [`AddrEntryRecord`] (txid (32) · direction (u8) · counterparty (20) · amount · fee · nonce (u64 LE each)) = 81 bytes |
//! | `meta`     | `b"schema"` / `b"genesis"` / `b"tip"` | u32 LE / genesis hash / best-chain tip hash |
//! | `meta`     | `b"indexed"` | the block (hash) up to which `txindex` and `addrindex` hold the chain: written behind the tip by `chain/indexes.rs` |
//! | `meta`     | `b"addrindex"` | present (one byte, [`ADDR_INDEX_VERSION`]) when `addrindex` is complete for the best chain and maintained |
//! | `meta`     | `b"invalid/"` · block hash (32) | why that block is [`status::FAILED`]: the validation error, UTF-8 text |
//!
//! The address history index (`addrindex`) holds one entry per best-chain transaction
//! and address it touches: the sender and the recipient of a transfer (one entry of
//! direction [`direction::SELF`] when they are the same), the recipient of a coinbase.
//! An address's entries of one block share one key (layout version 2; version 1 had a
//! key per entry, twice as many keys per transfer, each a random insert into RocksDB's
//! memtable), so a block writes one key per address it touches. Keys sort by address,
//! then height, so the newest entries of an address are in the last keys of its prefix:
//! a page of history is one reverse scan from a cursor ([`KvStore::for_each_rev_in`]),
//! each value read from its last entry back. The `meta` key
//! `addrindex` says the index is on; a node started without it deletes the key and the
//! entries, and one started with it on a database without the key builds it first
//! (see `chain/history.rs`).
//!
//! RocksDB refuses to open a database without naming every column family in it; the
//! ones earlier versions created and this one does not use ([`OBSOLETE_COLUMNS`]:
//! `peers`) are dropped when [`RocksStore::open`] finds them.
//!
//! Every index entry that is stored passed the header checks (proof of work, and height,
//! parent, target schedule and timestamps against its parent), so an entry costs its
//! sender real work. Status flags: [`status::HAVE_BODY`] (the body is in `bodies`),
//! [`status::VALID`] (the block was connected once, so its state transition is valid),
//! [`status::FAILED`] (invalid itself), [`status::FAILED_CHILD`] (descends from an
//! invalid block).
//!
//! # Atomicity and durability
//!
//! Each [`Batch`] is applied atomically ([`rocksdb::WriteBatch`]). The chain writes one
//! batch per block stored, per block connected (accounts, undo, status, height, tip)
//! and per block disconnected, so after a crash the database is always at a batch
//! boundary with the tip in `meta` matching the accounts exactly. The tx and address
//! index entries of each block follow in a batch of their own with `meta`'s `indexed`
//! (`chain/indexes.rs`), so they always match the block `indexed` names, which the
//! chain catches up with the tip when it opens.
//!
//! Writes are **not synced** one by one (`WriteOptions::set_sync(false)`): RocksDB has
//! written each batch to its write-ahead log with `write(2)` before the call returns, so
//! a **kill -9** of the process loses nothing. A **power cut or kernel crash** may lose
//! the batches of the last moments that the OS had not written to disk yet; the WAL is
//! replayed in order and stops at the first incomplete record
//! (`DBRecoveryMode::PointInTime`), so what survives is a prefix of the batches: a
//! consistent node a few blocks behind, which re-downloads them from peers. To bound that
//! window the chain has [`KvStore::sync`] (an fsync of the WAL) called at most once per
//! second of block commits, on the index writer's thread so that no block waits for the
//! disk (`chain/indexes.rs`), and calls it when it is dropped. Syncing every batch would cost an fsync per
//! block during initial sync for no gain in consistency, only in the last second of
//! blocks, which the network still has.
//!
//! The WAL is bounded (`max_total_wal_size`, 32 MiB: past it RocksDB flushes memtables)
//! and a clean close (dropping the [`RocksStore`], after the chain's last fsync)
//! flushes every memtable, so the next open has no WAL to replay, and opening after a
//! crash never replays more than that bound, whatever the chain length. A new chain's
//! genesis is flushed as soon as it is written ([`KvStore::flush`]), whatever its size.

use crate::failstop::lock_or_stop;
use cairn_core::block::{BlockHeader, HEADER_LEN};
use cairn_core::encoding;
use cairn_core::{BlockHash, Work};
use std::collections::BTreeMap;
#[cfg(feature = "rocksdb")]
use std::path::Path;
use std::sync::{Arc, Mutex};
use thiserror::Error;

/// The schema version written in `meta`; a database with another version is refused.
pub const SCHEMA_VERSION: u32 = 1;

/// Keys of the `meta` column family.
pub mod meta_key {
    pub const SCHEMA: &[u8] = b"schema";
    pub const GENESIS: &[u8] = b"genesis";
    pub const TIP: &[u8] = b"tip";
    /// Present when the address history index is complete and maintained.
    pub const ADDR_INDEX: &[u8] = b"addrindex";
    /// The block the tx and address indexes reach (see `chain/indexes.rs`).
    pub const INDEXED: &[u8] = b"indexed";
    /// Prefix of the keys holding why a block was marked [`super::status::FAILED`].
    pub const INVALID_REASON_PREFIX: &[u8] = b"invalid/";

    /// The key holding why the block `hash` was marked FAILED.
    pub fn invalid_reason(hash: &cairn_core::BlockHash) -> Vec<u8> {
        [INVALID_REASON_PREFIX, &hash.0[..]].concat()
    }
}

/// The column families.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Column {
    Bodies,
    Index,
    Heights,
    Accounts,
    Undo,
    TxIndex,
    Meta,
    AddrIndex,
}

impl Column {
    pub const ALL: [Column; 8] = [
        Column::Bodies,
        Column::Index,
        Column::Heights,
        Column::Accounts,
        Column::Undo,
        Column::TxIndex,
        Column::Meta,
        Column::AddrIndex,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Column::Bodies => "bodies",
            Column::Index => "index",
            Column::Heights => "heights",
            Column::Accounts => "accounts",
            Column::Undo => "undo",
            Column::TxIndex => "txindex",
            Column::Meta => "meta",
            Column::AddrIndex => "addrindex",
        }
    }

    fn slot(self) -> usize {
        self as usize
    }
}

/// A failure of the storage engine.
#[derive(Debug, Error)]
pub enum StoreError {
    #[cfg(feature = "rocksdb")]
    #[error("rocksdb: {context}: {source}")]
    Rocks {
        context: String,
        #[source]
        source: rocksdb::Error,
    },
    #[error("column family {0} is missing")]
    MissingColumn(&'static str),
}

/// One write in a batch: `None` deletes the key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Op {
    pub column: Column,
    pub key: Vec<u8>,
    pub value: Option<Vec<u8>>,
}

/// Writes applied all together or not at all.
#[derive(Clone, Debug, Default)]
pub struct Batch {
    ops: Vec<Op>,
}

impl Batch {
    pub fn new() -> Batch {
        Batch::default()
    }
    pub fn put(&mut self, column: Column, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) {
        self.ops.push(Op { column, key: key.into(), value: Some(value.into()) });
    }
    pub fn delete(&mut self, column: Column, key: impl Into<Vec<u8>>) {
        self.ops.push(Op { column, key: key.into(), value: None });
    }
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
    pub fn len(&self) -> usize {
        self.ops.len()
    }
    pub fn ops(&self) -> &[Op] {
        &self.ops
    }
    /// Orders the writes by column and key, keeping the order of those to one key (so
    /// the batch means the same). RocksDB inserts a sorted batch into its memtable
    /// faster: each insert starts from where the one before ended.
    pub fn sort_by_key(&mut self) {
        self.ops.sort_by(|a, b| (a.column, &a.key).cmp(&(b.column, &b.key)));
    }
}

/// What the chain needs from a key-value store.
pub trait KvStore: Send + Sync {
    fn get(&self, column: Column, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;
    /// Reads many keys of one column at once; `keys` sorted ascending reads fastest.
    fn multi_get(&self, column: Column, keys: &[&[u8]]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        keys.iter().map(|k| self.get(column, k)).collect()
    }
    /// Applies the batch atomically.
    fn write(&self, batch: Batch) -> Result<(), StoreError>;
    /// Visits every entry of `column` in key order until `f` returns false.
    fn for_each(&self, column: Column, f: &mut dyn FnMut(&[u8], &[u8]) -> bool) -> Result<(), StoreError>;
    /// Makes every write so far durable against a power cut.
    fn sync(&self) -> Result<(), StoreError>;
    /// Moves everything written so far out of the write-ahead log into the store's own
    /// files (RocksDB: flushes every memtable), durably. For after a large one-off
    /// write such as a genesis of many allocations: otherwise its flush runs in the
    /// background under the first blocks, and a lookup searches it in memory until then.
    fn flush(&self) -> Result<(), StoreError> {
        self.sync()
    }
    /// Visits the entries of `column` with `lower <= key < upper` in descending key
    /// order until `f` returns false. (This default scans the whole column; both
    /// backends seek instead.)
    fn for_each_rev_in(
        &self,
        column: Column,
        lower: &[u8],
        upper: &[u8],
        f: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StoreError> {
        let mut hits = Vec::new();
        self.for_each(column, &mut |k, v| {
            if k >= lower && k < upper {
                hits.push((k.to_vec(), v.to_vec()));
            }
            k < upper
        })?;
        for (k, v) in hits.iter().rev() {
            if !f(k, v) {
                break;
            }
        }
        Ok(())
    }
}

/// The RocksDB backend.
#[cfg(feature = "rocksdb")]
pub struct RocksStore {
    db: rocksdb::DB,
}

#[cfg(feature = "rocksdb")]
impl RocksStore {
    /// Opens or creates the database at `path` with every column family, dropping the
    /// [`OBSOLETE_COLUMNS`] an earlier version left there (RocksDB refuses to open a
    /// database without naming every column family it holds).
    pub fn open(path: &Path) -> Result<RocksStore, StoreError> {
        let mut opts = rocksdb::Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        // Replay the WAL up to the first damaged record: after a power cut we keep a
        // prefix of the batches, each of them whole (see the module doc).
        opts.set_wal_recovery_mode(rocksdb::DBRecoveryMode::PointInTime);
        opts.set_max_open_files(512);
        opts.set_keep_log_file_num(4);
        // Flush memtables once the WAL holds this much, so that opening after a crash
        // replays at most this much (a restart's cost would otherwise grow with the
        // chain written since the last flush: 100,000 blocks took ~2.5 s to replay).
        opts.set_max_total_wal_size(MAX_WAL_BYTES);
        let cfs = Column::ALL.iter().map(|c| {
            let mut o = rocksdb::Options::default();
            if matches!(c, Column::Accounts | Column::Index | Column::TxIndex) {
                // Point lookups dominate these; a bloom filter saves disk reads.
                let mut bo = rocksdb::BlockBasedOptions::default();
                bo.set_bloom_filter(10.0, false);
                o.set_block_based_table_factory(&bo);
            }
            rocksdb::ColumnFamilyDescriptor::new(c.name(), o)
        });
        // A database that does not exist yet has no column families to list; any other
        // failure to list them shows again, with its cause, when opening.
        let existing = rocksdb::DB::list_cf(&opts, path).unwrap_or_default();
        let obsolete: Vec<&str> =
            OBSOLETE_COLUMNS.iter().copied().filter(|o| existing.iter().any(|e| e == o)).collect();
        let old_cfs = obsolete
            .iter()
            .map(|name| rocksdb::ColumnFamilyDescriptor::new(*name, rocksdb::Options::default()));
        let mut db = rocksdb::DB::open_cf_descriptors(&opts, path, cfs.chain(old_cfs))
            .map_err(|source| StoreError::Rocks { context: format!("opening {}", path.display()), source })?;
        for name in obsolete {
            db.drop_cf(name).map_err(|source| StoreError::Rocks {
                context: format!("dropping the obsolete column family {name}"),
                source,
            })?;
            tracing::info!(column = name, "dropped an obsolete column family");
        }
        Ok(RocksStore { db })
    }

    fn cf(&self, column: Column) -> Result<&rocksdb::ColumnFamily, StoreError> {
        self.db.cf_handle(column.name()).ok_or(StoreError::MissingColumn(column.name()))
    }
}

/// Column families that earlier versions of the node created and this one does not use:
/// `peers` was set aside for the P2P layer, which keeps its address book and bans in
/// files instead (never written).
#[cfg(feature = "rocksdb")]
pub const OBSOLETE_COLUMNS: &[&str] = &["peers"];

/// Bound on the write-ahead log kept before memtables are flushed (see `open`).
#[cfg(feature = "rocksdb")]
const MAX_WAL_BYTES: u64 = 32 << 20;

#[cfg(feature = "rocksdb")]
impl Drop for RocksStore {
    /// A clean close writes the memtables out, so the next open has no WAL to replay.
    /// (After a kill -9 the WAL is replayed instead: nothing committed is lost either way.)
    fn drop(&mut self) {
        if let Err(e) = KvStore::flush(self) {
            tracing::warn!(error = %e, "flushing on close failed");
        }
    }
}

#[cfg(feature = "rocksdb")]
impl KvStore for RocksStore {
    fn get(&self, column: Column, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let cf = self.cf(column)?;
        self.db
            .get_cf(cf, key)
            .map_err(|source| StoreError::Rocks { context: format!("reading {}", column.name()), source })
    }

    /// One `MultiGet` call: RocksDB looks the sorted keys up together, sharing the
    /// index and data block reads of keys that sit in the same blocks.
    fn multi_get(&self, column: Column, keys: &[&[u8]]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        let cf = self.cf(column)?;
        let sorted = keys.windows(2).all(|w| w[0] <= w[1]);
        self.db
            .batched_multi_get_cf(cf, keys, sorted)
            .into_iter()
            .map(|r| {
                r.map(|v| v.map(|s| s.to_vec())).map_err(|source| StoreError::Rocks {
                    context: format!("reading {}", column.name()),
                    source,
                })
            })
            .collect()
    }

    fn write(&self, batch: Batch) -> Result<(), StoreError> {
        // Sized up front (RocksDB's 12-byte header, and per write at most 16 bytes of
        // tag, column and lengths beside the key and value): a block body then goes
        // into the batch in one copy, not again at each doubling of its buffer.
        let bytes = batch.ops.iter().fold(12usize, |n, op| {
            n.saturating_add(16 + op.key.len() + op.value.as_ref().map_or(0, Vec::len))
        });
        let mut wb = rocksdb::WriteBatch::with_capacity_bytes(bytes);
        for op in batch.ops {
            let cf = self.cf(op.column)?;
            match op.value {
                Some(v) => wb.put_cf(cf, op.key, v),
                None => wb.delete_cf(cf, op.key),
            }
        }
        let mut wo = rocksdb::WriteOptions::default();
        // Deliberately unsynced: see the module doc (kill -9 safe; power cut loses at
        // most the last unsynced second, never consistency).
        wo.set_sync(false);
        self.db
            .write_opt(wb, &wo)
            .map_err(|source| StoreError::Rocks { context: "writing a batch".into(), source })
    }

    fn for_each(&self, column: Column, f: &mut dyn FnMut(&[u8], &[u8]) -> bool) -> Result<(), StoreError> {
        let cf = self.cf(column)?;
        for item in self.db.iterator_cf(cf, rocksdb::IteratorMode::Start) {
            let (k, v) = item.map_err(|source| StoreError::Rocks {
                context: format!("iterating {}", column.name()),
                source,
            })?;
            if !f(&k, &v) {
                break;
            }
        }
        Ok(())
    }

    fn sync(&self) -> Result<(), StoreError> {
        self.db
            .flush_wal(true)
            .map_err(|source| StoreError::Rocks { context: "syncing the WAL".into(), source })
    }

    /// Flushes each column family's memtable and waits for it; the SST files are synced.
    /// Every column is tried, whatever failed before it; the first failure is returned.
    fn flush(&self) -> Result<(), StoreError> {
        let mut first = Ok(());
        for c in Column::ALL {
            let flushed = self.cf(c).and_then(|cf| {
                self.db
                    .flush_cf(cf)
                    .map_err(|source| StoreError::Rocks { context: format!("flushing {}", c.name()), source })
            });
            if first.is_ok() {
                first = flushed;
            }
        }
        first
    }

    fn for_each_rev_in(
        &self,
        column: Column,
        lower: &[u8],
        upper: &[u8],
        f: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StoreError> {
        let cf = self.cf(column)?;
        let mut ro = rocksdb::ReadOptions::default();
        ro.set_iterate_lower_bound(lower.to_vec());
        ro.set_iterate_upper_bound(upper.to_vec());
        let mut it = self.db.raw_iterator_cf_opt(cf, ro);
        it.seek_to_last();
        while it.valid() {
            let (Some(k), Some(v)) = (it.key(), it.value()) else { break };
            if !f(k, v) {
                return Ok(());
            }
            it.prev();
        }
        it.status()
            .map_err(|source| StoreError::Rocks { context: format!("iterating {}", column.name()), source })
    }
}

type Tables = [BTreeMap<Vec<u8>, Vec<u8>>; Column::ALL.len()];

/// The in-memory backend: one `BTreeMap` per column family behind a mutex. Clones share
/// the same data, so a test or the P2P simulator can "restart" a node on it.
#[derive(Clone, Default)]
pub struct MemStore {
    tables: Arc<Mutex<Tables>>,
}

impl MemStore {
    pub fn new() -> MemStore {
        MemStore::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Tables> {
        // The node's one policy for a poisoned lock (see `failstop`), here too.
        lock_or_stop(&self.tables, "in-memory store")
    }
}

impl KvStore for MemStore {
    fn get(&self, column: Column, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.lock()[column.slot()].get(key).cloned())
    }

    fn write(&self, batch: Batch) -> Result<(), StoreError> {
        let mut tables = self.lock();
        for op in batch.ops {
            let table = &mut tables[op.column.slot()];
            match op.value {
                Some(v) => table.insert(op.key, v),
                None => table.remove(&op.key),
            };
        }
        Ok(())
    }

    fn for_each(&self, column: Column, f: &mut dyn FnMut(&[u8], &[u8]) -> bool) -> Result<(), StoreError> {
        let tables = self.lock();
        for (k, v) in &tables[column.slot()] {
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
        let tables = self.lock();
        let range = (std::ops::Bound::Included(lower), std::ops::Bound::Excluded(upper));
        for (k, v) in tables[column.slot()].range::<[u8], _>(range).rev() {
            if !f(k, v) {
                break;
            }
        }
        Ok(())
    }
}

/// Status flags of an index entry (persisted in [`IndexRecord::status`]).
pub mod status {
    /// The body is stored in `bodies`.
    pub const HAVE_BODY: u8 = 1;
    /// The block has been connected: all its rules, state included, hold.
    pub const VALID: u8 = 2;
    /// The block itself broke a rule.
    pub const FAILED: u8 = 4;
    /// The block descends from a block that broke a rule.
    pub const FAILED_CHILD: u8 = 8;
    pub const FAILED_MASK: u8 = FAILED | FAILED_CHILD;
    /// Flags that may be stored; anything else means corruption.
    pub const ALL: u8 = HAVE_BODY | VALID | FAILED | FAILED_CHILD;
}

/// A value of the `index` column family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IndexRecord {
    pub header: BlockHeader,
    /// Work of the block and all its ancestors, genesis included.
    pub work: Work,
    /// When the block was first indexed, for "first seen wins" ties.
    pub seq: u64,
    pub status: u8,
}

/// Bytes of an encoded [`IndexRecord`].
pub const INDEX_RECORD_LEN: usize = HEADER_LEN + 32 + 8 + 1;

/// A stored value does not have the expected shape.
#[derive(Debug, Error)]
#[error("malformed {what}: {reason}")]
pub struct RecordError {
    pub what: &'static str,
    pub reason: String,
}

impl IndexRecord {
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(INDEX_RECORD_LEN);
        v.extend_from_slice(&self.header.to_bytes());
        v.extend_from_slice(&self.work.to_be_bytes());
        v.extend_from_slice(&self.seq.to_le_bytes());
        v.push(self.status);
        v
    }

    pub fn decode(bytes: &[u8]) -> Result<IndexRecord, RecordError> {
        let bad = |reason: String| RecordError { what: "index record", reason };
        if bytes.len() != INDEX_RECORD_LEN {
            return Err(bad(format!("{} bytes, expected {INDEX_RECORD_LEN}", bytes.len())));
        }
        let header: BlockHeader = encoding::decode(&bytes[..HEADER_LEN]).map_err(|e| bad(e.to_string()))?;
        let mut work = [0u8; 32];
        work.copy_from_slice(&bytes[HEADER_LEN..HEADER_LEN + 32]);
        let mut seq = [0u8; 8];
        seq.copy_from_slice(&bytes[HEADER_LEN + 32..HEADER_LEN + 40]);
        let status = bytes[HEADER_LEN + 40];
        if status & !status::ALL != 0 {
            return Err(bad(format!("unknown status flags {status:#x}")));
        }
        Ok(IndexRecord { header, work: Work::from_be_bytes(&work), seq: u64::from_le_bytes(seq), status })
    }
}

/// A value of the `txindex` column family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TxLocationRecord {
    pub block_hash: BlockHash,
    pub height: u64,
    pub index: u32,
}

impl TxLocationRecord {
    pub const LEN: usize = 32 + 8 + 4;

    pub fn encode(&self) -> [u8; Self::LEN] {
        let mut b = [0u8; Self::LEN];
        b[..32].copy_from_slice(&self.block_hash.0);
        b[32..40].copy_from_slice(&self.height.to_le_bytes());
        b[40..44].copy_from_slice(&self.index.to_le_bytes());
        b
    }

    pub fn decode(bytes: &[u8]) -> Result<TxLocationRecord, RecordError> {
        if bytes.len() != Self::LEN {
            return Err(RecordError {
                what: "tx location",
                reason: format!("{} bytes, expected {}", bytes.len(), Self::LEN),
            });
        }
        let mut hash = [0u8; 32];
        hash.copy_from_slice(&bytes[..32]);
        let mut height = [0u8; 8];
        height.copy_from_slice(&bytes[32..40]);
        let mut index = [0u8; 4];
        index.copy_from_slice(&bytes[40..44]);
        Ok(TxLocationRecord {
            block_hash: BlockHash(hash),
            height: u64::from_le_bytes(height),
            index: u32::from_le_bytes(index),
        })
    }
}

/// Version of the `addrindex` layout, the value of the `meta` key `addrindex`. A
/// database whose marker holds another version has its index rebuilt on open.
pub const ADDR_INDEX_VERSION: u8 = 2;

/// Values of [`AddrEntryRecord::direction`].
pub mod direction {
    /// A coinbase paid to the address.
    pub const COINBASE: u8 = 0;
    /// A transfer to the address from another one.
    pub const IN: u8 = 1;
    /// A transfer from the address to another one.
    pub const OUT: u8 = 2;
    /// A transfer from the address to itself (it pays only the fee).
    pub const SELF: u8 = 3;

    /// The name the RPC uses.
    pub fn name(d: u8) -> &'static str {
        match d {
            COINBASE => "coinbase",
            IN => "in",
            OUT => "out",
            _ => "self",
        }
    }
}

/// Bytes of an `addrindex` key: address (20) · height (8, BE).
pub const ADDR_KEY_LEN: usize = 20 + 8;

/// The `addrindex` key of `address`'s entries in the best-chain block at `height`.
pub fn addr_key(address: &cairn_core::Address, height: u64) -> [u8; ADDR_KEY_LEN] {
    let mut k = [0u8; ADDR_KEY_LEN];
    k[..20].copy_from_slice(&address.0);
    k[20..].copy_from_slice(&height.to_be_bytes());
    k
}

/// Splits an `addrindex` key into address and height.
pub fn parse_addr_key(key: &[u8]) -> Result<(cairn_core::Address, u64), RecordError> {
    let bad = || RecordError {
        what: "address index key",
        reason: format!("{} bytes, expected {ADDR_KEY_LEN}", key.len()),
    };
    let key: &[u8; ADDR_KEY_LEN] = key.try_into().map_err(|_| bad())?;
    let mut a = [0u8; 20];
    a.copy_from_slice(&key[..20]);
    let mut h = [0u8; 8];
    h.copy_from_slice(&key[20..]);
    Ok((cairn_core::Address(a), u64::from_be_bytes(h)))
}

/// One address's entries in one block: (index in the block, entry), in block order.
pub type AddrBlockEntries = Vec<(u32, AddrEntryRecord)>;

/// Bytes of one entry in an `addrindex` value: index in block (u32 LE) · record.
pub const ADDR_ENTRY_LEN: usize = 4 + AddrEntryRecord::LEN;

/// The `addrindex` value of `entries` (in block order).
pub fn encode_addr_entries(entries: &[(u32, AddrEntryRecord)]) -> Vec<u8> {
    let mut v = Vec::with_capacity(entries.len() * ADDR_ENTRY_LEN);
    for (index, record) in entries {
        v.extend_from_slice(&index.to_le_bytes());
        v.extend_from_slice(&record.encode());
    }
    v
}

/// Parses an `addrindex` value: at least one entry, indices strictly increasing.
pub fn decode_addr_entries(bytes: &[u8]) -> Result<AddrBlockEntries, RecordError> {
    let bad = |reason: String| RecordError { what: "address index value", reason };
    if bytes.is_empty() || bytes.len() % ADDR_ENTRY_LEN != 0 {
        return Err(bad(format!("{} bytes, expected a positive multiple of {ADDR_ENTRY_LEN}", bytes.len())));
    }
    let mut out: AddrBlockEntries = Vec::with_capacity(bytes.len() / ADDR_ENTRY_LEN);
    for chunk in bytes.chunks_exact(ADDR_ENTRY_LEN) {
        let mut i = [0u8; 4];
        i.copy_from_slice(&chunk[..4]);
        let index = u32::from_le_bytes(i);
        if out.last().is_some_and(|(prev, _)| *prev >= index) {
            return Err(bad(format!(
                "entries out of block order (tx {index} after tx {})",
                out[out.len() - 1].0
            )));
        }
        out.push((index, AddrEntryRecord::decode(&chunk[4..])?));
    }
    Ok(out)
}

/// A value of the `addrindex` column family: the transaction as the address sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AddrEntryRecord {
    pub txid: cairn_core::Txid,
    /// One of [`direction`].
    pub direction: u8,
    /// The other side: the recipient of an outgoing transfer, the sender of an incoming
    /// one, the address itself for [`direction::SELF`], all zeros for a coinbase.
    pub counterparty: cairn_core::Address,
    pub amount: u64,
    /// The transfer's fee (0 for a coinbase).
    pub fee: u64,
    /// The transfer's nonce; for a coinbase, the height it pays for.
    pub nonce: u64,
}

impl AddrEntryRecord {
    pub const LEN: usize = 32 + 1 + 20 + 8 * 3;

    pub fn encode(&self) -> [u8; Self::LEN] {
        let mut b = [0u8; Self::LEN];
        b[..32].copy_from_slice(&self.txid.0);
        b[32] = self.direction;
        b[33..53].copy_from_slice(&self.counterparty.0);
        b[53..61].copy_from_slice(&self.amount.to_le_bytes());
        b[61..69].copy_from_slice(&self.fee.to_le_bytes());
        b[69..77].copy_from_slice(&self.nonce.to_le_bytes());
        b
    }

    pub fn decode(bytes: &[u8]) -> Result<AddrEntryRecord, RecordError> {
        let bad = |reason: String| RecordError { what: "address index entry", reason };
        let b: &[u8; Self::LEN] =
            bytes.try_into().map_err(|_| bad(format!("{} bytes, expected {}", bytes.len(), Self::LEN)))?;
        if b[32] > direction::SELF {
            return Err(bad(format!("unknown direction {}", b[32])));
        }
        let u64_at = |i: usize| {
            let mut x = [0u8; 8];
            x.copy_from_slice(&b[i..i + 8]);
            u64::from_le_bytes(x)
        };
        let mut txid = [0u8; 32];
        txid.copy_from_slice(&b[..32]);
        let mut cp = [0u8; 20];
        cp.copy_from_slice(&b[33..53]);
        Ok(AddrEntryRecord {
            txid: cairn_core::Txid(txid),
            direction: b[32],
            counterparty: cairn_core::Address(cp),
            amount: u64_at(53),
            fee: u64_at(61),
            nonce: u64_at(69),
        })
    }
}

/// The `addrindex` keys and values of a best-chain block at `height`: one per address
/// the block touches, in the order of each address's first transaction in the block
/// (not key order), each holding that address's entries in block order. The one place
/// that decides what the index holds, used by connect, disconnect, the build on open
/// and `check-db`.
pub fn addr_entries(
    block: &cairn_core::block::Block,
    height: u64,
) -> Vec<([u8; ADDR_KEY_LEN], AddrBlockEntries)> {
    addr_entries_with_txids(block, &block.txids(), height)
}

/// [`addr_entries`] given the block's txids (`txids[i]` is transaction `i`'s), already
/// computed by the caller.
pub fn addr_entries_with_txids(
    block: &cairn_core::block::Block,
    txids: &[cairn_core::Txid],
    height: u64,
) -> Vec<([u8; ADDR_KEY_LEN], AddrBlockEntries)> {
    use cairn_core::Transaction;
    let mut out: Vec<([u8; ADDR_KEY_LEN], AddrBlockEntries)> = Vec::new();
    let mut slot: std::collections::HashMap<cairn_core::Address, usize> = std::collections::HashMap::new();
    let mut add = |address: cairn_core::Address, index: u32, record: AddrEntryRecord| {
        let at = *slot.entry(address).or_insert_with(|| {
            out.push((addr_key(&address, height), Vec::new()));
            out.len() - 1
        });
        out[at].1.push((index, record));
    };
    for (i, (tx, &txid)) in block.transactions.iter().zip(txids).enumerate() {
        let i = i as u32;
        match tx {
            Transaction::Coinbase(cb) => add(
                cb.to,
                i,
                AddrEntryRecord {
                    txid,
                    direction: direction::COINBASE,
                    counterparty: cairn_core::Address::default(),
                    amount: cb.amount.0,
                    fee: 0,
                    nonce: cb.height,
                },
            ),
            Transaction::Transfer(st) => {
                let t = &st.transfer;
                let from = t.sender();
                let entry = |direction, counterparty| AddrEntryRecord {
                    txid,
                    direction,
                    counterparty,
                    amount: t.amount.0,
                    fee: t.fee.0,
                    nonce: t.nonce,
                };
                if from == t.to {
                    add(from, i, entry(direction::SELF, from));
                } else {
                    add(from, i, entry(direction::OUT, t.to));
                    add(t.to, i, entry(direction::IN, from));
                }
            }
        }
    }
    out
}

/// Key of the `heights` column family.
pub fn height_key(height: u64) -> [u8; 8] {
    height.to_be_bytes()
}

/// Parses a 32-byte hash value or key.
pub fn hash_from_bytes(bytes: &[u8], what: &'static str) -> Result<BlockHash, RecordError> {
    let arr: [u8; 32] = bytes
        .try_into()
        .map_err(|_| RecordError { what, reason: format!("{} bytes, expected 32", bytes.len()) })?;
    Ok(BlockHash(arr))
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_core::genesis::Genesis;

    fn exercise(store: &dyn KvStore) {
        let mut b = Batch::new();
        b.put(Column::Meta, b"a".to_vec(), b"1".to_vec());
        b.put(Column::Accounts, b"a".to_vec(), b"2".to_vec());
        b.put(Column::Accounts, b"b".to_vec(), b"3".to_vec());
        store.write(b).unwrap();
        assert_eq!(store.get(Column::Meta, b"a").unwrap(), Some(b"1".to_vec()));
        assert_eq!(store.get(Column::Bodies, b"a").unwrap(), None);
        let mut b = Batch::new();
        b.delete(Column::Accounts, b"a".to_vec());
        store.write(b).unwrap();
        let mut seen = Vec::new();
        store
            .for_each(Column::Accounts, &mut |k, v| {
                seen.push((k.to_vec(), v.to_vec()));
                true
            })
            .unwrap();
        assert_eq!(seen, vec![(b"b".to_vec(), b"3".to_vec())]);
        store.sync().unwrap();

        // Reverse range scans: bounds are [lower, upper), newest (largest) key first.
        let mut b = Batch::new();
        for k in [b"k1", b"k2", b"k3", b"k4", b"l0"] {
            b.put(Column::AddrIndex, k.to_vec(), k.to_vec());
        }
        store.write(b).unwrap();
        let rev = |lower: &[u8], upper: &[u8], max: usize| {
            let mut seen = Vec::new();
            store
                .for_each_rev_in(Column::AddrIndex, lower, upper, &mut |k, _| {
                    seen.push(String::from_utf8(k.to_vec()).unwrap());
                    seen.len() < max
                })
                .unwrap();
            seen
        };
        assert_eq!(rev(b"k", b"l", 10), ["k4", "k3", "k2", "k1"]);
        assert_eq!(rev(b"k", b"k3", 10), ["k2", "k1"]);
        assert_eq!(rev(b"k2", b"k4", 10), ["k3", "k2"]);
        assert_eq!(rev(b"k", b"z", 2), ["l0", "k4"]);
        assert!(rev(b"k3", b"k3", 10).is_empty());
        assert!(rev(b"m", b"z", 10).is_empty());
    }

    /// A store with only the required methods: the trait's default reverse scan.
    struct Plain(MemStore);

    impl KvStore for Plain {
        fn get(&self, column: Column, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
            self.0.get(column, key)
        }
        fn write(&self, batch: Batch) -> Result<(), StoreError> {
            self.0.write(batch)
        }
        fn for_each(
            &self,
            column: Column,
            f: &mut dyn FnMut(&[u8], &[u8]) -> bool,
        ) -> Result<(), StoreError> {
            self.0.for_each(column, f)
        }
        fn sync(&self) -> Result<(), StoreError> {
            self.0.sync()
        }
    }

    #[test]
    fn default_reverse_scan_behaves_like_the_backends() {
        exercise(&Plain(MemStore::new()));
    }

    #[test]
    fn address_entry_round_trips_and_rejects_garbage() {
        let r = AddrEntryRecord {
            txid: cairn_core::Txid([7; 32]),
            direction: direction::OUT,
            counterparty: cairn_core::Address([9; 20]),
            amount: u64::MAX,
            fee: 3,
            nonce: 1 << 40,
        };
        let bytes = r.encode();
        assert_eq!(AddrEntryRecord::decode(&bytes).unwrap(), r);
        assert!(AddrEntryRecord::decode(&bytes[1..]).is_err());
        let mut bad = bytes;
        bad[32] = 4;
        assert!(AddrEntryRecord::decode(&bad).is_err());
        let key = addr_key(&r.counterparty, 300);
        assert_eq!(parse_addr_key(&key).unwrap(), (r.counterparty, 300));
        // Keys of one address sort by height: the newest is the largest.
        assert!(addr_key(&r.counterparty, 255) < addr_key(&r.counterparty, 256));
        assert!(parse_addr_key(&key[1..]).is_err());

        // A value: one address's entries of one block, in block order.
        let second = AddrEntryRecord { direction: direction::IN, nonce: 0, ..r };
        let entries = vec![(0, r), (u32::MAX, second)];
        let value = encode_addr_entries(&entries);
        assert_eq!(value.len(), 2 * ADDR_ENTRY_LEN);
        assert_eq!(decode_addr_entries(&value).unwrap(), entries);
        assert!(decode_addr_entries(&[]).is_err(), "an empty value");
        assert!(decode_addr_entries(&value[1..]).is_err(), "a torn entry");
        let backwards = encode_addr_entries(&[(5, r), (5, second)]);
        assert!(decode_addr_entries(&backwards).is_err(), "two entries of one transaction");
        let mut garbage = value.clone();
        garbage[4 + 32] = 9;
        assert!(decode_addr_entries(&garbage).is_err(), "an unknown direction");
    }

    #[test]
    #[cfg(feature = "rocksdb")]
    fn both_backends_behave_alike() {
        exercise(&MemStore::new());
        let dir = tempfile::tempdir().unwrap();
        exercise(&RocksStore::open(dir.path()).unwrap());
    }

    #[test]
    fn index_record_round_trips_and_rejects_garbage() {
        let g = Genesis::dev();
        let r = IndexRecord { header: g.block().header, work: Work::ZERO, seq: 7, status: status::HAVE_BODY };
        let bytes = r.encode();
        assert_eq!(bytes.len(), INDEX_RECORD_LEN);
        assert_eq!(IndexRecord::decode(&bytes).unwrap(), r);
        assert!(IndexRecord::decode(&bytes[1..]).is_err());
        let mut bad = bytes.clone();
        *bad.last_mut().unwrap() = 0xff;
        assert!(IndexRecord::decode(&bad).is_err());
    }
}
