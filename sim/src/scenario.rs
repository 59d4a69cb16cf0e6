//! The scenarios of `scripts/simulate.sh`: each builds networks, runs them, checks
//! the outcome it must have (every node converges, supply is conserved) and returns a
//! [`Report`]: a table, JSON, charts, the simulator's own profile, and the failures.

use crate::engine::{percentile_ms, Cost, Sim, MS, S};
use crate::model::{exponential, Churn, Model};
use crate::svg::{Chart, Series};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::Instant;

pub const SCENARIOS: [&str; 5] = ["propagation", "forks", "partition", "churn", "transfer"];

/// What a scenario is asked to do.
#[derive(Clone, Debug)]
pub struct Opts {
    /// Network sizes (only propagation runs more than the first).
    pub nodes: Vec<usize>,
    pub seed: u64,
    /// Fewer blocks and shorter runs: the test suite's setting.
    pub small: bool,
    /// Share what the simulated nodes hold alike ([`crate::share`]); off only to
    /// measure what sharing saves.
    pub share: bool,
    /// `forks`: the block sizes (bytes of transfers; 0 is empty) and the mean intervals
    /// (s) to run, instead of the defaults. `propagation`: the sizes of its blocks,
    /// instead of an empty and a full one.
    pub block_bytes: Option<Vec<usize>>,
    pub intervals_s: Option<Vec<u64>>,
    /// A progress line on stderr every this many simulated seconds (0: none), and
    /// each block's row as it completes (propagation).
    pub progress_s: u64,
}

impl Opts {
    /// `nodes` with the defaults: seed 1, the full runs, sharing on.
    pub fn new(nodes: Vec<usize>) -> Opts {
        Opts {
            nodes,
            seed: 1,
            small: false,
            share: true,
            block_bytes: None,
            intervals_s: None,
            progress_s: 0,
        }
    }
}

pub struct Report {
    pub scenario: String,
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
    pub json: Value,
    pub charts: Vec<(String, Chart)>,
    /// What went wrong: a node that did not converge, supply not conserved.
    pub failures: Vec<String>,
    /// The event-log hashes of the runs, in order.
    pub log_hashes: Vec<String>,
    /// Time per event kind, of the largest run.
    pub profile: BTreeMap<&'static str, Cost>,
    pub wall_s: f64,
    pub peak_rss_mb: f64,
}

impl Report {
    fn new(scenario: &str, header: &[&str]) -> Report {
        Report {
            scenario: scenario.into(),
            header: header.iter().map(|s| s.to_string()).collect(),
            rows: Vec::new(),
            json: Value::Null,
            charts: Vec::new(),
            failures: Vec::new(),
            log_hashes: Vec::new(),
            profile: BTreeMap::new(),
            wall_s: 0.0,
            peak_rss_mb: 0.0,
        }
    }

    /// The table as aligned text.
    pub fn table(&self) -> String {
        let mut w: Vec<usize> = self.header.iter().map(String::len).collect();
        for r in &self.rows {
            for (k, c) in r.iter().enumerate() {
                w[k] = w[k].max(c.len());
            }
        }
        let line = |r: &[String]| {
            r.iter()
                .enumerate()
                .map(|(k, c)| format!("{c:>width$}", width = w[k]))
                .collect::<Vec<_>>()
                .join("  ")
        };
        let mut out = line(&self.header);
        out.push('\n');
        for r in &self.rows {
            out.push_str(&line(r));
            out.push('\n');
        }
        out
    }

    /// Everything but the charts, as JSON.
    pub fn to_json(&self) -> Value {
        let profile: BTreeMap<&str, Value> = self
            .profile
            .iter()
            .map(|(k, c)| {
                let mean_us = if c.count > 0 { c.wall_ns as f64 / c.count as f64 / 1000.0 } else { 0.0 };
                (*k, json!({"count": c.count, "wall_s": c.wall_ns as f64 / 1e9, "mean_us": mean_us}))
            })
            .collect();
        json!({
            "scenario": self.scenario,
            "header": self.header,
            "rows": self.rows,
            "results": self.json,
            "failures": self.failures,
            "log_hashes": self.log_hashes,
            "profile": profile,
            "wall_s": self.wall_s,
            "peak_rss_mb": self.peak_rss_mb,
        })
    }

    fn take_profile(&mut self, sim: &Sim) {
        self.profile = sim.profile.clone();
        self.log_hashes.push(sim.log_hash());
    }
}

/// The process's peak resident memory in MB (Linux; 0 elsewhere).
pub fn peak_rss_mb() -> f64 {
    crate::engine::rss_mb().1
}

pub fn run(name: &str, opts: &Opts) -> anyhow::Result<Report> {
    let started = Instant::now();
    let mut r = match name {
        "propagation" => propagation(opts),
        "forks" => forks(opts),
        "partition" => partition(opts),
        "churn" => churn(opts),
        "transfer" => transfer(opts),
        other => anyhow::bail!("unknown scenario `{other}`: one of {}", SCENARIOS.join(", ")),
    };
    r.wall_s = started.elapsed().as_secs_f64();
    r.peak_rss_mb = peak_rss_mb();
    Ok(r)
}

/// `n` nodes joined over a minute of simulated time (seeds, then peer exchange).
fn network(n: usize, o: &Opts, model: Model, interval_ms: u64) -> Sim {
    let mut sim = Sim::new(o.seed, model, interval_ms);
    sim.share = o.share;
    sim.progress_every_us = o.progress_s * S;
    sim.add_nodes(n);
    if o.progress_s > 0 {
        eprintln!("{n} nodes added; {}", sim.progress_line());
    }
    sim.run_for(60 * S);
    sim
}

fn f1(x: f64) -> String {
    format!("{x:.1}")
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

const PCTS: [f64; 4] = [50.0, 90.0, 99.0, 100.0];

/// Runs until every up node has the tracked block `h` (or `max_us` passes).
fn wait_block(sim: &mut Sim, h: &cairn_core::BlockHash, max_us: u64) {
    let end = sim.now_us + max_us;
    while sim.now_us < end {
        let done = sim
            .blocks
            .get(h)
            .is_some_and(|t| (0..sim.nodes.len()).all(|i| !sim.nodes[i].up || t.at[i].is_some()));
        if done {
            break;
        }
        sim.run_for(200 * MS);
    }
}

/// Block propagation: blocks mined one at a time on a quiet network, the time until
/// 50/90/99/100 % of the nodes have connected each, for empty and full blocks.
fn propagation(o: &Opts) -> Report {
    let mut r = Report::new(
        "propagation",
        &["nodes", "block", "bytes", "blocks", "p50 ms", "p90 ms", "p99 ms", "p100 ms"],
    );
    // Full blocks cost simulated time (every node rebuilds, checks and connects each),
    // so fewer of them in the larger networks.
    let blocks_of = |kind: &str, n: usize| match (o.small, kind) {
        (false, "empty") => 5,
        (false, _) if n > 200 => 2,
        (false, _) => 5,
        (true, "empty") => 2,
        (true, _) => 1,
    };
    let mut results = Vec::new();
    let mut cdf: Vec<Series> = Vec::new();
    for &n in &o.nodes {
        let model = Model::default();
        let mut sim = network(n, o, model.clone(), 600_000);
        let full = Sim::transfers_for_bytes(sim.genesis.params.max_block_bytes as usize);
        // What the nodes hold of a block alike is held once (crate::share), so full
        // blocks run at every size; without it (--no-share) a full block cost about
        // 5.7 MiB per node.
        let kinds: Vec<(String, usize)> = match &o.block_bytes {
            None => vec![("empty".into(), 0), ("full".into(), full)],
            // Blocks of the given sizes instead (0: empty; the largest block: full).
            Some(sizes) => sizes
                .iter()
                .map(|&b| {
                    let txs = if b == 0 { 0 } else { Sim::transfers_for_bytes(b).clamp(1, full) };
                    let kind = match txs {
                        0 => "empty".into(),
                        t if t == full => "full".into(),
                        _ => format!("{} kB", b / 1000),
                    };
                    (kind, txs)
                })
                .collect(),
        };
        for (kind, txs) in kinds {
            let kind = kind.as_str();
            let mut per_pct: Vec<Vec<f64>> = vec![Vec::new(); PCTS.len()];
            let mut bytes = 0;
            let per_kind = blocks_of(kind, n);
            for b in 0..per_kind {
                let miner = sim.model.pick_miner(&mut sim.rng);
                let h = sim.mine(miner, txs);
                bytes = sim.mined.last().map_or(0, |m| m.bytes);
                wait_block(&mut sim, &h, 120 * S);
                let t = &sim.blocks[&h];
                let mut row = Vec::new();
                for (k, p) in PCTS.iter().enumerate() {
                    match percentile_ms(t, n, *p) {
                        Some(ms) => {
                            per_pct[k].push(ms);
                            row.push(f1(ms));
                        }
                        None => {
                            r.failures.push(format!("{n} nodes, {kind} block {h}: {p}% never had it"));
                            row.push("never".into());
                        }
                    }
                }
                if o.progress_s > 0 {
                    eprintln!(
                        "{n} nodes, {kind} block {} of {per_kind} ({bytes} bytes): p50/p90/p99/p100 {} ms; {}",
                        b + 1,
                        row.join(" / "),
                        sim.progress_line()
                    );
                }
                if kind == "empty" || cdf.iter().all(|s| !s.name.starts_with(&format!("{n} nodes, {kind}"))) {
                    let mut times: Vec<f64> = t.at.iter().flatten().map(|&us| us as f64 / 1000.0).collect();
                    times.sort_by(f64::total_cmp);
                    let name = format!("{n} nodes, {kind}");
                    if !cdf.iter().any(|s| s.name == name) {
                        let step = (times.len() / 200).max(1);
                        let points = times
                            .iter()
                            .enumerate()
                            .filter(|(k, _)| k % step == 0 || *k == times.len() - 1)
                            .map(|(k, ms)| (*ms, 100.0 * (k + 1) as f64 / n as f64))
                            .collect();
                        cdf.push(Series { name, points });
                    }
                }
                sim.forget_tracks();
                sim.run_for(5 * S);
            }
            let med: Vec<f64> = per_pct.into_iter().map(median).collect();
            r.rows.push(vec![
                n.to_string(),
                kind.into(),
                bytes.to_string(),
                per_kind.to_string(),
                f1(med[0]),
                f1(med[1]),
                f1(med[2]),
                f1(med[3]),
            ]);
            results.push(json!({"nodes": n, "block": kind, "bytes": bytes, "blocks": per_kind,
                "p50_ms": med[0], "p90_ms": med[1], "p99_ms": med[2], "p100_ms": med[3]}));
        }
        let peers = sim.peer_counts();
        if let Some(i) = peers.iter().position(|&p| p == 0) {
            r.failures.push(format!("{n} nodes: node {i} has no peer"));
        }
        r.take_profile(&sim);
    }
    r.charts.push(("propagation-by-size".into(), propagation_by_size(&results)));
    r.charts.push((
        "propagation-cdf".into(),
        Chart {
            title: "Share of nodes with the block over time (one block each, simulated)".into(),
            x_label: "ms since the block was mined".into(),
            y_label: "% of nodes".into(),
            log_x: false,
            series: cdf,
        },
    ));
    r.json = json!(results);
    r
}

/// The propagation-against-size chart of propagation results (the `results` of one or
/// more runs' JSON: `nodes`, `block`, `p50_ms` ... `p100_ms`), empty and full blocks.
pub fn propagation_by_size(results: &[Value]) -> Chart {
    let mut by_size = Vec::new();
    for kind in ["empty", "full"] {
        for (k, p) in PCTS.iter().enumerate() {
            let mut points: Vec<(f64, f64)> = results
                .iter()
                .filter(|v| v["block"] == kind)
                .map(|v| {
                    (
                        v["nodes"].as_f64().unwrap_or(0.0),
                        v[["p50_ms", "p90_ms", "p99_ms", "p100_ms"][k]].as_f64().unwrap_or(0.0),
                    )
                })
                .collect();
            points.sort_by(|a, b| a.0.total_cmp(&b.0));
            if !points.is_empty() && (*p == 50.0 || *p == 90.0 || *p == 100.0) {
                by_size.push(Series { name: format!("{kind}, {p}%"), points });
            }
        }
    }
    Chart {
        title: "Block propagation vs network size (simulated)".into(),
        x_label: "nodes".into(),
        y_label: "ms until the share of nodes has the block".into(),
        log_x: true,
        series: by_size,
    }
}

/// Mines `count` blocks as a Poisson process with mean `interval_ms`, miners by share,
/// each block with `txs` transfers.
fn mine_poisson(sim: &mut Sim, interval_ms: u64, count: usize, txs: usize) {
    for _ in 0..count {
        let wait = (exponential(&mut sim.rng, interval_ms as f64) * MS as f64) as u64;
        sim.run_for(wait.max(1));
        let miner = sim.model.pick_miner(&mut sim.rng);
        if sim.nodes[miner].up {
            sim.mine(miner, txs);
        }
    }
}

/// Nodes split between tips of equal work stay split: each keeps the one it saw first
/// (docs/CONSENSUS.md, section 9), as Bitcoin's nodes do, and on a real network the
/// next block decides. Seconds to wait for convergence before such a tie is broken.
const TIE_WAIT_S: u64 = 30;

/// Runs until every up node is on the most-work tip, for at most `max_s` seconds. When
/// the nodes are still apart after [`TIE_WAIT_S`] and every one of them is on a tip of
/// the most work (a tie, not a block still on its way), one more block of `txs`
/// transfers is mined, by a miner drawn by hash share on its own tip, as the network
/// would; it counts among the mined blocks like any other.
fn converge_breaking_ties(sim: &mut Sim, txs: usize, max_s: u64) -> Option<u64> {
    let start = sim.now_us;
    loop {
        let left = (start + max_s * S).saturating_sub(sim.now_us);
        if left == 0 {
            return None;
        }
        if sim.run_until_converged(S, left.min(TIE_WAIT_S * S)).is_some() {
            return Some(sim.now_us - start);
        }
        let best = sim.best_tip().total_work;
        if (0..sim.nodes.len()).filter(|&i| sim.nodes[i].up).all(|i| sim.tip(i).total_work == best) {
            let miner = sim.model.pick_miner(&mut sim.rng);
            if sim.nodes[miner].up {
                eprintln!("nodes split between tips of equal work: one more block breaks the tie");
                sim.mine(miner, txs);
            }
        }
    }
}

/// The blocks mined that are not on the best chain, over the blocks mined.
fn stale_share(sim: &Sim) -> (usize, usize) {
    let best = sim.best_tip();
    let holder = (0..sim.nodes.len()).find(|&i| sim.nodes[i].up && sim.tip(i).hash == best.hash).unwrap_or(0);
    let chain = sim.nodes[holder].node.chain();
    let stale = sim.mined.iter().filter(|m| !chain.is_on_best_chain(&m.hash)).count();
    (stale, sim.mined.len())
}

fn check_supply(sim: &Sim, r: &mut Report, what: &str) {
    for i in 0..sim.nodes.len() {
        if !sim.nodes[i].up {
            continue;
        }
        let (held, expected) = sim.supply(i);
        if held != expected {
            r.failures.push(format!("{what}: node {i} holds {held}, its chain issued {expected}"));
        }
    }
}

/// Fork rate (stale blocks per block mined) against block interval and block size.
fn forks(o: &Opts) -> Report {
    let mut r = Report::new("forks", &["nodes", "interval s", "block bytes", "mined", "stale", "stale %"]);
    let n = o.nodes[0];
    let intervals: &[u64] = match &o.intervals_s {
        Some(v) => v,
        None if o.small => &[1, 10],
        None => &[1, 2, 5, 10, 30, 60, 600],
    };
    // Larger blocks (--block-bytes) cost simulated time: every node rebuilds, checks
    // and connects each (docs/SCALE.md has the runs).
    let sizes: &[usize] = o.block_bytes.as_deref().unwrap_or(&[0, 20_000]);
    let mut results = Vec::new();
    let mut series = Vec::new();
    for &size in sizes {
        let mut points = Vec::new();
        for &iv in intervals {
            // Fewer blocks at long intervals: simulated time, not blocks, costs here
            // (every node ticks every second), and a fork there is rare anyway.
            let count = match (o.small, iv) {
                (true, _) => 10,
                (false, 600) if size > 0 => continue,
                (false, 600) => 3,
                (false, 30 | 60) => 10,
                // 1 MB blocks: 10 a run (each costs every node a full block).
                (false, _) if size >= 500_000 => 10,
                (false, _) => 30,
            };
            let mut sim = network(n, o, Model::default(), iv * 1000);
            let txs = Sim::transfers_for_bytes(size);
            mine_poisson(&mut sim, iv * 1000, count, txs);
            sim.forget_tracks();
            if converge_breaking_ties(&mut sim, txs, 300).is_none() {
                r.failures.push(format!("interval {iv} s, {size} B: no convergence in 300 s"));
            }
            check_supply(&sim, &mut r, &format!("interval {iv} s"));
            let (stale, mined) = stale_share(&sim);
            let bytes = sim.mined.iter().map(|m| m.bytes).max().unwrap_or(0);
            let pct = 100.0 * stale as f64 / mined.max(1) as f64;
            r.rows.push(vec![
                n.to_string(),
                iv.to_string(),
                bytes.to_string(),
                mined.to_string(),
                stale.to_string(),
                f1(pct),
            ]);
            results.push(json!({"nodes": n, "interval_s": iv, "block_bytes": bytes, "mined": mined, "stale": stale, "stale_pct": pct}));
            points.push((iv as f64, pct));
            r.take_profile(&sim);
        }
        let label = if size == 0 { "empty blocks".to_string() } else { format!("{} kB blocks", size / 1000) };
        series.push(Series { name: label, points });
    }
    r.charts.push((
        "forks".into(),
        Chart {
            title: format!("Stale blocks vs block interval, {n} nodes (simulated)"),
            x_label: "mean block interval (s)".into(),
            y_label: "% of mined blocks stale".into(),
            log_x: true,
            series,
        },
    ));
    r.json = json!(results);
    r
}

/// Partition into two halves, mine on both, heal: the time until every node is on the
/// most-work tip; every node's supply matches its chain.
fn partition(o: &Opts) -> Report {
    let mut r = Report::new(
        "partition",
        &["nodes", "split s", "blocks A", "blocks B", "heal s", "stale", "supply ok"],
    );
    let n = o.nodes[0];
    let interval = 10_000;
    let split_s: u64 = if o.small { 60 } else { 300 };
    let mut sim = network(n, o, Model::default(), interval);
    mine_poisson(&mut sim, interval, 3, 0);
    if sim.run_until_converged(S, 60 * S).is_none() {
        r.failures.push("no convergence before the split".into());
    }
    // Halves by parity: the miners alternate sides (0.6 of the hash rate on side A).
    sim.partition(|i| i % 2 == 1);
    let before = sim.mined.len();
    // The split lasts `split_s`, and longer (up to ten times) until both sides have
    // found a block: a split where one side found none leaves nothing to heal.
    let end = sim.now_us + split_s * S;
    let sides = |sim: &Sim| {
        let a = sim.mined[before..].iter().filter(|m| m.miner % 2 == 0).count();
        (a, sim.mined.len() - before - a)
    };
    while sim.now_us < end || (sides(&sim).1 == 0 || sides(&sim).0 == 0) && sim.now_us < end + 9 * split_s * S
    {
        mine_poisson(&mut sim, interval, 1, 0);
    }
    let split_s = (sim.now_us - (end - split_s * S)) / S;
    let (a, b) = sides(&sim);
    sim.forget_tracks();
    sim.heal();
    let healed_at = sim.now_us;
    // Mining goes on; the network has healed once every node is on the most-work tip.
    let mut heal = None;
    let mut next_block = sim.now_us + (exponential(&mut sim.rng, interval as f64) * MS as f64) as u64;
    let on_best = |sim: &Sim| {
        let best = sim.best_tip();
        (0..n).filter(|&i| sim.tip(i).hash == best.hash).count()
    };
    let at_heal = on_best(&sim);
    if at_heal == n {
        r.failures.push("the partition left every node on one tip: nothing to heal".into());
    }
    let mut timeline = vec![(0.0, 100.0 * at_heal as f64 / n as f64)];
    while sim.now_us - healed_at < 600 * S {
        sim.run_for(100 * MS);
        if sim.now_us >= next_block {
            let miner = sim.model.pick_miner(&mut sim.rng);
            sim.mine(miner, 0);
            sim.forget_tracks();
            next_block = sim.now_us + (exponential(&mut sim.rng, interval as f64) * MS as f64) as u64;
        }
        let on = on_best(&sim);
        timeline.push(((sim.now_us - healed_at) as f64 / S as f64, 100.0 * on as f64 / n as f64));
        if on == n {
            heal = Some((sim.now_us - healed_at) as f64 / S as f64);
            break;
        }
    }
    if heal.is_none() {
        r.failures.push(format!(
            "not every node on the most-work tip 600 s after healing: {}",
            timeline.last().map_or(0.0, |t| t.1)
        ));
    }
    let before_fail = r.failures.len();
    check_supply(&sim, &mut r, "after healing");
    let (stale, _) = stale_share(&sim);
    r.rows.push(vec![
        n.to_string(),
        split_s.to_string(),
        a.to_string(),
        b.to_string(),
        heal.map_or("never".into(), f1),
        stale.to_string(),
        (r.failures.len() == before_fail).to_string(),
    ]);
    r.json = json!({"nodes": n, "split_s": split_s, "blocks_a": a, "blocks_b": b, "heal_s": heal,
        "on_best_tip_at_heal_pct": 100.0 * at_heal as f64 / n as f64,
        "stale": stale, "supply_conserved": r.failures.len() == before_fail});
    r.charts.push((
        "partition".into(),
        Chart {
            title: format!("After healing a partition, {n} nodes (simulated)"),
            x_label: "s since healed".into(),
            y_label: "% of nodes on the most-work tip".into(),
            log_x: false,
            series: vec![Series { name: "on the best tip".into(), points: timeline }],
        },
    ));
    r.take_profile(&sim);
    r
}

/// Churn at steady state: the share of up nodes within one block of the best tip.
fn churn(o: &Opts) -> Report {
    let mut r = Report::new(
        "churn",
        &["nodes", "session s", "downtime s", "lose data", "run s", "up %", "within 1 block %", "min %"],
    );
    let n = o.nodes[0];
    let interval = 30_000;
    let ch = if o.small {
        Churn { mean_session_s: 120.0, mean_downtime_s: 30.0, lose_data_share: 0.2 }
    } else {
        Churn { mean_session_s: 1_800.0, mean_downtime_s: 300.0, lose_data_share: 0.2 }
    };
    let run_s: u64 = if o.small { 240 } else { 1_800 };
    let model = Model { churn: Some(ch), ..Model::default() };
    let mut sim = network(n, o, model, interval);
    let start = sim.now_us;
    let mut within = Vec::new();
    let mut up = Vec::new();
    // Blocks at their own (Poisson) times, samples every 10 s in between.
    let mut next_block = sim.now_us + (exponential(&mut sim.rng, interval as f64) * MS as f64) as u64;
    let mut next_sample = start + 10 * S;
    while next_sample <= start + run_s * S {
        if next_block < next_sample {
            sim.run_until(next_block);
            let miner = sim.model.pick_miner(&mut sim.rng);
            sim.mine(miner, 0);
            sim.forget_tracks();
            next_block += (exponential(&mut sim.rng, interval as f64) * MS as f64) as u64;
            continue;
        }
        sim.run_until(next_sample);
        next_sample += 10 * S;
        let best = sim.best_tip().height;
        let ups: Vec<usize> = (0..n).filter(|&i| sim.nodes[i].up).collect();
        let near = ups.iter().filter(|&&i| sim.tip(i).height + 1 >= best).count();
        let t = (sim.now_us - start) as f64 / S as f64;
        within.push((t, 100.0 * near as f64 / ups.len().max(1) as f64));
        up.push((t, 100.0 * ups.len() as f64 / n as f64));
    }
    // Churn stops (nobody leaves or returns any more); every node that is up must
    // then reach the best tip.
    sim.model.churn = None;
    sim.forget_tracks();
    if sim.run_until_converged(S, 300 * S).is_none() {
        let best = sim.best_tip();
        let behind: Vec<usize> =
            (0..n).filter(|&i| sim.nodes[i].up && sim.tip(i).hash != best.hash).collect();
        r.failures.push(format!("after churn stopped, nodes not on the best tip: {behind:?}"));
    }
    check_supply(&sim, &mut r, "after churn");
    let mean = within.iter().map(|p| p.1).sum::<f64>() / within.len().max(1) as f64;
    let min = within.iter().map(|p| p.1).fold(100.0, f64::min);
    let mean_up = up.iter().map(|p| p.1).sum::<f64>() / up.len().max(1) as f64;
    r.rows.push(vec![
        n.to_string(),
        f1(ch.mean_session_s),
        f1(ch.mean_downtime_s),
        f1(ch.lose_data_share),
        run_s.to_string(),
        f1(mean_up),
        f1(mean),
        f1(min),
    ]);
    r.json = json!({"nodes": n, "churn": ch, "run_s": run_s, "mean_up_pct": mean_up, "mean_within_one_pct": mean,
        "min_within_one_pct": min, "timeline": within});
    r.charts.push((
        "churn".into(),
        Chart {
            title: format!("Churn at steady state, {n} nodes (simulated)"),
            x_label: "s".into(),
            y_label: "% (near the tip: of the up nodes, within 1 block)".into(),
            log_x: false,
            series: vec![
                Series { name: "up nodes near the tip".into(), points: within },
                Series { name: "nodes up".into(), points: up },
            ],
        },
    ));
    r.take_profile(&sim);
    r
}

/// Transfer propagation: the time until 50/90/99/100 % of mempools hold a transfer
/// submitted at a random node.
fn transfer(o: &Opts) -> Report {
    let mut r = Report::new("transfer", &["nodes", "transfers", "p50 ms", "p90 ms", "p99 ms", "p100 ms"]);
    let n = o.nodes[0];
    let count = if o.small { 3 } else { 10 };
    let mut sim = network(n, o, Model::default(), 600_000);
    let mut per_pct: Vec<Vec<f64>> = vec![Vec::new(); PCTS.len()];
    let mut cdf = Vec::new();
    for k in 0..count {
        let at = sim.rng.gen_range_usize(n);
        let txid = sim.submit_transfer(at);
        let end = sim.now_us + 120 * S;
        while sim.now_us < end && sim.txs[&txid].at.iter().any(Option::is_none) {
            sim.run_for(200 * MS);
        }
        let t = &sim.txs[&txid];
        for (j, p) in PCTS.iter().enumerate() {
            match percentile_ms(t, n, *p) {
                Some(ms) => per_pct[j].push(ms),
                None => r.failures.push(format!("transfer {txid}: {p}% of mempools never had it")),
            }
        }
        if k == 0 {
            let mut times: Vec<f64> = t.at.iter().flatten().map(|&us| us as f64 / 1000.0).collect();
            times.sort_by(f64::total_cmp);
            cdf = times.iter().enumerate().map(|(k, ms)| (*ms, 100.0 * (k + 1) as f64 / n as f64)).collect();
        }
        sim.forget_tracks();
        sim.run_for(5 * S);
    }
    let med: Vec<f64> = per_pct.into_iter().map(median).collect();
    r.rows.push(vec![n.to_string(), count.to_string(), f1(med[0]), f1(med[1]), f1(med[2]), f1(med[3])]);
    r.json = json!({"nodes": n, "transfers": count, "p50_ms": med[0], "p90_ms": med[1], "p99_ms": med[2], "p100_ms": med[3]});
    r.charts.push((
        "transfer".into(),
        Chart {
            title: format!("Share of mempools holding a transfer, {n} nodes (simulated)"),
            x_label: "ms since submitted".into(),
            y_label: "% of nodes".into(),
            log_x: false,
            series: vec![Series { name: "first transfer".into(), points: cdf }],
        },
    ));
    r.take_profile(&sim);
    r
}

/// A uniform index below `n` from the simulation's generator.
trait GenIndex {
    fn gen_range_usize(&mut self, n: usize) -> usize;
}

impl GenIndex for rand::rngs::StdRng {
    fn gen_range_usize(&mut self, n: usize) -> usize {
        rand::Rng::gen_range(self, 0..n)
    }
}
