//! `--long` (issue 17): a chain of 1,000,000 transfers (by default), generated once and
//! kept in a file keyed by its parameters, imported by a child process (this program run
//! again with `--import-child`) and then synced by a fresh `cairn-node` process, with the
//! resident memory of both sampled throughout.

use crate::report::{num, Goal, Row};
use crate::{gen, inproc, procs};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Transfers per block of the long chain (the same blocks as the short import's).
const PER_BLOCK: usize = 2000;

/// VmRSS of a process sampled by a thread at a fixed interval until stopped.
struct RssSampler {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Vec<(f64, f64)>>,
}

impl RssSampler {
    fn start(pid: u32, every: Duration) -> RssSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let start = Instant::now();
            let mut samples = Vec::new();
            loop {
                if let Ok(mib) = procs::rss_mib(pid) {
                    samples.push((start.elapsed().as_secs_f64(), mib));
                }
                if flag.load(Ordering::Relaxed) {
                    return samples;
                }
                // A sampling interval, not a wait for anything.
                std::thread::sleep(every);
            }
        });
        RssSampler { stop, thread }
    }

    fn finish(self) -> Vec<(f64, f64)> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap_or_default()
    }
}

/// The peak of `samples` and at most 20 of them, evenly spaced, as `t s: MiB`.
fn rss_summary(samples: &[(f64, f64)]) -> (f64, String) {
    let peak = samples.iter().map(|&(_, m)| m).fold(f64::NAN, f64::max);
    let step = samples.len().div_ceil(20).max(1);
    let shown: Vec<String> = samples.iter().step_by(step).map(|&(t, m)| format!("{t:.0}s:{m:.0}")).collect();
    (peak, format!("{} samples, peak {peak:.1} MiB; t:MiB {}", samples.len(), shown.join(" ")))
}

pub struct Yardsticks {
    /// The short run's import and sync rates, when they were measured in this run.
    pub short_import: Option<f64>,
    pub short_sync: Option<f64>,
    pub k256: (f64, String),
    pub libsecp: (f64, String),
}

/// Generates (or finds in `cache_dir`) a chain of `transfers` transfers, imports it into
/// `work`, syncs a fresh node process from it; one row per figure.
pub fn run(work: &Path, cache_dir: &Path, transfers: usize, y: &Yardsticks) -> anyhow::Result<Vec<Row>> {
    let blocks = transfers.div_ceil(PER_BLOCK).max(1);
    let transfers = blocks * PER_BLOCK;
    let senders: Vec<_> = (0..500).map(|i| gen::key("sender", i)).collect();
    let genesis = gen::genesis("cairn-bench-long", &senders, 0);
    let id = genesis.block().hash();
    let file = cache_dir.join(format!("long-{blocks}x{PER_BLOCK}-500-{}.blocks", &id.to_string()[..16]));
    let t = Instant::now();
    crate::step(&format!("long: generating {blocks} blocks x {PER_BLOCK} transfers into {}", file.display()));
    if gen::cached_transfer_chain(&file, &genesis, &senders, blocks, PER_BLOCK, &gen::fresh_recipient)? {
        crate::step(&format!("long: generated in {:.0} s", t.elapsed().as_secs_f64()));
    } else {
        crate::step("long: found in the cache");
    }

    let mut rows = Vec::new();
    crate::step(&format!("long: import {transfers} transfers (in a child process)"));
    let dir = work.join("long-import");
    let genesis_file = procs::write_genesis(work, &genesis)?;
    let (run, rss) = import_in_child(&genesis_file, &file, &dir)?;
    let (peak, samples) = rss_summary(&rss);
    let import = Row {
        scenario: format!("long: import {} transfers", run.transfers),
        figure: run.rate(),
        unit: "tx/s",
        limit: y.short_import.map(|r| (r, "short import rate, same run".into())),
        goal: Goal::RatioAtLeast(0.9),
        note: format!(
            "{:.1} s wall, {:.1} s CPU, blocks read from the cache file inside the timing, in a process of its own",
            run.secs, run.cpu_secs
        ),
    };
    let (vs_k256, vs_libsecp) =
        (import.against(y.k256.clone(), Goal::None), import.against(y.libsecp.clone(), Goal::None));
    rows.extend([import, vs_k256, vs_libsecp]);
    rows.push(Row {
        scenario: "long: importing process peak VmRSS".into(),
        figure: peak,
        unit: "MiB",
        limit: Some((256.0, "bound".into())),
        goal: Goal::AtMost,
        note: format!("the bench run again with --import-child, doing nothing but the import; sampled every 0.5 s from spawn to exit: {samples}"),
    });

    crate::step("long: sync from a peer process");
    let timeout = Duration::from_secs((transfers as u64 / 500).max(300));
    let s = procs::sync(&genesis_file, &dir, work, "long-fresh", &[], blocks as u64, transfers, timeout)?;
    let (peak, samples) = rss_summary(&s.rss_samples);
    let sync = Row {
        scenario: format!("long: sync {transfers} transfers from a peer"),
        figure: s.synced_transfers() / s.secs,
        unit: "tx/s",
        limit: y.short_sync.map(|r| (r, "short sync rate, same run".into())),
        goal: Goal::RatioAtLeast(0.9),
        note: if s.reached >= s.target {
            format!("fresh node spawn to tip at height {}: {:.1} s; {}", s.target, s.secs, s.cpu_note())
        } else {
            format!("DID NOT FINISH: height {} of {} after {:.0} s", s.reached, s.target, s.secs)
        },
    };
    let (vs_k256, vs_libsecp) =
        (sync.against(y.k256.clone(), Goal::None), sync.against(y.libsecp.clone(), Goal::None));
    rows.extend([sync, vs_k256, vs_libsecp]);
    rows.push(Row {
        scenario: "long: syncing node peak VmRSS".into(),
        figure: peak,
        unit: "MiB",
        limit: Some((256.0, "bound".into())),
        goal: Goal::AtMost,
        note: format!("sampled every 0.5 s from spawn to tip: {samples}; {} now", num(s.rss_mib)),
    });
    std::fs::remove_dir_all(&dir)?;
    Ok(rows)
}

/// Runs this program again as `--import-child` on the long chain, sampling the child's
/// VmRSS: what an import of the chain holds, without the memory this process kept from
/// the scenarios before it.
fn import_in_child(
    genesis: &Path,
    blocks: &Path,
    dir: &Path,
) -> anyhow::Result<(inproc::ImportRun, Vec<(f64, f64)>)> {
    use anyhow::Context;
    let child = std::process::Command::new(std::env::current_exe()?)
        .arg("--import-child")
        .args([genesis, blocks, dir])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .context("starting the import child")?;
    let sampler = RssSampler::start(child.id(), Duration::from_millis(500));
    let out = child.wait_with_output();
    let samples = sampler.finish();
    let out = out.context("waiting for the import child")?;
    anyhow::ensure!(out.status.success(), "the import child failed: {}", out.status);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).context("the import child's answer")?;
    let field = |k: &str| v[k].as_f64().with_context(|| format!("{k} in the import child's answer"));
    let run = inproc::ImportRun {
        transfers: field("transfers")? as usize,
        secs: field("secs")?,
        cpu_secs: field("cpu_secs")?,
    };
    Ok((run, samples))
}

/// The `--import-child` side: imports the blocks of `blocks` (a cache file of
/// [`gen::cached_transfer_chain`]) into a new chain in `dir` on `genesis`, and prints the
/// run as one JSON object on stdout.
pub fn import_child(genesis: &Path, blocks: &Path, dir: &Path) -> anyhow::Result<()> {
    let genesis = cairn_core::genesis::Genesis::from_json(&std::fs::read_to_string(genesis)?)?;
    let run = inproc::import_iter(dir, &genesis, gen::read_blocks(blocks)?, Default::default())?;
    println!(
        "{}",
        serde_json::json!({ "transfers": run.transfers, "secs": run.secs, "cpu_secs": run.cpu_secs })
    );
    Ok(())
}
