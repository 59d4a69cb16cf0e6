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

#[cfg(test)]
mod tests {
    //! Transfer announcements held until the outputs are drained, as a state machine:
    //! random sequences of transfers admitted (locally or from a peer, with edge amounts
    //! and fees: 0, 1, `u64::MAX`), outputs taken with and without the held `inv`s,
    //! peers dropped and blocks mined (which take transfers out of the mempool), against
    //! a model of what each peer must be told.
    #![allow(clippy::unwrap_used)] // test helpers fail loudly

    use super::super::eclipse::tests::version;
    use super::*;
    use crate::chain::Chain;
    use crate::mempool::Mempool;
    use crate::node::Node;
    use cairn_core::genesis::{dev_keys, Genesis};
    use cairn_core::transaction::Transfer;
    use cairn_core::{Address, Amount};
    use proptest::prelude::*;

    const PEERS: u64 = 3;

    /// A dev node and a protocol with peers 1..=PEERS ready (inbound, full relay).
    fn setup() -> (Genesis, Arc<Node>, Protocol) {
        let genesis = Genesis::dev();
        let node = Node::new(Chain::open_in_memory(&genesis), Mempool::new(1 << 24), genesis.clone());
        let mut proto = Protocol::new(node.clone(), Config::default(), Snapshot::default(), 7, 0);
        for peer in 1..=PEERS {
            let addr = SocketAddr::new([10, peer as u8, 0, 1].into(), 7333);
            proto.step(1, Input::Connected { peer, addr, inbound: true });
            proto.step(2, Input::Received { peer, msg: Message::Version(version(&genesis, 100 + peer)) });
            proto.step(3, Input::Received { peer, msg: Message::Verack });
            assert!(proto.peers[&peer].is_ready(), "peer {peer} ready");
        }
        proto.drain();
        (genesis, node, proto)
    }

    #[derive(Clone, Debug)]
    enum Op {
        /// A transfer from dev account `sender`, submitted through RPC (`from` 0) or
        /// announced and sent by peer `from`; admitted or refused by the node.
        Submit {
            sender: usize,
            amount: u64,
            fee: u64,
            from: u64,
        },
        /// Outputs taken after one input of a batch: no transfer `inv` may be among them.
        TakeHolding,
        /// The batch ends: the held `inv`s go out.
        Drain,
        Disconnect {
            peer: u64,
        },
        /// A block of the pending transfers, mined and connected.
        Mine,
    }

    fn edge() -> impl Strategy<Value = u64> {
        prop_oneof![Just(0), Just(1), Just(u64::MAX), 1u64..1_000]
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => (0..4usize, edge(), edge(), 0..=PEERS).prop_map(|(sender, amount, fee, from)| Op::Submit {
                sender,
                amount,
                fee,
                from
            }),
            2 => Just(Op::TakeHolding),
            2 => Just(Op::Drain),
            1 => (1..=PEERS).prop_map(|peer| Op::Disconnect { peer }),
            1 => Just(Op::Mine),
        ]
    }

    /// Transfer announcements among `outs`, per peer, in order; fails on one to a peer
    /// no longer connected, or an `inv` over the frame limit.
    fn tx_invs(outs: &[Output], connected: &BTreeSet<u64>) -> Result<BTreeMap<u64, Vec<Txid>>, String> {
        let mut got: BTreeMap<u64, Vec<Txid>> = BTreeMap::new();
        for o in outs {
            if let Output::Send(peer, Message::Inv(items)) = o {
                if items.len() > wire::MAX_INV {
                    return Err(format!("inv of {} items", items.len()));
                }
                for item in items {
                    if let InvItem::Tx(t) = item {
                        if !connected.contains(peer) {
                            return Err(format!("transfer {t} announced to peer {peer}, which is gone"));
                        }
                        got.entry(*peer).or_default().push(*t);
                    }
                }
            }
        }
        Ok(got)
    }

    fn run(ops: &[Op]) -> Result<(), TestCaseError> {
        let (genesis, node, mut proto) = setup();
        let keys = dev_keys();
        let mut nonces = [0u64; 4];
        let mut now = 10;
        // The model: peers connected; per peer, the transfers it must hear of at the
        // next drain, in order; transfers pending (admitted, not mined); per peer, every
        // transfer it was told of.
        let mut connected: BTreeSet<u64> = (1..=PEERS).collect();
        let mut owed: BTreeMap<u64, Vec<Txid>> = BTreeMap::new();
        let mut pending: BTreeSet<Txid> = BTreeSet::new();
        let mut told: BTreeMap<u64, BTreeSet<Txid>> = BTreeMap::new();
        for op in ops {
            now += 1;
            match op {
                Op::Submit { sender, amount, fee, from } => {
                    let key = &keys[*sender];
                    let tx = Transfer {
                        chain_id: genesis.params.chain_id,
                        nonce: nonces[*sender],
                        from: cairn_core::transaction::public_key_of(key),
                        to: Address([0x77; 20]),
                        amount: Amount(*amount),
                        fee: Amount(*fee),
                    }
                    .sign(key)
                    .unwrap();
                    let txid = tx.txid();
                    let admitted = if *from == 0 {
                        // Through RPC: the node's event reaches the protocol.
                        match node.verify_and_submit(tx, Origin::Rpc, now) {
                            Ok((_, event)) => {
                                proto.step(now, Input::Node(event));
                                true
                            }
                            Err(_) => false,
                        }
                    } else if connected.contains(from) {
                        // From a peer, as the wire has it: announced, asked for, sent.
                        let peer = *from;
                        proto.step(now, Input::Received { peer, msg: Message::Inv(vec![InvItem::Tx(txid)]) });
                        let checked = crate::node::verify(tx, genesis.params.chain_id);
                        proto.step(now, Input::Transfer { peer, checked });
                        if !proto.peers.contains_key(&peer) {
                            // Banned for an invalid transfer (the ban rules have tests
                            // of their own): it is owed nothing more.
                            connected.remove(&peer);
                            owed.remove(&peer);
                        }
                        node.mempool().contains(&txid)
                    } else {
                        false
                    };
                    if admitted {
                        nonces[*sender] += 1;
                        pending.insert(txid);
                        for p in connected.iter().filter(|p| **p != *from) {
                            owed.entry(*p).or_default().push(txid);
                        }
                    }
                }
                Op::TakeHolding => {
                    let got =
                        tx_invs(&proto.drain_holding_invs(), &connected).map_err(TestCaseError::fail)?;
                    prop_assert!(got.is_empty(), "transfer invs before the batch ended: {got:?}");
                }
                Op::Drain => {
                    let outs = proto.drain();
                    let got = tx_invs(&outs, &connected).map_err(TestCaseError::fail)?;
                    let want: BTreeMap<u64, Vec<Txid>> = std::mem::take(&mut owed)
                        .into_iter()
                        .map(|(p, v)| (p, v.into_iter().filter(|t| pending.contains(t)).collect::<Vec<_>>()))
                        .filter(|(_, v)| !v.is_empty())
                        .collect();
                    prop_assert_eq!(&got, &want);
                    for (peer, txids) in got {
                        let frames = outs
                            .iter()
                            .filter(|o| {
                                matches!(o, Output::Send(p, Message::Inv(items))
                                    if *p == peer && items.iter().any(|i| matches!(i, InvItem::Tx(_))))
                            })
                            .count();
                        prop_assert_eq!(
                            frames,
                            txids.len().div_ceil(wire::MAX_INV),
                            "one inv per peer (per MAX_INV transfers)"
                        );
                        let seen = told.entry(peer).or_default();
                        for t in txids {
                            prop_assert!(seen.insert(t), "peer {} told of {} twice", peer, t);
                        }
                    }
                }
                Op::Disconnect { peer } => {
                    if connected.remove(peer) {
                        owed.remove(peer);
                        proto
                            .step(now, Input::Disconnected { peer: *peer, reason: DisconnectReason::Closed });
                    }
                }
                Op::Mine => {
                    let mut block = crate::miner::block_template(&node, Address([9; 20])).unwrap();
                    prop_assert!(cairn_core::assemble::grind(&mut block.header, u64::MAX));
                    let mined: Vec<Txid> = block.txids();
                    let (result, event) = node.submit_block(block, Origin::Local, crate::now_ms()).unwrap();
                    prop_assert!(result.tip_change.is_some(), "the block connected: {:?}", result.acceptance);
                    for t in &mined {
                        pending.remove(t);
                    }
                    if let Some(event) = event {
                        proto.step(now, Input::Node(event));
                    }
                }
            }
            // Whatever was taken, nothing announced a transfer the node does not hold.
            for t in &pending {
                prop_assert!(node.mempool().contains(t), "model and mempool agree on {}", t);
            }
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]
        #[test]
        fn held_transfer_invs_follow_the_model(ops in proptest::collection::vec(op(), 1..60)) {
            run(&ops)?;
        }
    }

    /// More transfers than one frame holds, announced in one batch: each peer gets them
    /// as full `inv`s of [`wire::MAX_INV`] and one for the rest.
    #[test]
    fn a_large_batch_goes_out_in_frames_of_max_inv() {
        let (genesis, node, mut proto) = setup();
        let keys = dev_keys();
        let count = 2 * wire::MAX_INV + 1;
        for i in 0..count {
            let key = &keys[i % 5];
            let tx = Transfer {
                chain_id: genesis.params.chain_id,
                nonce: (i / 5) as u64,
                from: cairn_core::transaction::public_key_of(key),
                to: Address([0x77; 20]),
                amount: Amount(1),
                fee: Amount(1),
            }
            .sign(key)
            .unwrap();
            let (_, event) = node.verify_and_submit(tx, Origin::Rpc, 10).unwrap();
            proto.step(10, Input::Node(event));
            assert!(proto.drain_holding_invs().is_empty());
        }
        let outs = proto.drain();
        for peer in 1..=PEERS {
            let sizes: Vec<usize> = outs
                .iter()
                .filter_map(|o| match o {
                    Output::Send(p, Message::Inv(items)) if *p == peer => Some(items.len()),
                    _ => None,
                })
                .collect();
            assert_eq!(sizes, vec![wire::MAX_INV, wire::MAX_INV, 1], "peer {peer}");
        }
    }
}
