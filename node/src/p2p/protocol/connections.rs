//! Connections, the handshake and liveness: a new connection, `version`/`verack`, the
//! duplicate and self-connection rules, pings, timeouts on every tick, and keeping the
//! outbound slots filled from the address book.

use super::*;

impl Protocol {
    pub(super) fn on_connected(&mut self, peer: PeerId, addr: SocketAddr, inbound: bool) {
        if !inbound {
            self.dialing.remove(&addr);
        }
        if self.book.is_banned(&addr, self.now_ms) {
            crate::metrics::p2p_handshake_failed(&DisconnectReason::Banned);
            self.out.push(Output::Disconnect(peer, DisconnectReason::Banned));
            return;
        }
        if !inbound && self.blocked.contains(&addr) {
            // Blocked while the dial was in flight.
            crate::metrics::p2p_handshake_failed(&DisconnectReason::Blocked);
            self.out.push(Output::Disconnect(peer, DisconnectReason::Blocked));
            return;
        }
        if inbound
            && self.peers.values().filter(|p| p.inbound).count() >= self.config.max_inbound
            && !self.evict_inbound()
        {
            crate::metrics::p2p_handshake_failed(&DisconnectReason::TooManyPeers);
            self.out.push(Output::Disconnect(peer, DisconnectReason::TooManyPeers));
            return;
        }
        self.peers.insert(peer, Peer::new(addr, inbound, self.now_ms));
        self.on_connected_link(peer, addr, inbound);
        let block_relay_only = self.peers.get(&peer).is_some_and(|p| p.link.block_relay_only);
        let version = self.our_version(addr, self.config.relay && !block_relay_only);
        self.send(peer, Message::Version(version));
    }

    /// Our `version` to the peer whose connection has the remote address `addr`.
    pub(super) fn our_version(&self, addr: SocketAddr, relay: bool) -> Version {
        let tip = self.ledger.tip();
        Version {
            protocol_version: wire::PROTOCOL_VERSION,
            chain_id: self.ledger.chain_id(),
            genesis_hash: self.ledger.genesis_hash(),
            best_height: tip.height,
            best_work: tip.total_work.to_be_bytes(),
            listen_port: self.config.listen_port,
            nonce: self.nonce,
            your_addr: NetAddr::from_socket(addr),
            relay,
            user_agent: self.config.user_agent.chars().take(wire::MAX_USER_AGENT).collect(),
        }
    }

    pub(super) fn dial(&mut self, addr: SocketAddr) {
        if self.blocked.contains(&addr) {
            tracing::debug!(%addr, "not dialling a blocked peer");
            return;
        }
        self.book.mark_attempt(&addr, self.now_ms);
        self.dialing.insert(addr);
        self.out.push(Output::Connect(addr));
    }

    pub(super) fn is_connected_to(&self, addr: &SocketAddr) -> bool {
        self.peers.values().any(|p| (!p.inbound && p.addr == *addr) || p.listen_addr == Some(*addr))
    }

    /// Forgets a peer and moves its requests elsewhere.
    pub(super) fn remove_peer(&mut self, peer: PeerId, reason: &DisconnectReason) {
        let Some(p) = self.peers.remove(&peer) else { return };
        if !p.is_ready() {
            crate::metrics::p2p_handshake_failed(reason);
        }
        self.waiting.forget_peer(peer);
        self.compact_forget(peer);
        if p.is_ready() {
            // A ban was logged with its reason already; other drops once here, each
            // reason at a rate an attacker cannot turn into a flood.
            let kind = LogLimiter::kind("drop", &reason.to_string());
            if !matches!(reason, DisconnectReason::Misbehaviour(_)) && self.log_limit.allow(kind, self.now_ms)
            {
                tracing::info!(peer, addr = %p.addr, %reason, "peer disconnected");
            } else {
                tracing::debug!(peer, addr = %p.addr, %reason, "peer disconnected");
            }
        } else {
            tracing::debug!(peer, addr = %p.addr, %reason, "connection dropped before handshake");
            if !p.inbound
                && !matches!(
                    reason,
                    DisconnectReason::Duplicate
                        | DisconnectReason::SelfConnection
                        | DisconnectReason::Blocked
                )
            {
                self.book.mark_failure(&p.addr, self.now_ms);
            }
        }
        if p.is_ready() && !p.inbound {
            self.book.mark_closed(&p.addr, self.now_ms);
        }
        if p.is_ready()
            && !p.inbound
            && matches!(
                reason,
                DisconnectReason::Stalled
                    | DisconnectReason::NoHeaders
                    | DisconnectReason::NotDelivered
                    | DisconnectReason::PingTimeout
            )
        {
            // Back off before dialling a slow or silent peer again; one that keeps
            // offering what it does not deliver backs off longer each time.
            self.book.mark_failure(&p.addr, self.now_ms);
            if reason != &DisconnectReason::PingTimeout {
                self.book.mark_strike(&p.addr);
            }
        }
        self.downloads.remove_peer(peer);
        self.tx_requests.retain(|_, (p, _)| *p != peer);
    }

    pub(super) fn on_version(&mut self, peer: PeerId, v: Version) {
        let chain_id = self.ledger.chain_id();
        let our_genesis = self.ledger.genesis_hash();
        let mismatch = if v.protocol_version != wire::PROTOCOL_VERSION {
            Some(format!("protocol version {} (we speak {})", v.protocol_version, wire::PROTOCOL_VERSION))
        } else if v.chain_id != chain_id {
            Some(format!("chain id {} (ours is {})", v.chain_id, chain_id))
        } else if v.genesis_hash != our_genesis {
            Some(format!("genesis {} (ours is {})", v.genesis_hash, our_genesis))
        } else {
            None
        };
        let Some(p) = self.peers.get(&peer) else { return };
        let (addr, inbound) = (p.addr, p.inbound);
        if let Some(why) = mismatch {
            self.refuse_other_network(peer, why);
            return;
        }
        if v.nonce == self.nonce {
            if !inbound {
                self.self_addrs.insert(addr);
                self.book.remove(&addr);
            }
            self.disconnect(peer, DisconnectReason::SelfConnection);
            return;
        }
        let listen_addr = if !inbound {
            Some(addr)
        } else if v.listen_port != 0 {
            Some(SocketAddr::new(addr.ip(), v.listen_port))
        } else {
            None
        };
        // Before the duplicate check, so a refused connection never displaces a kept one.
        if listen_addr.is_some_and(|l| self.blocked.contains(&l)) {
            self.disconnect(peer, DisconnectReason::Blocked);
            return;
        }
        // Two connections to one node: both ends keep the one dialled by the node with
        // the lower nonce, so they agree without talking about it.
        if let Some((&other, o)) =
            self.peers.iter().find(|(id, o)| **id != peer && o.nonce() == Some(v.nonce))
        {
            let we_dial = self.nonce < v.nonce;
            let keep_new = inbound != we_dial && o.inbound == we_dial;
            let drop = if keep_new { other } else { peer };
            if let Some(d) = self.peers.get(&drop) {
                if !d.inbound {
                    let a = d.addr;
                    self.book.mark_attempt(&a, self.now_ms);
                }
            }
            self.disconnect(drop, DisconnectReason::Duplicate);
            if drop == peer {
                return;
            }
        }
        let Some(p) = self.peers.get_mut(&peer) else { return };
        p.best_height = v.best_height;
        p.blocks.claimed_work = Work::from_be_bytes(&v.best_work);
        p.listen_addr = listen_addr;
        let since_ms = match p.handshake {
            Handshake::AwaitingVersion { since_ms } | Handshake::AwaitingVerack { since_ms, .. } => since_ms,
            Handshake::Ready { .. } => self.now_ms,
        };
        p.handshake = Handshake::AwaitingVerack { since_ms, version: v };
        self.send(peer, Message::Verack);
    }

    /// Drops a peer of another network or protocol version (`why` says which), and
    /// forgets its address if we dialled it.
    pub(super) fn refuse_other_network(&mut self, peer: PeerId, why: String) {
        let Some(p) = self.peers.get(&peer) else { return };
        let (addr, inbound) = (p.addr, p.inbound);
        if self.log_limit.allow(LogLimiter::kind("drop: another network", &why), self.now_ms) {
            tracing::info!(peer, %addr, %why, "refusing peer on another network");
        } else {
            tracing::debug!(peer, %addr, %why, "refusing peer on another network");
        }
        if !inbound {
            self.book.remove(&addr);
        }
        self.disconnect(peer, DisconnectReason::WrongNetwork(why));
    }

    pub(super) fn on_ready(&mut self, peer: PeerId) {
        let now = self.now_ms;
        // Against the tip, not the best header: a header-only branch nobody delivers
        // must not stop us from asking a new peer for its chain.
        let our_best = self.ledger.tip().total_work;
        let Some(p) = self.peers.get_mut(&peer) else { return };
        p.ping = Ping::Idle { since_ms: now };
        let (inbound, addr, listen, claimed) = (p.inbound, p.addr, p.listen_addr, p.blocks.claimed_work);
        let ua = p.version().map(|v| v.user_agent.clone()).unwrap_or_default();
        // Inbound handshakes are the attacker's to repeat: logged at the drops' rate.
        if !inbound || self.log_limit.allow(LogLimiter::kind("connected", "inbound"), now) {
            tracing::info!(peer, %addr, inbound, height = p.best_height, user_agent = %ua, "peer connected");
        } else {
            tracing::debug!(peer, %addr, inbound, height = p.best_height, user_agent = %ua, "peer connected");
        }
        if !inbound {
            self.book.mark_success(&addr, now, true);
        } else if let Some(l) = listen {
            if self.book.add(l, false, now) {
                // A node we had not heard of: tell a couple of others, so addresses
                // spread without anyone having to ask.
                self.relay_addrs(peer, &[l]);
            }
            // It is up: whatever our dials to it did before, start its backoff afresh.
            self.book.mark_success(&l, now, false);
        }
        // Protocol version 2: where the peer sees us, and ours to it if we know it.
        if !self.learn_self_address(peer) && !inbound {
            self.advertise_self(peer);
        }
        // Outbound peers are always asked for addresses; inbound ones too while the book
        // is small: a node that others reached first may have no outbound peer at all
        // (each duplicate connection keeps one direction), and would otherwise learn
        // addresses only from relays. Not over a block-relay-only link.
        if (!inbound || self.book.len() < wire::MAX_ADDRS) && self.relays_txs_and_addrs(peer) {
            if let Some(p) = self.peers.get_mut(&peer) {
                p.addrs.sent_getaddr = true;
            }
            self.send(peer, Message::GetAddr);
        }
        if claimed > our_best {
            if let Some(p) = self.peers.get_mut(&peer) {
                p.blocks.expect_more_work = true;
            }
            self.request_headers(peer);
        }
    }

    pub(super) fn on_pong(&mut self, peer: PeerId, n: u64) {
        let now = self.now_ms;
        let Some(p) = self.peers.get_mut(&peer) else { return };
        match p.ping {
            Ping::Waiting { nonce, sent_ms } if nonce == n => {
                let rtt = now.saturating_sub(sent_ms);
                p.rtt_ms = Some(rtt);
                p.link.min_rtt_ms = Some(p.link.min_rtt_ms.map_or(rtt, |m| m.min(rtt)));
                p.ping = Ping::Idle { since_ms: sent_ms };
            }
            _ => self.misbehave(peer, 10, "unsolicited pong"),
        }
    }

    pub(super) fn on_tick(&mut self) {
        let now = self.now_ms;
        self.waiting.expire(now);
        let c = self.config.clone();
        let mut drops = Vec::new();
        let mut pings = Vec::new();
        for (id, p) in self.peers.iter_mut() {
            match p.handshake {
                Handshake::AwaitingVersion { since_ms } | Handshake::AwaitingVerack { since_ms, .. } => {
                    if now.saturating_sub(since_ms) > c.handshake_timeout_ms {
                        drops.push((*id, DisconnectReason::HandshakeTimeout));
                    }
                    continue;
                }
                Handshake::Ready { .. } => {}
            }
            match p.ping {
                Ping::Waiting { sent_ms, .. } => {
                    if now.saturating_sub(sent_ms) > c.ping_timeout_ms {
                        drops.push((*id, DisconnectReason::PingTimeout));
                        continue;
                    }
                }
                Ping::Idle { since_ms } if now.saturating_sub(since_ms) >= c.ping_interval_ms => {
                    let nonce = self.rng.gen();
                    p.ping = Ping::Waiting { nonce, sent_ms: now };
                    pings.push((*id, nonce));
                }
                Ping::Idle { .. } => {}
            }
            if let Some(asked) = p.blocks.headers_asked_ms {
                if now.saturating_sub(asked) > c.headers_timeout_ms {
                    drops.push((*id, DisconnectReason::NoHeaders));
                }
            }
        }
        for (id, n) in pings {
            self.send(id, Message::Ping(n));
        }
        for id in self.downloads.stalled(now, c.block_timeout_ms) {
            drops.push((id, DisconnectReason::Stalled));
        }
        for (id, reason) in drops {
            self.disconnect(id, reason);
        }
        // Forget transfer requests nobody answered, so another peer can be asked.
        let expired: Vec<(Txid, PeerId)> = self
            .tx_requests
            .iter()
            .filter(|(_, (_, t))| now.saturating_sub(*t) > c.tx_request_timeout_ms)
            .map(|(tx, (p, _))| (*tx, *p))
            .collect();
        for (tx, p) in expired {
            self.tx_requests.remove(&tx);
            if let Some(p) = self.peers.get_mut(&p) {
                p.relay.requested_txs.remove(&tx);
            }
        }
        // The anchors are the first dials after a start (block-relay-only); other
        // block-relay-only links once the full-relay slots are taken.
        self.maintain_block_relay(false);
        self.maintain_outbound();
        self.maintain_block_relay(true);
        self.rotate_block_relay();
        self.check_stale_tip();
        self.schedule_downloads();
        self.update_syncing();
        if self.syncing {
            let (tip, target) = self.sync_target();
            let target = target.map_or(tip.height, |(h, _)| h);
            if let Some(p) = self.progress.due(now, c.progress_interval_ms, tip.height, target) {
                tracing::info!(
                    height = p.height,
                    target = p.target,
                    in_flight = self.downloads.total(),
                    peers = self.ready_peers().len(),
                    "sync progress: {}/{} ({:.1}%), {:.1} blocks/s, {:.1} transfers/s, ETA {}",
                    p.height,
                    p.target,
                    p.percent,
                    p.blocks_per_s,
                    p.transfers_per_s,
                    Eta(p.eta_s)
                );
            }
        }
        for (kind, suppressed) in self.log_limit.expire(now) {
            tracing::warn!(%kind, suppressed, "{suppressed} more lines like `{kind}` were not logged in the last minute");
        }
        self.book.expire_bans(now);
        if now.saturating_sub(self.last_save_ms) >= c.save_interval_ms && self.book.take_dirty() {
            self.last_save_ms = now;
            self.out.push(Output::Save(self.book.snapshot()));
        }
    }

    pub(super) fn maintain_outbound(&mut self) {
        let outbound = self.full_outbound();
        if outbound >= self.config.target_outbound || self.dialing.len() >= self.config.max_dialing {
            return;
        }
        let want = (self.config.target_outbound - outbound).min(self.config.max_dialing - self.dialing.len());
        let used = self.outbound_groups();
        let Protocol { book, rng, dialing, self_addrs, blocked, peers, now_ms, config, .. } = self;
        let exclude = |a: &SocketAddr| {
            // `--connect`: only the addresses the operator gave.
            (config.connect_only && !book.get(a).is_some_and(|e| e.seed))
                || not_dialable(dialing, self_addrs, blocked, peers, a)
        };
        let picks = book.pick_dial_candidates(want, *now_ms, exclude, &used, rng);
        for a in picks {
            self.dial(a);
        }
    }
}

/// Whether `a` is no dial candidate now: being dialled, one of our own addresses,
/// blocked by the operator, or a peer we are connected to (outbound to that address,
/// or inbound from a peer that announced it as its listen address). Takes the fields
/// apart so that callers can hold the address book mutably at the same time.
pub(super) fn not_dialable(
    dialing: &BTreeSet<SocketAddr>,
    self_addrs: &BTreeSet<SocketAddr>,
    blocked: &BTreeSet<SocketAddr>,
    peers: &BTreeMap<PeerId, Peer>,
    a: &SocketAddr,
) -> bool {
    dialing.contains(a)
        || self_addrs.contains(a)
        || blocked.contains(a)
        || peers.values().any(|p| (!p.inbound && p.addr == *a) || p.listen_addr == Some(*a))
}
