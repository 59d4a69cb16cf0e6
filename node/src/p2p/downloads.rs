//! Block download bookkeeping for headers-first sync: which block bodies are requested
//! from which peer and since when. The protocol asks the ledger what is missing
//! ([`super::ledger::Ledger::missing_blocks`]), hands each hash to a peer with spare
//! capacity, and asks [`BlockDownloads::stalled`] on every tick who is too slow, so
//! their requests can be moved.

use super::PeerId;
use cairn_core::BlockHash;
use std::collections::BTreeMap;

#[derive(Debug, Default)]
pub struct BlockDownloads {
    in_flight: BTreeMap<BlockHash, (PeerId, u64)>,
    per_peer: BTreeMap<PeerId, usize>,
}

impl BlockDownloads {
    pub fn is_in_flight(&self, hash: &BlockHash) -> bool {
        self.in_flight.contains_key(hash)
    }

    pub fn count(&self, peer: PeerId) -> usize {
        self.per_peer.get(&peer).copied().unwrap_or(0)
    }

    pub fn total(&self) -> usize {
        self.in_flight.len()
    }

    pub fn request(&mut self, hash: BlockHash, peer: PeerId, now_ms: u64) {
        if let Some((old, _)) = self.in_flight.insert(hash, (peer, now_ms)) {
            self.dec(old);
        }
        *self.per_peer.entry(peer).or_default() += 1;
    }

    /// A block arrived from `peer`: true when it was requested from that peer (the
    /// request is then done).
    pub fn received(&mut self, hash: &BlockHash, peer: PeerId) -> bool {
        match self.in_flight.get(hash) {
            Some((p, _)) if *p == peer => {
                self.in_flight.remove(hash);
                self.dec(peer);
                true
            }
            _ => false,
        }
    }

    /// Drops every request to `peer` (it left or stalled); they will be scheduled again.
    pub fn remove_peer(&mut self, peer: PeerId) {
        self.in_flight.retain(|_, (p, _)| *p != peer);
        self.per_peer.remove(&peer);
    }

    /// Peers with a request older than `timeout_ms`.
    pub fn stalled(&self, now_ms: u64, timeout_ms: u64) -> Vec<PeerId> {
        let mut out: Vec<PeerId> = self
            .in_flight
            .values()
            .filter(|(_, t)| now_ms.saturating_sub(*t) > timeout_ms)
            .map(|(p, _)| *p)
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    fn dec(&mut self, peer: PeerId) {
        if let Some(c) = self.per_peer.get_mut(&peer) {
            *c = c.saturating_sub(1);
            if *c == 0 {
                self.per_peer.remove(&peer);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_move_when_a_peer_leaves() {
        let mut d = BlockDownloads::default();
        let h = |i: u8| BlockHash([i; 32]);
        d.request(h(1), 1, 0);
        d.request(h(2), 1, 0);
        d.request(h(3), 2, 50);
        assert_eq!(d.count(1), 2);
        assert!(!d.received(&h(3), 1), "only the peer asked may answer");
        assert!(d.received(&h(3), 2));
        assert_eq!(d.stalled(100, 60), vec![1]);
        d.remove_peer(1);
        assert_eq!(d.total(), 0);
        assert!(!d.is_in_flight(&h(1)));
    }
}
