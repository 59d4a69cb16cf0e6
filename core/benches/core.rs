//! Core throughput: signature verification (one thread), `a·G + b·Q` (Cairn's and k256's),
//! block validation per transfer, header hashes per second. `cargo bench -p cairn-core`.
#![allow(clippy::unwrap_used)] // a benchmark: failing loudly is right

use cairn_core::assemble::assemble_block;
use cairn_core::genesis::{dev_keys, Genesis};
use cairn_core::hash::sha256;
use cairn_core::transaction::{address_of, public_key_of, Transfer};
use cairn_core::validation::{check_block_stateless, ParentInfo};
use cairn_core::Amount;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use k256::elliptic_curve::ops::{MulByGeneratorVartime, Reduce};
use k256::{FieldBytes, ProjectivePoint, Scalar};

fn signed(n: u64) -> Vec<cairn_core::SignedTransfer> {
    let keys = dev_keys();
    (0..n)
        .map(|i| {
            let k = &keys[(i % 10) as usize];
            Transfer {
                chain_id: Genesis::dev().params.chain_id,
                nonce: i / 10,
                from: public_key_of(k),
                to: address_of(&keys[((i + 1) % 10) as usize]),
                amount: Amount(1),
                fee: Amount(1),
            }
            .sign(k)
            .unwrap()
        })
        .collect()
}

fn benches(c: &mut Criterion) {
    let txs = signed(1000);
    let mut g = c.benchmark_group("core");
    g.throughput(Throughput::Elements(1));
    g.bench_function("verify_signature", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % txs.len();
            txs[i].verify(1337).unwrap()
        })
    });

    // a·G + b·Q, the bulk of a check: Cairn's (G's tables built once) and k256's own.
    let scalars: Vec<Scalar> = (0..1001u64)
        .map(|i| <Scalar as Reduce<FieldBytes>>::reduce(&FieldBytes::from(sha256(&i.to_le_bytes()))))
        .collect();
    let q = ProjectivePoint::GENERATOR * scalars[1000];
    g.bench_function("ecmult_cairn", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % 1000;
            cairn_core::ecmult::mul_generator_add(&scalars[i], &scalars[i + 1], &q)
        })
    });
    g.bench_function("ecmult_k256", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % 1000;
            ProjectivePoint::mul_by_generator_and_mul_add_vartime(&scalars[i], &scalars[i + 1], &q)
        })
    });

    let mut genesis = Genesis::dev();
    genesis.params.initial_target =
        "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff".parse().unwrap();
    genesis.params.pow_limit = genesis.params.initial_target;
    let params = genesis.params;
    let parent = ParentInfo {
        hash: genesis.hash(),
        height: 0,
        timestamp_ms: params.timestamp_ms,
        median_time_past_ms: params.timestamp_ms,
        anchor_timestamp_ms: 0,
    };
    let block =
        assemble_block(&params, &parent, params.timestamp_ms + 1, address_of(&dev_keys()[0]), &txs).unwrap();
    g.throughput(Throughput::Elements(txs.len() as u64));
    g.bench_function("validate_block_1000_transfers_stateless", |b| {
        b.iter(|| check_block_stateless(&block, &params).unwrap())
    });

    g.throughput(Throughput::Elements(1));
    g.bench_function("header_hash", |b| {
        b.iter_batched_ref(
            || block.header,
            |h| {
                h.nonce = h.nonce.wrapping_add(1);
                h.hash()
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(core_benches, benches);
criterion_main!(core_benches);
