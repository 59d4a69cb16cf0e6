//! `status` and `invalid_reason` of `chain_getBlock` / `chain_getBlockByHeight` over
//! real HTTP against a node on a RocksDB store: a best-chain block is `main`, a valid
//! side block `side`, a block that fails the state rules on a side branch `invalid` with
//! the rule it broke (and its descendants `invalid` naming it), a block refused for a bad
//! signature `invalid` with no body, a header without a body `header-only`; and the
//! reasons survive a restart. Also: the largest block the frame limit allows decodes
//! (docs/CONSENSUS.md §1).
#![allow(clippy::unwrap_used)] // test helpers fail loudly

use cairn_api::{CairnApiClient, RpcBlock};
use cairn_core::assemble::{assemble_block, grind};
use cairn_core::block::{Block, BlockHeader};
use cairn_core::difficulty::median_time_past;
use cairn_core::genesis::{dev_keys, Genesis};
use cairn_core::pow::Target;
use cairn_core::transaction::{public_key_of, Transfer};
use cairn_core::validation::ParentInfo;
use cairn_core::{encoding, Address, Amount, BlockHash, SignedTransfer, Transaction};
use cairn_node::chain::Chain;
use cairn_node::mempool::{Mempool, MempoolConfig};
use cairn_node::node::{Node, Origin};
use cairn_node::rpc::{self, Cookie};
use jsonrpsee::http_client::{HttpClient, HttpClientBuilder};
use std::path::Path;
use std::sync::Arc;

/// Dev genesis with a target so easy that every nonce has a 1-in-2 chance.
fn test_genesis() -> Genesis {
    let mut g = Genesis::dev();
    g.name = "cairn-rpc-status-test".into();
    let easy: Target = "7fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff".parse().unwrap();
    g.params.initial_target = easy;
    g.params.pow_limit = easy;
    g
}

/// A block on top of `branch` (genesis first), one block time after its tip.
fn child(g: &Genesis, branch: &[BlockHeader], transfers: &[SignedTransfer], tag: u8) -> Block {
    let tip = branch.last().unwrap();
    let n = g.params.median_time_blocks as usize;
    let stamps: Vec<u64> = branch.iter().rev().take(n).map(|h| h.timestamp_ms).collect();
    let parent = ParentInfo {
        hash: tip.hash(),
        height: tip.height,
        timestamp_ms: tip.timestamp_ms,
        median_time_past_ms: median_time_past(&stamps),
        anchor_timestamp_ms: branch.get(1).map_or(tip.timestamp_ms, |h| h.timestamp_ms),
    };
    let ts = tip.timestamp_ms + g.params.target_block_time_ms;
    let mut block = assemble_block(&g.params, &parent, ts, Address([tag; 20]), transfers).unwrap();
    assert!(grind(&mut block.header, u64::MAX));
    block
}

/// A branch of `len` blocks on `base`, the first carrying `first_txs`.
fn branch(
    g: &Genesis,
    base: &[BlockHeader],
    len: usize,
    first_txs: &[SignedTransfer],
    tag: u8,
) -> Vec<Block> {
    let mut headers = base.to_vec();
    let mut out = Vec::new();
    for i in 0..len {
        let txs = if i == 0 { first_txs } else { &[] };
        let b = child(g, &headers, txs, tag);
        headers.push(b.header);
        out.push(b);
    }
    out
}

fn headers_of(g: &Genesis, blocks: &[Block]) -> Vec<BlockHeader> {
    std::iter::once(g.block().header).chain(blocks.iter().map(|b| b.header)).collect()
}

/// A transfer from dev account 0, validly signed.
fn transfer(g: &Genesis, nonce: u64) -> SignedTransfer {
    let k = &dev_keys()[0];
    Transfer {
        chain_id: g.params.chain_id,
        nonce,
        from: public_key_of(k),
        to: Address([9; 20]),
        amount: Amount(1_000),
        fee: Amount(10),
    }
    .sign(k)
    .unwrap()
}

struct Served {
    node: Arc<Node>,
    server: rpc::RpcServer,
    client: HttpClient,
    _cookie: Cookie,
}

async fn serve(g: &Genesis, dir: &Path) -> Served {
    let chain = Chain::open(dir, g).unwrap();
    let node = Node::new(chain, Mempool::with_config(MempoolConfig::default()), g.clone());
    let cookie = Cookie::create(dir).unwrap();
    let server = rpc::start(node.clone(), None, "127.0.0.1:0".parse().unwrap(), &cookie).await.unwrap();
    let client = HttpClientBuilder::default().build(format!("http://{}", server.local_addr)).unwrap();
    Served { node, server, client, _cookie: cookie }
}

impl Served {
    async fn block(&self, hash: BlockHash) -> RpcBlock {
        self.client.chain_get_block(hash.to_hex()).await.unwrap().expect("the node knows the block")
    }

    async fn stop(self) {
        self.server.handle.stop().unwrap();
        self.server.handle.stopped().await;
    }
}

fn assert_status(b: &RpcBlock, status: &str, confirmations: u64) {
    assert_eq!((b.status.as_str(), b.confirmations), (status, confirmations), "block {b:?}");
    if status != "invalid" {
        assert_eq!(b.invalid_reason, None, "block {b:?}");
    }
}

#[tokio::test]
async fn block_results_say_main_side_invalid_or_header_only() {
    let g = test_genesis();
    let dir = tempfile::tempdir().unwrap();
    let s = serve(&g, dir.path()).await;
    let submit = |b: &Block| s.node.submit_block(b.clone(), Origin::Rpc, cairn_node::now_ms()).unwrap().0;

    // Best chain: A1..A3. A valid side block B1 on genesis (less work: never connected).
    let a = branch(&g, &[g.block().header], 3, &[], 0xa1);
    a.iter().for_each(|b| drop(submit(b)));
    let b1 = branch(&g, &[g.block().header], 1, &[], 0xb1).remove(0);
    submit(&b1);
    // A side branch C1..C4 on genesis with more work than A, whose first block spends
    // a nonce dev account 0 has not reached: the reorg to it fails at C1.
    let c = branch(&g, &[g.block().header], 4, &[transfer(&g, 5)], 0xc1);
    c.iter().for_each(|b| drop(submit(b)));
    assert_eq!(
        s.client.chain_get_info().await.unwrap().best_hash,
        a[2].hash(),
        "back on A after the failed reorg"
    );

    let a_headers = headers_of(&g, &a);
    // On the tip: a block whose coinbase pays one unit too much (fails when connected).
    let mut d1 = child(&g, &a_headers, &[], 0xd1);
    let Transaction::Coinbase(cb) = &mut d1.transactions[0] else { panic!("no coinbase") };
    cb.amount = Amount(cb.amount.0 + 1);
    d1.header.merkle_root = d1.compute_merkle_root();
    assert!(grind(&mut d1.header, u64::MAX));
    submit(&d1);
    // On the tip: a block whose transfer carries a broken signature (refused before
    // its body is stored).
    let mut bad = transfer(&g, 0);
    bad.signature[40] ^= 1;
    let e1 = child(&g, &a_headers, &[bad], 0xe1);
    submit(&e1);
    // A header on the tip whose body never comes.
    let f1 = child(&g, &a_headers, &[], 0xf1);
    let headers = s.node.chain().accept_headers(&[f1.header], cairn_node::now_ms()).unwrap();
    assert!(headers.invalid.is_none());

    for (height, blk) in a.iter().enumerate() {
        let r = s.block(blk.hash()).await;
        assert_status(&r, "main", 3 - height as u64);
        assert_eq!(r.size, Some(encoding::encode(blk).len()));
        let by_height = s.client.chain_get_block_by_height(height as u64 + 1).await.unwrap().unwrap();
        assert_eq!(by_height, r);
    }
    assert_status(&s.client.chain_get_block_by_height(0).await.unwrap().unwrap(), "main", 4);
    let r = s.block(b1.hash()).await;
    assert_status(&r, "side", 0);
    assert_eq!(r.transactions.unwrap().len(), 1);

    let r = s.block(c[0].hash()).await;
    assert_status(&r, "invalid", 0);
    let reason = r.invalid_reason.unwrap();
    eprintln!("C1 (bad nonce on a side branch): {reason}");
    assert!(reason.contains("transfer 1") && reason.contains("nonce"), "{reason}");
    assert_eq!(r.transactions.unwrap().len(), 2, "a block that failed to connect keeps its body");
    for blk in &c[1..] {
        let r = s.block(blk.hash()).await;
        assert_status(&r, "invalid", 0);
        assert_eq!(r.invalid_reason.unwrap(), format!("block builds on invalid block {}", c[0].hash()));
    }
    let r = s.block(d1.hash()).await;
    assert_status(&r, "invalid", 0);
    let reason = r.invalid_reason.unwrap();
    eprintln!("D1 (coinbase pays too much): {reason}");
    assert!(reason.starts_with("coinbase pays"), "{reason}");
    let r = s.block(e1.hash()).await;
    assert_status(&r, "invalid", 0);
    eprintln!("E1 (broken signature): {}", r.invalid_reason.as_deref().unwrap());
    assert!(r.invalid_reason.as_deref().unwrap().contains("signature"), "{r:?}");
    assert_eq!((r.size, r.transactions), (None, None), "its body was never stored");
    let r = s.block(f1.hash()).await;
    assert_status(&r, "header-only", 0);
    assert_eq!((r.size, &r.transactions), (None, &None));
    assert_eq!(r.header_hex, hex::encode(f1.header.to_bytes()));
    // Never indexed: null.
    assert_eq!(
        s.client.chain_get_block(child(&g, &a_headers, &[], 0x99).hash().to_hex()).await.unwrap(),
        None
    );

    // The reasons are stored with the index: a restarted node gives the same answers.
    let before: Vec<RpcBlock> = {
        let mut v = Vec::new();
        for h in c.iter().chain([&d1, &e1, &b1, &f1]).map(Block::hash) {
            v.push(s.block(h).await);
        }
        v
    };
    let node = s.node.clone();
    s.stop().await;
    // The server's handlers held the last other references; the store closes with
    // the chain.
    let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while Arc::strong_count(&node) > 1 {
        assert!(std::time::Instant::now() < until, "the stopped server still holds the node");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    drop(node);
    let s = serve(&g, dir.path()).await;
    for old in before {
        assert_eq!(s.block(old.hash).await, old);
    }
    s.stop().await;
}

/// The node's decode guard (count x in-memory item size <= 8 MiB) never refuses a block
/// that fits the 4 MiB block frame with one coinbase: one of exactly that many transfers
/// decodes (docs/CONSENSUS.md §1).
#[test]
fn the_largest_block_decodes() {
    let g = Genesis::dev();
    let t = Transaction::Transfer(transfer(&g, 0));
    let cb = Transaction::Coinbase(cairn_core::transaction::Coinbase {
        height: 1,
        to: Address([1; 20]),
        amount: Amount(1),
    });
    let limit = 4 * 1024 * 1024;
    let fixed = encoding::encode(&Block { header: g.block().header, transactions: vec![cb] }).len();
    let per_tx = encoding::encode(&t).len();
    let count = (limit - fixed) / per_tx;
    assert_eq!((fixed, per_tx, count), (124 + 8 + 40, 149, 28_148));
    let mut transactions = vec![cb];
    transactions.extend(std::iter::repeat_n(t, count));
    let block = Block { header: g.block().header, transactions };
    let bytes = encoding::encode(&block);
    assert!(bytes.len() <= limit);
    let decoded: Block = encoding::decode(&bytes).expect("the largest block decodes");
    assert_eq!(decoded.transactions.len(), count + 1);
    eprintln!("in-memory size of a Transaction: {} bytes", std::mem::size_of::<Transaction>());
}
