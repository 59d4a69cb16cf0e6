//! The miner: block templates and the nonce search.
//!
//! This module owns building a block template from the tip and the mempool
//! ([`block_template`]), the proof-of-work search on dedicated OS threads, and the
//! hash-rate figure. A coordinator thread builds a template, hands it to the worker
//! threads as a numbered job, and replaces the job as soon as the tip changes (it
//! watches [`NodeEvent::NewTip`]), when new transfers arrived (at most every
//! [`REFRESH_MS`]), or when the template gets old. A found block goes through
//! [`Node::submit_block`] like any other block.
//!
//! The search hashes only what changes: the header is 124 bytes, SHA-256 processes it as
//! two 64-byte blocks plus a padding block, and the nonce sits in bytes 116..124 of the
//! second block. The state after the first block (the midstate) is computed once per
//! job; each nonce then costs two compressions instead of three.

use crate::failstop::lock_or_stop;
use crate::node::{Node, NodeEvent, Origin};
use cairn_core::assemble::assemble_block;
use cairn_core::block::{Block, BlockHeader, HEADER_LEN, HEADER_NONCE_OFFSET};
use cairn_core::{Address, Amount};
use sha2::digest::generic_array::GenericArray;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::sync::broadcast::error::TryRecvError;

/// Shortest interval between template rebuilds for new transfers.
pub const REFRESH_MS: u64 = 500;
/// A template is rebuilt at least this often (fresh timestamp, new transfers).
const MAX_TEMPLATE_AGE: Duration = Duration::from_secs(10);
/// Nonces a worker tries between looks at the job number.
const BATCH: u64 = 4096;

const SHA256_IV: [u32; 8] =
    [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19];

/// A header prepared for hashing with a midstate.
#[derive(Clone)]
pub struct HeaderHasher {
    midstate: [u32; 8],
    /// Bytes 64..128 of the padded message: header bytes 64..124, then 0x80, then zeros.
    tail: [u8; 64],
    /// The last padded block: zeros and the bit length.
    last: [u8; 64],
}

impl HeaderHasher {
    pub fn new(header: &BlockHeader) -> Self {
        let bytes = header.to_bytes();
        let mut midstate = SHA256_IV;
        sha2::compress256(&mut midstate, &[*GenericArray::from_slice(&bytes[..64])]);
        let mut tail = [0u8; 64];
        tail[..HEADER_LEN - 64].copy_from_slice(&bytes[64..]);
        tail[HEADER_LEN - 64] = 0x80;
        let mut last = [0u8; 64];
        last[56..].copy_from_slice(&((HEADER_LEN as u64) * 8).to_be_bytes());
        HeaderHasher { midstate, tail, last }
    }

    /// SHA-256 of the header with `nonce`, equal to `BlockHeader::hash`.
    #[inline]
    pub fn hash(&mut self, nonce: u64) -> [u8; 32] {
        Self::to_bytes(self.state(nonce))
    }

    /// The hash of the header with `nonce` as SHA-256's eight state words (the hash is
    /// their big-endian bytes, so words 0 and 1 are its leading 8 bytes).
    #[inline]
    pub fn state(&mut self, nonce: u64) -> [u32; 8] {
        let off = HEADER_NONCE_OFFSET - 64;
        self.tail[off..off + 8].copy_from_slice(&nonce.to_le_bytes());
        let mut state = self.midstate;
        sha2::compress256(
            &mut state,
            &[*GenericArray::from_slice(&self.tail), *GenericArray::from_slice(&self.last)],
        );
        state
    }

    /// The hash bytes of [`HeaderHasher::state`].
    #[inline]
    pub fn to_bytes(state: [u32; 8]) -> [u8; 32] {
        let mut out = [0u8; 32];
        for (chunk, word) in out.chunks_exact_mut(4).zip(state) {
            chunk.copy_from_slice(&word.to_be_bytes());
        }
        out
    }
}

/// Bytes of transfers a block template takes: the block limit less room for the
/// header, the list length, the coinbase and a margin.
pub fn transfer_budget(params: &cairn_core::ChainParams) -> usize {
    (params.max_block_bytes as usize).saturating_sub(512)
}

/// A block template on the current tip: coinbase to `miner`, transfers from the mempool
/// by fee rate within the block size limit, timestamp max(now, parent MTP + 1).
pub fn block_template(node: &Node, miner: Address) -> Option<Block> {
    let chain = node.chain();
    let params = *chain.params();
    let parent = chain.tip_parent_info();
    let budget = transfer_budget(&params);
    // The fees may add up to what the coinbase can still carry on top of the reward, and
    // what the miner's own balance can still take: the coinbase credits it with both.
    // (A miner that cannot read its balance assumes none; the block is checked anyway.)
    let miner_balance = chain.account(&miner).map_or(Amount::ZERO, |a| a.balance);
    let fee_room = Amount::MAX.saturating_sub(params.block_reward).saturating_sub(miner_balance);
    let transfers = node.mempool().select(&*chain, budget, fee_room);
    drop(chain);
    let block = assemble_block(&params, &parent, crate::now_ms(), miner, &transfers)?;
    debug_assert!(block.encoded_len() <= params.max_block_bytes as usize);
    Some(block)
}

pub struct MinerConfig {
    pub address: Address,
    pub threads: usize,
}

struct Job {
    id: u64,
    header: BlockHeader,
}

struct Shared {
    /// Number of the current job; workers drop their job when it changes.
    job_id: AtomicU64,
    job: Mutex<Option<Arc<Job>>>,
    hashes: AtomicU64,
    stop: AtomicBool,
}

/// A running miner; dropping it (or [`MinerHandle::stop`]) stops every thread.
pub struct MinerHandle {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

impl MinerHandle {
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.shared.job_id.fetch_add(1, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for MinerHandle {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Starts the coordinator and `config.threads` search threads.
pub fn start(node: Arc<Node>, config: MinerConfig) -> std::io::Result<MinerHandle> {
    let shared = Arc::new(Shared {
        job_id: AtomicU64::new(0),
        job: Mutex::new(None),
        hashes: AtomicU64::new(0),
        stop: AtomicBool::new(false),
    });
    let threads_n = config.threads.max(1);
    let (found_tx, found_rx) = mpsc::channel::<(u64, BlockHeader)>();
    let mut threads = Vec::new();
    for i in 0..threads_n {
        let shared = shared.clone();
        let found = found_tx.clone();
        threads.push(
            std::thread::Builder::new()
                .name(format!("miner-{i}"))
                .spawn(move || worker(shared, i as u64, threads_n as u64, found))?,
        );
    }
    let s = shared.clone();
    threads.push(
        std::thread::Builder::new()
            .name("miner-coord".into())
            .spawn(move || coordinator(node, config.address, s, found_rx))?,
    );
    tracing::info!(threads = threads_n, miner = %config.address, "miner started");
    Ok(MinerHandle { shared, threads })
}

fn worker(shared: Arc<Shared>, index: u64, stride: u64, found: mpsc::Sender<(u64, BlockHeader)>) {
    let mut current: Option<(Arc<Job>, HeaderHasher, u64)> = None;
    loop {
        if shared.stop.load(Ordering::Relaxed) {
            return;
        }
        let id = shared.job_id.load(Ordering::Acquire);
        if current.as_ref().map(|(j, _, _)| j.id) != Some(id) {
            let job = lock_or_stop(&shared.job, "miner job").clone();
            match job {
                Some(job) if job.id == id => {
                    let hasher = HeaderHasher::new(&job.header);
                    current = Some((job, hasher, index));
                }
                _ => {
                    // No job yet (or being replaced): wait briefly.
                    std::thread::park_timeout(Duration::from_millis(20));
                    continue;
                }
            }
        }
        let Some((job, hasher, nonce)) = current.as_mut() else { continue };
        let target = job.header.target.0;
        // A hash at or below the target has its leading 8 bytes at or below the
        // target's: compare those as one integer, and the full 32 bytes only then.
        let mut lead = [0u8; 8];
        lead.copy_from_slice(&target[..8]);
        let target_lead = u64::from_be_bytes(lead);
        let mut n = *nonce;
        let mut hit = None;
        for _ in 0..BATCH {
            let s = hasher.state(n);
            if (u64::from(s[0]) << 32 | u64::from(s[1])) <= target_lead && HeaderHasher::to_bytes(s) <= target
            {
                hit = Some(n);
                break;
            }
            n = n.wrapping_add(stride);
        }
        shared.hashes.fetch_add(BATCH, Ordering::Relaxed);
        *nonce = n.wrapping_add(stride);
        if let Some(n) = hit {
            let mut header = job.header;
            header.nonce = n;
            let _ = found.send((job.id, header));
            // Wait for the next job rather than finding more blocks on this one.
            std::thread::park_timeout(Duration::from_millis(50));
            current = None;
            while shared.job_id.load(Ordering::Acquire) == id && !shared.stop.load(Ordering::Relaxed) {
                std::thread::park_timeout(Duration::from_millis(5));
            }
        }
    }
}

fn coordinator(
    node: Arc<Node>,
    miner: Address,
    shared: Arc<Shared>,
    found: mpsc::Receiver<(u64, BlockHeader)>,
) {
    let mut events = node.subscribe();
    let mut block: Option<Block> = None;
    let mut built = Instant::now();
    let mut need_new = true;
    let mut new_transfers = false;
    let mut rate_window = (Instant::now(), 0u64);
    let mut last_log = Instant::now();
    while !shared.stop.load(Ordering::Relaxed) {
        loop {
            match events.try_recv() {
                Ok(NodeEvent::NewTip { .. }) => need_new = true,
                Ok(NodeEvent::NewTransfer { .. }) => new_transfers = true,
                Ok(NodeEvent::BlockPrechecked { .. }) => {}
                Err(TryRecvError::Lagged(_)) => need_new = true,
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Closed) => return,
            }
        }
        if new_transfers && built.elapsed() >= Duration::from_millis(REFRESH_MS) {
            need_new = true;
        }
        if built.elapsed() >= MAX_TEMPLATE_AGE {
            need_new = true;
        }
        if need_new {
            need_new = false;
            new_transfers = false;
            built = Instant::now();
            match block_template(&node, miner) {
                Some(b) => {
                    let id = shared.job_id.load(Ordering::SeqCst) + 1;
                    *lock_or_stop(&shared.job, "miner job") = Some(Arc::new(Job { id, header: b.header }));
                    shared.job_id.store(id, Ordering::SeqCst);
                    tracing::debug!(
                        height = b.header.height,
                        txs = b.transactions.len() - 1,
                        "new block template"
                    );
                    block = Some(b);
                }
                None => tracing::error!("could not build a block template (fees overflow)"),
            }
        }
        match found.recv_timeout(Duration::from_millis(25)) {
            Ok((job_id, header)) => {
                if job_id != shared.job_id.load(Ordering::SeqCst) {
                    continue;
                }
                let Some(mut b) = block.take() else { continue };
                b.header = header;
                let hash = b.hash();
                let height = b.header.height;
                let txs = b.transactions.len() - 1;
                // Stop the workers on this job at once.
                shared.job_id.fetch_add(1, Ordering::SeqCst);
                need_new = true;
                match node.submit_block(b, Origin::Local, crate::now_ms()) {
                    Ok((r, _)) => {
                        if matches!(
                            r.acceptance,
                            crate::chain::Acceptance::Connected | crate::chain::Acceptance::SideBranch
                        ) {
                            crate::metrics::get().miner_blocks_mined.inc();
                        }
                        tracing::info!(%hash, height, txs, acceptance = ?r.acceptance, "mined block")
                    }
                    Err(e) => tracing::error!(error = %e, "could not store mined block"),
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        }
        let elapsed = rate_window.0.elapsed();
        if elapsed >= Duration::from_secs(2) {
            let total = shared.hashes.load(Ordering::Relaxed);
            let rate = ((total - rate_window.1) as f64 / elapsed.as_secs_f64()) as u64;
            node.set_hashrate(rate);
            rate_window = (Instant::now(), total);
            if last_log.elapsed() >= Duration::from_secs(30) {
                last_log = Instant::now();
                tracing::info!(hashrate = rate, "miner hash rate (H/s)");
            }
        }
    }
    node.set_hashrate(0);
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_core::{BlockHash, Target};

    #[test]
    fn midstate_hash_equals_header_hash() {
        let mut header = BlockHeader {
            version: 1,
            height: 42,
            prev: BlockHash([3; 32]),
            merkle_root: [7; 32],
            timestamp_ms: 1_767_225_600_123,
            target: Target([0x0f; 32]),
            nonce: 0,
        };
        let mut h = HeaderHasher::new(&header);
        for nonce in [0u64, 1, 255, 1 << 40, u64::MAX] {
            header.nonce = nonce;
            assert_eq!(h.hash(nonce), header.hash().0, "nonce {nonce}");
        }
    }
}
