//! The one door between the peer protocol and the rest of the node.
//!
//! [`Ledger`] is everything the protocol ([`super::protocol`]) asks of the chain and the
//! mempool: queries (tip, work, locator, headers, missing blocks, stored blocks, pending
//! transfers) and submissions (a block, headers, a verified transfer), each submission
//! taking the protocol's `now_ms`, so the protocol reads no clock of its own. Its
//! answers are small types of this module; [`Node`] implements it below. The protocol
//! imports nothing else from the node.

use crate::chain::{Acceptance, BlockStatus, ChainError};
use crate::mempool::MempoolError;
use crate::node::{Node, SubmitError};
use cairn_core::block::{Block, BlockHeader};
use cairn_core::params::ChainParams;
use cairn_core::validation::ParentInfo;
use cairn_core::{Address, BlockHash, SignedTransfer, Txid, Work};
use std::collections::HashSet;
use std::sync::Arc;

/// A transaction's entry in a block's senders, as the chain counts it (a rebuilt
/// compact block carries them).
pub use crate::chain::sender_of;
/// A block whose stateless checks ran before its turn (the TCP driver's readers check
/// the blocks the node asked for): the protocol carries it through.
pub use crate::chain::CheckedBlock;
/// Transfers and events as the node defines them: the protocol carries them through.
pub use crate::node::{Checked, NodeEvent, Origin, RefusedTransfer, VerifiedTransfer};

/// The tip of the best chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tip {
    pub hash: BlockHash,
    pub height: u64,
    pub total_work: Work,
}

/// What became of a submitted block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BlockOutcome {
    /// It is the new tip (or on the way to it).
    Connected,
    /// Its parent is unknown.
    Orphan,
    /// It breaks a rule, and the sender is to blame: the reason.
    Invalid(String),
    /// Anything else: already known, stored on a side branch, or refused for a reason
    /// that is not the sender's fault.
    Stored,
}

/// What became of submitted headers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HeadersOutcome {
    /// Headers newly indexed.
    pub added: usize,
    /// A header that breaks a rule, the sender's fault: the reason.
    pub invalid: Option<String>,
    /// The first header's parent is unknown.
    pub unconnected: bool,
}

/// What became of a submitted transfer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TransferOutcome {
    Admitted,
    Duplicate,
    /// Its nonce is past the sender's next one: its predecessor has not arrived.
    NonceGap,
    /// Refused; `temporary` ones may pass later (funds, a full pool), `peer_fault` ones
    /// could never have been valid.
    Rejected {
        reason: String,
        temporary: bool,
        peer_fault: bool,
    },
}

/// What the peer protocol needs from the rest of the node. Submissions return the
/// events they caused, so the protocol relays them in the same step.
pub trait Ledger: Send + Sync {
    fn chain_id(&self) -> u32;
    fn genesis_hash(&self) -> BlockHash;
    fn tip(&self) -> Tip;
    /// Cumulative work of an indexed block.
    fn work_of(&self, hash: &BlockHash) -> Option<Work>;
    fn height_of(&self, hash: &BlockHash) -> Option<u64>;
    /// Indexed, an orphan, or recently rejected: not worth asking headers for.
    fn is_known(&self, hash: &BlockHash) -> bool;
    /// The best chain's block locator.
    fn locator(&self) -> Vec<BlockHash>;
    /// Best-chain headers after the first locator hash on the best chain.
    fn headers_after(&self, locator: &[BlockHash], max: usize) -> Vec<BlockHeader>;
    /// Blocks without a stored body on the way to `target`, lowest first, with heights.
    fn missing_blocks(&self, target: &BlockHash, max: usize) -> Vec<(u64, BlockHash)>;
    /// The block's body may be stored (the index says so; nothing is read): a
    /// `getdata` for it is answered by reading the stored bytes, off the protocol thread
    /// (`Output::ServeBlock`), rather than with `notfound` at once.
    fn has_block(&self, hash: &BlockHash) -> bool;
    /// For screening low-work header branches ([`super::presync`]): the consensus
    /// parameters, the tip's work and the work of the next block.
    fn presync_basis(&self) -> (ChainParams, Work, Work);
    /// The chain's consensus parameters (fixed by its genesis; no lock taken).
    fn params(&self) -> ChainParams;
    /// The parent context of an indexed, not failed header: its [`ParentInfo`], its
    /// cumulative work, and the recent timestamps up to it.
    fn header_context(&self, hash: &BlockHash) -> Option<(ParentInfo, Work, Vec<u64>)>;
    fn has_transfer(&self, txid: &Txid) -> bool;
    /// Those of `txids` that are in the mempool now (the mempool asked once for all).
    fn pending_among(&self, txids: &[Txid]) -> HashSet<Txid>;
    fn transfer(&self, txid: &Txid) -> Option<SignedTransfer>;
    /// The nonce `sender`'s next transfer must carry, counting pending transfers.
    fn next_nonce(&self, sender: &Address) -> Result<u64, String>;
    /// Checks a transfer's signature on the calling thread (for transfers whose
    /// reader did not check them; the TCP driver's readers always do).
    fn verify(&self, tx: SignedTransfer) -> Checked;
    fn submit_block(
        &self,
        block: Block,
        origin: Origin,
        now_ms: u64,
    ) -> Result<(BlockOutcome, Option<NodeEvent>), String>;
    /// [`Ledger::submit_block`] of a block whose stateless checks already ran off the
    /// protocol thread: the same outcome and event, without checking again.
    fn submit_checked_block(
        &self,
        block: CheckedBlock,
        origin: Origin,
        now_ms: u64,
    ) -> Result<(BlockOutcome, Option<NodeEvent>), String> {
        self.submit_block(block.into_block(), origin, now_ms)
    }
    /// A stored block, decoded (to build a compact block, or answer `getblocktxn`).
    fn block(&self, hash: &BlockHash) -> Result<Option<Block>, String>;
    /// Calls `f` with every transfer in the mempool, its txid and its sender (to
    /// rebuild a compact block from it).
    fn for_each_pending(&self, f: &mut dyn FnMut(&Txid, &SignedTransfer, &Address));
    /// Checks transfers' signatures in parallel, in order (the transfers of a compact
    /// block that did not come from our mempool).
    fn verify_many(&self, txs: Vec<SignedTransfer>) -> Vec<Checked>;
    /// Enters transfers that passed [`Ledger::verify_many`] into the signature cache (a
    /// compact block's, once its header and merkle root checked out), so that the
    /// block's connection does not verify them again.
    fn remember_verified(&self, txids: &[Txid]);
    fn submit_headers(&self, headers: &[BlockHeader], now_ms: u64) -> Result<HeadersOutcome, String>;
    fn submit_transfer(
        &self,
        tx: VerifiedTransfer,
        origin: Origin,
        now_ms: u64,
    ) -> (TransferOutcome, Option<NodeEvent>);
    /// The copy of a decoded block to keep in memory (compact relay's recent block):
    /// `block` itself, except in the network simulator, whose nodes share one copy
    /// ([`Node::share_blocks`]).
    fn keep_block(&self, block: Arc<Block>) -> Arc<Block> {
        block
    }
}

/// What the protocol makes of the chain's verdict on block `hash`.
fn block_outcome(hash: BlockHash, acceptance: Acceptance) -> BlockOutcome {
    match acceptance {
        Acceptance::Connected => BlockOutcome::Connected,
        Acceptance::Orphan { .. } => BlockOutcome::Orphan,
        Acceptance::Invalid(e) if e.is_peer_fault() => {
            BlockOutcome::Invalid(format!("invalid block {hash}: {e}"))
        }
        Acceptance::Invalid(_) | Acceptance::Duplicate | Acceptance::SideBranch => BlockOutcome::Stored,
    }
}

impl Ledger for Node {
    fn chain_id(&self) -> u32 {
        self.genesis().params.chain_id
    }

    fn genesis_hash(&self) -> BlockHash {
        self.chain().genesis_hash()
    }

    fn tip(&self) -> Tip {
        let t = self.chain().tip();
        Tip { hash: t.hash, height: t.height, total_work: t.total_work }
    }

    fn work_of(&self, hash: &BlockHash) -> Option<Work> {
        self.chain().work_of(hash)
    }

    fn height_of(&self, hash: &BlockHash) -> Option<u64> {
        self.chain().height_of(hash)
    }

    fn is_known(&self, hash: &BlockHash) -> bool {
        self.chain().is_known(hash)
    }

    fn locator(&self) -> Vec<BlockHash> {
        self.chain().locator()
    }

    fn headers_after(&self, locator: &[BlockHash], max: usize) -> Vec<BlockHeader> {
        self.chain().headers_after(locator, max)
    }

    fn missing_blocks(&self, target: &BlockHash, max: usize) -> Vec<(u64, BlockHash)> {
        let chain = self.chain();
        chain
            .missing_blocks_toward(target, max)
            .into_iter()
            .map(|h| (chain.height_of(&h).unwrap_or(u64::MAX), h))
            .collect()
    }

    fn has_block(&self, hash: &BlockHash) -> bool {
        // A body is stored together with its index entry and never deleted, so the
        // in-memory index answers. An invalid block may have a body or not (its header
        // alone may have been marked): the read decides.
        matches!(
            self.chain().block_status(hash),
            Some(BlockStatus::Stored | BlockStatus::Valid | BlockStatus::Invalid)
        )
    }

    fn params(&self) -> ChainParams {
        self.genesis().params
    }

    fn presync_basis(&self) -> (ChainParams, Work, Work) {
        let chain = self.chain();
        (*chain.params(), chain.tip().total_work, chain.next_block_work())
    }

    fn header_context(&self, hash: &BlockHash) -> Option<(ParentInfo, Work, Vec<u64>)> {
        self.chain().header_context(hash)
    }

    fn has_transfer(&self, txid: &Txid) -> bool {
        self.mempool().contains(txid)
    }

    fn pending_among(&self, txids: &[Txid]) -> HashSet<Txid> {
        let mempool = self.mempool();
        txids.iter().filter(|t| mempool.contains(t)).copied().collect()
    }

    fn transfer(&self, txid: &Txid) -> Option<SignedTransfer> {
        self.mempool().get(txid)
    }

    fn next_nonce(&self, sender: &Address) -> Result<u64, String> {
        Node::next_nonce(self, sender).map_err(|e| e.to_string())
    }

    fn verify(&self, tx: SignedTransfer) -> Checked {
        crate::node::verify(tx, self.genesis().params.chain_id)
    }

    fn submit_block(
        &self,
        block: Block,
        origin: Origin,
        now_ms: u64,
    ) -> Result<(BlockOutcome, Option<NodeEvent>), String> {
        let hash = block.hash();
        let (result, event) = Node::submit_block(self, block, origin, now_ms).map_err(|e| e.to_string())?;
        Ok((block_outcome(hash, result.acceptance), event))
    }

    fn submit_checked_block(
        &self,
        block: CheckedBlock,
        origin: Origin,
        now_ms: u64,
    ) -> Result<(BlockOutcome, Option<NodeEvent>), String> {
        let hash = block.hash();
        let (result, event) =
            Node::submit_checked_block(self, block, origin, now_ms).map_err(|e| e.to_string())?;
        Ok((block_outcome(hash, result.acceptance), event))
    }

    fn block(&self, hash: &BlockHash) -> Result<Option<Block>, String> {
        self.chain().block(hash).map_err(|e| e.to_string())
    }

    fn for_each_pending(&self, f: &mut dyn FnMut(&Txid, &SignedTransfer, &Address)) {
        self.mempool().for_each(f);
    }

    fn verify_many(&self, txs: Vec<SignedTransfer>) -> Vec<Checked> {
        // Transfers this node verified before (the signature cache knows them, say one
        // evicted from the mempool) are not verified again.
        // Asked through the cache's own handle: not behind a connection holding the
        // chain lock.
        let txids: Vec<Txid> = txs.iter().map(SignedTransfer::txid).collect();
        let known = self.sig_cache().known(&txids);
        crate::node::verify_many_known(txs, txids, known, self.genesis().params.chain_id)
    }

    fn remember_verified(&self, txids: &[Txid]) {
        self.sig_cache().insert_many(txids);
    }

    fn submit_headers(&self, headers: &[BlockHeader], now_ms: u64) -> Result<HeadersOutcome, String> {
        let r = self.chain().accept_headers(headers, now_ms).map_err(|e: ChainError| e.to_string())?;
        Ok(HeadersOutcome {
            added: r.added,
            invalid: r
                .invalid
                .filter(|(_, e)| e.is_peer_fault())
                .map(|(hash, e)| format!("invalid header {hash}: {e}")),
            unconnected: r.unconnected,
        })
    }

    fn submit_transfer(
        &self,
        tx: VerifiedTransfer,
        origin: Origin,
        now_ms: u64,
    ) -> (TransferOutcome, Option<NodeEvent>) {
        match Node::submit_transfer(self, tx, origin, now_ms) {
            Ok((_, event)) => (TransferOutcome::Admitted, Some(event)),
            Err(SubmitError::Duplicate) => (TransferOutcome::Duplicate, None),
            Err(SubmitError::Rejected(MempoolError::NonceGap { .. })) => (TransferOutcome::NonceGap, None),
            Err(SubmitError::Rejected(e)) => (
                TransferOutcome::Rejected {
                    reason: e.to_string(),
                    temporary: e.is_temporary(),
                    peer_fault: e.is_peer_fault(),
                },
                None,
            ),
            // A verified transfer has a good signature; the node reports no other
            // invalidity, but should it, it is the sender's fault.
            Err(SubmitError::Invalid(e)) => (
                TransferOutcome::Rejected { reason: e.to_string(), temporary: false, peer_fault: true },
                None,
            ),
        }
    }

    fn keep_block(&self, block: Arc<Block>) -> Arc<Block> {
        Node::keep_block(self, block)
    }
}
