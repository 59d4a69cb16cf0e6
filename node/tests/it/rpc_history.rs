//! state_getHistory, chain_getBlocks and mempool_getTransfers over real HTTP against
//! running `cairn-node --dev` processes: what a transfer looks like from both sides,
//! paging, pending transfers, the fee-rate order, named parameters, and every
//! documented error (bad address, bad cursor, out-of-range limits and heights, the
//! index turned off).
#![allow(clippy::unwrap_used)] // test helpers fail loudly

use cairn_api::{CairnApiClient, ADDRESS_INDEX_OFF};
use cairn_core::genesis::{dev_keys, DEV_CHAIN_ID};
use cairn_core::transaction::{address_of, public_key_of, SignedTransfer, Transfer};
use cairn_core::{encoding, Address, Amount};
use cairn_tests::{wait_for, NodeProcess};
use jsonrpsee::core::ClientError;
use jsonrpsee::http_client::{HttpClient, HttpClientBuilder};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::time::Duration;

fn client(node: &NodeProcess) -> HttpClient {
    HttpClientBuilder::default().request_timeout(Duration::from_secs(30)).build(node.url()).unwrap()
}

fn call_err<T: std::fmt::Debug>(r: Result<T, ClientError>) -> (i32, String) {
    match r {
        Err(ClientError::Call(e)) => (e.code(), e.message().to_string()),
        other => panic!("expected a JSON-RPC error, got {other:?}"),
    }
}

fn transfer(from: usize, to: usize, nonce: u64, amount: u64, fee: u64) -> SignedTransfer {
    let k = &dev_keys()[from];
    Transfer {
        chain_id: DEV_CHAIN_ID,
        nonce,
        from: public_key_of(k),
        to: address_of(&dev_keys()[to]),
        amount: Amount(amount),
        fee: Amount(fee),
    }
    .sign(k)
    .unwrap()
}

fn hex_of(t: &SignedTransfer) -> String {
    hex::encode(encoding::encode(t))
}

fn dev(i: usize) -> Address {
    address_of(&dev_keys()[i])
}

#[tokio::test]
async fn history_shows_a_transfer_from_both_sides_and_pages_newest_first() {
    let node = NodeProcess::start_dev(env!("CARGO_BIN_EXE_cairn-node"), &[]);
    let c = client(&node);
    let t = transfer(2, 3, 0, 123_456, 789);
    let txid = c.tx_submit(hex_of(&t)).await.unwrap();
    let confirmed = wait_for("the transfer confirmed", Duration::from_secs(60), || async {
        let s = c.chain_get_transaction(txid.to_hex()).await.ok()??;
        (s.status == "confirmed").then_some(s)
    })
    .await;
    let height = confirmed.height.unwrap();

    // The recipient sees it coming in from the sender, the sender going out.
    let to = c.state_get_history(dev(3).to_text(), None, None).await.unwrap();
    assert_eq!(to.address, dev(3));
    assert_eq!(to.entries.len(), 1, "{to:?}");
    let e = &to.entries[0];
    assert_eq!((e.txid, e.height, e.direction.as_str()), (txid, height, "in"));
    assert_eq!((e.counterparty, e.amount, e.fee, e.nonce), (Some(dev(2)), 123_456, 789, 0));
    assert_eq!(Some(e.block_hash), c.chain_get_block_hash(height).await.unwrap());
    assert_eq!(e.confirmations, to.tip_height - height + 1);
    let block = c.chain_get_block_by_height(height).await.unwrap().unwrap();
    assert_eq!(e.timestamp_ms, block.timestamp_ms);
    assert!(to.pending.is_empty() && to.next.is_none());
    let from = c.state_get_history(dev(2).to_text(), None, Some(10)).await.unwrap();
    assert_eq!(from.entries.len(), 1);
    let e = &from.entries[0];
    assert_eq!((e.txid, e.direction.as_str(), e.counterparty), (txid, "out", Some(dev(3))));
    assert_eq!((e.amount, e.fee), (123_456, 789));

    // The miner (dev account 0) has a coinbase per block: page through them by 3.
    let tip = wait_for("height 8", Duration::from_secs(60), || async {
        let i = c.chain_get_info().await.ok()?;
        (i.height >= 8).then_some(i.height)
    })
    .await;
    let mut seen = Vec::new();
    let mut before = None;
    let mut pages = 0;
    loop {
        let page = c.state_get_history(dev(0).to_text(), before.clone(), Some(3)).await.unwrap();
        assert!(page.entries.len() <= 3);
        if before.is_some() {
            assert!(page.pending.is_empty(), "pending only on the first page");
        }
        for e in &page.entries {
            assert_eq!(e.direction, "coinbase");
            assert_eq!((e.counterparty, e.fee, e.nonce), (None, 0, e.height));
            seen.push(e.height);
        }
        pages += 1;
        match page.next {
            Some(n) => before = Some(n),
            None => break,
        }
    }
    assert!(pages >= 3, "{pages} pages");
    // Newest first, every block once: the coinbases of heights seen..=1, with no gap
    // (blocks mined while paging are above the first page, so they are not listed).
    assert!(seen.windows(2).all(|w| w[0] == w[1] + 1), "{seen:?}");
    assert_eq!(*seen.last().unwrap(), 1);
    assert!(seen[0] >= tip);
    let unique: HashSet<_> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len());

    // chain_getBlocks: a window from height 1, oldest first, with the counts and sizes
    // of the full blocks.
    let blocks = c.chain_get_blocks(1, 5).await.unwrap();
    assert_eq!(blocks.iter().map(|b| b.height).collect::<Vec<_>>(), vec![1, 2, 3, 4, 5]);
    for b in &blocks {
        let full = c.chain_get_block_by_height(b.height).await.unwrap().unwrap();
        assert_eq!((b.hash, b.prev, b.timestamp_ms), (full.hash, full.prev, full.timestamp_ms));
        assert_eq!(&b.target, &full.target);
        assert_eq!(b.tx_count as usize, full.transactions.unwrap().len());
        assert_eq!(Some(b.size), full.size);
    }
    let with_transfer = c.chain_get_blocks(height, 1).await.unwrap();
    assert_eq!(with_transfer[0].tx_count, 2);
    // Near the tip the list is shorter; at the tip one block.
    let info = c.chain_get_info().await.unwrap();
    let last = c.chain_get_blocks(info.height, 100).await.unwrap();
    assert!(!last.is_empty() && last[0].height == info.height);
    let genesis = c.chain_get_blocks(0, 1).await.unwrap();
    assert_eq!((genesis[0].height, genesis[0].tx_count), (0, 0));

    // Named parameters work as the docs show them.
    let v = node.rpc("state_getHistory", json!({"address": dev(3).to_text(), "limit": 1})).unwrap();
    assert_eq!(v["entries"][0]["txid"], json!(txid.to_hex()));
    assert_eq!(v["entries"][0]["direction"], json!("in"));
    let v = node.rpc("chain_getBlocks", json!({"from_height": 1, "count": 2})).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn pending_transfers_are_listed_by_address_and_by_fee_rate() {
    let node = NodeProcess::start_dev(env!("CARGO_BIN_EXE_cairn-node"), &["--no-mine"]);
    let c = client(&node);
    // Same-sized transfers from three senders: the fee decides the rate.
    let low = transfer(4, 5, 0, 1_000, 5);
    let high = transfer(6, 5, 0, 2_000, 50);
    let mid = transfer(5, 7, 0, 3_000, 20);
    for t in [&low, &high, &mid] {
        c.tx_submit(hex_of(t)).await.unwrap();
    }
    let all = c.mempool_get_transfers(None).await.unwrap();
    assert_eq!(all.size, 3);
    let order: Vec<_> = all.transfers.iter().map(|t| t.txid).collect();
    assert_eq!(order, vec![high.txid(), mid.txid(), low.txid()]);
    let first = &all.transfers[0];
    assert_eq!((first.from, first.to, first.amount, first.fee, first.nonce), (dev(6), dev(5), 2_000, 50, 0));
    assert!(first.size > 100 && (first.fee_rate - 50.0 / first.size as f64).abs() < 1e-9);
    assert!(first.received_ms > 0);
    let top = c.mempool_get_transfers(Some(1)).await.unwrap();
    assert_eq!((top.size, top.transfers.len()), (3, 1));

    // Dev account 5 receives two and sends one: all three pending, nothing confirmed.
    let h = c.state_get_history(dev(5).to_text(), None, None).await.unwrap();
    assert!(h.entries.is_empty() && h.next.is_none());
    let mut pending: Vec<_> =
        h.pending.iter().map(|p| (p.txid, p.direction.as_str(), p.counterparty, p.amount, p.fee)).collect();
    pending.sort();
    let mut want = vec![
        (low.txid(), "in", dev(4), 1_000, 5),
        (high.txid(), "in", dev(6), 2_000, 50),
        (mid.txid(), "out", dev(7), 3_000, 20),
    ];
    want.sort();
    assert_eq!(pending, want);
    // Newest admission first.
    assert_eq!(h.pending[0].txid, mid.txid());
    let h7 = c.state_get_history(dev(7).to_text(), None, None).await.unwrap();
    assert_eq!(h7.pending.len(), 1);
    assert_eq!((h7.pending[0].direction.as_str(), h7.pending[0].counterparty), ("in", dev(5)));
}

#[tokio::test]
async fn history_and_block_list_errors_say_what_was_wrong() {
    let node = NodeProcess::start_dev(env!("CARGO_BIN_EXE_cairn-node"), &["--no-mine"]);
    let c = client(&node);
    let a = dev(1).to_text();
    let mut typo: Vec<char> = a.chars().collect();
    typo[8] = if typo[8] == '0' { '1' } else { '0' };
    let typo: String = typo.into_iter().collect();
    let (code, msg) = call_err(c.state_get_history(typo, None, None).await);
    assert_eq!(code, -32602);
    assert!(msg.contains("bad address") && msg.contains("checksum"), "{msg}");
    for cursor in ["abc", "12", "12:x", "-1:0", "1:99999999999", ""] {
        let (code, msg) = call_err(c.state_get_history(a.clone(), Some(cursor.into()), None).await);
        assert_eq!(code, -32602, "{cursor}");
        assert!(msg.contains("bad cursor") && msg.contains("HEIGHT:INDEX"), "{cursor}: {msg}");
    }
    for limit in [0, 101, u64::MAX] {
        let (code, msg) = call_err(c.state_get_history(a.clone(), None, Some(limit)).await);
        assert_eq!(code, -32602);
        assert!(msg.contains("limit must be between 1 and 100"), "{msg}");
    }
    // A well-formed cursor past the tip is no error: there is just nothing newer.
    let h = c.state_get_history(a.clone(), Some("1000000:0".into()), Some(5)).await.unwrap();
    assert!(h.entries.is_empty() && h.next.is_none());

    let (code, msg) = call_err(c.chain_get_blocks(1, 1).await);
    assert_eq!(code, -32602);
    assert_eq!(msg, "from_height 1 is above the tip (height 0)");
    for count in [0, 101] {
        let (code, msg) = call_err(c.chain_get_blocks(0, count).await);
        assert_eq!(code, -32602);
        assert!(msg.contains("count must be between 1 and 100"), "{msg}");
    }
    for limit in [0, 1001] {
        let (code, msg) = call_err(c.mempool_get_transfers(Some(limit)).await);
        assert_eq!(code, -32602);
        assert!(msg.contains("limit must be between 1 and 1000"), "{msg}");
    }
    // A negative or fractional number is refused by the parameter parser.
    let err = node.rpc("chain_getBlocks", json!({"from_height": -1, "count": 1})).unwrap_err();
    assert!(err.to_string().contains("-32602"), "{err}");

    // A node without the index says so.
    let off = NodeProcess::start_dev(env!("CARGO_BIN_EXE_cairn-node"), &["--no-mine", "--no-address-index"]);
    let (code, msg) = call_err(client(&off).state_get_history(a, None, None).await);
    assert_eq!(code, ADDRESS_INDEX_OFF);
    assert!(msg.contains("--no-address-index"), "{msg}");
    // The rest still answers.
    let v: Value = off.rpc("chain_getBlocks", json!([0, 1])).unwrap();
    assert_eq!(v[0]["height"], json!(0));
}
