//! The node: one place that owns the chain and the mempool.
//!
//! Blocks and transfers from the miner, from peers and from RPC all enter through
//! [`Node::submit_block`] and [`Node::submit_transfer`], which keep the mempool in step
//! with the chain and publish a [`NodeEvent`] for the P2P layer (relay) and RPC
//! subscribers (new heads).

use crate::chain::sigcache::SigCache;
use crate::chain::{AcceptResult, Acceptance, Chain, ChainError, TipInfo};
use crate::failstop::lock_or_stop;
use crate::mempool::{Mempool, MempoolError};
use cairn_core::block::Block;
use cairn_core::genesis::Genesis;
use cairn_core::{Address, BlockHash, SignedTransfer, Txid};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use tokio::sync::broadcast;

/// A fault to inject on purpose, for the fail-stop tests only: the `cairn-node` binary
/// reads it from the environment variable [`FaultInjection::ENV`] at startup. With it set,
/// a transfer handed to [`Node::admit_verified`] (from `tx_submit` or a peer) panics
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
    /// The best chain changed: `connected` parent-first, after `disconnected` blocks
    /// were removed.
    NewTip { tip: TipInfo, connected: Vec<BlockHash>, disconnected: u64, origin: Origin },
    /// A transfer entered the mempool.
    NewTransfer { txid: Txid, origin: Origin },
}

pub struct Node {
    chain: Mutex<Chain>,
    mempool: Mutex<Mempool>,
    events: broadcast::Sender<NodeEvent>,
    genesis: Genesis,
    /// The local miner's recent hashes per second (0 when not mining).
    hashrate: AtomicU64,
    /// Transfers received from peers whose signatures the P2P readers checked on all
    /// cores before queueing them for the protocol thread (see [`Node::preverified`]).
    preverified: Arc<Mutex<SigCache>>,
    /// Set only by the fail-stop tests (see [`FaultInjection`]).
    fault: OnceLock<FaultInjection>,
}

/// Entries of [`Node::preverified`]: twice the protocol's input queue, so an entry is
/// normally still there when its transfer is handled (if not, it is verified again).
const PREVERIFIED_ENTRIES: usize = 8_192;

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
        Arc::new(Node {
            chain: Mutex::new(chain),
            mempool: Mutex::new(mempool),
            events,
            genesis,
            hashrate: AtomicU64::new(0),
            preverified: Arc::new(Mutex::new(SigCache::new(PREVERIFIED_ENTRIES))),
            fault: OnceLock::new(),
        })
    }

    /// The set the P2P readers record verified transfers in: a txid there means these
    /// exact signed bytes passed [`SignedTransfer::verify`] on this node, so
    /// [`Node::submit_transfer`] takes it out instead of checking again.
    pub fn preverified(&self) -> Arc<Mutex<SigCache>> {
        self.preverified.clone()
    }

    pub fn genesis(&self) -> &Genesis {
        &self.genesis
    }

    /// Arms a [`FaultInjection`] (tests of the fail-stop path only).
    pub fn inject_fault(&self, fault: FaultInjection) {
        let _ = self.fault.set(fault);
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
    pub fn submit_block(&self, block: Block, origin: Origin) -> Result<AcceptResult, ChainError> {
        let now = crate::now_ms();
        let mut chain = self.chain();
        let result = chain.accept_block(block, now)?;
        if let Some(change) = &result.tip_change {
            let mut mempool = self.mempool();
            if !change.disconnected.is_empty() {
                mempool.on_blocks_disconnected(&change.disconnected, &*chain, now);
            }
            for b in &change.connected {
                mempool.on_block_connected(b, &*chain);
            }
            mempool.expire(now);
            drop(mempool);
            let tip = chain.tip();
            let _ = self.events.send(NodeEvent::NewTip {
                tip,
                connected: change.connected.iter().map(Block::hash).collect(),
                disconnected: change.disconnected.len() as u64,
                origin,
            });
        }
        if let Acceptance::Invalid(e) = &result.acceptance {
            tracing::warn!(?origin, error = %e, "rejected invalid block");
        }
        Ok(result)
    }

    /// The nonce `address`'s next transfer must carry, counting its pending transfers.
    pub fn next_nonce(&self, address: &Address) -> Result<u64, ChainError> {
        let chain = self.chain();
        let state_nonce = chain.account(address)?.nonce;
        Ok(self.mempool().pending_nonce(address, state_nonce))
    }

    /// Verifies a transfer's signature (without holding any lock; not again when a P2P
    /// reader has checked these bytes, see [`Node::preverified`]) and admits it to the
    /// mempool against the tip state.
    pub fn submit_transfer(&self, tx: SignedTransfer, origin: Origin) -> Result<Txid, SubmitError> {
        let txid = tx.txid();
        if self.mempool().contains(&txid) {
            return Err(SubmitError::Duplicate);
        }
        let checked = self.preverified.lock().map(|mut p| p.take(&txid)).unwrap_or(false);
        if !checked {
            tx.verify(self.genesis.params.chain_id)?;
        }
        self.admit_verified(tx, origin)
    }

    /// Admits a transfer whose signature this node has verified already
    /// ([`SignedTransfer::verify`]): [`Node::submit_transfer`] after its check, and the
    /// P2P layer for transfers that waited for their predecessor.
    pub fn admit_verified(&self, tx: SignedTransfer, origin: Origin) -> Result<Txid, SubmitError> {
        // Lock order everywhere: chain, then mempool. The chain lock keeps the tip state
        // from moving under the admission check; both are held only for map lookups.
        let mut chain = self.chain();
        self.maybe_fault(FaultInjection::PanicWhileChainLocked);
        let mut mempool = self.mempool();
        self.maybe_fault(FaultInjection::PanicWhileMempoolLocked);
        let admitted = mempool.add_verified(tx, &*chain, crate::now_ms());
        drop(mempool);
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
        let _ = self.events.send(NodeEvent::NewTransfer { txid, origin });
        Ok(txid)
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
    fn a_preverified_txid_vouches_for_those_bytes_once() {
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
        node.preverified().lock().unwrap().insert(good.txid());
        // One signature bit flipped: another txid, so it is checked, and fails.
        let mut forged = good;
        forged.signature[40] ^= 1;
        assert!(matches!(node.submit_transfer(forged, Origin::Rpc), Err(SubmitError::Invalid(_))));
        node.submit_transfer(good, Origin::Rpc).unwrap();
        assert!(!node.preverified().lock().unwrap().contains(&good.txid()), "an entry serves once");
        // Without an entry the check runs as before.
        let mut bad = t(1);
        bad.signature[40] ^= 1;
        assert!(matches!(node.submit_transfer(bad, Origin::Rpc), Err(SubmitError::Invalid(_))));
    }
}
