//! cairn-node's integration tests, one module per file, built as one test binary: each
//! test binary links RocksDB, and those links are much of what building the tests costs.
//! Tests that run `cairn-node` processes use [`cairn_tests::NodeProcess`].

mod address_index;
mod chain_crash;
mod chain_model;
mod chain_store;
mod compact_model;
mod compact_sim;
mod dev_transfer;
mod fail_stop;
mod inv_budget_model;
mod net_info;
mod net_seeds;
mod node_config;
mod node_logs;
mod node_status;
mod node_sync_progress;
mod p2p_block;
mod p2p_discovery;
mod p2p_processes;
mod p2p_serve;
mod p2p_sim;
mod p2p_sync_checked;
mod protocol_model;
mod rpc_api;
mod rpc_block_status;
mod rpc_history;

/// Cases for a model test: `PROPTEST_CASES`, else `default`.
pub(crate) fn model_cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// The runner of a model test: `cases` random sequences, no failure files written.
pub(crate) fn model_runner(cases: u32) -> proptest::test_runner::TestRunner {
    use proptest::test_runner::{Config, TestRunner};
    TestRunner::new(Config { cases, failure_persistence: None, ..Config::default() })
}
