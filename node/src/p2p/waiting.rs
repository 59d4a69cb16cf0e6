//! Transfers that arrived before their predecessor.
//!
//! The mempool admits a sender's transfers in nonce order only (a gap is
//! [`crate::mempool::MempoolError::NonceGap`]). Over several peers a transfer can
//! overtake the one before it: nonce 11 arrives from a fast peer while nonce 10 is still
//! being fetched from a slow one. Refused and forgotten, 11 would only come back if
//! someone announced it again. So a gap-refused transfer from a peer waits here, its
//! signature already verified, until the transfer before it is admitted (or a block
//! moves its sender's nonce up to it), and is then admitted without a second check.
//!
//! Bounded: [`MAX_WAITING`] in all (the oldest leaves first), [`MAX_WAITING_PER_PEER`]
//! from one peer, [`WAIT_MS`] at most, and a peer's entries leave with it. One slot per
//! (sender, nonce): the first transfer to claim it keeps it.

use super::ledger::VerifiedTransfer;
use super::PeerId;
use cairn_core::{Address, Txid};
use std::collections::{BTreeMap, HashMap};

pub const MAX_WAITING: usize = 2_000;
pub const MAX_WAITING_PER_PEER: usize = 500;
pub const WAIT_MS: u64 = 10 * 60 * 1000;

#[derive(Clone, Copy, Debug)]
pub struct Waiting {
    pub tx: VerifiedTransfer,
    pub txid: Txid,
    pub peer: PeerId,
    added_ms: u64,
    seq: u64,
}

#[derive(Default)]
pub struct WaitingTransfers {
    slots: BTreeMap<(Address, u64), Waiting>,
    ids: HashMap<Txid, (Address, u64)>,
    /// Arrival order, for evicting the oldest: seq -> slot.
    order: BTreeMap<u64, (Address, u64)>,
    per_peer: HashMap<PeerId, usize>,
    next_seq: u64,
}

impl WaitingTransfers {
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    pub fn contains(&self, txid: &Txid) -> bool {
        self.ids.contains_key(txid)
    }

    /// Holds `tx` from `peer`. False when its slot is taken or the peer has
    /// [`MAX_WAITING_PER_PEER`] waiting already.
    pub fn hold(&mut self, tx: VerifiedTransfer, peer: PeerId, now_ms: u64) -> bool {
        let txid = tx.txid();
        let slot = (tx.tx().transfer.sender(), tx.tx().transfer.nonce);
        if self.slots.contains_key(&slot)
            || self.per_peer.get(&peer).copied().unwrap_or(0) >= MAX_WAITING_PER_PEER
        {
            return false;
        }
        while self.slots.len() >= MAX_WAITING {
            let Some((_, oldest)) = self.order.first_key_value() else { break };
            let oldest = *oldest;
            self.remove(&oldest);
        }
        self.next_seq += 1;
        let seq = self.next_seq;
        self.slots.insert(slot, Waiting { tx, txid, peer, added_ms: now_ms, seq });
        self.ids.insert(txid, slot);
        self.order.insert(seq, slot);
        *self.per_peer.entry(peer).or_default() += 1;
        true
    }

    /// Takes the transfer waiting for `sender`'s nonce `nonce`, if any.
    pub fn take(&mut self, sender: &Address, nonce: u64) -> Option<Waiting> {
        self.remove(&(*sender, nonce))
    }

    /// Senders with transfers waiting, each with its lowest waiting nonce.
    pub fn senders(&self) -> Vec<(Address, u64)> {
        let mut out: Vec<(Address, u64)> = Vec::new();
        for (sender, nonce) in self.slots.keys() {
            if out.last().is_none_or(|(s, _)| s != sender) {
                out.push((*sender, *nonce));
            }
        }
        out
    }

    /// Drops `sender`'s transfers with a nonce below `nonce` (the chain or mempool has
    /// moved past them).
    pub fn drop_below(&mut self, sender: &Address, nonce: u64) {
        let stale: Vec<(Address, u64)> =
            self.slots.range((*sender, 0)..(*sender, nonce)).map(|(slot, _)| *slot).collect();
        for slot in stale {
            self.remove(&slot);
        }
    }

    /// Drops everything `peer` sent.
    pub fn forget_peer(&mut self, peer: PeerId) {
        if !self.per_peer.contains_key(&peer) {
            return;
        }
        let theirs: Vec<(Address, u64)> =
            self.slots.iter().filter(|(_, w)| w.peer == peer).map(|(slot, _)| *slot).collect();
        for slot in theirs {
            self.remove(&slot);
        }
    }

    /// Drops what has waited longer than [`WAIT_MS`].
    pub fn expire(&mut self, now_ms: u64) {
        while let Some((_, slot)) = self.order.first_key_value() {
            let slot = *slot;
            match self.slots.get(&slot) {
                Some(w) if now_ms.saturating_sub(w.added_ms) > WAIT_MS => {
                    self.remove(&slot);
                }
                _ => break,
            }
        }
    }

    fn remove(&mut self, slot: &(Address, u64)) -> Option<Waiting> {
        let w = self.slots.remove(slot)?;
        self.ids.remove(&w.txid);
        self.order.remove(&w.seq);
        if let Some(n) = self.per_peer.get_mut(&w.peer) {
            *n -= 1;
            if *n == 0 {
                self.per_peer.remove(&w.peer);
            }
        }
        Some(w)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_core::genesis::dev_keys;
    use cairn_core::transaction::{public_key_of, Transfer};
    use cairn_core::{Amount, SignedTransfer};

    /// The pool never looks at signatures (its entries were verified before), so the
    /// test transfers carry none.
    fn tx(key: usize, nonce: u64, fee: u64) -> SignedTransfer {
        let from = public_key_of(&dev_keys()[key]);
        let transfer =
            Transfer { chain_id: 1, nonce, from, to: Address([9; 20]), amount: Amount(1), fee: Amount(fee) };
        SignedTransfer { transfer, signature: [0; 64] }
    }

    fn hold(w: &mut WaitingTransfers, t: SignedTransfer, peer: PeerId, now: u64) -> bool {
        w.hold(VerifiedTransfer::unchecked_for_tests(t), peer, now)
    }

    #[test]
    fn one_slot_per_sender_and_nonce_taken_in_order() {
        let mut w = WaitingTransfers::default();
        let (a1, a2) = (tx(0, 1, 1), tx(0, 2, 1));
        assert!(hold(&mut w, a2, 1, 0));
        assert!(hold(&mut w, a1, 1, 0));
        assert!(!hold(&mut w, tx(0, 1, 5), 2, 0), "the slot is taken");
        assert!(w.contains(&a1.txid()) && w.len() == 2);
        let sender = a1.transfer.sender();
        assert_eq!(w.senders(), vec![(sender, 1)]);
        assert_eq!(w.take(&sender, 1).map(|x| x.txid), Some(a1.txid()));
        assert!(w.take(&sender, 1).is_none());
        w.drop_below(&sender, 3);
        assert!(w.is_empty() && !w.contains(&a2.txid()));
    }

    #[test]
    fn bounded_per_peer_in_all_and_in_time() {
        let mut w = WaitingTransfers::default();
        let t = |nonce: u64| tx(0, nonce, 1);
        for n in 0..MAX_WAITING_PER_PEER as u64 {
            assert!(hold(&mut w, t(n), 7, 0));
        }
        assert!(!hold(&mut w, t(100_000), 7, 0), "peer 7 is at its limit");
        // Other peers fill the pool; the oldest entries (peer 7's first) leave.
        let mut peer = 8;
        let mut n = 1_000_000;
        while w.len() < MAX_WAITING {
            if !hold(&mut w, t(n), peer, 5) {
                peer += 1;
                continue;
            }
            n += 1;
        }
        let first = t(0).txid();
        assert!(w.contains(&first));
        assert!(hold(&mut w, t(n), peer + 1, 5));
        assert_eq!(w.len(), MAX_WAITING);
        assert!(!w.contains(&first), "the oldest left to make room");
        w.forget_peer(7);
        assert!(!w.contains(&t(1).txid()));
        assert!(hold(&mut w, t(100_000), 7, 5), "room again after its entries left");
        w.expire(5 + WAIT_MS + 1);
        assert!(w.is_empty());
    }
}
