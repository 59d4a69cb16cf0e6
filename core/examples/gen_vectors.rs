//! Prints the test vectors in core/tests/data/vectors.json (and can write the testnet
#![allow(clippy::unwrap_used)] // a developer tool: failing loudly is right
//! genesis.json). Run `cargo run -p cairn-core --example gen_vectors -- vectors` after a
//! deliberate consensus change, review the diff, and commit it with the change.

use cairn_core::block::BlockHeader;
use cairn_core::encoding::encode;
use cairn_core::genesis::{dev_key_bytes, dev_keys, Allocation, Genesis, DEV_BALANCE};
use cairn_core::merkle::merkle_root;
use cairn_core::params::ChainParams;
use cairn_core::transaction::{address_of, public_key_of, Transaction, Transfer};
use cairn_core::{Address, Amount, BlockHash, Target, Txid};
use serde_json::json;

fn testnet_genesis() -> Genesis {
    Genesis {
        name: "cairn-testnet-1".to_string(),
        params: ChainParams {
            chain_id: 7331,
            timestamp_ms: 1_795_305_600_000, // 2026-11-22T00:00:00Z
            initial_target: "000000ffffffffffffffffffffffffffffffffffffffffffffffffffffffffff"
                .parse()
                .unwrap(),
            pow_limit: "00ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff".parse().unwrap(),
            target_block_time_ms: 10_000,
            half_life_ms: 600_000,
            block_reward: Amount(5_000_000_000),
            max_block_bytes: 1_000_000,
            median_time_blocks: 11,
            max_future_drift_ms: 120_000,
        },
        allocations: dev_keys()
            .iter()
            .map(|k| Allocation { address: address_of(k), balance: DEV_BALANCE })
            .collect(),
        seeds: Vec::new(),
    }
}

fn main() {
    let what = std::env::args().nth(1).unwrap_or_default();
    if what == "testnet-genesis" {
        println!("{}", testnet_genesis().to_json());
        return;
    }
    let key = &dev_keys()[0];
    let transfer = Transfer {
        chain_id: 1337,
        nonce: 0,
        from: public_key_of(key),
        to: address_of(&dev_keys()[1]),
        amount: Amount(1_000_000),
        fee: Amount(1_000),
    };
    let signed = transfer.sign(key).unwrap();
    let header = BlockHeader {
        version: 1,
        height: 1,
        prev: Genesis::dev().hash(),
        merkle_root: [0x11; 32],
        timestamp_ms: 1_767_225_601_000,
        target: Target([0xff; 32]),
        nonce: 42,
    };
    let txids = [Txid([1; 32]), Txid([2; 32]), Txid([3; 32])];
    let out = json!({
        "transfer": {
            "private_key": hex::encode(dev_key_bytes(0)),
            "public_key": hex::encode(transfer.from),
            "from_address": address_of(key).to_text(),
            "chain_id": transfer.chain_id,
            "nonce": transfer.nonce,
            "to": transfer.to.to_text(),
            "amount": transfer.amount.0,
            "fee": transfer.fee.0,
            "unsigned_encoding": hex::encode(encode(&transfer)),
            "signing_hash": hex::encode(transfer.signing_hash()),
            "signature": hex::encode(signed.signature),
            "signed_encoding": hex::encode(encode(&signed)),
            "transaction_encoding": hex::encode(encode(&Transaction::Transfer(signed))),
            "txid": signed.txid().to_hex(),
        },
        "header": {
            "version": header.version,
            "height": header.height,
            "prev": header.prev.to_hex(),
            "merkle_root": hex::encode(header.merkle_root),
            "timestamp_ms": header.timestamp_ms,
            "target": header.target.to_hex(),
            "nonce": header.nonce,
            "encoding": hex::encode(header.to_bytes()),
            "hash": header.hash().to_hex(),
        },
        "merkle": {
            "txids": txids.iter().map(|t| t.to_hex()).collect::<Vec<_>>(),
            "root": hex::encode(merkle_root(&txids)),
        },
        "address": {
            "bytes": hex::encode(Address([0xab; 20]).0),
            "text": Address([0xab; 20]).to_text(),
        },
        "genesis": {
            "dev_hash": Genesis::dev().hash().to_hex(),
            "testnet_hash": testnet_genesis().hash().to_hex(),
        },
        "zero_hash": BlockHash::ZERO.to_hex(),
    });
    println!("{}", serde_json::to_string_pretty(&out).unwrap());
}
