//! `cairn-sim SCENARIO [--nodes N[,N...]] [--seed S] [--out DIR]`: runs a scenario of
//! the network simulator, prints its table and writes `SCENARIO.json` and its SVG
//! charts into DIR (scripts/simulate.sh wraps it).

use anyhow::Context;
use cairn_sim::scenario::{self, Opts, SCENARIOS};
use clap::Parser;
use std::path::PathBuf;

#[derive(Parser)]
#[command(name = "cairn-sim", about = "Cairn's network simulator: the real peer protocol at scale")]
struct Args {
    /// propagation, forks, partition, churn or transfer.
    scenario: String,
    /// Network sizes, comma-separated (only propagation runs more than the first).
    #[arg(long, value_delimiter = ',')]
    nodes: Option<Vec<usize>>,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Fewer blocks and shorter runs (the test suite's setting).
    #[arg(long)]
    small: bool,
    /// Every node holds its own copy of every block, as before the simulator shared
    /// them (to measure what sharing saves; the runs are the same).
    #[arg(long)]
    no_share: bool,
    /// forks: block sizes in bytes, comma-separated (default 0,20000). propagation: the
    /// sizes of its blocks instead of an empty and a full one (0: empty).
    #[arg(long, value_delimiter = ',')]
    block_bytes: Option<Vec<usize>>,
    /// forks: mean block intervals in seconds, comma-separated (default
    /// 1,2,5,10,30,60,600).
    #[arg(long, value_delimiter = ',')]
    intervals: Option<Vec<u64>>,
    /// A progress line on stderr every this many simulated seconds (simulated time,
    /// events, wall time, resident memory), and each block's row as it completes; 0:
    /// none. Stdout and the JSON are the same either way.
    #[arg(long, default_value_t = 10)]
    progress: u64,
    /// propagation only: run nothing, and draw the propagation-by-size chart from the
    /// `results` of these earlier runs' propagation.json files together (comma-separated),
    /// into `--out`.
    #[arg(long, value_delimiter = ',')]
    from_json: Option<Vec<PathBuf>>,
    /// Where the JSON and SVG files go.
    #[arg(long, default_value = "sim-out")]
    out: PathBuf,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if !SCENARIOS.contains(&args.scenario.as_str()) {
        anyhow::bail!("unknown scenario `{}`: one of {}", args.scenario, SCENARIOS.join(", "));
    }
    if let Some(files) = &args.from_json {
        anyhow::ensure!(args.scenario == "propagation", "--from-json: only for propagation");
        let mut results = Vec::new();
        for f in files {
            let text = std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
            let v: serde_json::Value =
                serde_json::from_str(&text).with_context(|| format!("parsing {}", f.display()))?;
            let rows = v["results"].as_array().with_context(|| format!("{}: no results", f.display()))?;
            results.extend(rows.iter().cloned());
        }
        std::fs::create_dir_all(&args.out).with_context(|| format!("creating {}", args.out.display()))?;
        let p = args.out.join("propagation-by-size.svg");
        std::fs::write(&p, scenario::propagation_by_size(&results).render())
            .with_context(|| format!("writing {}", p.display()))?;
        println!("wrote {} from {} results", p.display(), results.len());
        return Ok(());
    }
    let default_nodes = if args.scenario == "propagation" { vec![100, 1_000] } else { vec![1_000] };
    let nodes = args.nodes.unwrap_or(default_nodes);
    if nodes.is_empty() || nodes.iter().any(|&n| n < 10) {
        anyhow::bail!("--nodes: at least 10 nodes per network");
    }
    if args.intervals.as_ref().is_some_and(|v| v.is_empty() || v.contains(&0)) {
        anyhow::bail!("--intervals: at least one, each of at least 1 s");
    }
    if args.block_bytes.as_ref().is_some_and(Vec::is_empty) {
        anyhow::bail!("--block-bytes: at least one size");
    }
    let opts = Opts {
        nodes,
        seed: args.seed,
        small: args.small,
        share: !args.no_share,
        block_bytes: args.block_bytes,
        intervals_s: args.intervals,
        progress_s: args.progress,
    };
    let report = scenario::run(&args.scenario, &opts)?;
    std::fs::create_dir_all(&args.out).with_context(|| format!("creating {}", args.out.display()))?;
    let json_path = args.out.join(format!("{}.json", args.scenario));
    std::fs::write(&json_path, serde_json::to_string_pretty(&report.to_json())?)
        .with_context(|| format!("writing {}", json_path.display()))?;
    println!("{} (seed {}; simulated, not measured on a real network)", args.scenario, args.seed);
    print!("{}", report.table());
    println!("wall time {:.1} s, peak memory {:.0} MB", report.wall_s, report.peak_rss_mb);
    println!("profile of the largest run (event kind: count, mean wall time):");
    for (kind, c) in &report.profile {
        let mean = if c.count > 0 { c.wall_ns as f64 / c.count as f64 / 1000.0 } else { 0.0 };
        println!("  {kind:>12}: {:>10}  {mean:>8.1} us", c.count);
    }
    for (name, chart) in &report.charts {
        let p = args.out.join(format!("{name}.svg"));
        std::fs::write(&p, chart.render()).with_context(|| format!("writing {}", p.display()))?;
        println!("wrote {}", p.display());
    }
    println!("wrote {}", json_path.display());
    if !report.failures.is_empty() {
        for f in &report.failures {
            eprintln!("FAILED: {f}");
        }
        std::process::exit(1);
    }
    Ok(())
}
