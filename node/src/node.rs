//! The node: one place that owns the chain and the mempool.
//!
//! Blocks and transfers from the miner, from peers and from RPC all enter through
//! [`Node::submit_block`] and [`Node::submit_transfer`], which keep the mempool in step
//! with the chain, return the [`NodeEvent`]s they caused (so the P2P protocol relays in
//! the same step) and publish them for RPC subscribers (new heads), the miner, and the
//! P2P layer (events it did not cause itself).
//!
//! A transfer's signature is checked in one place: [`verify_many`] (or
//! [`verify_on_cores`], the same on the rayon pool), the only maker of a
//! [`VerifiedTransfer`], which is what [`Node::submit_transfer`] takes. RPC and the P2P
//! readers verify before they hand a transfer on, so no lock is held while signatures
//! are checked, and the P2P protocol thread checks none itself.

use crate::chain::{AcceptResult, Acceptance, BlockChecker, Chain, ChainError, CheckedBlock, TipInfo};
use crate::failstop::{lock_or_stop, try_lock_or_stop};
use crate::mempool::{Mempool, MempoolError};
use cairn_core::block::{Block, BlockHeader};
use cairn_core::genesis::Genesis;
use cairn_core::transaction::TxError;
use cairn_core::validation::check_header_contextual;
use cairn_core::{Address, SignedTransfer, Txid};
use rayon::prelude::*;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use tokio::sync::broadcast;

/// A fault to inject on purpose, for the fail-stop tests only: the `cairn-node` binary
/// reads it from the environment variable [`FaultInjection::ENV`] at startup. With it set,
/// a transfer handed to [`Node::submit_transfer`] (from `tx_submit` or a peer) panics
/// while holding the chain lock (`chain`) or the chain and mempool locks (`mempool`),
/// so the binary stops at the first one. Never set it on a real node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultInjection {
    PanicWhileChainLocked,
    PanicWhileMempoolLocked,
}

impl FaultInjection {
    pub const ENV: &'static str = "CAIRN_FAULT_PANIC_WHILE_LOCKED";

    /// The fault [`FaultInjection::ENV`] asks for: `None` when unset or empty.
    pub fn from_env() -> Result<Option<FaultInjection>, String> {
        match std::env::var(Self::ENV).as_deref() {
            Err(_) | Ok("") => Ok(None),
            Ok("chain") => Ok(Some(FaultInjection::PanicWhileChainLocked)),
            Ok("mempool") => Ok(Some(FaultInjection::PanicWhileMempoolLocked)),
            Ok(other) => Err(format!("{} must be `chain` or `mempool`, not `{other}`", Self::ENV)),
        }
    }
}

/// Where a block or transfer came from (for logs, and so relay skips the sender).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Origin {
    Local,
    Rpc,
    Peer(u64),
}

/// Something that happened that others may want to relay or report.
#[derive(Clone, Debug)]
pub enum NodeEvent {
    /// The best chain changed: the headers of the `connected` blocks, parent-first,
    /// after `disconnected` blocks were removed.
    NewTip { tip: TipInfo, connected: Vec<BlockHeader>, disconnected: u64, origin: Origin },
    /// A transfer entered the mempool.
    NewTransfer { txid: Txid, origin: Origin },
    /// A block submitted here (the local miner's, or one given over RPC) passed every
    /// check but its state transition (proof of work, its place on the tip, structure,
    /// signatures) and is about to be connected: the P2P layer pushes it to its
    /// high-bandwidth peers now, while it connects, as BIP152 allows and as Bitcoin
    /// Core does for its own blocks. `NewTip` follows if it connects.
    BlockPrechecked { block: Arc<Block>, txids: Arc<[Txid]> },
}

pub struct Node {
    chain: Mutex<Chain>,
    mempool: Mutex<Mempool>,
    events: broadcast::Sender<NodeEvent>,
    genesis: Genesis,
    /// The local miner's recent hashes per second (0 when not mining).
    hashrate: AtomicU64,
    /// Set only by the fail-stop tests (see [`FaultInjection`]).
    fault: OnceLock<FaultInjection>,
    /// Set only by the network simulator (see [`Node::share_blocks`]).
    block_share: OnceLock<BlockShare>,
    /// The chain's signature cache (a handle on the same set), asked without the
    /// chain lock.
    sig_cache: crate::chain::sigcache::SigCache,
}

/// Maps a block to the one copy of it that simulated nodes share ([`Node::share_blocks`]).
pub type BlockShare = Arc<dyn Fn(Arc<Block>) -> Arc<Block> + Send + Sync>;

/// A transfer whose signature this node has checked ([`SignedTransfer::verify`] against
/// its chain id). Only [`verify_many`] makes one, so a transfer cannot reach the mempool
/// unchecked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VerifiedTransfer {
    tx: SignedTransfer,
    txid: Txid,
}

impl VerifiedTransfer {
    pub fn tx(&self) -> &SignedTransfer {
        &self.tx
    }

    pub fn txid(&self) -> Txid {
        self.txid
    }

    /// For unit tests of code that only carries transfers around.
    #[cfg(test)]
    pub(crate) fn unchecked_for_tests(tx: SignedTransfer) -> VerifiedTransfer {
        VerifiedTransfer { txid: tx.txid(), tx }
    }
}

/// A transfer whose signature check failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefusedTransfer {
    pub txid: Txid,
    pub error: TxError,
}

/// The outcome of checking one transfer's signature.
pub type Checked = Result<VerifiedTransfer, RefusedTransfer>;

/// Checks the signatures of `txs` against `chain_id`, in parallel on the rayon pool (the
/// calling thread joins in), in order. The one place a transfer's signature is checked.
///
/// Must not be called with the chain or mempool lock held: block import holds the chain
/// lock while it waits for rayon threads to check a block's signatures.
pub fn verify_many(txs: Vec<SignedTransfer>, chain_id: u32) -> Vec<Checked> {
    let known = vec![false; txs.len()];
    let txids: Vec<Txid> = txs.par_iter().map(SignedTransfer::txid).collect();
    verify_many_known(txs, txids, known, chain_id)
}

/// Transfers checked together on one rayon thread by [`verify_many`] and
/// [`verify_many_known`] ([`crate::keycache::verify_all`]: one field inversion for the
/// batch instead of one per signature).
const TRANSFERS_PER_BATCH: usize = 32;

/// [`verify_many`], except that a transfer for which `known` is true (the signature
/// cache vouches that these very bytes, by txid, passed [`SignedTransfer::verify`] on
/// this node) is taken as verified without checking it again. `txids[i]` is
/// `txs[i].txid()`, already computed to ask the cache, so it is not hashed again. In
/// order.
pub(crate) fn verify_many_known(
    txs: Vec<SignedTransfer>,
    txids: Vec<Txid>,
    known: Vec<bool>,
    chain_id: u32,
) -> Vec<Checked> {
    debug_assert!(txs.len() == txids.len() && txs.len() == known.len());
    let todo: Vec<usize> = (0..txs.len()).filter(|&i| !known[i]).collect();
    // Batches of up to 32, but enough of them for every core when there are few.
    let per_batch = todo.len().div_ceil(rayon::current_num_threads().max(1)).clamp(1, TRANSFERS_PER_BATCH);
    let verdicts: Vec<Result<(), TxError>> = todo
        .par_chunks(per_batch)
        .flat_map_iter(|batch| {
            let batch: Vec<&SignedTransfer> = batch.iter().map(|&i| &txs[i]).collect();
            crate::keycache::verify_all(&batch, chain_id)
        })
        .collect();
    let mut verdicts = todo.into_iter().zip(verdicts).peekable();
    txs.into_iter()
        .zip(txids)
        .enumerate()
        .map(|(i, (tx, txid))| match verdicts.next_if(|(j, _)| *j == i) {
            None => Ok(VerifiedTransfer { tx, txid }),
            Some((_, Ok(()))) => Ok(VerifiedTransfer { tx, txid }),
            Some((_, Err(error))) => Err(RefusedTransfer { txid, error }),
        })
        .collect()
}

/// [`verify_many`] of one transfer, on the calling thread (the sender's key decoded once
/// for all its transfers, [`crate::keycache`]).
pub fn verify(tx: SignedTransfer, chain_id: u32) -> Checked {
    let txid = tx.txid();
    verify_hashed(tx, txid, chain_id)
}

/// [`verify`] of a transfer whose txid is `txid`.
fn verify_hashed(tx: SignedTransfer, txid: Txid, chain_id: u32) -> Checked {
    match crate::keycache::verify(&tx, chain_id) {
        Ok(()) => Ok(VerifiedTransfer { tx, txid }),
        Err(error) => Err(RefusedTransfer { txid, error }),
    }
}

/// [`verify_many`] from async code: the checks run on the rayon pool, one thread per
/// core, while the caller's task waits. (Tokio's blocking pool would start a thread per
/// concurrent call and have them preempt each other: under 32 RPC clients that cost
/// ~100 us of CPU per `tx_submit`, see docs/PERFORMANCE-LOG.md.) A panic in a check, which
/// the fuzz target `transfer` has not found, gives `None` where the library runs without
/// the binary's fail-stop panic hook (tests, the fuzz targets); in `cairn-node` the hook
/// ends the process first.
pub async fn verify_on_cores(txs: Vec<SignedTransfer>, chain_id: u32) -> Option<Vec<Checked>> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    rayon::spawn(move || {
        let checked = std::panic::catch_unwind(|| verify_many(txs, chain_id));
        let _ = tx.send(checked.ok());
    });
    rx.await.ok().flatten()
}

/// Checks a transfer's signature and admits it, for `tx_submit`: the check runs on the
/// rayon pool as in [`verify_on_cores`], and the same rayon thread then admits it with
/// [`Node::try_submit_transfer`] when the chain and mempool locks are free, so most
/// admissions take one hop off the async worker and back. When a lock is held (a block
/// import, another admission), the admission waits for it on tokio's blocking pool
/// instead, as before, never on a rayon thread. `None` if the check or the admission
/// panicked (see [`verify_on_cores`]).
pub async fn submit_on_cores(
    node: Arc<Node>,
    tx: SignedTransfer,
    origin: Origin,
) -> Option<Result<(Txid, NodeEvent), SubmitError>> {
    enum Attempt {
        Done(Result<(Txid, NodeEvent), SubmitError>),
        Busy(VerifiedTransfer),
    }
    let (send, recv) = tokio::sync::oneshot::channel();
    let chain_id = node.genesis.params.chain_id;
    let on_rayon = node.clone();
    rayon::spawn(move || {
        let attempt = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match verify(tx, chain_id) {
            Err(refused) => Attempt::Done(Err(SubmitError::Invalid(refused.error))),
            Ok(verified) => match on_rayon.try_submit_transfer(verified, origin, crate::now_ms()) {
                Some(done) => Attempt::Done(done),
                None => Attempt::Busy(verified),
            },
        }));
        let _ = send.send(attempt.ok());
    });
    match recv.await.ok().flatten()? {
        Attempt::Done(done) => Some(done),
        Attempt::Busy(verified) => {
            tokio::task::spawn_blocking(move || node.submit_transfer(verified, origin, crate::now_ms()))
                .await
                .ok()
        }
    }
}

/// Why a submitted transfer was not admitted.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error("invalid transfer: {0}")]
    Invalid(#[from] cairn_core::transaction::TxError),
    #[error(transparent)]
    Rejected(#[from] MempoolError),
    #[error("already known")]
    Duplicate,
}

impl Node {
    pub fn new(chain: Chain, mempool: Mempool, genesis: Genesis) -> Arc<Node> {
        let (events, _) = broadcast::channel(1024);
        let sig_cache = chain.sig_cache_handle();
        Arc::new(Node {
            sig_cache,
            chain: Mutex::new(chain),
            mempool: Mutex::new(mempool),
            events,
            genesis,
            hashrate: AtomicU64::new(0),
            fault: OnceLock::new(),
            block_share: OnceLock::new(),
        })
    }

    pub fn genesis(&self) -> &Genesis {
        &self.genesis
    }

    /// The chain's signature cache, without the chain lock: a compact block's transfers
    /// are looked up in it, and entered once the block checked out, while another
    /// block's connection holds the lock.
    pub(crate) fn sig_cache(&self) -> &crate::chain::sigcache::SigCache {
        &self.sig_cache
    }

    /// Arms a [`FaultInjection`] (tests of the fail-stop path only).
    pub fn inject_fault(&self, fault: FaultInjection) {
        let _ = self.fault.set(fault);
    }

    /// For the network simulator only: the decoded block the P2P protocol keeps (its
    /// compact-relay recent block, [`crate::p2p::ledger::Ledger::keep_block`]) is the
    /// one `share` returns, so that thousands of simulated nodes hold one copy of it. A
    /// real node never calls it and keeps the block it was given.
    pub fn share_blocks(&self, share: BlockShare) {
        let _ = self.block_share.set(share);
    }

    /// The copy of `block` to keep: `block` itself unless [`Node::share_blocks`] was
    /// called.
    pub fn keep_block(&self, block: Arc<Block>) -> Arc<Block> {
        match self.block_share.get() {
            Some(share) => share(block),
            None => block,
        }
    }

    /// Panics if `fault` is the armed one (see [`FaultInjection`]).
    fn maybe_fault(&self, fault: FaultInjection) {
        if self.fault.get() == Some(&fault) {
            panic!("fault injection ({}): {fault:?}", FaultInjection::ENV);
        }
    }

    /// Locks the chain. Hold it briefly: block import takes it too. A panic while
    /// holding the lock may have left the in-memory index mid-update, so a poisoned
    /// lock stops the node ([`crate::failstop::fail_stop`]).
    pub fn chain(&self) -> MutexGuard<'_, Chain> {
        lock_or_stop(&self.chain, "chain")
    }

    /// Locks the mempool; like [`Node::chain`], a poisoned lock stops the node.
    pub fn mempool(&self) -> MutexGuard<'_, Mempool> {
        lock_or_stop(&self.mempool, "mempool")
    }

    /// [`Node::chain`] without waiting: `None` while another thread holds the lock.
    pub fn try_chain(&self) -> Option<MutexGuard<'_, Chain>> {
        try_lock_or_stop(&self.chain, "chain")
    }

    /// [`Node::mempool`] without waiting: `None` while another thread holds the lock.
    pub fn try_mempool(&self) -> Option<MutexGuard<'_, Mempool>> {
        try_lock_or_stop(&self.mempool, "mempool")
    }

    pub fn subscribe(&self) -> broadcast::Receiver<NodeEvent> {
        self.events.subscribe()
    }

    pub fn set_hashrate(&self, hashes_per_second: u64) {
        self.hashrate.store(hashes_per_second, Ordering::Relaxed);
    }

    pub fn hashrate(&self) -> u64 {
        self.hashrate.load(Ordering::Relaxed)
    }

    /// Validates and stores a block, then brings the mempool in step with the new tip.
    /// Returns what the chain did, and the event it caused (also published).
    pub fn submit_block(
        &self,
        block: Block,
        origin: Origin,
        now_ms: u64,
    ) -> Result<(AcceptResult, Option<NodeEvent>), ChainError> {
        if matches!(origin, Origin::Peer(_)) || self.events.receiver_count() == 0 {
            return self.submit_with(origin, now_ms, |chain| chain.accept_block(block, now_ms));
        }
        // A block of our own: checked first, off the chain lock, so that a block on the
        // tip that passes goes out to the high-bandwidth peers while it connects.
        let checked = self.block_checker().check(block, &mut cairn_core::transaction::DecodedKeys::default());
        if let Some(txids) = checked.passed() {
            let on_tip = {
                let chain = self.chain();
                let parent = chain.tip_parent_info();
                check_header_contextual(&checked.block().header, &parent, chain.params(), now_ms).is_ok()
            };
            if on_tip {
                let _ = self
                    .events
                    .send(NodeEvent::BlockPrechecked { block: checked.shared(), txids: txids.into() });
            }
        }
        self.submit_checked_block(checked, origin, now_ms)
    }

    /// [`Node::submit_block`] of a block whose stateless checks (proof of work,
    /// structure, signatures) already ran off the chain lock ([`Node::block_checker`]):
    /// the same result, errors and events, with only the serial part (store, apply,
    /// commit) under the lock ([`Chain::accept_checked`]). The P2P readers check the
    /// blocks a sync asked for this way, so that the next blocks' checks run while this
    /// one commits.
    pub fn submit_checked_block(
        &self,
        block: CheckedBlock,
        origin: Origin,
        now_ms: u64,
    ) -> Result<(AcceptResult, Option<NodeEvent>), ChainError> {
        self.submit_with(origin, now_ms, |chain| chain.accept_checked(block, now_ms))
    }

    /// Checks blocks for [`Node::submit_checked_block`] without the chain lock.
    pub fn block_checker(&self) -> BlockChecker {
        self.chain().block_checker()
    }

    /// The block submissions: `accept` under the chain lock, then the mempool in step.
    fn submit_with(
        &self,
        origin: Origin,
        now_ms: u64,
        accept: impl FnOnce(&mut Chain) -> Result<AcceptResult, ChainError>,
    ) -> Result<(AcceptResult, Option<NodeEvent>), ChainError> {
        let mut chain = self.chain();
        // (Import time: from the chain lock taken to the mempool updated.)
        let started = std::time::Instant::now();
        let result = accept(&mut chain)?;
        let mut event = None;
        if let Some(change) = &result.tip_change {
            // The new tip is announced as soon as it is committed, before the mempool
            // catches up with it: with both locks held until it has, so no reader (RPC,
            // miner, relay) can see the new tip with the old pool, yet the
            // subscribers and peers hear of the block without waiting for the pool's
            // removals (a thousand entries for a full block).
            let mut mempool = self.mempool();
            let ev = NodeEvent::NewTip {
                tip: chain.tip(),
                connected: change.connected.iter().map(|b| b.header).collect(),
                disconnected: change.disconnected.len() as u64,
                origin,
            };
            let _ = self.events.send(ev.clone());
            event = Some(ev);
            if !change.disconnected.is_empty() {
                mempool.on_blocks_disconnected(&change.disconnected, &*chain, now_ms);
            }
            for (b, txids) in change.connected.iter().zip(&change.connected_txids) {
                mempool.on_block_connected(b, txids, &*chain);
            }
            mempool.expire(now_ms);
            drop(mempool);
            drop(chain);
        }
        crate::metrics::block_submitted(&result, started.elapsed());
        if let Acceptance::Invalid(e) = &result.acceptance {
            tracing::warn!(?origin, error = %e, "rejected invalid block");
        }
        Ok((result, event))
    }

    /// The nonce `address`'s next transfer must carry, counting its pending transfers.
    pub fn next_nonce(&self, address: &Address) -> Result<u64, ChainError> {
        let chain = self.chain();
        let state_nonce = chain.account(address)?.nonce;
        Ok(self.mempool().pending_nonce(address, state_nonce))
    }

    /// Admits a verified transfer to the mempool against the tip state. Returns its txid
    /// and the event it caused (also published).
    pub fn submit_transfer(
        &self,
        tx: VerifiedTransfer,
        origin: Origin,
        now_ms: u64,
    ) -> Result<(Txid, NodeEvent), SubmitError> {
        // Lock order everywhere: chain, then mempool. The chain lock keeps the tip state
        // from moving under the admission check; both are held only for map lookups.
        let chain = self.chain();
        self.maybe_fault(FaultInjection::PanicWhileChainLocked);
        let mempool = self.mempool();
        self.maybe_fault(FaultInjection::PanicWhileMempoolLocked);
        self.admit(chain, mempool, tx, origin, now_ms)
    }

    /// [`Node::submit_transfer`] if the chain and mempool locks are both free now,
    /// without waiting for either: `None` (nothing done) while another thread holds one.
    /// For threads that must not block on these locks: a rayon thread (block import
    /// holds the chain lock while it waits for rayon threads) or an async worker.
    pub fn try_submit_transfer(
        &self,
        tx: VerifiedTransfer,
        origin: Origin,
        now_ms: u64,
    ) -> Option<Result<(Txid, NodeEvent), SubmitError>> {
        let chain = self.try_chain()?;
        self.maybe_fault(FaultInjection::PanicWhileChainLocked);
        let mempool = self.try_mempool()?;
        self.maybe_fault(FaultInjection::PanicWhileMempoolLocked);
        Some(self.admit(chain, mempool, tx, origin, now_ms))
    }

    /// The admission of [`Node::submit_transfer`], with both locks taken.
    fn admit(
        &self,
        mut chain: MutexGuard<'_, Chain>,
        mut mempool: MutexGuard<'_, Mempool>,
        tx: VerifiedTransfer,
        origin: Origin,
        now_ms: u64,
    ) -> Result<(Txid, NodeEvent), SubmitError> {
        let admitted = mempool.add_verified(tx.tx, &*chain, now_ms);
        drop(mempool);
        crate::metrics::transfer_submitted(&admitted);
        if let Ok(txid) = admitted {
            // A block carrying it will not verify it again.
            chain.remember_verified(txid);
        }
        drop(chain);
        let txid = match admitted {
            Ok(txid) => txid,
            Err(MempoolError::Duplicate) => return Err(SubmitError::Duplicate),
            Err(e) => return Err(e.into()),
        };
        let event = NodeEvent::NewTransfer { txid, origin };
        let _ = self.events.send(event.clone());
        Ok((txid, event))
    }

    /// Checks a transfer's signature ([`verify`]) and submits it: for callers on a
    /// thread that may block, with no lock held.
    pub fn verify_and_submit(
        &self,
        tx: SignedTransfer,
        origin: Origin,
        now_ms: u64,
    ) -> Result<(Txid, NodeEvent), SubmitError> {
        match verify(tx, self.genesis.params.chain_id) {
            Ok(v) => self.submit_transfer(v, origin, now_ms),
            Err(refused) => Err(SubmitError::Invalid(refused.error)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mempool::MempoolConfig;
    use cairn_core::genesis::dev_keys;
    use cairn_core::transaction::{public_key_of, Transfer};
    use cairn_core::{Address, Amount};

    #[test]
    fn only_a_checked_signature_admits_a_transfer() {
        let g = Genesis::dev();
        let node =
            Node::new(Chain::open_in_memory(&g), Mempool::with_config(MempoolConfig::default()), g.clone());
        let k = &dev_keys()[0];
        let t = |nonce| {
            let from = public_key_of(k);
            Transfer {
                chain_id: g.params.chain_id,
                nonce,
                from,
                to: Address([7; 20]),
                amount: Amount(1),
                fee: Amount(5),
            }
            .sign(k)
            .unwrap()
        };
        let good = t(0);
        // One signature bit flipped: another txid, and the check fails.
        let mut forged = good;
        forged.signature[40] ^= 1;
        let checked = verify_many(vec![forged, good], g.params.chain_id);
        assert!(matches!(&checked[0], Err(r) if r.txid == forged.txid()));
        let verified = checked[1].clone().unwrap();
        assert_eq!(verified.txid(), good.txid());
        assert!(matches!(node.verify_and_submit(forged, Origin::Rpc, 0), Err(SubmitError::Invalid(_))));
        let (txid, event) = node.submit_transfer(verified, Origin::Rpc, 0).unwrap();
        assert!(matches!(event, NodeEvent::NewTransfer { txid: t, origin: Origin::Rpc } if t == txid));
        assert!(matches!(node.submit_transfer(verified, Origin::Rpc, 0), Err(SubmitError::Duplicate)));

        // The ledger's verify_many (compact blocks) checks what the signature cache does
        // not know, in order: the forgery is still refused, and a transfer the cache
        // vouches for comes back verified without another check. (The cache only ever
        // holds txids that passed; to show that no check runs, it is told of one that
        // would fail.)
        use crate::p2p::ledger::Ledger;
        let mut other = t(1);
        other.signature[40] ^= 1;
        node.chain().remember_verified(other.txid());
        let checked = Ledger::verify_many(&*node, vec![forged, other, good]);
        assert!(matches!(&checked[0], Err(r) if r.txid == forged.txid()));
        assert_eq!(checked[1].as_ref().unwrap().txid(), other.txid());
        assert_eq!(checked[2].as_ref().unwrap().txid(), good.txid());
        assert!(node.chain().was_verified(&other.txid()) && !node.chain().was_verified(&forged.txid()));
    }

    /// The batched checks of many transfers (a socket read's, a compact block's fetched
    /// ones) give what checking each alone gives, in order, whatever the batch sizes
    /// and wherever the known ones fall: valid ones, forged signatures, a key that is no
    /// point, another chain, a high-S twin, a malformed signature.
    #[test]
    fn verify_many_in_batches_agrees_with_one_by_one() {
        use k256::elliptic_curve::PrimeField;
        let g = Genesis::dev();
        let keys = dev_keys();
        let mut txs = Vec::new();
        for i in 0..150u64 {
            let k = &keys[(i % 5) as usize];
            let mut st = Transfer {
                chain_id: g.params.chain_id,
                nonce: i,
                from: public_key_of(k),
                to: Address([7; 20]),
                amount: Amount(1 + i),
                fee: Amount(5),
            }
            .sign(k)
            .unwrap();
            match i % 11 {
                3 => st.signature[40] ^= 1,
                5 => st.transfer.from = [0xff; 33],
                7 => st.transfer.chain_id ^= 1,
                8 => {
                    // The high-S twin: s -> n - s.
                    let sig = k256::ecdsa::Signature::from_slice(&st.signature).unwrap();
                    let (r, s) = sig.split_scalars();
                    let high = k256::ecdsa::Signature::from_scalars(r.to_repr(), (-*s).to_repr()).unwrap();
                    st.signature = high.to_bytes().into();
                }
                9 => st.signature = [0; 64],
                _ => {}
            }
            txs.push(st);
        }
        let one_by_one: Vec<Checked> = txs.iter().map(|tx| verify(*tx, g.params.chain_id)).collect();
        assert!(one_by_one.iter().filter(|c| c.is_err()).count() >= 60);
        for n in [0, 1, 2, 31, 32, 33, 65, 150] {
            assert_eq!(verify_many(txs[..n].to_vec(), g.params.chain_id), one_by_one[..n], "{n}");
        }
        // Every third one known (the signature cache's say): those come back verified
        // unchecked, the others as alone.
        let known: Vec<bool> = (0..txs.len()).map(|i| i % 3 == 0).collect();
        let txids = txs.iter().map(SignedTransfer::txid).collect();
        let checked = verify_many_known(txs.clone(), txids, known.clone(), g.params.chain_id);
        for (i, c) in checked.iter().enumerate() {
            if known[i] {
                assert_eq!(c.as_ref().map(VerifiedTransfer::txid), Ok(txs[i].txid()), "{i}");
            } else {
                assert_eq!(*c, one_by_one[i], "{i}");
            }
        }
    }

    /// `tx_submit`'s path: with a lock held elsewhere, `try_submit_transfer` does nothing
    /// rather than wait, and `submit_on_cores` admits once the lock is free, without
    /// keeping a rayon thread waiting meanwhile (block import needs them all while it
    /// holds the chain lock).
    #[test]
    fn a_held_lock_never_blocks_the_rayon_pool() {
        let g = Genesis::dev();
        let node =
            Node::new(Chain::open_in_memory(&g), Mempool::with_config(MempoolConfig::default()), g.clone());
        let k = &dev_keys()[0];
        let t = |nonce| {
            Transfer {
                chain_id: g.params.chain_id,
                nonce,
                from: public_key_of(k),
                to: Address([7; 20]),
                amount: Amount(1),
                fee: Amount(5),
            }
            .sign(k)
            .unwrap()
        };
        let first = verify(t(0), g.params.chain_id).unwrap();
        // submit_on_cores stamps with the clock, so the first admission does too (an
        // older stamp would expire it).
        let now = crate::now_ms();
        let chain = node.chain();
        assert!(node.try_submit_transfer(first, Origin::Rpc, now).is_none());
        drop(chain);
        let mempool = node.mempool();
        assert!(node.try_submit_transfer(first, Origin::Rpc, now).is_none());
        drop(mempool);
        assert_eq!(node.mempool().len(), 0, "a busy attempt admits nothing");
        let (txid, _) = node.try_submit_transfer(first, Origin::Rpc, now).unwrap().unwrap();
        assert_eq!(txid, first.txid());

        // Another thread holds the chain lock while the next transfer is submitted.
        let (locked_tx, locked_rx) = std::sync::mpsc::channel();
        let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
        let holder = {
            let node = node.clone();
            std::thread::spawn(move || {
                let _chain = node.chain();
                locked_tx.send(()).unwrap();
                let _ = release_rx.recv();
            })
        };
        locked_rx.recv().unwrap();
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).build().unwrap();
        let submit = rt.spawn(submit_on_cores(node.clone(), t(1), Origin::Rpc));
        // Every rayon thread still takes work while the lock is held.
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            rayon::broadcast(|_| ());
            let _ = done_tx.send(());
        });
        done_rx
            .recv_timeout(std::time::Duration::from_secs(30))
            .expect("a rayon thread is stuck behind the chain lock");
        release_tx.send(()).unwrap();
        holder.join().unwrap();
        let admitted = rt.block_on(submit).unwrap().expect("no panic").expect("admitted");
        assert_eq!(admitted.0, t(1).txid());
        assert_eq!(node.mempool().len(), 2);
        // And a refusal keeps its error through the same path.
        let mut forged = t(2);
        forged.signature[40] ^= 1;
        let refused = rt.block_on(submit_on_cores(node.clone(), forged, Origin::Rpc)).expect("no panic");
        assert!(matches!(refused, Err(SubmitError::Invalid(_))));
    }

    /// A real node keeps the block it was given; a simulated one the copy its
    /// simulator shares.
    #[test]
    fn a_kept_block_is_the_given_one_unless_shared() {
        let g = Genesis::dev();
        let node = Node::new(Chain::open_in_memory(&g), Mempool::new(1 << 20), g.clone());
        let given = Arc::new(g.block());
        assert!(Arc::ptr_eq(&node.keep_block(given.clone()), &given));
        let shared = Arc::new(g.block());
        let one = shared.clone();
        node.share_blocks(Arc::new(move |b: Arc<Block>| if *b == *one { one.clone() } else { b }));
        assert!(Arc::ptr_eq(&node.keep_block(given), &shared));
    }

    /// `NewTip` goes out before the mempool has dropped the block's transfers, but
    /// with the locks held until it has: whoever acts on the event (a wallet asking for
    /// its next nonce, the miner building the next template) sees the pool without
    /// them, never the new tip with the old pool. Blocks from a peer and our own ones
    /// (checked off the lock first) alike. While another thread holds the pool, no
    /// event may go out (a second of waiting for it, on a timer, shows none did).
    #[test]
    fn a_new_tip_subscriber_never_sees_the_block_still_pending() {
        let g = Genesis::dev();
        let node = Node::new(Chain::open_in_memory(&g), Mempool::new(1 << 24), g.clone());
        let keys = dev_keys();
        let senders: Vec<Address> =
            keys.iter().map(|k| Address::from_public_key(&public_key_of(k))).collect();
        let per_sender = 40u64;
        let mut events = node.subscribe();
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        for (round, origin) in [Origin::Peer(1), Origin::Rpc].into_iter().enumerate() {
            for k in &keys {
                for i in 0..per_sender {
                    let tx = Transfer {
                        chain_id: g.params.chain_id,
                        nonce: round as u64 * per_sender + i,
                        from: public_key_of(k),
                        to: Address([7; 20]),
                        amount: Amount(1),
                        fee: Amount(5),
                    }
                    .sign(k)
                    .unwrap();
                    node.verify_and_submit(tx, Origin::Rpc, crate::now_ms()).unwrap();
                }
            }
            while events.try_recv().is_ok() {}
            let pending = node.mempool().len();
            assert_eq!(pending, keys.len() * per_sender as usize);
            let mut block = crate::miner::block_template(&node, Address([9; 20])).unwrap();
            assert_eq!(block.transactions.len(), pending + 1, "the block takes the whole pool");
            assert!(cairn_core::assemble::grind(&mut block.header, u64::MAX));
            // The pool held elsewhere: the block connects, but its NewTip must wait for
            // the pool (an event now would reach readers who find the pool unlocked
            // and still full).
            let held = node.mempool();
            let submitter = {
                let node = node.clone();
                std::thread::spawn(move || node.submit_block(block, origin, crate::now_ms()).unwrap())
            };
            let next_tip = async {
                loop {
                    match events.recv().await {
                        Ok(NodeEvent::NewTip { .. }) => return Ok(()),
                        Ok(_) => continue,
                        Err(e) => return Err(e),
                    }
                }
            };
            match rt
                .block_on(async { tokio::time::timeout(std::time::Duration::from_secs(1), next_tip).await })
            {
                Ok(Ok(())) => panic!("{origin:?}: NewTip went out while the pool was not yet taken"),
                Ok(Err(e)) => panic!("events ended: {e}"),
                Err(_) => {} // a second without the event: it waits for the pool
            }
            assert_eq!(held.len(), pending, "{origin:?}: the pool was held throughout");
            drop(held);
            let seen = loop {
                match events.blocking_recv() {
                    Ok(NodeEvent::NewTip { .. }) => {
                        let left = node.mempool().len();
                        let nonces: Vec<u64> = senders.iter().map(|a| node.next_nonce(a).unwrap()).collect();
                        break (left, nonces);
                    }
                    Ok(_) => continue,
                    Err(e) => panic!("events ended: {e}"),
                }
            };
            let (result, _) = submitter.join().unwrap();
            assert!(result.tip_change.is_some(), "{origin:?}: the block connected");
            let want = (round as u64 + 1) * per_sender;
            assert_eq!(
                seen,
                (0, vec![want; keys.len()]),
                "{origin:?}: the pool as the event's reader saw it"
            );
        }
    }
}
