//! `cairn-node --dev` end to end: a transfer signed by dev account 0 and submitted with
//! tx_submit is confirmed within a few blocks; balances and nonces move by exactly the
//! amount and fee, and the miner is paid reward + fees.
#![allow(clippy::unwrap_used)] // test helpers fail loudly

use cairn_api::CairnApiClient;
use cairn_core::genesis::{dev_keys, Genesis, DEV_BALANCE, DEV_CHAIN_ID};
use cairn_core::transaction::{address_of, public_key_of, Transfer};
use cairn_core::{encoding, Amount};
use cairn_tests::{wait_for, NodeProcess};
use jsonrpsee::http_client::HttpClientBuilder;
use std::time::Duration;

#[tokio::test]
async fn dev_transfer_is_confirmed_and_balances_move_exactly() {
    let keys = dev_keys();
    let (sender, recipient, miner) = (address_of(&keys[0]), address_of(&keys[1]), address_of(&keys[9]));
    let node =
        NodeProcess::start_dev(env!("CARGO_BIN_EXE_cairn-node"), &["--miner-address", &miner.to_text()]);
    let c = HttpClientBuilder::default().build(node.url()).unwrap();
    let reward = Genesis::dev().params.block_reward.0;
    const AMOUNT: u64 = 123_456;
    const FEE: u64 = 789;

    let before = c.state_get_account(sender.to_text()).await.unwrap();
    assert_eq!((before.balance, before.nonce), (DEV_BALANCE.0, 0));
    let signed = Transfer {
        chain_id: DEV_CHAIN_ID,
        nonce: before.pending_nonce,
        from: public_key_of(&keys[0]),
        to: recipient,
        amount: Amount(AMOUNT),
        fee: Amount(FEE),
    }
    .sign(&keys[0])
    .unwrap();
    let submitted_at = c.chain_get_info().await.unwrap().height;
    let txid = c.tx_submit(hex::encode(encoding::encode(&signed))).await.unwrap();
    assert_eq!(txid, signed.txid());

    let status = wait_for("confirmation", Duration::from_secs(90), || async {
        let s = c.chain_get_transaction(txid.to_hex()).await.ok()??;
        (s.status == "confirmed").then_some(s)
    })
    .await;
    let height = status.height.unwrap();
    assert!(height <= submitted_at + 5, "confirmed at {height}, submitted at {submitted_at}");

    // The confirming block's coinbase pays the miner reward + this fee (the only transfer).
    let block = c.chain_get_block(status.block_hash.unwrap().to_hex()).await.unwrap().unwrap();
    let txs = block.transactions.unwrap();
    assert_eq!(txs.len(), 2);
    assert_eq!(txs[0].to, miner);
    assert_eq!(txs[0].amount, reward + FEE);
    assert_eq!(txs[1].txid, txid);

    let after = c.state_get_account(sender.to_text()).await.unwrap();
    assert_eq!(after.balance, DEV_BALANCE.0 - AMOUNT - FEE);
    assert_eq!((after.nonce, after.pending_nonce), (1, 1));
    let to = c.state_get_account(recipient.to_text()).await.unwrap();
    assert_eq!((to.balance, to.nonce), (DEV_BALANCE.0 + AMOUNT, 0));

    // The miner has every block's reward plus the fee. Read its balance between two
    // identical heights so no block lands in between.
    let (h, paid) = wait_for("a quiet moment between blocks", Duration::from_secs(60), || async {
        let h1 = c.chain_get_info().await.ok()?.height;
        let m = c.state_get_account(miner.to_text()).await.ok()?;
        let h2 = c.chain_get_info().await.ok()?.height;
        (h1 == h2).then_some((h1, m.balance))
    })
    .await;
    assert_eq!(paid, DEV_BALANCE.0 + h * reward + FEE);

    // Proof of inclusion checks against the header.
    let proof = c.chain_get_tx_proof(txid.to_hex()).await.unwrap().unwrap();
    let header = hex::decode(proof.header_hex).unwrap();
    assert!(proof.proof.verify(&txid, header[44..76].try_into().unwrap()));
    drop(node);
}

#[test]
fn dev_mode_prints_accounts_and_keys() {
    let node = NodeProcess::start_dev(env!("CARGO_BIN_EXE_cairn-node"), &["--no-mine"]);
    let text = node.stdout_text();
    for (i, k) in dev_keys().iter().enumerate() {
        assert!(text.contains(&format!("({i}) {}", address_of(k))), "account {i} missing:\n{text}");
        // Key i is SHA-256 of "cairn dev account i", as the design fixes.
        let key: [u8; 32] =
            <sha2::Sha256 as sha2::Digest>::digest(format!("cairn dev account {i}").as_bytes()).into();
        assert!(text.contains(&format!("({i}) {}", hex::encode(key))), "key {i} missing:\n{text}");
    }
    assert!(text.contains(&format!("RPC listening on http://{}", node.rpc_addr)));
}
