//! Every scenario of the simulator at small scale (50 nodes, fewer blocks), asserting
//! its outcome, and the determinism of a run: the simulator must not silently break.
#![allow(clippy::unwrap_used)] // test helpers fail loudly

use cairn_sim::scenario::{run, Opts, Report};

fn small(scenario: &str, seed: u64) -> Report {
    small_shared(scenario, seed, true)
}

fn small_shared(scenario: &str, seed: u64, share: bool) -> Report {
    let r = run(scenario, &Opts { seed, small: true, share, ..Opts::new(vec![50]) }).unwrap();
    assert!(r.failures.is_empty(), "{scenario}: {:?}\n{}", r.failures, r.table());
    r
}

fn num(r: &Report, path: &[&str]) -> f64 {
    let mut v = &r.json;
    for p in path {
        v = &v[*p];
    }
    v.as_f64().unwrap_or_else(|| panic!("{path:?} in {}", r.json))
}

/// Every node gets every block; a full block (1 MB) takes longer than an empty one,
/// since its transfer time grows with its size.
#[test]
fn propagation_reaches_every_node_and_grows_with_block_size() {
    let r = small("propagation", 1);
    let rows = r.json.as_array().unwrap();
    assert_eq!(rows.len(), 2, "{}", r.table());
    let (empty, full) = (&rows[0], &rows[1]);
    assert_eq!(empty["block"], "empty");
    assert!(full["bytes"].as_u64().unwrap() > 900_000, "{full}");
    for row in rows {
        let (p50, p100) = (row["p50_ms"].as_f64().unwrap(), row["p100_ms"].as_f64().unwrap());
        assert!(p50 > 0.0 && p50 <= p100, "{row}");
    }
    assert!(
        full["p50_ms"].as_f64().unwrap() > 2.0 * empty["p50_ms"].as_f64().unwrap(),
        "a full block spreads no slower than an empty one: {}",
        r.table()
    );
}

/// Every node converges after each run and holds exactly the supply its chain issued;
/// blocks a second apart fork at least as often as blocks ten seconds apart.
#[test]
fn forks_converge_and_shorter_intervals_fork_more() {
    let r = small("forks", 2);
    let rows = r.json.as_array().unwrap();
    assert_eq!(rows.len(), 4);
    for size in [0, 1] {
        let (fast, slow) = (&rows[2 * size], &rows[2 * size + 1]);
        assert_eq!((fast["interval_s"].as_u64(), slow["interval_s"].as_u64()), (Some(1), Some(10)));
        assert!(fast["mined"].as_u64().unwrap() >= 5, "{fast}");
        assert!(fast["stale_pct"].as_f64().unwrap() >= slow["stale_pct"].as_f64().unwrap(), "{}", r.table());
    }
}

/// Both halves mine while cut off; after healing every node is on the most-work tip
/// and every node's balances sum to what its chain issued.
#[test]
fn partition_heals_to_the_most_work_tip_with_supply_conserved() {
    let r = small("partition", 3);
    assert!(num(&r, &["blocks_a"]) >= 1.0 && num(&r, &["blocks_b"]) >= 1.0, "{}", r.table());
    assert!(num(&r, &["on_best_tip_at_heal_pct"]) < 100.0, "{}", r.table());
    assert!(num(&r, &["heal_s"]) < 600.0);
    assert_eq!(r.json["supply_conserved"], true);
}

/// Nodes leave and come back (some with nothing); most of the up nodes stay within a
/// block of the tip, and once churn stops every up node reaches it.
#[test]
fn churn_keeps_nodes_near_the_tip() {
    let r = small("churn", 4);
    assert!(num(&r, &["mean_up_pct"]) < 100.0, "nobody left: {}", r.table());
    assert!(num(&r, &["mean_within_one_pct"]) >= 80.0, "{}", r.table());
}

/// A transfer submitted at one node reaches every mempool.
#[test]
fn transfers_reach_every_mempool() {
    let r = small("transfer", 5);
    let (p50, p100) = (num(&r, &["p50_ms"]), num(&r, &["p100_ms"]));
    assert!(p50 > 0.0 && p50 <= p100, "{}", r.table());
}

/// The same seed gives the same run, byte for byte (the hash of its event log); another
/// seed gives another run.
#[test]
fn same_seed_same_event_log() {
    let a = small("churn", 7);
    let b = small("churn", 7);
    assert_eq!(a.log_hashes, b.log_hashes);
    assert_eq!(a.rows, b.rows);
    let c = small("churn", 8);
    assert_ne!(a.log_hashes, c.log_hashes);
}

/// Sharing what the nodes hold alike (block bodies, index entries, decoded blocks,
/// messages in flight) changes nothing a node does: a run with full blocks, and one
/// with forks of 20 kB blocks (reorganisations undo shared index entries), give the
/// same event log and the same figures with it and without it.
#[test]
fn sharing_block_data_between_nodes_changes_no_run() {
    for scenario in ["propagation", "forks"] {
        let shared = small_shared(scenario, 11, true);
        let own = small_shared(scenario, 11, false);
        assert_eq!(shared.log_hashes, own.log_hashes, "{scenario}");
        assert_eq!(shared.rows, own.rows, "{scenario}");
    }
}
