//! Cairn's benchmark suite (issue 8): every figure beside a limit of this machine that is
//! measured in the same run, with the ratio and the target it must meet.
//!
//! ```text
//! scripts/bench.sh [--quick] [--long]  # builds in release mode and runs this
//! target/release/examples/bench [--quick] [--long | --long-transfers N] [--only NAME,NAME] [--out FILE]
//! ```
//!
//! Limits: single-thread k256 and libsecp256k1 verifications/s (times the cores; every
//! signature-bound figure is shown against both), SHA-256 compressions/s
//! on one thread, the do-nothing JSON-RPC method `rpc_ping` under 32 clients, loopback
//! TCP round trip. Scenarios (`--only` names): `import`, `miner`, `rpc`, `accounts`,
//! `memory`, `sync`, `restart`, `propagation`, `connect`. Data is generated from fixed seeds;
//! traffic stays on 127.0.0.1. Real `cairn-node` processes are found as the test
//! harness finds them (`$CAIRN_BIN_DIR`, else next to this program's directory).
//! `--long` adds a chain of 1,000,000 transfers (generated once, cached in a `cache`
//! directory beside `--out`), imported (by this program run again as `--import-child`,
//! so that the import's memory is a process of its own) and synced, with each
//! process's memory sampled throughout.
//! `CAIRN_BENCH_WINDOWS=FILE` makes `propagation` write each counted block's kind,
//! submit and last arrival (CLOCK_MONOTONIC nanoseconds, as `perf record -k
//! CLOCK_MONOTONIC` stamps samples), to cut a profile down to the blocks' windows.
//! `CAIRN_BENCH_TRACE=FILE` makes it write, per counted block, its kind, its time to
//! the last node, then each node's arrival (ms after the submit) and the block-relay
//! bytes that node received, by command: which nodes were late, and how each got it.
//! `CAIRN_BENCH_THREADS=FILE` makes it write, per counted block, its kind, its time to
//! the last node, the node processes' minor page faults (`minflt N`), then per thread
//! name the node processes' CPU and run-queue wait (ms) and the times their threads were
//! put on a core, over the same window, summed over the processes.

mod connect;
mod gen;
mod inproc;
mod limits;
mod long;
mod procs;
mod report;

use report::{Goal, Row};
use std::path::PathBuf;
use std::time::Duration;

struct Args {
    quick: bool,
    /// `--long [TRANSFERS]`: also the long run (issue 17), 1,000,000 transfers by default.
    long: Option<usize>,
    only: Option<Vec<String>>,
    out: PathBuf,
    /// `--import-child GENESIS BLOCKS DIR`: not for people. The long run starts the bench
    /// again with this, so that the import's memory is its own process's (see `long`).
    import_child: Option<[PathBuf; 3]>,
}

const SCENARIOS: [&str; 9] =
    ["import", "miner", "rpc", "accounts", "memory", "sync", "restart", "propagation", "connect"];

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        quick: false,
        long: None,
        only: None,
        out: PathBuf::from("target/bench/results.json"),
        import_child: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "--quick" => a.quick = true,
            "--long" => a.long = Some(1_000_000),
            "--long-transfers" => {
                let n = it.next().ok_or("--long-transfers needs a number")?;
                a.long = Some(n.parse().map_err(|_| format!("--long-transfers: {n} is not a number"))?);
            }
            "--only" => {
                let list: Vec<String> =
                    it.next().ok_or("--only needs a list")?.split(',').map(str::to_string).collect();
                if let Some(bad) = list.iter().find(|n| !SCENARIOS.contains(&n.as_str())) {
                    return Err(format!("unknown scenario {bad}; known: {}", SCENARIOS.join(",")));
                }
                a.only = Some(list);
            }
            "--out" => a.out = PathBuf::from(it.next().ok_or("--out needs a path")?),
            "--import-child" => {
                let mut path =
                    || it.next().map(PathBuf::from).ok_or("--import-child needs GENESIS BLOCKS DIR");
                a.import_child = Some([path()?, path()?, path()?]);
            }
            "-h" | "--help" => {
                return Err(
                    "usage: bench [--quick] [--long | --long-transfers N] [--only NAME,NAME] [--out FILE]"
                        .into(),
                )
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(a)
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| t.lines().find(|l| l.starts_with("model name")).map(|l| l.to_string()))
        .and_then(|l| l.split_once(':').map(|(_, m)| m.trim().to_string()))
        .unwrap_or_else(|| "unknown".into())
}

fn step(what: &str) {
    eprintln!("[bench] {what}");
}

/// A row for a scenario that could not be measured.
fn failed(scenario: &str, unit: &'static str, e: &anyhow::Error) -> Row {
    Row {
        scenario: scenario.into(),
        figure: f64::NAN,
        unit,
        limit: None,
        goal: Goal::None,
        note: format!("NOT MEASURED: {e:#}"),
    }
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    if let Some([genesis, blocks, dir]) = &args.import_child {
        std::process::exit(match long::import_child(genesis, blocks, dir) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("import child: {e:#}");
                1
            }
        });
    }
    let wants = |name: &str| args.only.as_ref().is_none_or(|l| l.iter().any(|n| n == name));
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    let work = tempfile::Builder::new().prefix("cairn-bench-").tempdir().expect("temp dir");
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut rows: Vec<Row> = Vec::new();
    let q = args.quick;

    // The chain of blocks full of transfers: imported, then served to a syncing node.
    let (blocks_n, per_block) = if q { (10, 2000) } else { (50, 2000) };
    step(&format!("generating {blocks_n} blocks x {per_block} transfers (500 senders)"));
    let senders: Vec<_> = (0..500).map(|i| gen::key("sender", i)).collect();
    let genesis = gen::genesis("cairn-bench-import", &senders, 0);
    let chain_id = genesis.params.chain_id;
    let blocks = gen::transfer_blocks(&genesis, &senders, blocks_n, per_block, &gen::fresh_recipient);

    // Limits.
    step("measuring the limits");
    // The transfers both yardsticks check, at the start and again at the end of the run
    // (a copy: the blocks go to the import).
    let yardstick_sample: Vec<cairn_core::SignedTransfer> =
        blocks[0].transactions.iter().filter_map(|t| t.as_transfer()).copied().collect();
    let sample: Vec<_> = yardstick_sample.iter().collect();
    // A second of the same loop first, not counted: the first seconds of a run have
    // measured the check at 0.67 of its repeat at the end of the same run (a `--quick`
    // run on 2026-12-03), which flattered every ratio to it.
    let _ = limits::verify_rate(&sample, chain_id, Duration::from_secs(1));
    let (verify1, verify1_cpu) = limits::verify_rate(&sample, chain_id, Duration::from_secs(2));
    let verify_all = verify1 * cores as f64;
    let sha = limits::sha256_compressions_per_second(Duration::from_secs(1));
    rows.push(Row::limit(
        "limit: k256 verify, 1 thread",
        verify1,
        "sig/s",
        &format!(
            "Cairn's check (SignedTransfer::verify: chain id, low-S, key decompression, k256 arithmetic with cairn_core::ecdsa's equation); per CPU-second of that thread: {} /s (the rest went to other work on the machine)",
            report::num(verify1_cpu)
        ),
    ));
    let (own1, own1_cpu) = limits::k256_own_verify_rate(&sample, Duration::from_secs(2));
    rows.push(Row::limit(
        "limit: k256's own verify_prehash, 1 thread",
        own1,
        "sig/s",
        &format!(
            "the same loop through VerifyingKey::verify_prehash; per CPU-second: {} /s = {:.3} x Cairn's check",
            report::num(own1_cpu),
            own1_cpu / verify1_cpu
        ),
    ));
    rows.push(Row::limit("limit: cores (available_parallelism)", cores as f64, "cores", ""));
    rows.push(Row::limit("limit: SHA-256 compressions, 1 thread", sha, "compr/s", "sha2::compress256"));
    match limits::loopback_rtt_us(5000) {
        Ok(us) => {
            rows.push(Row::limit("limit: loopback TCP round trip (median)", us, "us", "1-byte ping-pong"))
        }
        Err(e) => rows.push(failed("limit: loopback TCP round trip", "us", &e.into())),
    }
    let verify_limit = (verify_all, format!("verify/s x {cores} cores"));
    // The second yardstick (issue 17): the fastest correct signature check there is on
    // this machine, Bitcoin Core's libsecp256k1, through the same loop.
    let (libsecp1, libsecp1_cpu) = limits::libsecp_verify_rate(&sample, Duration::from_secs(2));
    rows.push(Row::limit(
        "limit: libsecp256k1 verify, 1 thread",
        libsecp1,
        "sig/s",
        &format!(
            "the secp256k1 crate, same loop (signing hash, signature parse, key decompression, verify); per CPU-second: {} /s = {:.2} x k256's",
            report::num(libsecp1_cpu),
            libsecp1_cpu / verify1_cpu
        ),
    ));
    let libsecp_limit = (libsecp1 * cores as f64, format!("libsecp256k1 verify/s x {cores} cores"));

    let import_dir = work.path().join("import");
    let mut import_rate = None;
    if wants("import") || wants("sync") {
        step("import");
        let verify_par = limits::verify_rate_parallel(&sample, chain_id, Duration::from_millis(1500));
        let index_blocks = wants("import").then(|| blocks.clone());
        match inproc::import(&import_dir, &genesis, blocks) {
            Ok(run) => {
                import_rate = Some(run.rate());
                let per_cpu = run.transfers as f64 / run.cpu_secs;
                let import = Row {
                    scenario: format!("import {} transfers ({blocks_n} blocks)", run.transfers),
                    figure: run.rate(),
                    unit: "tx/s",
                    limit: Some(verify_limit.clone()),
                    goal: Goal::RatioAtLeast(0.75),
                    note: format!(
                        "validate + apply + commit into RocksDB (address index on), {:.2} s wall, {:.2} s CPU ({:.2} cores busy); \
                         {} tx per CPU-second = {:.2} x verify per CPU-second; verify on all cores just before: {} /s",
                        run.secs,
                        run.cpu_secs,
                        run.cpu_secs / run.secs,
                        report::num(per_cpu),
                        per_cpu / verify1_cpu,
                        report::num(verify_par)
                    ),
                };
                let vs_libsecp = import.against(libsecp_limit.clone(), Goal::RatioAtLeast(0.5));
                rows.extend([import, vs_libsecp]);
            }
            Err(e) => rows.push(failed("import", "tx/s", &e)),
        }
        if let Some(blocks) = index_blocks {
            step("import with and without the address index");
            let rounds = if q { 1 } else { 2 };
            match address_index_cost(work.path(), &genesis, blocks, rounds) {
                Ok((off, on)) => rows.push(Row {
                    scenario: format!("import with the address index ({} tx)", on.transfers),
                    figure: on.rate(),
                    unit: "tx/s",
                    limit: Some((off.rate(), "same import without it".into())),
                    goal: Goal::RatioAtLeast(0.9),
                    note: format!(
                        "best of {rounds} interleaved run(s) each; {:.2} s with, {:.2} s without (--no-address-index)",
                        on.secs, off.secs
                    ),
                }),
                Err(e) => rows.push(failed("import with the address index", "tx/s", &e)),
            }
        }
    } else {
        drop(blocks);
    }

    if wants("miner") {
        step("miner");
        let loop_rate = inproc::midstate_loop_rate(Duration::from_secs(1));
        match inproc::miner_rate(Duration::from_millis(4300)) {
            Ok(rate) => rows.push(Row {
                scenario: "miner hashes, 1 search thread".into(),
                figure: rate,
                unit: "H/s",
                limit: Some((sha / 2.0, "compressions/s / 2 per nonce".into())),
                goal: Goal::RatioAtLeast(0.8),
                note: format!(
                    "the node's miner (midstate: 2 compressions per nonce); bare HeaderHasher loop {} H/s",
                    report::num(loop_rate)
                ),
            }),
            Err(e) => rows.push(failed("miner", "H/s", &e)),
        }
    }

    if wants("rpc") {
        step("rpc (32 HTTP clients)");
        let per_client = if q { 150 } else { 500 };
        let window = Duration::from_secs(if q { 2 } else { 4 });
        match inproc::rpc(&rt, per_client, window) {
            Ok(f) => {
                rows.push(Row::limit(
                    "limit: rpc_ping (does nothing), 32 clients",
                    f.ping,
                    "calls/s",
                    &format!("{:.0} us of CPU per call, clients and server together", f.ping_cpu_us),
                ));
                // The target rows: the leanest client, so that the node gets as much of the
                // two cores as a load generator on the same machine can leave it.
                let submit = Row {
                    scenario: format!("tx_submit admissions, 32 clients ({})", f.raw.admitted),
                    figure: f.raw.rate,
                    unit: "tx/s",
                    limit: Some(verify_limit.clone()),
                    goal: Goal::RatioAtLeast(0.5),
                    note: format!(
                        "bare HTTP/1.1 clients; CPU per admission: {:.0} us, of it the server's {:.0} us (one verify: {:.0} us)",
                        f.raw.cpu_us,
                        f.raw.server_cpu_us,
                        1e6 / verify1
                    ),
                };
                let vs_libsecp = submit.against(libsecp_limit.clone(), Goal::RatioAtLeast(0.3));
                rows.push(submit);
                rows.push(vs_libsecp);
                rows.push(Row {
                    scenario: format!("tx_submit, 32 jsonrpsee clients ({})", f.jsonrpsee.admitted),
                    figure: f.jsonrpsee.rate,
                    unit: "tx/s",
                    limit: Some(verify_limit.clone()),
                    goal: Goal::None,
                    note: format!(
                        "the wallet's client; CPU per admission: {:.0} us, of it the server's {:.0} us",
                        f.jsonrpsee.cpu_us, f.jsonrpsee.server_cpu_us
                    ),
                });
                rows.push(Row {
                    scenario: "chain_getInfo, 32 clients".into(),
                    figure: f.get_info,
                    unit: "calls/s",
                    limit: Some((f.ping, "rpc_ping calls/s".into())),
                    goal: Goal::RatioAtLeast(0.5),
                    note: String::new(),
                });
            }
            Err(e) => rows.push(failed("rpc", "calls/s", &e)),
        }
    }

    if wants("accounts") {
        step("import with 10,000 and 1,000,000 accounts");
        let blocks_n = if q { 5 } else { 25 };
        match accounts(work.path(), blocks_n) {
            Ok((small, big)) => rows.push(Row {
                scenario: format!("import with 1M accounts ({} tx)", big.transfers),
                figure: big.rate(),
                unit: "tx/s",
                limit: Some((small.rate(), "same with 10k accounts".into())),
                goal: Goal::RatioAtLeast(0.8),
                note: "transfers to existing accounts picked at random (fixed seed); best of 2 runs each, interleaved".into(),
            }),
            Err(e) => rows.push(failed("accounts", "tx/s", &e)),
        }
    }

    let genesis_file = procs::write_genesis(work.path(), &genesis).expect("genesis file");
    if wants("memory") {
        step("memory of an idle node");
        match procs::idle_rss(&genesis_file, work.path(), Duration::from_secs(2)) {
            Ok(mib) => rows.push(Row {
                scenario: "memory: idle node (VmRSS)".into(),
                figure: mib,
                unit: "MiB",
                limit: Some((64.0, "bound".into())),
                goal: Goal::AtMost,
                note: "fresh data dir, no peers, 2 s after its RPC answered".into(),
            }),
            Err(e) => rows.push(failed("memory: idle node", "MiB", &e)),
        }
    }

    let mut sync_rate = None;
    if wants("sync") || (wants("memory") && import_rate.is_some()) {
        if let Some(import_rate) = import_rate {
            step("sync from a peer process");
            let total = blocks_n * per_block;
            match procs::sync(
                &genesis_file,
                &import_dir,
                work.path(),
                "fresh",
                &[],
                blocks_n as u64,
                total,
                Duration::from_secs(if q { 120 } else { 300 }),
            ) {
                Ok(s) => {
                    let done = s.reached >= s.target;
                    let sync = Row {
                        scenario: format!("sync {} transfers from a peer process", s.transfers),
                        figure: s.synced_transfers() / s.secs,
                        unit: "tx/s",
                        limit: Some((import_rate, "import rate, same run".into())),
                        goal: Goal::RatioAtLeast(0.9),
                        note: if done {
                            format!(
                                "fresh node spawn to tip at height {}: {:.2} s (height 1 at {:.2} s); {}",
                                s.target,
                                s.secs,
                                s.first_block_secs.unwrap_or(f64::NAN),
                                s.cpu_note()
                            )
                        } else {
                            format!(
                                "DID NOT FINISH: height {} of {} after {:.0} s",
                                s.reached, s.target, s.secs
                            )
                        },
                    };
                    sync_rate = done.then_some(sync.figure);
                    let vs_k256 = sync.against(verify_limit.clone(), Goal::None);
                    let vs_libsecp = sync.against(libsecp_limit.clone(), Goal::None);
                    rows.extend([sync, vs_k256, vs_libsecp]);
                    rows.push(Row {
                        scenario: "memory: node after sync (VmRSS)".into(),
                        figure: s.rss_mib,
                        unit: "MiB",
                        limit: Some((256.0, "bound".into())),
                        goal: Goal::AtMost,
                        note: format!("the syncing node at height {}", s.reached),
                    });
                }
                Err(e) => rows.push(failed("sync", "tx/s", &e)),
            }
            // The same sync into a node that keeps no address history index: what the
            // index adds to the syncing node's memory.
            match procs::sync(
                &genesis_file,
                &import_dir,
                work.path(),
                "fresh-no-index",
                &["--no-address-index"],
                blocks_n as u64,
                total,
                Duration::from_secs(if q { 120 } else { 300 }),
            ) {
                Ok(s) => rows.push(Row::limit(
                    "info: memory after the same sync, --no-address-index",
                    s.rss_mib,
                    "MiB",
                    &format!("the syncing node at height {} after {:.2} s", s.reached, s.secs),
                )),
                Err(e) => rows.push(failed("sync without the address index", "MiB", &e)),
            }
        }
    }

    if wants("restart") {
        let n = 100_000u64;
        step(&format!("restart of a node with {n} blocks (generating the chain)"));
        let dir = work.path().join("long");
        let long_genesis = gen::genesis("cairn-bench-long", &[], 0);
        let r = gen::empty_chain(&dir, &long_genesis, n).and_then(|()| {
            let file = procs::write_genesis(&dir, &long_genesis)?;
            procs::restart(&cairn_tests::bin("cairn-node"), &dir, &file, n)
        });
        match r {
            Ok(r) => rows.push(Row {
                scenario: format!("restart with {n} blocks to RPC answering"),
                figure: r.secs,
                unit: "s",
                limit: Some((2.0, "bound".into())),
                goal: Goal::AtMost,
                note: format!("spawn to chain_getInfo at height {n}; VmRSS then {:.1} MiB", r.rss_mib),
            }),
            Err(e) => rows.push(failed("restart", "s", &e)),
        }
    }

    if wants("propagation") {
        use procs::BlockKind;
        let (empty, full) = if q { (10, 3) } else { (60, 40) };
        step(&format!(
            "propagation across 10 nodes ({empty} empty blocks, {full} of 1000 transfers in every mempool, {full} of 1000 no node has seen)"
        ));
        let counts = [(BlockKind::Empty, empty), (BlockKind::InMempool, full), (BlockKind::Unseen, full)];
        match procs::propagation(&rt, &work.path().join("net"), 10, counts, 1000) {
            Ok(p) => {
                let median = |v: &[f64]| procs::quantile(v, 0.5);
                let p95 = |v: &[f64]| procs::quantile(v, 0.95);
                // Where the time went: each process's arrival, median per kind.
                for (name, f) in
                    [("empty", &p.empty), ("in every mempool", &p.in_mempool), ("unseen", &p.unseen)]
                {
                    let per_node: Vec<String> =
                        f.node_ms.iter().map(|v| format!("{:.1}", median(v))).collect();
                    step(&format!(
                        "{name}: median arrival (ms) at nodes 1..{}: {}",
                        per_node.len(),
                        per_node.join(" ")
                    ));
                }
                // Where the CPU went: what the processes ran from the submit to the
                // last arrival. On a machine this small, the 10 nodes' work for one
                // block shares the cores, so no relay brings it to the last node before
                // that work divided by the cores.
                for (name, f) in
                    [("empty", &p.empty), ("in every mempool", &p.in_mempool), ("unseen", &p.unseen)]
                {
                    let total: Vec<f64> =
                        f.nodes_cpu_ms.iter().zip(&f.source_cpu_ms).map(|(a, b)| a + b).collect();
                    let busy: Vec<f64> = total.iter().zip(&f.ms).map(|(c, w)| c / w).collect();
                    step(&format!(
                        "{name}: CPU from the submit to the last arrival, median per block: {:.1} ms in the {} node \
                         processes + {:.1} ms in the bench's (the first node, the clients) = {:.1} ms; {:.2} cores busy; \
                         {:.0} minor page faults in the node processes",
                        median(&f.nodes_cpu_ms),
                        p.hops,
                        median(&f.source_cpu_ms),
                        median(&total),
                        median(&busy),
                        median(&f.nodes_minflt.iter().map(|n| *n as f64).collect::<Vec<_>>()),
                    ));
                }
                let floor: Vec<f64> = p
                    .in_mempool
                    .nodes_cpu_ms
                    .iter()
                    .zip(&p.in_mempool.source_cpu_ms)
                    .map(|(a, b)| (a + b) / cores as f64)
                    .collect();
                rows.push(Row::limit(
                    "info: 1000-tx block in every mempool, CPU of all nodes / cores, median",
                    median(&floor),
                    "ms",
                    &format!(
                        "what every process ran from the submit to the last arrival, over {cores} cores: \
                         the earliest the last node could have it here; p95 {:.1} ms",
                        p95(&floor)
                    ),
                ));
                let empty_p95 = p95(&p.empty.ms);
                rows.push(Row {
                    scenario: format!("empty block to all 10 nodes, p95 of {}", p.empty.ms.len()),
                    figure: empty_p95,
                    unit: "ms",
                    limit: Some((50.0, "bound".into())),
                    goal: Goal::AtMost,
                    note: format!(
                        "wired as a line of {} links (peer exchange adds more); median {:.1} ms; after {} uncounted empty blocks, \
                         the three kinds of block take turns",
                        p.hops,
                        median(&p.empty.ms),
                        p.warmup
                    ),
                });
                let import_ms = median(&p.in_mempool.import_ms);
                let full = Row {
                    scenario: format!("1000-tx block to all 10 nodes, p95 of {}", p.in_mempool.ms.len()),
                    figure: p95(&p.in_mempool.ms),
                    unit: "ms",
                    limit: Some((
                        (p.hops + 1) as f64 * import_ms,
                        format!("(hops+1) x import {import_ms:.1} ms"),
                    )),
                    goal: Goal::AtMost,
                    note: format!(
                        "its transfers were relayed to every mempool first; median {:.1} ms",
                        median(&p.in_mempool.ms)
                    ),
                };
                // Issue 17: a block of transfers every node holds moves at nearly the
                // speed of an empty one.
                let vs_empty =
                    full.against((3.0 * empty_p95, "3 x empty-block p95, same run".into()), Goal::AtMost);
                rows.extend([full, vs_empty]);
                rows.push(Row::limit(
                    &format!("info: 1000-tx block no node had seen, p95 of {}", p.unseen.ms.len()),
                    p95(&p.unseen.ms),
                    "ms",
                    &format!(
                        "transfers signed by the bench, in no mempool; median {:.1} ms; its import on the first node: median {:.1} ms",
                        median(&p.unseen.ms),
                        median(&p.unseen.import_ms)
                    ),
                ));
                // Bytes on the wire per relayed block (issue 17): the block-relay commands
                // of all 10 nodes, read before the block and once the wire was quiet after it.
                for (name, f, goal) in [
                    ("empty block", &p.empty, Goal::None),
                    ("1000-tx block in every mempool", &p.in_mempool, Goal::RatioAtMost(0.1)),
                    ("1000-tx block no node had seen", &p.unseen, Goal::None),
                ] {
                    let size = f.block_bytes.iter().map(|b| *b as f64).collect::<Vec<_>>();
                    let sent_max = f.sent_max.iter().map(|b| *b as f64).collect::<Vec<_>>();
                    let total = f.sent_total.max(1) as f64;
                    let commands: Vec<String> = f
                        .by_command
                        .iter()
                        .filter(|(_, b)| **b > 0)
                        .map(|(c, b)| format!("{c} {:.1}%", 100.0 * *b as f64 / total))
                        .collect();
                    rows.push(Row {
                        scenario: format!("wire: {name}, bytes sent per node"),
                        figure: median(&f.sent_per_node),
                        unit: "B",
                        limit: Some((median(&size), "the full block's encoded size".into())),
                        goal,
                        note: format!(
                            "median of {} blocks (max {}); the most one node sent: median {} B; by command: {}; \
                             received by all nodes {} B of {} B sent",
                            f.sent_per_node.len(),
                            report::num(f.sent_per_node.iter().copied().fold(f64::NAN, f64::max)),
                            report::num(median(&sent_max)),
                            commands.join(", "),
                            f.received_total,
                            f.sent_total
                        ),
                    });
                }
                if p.unsettled > 0 {
                    rows.push(Row::limit(
                        "info: byte counts taken before the wire was quiet",
                        p.unsettled as f64,
                        "times",
                        "the counters still moved 5 s after a block (or before it); counted anyway",
                    ));
                }
                rows.push(Row::limit(
                    &format!("info: 1000 transfers into all 10 mempools, median of {}", p.relay_ms.len()),
                    median(&p.relay_ms),
                    "ms",
                    &format!(
                        "submitted to the first node, relayed; p95 {:.0} ms; {} of {} rounds incomplete after 5 s",
                        p95(&p.relay_ms),
                        p.relay_incomplete,
                        p.relay_ms.len()
                    ),
                ));
                // The same relay as signature checks per second: every node verifies
                // every transfer, and all 10 share this machine's cores.
                let relay = Row::limit(
                    "info: relay, transfers admitted/s, all nodes",
                    10.0 * 1000.0 / (median(&p.relay_ms) / 1000.0),
                    "tx/s",
                    "10 nodes x 1000 transfers / the median time above",
                );
                let vs_k256 = relay.against(verify_limit.clone(), Goal::None);
                let vs_libsecp = relay.against(libsecp_limit.clone(), Goal::None);
                rows.extend([relay, vs_k256, vs_libsecp]);
            }
            Err(e) => rows.push(failed("propagation", "ms", &e)),
        }
    }

    if wants("connect") {
        let (warm, timed) = if q { (3, 10) } else { (5, 30) };
        step(&format!("connecting {timed} blocks of 1000 transfers already in the mempool (RocksDB)"));
        match connect::run(&work.path().join("connect"), warm, timed, 1000) {
            Ok(c) => rows.push(Row::limit(
                "connect: block of 1000 transfers in the mempool (median)",
                c.submit_ms,
                "ms",
                &format!(
                    "Node::submit_block, signatures cached, {} blocks; beside it: txids {:.3} ms, merkle root {:.3} ms, body encoding {:.3} ms",
                    c.blocks, c.txids_ms, c.merkle_ms, c.encode_ms
                ),
            )),
            Err(e) => rows.push(failed("connect", "ms", &e)),
        }
    }

    if let Some(transfers) = args.long {
        let cache = args.out.parent().map_or_else(|| PathBuf::from("."), |d| d.join("cache"));
        let y = long::Yardsticks {
            short_import: import_rate,
            short_sync: sync_rate,
            k256: verify_limit.clone(),
            libsecp: libsecp_limit.clone(),
        };
        match long::run(work.path(), &cache, transfers, &y) {
            Ok(r) => rows.extend(r),
            Err(e) => rows.push(failed("long run", "tx/s", &e)),
        }
    }

    // Both yardsticks again, now that every scenario has run: how far the host's speed
    // moved during the run, which the ratios above (all to the start's limits) cannot show.
    step("measuring the signature limits again");
    let (verify_end, _) = limits::verify_rate(&sample, chain_id, Duration::from_secs(2));
    let (libsecp_end, _) = limits::libsecp_verify_rate(&sample, Duration::from_secs(2));
    rows.push(Row::limit(
        "info: k256 verify, 1 thread, at the end of the run",
        verify_end,
        "sig/s",
        &format!(
            "{:.2} x the start's {} /s (every ratio above is to the start's)",
            verify_end / verify1,
            report::num(verify1)
        ),
    ));
    rows.push(Row::limit(
        "info: libsecp256k1 verify, 1 thread, at the end of the run",
        libsecp_end,
        "sig/s",
        &format!(
            "{:.2} x the start's {} /s; {:.2} x k256's at the end ({:.2} x at the start)",
            libsecp_end / libsecp1,
            report::num(libsecp1),
            libsecp_end / verify_end,
            libsecp1 / verify1
        ),
    ));

    report::print_table(&rows);
    let meta = serde_json::json!({
        "quick": q,
        "long": args.long,
        "cores": cores,
        "cpu": cpu_model(),
        "unix_time": std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs()),
        "args": std::env::args().skip(1).collect::<Vec<_>>(),
    });
    match report::write_json(&args.out, &rows, meta) {
        Ok(()) => println!("\nresults written to {}", args.out.display()),
        Err(e) => eprintln!("cannot write {}: {e}", args.out.display()),
    }
}

/// The same import (blocks of transfers to existing accounts picked at random) on a
/// state of 10,000 accounts and on one of 1,000,000: two runs of each, interleaved, and
/// the faster of each pair (signature checks are most of the time and the machine's
/// noise is in them; the state's cost is what the ratio is about).
fn accounts(
    work: &std::path::Path,
    blocks_n: usize,
) -> anyhow::Result<(inproc::ImportRun, inproc::ImportRun)> {
    let senders: Vec<_> = (0..200).map(|i| gen::key("acct", i)).collect();
    let mut cases = Vec::new();
    for population in [10_000usize, 1_000_000] {
        let genesis = gen::genesis(&format!("cairn-bench-acct-{population}"), &senders, population);
        let pick = move |n: usize| gen::account((splitmix(n as u64) % population as u64) as usize);
        let blocks = gen::transfer_blocks(&genesis, &senders, blocks_n, 2000, &pick);
        cases.push((population, genesis, blocks));
    }
    let mut best: Vec<Option<inproc::ImportRun>> = vec![None, None];
    for round in 0..2 {
        for (i, (population, genesis, blocks)) in cases.iter().enumerate() {
            let dir = work.join(format!("acct-{population}-{round}"));
            let run = inproc::import(&dir, genesis, blocks.clone())?;
            std::fs::remove_dir_all(&dir)?;
            if best[i].as_ref().is_none_or(|b| run.rate() > b.rate()) {
                best[i] = Some(run);
            }
        }
    }
    let big = best.pop().flatten().expect("two runs");
    let small = best.pop().flatten().expect("two runs");
    Ok((small, big))
}

/// The same import into a new chain without the address history index and with it,
/// `rounds` times each, interleaved; the faster run of each (the issue's budget: with
/// the index at most 10% slower).
fn address_index_cost(
    work: &std::path::Path,
    genesis: &cairn_core::genesis::Genesis,
    blocks: Vec<cairn_core::block::Block>,
    rounds: usize,
) -> anyhow::Result<(inproc::ImportRun, inproc::ImportRun)> {
    use cairn_node::chain::ChainOptions;
    let mut best: [Option<inproc::ImportRun>; 2] = [None, None];
    for round in 0..rounds {
        for (i, address_index) in [false, true].into_iter().enumerate() {
            let dir = work.join(format!("addrindex-{address_index}-{round}"));
            let run = inproc::import_with(
                &dir,
                genesis,
                blocks.clone(),
                ChainOptions { address_index, ..ChainOptions::default() },
            )?;
            std::fs::remove_dir_all(&dir)?;
            if best[i].as_ref().is_none_or(|b| run.rate() > b.rate()) {
                best[i] = Some(run);
            }
        }
    }
    let [off, on] = best;
    Ok((off.expect("at least one round"), on.expect("at least one round")))
}

/// A fixed pseudo-random permutation of u64 (SplitMix64's finaliser).
fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e3779b97f4a7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d049bb133111eb);
    z ^ (z >> 31)
}
