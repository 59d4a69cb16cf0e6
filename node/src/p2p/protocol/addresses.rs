//! Peer exchange: answering `getaddr` once per connection, taking in `addr` (with a
//! token bucket for unsolicited ones), and relaying news of fresh addresses.

use super::*;

impl Protocol {
    pub(super) fn on_getaddr(&mut self, peer: PeerId) {
        if !self.relays_txs_and_addrs(peer) {
            return; // a block-relay-only link: no addresses either way
        }
        let Some(p) = self.peers.get_mut(&peer) else { return };
        if p.addrs.answered_getaddr {
            return; // once per connection: no scraping the whole book by asking again
        }
        p.addrs.answered_getaddr = true;
        let sample = self.book.sample(wire::MAX_ADDRS, self.now_ms, &mut self.rng);
        let addrs = sample.into_iter().map(NetAddr::from_socket).collect();
        self.send(peer, Message::Addr(addrs));
    }

    pub(super) fn on_addr(&mut self, peer: PeerId, addrs: Vec<NetAddr>) {
        if !self.relays_txs_and_addrs(peer) {
            return;
        }
        let now = self.now_ms;
        let Some(p) = self.peers.get_mut(&peer) else { return };
        let source = p.addr.ip();
        let solicited = p.addrs.sent_getaddr && !p.addrs.got_addr_reply;
        let allowed = if solicited {
            p.addrs.got_addr_reply = true;
            addrs.len()
        } else {
            let refill = now.saturating_sub(p.addrs.refill_ms) / limits::ADDR_REFILL_MS;
            if refill > 0 {
                p.addrs.tokens = (p.addrs.tokens + refill).min(limits::ADDR_BUCKET);
                p.addrs.refill_ms = now;
            }
            let n = (p.addrs.tokens as usize).min(addrs.len());
            p.addrs.tokens -= n as u64;
            n
        };
        let mut fresh = Vec::new();
        for a in addrs.into_iter().take(allowed) {
            let a = a.to_socket();
            if self.self_addrs.contains(&a) || self.book.is_banned(&a, now) {
                continue;
            }
            if self.book.add_from(a, source, now) {
                fresh.push(a);
            }
        }
        // Relay what small unsolicited announcements taught us; big answers to getaddr
        // are not relayed (everyone can ask for them).
        if !solicited && !fresh.is_empty() && fresh.len() <= 10 {
            self.relay_addrs(peer, &fresh);
        }
    }

    pub(super) fn relay_addrs(&mut self, from: PeerId, addrs: &[SocketAddr]) {
        let mut targets: Vec<PeerId> = self
            .peers
            .iter()
            .filter(|(id, p)| p.is_ready() && **id != from && !p.link.block_relay_only)
            .map(|(id, _)| *id)
            .collect();
        targets.shuffle(&mut self.rng);
        let msg = Message::Addr(addrs.iter().map(|a| NetAddr::from_socket(*a)).collect());
        for t in targets.into_iter().take(2) {
            self.send(t, msg.clone());
        }
    }
}
