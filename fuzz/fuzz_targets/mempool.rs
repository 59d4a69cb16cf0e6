//! The mempool (node/src/mempool.rs) driven through sequences of operations decoded from
//! fuzz bytes (submissions, replacements, block connects, reorgs, expiry, templates, with
//! amounts, fees, balances and nonces drawn from the edges) against its reference model
//! (node/src/mempool/model.rs): no panic, the pool agrees with the model at every step,
//! and every template is a block cairn-core accepts.
#![no_main]

use cairn_node::mempool::model::{case_from_bytes, run};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = run(&case_from_bytes(data)) {
        panic!("{e}");
    }
});
