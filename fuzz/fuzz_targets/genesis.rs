//! Genesis parsing (core/src/genesis.rs): arbitrary text is refused with an error or
//! accepted; an accepted genesis survives its own JSON unchanged, with the same hash.
#![no_main]

use cairn_core::genesis::Genesis;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(g) = Genesis::from_json(text) {
        let again = Genesis::from_json(&g.to_json()).expect("a genesis parses from its own JSON");
        assert_eq!(again, g);
        assert_eq!(again.hash(), g.hash());
        assert_eq!(g.initial_state().len(), g.allocations.len());
    }
});
