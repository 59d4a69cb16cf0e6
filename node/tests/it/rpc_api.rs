//! The JSON-RPC API over real HTTP and WebSocket against a running `cairn-node --dev`:
//! every method, every documented error, batches, junk and oversized requests, and the
//! node still serving afterwards.
#![allow(clippy::unwrap_used)] // test helpers fail loudly

use cairn_api::{codes, CairnApiClient};
use cairn_core::genesis::{dev_keys, Genesis, DEV_BALANCE, DEV_CHAIN_ID};
use cairn_core::transaction::{address_of, public_key_of, SignedTransfer, Transfer};
use cairn_core::{encoding, Address, Amount};
use cairn_tests::{raw_post, raw_post_declared, wait_for, NodeProcess};
use jsonrpsee::core::ClientError;
use jsonrpsee::http_client::{HeaderMap, HeaderValue, HttpClient, HttpClientBuilder};
use jsonrpsee::ws_client::WsClientBuilder;
use sha2::{Digest, Sha256};
use std::time::Duration;

fn client(node: &NodeProcess) -> HttpClient {
    HttpClientBuilder::default().request_timeout(Duration::from_secs(30)).build(node.url()).unwrap()
}

fn authed_client(node: &NodeProcess, cookie: &str) -> HttpClient {
    use base64::Engine;
    let mut headers = HeaderMap::new();
    let v = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(cookie));
    headers.insert("Authorization", HeaderValue::from_str(&v).unwrap());
    HttpClientBuilder::default().set_headers(headers).build(node.url()).unwrap()
}

/// The error code and message of a failed call.
fn call_err<T: std::fmt::Debug>(r: Result<T, ClientError>) -> (i32, String) {
    match r {
        Err(ClientError::Call(e)) => (e.code(), e.message().to_string()),
        other => panic!("expected a JSON-RPC error, got {other:?}"),
    }
}

fn transfer(key_index: usize, nonce: u64, amount: u64, fee: u64) -> SignedTransfer {
    let k = &dev_keys()[key_index];
    Transfer {
        chain_id: DEV_CHAIN_ID,
        nonce,
        from: public_key_of(k),
        to: address_of(&dev_keys()[1]),
        amount: Amount(amount),
        fee: Amount(fee),
    }
    .sign(k)
    .unwrap()
}

fn hex_of(t: &SignedTransfer) -> String {
    hex::encode(encoding::encode(t))
}

#[tokio::test]
async fn rpc_every_method_answers() {
    let node = NodeProcess::start_dev(env!("CARGO_BIN_EXE_cairn-node"), &[]);
    let c = client(&node);
    let info = c.chain_get_info().await.unwrap();
    assert_eq!(info.chain_id, DEV_CHAIN_ID);
    assert_eq!(info.genesis_hash, Genesis::dev().hash());
    assert_eq!(info.peers, 0);

    // Wait for a couple of mined blocks.
    let info = wait_for("height 2", Duration::from_secs(60), || async {
        let i = c.chain_get_info().await.ok()?;
        (i.height >= 2).then_some(i)
    })
    .await;
    assert_eq!(info.target.len(), 64);
    assert!(!info.total_work.is_empty());

    assert_eq!(c.chain_get_block_hash(0).await.unwrap(), Some(Genesis::dev().hash()));
    assert_eq!(c.chain_get_block_hash(u64::MAX).await.unwrap(), None);
    let h1 = c.chain_get_block_hash(1).await.unwrap().unwrap();

    let b1 = c.chain_get_block(h1.to_hex()).await.unwrap().unwrap();
    assert_eq!(b1.hash, h1);
    assert_eq!(b1.height, 1);
    assert_eq!(b1.prev, Genesis::dev().hash());
    assert!(b1.confirmations >= 1);
    assert_eq!((b1.status.as_str(), &b1.invalid_reason), ("main", &None));
    let b1_txs = b1.transactions.clone().unwrap();
    assert_eq!(b1_txs[0].kind, "coinbase");
    assert_eq!(b1_txs[0].to, address_of(&dev_keys()[0]));
    // The header hex hashes to the block hash.
    let header = hex::decode(&b1.header_hex).unwrap();
    assert_eq!(header.len(), 124);
    assert_eq!(hex::encode(Sha256::digest(&header)), h1.to_hex());
    let by_height = c.chain_get_block_by_height(1).await.unwrap().unwrap();
    assert_eq!((by_height.hash, &by_height.transactions), (b1.hash, &b1.transactions));
    assert_eq!(c.chain_get_block_by_height(u64::MAX).await.unwrap(), None);
    assert_eq!(c.chain_get_block("00".repeat(32)).await.unwrap(), None);

    // The coinbase as a confirmed transaction, with a proof that checks against the header.
    let cb = &b1_txs[0];
    let st = c.chain_get_transaction(cb.txid.to_hex()).await.unwrap().unwrap();
    assert_eq!(st.status, "confirmed");
    assert_eq!(st.block_hash, Some(h1));
    assert_eq!(st.height, Some(1));
    assert!(st.confirmations >= 1);
    let proof = c.chain_get_tx_proof(cb.txid.to_hex()).await.unwrap().unwrap();
    let header = hex::decode(&proof.header_hex).unwrap();
    let mut root = [0u8; 32];
    root.copy_from_slice(&header[44..76]);
    assert!(proof.proof.verify(&cb.txid, &root));
    assert_eq!(hex::encode(Sha256::digest(&header)), proof.block_hash.to_hex());
    assert_eq!(c.chain_get_transaction("ab".repeat(32)).await.unwrap(), None);
    assert_eq!(c.chain_get_tx_proof("ab".repeat(32)).await.unwrap(), None);

    // Accounts: a dev account is funded; an unknown address is empty.
    let a9 = c.state_get_account(address_of(&dev_keys()[9]).to_text()).await.unwrap();
    assert_eq!((a9.balance, a9.nonce, a9.pending_nonce), (DEV_BALANCE.0, 0, 0));
    let nobody = c.state_get_account(Address([5; 20]).to_text()).await.unwrap();
    assert_eq!((nobody.balance, nobody.nonce), (0, 0));

    // A pending transfer shows in the mempool, as pending, and in pending_nonce.
    let t = transfer(2, 0, 1_000, 10);
    let txid = c.tx_submit(hex_of(&t)).await.unwrap();
    assert_eq!(txid, t.txid());
    let pending = c.chain_get_transaction(txid.to_hex()).await.unwrap().unwrap();
    assert!(pending.status == "pending" || pending.status == "confirmed");
    assert_eq!(pending.tx.amount, 1_000);
    assert_eq!(pending.tx.from, Some(address_of(&dev_keys()[2])));
    let m = c.mempool_get_info().await.unwrap();
    assert_eq!(m.size, m.txids.len());
    assert!(m.min_fee >= 1);
    if pending.status == "pending" {
        assert_eq!(c.state_get_account(address_of(&dev_keys()[2]).to_text()).await.unwrap().pending_nonce, 1);
    }

    assert_eq!(c.net_peers().await.unwrap(), vec![]);
}

#[tokio::test]
async fn rpc_errors_say_what_was_wrong() {
    let node = NodeProcess::start_dev(env!("CARGO_BIN_EXE_cairn-node"), &["--no-mine"]);
    let c = client(&node);
    const INVALID_PARAMS: i32 = -32602;
    const INTERNAL_ERROR: i32 = -32603;

    let (code, msg) = call_err(c.chain_get_block("zz".repeat(32)).await);
    assert_eq!(code, INVALID_PARAMS);
    assert!(msg.contains("bad block hash") && msg.contains("hex"), "{msg}");
    let (code, msg) = call_err(c.chain_get_block("abcd".into()).await);
    assert_eq!(code, INVALID_PARAMS);
    assert!(msg.contains("64 hex characters"), "{msg}");
    let (code, msg) = call_err(c.chain_get_transaction("xyz".into()).await);
    assert_eq!(code, INVALID_PARAMS);
    assert!(msg.contains("bad txid"), "{msg}");
    let (code, _) = call_err(c.chain_get_tx_proof("12".into()).await);
    assert_eq!(code, INVALID_PARAMS);

    // Addresses: wrong checksum, wrong length, not hex.
    let mut text = address_of(&dev_keys()[0]).to_text();
    let last = if text.ends_with('0') { "1" } else { "0" };
    text.replace_range(text.len() - 1.., last);
    let (code, msg) = call_err(c.state_get_account(text).await);
    assert_eq!(code, INVALID_PARAMS);
    assert!(msg.contains("checksum"), "{msg}");
    let (code, msg) = call_err(c.state_get_account("abc".into()).await);
    assert_eq!(code, INVALID_PARAMS);
    assert!(msg.contains("48 hex characters"), "{msg}");
    let (code, msg) = call_err(c.state_get_account("g".repeat(48)).await);
    assert_eq!(code, INVALID_PARAMS);
    assert!(msg.contains("hexadecimal"), "{msg}");

    // tx_submit: malformed input is invalid params.
    let (code, msg) = call_err(c.tx_submit("not hex".into()).await);
    assert_eq!(code, INVALID_PARAMS);
    assert!(msg.contains("bad hex"), "{msg}");
    let (code, msg) = call_err(c.tx_submit("abcd".into()).await);
    assert_eq!(code, INVALID_PARAMS);
    assert!(msg.contains("not the canonical encoding"), "{msg}");

    // tx_submit refusals carry the mempool's reason.
    let refused = |r: Result<cairn_core::Txid, ClientError>, want: &str| {
        let (code, msg) = call_err(r);
        assert_eq!(code, codes::TX_REJECTED, "{msg}");
        assert!(msg.contains(want), "wanted {want:?} in {msg:?}");
    };
    let mut bad_sig = transfer(0, 0, 5, 5);
    bad_sig.transfer.amount = Amount(6);
    refused(c.tx_submit(hex_of(&bad_sig)).await, "bad signature");
    let k = &dev_keys()[0];
    let other_chain = Transfer { chain_id: 1, ..transfer(0, 0, 5, 5).transfer }.sign(k).unwrap();
    refused(c.tx_submit(hex_of(&other_chain)).await, "wrong chain id");
    refused(c.tx_submit(hex_of(&transfer(0, 0, DEV_BALANCE.0, 1))).await, "insufficient balance");
    refused(c.tx_submit(hex_of(&transfer(0, 0, 5, 0))).await, "fee too low");
    refused(c.tx_submit(hex_of(&transfer(0, 3, 5, 5))).await, "nonce gap");
    let ok = transfer(0, 0, 5, 5);
    c.tx_submit(hex_of(&ok)).await.unwrap();
    refused(c.tx_submit(hex_of(&ok)).await, "duplicate");
    refused(c.tx_submit(hex_of(&transfer(0, 0, 6, 5))).await, "replacement fee too low");
    // A transaction-wrapped encoding is accepted too (and is the same transfer here).
    let wrapped = hex::encode(encoding::encode(&cairn_core::Transaction::Transfer(ok)));
    refused(c.tx_submit(wrapped).await, "duplicate");

    // Unknown method and wrong parameter types.
    let (code, _) = call_err(
        jsonrpsee::core::client::ClientT::request::<serde_json::Value, _>(
            &c,
            "chain_nope",
            jsonrpsee::rpc_params![],
        )
        .await,
    );
    assert_eq!(code, -32601);
    let (code, _) = call_err(
        jsonrpsee::core::client::ClientT::request::<serde_json::Value, _>(
            &c,
            "chain_getBlockHash",
            jsonrpsee::rpc_params!["one"],
        )
        .await,
    );
    assert_eq!(code, INVALID_PARAMS);

    // Admin: no cookie, wrong cookie, then the right one.
    let (code, msg) = call_err(c.net_add_peer("127.0.0.1:1".into()).await);
    assert_eq!(code, codes::UNAUTHORIZED, "{msg}");
    let wrong = authed_client(&node, "__cookie__:0000");
    let (code, _) = call_err(wrong.net_add_peer("127.0.0.1:1".into()).await);
    assert_eq!(code, codes::UNAUTHORIZED);
    let cookie = node.cookie().unwrap();
    assert!(cookie.starts_with("__cookie__:"));
    let admin = authed_client(&node, &cookie);
    let (code, msg) = call_err(admin.net_add_peer("not an address".into()).await);
    assert_eq!(code, INVALID_PARAMS);
    assert!(msg.contains("bad peer address"), "{msg}");
    match admin.net_add_peer(node.p2p_addr.to_string()).await {
        Ok(ok) => assert!(ok),
        // Authorized, but the P2P layer may refuse (e.g. connecting to itself).
        Err(ClientError::Call(e)) => assert_ne!(e.code(), codes::UNAUTHORIZED, "{}", e.message()),
        Err(e) => panic!("{e}"),
    }

    // Blocking a peer: admin only, IP:PORT only, and the result says whether it changed.
    let (code, _) = call_err(c.net_block_peer("127.0.0.1:1".into()).await);
    assert_eq!(code, codes::UNAUTHORIZED);
    let (code, _) = call_err(wrong.net_unblock_peer("127.0.0.1:1".into()).await);
    assert_eq!(code, codes::UNAUTHORIZED);
    let (code, msg) = call_err(admin.net_block_peer("127.0.0.1".into()).await);
    assert_eq!(code, INVALID_PARAMS);
    assert!(msg.contains("expected IP:PORT"), "{msg}");
    assert!(!admin.net_unblock_peer("127.0.0.1:1".into()).await.unwrap(), "was not blocked");
    assert!(admin.net_block_peer("127.0.0.1:1".into()).await.unwrap());
    assert!(!admin.net_block_peer(" 127.0.0.1:1 ".into()).await.unwrap(), "already blocked");
    let (code, msg) = call_err(admin.net_add_peer("127.0.0.1:1".into()).await);
    assert_eq!(code, INTERNAL_ERROR, "{msg}");
    assert!(msg.contains("is blocked"), "{msg}");
    assert!(admin.net_unblock_peer("127.0.0.1:1".into()).await.unwrap());

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(node.data_dir.join(".cookie")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    // Still serving.
    c.chain_get_info().await.unwrap();
}

/// A node started with a small `--mempool-max-bytes`: once full, a transfer paying no
/// more than the lowest pending one is refused with "mempool full" and changes nothing;
/// one paying more is admitted and the lowest is evicted.
#[tokio::test]
async fn rpc_mempool_full_refuses_low_fee_and_evicts() {
    // Sizes are counted as in a block: the transfer wrapped as a transaction.
    let size = cairn_node::mempool::transfer_size(&transfer(2, 0, 5, 10));
    let cap = 4 * size;
    let node = NodeProcess::start_dev(
        env!("CARGO_BIN_EXE_cairn-node"),
        &["--no-mine", "--mempool-max-bytes", &cap.to_string()],
    );
    let c = client(&node);

    // Four senders fill the pool exactly; the first pays the least.
    let fees = [10u64, 20, 30, 40];
    let mut pending = Vec::new();
    for (i, fee) in fees.iter().enumerate() {
        pending.push(c.tx_submit(hex_of(&transfer(2 + i, 0, 5, *fee))).await.unwrap());
    }
    let m = c.mempool_get_info().await.unwrap();
    assert_eq!((m.size, m.bytes), (4, cap));
    assert_eq!(m.min_fee, 11, "full: a newcomer must beat the lowest fee (10)");

    // No better than the lowest: refused, with the fee it would need; nothing changes.
    let (code, msg) = call_err(c.tx_submit(hex_of(&transfer(6, 0, 5, 10))).await);
    assert_eq!(code, codes::TX_REJECTED, "{msg}");
    assert!(msg.contains("mempool full") && msg.contains("at least 11"), "{msg}");
    let after = c.mempool_get_info().await.unwrap();
    assert_eq!(after.txids, m.txids);

    // A higher fee rate gets in and the fee-10 transfer is evicted.
    let rich = c.tx_submit(hex_of(&transfer(7, 0, 5, 25))).await.unwrap();
    let after = c.mempool_get_info().await.unwrap();
    assert_eq!(after.size, 4);
    assert!(after.txids.contains(&rich));
    assert!(!after.txids.contains(&pending[0]), "the lowest fee was not evicted");
    assert!(pending[1..].iter().all(|t| after.txids.contains(t)));
    assert!(c.chain_get_transaction(pending[0].to_string()).await.unwrap().is_none());
    assert_eq!(after.min_fee, 21);
}

#[tokio::test]
async fn rpc_batch_junk_and_oversized_requests() {
    let node = NodeProcess::start_dev(env!("CARGO_BIN_EXE_cairn-node"), &["--no-mine"]);

    let batch = br#"[{"jsonrpc":"2.0","id":1,"method":"chain_getInfo"},
                     {"jsonrpc":"2.0","id":2,"method":"chain_getBlockHash","params":[0]},
                     {"jsonrpc":"2.0","id":3,"method":"no_such_method"}]"#;
    let (status, body) = node.raw_post(batch);
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let arr = v.as_array().expect("batch answer is an array");
    assert_eq!(arr.len(), 3);
    let by_id = |id: i64| arr.iter().find(|r| r["id"] == id).unwrap().clone();
    assert_eq!(by_id(1)["result"]["chain_id"], DEV_CHAIN_ID);
    assert_eq!(by_id(2)["result"], Genesis::dev().hash().to_hex());
    assert_eq!(by_id(3)["error"]["code"], -32601);

    // A batch past the limit is refused as a whole.
    let big: Vec<String> =
        (0..101).map(|i| format!(r#"{{"jsonrpc":"2.0","id":{i},"method":"chain_getInfo"}}"#)).collect();
    let (status, body) = node.raw_post(format!("[{}]", big.join(",")).as_bytes());
    assert_eq!(status, 200);
    // As one invalid-request error (not -32010, which means a tx_submit refusal).
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"]["code"], -32600, "{body}");
    assert_eq!(v["id"], serde_json::Value::Null, "{body}");
    assert_eq!(v["error"]["message"], "invalid request: a batch holds at most 100 calls, this one has 101");
    // 100 calls are fine.
    let (status, body) = node.raw_post(format!("[{}]", big[..100].join(",")).as_bytes());
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v.as_array().map(Vec::len), Some(100), "{body}");

    // Named parameters, with the names RPC.md gives.
    let (_, body) =
        node.raw_post(br#"{"jsonrpc":"2.0","id":1,"method":"chain_getBlockHash","params":{"height":0}}"#);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["result"], Genesis::dev().hash().to_hex(), "{body}");
    let named = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"chain_getBlock","params":{{"hash":"{}"}}}}"#,
        Genesis::dev().hash().to_hex()
    );
    let (_, body) = node.raw_post(named.as_bytes());
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["result"]["status"], "main", "{body}");
    assert_eq!(v["result"]["invalid_reason"], serde_json::Value::Null, "{body}");

    // Junk JSON: parse error.
    let (status, body) = node.raw_post(b"{this is not json");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    assert_eq!(v["error"]["code"], -32700, "status {status}: {body}");
    // Valid JSON that is not a request.
    let (_, body) = node.raw_post(br#"{"jsonrpc":"2.0","id":1}"#);
    assert!(body.contains("error"), "{body}");

    // Oversized body: 413 from the declared length, before the body is read.
    let (status, _) =
        raw_post_declared(node.rpc_addr, 600 * 1024, br#"{"jsonrpc":"2.0","id":1,"method":"#, None);
    assert_eq!(status, 413);
    // And through a real client sending all of it: refused, not a crash.
    let huge = "ab".repeat(600 * 1024);
    assert!(client(&node).tx_submit(huge).await.is_err());

    // Wrong Authorization on a read: reads still work.
    let (status, body) = raw_post(
        node.rpc_addr,
        br#"{"jsonrpc":"2.0","id":1,"method":"chain_getInfo"}"#,
        Some("Basic Zm9vOmJhcg=="),
    );
    assert_eq!(status, 200, "{body}");

    // The node keeps serving.
    let info = client(&node).chain_get_info().await.unwrap();
    assert_eq!(info.chain_id, DEV_CHAIN_ID);
}

#[tokio::test]
async fn rpc_subscribe_new_heads_over_websocket() {
    let node = NodeProcess::start_dev(env!("CARGO_BIN_EXE_cairn-node"), &[]);
    let ws = WsClientBuilder::default().build(node.ws_url()).await.unwrap();
    // Methods work over WebSocket too.
    let info = ws.chain_get_info().await.unwrap();
    assert_eq!(info.chain_id, DEV_CHAIN_ID);
    let mut sub = ws.chain_subscribe_new_heads().await.unwrap();
    let first = next(&mut sub).await;
    let second = next(&mut sub).await;
    assert_eq!(second.height, first.height + 1);
    assert_eq!(second.prev, first.hash);
    assert_eq!(second.reorg_depth, 0);
    let c = client(&node);
    assert_eq!(c.chain_get_block_hash(second.height).await.unwrap(), Some(second.hash));
}

async fn next(sub: &mut jsonrpsee::core::client::Subscription<cairn_api::NewHead>) -> cairn_api::NewHead {
    tokio::time::timeout(Duration::from_secs(60), sub.next())
        .await
        .expect("a head in time")
        .expect("stream open")
        .expect("a well-formed head")
}
