//! The transaction index (`txindex`) and the address history index (`addrindex`),
//! written behind the chain.
//!
//! Connecting a block commits the state in one batch (accounts, undo, status, height,
//! tip, see `commit.rs`); the block's index entries follow in a batch of their own,
//! written by the [`IndexWriter`]: on a thread of its own in Linux's `SCHED_IDLE` class
//! (the node; see [`lower_priority`]), or inline right after the chain's batch
//! (in-memory chains, the simulator, which must stay deterministic). This is how Bitcoin Core keeps its
//! `-txindex`, from its validation interface's `BlockConnected`: a block is connected,
//! announced and relayed without waiting for the entries of its thousand transfers,
//! which are about half of its write (docs/PERFORMANCE-LOG.md).
//!
//! Blocks are indexed and unindexed in the order the chain connected and disconnected
//! them, each batch with the `meta` key `indexed` (the hash of the block the indexes
//! now reach), so the indexes always hold exactly the transactions of the chain from
//! genesis to `indexed`, a chain that was the best chain when that block was
//! connected. The chain knows how many jobs it handed over; reads that need the
//! indexes ([`Chain::tx_location`], [`Chain::history`]) first have the writer write
//! what it holds and wait until it has done them all (Core's
//! `BlockUntilSyncedToCurrentChain`), so a caller never sees the lag, only, at worst,
//! the few milliseconds of the entries' write.
//!
//! The writer holds jobs back until no job has come for [`QUIET`] (see
//! [`run_writer`]). Ten nodes on one 2-core machine, as the bench and a local testnet
//! run them, share the cores while a block crosses them; entries written then delay
//! the block at the nodes still working on it, even from a `SCHED_IDLE` thread (it
//! still ran 3.5 to 10.8 ms inside the slowest windows, docs/PERFORMANCE-LOG.md).
//!
//! The writer also makes the chain's writes durable once a second (an fsync of the
//! WAL, [`IndexJob::SyncWal`]), so that no block waits for the disk with the chain lock
//! held; it syncs everything written before the request, when it next writes.
//!
//! After a crash `indexed` may be behind the tip, or on a branch the chain has left.
//! Opening the chain unindexes back to the fork point and indexes forward to the tip
//! ([`Chain::catch_up_indexes`]) before anything else reads or writes them. A database
//! from before this writer has no `indexed` key: its indexes were written with each
//! block, so they reach its tip.

use super::{Chain, ChainError};
use crate::failstop::{fail_stop, lock_or_stop};
use crate::store::{
    addr_entries_with_txids, encode_addr_entries, meta_key, Batch, Column, KvStore, TxLocationRecord,
};
use cairn_core::block::Block;
use cairn_core::{BlockHash, Txid};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Jobs queued for the writer thread before the chain waits for it; with the jobs the
/// writer holds back (at most [`JOBS_PER_BATCH`]), about 32 blocks of index entries in
/// memory at most (a few MB with full blocks), while a sync runs ahead of the writer.
const QUEUE_JOBS: usize = 16;
/// Jobs written in one batch at most; the writer writes as soon as it holds this many.
const JOBS_PER_BATCH: usize = 16;
/// How long no job must have come before the writer writes what it holds back. A block
/// takes about 5 to 35 ms to cross ten nodes that share a 2-core machine
/// (docs/PERFORMANCE.md), so its entries are written once it has passed, not while
/// the other nodes on the machine still work on it.
const QUIET: Duration = Duration::from_millis(200);
/// The longest a job is held back while jobs keep coming (a sync, a busy network).
const MAX_HOLD: Duration = Duration::from_secs(1);
/// How long a read waits for the writer before it answers with an error. The writer
/// falls this far behind only if its thread is gone (a panic) or the disk hangs.
const WAIT_LIMIT: Duration = Duration::from_secs(60);

/// One block to index or unindex.
pub(super) enum IndexJob {
    /// `block` was connected at `height` as `hash`; `txids` when already computed.
    Connect { hash: BlockHash, height: u64, block: Arc<Block>, txids: Option<Vec<Txid>> },
    /// `block` at `height` was disconnected; the tip went back to `prev`.
    Disconnect { prev: BlockHash, height: u64, block: Arc<Block> },
    /// Make every write so far durable (an fsync of the WAL, [`KvStore::sync`]): the
    /// chain's periodic sync, done here so that the chain lock, and the block that
    /// holds it, do not wait for the disk.
    SyncWal,
    /// Write everything held back now: a reader waits for it ([`IndexWriter::wait`]).
    /// Not counted as a job.
    Flush,
}

impl IndexJob {
    /// Adds the job's writes (and the `indexed` marker) to `b`; true for
    /// [`IndexJob::SyncWal`], which has none.
    fn write_into(self, b: &mut Batch, address_index: bool) -> bool {
        match self {
            IndexJob::SyncWal => return true,
            IndexJob::Flush => {}
            IndexJob::Connect { hash, height, block, txids } => {
                let txids = txids.unwrap_or_else(|| block.txids());
                for (i, txid) in txids.iter().enumerate() {
                    let loc = TxLocationRecord { block_hash: hash, height, index: i as u32 };
                    b.put(Column::TxIndex, txid.0, loc.encode());
                }
                if address_index {
                    for (k, v) in addr_entries_with_txids(&block, &txids, height) {
                        b.put(Column::AddrIndex, k, encode_addr_entries(&v));
                    }
                }
                b.put(Column::Meta, meta_key::INDEXED, hash.0);
            }
            IndexJob::Disconnect { prev, height, block } => {
                let txids = block.txids();
                for txid in &txids {
                    b.delete(Column::TxIndex, txid.0);
                }
                if address_index {
                    for (k, _) in addr_entries_with_txids(&block, &txids, height) {
                        b.delete(Column::AddrIndex, k);
                    }
                }
                b.put(Column::Meta, meta_key::INDEXED, prev.0);
            }
        }
        false
    }
}

/// How many jobs the writer thread has written, for readers to wait on.
#[derive(Default)]
struct Progress {
    done: Mutex<u64>,
    written: Condvar,
}

/// Writes the index entries of the blocks the chain connects and disconnects, in
/// order: inline, or on a thread of its own once [`IndexWriter::start_thread`] ran.
pub(super) struct IndexWriter {
    store: Arc<dyn KvStore>,
    address_index: bool,
    queue: Option<SyncSender<IndexJob>>,
    thread: Option<JoinHandle<()>>,
    progress: Arc<Progress>,
    /// Jobs handed to the thread so far.
    sent: u64,
}

impl IndexWriter {
    /// A writer that writes each job as it is handed over.
    pub(super) fn inline(store: Arc<dyn KvStore>, address_index: bool) -> IndexWriter {
        IndexWriter { store, address_index, queue: None, thread: None, progress: Arc::default(), sent: 0 }
    }

    /// From now on, jobs go to a thread of their own (`SCHED_IDLE`).
    pub(super) fn start_thread(&mut self) -> Result<(), ChainError> {
        if self.queue.is_some() {
            return Ok(());
        }
        let (tx, rx) = sync_channel(QUEUE_JOBS);
        let (store, progress, address_index) =
            (self.store.clone(), self.progress.clone(), self.address_index);
        let thread = std::thread::Builder::new()
            .name("index-writer".into())
            .spawn(move || run_writer(&*store, address_index, rx, &progress))
            .map_err(|e| ChainError::Db(format!("starting the index writer: {e}")))?;
        self.queue = Some(tx);
        self.thread = Some(thread);
        Ok(())
    }

    /// Hands over one job. A store that refuses the write stops the node, as the
    /// chain's own commits do (`Chain::commit`).
    pub(super) fn submit(&mut self, job: IndexJob) {
        match &self.queue {
            Some(queue) => {
                if queue.send(job).is_err() {
                    fail_stop(format_args!("the index writer thread is gone"));
                }
                self.sent += 1;
            }
            None => {
                let mut b = Batch::new();
                let sync = job.write_into(&mut b, self.address_index);
                write_and_sync(&*self.store, b, sync);
            }
        }
    }

    /// Jobs handed over and not written yet.
    pub(super) fn backlog(&self) -> u64 {
        self.sent.saturating_sub(*lock_or_stop(&self.progress.done, "index progress"))
    }

    /// Returns once every job handed over is written (at once when inline): has the
    /// writer write what it holds back, then waits for it.
    pub(super) fn wait(&self) -> Result<(), ChainError> {
        if self.backlog() == 0 {
            return Ok(());
        }
        if let Some(queue) = &self.queue {
            if queue.send(IndexJob::Flush).is_err() {
                fail_stop(format_args!("the index writer thread is gone"));
            }
        }
        let deadline = Instant::now() + WAIT_LIMIT;
        let mut done = lock_or_stop(&self.progress.done, "index progress");
        while *done < self.sent {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(ChainError::Db(format!(
                    "the index writer is {} blocks behind after {} s",
                    self.sent - *done,
                    WAIT_LIMIT.as_secs()
                )));
            }
            done = match self.progress.written.wait_timeout(done, left) {
                Ok((d, _)) => d,
                Err(_) => fail_stop(format_args!("index progress lock poisoned")),
            };
        }
        Ok(())
    }

    /// Writes what is queued and stops the thread (the chain is closing).
    pub(super) fn finish(&mut self) {
        self.queue = None;
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::error!("the index writer thread panicked");
            }
        }
    }
}

impl Drop for IndexWriter {
    fn drop(&mut self) {
        self.finish();
    }
}

/// The writer thread. It holds jobs back until no job has come for [`QUIET`], and
/// writes them in order in one batch then, or earlier: when it holds
/// [`JOBS_PER_BATCH`], when the first has waited [`MAX_HOLD`], when a reader asks
/// ([`IndexJob::Flush`]) or when the chain closes. A [`IndexJob::SyncWal`] is held back
/// the same way: the block whose commit asked for it is relayed before the disk is
/// touched.
fn run_writer(store: &dyn KvStore, address_index: bool, rx: Receiver<IndexJob>, progress: &Progress) {
    lower_priority();
    let mut held = Held::default();
    loop {
        let job = match held.due() {
            None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
            Some(due) => rx.recv_timeout(due.saturating_duration_since(Instant::now())),
        };
        match job {
            Ok(IndexJob::Flush) => held.write(store, address_index, progress),
            Ok(job) => {
                held.push(job);
                if held.jobs.len() >= JOBS_PER_BATCH {
                    held.write(store, address_index, progress);
                }
            }
            Err(RecvTimeoutError::Timeout) => held.write(store, address_index, progress),
            Err(RecvTimeoutError::Disconnected) => {
                held.write(store, address_index, progress);
                return;
            }
        }
    }
}

/// The jobs the writer thread holds back.
#[derive(Default)]
struct Held {
    jobs: Vec<IndexJob>,
    /// When the first job held came, and the last.
    first: Option<Instant>,
    last: Option<Instant>,
}

impl Held {
    fn push(&mut self, job: IndexJob) {
        let now = Instant::now();
        self.first.get_or_insert(now);
        self.last = Some(now);
        self.jobs.push(job);
    }

    /// When the jobs held must be written, if any are.
    fn due(&self) -> Option<Instant> {
        Some((self.last? + QUIET).min(self.first? + MAX_HOLD))
    }

    /// Writes every job held, in order, in one batch (then the WAL sync one of them
    /// asked for), and counts them done.
    fn write(&mut self, store: &dyn KvStore, address_index: bool, progress: &Progress) {
        if self.jobs.is_empty() {
            return;
        }
        let jobs = self.jobs.len();
        let mut b = Batch::new();
        let mut sync = false;
        for job in self.jobs.drain(..) {
            sync |= job.write_into(&mut b, address_index);
        }
        (self.first, self.last) = (None, None);
        // In key order, each insert into RocksDB's memtable (a skip list) starts from
        // where the one before ended instead of searching from the top.
        b.sort_by_key();
        write_and_sync(store, b, sync);
        *lock_or_stop(&progress.done, "index progress") += jobs as u64;
        progress.written.notify_all();
    }
}

/// Writes `b` (when not empty), then syncs the WAL if asked. A store that refuses
/// either stops the node: after a failed fsync the kernel may have dropped the dirty
/// pages, so what is on disk is unknown and a retry would report success falsely.
fn write_and_sync(store: &dyn KvStore, b: Batch, sync: bool) {
    if !b.is_empty() {
        if let Err(e) = store.write(b) {
            fail_stop(format_args!("the chain store refused an index write: {e}"));
        }
    }
    if sync {
        if let Err(e) = store.sync() {
            fail_stop(format_args!("syncing the chain store failed: {e}"));
        }
    }
}

/// Puts the calling thread in Linux's `SCHED_IDLE` class: it runs when no other thread
/// of the machine wants the core, and any other thread that wakes up takes the core from
/// it at once (at nice 19 it still ran for 21 % of the CPU inside the windows of blocks
/// whose transfers every node held, docs/PERFORMANCE-LOG.md). It still gets a small share
/// under full load, and a sync that outruns it waits on the bounded queue, so it does
/// not starve. Failing to is harmless: the writer then runs at normal priority.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    {
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: `param` is a valid sched_param that outlives the call; pid 0 is the
        // calling thread, whose scheduling class alone changes.
        #[allow(unsafe_code)]
        let r = unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) };
        if r != 0 {
            tracing::debug!(error = %std::io::Error::last_os_error(), "could not lower the index writer's priority");
        }
    }
}

impl Chain {
    /// Brings the indexes from the block in `meta`'s `indexed` key to the tip:
    /// unindexing back to the fork point, then indexing forward (see the module doc).
    /// Runs on open, before the writer thread starts.
    pub(super) fn catch_up_indexes(&mut self) -> Result<(), ChainError> {
        let tip = self.index.tip();
        let tip_hash = self.index.e(tip).hash;
        let Some(marker) = self.store.get(Column::Meta, meta_key::INDEXED)? else {
            // Written by a version that indexed each block in its own batch.
            let mut b = Batch::new();
            b.put(Column::Meta, meta_key::INDEXED, tip_hash.0);
            self.store.write(b)?;
            return Ok(());
        };
        let marker = crate::store::hash_from_bytes(&marker, "indexed block")?;
        let from = self.index.get(&marker).ok_or_else(|| {
            ChainError::Corrupt(format!("the indexes reach {marker}, which is not in the index"))
        })?;
        if from == tip {
            return Ok(());
        }
        let fork = self.index.fork_point(from, tip);
        // Unindex the branch the indexes are on back to the fork point, tip first; then
        // index the best chain from there.
        let undo = self.index.path_after(fork, from);
        let redo = self.index.path_after(fork, tip);
        for &i in undo.iter().rev() {
            let e = self.index.e(i);
            let (hash, height, prev) = (e.hash, e.height, self.index.e(e.prev).hash);
            let block = Arc::new(self.read_block(&hash)?);
            self.indexes.submit(IndexJob::Disconnect { prev, height, block });
        }
        for &i in &redo {
            let (hash, height) = (self.index.e(i).hash, self.index.e(i).height);
            let block = Arc::new(self.read_block(&hash)?);
            self.indexes.submit(IndexJob::Connect { hash, height, block, txids: None });
        }
        self.indexes.wait()?;
        tracing::info!(unindexed = undo.len(), indexed = redo.len(), "indexes caught up with the tip");
        Ok(())
    }

    /// Index jobs handed over and not written yet (0 when inline).
    pub fn index_backlog(&self) -> u64 {
        self.indexes.backlog()
    }
}
