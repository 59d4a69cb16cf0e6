//! Transfers with extreme amounts through every remote path into a real `cairn-node`'s
//! mempool and chain: RPC `tx_submit`, a peer relaying `tx`, a peer's `block`, a reorg
//! returning transfers to the mempool, and a peer's transfer released from the waiting
//! pool (node/src/p2p/waiting.rs).
//!
//! The amounts sit on the edges of `u64`: amount + fee exactly `u64::MAX` (valid in
//! itself), amount `u64::MAX` with fee 1 (overflows), amount `u64::MAX - fee`, fee
//! `u64::MAX`, pending sums and fee sums past `u64::MAX`, and the three `tx_submit`
//! calls of issue 15 that made a debug node panic and poison its locks. Each case
//! checks what an operator would notice: the node never panics, every refusal says why
//! (an RPC error, or the reason a peer was dropped for), nothing admitted before is
//! lost, and afterwards the node still answers `chain_getInfo`, talks to a new peer,
//! admits a normal transfer and connects a block carrying it.
//!
//! The victims do not mine (but one, to show a miner survives pending fees that
//! overflow): the blocks come from the test (valid proof of work on a
//! fast chain, [`write_fast_genesis`]), so what the chain holds is known exactly. The
//! "whale" chain gives dev account 1 all but two dev balances of `u64::MAX`, so
//! transfers near the limits are affordable and sums over them overflow.
#![allow(clippy::unwrap_used)]

use cairn_core::block::Block;
use cairn_core::genesis::{dev_keys, Allocation, Genesis, DEV_BALANCE};
use cairn_core::transaction::{address_of, Coinbase, Transaction};
use cairn_core::{encoding, Address, Amount, SignedTransfer};
use cairn_tests::adversary::*;
use cairn_tests::*;
use serde_json::{json, Value};
use std::time::Duration;

const MAX: u64 = u64::MAX;
const DEV: u64 = DEV_BALANCE.0;
/// Dev account 1's balance on the whale chain: with accounts 0 and 2 at [`DEV`] each,
/// the allocations sum to exactly `u64::MAX`.
const WHALE: u64 = MAX - 2 * DEV;
const WHALE_KEY: usize = 1;
/// The account every test transfer pays (unless a case needs another).
const SINK: Address = Address([0x5a; 20]);
/// Dev account used for the "still works" transfer; no case touches it otherwise.
const BYSTANDER: usize = 2;
const T: Duration = Duration::from_secs(10);

enum Chain {
    /// The dev accounts and balances.
    Dev,
    /// Dev accounts 0 and 2 with [`DEV`], account 1 with [`WHALE`].
    Whale,
}

struct Victim {
    genesis: Genesis,
    node: NodeProcess,
    magic: [u8; 4],
    /// Last, so it is removed after the node (whose log is printed on failure).
    _tmp: tempfile::TempDir,
}

impl Victim {
    /// A non-mining node on a fast chain (500 ms blocks, easy proof of work).
    fn start(chain: Chain) -> Victim {
        Self::start_in(tempfile::tempdir().unwrap(), chain, false)
    }

    /// As [`Victim::start`], mining (paying dev account 9) if `mine`.
    fn start_in(tmp: tempfile::TempDir, chain: Chain, mine: bool) -> Victim {
        let path = write_fast_genesis(tmp.path(), 500).unwrap();
        let mut genesis = Genesis::from_json(&std::fs::read_to_string(&path).unwrap()).unwrap();
        if let Chain::Whale = chain {
            genesis.name = "cairn-e2e-whale".into();
            let keys = dev_keys();
            genesis.allocations = [(0, DEV), (WHALE_KEY, WHALE), (BYSTANDER, DEV)]
                .into_iter()
                .map(|(i, balance)| Allocation { address: address_of(&keys[i]), balance: Amount(balance) })
                .collect();
            genesis.check().unwrap();
            std::fs::write(&path, genesis.to_json()).unwrap();
        }
        let node = NodeProcess::start(
            &tmp.path().join("victim"),
            &NodeOptions {
                genesis: Some(path),
                mine,
                miner_address: mine.then(|| dev_address(9)),
                ..NodeOptions::default()
            },
        )
        .unwrap();
        let magic = magic_of(&genesis);
        Victim { genesis, node, magic, _tmp: tmp }
    }

    fn chain_id(&self) -> u32 {
        self.genesis.params.chain_id
    }

    /// A transfer from dev account `key` to [`SINK`].
    fn tx(&self, key: usize, nonce: u64, amount: u64, fee: u64) -> SignedTransfer {
        dev_transfer(key, self.chain_id(), nonce, SINK, amount, fee)
    }

    fn submit(&self, tx: &SignedTransfer) -> anyhow::Result<Value> {
        self.node.rpc("tx_submit", json!([hex::encode(encoding::encode(tx))]))
    }

    fn admit(&self, tx: &SignedTransfer, case: &str) {
        self.assert_no_panic(case);
        if let Err(e) = self.submit(tx) {
            panic!("{case}: tx_submit refused a valid transfer: {e:#}");
        }
    }

    /// `tx_submit` must refuse `tx` with code -32010 and a reason naming one of
    /// `reasons`; returns the message.
    fn refuse(&self, tx: &SignedTransfer, reasons: &[&str], case: &str) -> String {
        let msg = match self.submit(tx) {
            Ok(v) => panic!("{case}: admitted as {v}"),
            Err(e) => format!("{e:#}"),
        };
        self.assert_no_panic(case);
        eprintln!("{case}: {msg}");
        assert!(msg.starts_with("rpc error -32010: transfer refused: "), "{case}: not a refusal: {msg}");
        assert!(reasons.iter().any(|r| msg.contains(r)), "{case}: reason is none of {reasons:?}: {msg}");
        msg
    }

    /// Sorted txids in the mempool.
    fn pending(&self) -> Vec<String> {
        let info = self.node.rpc("mempool_getInfo", json!([])).unwrap();
        let mut ids: Vec<String> =
            info["txids"].as_array().unwrap().iter().map(|t| t.as_str().unwrap().to_string()).collect();
        ids.sort();
        ids
    }

    fn assert_pending(&self, txs: &[&SignedTransfer], case: &str) {
        let mut want: Vec<String> = txs.iter().map(|t| t.txid().to_hex()).collect();
        want.sort();
        assert_eq!(self.pending(), want, "{case}: the mempool holds other transfers than expected");
    }

    fn wait_pending(&self, tx: &SignedTransfer, case: &str) {
        let id = tx.txid().to_hex();
        wait_until(T, &format!("{case}: {id} in the mempool"), || {
            self.assert_no_panic(case);
            Ok(self.pending().contains(&id).then_some(()))
        });
    }

    fn status(&self, tx: &SignedTransfer) -> Value {
        self.node.rpc("chain_getTransaction", json!([tx.txid().to_hex()])).unwrap()["status"].clone()
    }

    /// The node's log must not show a panic (a debug build panics on overflow).
    fn assert_no_panic(&self, case: &str) {
        let log = self.node.log_text();
        if let Some(line) = log.lines().find(|l| l.contains("panicked")) {
            panic!("{case}: the node panicked: {line}");
        }
    }

    /// A new connection that completed the handshake, claiming no work.
    fn peer(&self, ua: &str) -> Peer {
        let mut p = Peer::connect(self.node.p2p_addr, self.magic).unwrap();
        p.handshake(&VersionFields::for_genesis(&self.genesis, [0; 32], ua)).unwrap();
        p
    }

    /// Relays `tx` from `p` and waits until the node has handled it (a pong, or the
    /// node closing the connection). Returns false if the node closed it.
    fn relay(&self, p: &mut Peer, tx: &SignedTransfer, case: &str) -> bool {
        match p.relay_transfer(tx, T) {
            Ok(true) => {}
            Ok(false) => panic!("{case}: the node did not ask for the transfer"),
            Err(e) => panic!("{case}: connection closed before the transfer was asked for: {e:#}"),
        }
        let handled = p.ping_pong(T);
        self.assert_no_panic(case);
        match handled {
            Ok(true) => true,
            Ok(false) => panic!("{case}: no pong after the transfer: the P2P thread stopped"),
            Err(_) => false,
        }
    }

    /// Serves `blocks` from a new peer and waits until the tip is the last of them.
    fn connect_blocks(&self, blocks: &[Block], case: &str) {
        let mut p = self.peer(&format!("hostile/{}", random_u64()));
        let sent = p.serve_blocks(blocks, T).unwrap();
        assert_eq!(
            sent.len(),
            blocks.len(),
            "{case}: the node asked for {} of {} blocks",
            sent.len(),
            blocks.len()
        );
        let want = blocks.last().unwrap().hash().to_hex();
        wait_until(T, &format!("{case}: tip {want}"), || {
            self.assert_no_panic(case);
            Ok((self.node.best_hash()? == want).then_some(()))
        });
        p.close();
    }

    /// Serves `blocks` (the last one invalid) from a new peer: the node must reject the
    /// invalid block with a reason naming one of `reasons` (in the log line of the
    /// peer's ban), keep its tip below it, and ban the peer.
    fn reject_block(&self, blocks: &[Block], reasons: &[&str], case: &str) {
        let tip_before = self.node.best_hash().unwrap();
        let mut p = self.peer(&format!("hostile/{}", random_u64()));
        let bad = blocks.last().unwrap().hash();
        let sent = p.serve_blocks(blocks, T).unwrap();
        assert!(sent.contains(&bad), "{case}: the node never asked for the invalid block");
        assert_eq!(
            p.wait_closed(T),
            Closed::Yes,
            "{case}: the peer that sent an invalid block is still connected"
        );
        let marker = format!("invalid block {}", bad.to_hex());
        let line = wait_until(T, &format!("{case}: the log to name {marker}"), || {
            self.assert_no_panic(case);
            Ok(self.node.log_text().lines().find(|l| l.contains(&marker)).map(without_colours))
        });
        eprintln!("{case}: {line}");
        assert!(reasons.iter().any(|r| line.contains(r)), "{case}: reason is none of {reasons:?}: {line}");
        let tip = self.node.best_hash().unwrap();
        assert_ne!(tip, bad.to_hex(), "{case}: the invalid block is the tip");
        if blocks.len() == 1 {
            assert_eq!(tip, tip_before, "{case}: the tip moved");
        }
    }

    /// What every case ends with: no panic, `chain_getInfo` answers, a new peer gets
    /// its handshake and a pong, a normal transfer from the bystander is admitted, and
    /// a block carrying it is connected and confirms it.
    fn assert_works(&self, case: &str) {
        self.assert_no_panic(case);
        let info = self.node.info().unwrap_or_else(|e| panic!("{case}: chain_getInfo failed: {e:#}"));
        let height = info["height"].as_u64().unwrap();
        let mut p = self.peer("hostile/after");
        assert!(p.ping_pong(T).unwrap(), "{case}: a new peer got no pong");
        p.close();
        let bystander = address_of(&dev_keys()[BYSTANDER]).to_text();
        let nonce =
            self.node.rpc("state_getAccount", json!([bystander])).unwrap()["pending_nonce"].as_u64().unwrap();
        let normal = self.tx(BYSTANDER, nonce, 1, 1_000);
        self.admit(&normal, case);
        let block = next_blocks(&self.node.rpc_url, &self.genesis, &[vec![normal]]).unwrap();
        self.connect_blocks(&block, case);
        assert_eq!(self.node.height().unwrap(), height + 1);
        assert_eq!(self.status(&normal), json!("confirmed"), "{case}: the normal transfer");
        self.assert_no_panic(case);
    }
}

/// A log line without its terminal colour codes.
fn without_colours(line: &str) -> String {
    let mut out = String::new();
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            chars.by_ref().find(|c| c.is_ascii_alphabetic());
        } else {
            out.push(c);
        }
    }
    out
}

/// Refusal reasons that fit a transfer its sender cannot pay (or whose sums overflow).
const UNPAYABLE: &[&str] = &["insufficient balance", "overflow", "unaffordable"];

/// (a) The three `tx_submit` calls of issue 15, then the other edges, over RPC.
#[test]
fn rpc_tx_submit_refuses_extreme_amounts_and_keeps_serving() {
    let v = Victim::start(Chain::Dev);
    let t0 = v.tx(0, 0, 1, 1_000);
    let t1 = v.tx(0, 1, 1, 1_000);
    v.admit(&t0, "call 1");
    v.admit(&t1, "call 2");
    // Amount + fee is exactly u64::MAX: `verify` allows it; the sender cannot pay it.
    let replacement = v.tx(0, 1, MAX - 5_000, 5_000);
    v.refuse(&replacement, UNPAYABLE, "call 3: replacement with amount + fee = u64::MAX");
    v.info().unwrap_or_else(|e| panic!("chain_getInfo after call 3: {e:#}"));
    v.assert_pending(&[&t0, &t1], "after call 3");

    let cases = [
        (v.tx(0, 0, MAX - 5_000, 5_000), UNPAYABLE, "replacing nonce 0 with amount + fee = u64::MAX"),
        (v.tx(0, 1, 0, MAX), UNPAYABLE, "replacing nonce 1 with fee u64::MAX"),
        (v.tx(0, 1, MAX - 1_000_000, 1_000_000), UNPAYABLE, "replacing nonce 1 with amount u64::MAX - fee"),
        (v.tx(0, 2, MAX, 1), &["amount plus fee overflows"][..], "amount u64::MAX, fee 1"),
        (v.tx(0, 2, 1, MAX), &["amount plus fee overflows"][..], "amount 1, fee u64::MAX"),
        (v.tx(0, 2, MAX - 1_000, 1_000), UNPAYABLE, "amount u64::MAX - fee"),
        (v.tx(0, 2, 0, MAX), UNPAYABLE, "fee u64::MAX"),
        (v.tx(0, 2, DEV - 2_002, 1), UNPAYABLE, "one more than the balance left after pending"),
        (v.tx(3, 0, MAX - 5_000, 5_000), UNPAYABLE, "amount + fee = u64::MAX from a fresh account"),
    ];
    for (tx, reasons, case) in &cases {
        v.refuse(tx, reasons, case);
        v.assert_pending(&[&t0, &t1], case);
    }
    // Exactly the balance left after the pending transfers is still admitted.
    let exact = v.tx(0, 2, DEV - 2_002 - 1_000, 1_000);
    v.admit(&exact, "spending the exact balance left");
    v.refuse(&v.tx(0, 3, 0, 1), UNPAYABLE, "anything more after the exact balance");
    v.assert_pending(&[&t0, &t1, &exact], "after the edges");

    // The pending transfers still make a valid block, which empties the sender.
    let block = next_blocks(&v.node.rpc_url, &v.genesis, &[vec![t0, t1, exact]]).unwrap();
    v.connect_blocks(&block, "a block of the pending transfers");
    assert_eq!(v.node.balance(&address_of(&dev_keys()[0]).to_text()).unwrap(), 0);
    v.assert_pending(&[], "after the block");
    v.assert_works("rpc");
}

impl std::ops::Deref for Victim {
    type Target = NodeProcess;
    fn deref(&self) -> &NodeProcess {
        &self.node
    }
}

/// (b) The same transfers relayed by a peer (inv, getdata, tx), and the other edges.
#[test]
fn p2p_tx_relay_of_extreme_amounts_leaves_the_node_working() {
    let v = Victim::start(Chain::Dev);
    let t0 = v.tx(0, 0, 1, 1_000);
    let t1 = v.tx(0, 1, 1, 1_000);
    let replacement = v.tx(0, 1, MAX - 5_000, 5_000);
    let mut p = v.peer("hostile/relay");
    assert!(v.relay(&mut p, &t0, "relay 1"));
    v.wait_pending(&t0, "relay 1");
    assert!(v.relay(&mut p, &t1, "relay 2"));
    v.wait_pending(&t1, "relay 2");
    let kept = v.relay(&mut p, &replacement, "relay 3: replacement with amount + fee = u64::MAX");
    eprintln!("relay 3: the relaying peer was {}", if kept { "kept" } else { "dropped" });
    v.info().unwrap_or_else(|e| panic!("chain_getInfo after relay 3: {e:#}"));
    v.assert_pending(&[&t0, &t1], "after relay 3");
    assert_eq!(v.status(&replacement), Value::Null);

    // Each edge from its own peer: a transfer that can never be valid gets its sender
    // dropped, one the account cannot pay now is just not admitted.
    let cases = [
        (v.tx(0, 0, MAX - 5_000, 5_000), "replacing nonce 0 with amount + fee = u64::MAX"),
        (v.tx(0, 1, 0, MAX), "replacing nonce 1 with fee u64::MAX"),
        (v.tx(0, 2, MAX, 1), "amount u64::MAX, fee 1"),
        (v.tx(0, 2, MAX - 1_000, 1_000), "amount u64::MAX - fee"),
        (v.tx(0, 2, 0, MAX), "fee u64::MAX"),
        (v.tx(3, 0, MAX - 5_000, 5_000), "amount + fee = u64::MAX from a fresh account"),
    ];
    for (i, (tx, case)) in cases.iter().enumerate() {
        let mut p = v.peer(&format!("hostile/edge-{i}"));
        let kept = v.relay(&mut p, tx, case);
        eprintln!("{case}: the relaying peer was {}", if kept { "kept" } else { "dropped" });
        v.assert_pending(&[&t0, &t1], case);
        assert_eq!(v.status(tx), Value::Null, "{case}: the transfer is known to the node");
        p.close();
    }
    // An overflowing transfer is invalid whatever the state: its relayer is dropped.
    let mut p = v.peer("hostile/overflow");
    assert!(!v.relay(&mut p, &v.tx(3, 5, 1, MAX), "amount 1, fee u64::MAX"), "the relayer was kept");

    let block = next_blocks(&v.node.rpc_url, &v.genesis, &[vec![t0, t1]]).unwrap();
    v.connect_blocks(&block, "a block of the relayed transfers");
    v.assert_works("p2p tx");
}

/// (e) Transfers that overtook their predecessor wait (node/src/p2p/waiting.rs) and are
/// released into the mempool when it arrives: an extreme one must be refused there
/// without harm, and one spending the exact balance left must be admitted.
#[test]
fn transfers_released_from_the_waiting_pool_with_extreme_amounts() {
    let v = Victim::start(Chain::Dev);
    let mut p = v.peer("hostile/waiting");
    // Account 0: nonce 2 (amount + fee = u64::MAX) and nonce 1 arrive before nonce 0.
    let a0 = v.tx(0, 0, 1, 1_000);
    let a1 = v.tx(0, 1, 1, 1_000);
    let a2 = v.tx(0, 2, MAX - 5_000, 5_000);
    // Account 3: nonce 1 spends exactly what nonce 0 leaves; nonce 2 then overflows the
    // pending sum had it been added unchecked (u64::MAX on top of the whole balance).
    let b0 = v.tx(3, 0, 1, 1_000);
    let b1 = v.tx(3, 1, DEV - 1_001 - 1_000, 1_000);
    let b2 = v.tx(3, 2, MAX - 1, 1);
    for (tx, case) in [(&a2, "a2 waits"), (&a1, "a1 waits"), (&b2, "b2 waits"), (&b1, "b1 waits")] {
        assert!(v.relay(&mut p, tx, case), "{case}: the relayer was dropped");
    }
    v.assert_pending(&[], "before the predecessors");
    // The predecessors arrive: a1 and b1 are released after them, a2 and b2 refused.
    assert!(v.relay(&mut p, &a0, "a0"));
    v.wait_pending(&a1, "a1 released");
    assert!(v.relay(&mut p, &b0, "b0"));
    v.wait_pending(&b1, "b1 released");
    // The releases run in the P2P thread; a pong after them means they are done.
    assert!(p.ping_pong(T).unwrap(), "no pong after the releases");
    v.assert_no_panic("releases");
    v.assert_pending(&[&a0, &a1, &b0, &b1], "after the releases");
    for tx in [&a2, &b2] {
        assert_eq!(v.status(tx), Value::Null, "an unpayable released transfer is known to the node");
    }
    // The node is not confused about what the accounts have left.
    v.refuse(&v.tx(3, 2, 0, 1), UNPAYABLE, "account 3 after spending it all");
    let a2_normal = v.tx(0, 2, 1, 1_000);
    assert!(v.relay(&mut p, &a2_normal, "a normal nonce 2"));
    v.wait_pending(&a2_normal, "a normal nonce 2");

    let block = next_blocks(&v.node.rpc_url, &v.genesis, &[vec![a0, a1, a2_normal, b0, b1]]).unwrap();
    v.connect_blocks(&block, "a block of the released transfers");
    assert_eq!(v.node.balance(&address_of(&dev_keys()[3]).to_text()).unwrap(), 0);
    v.assert_works("waiting pool");
}

/// (c) Blocks from a peer carrying extreme transfers: each rejected as invalid with its
/// reason, its sender banned, the node unharmed.
#[test]
fn p2p_blocks_with_extreme_amounts_are_rejected_without_harm() {
    let v = Victim::start(Chain::Whale);
    let params = v.genesis.params;
    let id = v.chain_id();
    // One valid block first, so the coinbase address below has a balance.
    let first = next_blocks(&v.node.rpc_url, &v.genesis, &[vec![]]).unwrap();
    v.connect_blocks(&first, "an empty block");
    let Transaction::Coinbase(Coinbase { to: miner, .. }) = first[0].transactions[0] else {
        panic!("a block starts with its coinbase")
    };
    let parent = || parent_info(&v.node.rpc_url, &v.genesis, v.node.height().unwrap()).unwrap();
    let reward = params.block_reward.0;
    let cb = |amount: u64, to: Address| Coinbase {
        height: v.node.height().unwrap() + 1,
        to,
        amount: Amount(amount),
    };

    // Rejected by the stateless checks: amount + fee overflows.
    let b = next_blocks(&v.node.rpc_url, &v.genesis, &[vec![v.tx(0, 0, MAX, 1)]]).unwrap();
    v.reject_block(&b, &["amount plus fee overflows"], "block: amount u64::MAX, fee 1");

    // Amount + fee = u64::MAX, more than the whale has.
    let b =
        next_blocks(&v.node.rpc_url, &v.genesis, &[vec![v.tx(WHALE_KEY, 0, MAX - 5_000, 5_000)]]).unwrap();
    v.reject_block(&b, &["insufficient balance"], "block: amount + fee = u64::MAX");

    // Fee u64::MAX: the coinbase cannot even say reward + fees.
    let t = v.tx(WHALE_KEY, 0, 0, MAX);
    let b = block_with_coinbase(&v.genesis, &parent(), cb(reward, miner), &[t]).unwrap();
    v.reject_block(&[b], &["insufficient balance"], "block: fee u64::MAX");

    // Every transfer affordable, but the fees sum to u64::MAX, so reward + fees overflows.
    let fees = [v.tx(0, 0, 0, DEV), v.tx(WHALE_KEY, 0, 0, WHALE), v.tx(BYSTANDER, 0, 0, DEV)];
    let b = block_with_coinbase(&v.genesis, &parent(), cb(MAX, miner), &fees).unwrap();
    v.reject_block(&[b], &["sum of fees overflows"], "block: fees sum past u64::MAX");

    // Every transfer affordable, but together they credit the miner (which holds a
    // reward already) past u64::MAX.
    let to_miner = |key: usize, amount: u64| dev_transfer(key, id, 0, miner, amount, 1);
    let all = [to_miner(0, DEV - 1), to_miner(WHALE_KEY, WHALE - 1), to_miner(BYSTANDER, DEV - 1)];
    let b = block_with_coinbase(&v.genesis, &parent(), cb(reward + 3, SINK), &all).unwrap();
    v.reject_block(&[b], &["overflows the recipient's balance"], "block: credit past u64::MAX");

    // The same, with the coinbase the last straw.
    let all = [
        dev_transfer(0, id, 0, SINK, DEV - 1, 1),
        dev_transfer(WHALE_KEY, id, 0, SINK, WHALE - 1, 1),
        dev_transfer(BYSTANDER, id, 0, SINK, DEV - 1, 1),
    ];
    let b = block_with_coinbase(&v.genesis, &parent(), cb(reward + 3, SINK), &all).unwrap();
    v.reject_block(&[b], &["overflows the recipient's balance"], "block: coinbase past u64::MAX");

    // A valid block that moves the whale's whole balance, amount + fee = its balance.
    let whole = v.tx(WHALE_KEY, 0, WHALE - 5_000, 5_000);
    let b = next_blocks(&v.node.rpc_url, &v.genesis, &[vec![whole]]).unwrap();
    v.connect_blocks(&b, "block: the whale's whole balance");
    assert_eq!(v.node.balance(&SINK.to_text()).unwrap(), WHALE - 5_000);
    v.assert_works("p2p block");
}

/// (d) A reorg returns extreme transfers (valid on their branch) to the mempool next to
/// pending ones; the pool must hold exactly what the new tip can pay, refuse what would
/// overflow its sums, and its contents must still make a valid block.
#[test]
fn a_reorg_returns_extreme_transfers_to_the_mempool_safely() {
    let v = Victim::start(Chain::Whale);
    let id = v.chain_id();
    let fork = v.node.height().unwrap();
    let whale_addr = address_of(&dev_keys()[WHALE_KEY]);
    let other = Address([0x77; 20]);
    // Branch A: account 0 pays the whale all it has, and the whale moves its whole
    // original balance; the whale then has DEV - 1_000, the sink WHALE - 1_000.
    let credit = dev_transfer(0, id, 0, whale_addr, DEV - 1_000, 1_000);
    let whole = v.tx(WHALE_KEY, 0, WHALE - 1_000, 1_000);
    let a = blocks_on(&v.node.rpc_url, &v.genesis, fork, &[vec![credit, whole]]).unwrap();
    v.connect_blocks(&a, "branch A");
    // Pending on A: the whale spends the credit it got there; the bystander pays someone.
    let spends_credit = v.tx(WHALE_KEY, 1, DEV - 3_000, 1_000);
    v.admit(&spends_credit, "pending on A");
    let bystander_pending = dev_transfer(BYSTANDER, id, 0, other, DEV / 2, 1_000);
    v.admit(&bystander_pending, "bystander's pending on A");
    v.assert_pending(&[&spends_credit, &bystander_pending], "on A");

    // Branch B from the fork, heavier, without any of them.
    let b = blocks_on(&v.node.rpc_url, &v.genesis, fork, &[vec![], vec![]]).unwrap();
    v.connect_blocks(&b, "branch B");
    // Back on B: account 0's credit and the whale's whole balance return (both valid on
    // B); the whale's spend of the credit cannot be paid after its whole balance moved;
    // the bystander's stays.
    v.assert_pending(&[&credit, &whole, &bystander_pending], "after the reorg");
    assert_eq!(v.status(&spends_credit), Value::Null);

    // Stress the sums over the returned transfers: the whale has 0 left after `whole`
    // on B, so anything more is refused, including the replacements of issue 15.
    v.refuse(&v.tx(WHALE_KEY, 1, 0, 1), UNPAYABLE, "after the reorg: the whale's next");
    v.refuse(
        &v.tx(WHALE_KEY, 0, MAX - 5_000, 5_000),
        UNPAYABLE,
        "after the reorg: replacing `whole` with u64::MAX",
    );
    v.refuse(&v.tx(WHALE_KEY, 0, 0, MAX), UNPAYABLE, "after the reorg: replacing `whole` with fee u64::MAX");
    // A replacement paying less amount and more fee is fine, and frees room for a next
    // transfer; then replacing that one with amount + fee = u64::MAX is the three calls
    // of issue 15 on a pending sum near u64::MAX.
    let whole2 = v.tx(WHALE_KEY, 0, WHALE - 10_000, 2_000);
    v.admit(&whole2, "after the reorg: a cheaper replacement of `whole`");
    let next = v.tx(WHALE_KEY, 1, 1, 1_000);
    v.admit(&next, "after the reorg: the whale's next");
    v.refuse(
        &v.tx(WHALE_KEY, 1, MAX - 5_000, 5_000),
        UNPAYABLE,
        "after the reorg: replacing it with u64::MAX",
    );
    let mut p = v.peer("hostile/reorg");
    v.relay(
        &mut p,
        &v.tx(WHALE_KEY, 1, MAX - 6_000, 6_000),
        "after the reorg: relaying its u64::MAX replacement",
    );
    v.assert_pending(&[&credit, &whole2, &next, &bystander_pending], "after the replacements");

    // What the mempool holds is a valid block on B.
    let block =
        next_blocks(&v.node.rpc_url, &v.genesis, &[vec![credit, whole2, next, bystander_pending]]).unwrap();
    v.connect_blocks(&block, "a block of the returned transfers");
    v.assert_pending(&[], "after the block");
    assert_eq!(v.node.balance(&whale_addr.to_text()).unwrap(), DEV - 1_000 + 10_000 - 2_000 - 1_001);
    v.assert_works("reorg");
}

/// Pending transfers whose fees sum past what one coinbase can pay (reward + fees over
/// `u64::MAX`), each affordable on its own: a mining node must keep mining, taking the
/// ones that fit (the largest fee first) and leaving the rest. Without a fee bound the
/// miner stopped here ("could not build a block template (fees overflow)"); with a bound
/// that forgot the miner's own balance, its coinbase overflowed that balance and it
/// mined invalid blocks in a loop (`Invalid(BalanceOverflow { index: 0 })`).
#[test]
fn a_miner_whose_pending_fees_overflow_keeps_mining() {
    let tmp = tempfile::tempdir().unwrap();
    let v = Victim::start_in(tmp, Chain::Whale, true);
    let start = v.node.height().unwrap();
    let fees = [v.tx(0, 0, 0, DEV), v.tx(WHALE_KEY, 0, 0, WHALE), v.tx(BYSTANDER, 0, 0, DEV)];
    for t in &fees {
        v.admit(t, "a fee-heavy transfer");
    }
    wait_until(Duration::from_secs(30), "the whale's fee mined and four more blocks", || {
        v.assert_no_panic("mining");
        Ok((v.status(&fees[1]) == json!("confirmed") && v.node.height()? >= start + 4).then_some(()))
    });
    v.assert_no_panic("mining");
}
