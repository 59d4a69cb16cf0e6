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
        let to = p.addr;
        let sample = self.book.sample(wire::MAX_ADDRS, self.now_ms, &mut self.rng);
        // No private or loopback address to a peer on the internet.
        let addrs =
            sample.into_iter().filter(|a| discovery::may_tell(&to, a)).map(NetAddr::from_socket).collect();
        self.send(peer, Message::Addr(addrs));
    }

    pub(super) fn on_addr(&mut self, peer: PeerId, addrs: Vec<NetAddr>) {
        if !self.relays_txs_and_addrs(peer) {
            return;
        }
        let now = self.now_ms;
        let Some(p) = self.peers.get_mut(&peer) else { return };
        let source = p.addr.ip();
        let from = p.addr;
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
            // A peer on the internet has no business telling us private addresses.
            if !discovery::may_tell(&from, &a) || self.self_addrs.contains(&a) || self.book.is_banned(&a, now)
            {
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
        let mut targets: Vec<(PeerId, SocketAddr)> = self
            .peers
            .iter()
            .filter(|(id, p)| p.is_ready() && **id != from && p.wants_relay())
            .map(|(id, p)| (*id, p.addr))
            .collect();
        targets.shuffle(&mut self.rng);
        for (t, to) in targets.into_iter().take(2) {
            let told: Vec<NetAddr> = addrs
                .iter()
                .filter(|a| discovery::may_tell(&to, a))
                .map(|a| NetAddr::from_socket(*a))
                .collect();
            if !told.is_empty() {
                self.send(t, Message::Addr(told));
            }
        }
    }
}
