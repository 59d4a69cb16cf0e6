//! Headers-first sync: `getheaders`/`headers` (with the low-work presync screen), block
//! bodies requested toward each peer's best block, received blocks, and the syncing
//! state.

use super::*;

/// A block a peer sent: as decoded, or already checked by the driver's reader.
enum Received {
    Decoded(Block),
    Checked(Box<CheckedBlock>),
}

impl Protocol {
    /// Remembers `hash` as the peer's best block if it has more work than the best one
    /// it showed us before.
    pub(super) fn note_best(&mut self, peer: PeerId, hash: BlockHash) {
        let Some(work) = self.ledger.work_of(&hash) else { return };
        let Some(p) = self.peers.get_mut(&peer) else { return };
        if p.blocks.best_known.is_none_or(|(_, w)| work > w) {
            p.blocks.best_known = Some((hash, work));
        }
    }

    /// Sends `getheaders` from our best chain, unless one is already out to this peer
    /// (then asks again once it is answered).
    pub(super) fn request_headers(&mut self, peer: PeerId) {
        let now = self.now_ms;
        let Some(p) = self.peers.get_mut(&peer) else { return };
        if p.blocks.headers_asked_ms.is_some() {
            p.blocks.headers_again = true;
            return;
        }
        p.blocks.headers_asked_ms = Some(now);
        p.blocks.headers_again = false;
        let locator = self.locator(None);
        self.send(peer, Message::GetHeaders(GetHeaders { locator, stop: BlockHash::ZERO }));
    }

    /// Our best-chain locator, optionally led by a hash we just learned (to continue a
    /// long header download past our tip).
    pub(super) fn locator(&self, first: Option<BlockHash>) -> Vec<BlockHash> {
        let mut locator: Vec<BlockHash> = first.into_iter().collect();
        locator.extend(self.ledger.locator());
        locator.truncate(wire::MAX_LOCATOR);
        locator
    }

    pub(super) fn on_getheaders(&mut self, peer: PeerId, g: GetHeaders) {
        let mut headers = self.ledger.headers_after(&g.locator, wire::MAX_HEADERS);
        if g.stop != BlockHash::ZERO {
            if let Some(i) = headers.iter().position(|h| h.hash() == g.stop) {
                headers.truncate(i + 1);
            }
        }
        if let Some(last) = headers.last() {
            self.mark_known(peer, InvItem::Block(last.hash()));
        }
        self.send(peer, Message::Headers(headers));
    }

    pub(super) fn on_headers(&mut self, peer: PeerId, headers: Vec<BlockHeader>) {
        let now = self.now_ms;
        let Some(p) = self.peers.get_mut(&peer) else { return };
        if p.blocks.headers_asked_ms.take().is_none() {
            self.misbehave(peer, 20, "unrequested headers");
            return;
        }
        let again = std::mem::take(&mut p.blocks.headers_again);
        if headers.is_empty() {
            // Whatever branch was being checked ends here.
            p.blocks.presync = None;
            let expected = std::mem::take(&mut p.blocks.expect_more_work);
            let claimed = p.blocks.claimed_work;
            if expected && claimed > self.ledger.tip().total_work {
                self.disconnect(peer, DisconnectReason::NoHeaders);
            }
            return;
        }
        p.blocks.expect_more_work = false;
        if self.screen_low_work(peer, &headers, again) {
            return;
        }
        // The chain checks each header against its parent; a list that is not a chain
        // fails there as an unconnected or invalid header.
        let result = match self.ledger.submit_headers(&headers, now) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "storing headers failed");
                return;
            }
        };
        if let Some(why) = &result.invalid {
            self.misbehave(peer, limits::BAN_SCORE, why);
            return;
        }
        // The peer's best block: the last of these headers that we indexed.
        let shown = headers.iter().rev().map(BlockHeader::hash).find(|h| self.ledger.work_of(h).is_some());
        if let Some(h) = shown {
            self.note_best(peer, h);
        }
        let Some(p) = self.peers.get_mut(&peer) else { return };
        if result.unconnected {
            p.blocks.unconnected_headers += 1;
            if p.blocks.unconnected_headers >= limits::MAX_UNCONNECTED_HEADERS {
                self.misbehave(peer, 50, "headers that do not connect");
            } else {
                self.request_headers(peer);
            }
            return;
        }
        let last = headers[headers.len() - 1];
        let last_hash = last.hash();
        for h in &headers {
            p.relay.known.insert(InvItem::Block(h.hash()));
        }
        p.best_height = p.best_height.max(last.height);
        if result.added > 0 {
            tracing::debug!(peer, added = result.added, height = last.height, "headers");
        }
        if headers.len() == wire::MAX_HEADERS {
            // A full batch: there may be more.
            p.blocks.headers_asked_ms = Some(now);
            let locator = self.locator(Some(last_hash));
            self.send(peer, Message::GetHeaders(GetHeaders { locator, stop: BlockHash::ZERO }));
        } else if again {
            self.request_headers(peer);
        }
        self.schedule_downloads();
    }

    /// Keeps the headers of a branch with less work than ours out of the chain until the
    /// branch proves it has enough ([`super::presync`]). Returns true when it dealt with
    /// the batch; false when the batch is to be stored as usual.
    pub(super) fn screen_low_work(&mut self, peer: PeerId, headers: &[BlockHeader], again: bool) -> bool {
        let (threshold, params) = {
            let (params, tip_work, next_work) = self.ledger.presync_basis();
            (presync::threshold(tip_work, next_work), params)
        };
        let Some(p) = self.peers.get_mut(&peer) else { return true };
        if let Some(ps) = p.blocks.presync.as_ref().filter(|ps| ps.is_redownloading()) {
            return match ps.check_redownload(headers) {
                Ok(done) => {
                    if done {
                        p.blocks.presync = None;
                    }
                    false
                }
                Err(e) => {
                    p.blocks.presync = None;
                    self.misbehave(peer, limits::BAN_SCORE, &e.to_string());
                    true
                }
            };
        }
        if p.blocks.presync.is_none() {
            // An unconnected batch, or one we already have, goes the usual way.
            let Some((fork, work, recent)) = self.ledger.header_context(&headers[0].prev) else {
                return false;
            };
            if self.ledger.work_of(&headers[headers.len() - 1].hash()).is_some() {
                return false;
            }
            let end = headers.iter().fold(work, |w, h| w.saturating_add(h.target.work()));
            if end >= threshold {
                return false;
            }
            let offset = self.rng.gen();
            let Some(p) = self.peers.get_mut(&peer) else { return true };
            tracing::debug!(peer, fork = %fork.hash, "low-work headers: checking before storing");
            p.blocks.presync = Some(Presync::new(fork, work, recent, offset));
        }
        let Some(p) = self.peers.get_mut(&peer) else { return true };
        let Some(ps) = p.blocks.presync.as_mut() else { return true };
        let full = headers.len() == wire::MAX_HEADERS;
        match ps.feed(headers, full, &params, self.now_ms, threshold) {
            Ok(Next::More(from)) | Ok(Next::Redownload(from)) => {
                if ps.is_redownloading() {
                    tracing::debug!(peer, "low-work branch reached our work: fetching its headers again");
                }
                p.blocks.headers_asked_ms = Some(self.now_ms);
                let locator = self.locator(Some(from));
                self.send(peer, Message::GetHeaders(GetHeaders { locator, stop: BlockHash::ZERO }));
            }
            Ok(Next::Done) => {
                p.blocks.presync = None;
                tracing::debug!(peer, "low-work branch ended below our work: nothing stored");
                if again {
                    self.request_headers(peer);
                }
            }
            Err(PresyncError::NotContinued) => {
                // Not the branch we were checking (its chain may have changed): start over.
                p.blocks.presync = None;
                return self.screen_low_work(peer, headers, again);
            }
            Err(e @ PresyncError::Invalid(_, BlockError::TimestampTooNew { .. })) => {
                p.blocks.presync = None;
                tracing::debug!(peer, error = %e, "low-work branch from the future: dropped");
            }
            Err(e) => {
                p.blocks.presync = None;
                self.misbehave(peer, limits::BAN_SCORE, &e.to_string());
            }
        }
        true
    }

    pub(super) fn on_block(&mut self, peer: PeerId, block: Block) {
        self.on_received_block(peer, Received::Decoded(block));
    }

    /// [`Input::CheckedBlock`]: a `block` whose stateless checks the driver's reader ran.
    pub(super) fn on_checked_block(&mut self, peer: PeerId, block: Box<CheckedBlock>) {
        if !self.peers.get(&peer).is_some_and(Peer::is_ready) {
            // What the `block` message gets from a peer still in its handshake.
            self.on_message(peer, Message::Block(Box::new(block.into_block())));
            return;
        }
        self.on_received_block(peer, Received::Checked(block));
    }

    fn on_received_block(&mut self, peer: PeerId, block: Received) {
        let (hash, header) = match &block {
            Received::Decoded(b) => (b.hash(), b.header),
            Received::Checked(c) => (c.hash(), c.block().header),
        };
        if !self.downloads.received(&hash, peer) {
            self.misbehave(peer, 20, "unrequested block");
            return;
        }
        let height = header.height;
        if let Some(p) = self.peers.get_mut(&peer) {
            p.relay.known.insert(InvItem::Block(hash));
            p.best_height = p.best_height.max(height);
            if let Some(l) = p.listen_addr {
                self.book.mark_delivered(&l);
            }
        }
        let (origin, now) = (Origin::Peer(peer), self.now_ms);
        let (transfers, submitted) = match block {
            Received::Decoded(b) => {
                (b.transactions.len().saturating_sub(1), self.ledger.submit_block(b, origin, now))
            }
            Received::Checked(c) => (
                c.block().transactions.len().saturating_sub(1),
                self.ledger.submit_checked_block(*c, origin, now),
            ),
        };
        match submitted {
            Ok((outcome, event)) => {
                match outcome {
                    BlockOutcome::Invalid(why) => self.misbehave(peer, limits::BAN_SCORE, &why),
                    BlockOutcome::Orphan => self.request_headers(peer),
                    BlockOutcome::Connected | BlockOutcome::Stored => {
                        if let Some(p) = self.peers.get_mut(&peer) {
                            p.link.last_block_ms = self.now_ms;
                        }
                        self.progress.add_transfers(transfers);
                        self.note_best(peer, hash);
                    }
                }
                // Relay the new tip in this very step.
                if let Some(event) = event {
                    self.on_node_event(event);
                }
            }
            Err(e) => tracing::error!(error = %e, "storing a block failed"),
        }
        self.schedule_downloads();
    }

    /// Hands missing blocks to peers with room, least loaded first. Each peer is asked
    /// only for blocks on the way from our best chain to its best block
    /// ([`Peer::best_known`]), so a branch that only a vanished or lying peer showed us
    /// is never waited for: the other peers' chains download regardless, and the tip
    /// follows the most-work chain whose blocks actually arrive.
    pub(super) fn schedule_downloads(&mut self) {
        let now = self.now_ms;
        let max = self.config.max_blocks_in_flight_per_peer;
        let window = self.config.download_window;
        let tip_work = self.ledger.tip().total_work;
        let mut by_target: BTreeMap<BlockHash, Vec<PeerId>> = BTreeMap::new();
        let mut room = 0;
        for (id, p) in &self.peers {
            if !p.is_ready() || self.downloads.count(*id) >= max {
                continue;
            }
            if let Some((h, w)) = p.blocks.best_known {
                if w > tip_work {
                    by_target.entry(h).or_default().push(*id);
                    room += max - self.downloads.count(*id);
                }
            }
        }
        if by_target.is_empty() {
            return;
        }
        // Every block some target lacks, lowest first, with the peers that can serve it.
        let mut wanted: BTreeMap<(u64, BlockHash), Vec<PeerId>> = BTreeMap::new();
        for (target, peers) in &by_target {
            for (height, hash) in self.ledger.missing_blocks(target, window) {
                if self.downloads.is_in_flight(&hash) {
                    continue;
                }
                wanted.entry((height, hash)).or_default().extend(peers.iter().copied());
            }
        }
        let mut batches: BTreeMap<PeerId, Vec<InvItem>> = BTreeMap::new();
        let next_height = self.ledger.tip().height.saturating_add(1);
        // A block is asked for compact only when it is the one block being fetched (a
        // new tip), as Bitcoin Core does: while blocks are fetched in a batch (a sync),
        // the next one's transfers are not in our mempool either, and its compact form
        // would cost a `getblocktxn` round trip, its transfers' signatures checked
        // twice, and the blocks behind it waiting for it.
        let lone = wanted.len() == 1 && self.downloads.total() == 0;
        for ((height, hash), peers) in wanted {
            if room == 0 {
                break;
            }
            let best = peers
                .iter()
                .filter(|id| self.downloads.count(**id) < max)
                .min_by_key(|id| (self.downloads.count(**id), **id));
            let Some(&peer) = best else { continue };
            self.downloads.request(hash, peer, now);
            room -= 1;
            let item = self.download_item(peer, hash, lone && height == next_height);
            batches.entry(peer).or_default().push(item);
        }
        for (peer, items) in batches {
            for chunk in items.chunks(limits::MAX_BLOCKS_PER_GETDATA) {
                self.send(peer, Message::GetData(chunk.to_vec()));
            }
        }
    }

    /// Our tip, and the height and work of the most-work block a ready peer has shown us
    /// that beats it (what we are syncing toward), if any.
    pub(super) fn sync_target(&self) -> (Tip, Option<(u64, Work)>) {
        let tip = self.ledger.tip();
        let target = self
            .peers
            .values()
            .filter(|p| p.is_ready())
            .filter_map(|p| p.blocks.best_known)
            .filter(|(h, w)| *w > tip.total_work && self.ledger.work_of(h).is_some())
            .max_by_key(|(_, w)| *w)
            .and_then(|(h, w)| Some((self.ledger.height_of(&h)?, w)));
        (tip, target)
    }

    /// Syncing: a ready peer has shown us a block with more work than our tip, or has
    /// claimed more work in its handshake and its headers are on their way. A header-only
    /// branch that no connected peer offers does not count (nobody could deliver it).
    pub(super) fn update_syncing(&mut self) {
        let (tip, target) = self.sync_target();
        let peer_ahead = self
            .peers
            .values()
            .any(|p| p.is_ready() && p.blocks.expect_more_work && p.blocks.claimed_work > tip.total_work);
        let syncing = target.is_some() || peer_ahead;
        let target_height = target.map_or(tip.height, |(h, _)| h);
        if syncing && !self.sync_logged && target_height > tip.height.saturating_add(1) {
            // Fetching the one new block a peer announced is not worth an info line; a
            // real catch-up is.
            tracing::info!(height = tip.height, target = target_height, "sync started");
            self.sync_logged = true;
        }
        if syncing != self.syncing {
            if syncing {
                self.progress.restart(self.now_ms, tip.height);
            }
            if !syncing && std::mem::take(&mut self.sync_logged) {
                tracing::info!(height = tip.height, hash = %tip.hash, "sync finished");
            }
            self.syncing = syncing;
            if !syncing {
                // Tips reached while syncing were not announced; announce where we are.
                self.announce(InvItem::Block(tip.hash), Origin::Local);
            }
        }
    }
}
