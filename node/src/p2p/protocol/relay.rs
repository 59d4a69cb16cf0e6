//! Relay: inventory (`inv`, `getdata`, `notfound`), transfers from peers (checked,
//! submitted, held while their predecessor is missing), and the node's events
//! (announce new tips and transfers, release waiting transfers).

use super::*;

impl Protocol {
    pub(super) fn on_inv(&mut self, peer: PeerId, items: Vec<InvItem>) {
        let now = self.now_ms;
        let Some(p) = self.peers.get_mut(&peer) else { return };
        if now.saturating_sub(p.relay.inv_window_start) > limits::INV_WINDOW_MS {
            p.relay.inv_window_start = now;
            p.relay.inv_in_window = 0;
        }
        p.relay.inv_in_window = p.relay.inv_in_window.saturating_add(items.len() as u32);
        // Past the budget, the window's transfer announcements are ignored, not punished:
        // an honest node relaying a busy network can announce that many. Block
        // announcements are still heard (one `getheaders` per message at most).
        let over_budget = p.relay.inv_in_window > limits::MAX_INV_PER_WINDOW;
        let mut want_txs = Vec::new();
        let mut new_block = false;
        let mut known_blocks = Vec::new();
        {
            let ledger = &self.ledger;
            for item in &items {
                if over_budget && matches!(item, InvItem::Tx(_)) {
                    continue;
                }
                p.relay.known.insert(*item);
                match item {
                    InvItem::Block(h) | InvItem::CmpctBlock(h) => {
                        if ledger.work_of(h).is_some() {
                            known_blocks.push(*h);
                        } else if !ledger.is_known(h) {
                            new_block = true;
                        }
                    }
                    InvItem::Tx(t) => {
                        if !p.link.block_relay_only
                            && !ledger.has_transfer(t)
                            && !self.recent_rejects.contains(t)
                            && !self.waiting.contains(t)
                            && !self.tx_requests.contains_key(t)
                            && self.tx_requests.len() < limits::MAX_TX_REQUESTS
                        {
                            want_txs.push(*t);
                        }
                    }
                }
            }
        }
        let noted = !known_blocks.is_empty();
        for h in known_blocks {
            self.note_best(peer, h);
        }
        if new_block {
            self.request_headers(peer);
        }
        if noted {
            self.schedule_downloads();
        }
        if !want_txs.is_empty() {
            let Some(p) = self.peers.get_mut(&peer) else { return };
            for t in &want_txs {
                p.relay.requested_txs.insert(*t);
                self.tx_requests.insert(*t, (peer, now));
            }
            self.send(peer, Message::GetData(want_txs.into_iter().map(InvItem::Tx).collect()));
        }
    }

    pub(super) fn on_getdata(&mut self, peer: PeerId, items: Vec<InvItem>) {
        let blocks = items.iter().filter(|i| matches!(i, InvItem::Block(_) | InvItem::CmpctBlock(_))).count();
        if blocks > limits::MAX_BLOCKS_PER_GETDATA {
            self.misbehave(peer, 50, "getdata asks for too many blocks");
            return;
        }
        let mut not_found = Vec::new();
        for item in items {
            match item {
                // The index says whether the body is stored; the driver reads it, off
                // this thread (see `Output::ServeBlock`).
                InvItem::Block(h) if self.ledger.has_block(&h) => {
                    self.mark_known(peer, item);
                    self.out.push(Output::ServeBlock { peer, hash: h, serve: Serve::Block });
                }
                InvItem::Block(_) => not_found.push(item),
                InvItem::CmpctBlock(h) => {
                    if !self.serve_compact(peer, h) {
                        not_found.push(item);
                    }
                }
                InvItem::Tx(t) => {
                    let tx = self.ledger.transfer(&t);
                    match tx {
                        Some(tx) => {
                            self.mark_known(peer, item);
                            self.send(peer, Message::Tx(tx));
                        }
                        None => not_found.push(item),
                    }
                }
            }
        }
        if !not_found.is_empty() {
            self.send(peer, Message::NotFound(not_found));
        }
    }

    pub(super) fn on_notfound(&mut self, peer: PeerId, items: Vec<InvItem>) {
        let mut undelivered = false;
        for item in items {
            match item {
                InvItem::Block(h) | InvItem::CmpctBlock(h) => {
                    // We only ask a peer for blocks on the way to its own best block,
                    // whose bodies it keeps: "not found" means it showed us a chain it
                    // cannot or will not deliver.
                    undelivered |= self.downloads.received(&h, peer);
                }
                InvItem::Tx(t) => {
                    if let Some(p) = self.peers.get_mut(&peer) {
                        if p.relay.requested_txs.remove(&t) {
                            self.tx_requests.remove(&t);
                        }
                    }
                }
            }
        }
        if undelivered {
            self.disconnect(peer, DisconnectReason::NotDelivered);
        }
        self.schedule_downloads();
    }

    pub(super) fn on_tx(&mut self, peer: PeerId, checked: Checked) {
        let txid = match &checked {
            Ok(v) => v.txid(),
            Err(r) => r.txid,
        };
        let Some(p) = self.peers.get_mut(&peer) else { return };
        if !p.relay.requested_txs.remove(&txid) {
            self.misbehave(peer, 10, "unrequested transfer");
            return;
        }
        p.relay.known.insert(InvItem::Tx(txid));
        self.tx_requests.remove(&txid);
        let tx = match checked {
            Ok(v) => v,
            Err(r) => {
                self.recent_rejects.insert(txid);
                self.misbehave(peer, limits::BAN_SCORE, &format!("invalid transfer: {}", r.error));
                return;
            }
        };
        let (outcome, event) = self.ledger.submit_transfer(tx, Origin::Peer(peer), self.now_ms);
        match outcome {
            TransferOutcome::Admitted => {
                if let Some(p) = self.peers.get_mut(&peer) {
                    p.link.last_tx_ms = self.now_ms;
                }
            }
            TransferOutcome::Duplicate => {}
            TransferOutcome::NonceGap => {
                // Its predecessor is still on its way (perhaps from another peer): wait
                // for it rather than fetch this one again.
                if !self.waiting.hold(tx, peer, self.now_ms) {
                    tracing::debug!(peer, %txid, "nonce gap and no room to wait: dropped");
                }
            }
            TransferOutcome::Rejected { reason, temporary, peer_fault } => {
                // A refusal that may pass later (missing funds; a full pool) is not
                // remembered, so the transfer is fetched again when another peer
                // announces it.
                if !temporary {
                    self.recent_rejects.insert(txid);
                }
                if peer_fault {
                    self.misbehave(peer, limits::BAN_SCORE, &format!("invalid transfer: {reason}"));
                }
            }
        }
        if let Some(event) = event {
            self.on_node_event(event);
        }
    }

    pub(super) fn on_node_event(&mut self, event: NodeEvent) {
        match event {
            NodeEvent::NewTip { tip, origin, .. } => {
                self.retry_waiting();
                self.update_syncing();
                if self.syncing {
                    return; // announcing every block of a long download helps nobody
                }
                if let Origin::Peer(p) = origin {
                    self.delivered_first(p);
                }
                self.announce(InvItem::Block(tip.hash), origin);
                self.schedule_downloads();
            }
            NodeEvent::NewTransfer { txid, origin } => self.on_admitted(txid, origin),
            NodeEvent::BlockPrechecked { block, txids } => {
                if !self.syncing {
                    self.push_prechecked(block, &txids);
                }
            }
        }
    }

    /// `txid` entered the mempool: announces it, then admits the transfers of the same
    /// sender waiting for the next nonces, one after another, announcing each.
    pub(super) fn on_admitted(&mut self, txid: Txid, origin: Origin) {
        self.announce(InvItem::Tx(txid), origin);
        let mut last = txid;
        while !self.waiting.is_empty() {
            let Some(tx) = self.ledger.transfer(&last) else { return };
            let next = tx.transfer.nonce.saturating_add(1);
            let Some(w) = self.waiting.take(&tx.transfer.sender(), next) else { return };
            let Some((txid, origin)) = self.admit_waiting(w) else { return };
            self.announce(InvItem::Tx(txid), origin);
            last = txid;
        }
    }

    /// A block moved some senders' nonces: drops waiting transfers left behind and
    /// admits those that are next now.
    pub(super) fn retry_waiting(&mut self) {
        for (sender, _) in self.waiting.senders() {
            let next = match self.ledger.next_nonce(&sender) {
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!(error = %e, "reading an account failed");
                    return;
                }
            };
            self.waiting.drop_below(&sender, next);
            if let Some(w) = self.waiting.take(&sender, next) {
                if let Some((txid, origin)) = self.admit_waiting(w) {
                    self.on_admitted(txid, origin);
                }
            }
        }
    }

    /// Submits a waiting transfer (verified when it arrived) as from the peer that sent
    /// it; its txid and origin if admitted.
    pub(super) fn admit_waiting(&mut self, w: waiting::Waiting) -> Option<(Txid, Origin)> {
        let txid = w.tx.txid();
        match self.ledger.submit_transfer(w.tx, Origin::Peer(w.peer), self.now_ms) {
            (TransferOutcome::Admitted, Some(NodeEvent::NewTransfer { txid, origin })) => {
                Some((txid, origin))
            }
            (TransferOutcome::Admitted | TransferOutcome::Duplicate, _) => None,
            (outcome, _) => {
                tracing::debug!(%txid, ?outcome, "waiting transfer refused");
                None
            }
        }
    }
}
