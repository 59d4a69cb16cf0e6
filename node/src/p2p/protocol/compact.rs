//! Compact block relay, after BIP152: `sendcmpct`, `cmpctblock`, `getblocktxn`,
//! `blocktxn` (docs/PROTOCOL.md, "Compact blocks").
//!
//! A block whose transfers the receiver already holds travels as its header, a nonce,
//! 6 bytes per transfer and the prefilled coinbase. The receiver rebuilds it from its
//! mempool, asks the sender for what it lacks (`getblocktxn`), and falls back to a
//! full `block` when short ids collide or the rebuilt block does not match its merkle
//! root. Once a compact block's header, its proof of work and its rebuilt transfers
//! (merkle root, signatures and every other check that needs no chain state) check out,
//! it goes on to the high-bandwidth peers before the block's state transition runs.
//!
//! What bans the sender of a compact block is what an honest relayer checks before
//! relaying: a header that fails (proof of work, parent, target, timestamps), a
//! structurally impossible block (no coinbase first, a coinbase elsewhere, over the size
//! limit, a txid twice), a transfer
//! it sent that fails its stateless checks (signature, chain id, amount overflow), a
//! `blocktxn` that does not answer the request. A rule only the state transition
//! checks (balances, nonces, the coinbase amount) is not held against it: the block is
//! refused and remembered as invalid, the peer stays.

use super::*;
use crate::p2p::ledger::sender_of;
use crate::p2p::siphash::siphash24;
use cairn_core::transaction::Transaction;
use cairn_core::validation::BlockError;
use cairn_core::{Address, SignedTransfer};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use wire::{BlockTxn, CmpctBlock, GetBlockTxn, PrefilledTx, SendCmpct, ShortId, CMPCT_VERSION};

/// Peers we ask to push us compact blocks unannounced (high-bandwidth mode).
pub const MAX_HIGH_BANDWIDTH: usize = 3;
/// `getblocktxn` is answered for blocks at most this far below our tip; deeper ones
/// are sent whole.
const MAX_BLOCKTXN_DEPTH: u64 = 10;
/// Compact blocks waiting for `blocktxn` at once, over all peers (one per peer). Each
/// holds a slot per transaction of its block, so their number is bounded; beyond it the
/// block is fetched whole.
const MAX_PARTIALS: usize = 4;

/// Compact-block state of one peer.
#[derive(Debug, Default)]
pub(super) struct PeerCompact {
    /// It sent `sendcmpct` of our version: it understands compact blocks.
    supports: bool,
    /// It asked us to push compact blocks without `inv` (its last `sendcmpct`).
    wants_push: bool,
    /// A compact block from it waiting for the `blocktxn` we asked for.
    partial: Option<Partial>,
}

/// A mempool transfer's txid and sender, known before the block is rebuilt.
type Known = (Txid, Address);

/// A compact block being completed.
#[derive(Debug)]
struct Partial {
    header: BlockHeader,
    hash: BlockHash,
    /// The block's transaction count.
    count: usize,
    /// The transactions at hand (prefilled, from the mempool, then fetched), by
    /// increasing index, with their txids and senders where known already (those from
    /// the mempool), so that the merkle root and the compact block pushed on do not hash
    /// them again, nor the connection derive their senders' addresses.
    /// Only these are held while the rest is asked for: a slot for every transaction
    /// would hold a full block's worth (about 1 MB) per partial block, and a node may
    /// complete [`MAX_PARTIALS`] at once.
    have: Vec<(u32, Transaction, Option<Known>)>,
    /// Indexes asked for with `getblocktxn`, increasing.
    asked: Vec<u32>,
    /// Indexes whose transfers came from the peer (prefilled), to check.
    from_peer: Vec<u32>,
    since_ms: u64,
}

/// Compact-block state of the node.
#[derive(Debug, Default)]
pub(super) struct CompactRelay {
    /// Peers we asked for high-bandwidth mode, the one that most recently delivered a
    /// new block first at the front.
    high_bandwidth: VecDeque<PeerId>,
    /// The last block we rebuilt from a compact block, or pushed before it connected
    /// ([`Protocol::push_prechecked`]), so a `getblocktxn` for it needs no read from the
    /// store (and is answered before the block is stored). (Compact blocks of stored blocks are built by the driver,
    /// off this thread: [`Serve::Compact`].)
    recent: Option<Arc<Block>>,
    /// Blocks whose compact form failed here (collision, merkle root, timeout): they
    /// are fetched whole.
    full_only: VecDeque<BlockHash>,
    /// Set by a driver that runs [`Protocol::connect_deferred`] once the outputs of a
    /// step are handed on: a completed compact block is then pushed on in that step and
    /// connected in the next call, so the push leaves before the state transition runs.
    /// Unset (a driver that only steps and drains), it connects within the step.
    defer_connect: bool,
    /// Completed compact blocks pushed on and waiting to be connected.
    deferred: VecDeque<Deferred>,
}

/// A compact block relayed on and not yet connected.
#[derive(Debug)]
struct Deferred {
    peer: PeerId,
    hash: BlockHash,
    block: CheckedBlock,
}

/// The SipHash key of a compact block: the first two little-endian `u64`s of
/// SHA-256(header's 124 bytes || nonce as u64 little-endian).
pub fn short_id_key(header: &BlockHeader, nonce: u64) -> (u64, u64) {
    let mut h = Sha256::new();
    h.update(header.to_bytes());
    h.update(nonce.to_le_bytes());
    let d: [u8; 32] = h.finalize().into();
    let k0 = u64::from_le_bytes(d[0..8].try_into().expect("8 bytes"));
    let k1 = u64::from_le_bytes(d[8..16].try_into().expect("8 bytes"));
    (k0, k1)
}

/// A transfer's short id: the low 6 bytes of SipHash-2-4(key, txid), little-endian.
pub fn short_id(key: (u64, u64), txid: &Txid) -> ShortId {
    let h = siphash24(key.0, key.1, &txid.0).to_le_bytes();
    [h[0], h[1], h[2], h[3], h[4], h[5]]
}

/// The compact form of `block`: the coinbase prefilled, a short id for every transfer.
pub fn compact_of(block: &Block, nonce: u64) -> CmpctBlock {
    compact_with_txids(block, &block.txids(), nonce)
}

/// [`compact_of`] with the block's txids, in transaction order, at hand.
fn compact_with_txids(block: &Block, txids: &[Txid], nonce: u64) -> CmpctBlock {
    let key = short_id_key(&block.header, nonce);
    let mut prefilled = Vec::new();
    let mut short_ids = Vec::with_capacity(block.transactions.len().saturating_sub(1));
    for (i, (tx, txid)) in block.transactions.iter().zip(txids).enumerate() {
        match tx {
            Transaction::Coinbase(_) => prefilled.push(PrefilledTx { index: i as u32, tx: *tx }),
            Transaction::Transfer(_) => short_ids.push(short_id(key, txid)),
        }
    }
    CmpctBlock { header: block.header, nonce, short_ids, prefilled }
}

/// What rebuilding a compact block from the mempool gave.
#[derive(Debug)]
enum Rebuilt {
    /// Every transaction is here.
    Complete(Partial),
    /// Some are missing: ask for these.
    Missing(Partial),
    /// Two mempool transfers (or two short ids of the block) share a short id: the
    /// block is fetched whole.
    Collision,
}

fn rebuild(c: &CmpctBlock, ledger: &dyn Ledger, now_ms: u64) -> Result<Rebuilt, String> {
    let n = c.tx_count();
    let mut txs: Vec<Option<Transaction>> = vec![None; n];
    let mut known: Vec<Option<Known>> = vec![None; n];
    let mut from_peer = Vec::new();
    for p in &c.prefilled {
        // The wire checked that indexes increase and stay below n.
        let i = p.index as usize;
        match (i, &p.tx) {
            (0, Transaction::Coinbase(_)) => {}
            (0, _) => return Err("compact block without a coinbase first".into()),
            (_, Transaction::Coinbase(_)) => return Err("compact block with a second coinbase".into()),
            (_, Transaction::Transfer(_)) => from_peer.push(p.index),
        }
        txs[i] = Some(p.tx);
    }
    if txs.first().is_none_or(Option::is_none) {
        return Err("compact block without a prefilled coinbase".into());
    }
    // Short id -> position, over the positions not prefilled, in order.
    let key = short_id_key(&c.header, c.nonce);
    let mut slots: HashMap<ShortId, usize> = HashMap::with_capacity(c.short_ids.len());
    let mut free = txs.iter().enumerate().filter(|(_, t)| t.is_none()).map(|(i, _)| i);
    for sid in &c.short_ids {
        let Some(pos) = free.next() else { return Err("short ids do not fit the block".into()) };
        if slots.insert(*sid, pos).is_some() {
            return Ok(Rebuilt::Collision);
        }
    }
    let mut collision = false;
    if !slots.is_empty() {
        ledger.for_each_pending(&mut |txid, tx, sender| {
            if let Some(&pos) = slots.get(&short_id(key, txid)) {
                if txs[pos].is_some() {
                    collision = true;
                }
                txs[pos] = Some(Transaction::Transfer(*tx));
                known[pos] = Some((*txid, *sender));
            }
        });
    }
    if collision {
        return Ok(Rebuilt::Collision);
    }
    let asked: Vec<u32> =
        txs.iter().enumerate().filter(|(_, t)| t.is_none()).map(|(i, _)| i as u32).collect();
    let have: Vec<(u32, Transaction, Option<Known>)> =
        txs.into_iter().zip(known).enumerate().filter_map(|(i, (t, k))| Some((i as u32, t?, k))).collect();
    let partial = Partial {
        header: c.header,
        hash: c.header.hash(),
        count: n,
        have,
        asked,
        from_peer,
        since_ms: now_ms,
    };
    Ok(if partial.asked.is_empty() { Rebuilt::Complete(partial) } else { Rebuilt::Missing(partial) })
}

impl Protocol {
    /// After the handshake: we take compact blocks (announced, until a peer earns
    /// high-bandwidth mode by delivering a block first).
    pub(super) fn compact_on_ready(&mut self, peer: PeerId) {
        self.send(peer, Message::SendCmpct(SendCmpct { high_bandwidth: false, version: CMPCT_VERSION }));
    }

    /// A dropped peer leaves the high-bandwidth set (its slot is refilled by the next
    /// peer that delivers a block first).
    pub(super) fn compact_forget(&mut self, peer: PeerId) {
        self.compact.high_bandwidth.retain(|p| *p != peer);
    }

    pub(super) fn on_sendcmpct(&mut self, peer: PeerId, s: SendCmpct) {
        let Some(p) = self.peers.get_mut(&peer) else { return };
        if s.version != CMPCT_VERSION {
            return; // a version we do not speak: it keeps getting inv and full blocks
        }
        p.compact.supports = true;
        p.compact.wants_push = s.high_bandwidth;
    }

    /// Peers that asked for pushed compact blocks and do not know `hash` yet (marked
    /// as knowing it now).
    fn push_targets(&mut self, hash: BlockHash, except: Option<PeerId>) -> Vec<PeerId> {
        let item = InvItem::Block(hash);
        let mut to = Vec::new();
        for (id, p) in self.peers.iter_mut() {
            if p.is_ready() && p.compact.wants_push && Some(*id) != except && !p.relay.known.contains(&item) {
                p.relay.known.insert(item);
                to.push(*id);
            }
        }
        to
    }

    /// Pushes a block being announced as a compact block to the peers that asked for it,
    /// before the `inv` to the others ([`Protocol::announce`]).
    pub(super) fn push_compact(&mut self, hash: BlockHash, origin: Origin) {
        let except = match origin {
            Origin::Peer(p) => Some(p),
            _ => None,
        };
        if !self.peers.values().any(|p| p.compact.wants_push) || !self.ledger.has_block(&hash) {
            return;
        }
        let to = self.push_targets(hash, except);
        if to.is_empty() {
            return;
        }
        // One nonce for all of them: the driver builds and encodes the compact block
        // once, off this thread, and sends each the same bytes.
        let nonce = self.rng.gen();
        for peer in to {
            self.out.push(Output::ServeBlock { peer, hash, serve: Serve::PushCompact { nonce } });
        }
    }

    /// A block of our own passed every check but its state transition
    /// ([`NodeEvent::BlockPrechecked`](crate::node::NodeEvent)): pushed to the peers that
    /// asked for it now, before it connects, as a relayed one is in
    /// [`Protocol::finish_compact`]. They are marked as knowing it, so the announcement
    /// that follows its connection skips them.
    ///
    /// The block is kept as the recent one: a peer missing some of its transfers asks
    /// for them (`getblocktxn`) at once, and the block may not be stored yet, since it
    /// connects on another thread. (Served from the store, such a request got
    /// `notfound`, and the peer waited the block timeout, 30 s, for an answer.)
    pub(super) fn push_prechecked(&mut self, block: Arc<Block>, txids: &[Txid]) {
        let to = self.push_targets(block.hash(), None);
        if to.is_empty() {
            return;
        }
        self.compact.recent = Some(self.ledger.keep_block(block.clone()));
        let c = compact_with_txids(&block, txids, self.rng.gen());
        for id in to {
            self.send(id, Message::CmpctBlock(Box::new(c.clone())));
        }
    }

    /// `peer` delivered a block that became our tip before anyone else: it moves to
    /// the front of the high-bandwidth set (asked to push, if it was not), and the
    /// peer at the back leaves it once there are more than three.
    pub(super) fn delivered_first(&mut self, peer: PeerId) {
        if !self.peers.get(&peer).is_some_and(|p| p.compact.supports) {
            return;
        }
        let hb = &mut self.compact.high_bandwidth;
        let was_in = hb.contains(&peer);
        hb.retain(|p| *p != peer);
        hb.push_front(peer);
        let dropped = if hb.len() > MAX_HIGH_BANDWIDTH { hb.pop_back() } else { None };
        if !was_in {
            self.send(peer, Message::SendCmpct(SendCmpct { high_bandwidth: true, version: CMPCT_VERSION }));
        }
        if let Some(old) = dropped {
            self.send(old, Message::SendCmpct(SendCmpct { high_bandwidth: false, version: CMPCT_VERSION }));
        }
    }

    /// How to ask `peer` for a block: compact if it is the next block of our best chain,
    /// the peer takes compact blocks, and its compact form has not failed here.
    pub(super) fn download_item(&self, peer: PeerId, hash: BlockHash, next: bool) -> InvItem {
        let supports = self.peers.get(&peer).is_some_and(|p| p.compact.supports);
        if next && supports && !self.compact.full_only.contains(&hash) {
            InvItem::CmpctBlock(hash)
        } else {
            InvItem::Block(hash)
        }
    }

    /// Answers `getdata` for a compact block; false if we do not have the block. The
    /// driver builds the compact block from the stored one, off this thread.
    pub(super) fn serve_compact(&mut self, peer: PeerId, hash: BlockHash) -> bool {
        if !self.ledger.has_block(&hash) {
            return false;
        }
        self.mark_known(peer, InvItem::Block(hash));
        let nonce = self.rng.gen();
        self.out.push(Output::ServeBlock { peer, hash, serve: Serve::Compact { nonce } });
        true
    }

    /// The peers we asked for high-bandwidth mode, most recent deliverer first.
    pub fn high_bandwidth_peers(&self) -> Vec<PeerId> {
        self.compact.high_bandwidth.iter().copied().collect()
    }

    pub(super) fn on_cmpctblock(&mut self, peer: PeerId, c: CmpctBlock) {
        let hash = c.header.hash();
        let tip = self.ledger.tip();
        // Asked for with getdata, or pushed (high-bandwidth): either way the request,
        // if any, is answered.
        let requested = self.downloads.received(&hash, peer);
        if let Some(p) = self.peers.get_mut(&peer) {
            p.relay.known.insert(InvItem::Block(hash));
        }
        if hash == tip.hash || self.ledger.work_of(&hash).is_some_and(|w| w <= tip.total_work) {
            return; // nothing new
        }
        if c.header.prev != tip.hash {
            // Not the next block of our best chain: the whole block, or the ordinary
            // headers-first path.
            if requested {
                self.fetch_whole(peer, hash, "no longer the next block");
            } else {
                self.request_headers(peer);
            }
            return;
        }
        // The header first: proof of work, parent, target, timestamps.
        match self.ledger.submit_headers(&[c.header], self.now_ms) {
            Ok(r) if r.invalid.is_some() => {
                let why = r.invalid.unwrap_or_default();
                self.misbehave(peer, limits::BAN_SCORE, &format!("compact block: {why}"));
                return;
            }
            Ok(r) if r.unconnected => {
                self.request_headers(peer);
                return;
            }
            Ok(_) => {}
            Err(e) => {
                tracing::error!(error = %e, "storing a header failed");
                return;
            }
        }
        if let Some(p) = self.peers.get_mut(&peer) {
            p.best_height = p.best_height.max(c.header.height);
        }
        match rebuild(&c, self.ledger.as_ref(), self.now_ms) {
            Err(why) => self.misbehave(peer, limits::BAN_SCORE, &format!("invalid compact block: {why}")),
            Ok(Rebuilt::Collision) => self.fetch_whole(peer, hash, "short-id collision"),
            Ok(Rebuilt::Complete(partial)) => self.finish_compact(peer, partial),
            Ok(Rebuilt::Missing(_))
                if self.peers.values().filter(|p| p.compact.partial.is_some()).count() >= MAX_PARTIALS =>
            {
                self.fetch_whole(peer, hash, "too many compact blocks being completed")
            }
            Ok(Rebuilt::Missing(partial)) => {
                let indexes = partial.asked.clone();
                if let Some(p) = self.peers.get_mut(&peer) {
                    p.compact.partial = Some(partial);
                }
                self.send(peer, Message::GetBlockTxn(GetBlockTxn { block_hash: hash, indexes }));
            }
        }
    }

    pub(super) fn on_blocktxn(&mut self, peer: PeerId, b: BlockTxn) {
        let Some(p) = self.peers.get_mut(&peer) else { return };
        let Some(mut partial) = p.compact.partial.take_if(|x| x.hash == b.block_hash) else {
            self.misbehave(peer, 10, "unrequested blocktxn");
            return;
        };
        if b.transfers.len() != partial.asked.len() {
            self.misbehave(peer, limits::BAN_SCORE, "blocktxn does not answer getblocktxn");
            return;
        }
        partial.have.extend(
            partial.asked.iter().zip(b.transfers).map(|(i, tx)| (*i, Transaction::Transfer(tx), None)),
        );
        // Distinct indexes (asked for are those not at hand), back in block order.
        partial.have.sort_unstable_by_key(|(i, _, _)| *i);
        partial.from_peer.extend(std::mem::take(&mut partial.asked));
        self.finish_compact(peer, partial);
    }

    /// Gives up on a compact block: the block is fetched whole from `peer`.
    fn fetch_whole(&mut self, peer: PeerId, hash: BlockHash, why: &str) {
        tracing::debug!(peer, %hash, why, "compact block falls back to the full block");
        if !self.compact.full_only.contains(&hash) {
            self.compact.full_only.push_back(hash);
            if self.compact.full_only.len() > 64 {
                self.compact.full_only.pop_front();
            }
        }
        self.note_best(peer, hash);
        self.schedule_downloads();
    }

    /// Every transaction of a compact block is here: check what the relayer must have
    /// checked, relay it on, then submit it.
    fn finish_compact(&mut self, peer: PeerId, partial: Partial) {
        let hash = partial.hash;
        // Every index below the count, once each: the block is whole.
        if partial.have.len() != partial.count {
            return;
        }
        let mut txs = Vec::with_capacity(partial.count);
        let mut txids = Vec::with_capacity(partial.count);
        let mut senders = Vec::with_capacity(partial.count);
        for (_, t, known) in partial.have {
            let (txid, sender) = known.unwrap_or_else(|| (t.txid(), sender_of(&t)));
            txids.push(txid);
            senders.push(sender);
            txs.push(t);
        }
        let block = Block { header: partial.header, transactions: txs };
        // Transfers from the peer: stateless checks (those from our mempool passed them).
        let theirs: Vec<SignedTransfer> = partial
            .from_peer
            .iter()
            .filter_map(|i| block.transactions.get(*i as usize).and_then(Transaction::as_transfer).copied())
            .collect();
        let checked = self.ledger.verify_many(theirs);
        if let Some(bad) = checked.iter().find_map(|c| c.as_ref().err()) {
            self.misbehave(
                peer,
                limits::BAN_SCORE,
                &format!("compact block with an invalid transfer {}: {}", bad.txid, bad.error),
            );
            return;
        }
        // The structure (size, coinbase, no txid twice, merkle root) against the txids
        // at hand: none is hashed again, here or when the chain connects the block.
        // Every signature passed on this node (the mempool's when admitted, the peer's
        // just now), so the chain checks none again either.
        let push_txids = txids.clone();
        let checked_block = match CheckedBlock::rebuilt(block, txids, senders, &self.ledger.params()) {
            Ok(c) => c,
            Err(BlockError::BadMerkleRoot) => {
                // A short id that matched the wrong mempool transfer, or a lie: either
                // way the full block settles it (and bans a liar if it is invalid).
                self.fetch_whole(peer, hash, "rebuilt block does not match its merkle root");
                return;
            }
            Err(e) => {
                // Checked by an honest relayer before it pushes (this code does).
                self.misbehave(peer, limits::BAN_SCORE, &format!("invalid compact block: {e}"));
                return;
            }
        };
        // Their signatures passed, in a block whose header has its proof of work and
        // whose merkle root matches: the signature cache says so (for a later copy of
        // the block, or of a transfer).
        let verified: Vec<Txid> = checked.into_iter().filter_map(|c| c.ok().map(|v| v.txid())).collect();
        self.ledger.remember_verified(&verified);
        // Relayed on as soon as its header and its transfers check out, before the
        // state transition (BIP152's high-bandwidth relay).
        let to = self.push_targets(hash, Some(peer));
        if !to.is_empty() {
            let c = compact_with_txids(checked_block.block(), &push_txids, self.rng.gen());
            for id in to {
                self.send(id, Message::CmpctBlock(Box::new(c.clone())));
            }
        }
        if self.compact.defer_connect {
            self.compact.deferred.push_back(Deferred { peer, hash, block: checked_block });
        } else {
            self.connect_compact(peer, hash, checked_block);
        }
    }

    /// Tells the protocol that its driver calls [`Protocol::connect_deferred`] after
    /// handing on the outputs of each step (the TCP driver does).
    pub fn defer_compact_connects(&mut self) {
        self.compact.defer_connect = true;
    }

    /// Connects a compact block that the last step completed and pushed on; false when
    /// there was none. The driver hands on the step's outputs first, so the push to the
    /// high-bandwidth peers is on its way while this block's state transition runs.
    pub fn connect_deferred(&mut self, now_ms: u64) -> bool {
        let Some(d) = self.compact.deferred.pop_front() else { return false };
        self.now_ms = now_ms.max(self.now_ms);
        self.connect_compact(d.peer, d.hash, d.block);
        true
    }

    /// A compact block checked and pushed on: it is submitted to the chain.
    fn connect_compact(&mut self, peer: PeerId, hash: BlockHash, block: CheckedBlock) {
        self.compact.recent = Some(self.ledger.keep_block(block.shared()));
        self.downloads.received(&hash, peer);
        let transfers = block.block().transactions.len().saturating_sub(1);
        match self.ledger.submit_checked_block(block, Origin::Peer(peer), self.now_ms) {
            Ok((outcome, event)) => {
                match outcome {
                    BlockOutcome::Invalid(why) => {
                        // A state rule the relayer need not have checked: not its fault.
                        tracing::info!(peer, %hash, %why, "compact block refused");
                    }
                    BlockOutcome::Orphan => self.request_headers(peer),
                    BlockOutcome::Connected | BlockOutcome::Stored => {
                        self.progress.add_transfers(transfers);
                        self.note_best(peer, hash);
                        if let Some(l) = self.peers.get(&peer).and_then(|p| p.listen_addr) {
                            self.book.mark_delivered(&l);
                        }
                    }
                }
                if let Some(event) = event {
                    self.on_node_event(event);
                }
            }
            Err(e) => tracing::error!(error = %e, "storing a block failed"),
        }
        self.schedule_downloads();
    }

    pub(super) fn on_getblocktxn(&mut self, peer: PeerId, g: GetBlockTxn) {
        let hash = g.block_hash;
        let deep = match (self.ledger.height_of(&hash), self.ledger.tip().height) {
            (Some(h), tip) => tip.saturating_sub(h) > MAX_BLOCKTXN_DEPTH,
            (None, _) => true,
        };
        let block = match &self.compact.recent {
            Some(b) if b.hash() == hash => Some(b.clone()),
            _ if deep => None,
            _ => self.ledger.block(&hash).ok().flatten().map(Arc::new),
        };
        let Some(block) = block else {
            // Too old to rebuild piecemeal, or not ours: the whole block, as for getdata.
            self.on_getdata(peer, vec![InvItem::Block(hash)]);
            return;
        };
        let mut transfers = Vec::with_capacity(g.indexes.len());
        for i in &g.indexes {
            match block.transactions.get(*i as usize) {
                Some(Transaction::Transfer(t)) => transfers.push(*t),
                _ => {
                    self.misbehave(peer, limits::BAN_SCORE, "getblocktxn for an index that is no transfer");
                    return;
                }
            }
        }
        self.send(peer, Message::BlockTxn(BlockTxn { block_hash: hash, transfers }));
    }

    /// A `getblocktxn` unanswered for the block timeout: the block is fetched whole
    /// (with the ordinary stall rules).
    pub(super) fn compact_on_tick(&mut self) {
        let now = self.now_ms;
        let timeout = self.config.block_timeout_ms;
        let stale: Vec<(PeerId, BlockHash)> = self
            .peers
            .iter_mut()
            .filter_map(|(id, p)| {
                let since = p.compact.partial.as_ref()?.since_ms;
                if now.saturating_sub(since) < timeout {
                    return None;
                }
                p.compact.partial.take().map(|x| (*id, x.hash))
            })
            .collect();
        for (peer, hash) in stale {
            self.fetch_whole(peer, hash, "blocktxn timed out");
        }
    }
}
