//! Keystore parsing (wallet/src/keystore.rs): any file content at a key's path is
//! refused with an error or opens to the key of that address; never a panic, and never
//! an unbounded scrypt run (the caps are checked before deriving).
#![no_main]

use cairn_core::genesis::dev_keys;
use cairn_core::transaction::address_of;
use cairn_wallet::keystore::{KdfParams, Keystore};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fn store() -> &'static (tempfile::TempDir, Keystore) {
    static S: OnceLock<(tempfile::TempDir, Keystore)> = OnceLock::new();
    S.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        let ks = Keystore::new(dir.path().join("wallet"));
        (dir, ks)
    })
}

/// Parameters the caps allow but that would make one run take seconds: skipped, to
/// keep the fuzzer fast (the caps themselves are still exercised by larger values).
fn too_slow_for_fuzzing(text: &str) -> bool {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(text) else { return false };
    let kdf = &v["kdf"];
    let (Some(log_n), Some(r), Some(p)) = (kdf["log_n"].as_u64(), kdf["r"].as_u64(), kdf["p"].as_u64())
    else {
        return false;
    };
    let (Ok(log_n), Ok(r), Ok(p)) = (u8::try_from(log_n), u32::try_from(r), u32::try_from(p)) else {
        return false;
    };
    let params = KdfParams { log_n, r, p };
    params.check().is_ok() && params.memory_bytes().saturating_mul(u64::from(p)) > 4 << 20
}

fuzz_target!(|data: &[u8]| {
    let (_, ks) = store();
    // Dev account 0: the seed corpus holds its key file (password "password").
    let address = address_of(&dev_keys()[0]);
    if let Ok(text) = std::str::from_utf8(data) {
        if too_slow_for_fuzzing(text) {
            return;
        }
    }
    let path = ks.path_for(&address);
    std::fs::create_dir_all(ks.dir()).expect("wallet dir");
    std::fs::write(&path, data).expect("write key file");
    if let Ok(key) = ks.load(&address, b"password") {
        assert_eq!(address_of(&key), address);
    }
    let _ = ks.list();
});
