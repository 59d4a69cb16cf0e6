//! Fail-stop: when an internal invariant breaks, the node logs why and exits at once
//! with status 70, leaving a store that `check-db` finds consistent and that opens again.
//!
//! A real `cairn-node --dev` process is started with the test-only fault injection
//! `CAIRN_FAULT_PANIC_WHILE_LOCKED` (see `cairn_node::node::FaultInjection`): the first
//! `tx_submit` panics while holding the chain lock (or the chain and mempool locks).
//! Without fail-stop the node would go on running, answering `chain lock poisoned` to
//! every call. A second test hands the chain a store that refuses writes.
#![allow(clippy::unwrap_used)] // test helpers fail loudly

use cairn_api::CairnApiClient;
use cairn_core::assemble::{assemble_block, grind};
use cairn_core::genesis::{dev_keys, Genesis, DEV_CHAIN_ID};
use cairn_core::transaction::{address_of, public_key_of, Transfer};
use cairn_core::{encoding, Address, Amount};
use cairn_node::chain::{check_db, Chain};
use cairn_node::store::{Batch, Column, KvStore, MemStore, StoreError};
use cairn_tests::{wait_for, NodeProcess};
use jsonrpsee::http_client::HttpClientBuilder;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The exit status of a fail-stop (EX_SOFTWARE).
const FAIL_STOP_EXIT: i32 = 70;

/// Starts a mining dev node with `fault` armed, lets it mine a few blocks, submits one
/// transfer (which trips the fault), and checks the node stopped as fail-stop promises.
async fn panic_while_locked_stops_the_node(fault: &str) {
    let mut node = NodeProcess::start_dev_env(
        env!("CARGO_BIN_EXE_cairn-node"),
        &[],
        &[("CAIRN_FAULT_PANIC_WHILE_LOCKED", fault), ("NO_COLOR", "1")],
    );
    let data_dir = node.data_dir.clone();
    let c = HttpClientBuilder::default().request_timeout(Duration::from_secs(30)).build(node.url()).unwrap();

    // A few mined blocks first, so the store has something to lose.
    let height = wait_for("3 mined blocks", Duration::from_secs(90), || async {
        c.chain_get_info().await.ok().map(|i| i.height).filter(|&h| h >= 3)
    })
    .await;

    let key = &dev_keys()[0];
    let signed = Transfer {
        chain_id: DEV_CHAIN_ID,
        nonce: 0,
        from: public_key_of(key),
        to: address_of(&dev_keys()[1]),
        amount: Amount(1),
        fee: Amount(1_000),
    }
    .sign(key)
    .unwrap();
    let answer = c.tx_submit(hex::encode(encoding::encode(&signed))).await;
    assert!(answer.is_err(), "tx_submit was answered ({answer:?}) though the fault fired");

    let status = node.wait_exit(Duration::from_secs(20));
    let log = node.log_text();
    let status = status.unwrap_or_else(|| panic!("the node still runs 20 s after the fault; log:\n{log}"));
    assert_eq!(status.code(), Some(FAIL_STOP_EXIT), "exit status {status}; log:\n{log}");
    // The reason, at error level, with the panic's message and where it was raised.
    let reason = log
        .lines()
        .find(|l| l.contains("ERROR") && l.contains("fail-stop: panicked"))
        .unwrap_or_else(|| panic!("no fail-stop line in the log:\n{log}"));
    assert!(reason.contains("fault injection"), "{reason}");
    assert!(reason.contains("node/src/node.rs"), "no location in: {reason}");
    // Nobody was told "lock poisoned": the process stopped before anyone could look.
    assert!(!log.contains("poisoned"), "a poisoned lock was seen; log:\n{log}");

    // The store is consistent, kept the blocks the node reported, and opens again (the
    // process has exited; `node` keeps its data dir until the end of the test).
    let genesis = Genesis::dev();
    let report = check_db(&data_dir, &genesis).unwrap();
    assert!(report.is_consistent(), "{report}");
    assert!(report.tip_height >= height, "tip {} below the reported height {height}", report.tip_height);
    let chain = Chain::open(&data_dir, &genesis).unwrap();
    assert_eq!(chain.tip().height, report.tip_height);
}

#[tokio::test]
async fn a_panic_while_holding_the_chain_lock_stops_the_node() {
    panic_while_locked_stops_the_node("chain").await;
}

#[tokio::test]
async fn a_panic_while_holding_the_mempool_lock_stops_the_node() {
    panic_while_locked_stops_the_node("mempool").await;
}

#[test]
fn an_unknown_fault_name_is_refused_at_startup() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_cairn-node"))
        .args(["--dev", "--no-mine", "--rpc-addr", "127.0.0.1:0", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .env("CAIRN_FAULT_PANIC_WHILE_LOCKED", "everything")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("CAIRN_FAULT_PANIC_WHILE_LOCKED must be `chain` or `mempool`"), "{stderr}");
}

/// An in-memory store whose writes fail once `broken` is set (as on a full disk).
struct BreakableStore {
    inner: MemStore,
    broken: Arc<AtomicBool>,
}

impl KvStore for BreakableStore {
    fn get(&self, column: Column, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.get(column, key)
    }
    fn write(&self, batch: Batch) -> Result<(), StoreError> {
        if self.broken.load(Ordering::SeqCst) {
            // The only error a test can construct (RocksDB's are built inside the crate).
            return Err(StoreError::MissingColumn("accounts"));
        }
        self.inner.write(batch)
    }
    fn for_each(&self, column: Column, f: &mut dyn FnMut(&[u8], &[u8]) -> bool) -> Result<(), StoreError> {
        self.inner.for_each(column, f)
    }
    fn sync(&self) -> Result<(), StoreError> {
        self.inner.sync()
    }
}

#[test]
fn a_write_the_store_refuses_stops_instead_of_returning_an_error() {
    let mut g = Genesis::dev();
    let easy = "7fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff".parse().unwrap();
    g.params.initial_target = easy;
    g.params.pow_limit = easy;
    let broken = Arc::new(AtomicBool::new(false));
    let store = BreakableStore { inner: MemStore::new(), broken: broken.clone() };
    let mut chain = Chain::open_with_store(Box::new(store), &g).unwrap();
    let parent = chain.tip_parent_info();
    let mut block =
        assemble_block(&g.params, &parent, parent.timestamp_ms + 1_000, Address([9; 20]), &[]).unwrap();
    assert!(grind(&mut block.header, u64::MAX));
    broken.store(true, Ordering::SeqCst);
    let now = g.params.timestamp_ms + 1_000_000;
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| chain.accept_block(block, now)));
    let payload = outcome.expect_err("a refused write must stop, not return");
    let message = payload.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(message.starts_with("fail-stop: the chain store refused a write"), "{message}");
    assert!(message.contains("column family accounts is missing"), "{message}");
}
