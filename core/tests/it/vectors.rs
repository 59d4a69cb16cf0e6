//! The published test vectors (core/tests/data/vectors.json), checked against the code
//! and, where a rule is simple enough, against a from-scratch computation of the rule
//! as docs/CONSENSUS.md states it.

use cairn_core::block::BlockHeader;
use cairn_core::encoding::{decode, encode};
use cairn_core::genesis::{dev_key_bytes, Genesis};
use cairn_core::merkle::merkle_root;
use cairn_core::transaction::{
    address_of, public_key_of, signing_key_from_bytes, SignedTransfer, Transaction,
};
use cairn_core::{Address, Txid};
use serde_json::Value;
use sha2::{Digest, Sha256};

fn vectors() -> Value {
    let text = include_str!("../data/vectors.json");
    serde_json::from_str(text).unwrap()
}

fn s<'a>(v: &'a Value, path: &[&str]) -> &'a str {
    let mut cur = v;
    for p in path {
        cur = &cur[*p];
    }
    cur.as_str().unwrap_or_else(|| panic!("missing string at {path:?}"))
}

fn sha(parts: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    hex::encode(h.finalize())
}

#[test]
fn transfer_vector() {
    let v = vectors();
    let key_bytes = hex::decode(s(&v, &["transfer", "private_key"])).unwrap();
    assert_eq!(key_bytes, dev_key_bytes(0));
    // Dev key 0 is SHA-256("cairn dev account 0").
    assert_eq!(hex::encode(&key_bytes), sha(&[b"cairn dev account 0"]));
    let key = signing_key_from_bytes(&key_bytes).unwrap();
    assert_eq!(hex::encode(public_key_of(&key)), s(&v, &["transfer", "public_key"]));
    assert_eq!(address_of(&key).to_text(), s(&v, &["transfer", "from_address"]));
    // Address = first 20 bytes of SHA-256(compressed public key).
    let pk = hex::decode(s(&v, &["transfer", "public_key"])).unwrap();
    assert_eq!(&sha(&[&pk])[..40], &s(&v, &["transfer", "from_address"])[..40]);

    let signed_bytes = hex::decode(s(&v, &["transfer", "signed_encoding"])).unwrap();
    let signed: SignedTransfer = decode(&signed_bytes).unwrap();
    assert_eq!(encode(&signed), signed_bytes, "decode then encode gives the same bytes");
    let t = signed.transfer;
    assert_eq!(u64::from(t.chain_id), v["transfer"]["chain_id"].as_u64().unwrap());
    assert_eq!(t.amount.0, v["transfer"]["amount"].as_u64().unwrap());
    assert_eq!(t.fee.0, v["transfer"]["fee"].as_u64().unwrap());
    assert_eq!(t.to.to_text(), s(&v, &["transfer", "to"]));

    let unsigned = hex::decode(s(&v, &["transfer", "unsigned_encoding"])).unwrap();
    assert_eq!(encode(&t), unsigned);
    // Layout: chain_id u32 | nonce u64 | from 33 | to 20 | amount u64 | fee u64, LE.
    assert_eq!(unsigned.len(), 4 + 8 + 33 + 20 + 8 + 8);
    assert_eq!(&unsigned[..4], &t.chain_id.to_le_bytes());
    let sighash = sha(&[b"cairn/transfer-sighash/v1", &unsigned]);
    assert_eq!(sighash, s(&v, &["transfer", "signing_hash"]));
    assert_eq!(hex::encode(t.signing_hash()), sighash);

    // Signing is deterministic (RFC 6979), so re-signing gives the published signature.
    let resigned = t.sign(&key).unwrap();
    assert_eq!(hex::encode(resigned.signature), s(&v, &["transfer", "signature"]));
    assert_eq!(signed.verify(t.chain_id), Ok(()));

    let tx_bytes = hex::decode(s(&v, &["transfer", "transaction_encoding"])).unwrap();
    assert_eq!(&tx_bytes[..4], &1u32.to_le_bytes(), "variant 1 = transfer");
    assert_eq!(&tx_bytes[4..], &signed_bytes[..]);
    assert_eq!(encode(&Transaction::Transfer(signed)), tx_bytes);
    assert_eq!(sha(&[b"cairn/txid/v1", &tx_bytes]), s(&v, &["transfer", "txid"]));
    assert_eq!(signed.txid().to_hex(), s(&v, &["transfer", "txid"]));
}

#[test]
fn header_vector() {
    let v = vectors();
    let bytes = hex::decode(s(&v, &["header", "encoding"])).unwrap();
    let h: BlockHeader = decode(&bytes).unwrap();
    assert_eq!(h.to_bytes().to_vec(), bytes);
    assert_eq!(h.nonce, v["header"]["nonce"].as_u64().unwrap());
    assert_eq!(h.timestamp_ms, v["header"]["timestamp_ms"].as_u64().unwrap());
    assert_eq!(h.prev.to_hex(), s(&v, &["header", "prev"]));
    assert_eq!(sha(&[&bytes]), s(&v, &["header", "hash"]));
    assert_eq!(h.hash().to_hex(), s(&v, &["header", "hash"]));
}

#[test]
fn merkle_vector() {
    let v = vectors();
    let txids: Vec<Txid> = v["merkle"]["txids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().parse().unwrap())
        .collect();
    let root = s(&v, &["merkle", "root"]);
    assert_eq!(hex::encode(merkle_root(&txids)), root);
    // From scratch: leaves 0x00||txid, nodes 0x01||l||r, odd last node promoted.
    let leaf = |t: &Txid| hex::decode(sha(&[&[0u8], &t.0])).unwrap();
    let (a, b, c) = (leaf(&txids[0]), leaf(&txids[1]), leaf(&txids[2]));
    let ab = hex::decode(sha(&[&[1u8], &a, &b])).unwrap();
    assert_eq!(sha(&[&[1u8], &ab, &c]), root);
}

#[test]
fn address_vector() {
    let v = vectors();
    let bytes = hex::decode(s(&v, &["address", "bytes"])).unwrap();
    let text = s(&v, &["address", "text"]);
    let a: Address = text.parse().unwrap();
    assert_eq!(a.0.to_vec(), bytes);
    let checksum = &sha(&[b"cairn/address-checksum/v1", &bytes])[..8];
    assert_eq!(&text[40..], checksum);
}

#[test]
fn genesis_vectors() {
    let v = vectors();
    assert_eq!(Genesis::dev().hash().to_hex(), s(&v, &["genesis", "dev_hash"]));
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../genesis.json");
    let testnet = Genesis::from_json(&std::fs::read_to_string(path).unwrap()).unwrap();
    assert_eq!(testnet.hash().to_hex(), s(&v, &["genesis", "testnet_hash"]));
}
