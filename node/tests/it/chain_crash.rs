//! Crash test: the real node binary mines on a dev chain and is killed with SIGKILL at
//! random moments, at least 30 times; after each kill `check_db` must find the store
//! consistent, and no block the node reported as connected may be lost.
//!
//! `CAIRN_CRASH_KILLS` sets the number of kills (default 30) and `CAIRN_CRASH_SEED` the
//! random seed (printed, so a failure can be replayed).
#![allow(clippy::unwrap_used)] // test helpers fail loudly

use cairn_core::genesis::Genesis;
use cairn_node::chain::check_db;
use cairn_tests::{strip_ansi, wait_until, NodeOptions, NodeProcess};
use rand::{Rng, SeedableRng};
use std::path::Path;
use std::time::{Duration, Instant};

fn field(line: &str, name: &str) -> Option<u64> {
    let start = line.find(&format!("{name}="))? + name.len() + 1;
    let digits: String = line[start..].chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// The complete lines of a log the node may still be writing, without colour codes.
fn lines(log: &str) -> impl Iterator<Item = String> + '_ {
    log.split_inclusive('\n').filter(|l| l.ends_with('\n')).map(strip_ansi)
}

/// The height the chain opened at, from the node's log.
fn opened_height(log: &str) -> Option<u64> {
    lines(log).find(|l| l.contains("chain opened")).and_then(|l| field(&l, "height"))
}

/// The highest block the node says it mined and connected, from its log.
fn mined_height(log: &str) -> Option<u64> {
    lines(log)
        .filter(|l| l.contains("mined block") && l.contains("Connected"))
        .filter_map(|l| field(&l, "height"))
        .max()
}

/// Starts the mining dev node on `data_dir` without waiting for its RPC, so that a kill
/// can also land during start-up.
fn start_node(data_dir: &Path) -> NodeProcess {
    let mut opts = NodeOptions::dev(env!("CARGO_BIN_EXE_cairn-node"), &[]);
    opts.env.push(("NO_COLOR".into(), "1".into()));
    NodeProcess::launch(data_dir, &opts).expect("start cairn-node")
}

/// Polls the node's log until `find` finds something in it, until `deadline`.
fn wait_for<T>(
    node: &mut NodeProcess,
    deadline: Instant,
    what: &str,
    mut find: impl FnMut(&str) -> Option<T>,
) -> T {
    let timeout = deadline.saturating_duration_since(Instant::now());
    wait_until(timeout, what, || {
        if let Some(status) = node.exited() {
            panic!("the node exited ({status}) while waiting for {what}");
        }
        Ok(find(&node.log_text()))
    })
}

#[test]
fn sigkill_at_random_moments_never_corrupts_the_store() {
    let kills: usize = std::env::var("CAIRN_CRASH_KILLS").ok().and_then(|v| v.parse().ok()).unwrap_or(30);
    let seed: u64 = std::env::var("CAIRN_CRASH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(cairn_node::now_ms);
    eprintln!("crash test: {kills} kills, seed {seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let genesis = Genesis::dev();
    let dir = tempfile::tempdir().expect("temp dir");
    let mut committed = 0u64; // highest height the node said it connected
    let mut last_tip = 0u64;
    for round in 0..kills {
        let mut node = start_node(dir.path());
        let deadline = Instant::now() + Duration::from_secs(120);
        let height = wait_for(&mut node, deadline, "chain opened", opened_height);
        assert!(
            height >= last_tip,
            "round {round}: reopened at {height}, below the last checked tip {last_tip}"
        );
        // Kill at a random moment: mostly while mining, sometimes during start-up.
        if rng.gen_bool(0.8) {
            let blocks = rng.gen_range(1..=3);
            let target = height + blocks;
            let height = wait_for(&mut node, deadline, "mined blocks", |log| {
                mined_height(log).filter(|h| *h >= target)
            });
            committed = committed.max(height);
        }
        std::thread::sleep(Duration::from_millis(rng.gen_range(0..800)));
        // Blocks connected before the kill that we have not read yet still count.
        node.kill();
        // The whole log is written once the process is reaped.
        committed = committed.max(mined_height(&node.log_text()).unwrap_or(0));
        drop(node);

        let report = check_db(dir.path(), &genesis).expect("check-db runs");
        assert!(report.is_consistent(), "round {round} (seed {seed}): {report}");
        assert!(
            report.tip_height >= committed,
            "round {round} (seed {seed}): tip {} lost connected block {committed}",
            report.tip_height
        );
        last_tip = report.tip_height;
        eprintln!("round {round}: consistent at height {}", report.tip_height);
    }
    assert!(last_tip >= kills as u64 / 2, "the node made too little progress: height {last_tip}");
}
