//! Compact block relay against a real `cairn-node` process (docs/PROTOCOL.md, "Compact
//! blocks"), spoken by the adversary peer, which builds its frames and short ids from
//! the document with its own code (SipHash from the standard library): a block rebuilt
//! from the node's mempool, missing transfers fetched with `getblocktxn`, the peer that
//! delivered first asked for high-bandwidth mode and replaced by later ones, and a
//! compact block with an invalid transfer (banned, nothing stored).
#![allow(clippy::unwrap_used)]

use cairn_core::block::Block;
use cairn_core::encoding;
use cairn_core::genesis::Genesis;
use cairn_core::transaction::{SignedTransfer, Transaction};
use cairn_core::Address;
use cairn_tests::adversary::*;
use cairn_tests::*;
use serde_json::json;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(20);

struct Net {
    _tmp: tempfile::TempDir,
    genesis: Genesis,
    node: NodeProcess,
    magic: [u8; 4],
}

impl Net {
    /// One node that does not mine, so its tip moves only with the blocks we send.
    fn start() -> Net {
        let tmp = tempfile::tempdir().unwrap();
        let path = write_fast_genesis(tmp.path(), 500).unwrap();
        let genesis = Genesis::from_json(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let node = NodeProcess::start(
            &tmp.path().join("node"),
            &NodeOptions { genesis: Some(path), ..NodeOptions::default() },
        )
        .unwrap();
        let magic = magic_of(&genesis);
        Net { _tmp: tmp, genesis, node, magic }
    }

    /// A peer past the handshake that said it takes compact blocks; the node's own
    /// `sendcmpct` (low bandwidth) has arrived.
    fn peer(&self, ua: &str) -> Peer {
        let mut p = Peer::connect(self.node.p2p_addr, self.magic).unwrap();
        p.handshake(&VersionFields::for_genesis(&self.genesis, [0; 32], ua)).unwrap();
        let f = p.expect(cmd::SENDCMPCT, WAIT).unwrap();
        assert_eq!(sendcmpct_flag(&f.payload), Some(false), "the node starts in low-bandwidth mode");
        p.send(cmd::SENDCMPCT, &sendcmpct_payload(false)).unwrap();
        p
    }

    fn submit(&self, tx: &SignedTransfer) {
        self.node.rpc("tx_submit", json!([hex::encode(encoding::encode(tx))])).unwrap();
    }

    fn next_block(&self, txs: Vec<SignedTransfer>) -> Block {
        next_blocks(&self.node.rpc_url, &self.genesis, &[txs]).unwrap().remove(0)
    }

    fn wait_tip(&self, block: &Block) {
        let want = json!(block.hash().to_hex());
        wait_until(WAIT, "the node to take the compact block as its tip", || {
            let info = self.node.rpc("chain_getInfo", json!([]))?;
            Ok((info["best_hash"] == want).then_some(()))
        });
    }
}

fn pay(net: &Net, key: usize, nonce: u64) -> SignedTransfer {
    dev_transfer(key, net.genesis.params.chain_id, nonce, Address([0x77; 20]), 1_000, 10)
}

#[test]
fn compact_blocks_between_real_processes() {
    let net = Net::start();

    // Rebuilt from the mempool, one transfer fetched with getblocktxn.
    let mut p1 = net.peer("cmpct/1");
    let txs: Vec<SignedTransfer> = (1..=4).map(|k| pay(&net, k, 0)).collect();
    for tx in &txs[..3] {
        net.submit(tx);
    }
    let block = net.next_block(txs.clone());
    p1.send(cmd::CMPCTBLOCK, &cmpctblock_payload(&block, 0xfeed, &[0])).unwrap();
    let f = p1.expect(cmd::GETBLOCKTXN, WAIT).unwrap();
    let (hash, indexes) = getblocktxn_of(&f.payload).unwrap();
    assert_eq!(hash, block.hash().0);
    assert_eq!(indexes, vec![4], "only the transfer not in its mempool (index 4) is asked for");
    p1.send(cmd::BLOCKTXN, &blocktxn_payload(&block.hash(), &txs[3..])).unwrap();
    net.wait_tip(&block);
    // It delivered the block first: the node asks it to push the next ones.
    let f = p1.expect(cmd::SENDCMPCT, WAIT).unwrap();
    assert_eq!(sendcmpct_flag(&f.payload), Some(true));

    // High-bandwidth peers: three at most, the one that delivered first longest ago
    // leaves.
    let mut p2 = net.peer("cmpct/2");
    let mut p3 = net.peer("cmpct/3");
    let mut p4 = net.peer("cmpct/4");
    for p in [&mut p2, &mut p3, &mut p4] {
        let block = net.next_block(vec![]);
        p.send(cmd::CMPCTBLOCK, &cmpctblock_payload(&block, 1, &[0])).unwrap();
        net.wait_tip(&block);
        let f = p.expect(cmd::SENDCMPCT, WAIT).unwrap();
        assert_eq!(sendcmpct_flag(&f.payload), Some(true));
    }
    let f = p1.expect(cmd::SENDCMPCT, WAIT).unwrap();
    assert_eq!(sendcmpct_flag(&f.payload), Some(false), "the fourth deliverer replaced the first");

    // A compact block whose transfer has a bad signature: banned, nothing stored.
    let height = net.node.height().unwrap();
    let mut bad = pay(&net, 5, 0);
    bad.signature[40] ^= 1;
    let mut block = net.next_block(vec![]);
    block.transactions.push(Transaction::Transfer(bad));
    let txids: Vec<_> = block.transactions.iter().map(Transaction::txid).collect();
    block.header.merkle_root = cairn_core::merkle::merkle_root(&txids);
    assert!(cairn_core::assemble::grind(&mut block.header, u64::MAX));
    let mut p5 = net.peer("cmpct/5");
    p5.send(cmd::CMPCTBLOCK, &cmpctblock_payload(&block, 2, &[0, 1])).unwrap();
    assert_eq!(p5.wait_closed(WAIT), Closed::Yes, "the sender of an invalid transfer is dropped");
    let local = p5.local;
    p5.close();
    assert!(reconnect_refused(local, net.node.p2p_addr, net.magic).unwrap(), "and banned");
    assert_eq!(net.node.height().unwrap(), height, "the tip did not move");
    // Its header (valid, with proof of work) may be indexed; its body is not stored.
    let stored = net.node.rpc("chain_getBlock", json!([block.hash().to_hex()])).unwrap();
    assert!(stored.is_null() || stored["size"].is_null(), "the invalid block's body was stored: {stored}");
    // The others are still connected.
    assert!(p1.ping_pong(WAIT).unwrap());
}
