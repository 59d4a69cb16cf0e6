//! End-to-end tests with real `cairn-node` and `cairn-wallet` processes, one module per
//! file, built as one test binary (one link instead of one per file, and libtest runs the
//! long tests of one file beside those of another).
//!
//! The tests share this process: each starts its own nodes on OS-chosen ports with their
//! own data dirs ([`cairn_tests::NodeProcess`]), and none sets environment variables or
//! other process-wide state.

mod adversarial;
mod compact_blocks;
mod connections;
mod discovery_netns;
mod eclipse;
mod explorer;
mod hostile_amounts;
mod log_flood;
mod metrics;
mod network;
mod partition;
mod rpc_abuse;
mod shutdown;
mod wallet_e2e;
mod wallet_history;
mod wallet_scripts;
