//! Our place in the network (protocol version 2): the address each peer reports seeing
//! us at, adopting an external address when peers in two network groups agree,
//! advertising it, and block-relay-only links (`relay: false` in our `version`).

use super::*;

impl Protocol {
    /// Dials `addr` for a block-relay-only link: our `version` to it says `relay:
    /// false`, and neither side announces transfers or addresses over it.
    pub fn dial_block_relay(&mut self, addr: SocketAddr) {
        if self.blocked.contains(&addr) || self.dialing.contains(&addr) {
            return;
        }
        self.dial_as(addr, true);
    }

    /// Adds resolved seed addresses to the address book (not as `--peer` entries: they
    /// are forgotten after failures like gossiped ones); outbound maintenance dials them.
    pub(super) fn add_seed_addrs(&mut self, addrs: Vec<SocketAddr>) {
        let now = self.now_ms;
        let added = addrs
            .into_iter()
            .filter(|a| !self.self_addrs.contains(a) && self.book.add(*a, false, now))
            .count();
        tracing::debug!(added, "seed addresses added to the address book");
    }

    /// Addresses known, for the driver's decision to resolve the seeds again.
    pub fn known_addrs(&self) -> usize {
        self.book.len()
    }

    /// Our external address(es) and how each was learned, and whether a peer has
    /// dialled us (for `net_getInfo`).
    pub fn self_address(&self) -> &SelfAddress {
        &self.self_address
    }

    /// The addresses we advertise, with our listen port.
    pub(super) fn external_addrs(&self) -> Vec<SocketAddr> {
        self.self_address.external(self.config.listen_port).into_iter().map(|(a, _)| a).collect()
    }

    /// A ready peer told us, in its `version`, the address it sees us at. Returns true
    /// if that made us adopt an address, which was then sent to every outbound peer.
    pub(super) fn learn_self_address(&mut self, peer: PeerId) -> bool {
        let Some(p) = self.peers.get(&peer) else { return false };
        let Some(reported) = p.version().map(|v| v.your_addr.to_socket().ip()) else { return false };
        let (from, inbound) = (p.addr, p.inbound);
        if inbound {
            self.self_address.set_inbound_seen();
        }
        if !self.self_address.report(&from, reported) {
            return false;
        }
        let ours = self.external_addrs();
        tracing::info!(
            addrs = ?ours,
            groups = self.self_address.adopted().map_or(0, |(_, n)| n),
            "external address learned from peers"
        );
        for a in &ours {
            // Never dial ourselves at it, and do not hand it out as another node's.
            self.self_addrs.insert(*a);
            self.book.remove(a);
        }
        // Tell the outbound peers we have now; later ones hear it at their handshake.
        let outbound: Vec<PeerId> =
            self.peers.iter().filter(|(_, p)| p.is_ready() && !p.inbound).map(|(id, _)| *id).collect();
        for id in outbound {
            self.advertise_self(id);
        }
        true
    }

    /// Sends our external address to `peer` (an `addr` of one entry) if it wants
    /// addresses and may be told it ([`discovery::may_tell`]).
    pub(super) fn advertise_self(&mut self, peer: PeerId) {
        let Some(p) = self.peers.get(&peer) else { return };
        if !p.wants_relay() {
            return;
        }
        let to = p.addr;
        let ours: Vec<NetAddr> = self
            .external_addrs()
            .into_iter()
            .filter(|a| discovery::may_tell(&to, a))
            .map(NetAddr::from_socket)
            .collect();
        if !ours.is_empty() {
            self.send(peer, Message::Addr(ours));
        }
    }
}
