//! Block decoding and validation (core/src/block.rs, core/src/validation.rs, and the
//! node's chain import): a decoded block or header re-encodes to the same bytes, and
//! validating or importing it never panics.
//!
//! The chain here has the easiest possible target (half of all hashes meet it), so
//! the fuzzer gets past proof of work and exercises the checks behind it: merkle root,
//! coinbase, transfers, signatures and account state.
#![no_main]

use cairn_core::block::{Block, BlockHeader};
use cairn_core::encoding::{decode, encode};
use cairn_core::genesis::Genesis;
use cairn_core::validation::{
    check_block_stateless, check_header_contextual, check_header_stateless, ParentInfo,
};
use cairn_node::chain::Chain;
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fn genesis() -> &'static Genesis {
    static G: OnceLock<Genesis> = OnceLock::new();
    G.get_or_init(|| {
        let mut g = Genesis::dev();
        g.name = "cairn-fuzz".into();
        g.params.initial_target = g.params.pow_limit;
        g.check().expect("fuzz genesis is valid");
        g
    })
}

fuzz_target!(|data: &[u8]| {
    let g = genesis();
    if let Ok(h) = decode::<BlockHeader>(data) {
        assert_eq!(h.to_bytes().as_slice(), data);
        assert_eq!(encode(&h), data);
    }
    let Ok(block) = decode::<Block>(data) else { return };
    assert_eq!(encode(&block), data, "decode then encode changed the bytes");
    let _ = check_header_stateless(&block.header);
    let _ = check_block_stateless(&block, &g.params);
    let parent = ParentInfo::of_genesis(&g.block().header);
    let now = g.params.timestamp_ms + 3_600_000;
    let _ = check_header_contextual(&block.header, &parent, &g.params, now);
    let mut chain = Chain::open_in_memory(g);
    let _ = chain.accept_headers(&[block.header], now);
    let _ = chain.accept_block(block, now);
});
