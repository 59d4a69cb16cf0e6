//! `cairn-node`: the command line (`cairn-node --help` lists it), startup, and shutdown.
//!
//! Startup order: the command line merged over the config file ([`config`]; a bad file
//! stops here with its file, line and key), logging, genesis, data dir, chain, mempool,
//! cookie, P2P, RPC (handed the P2P layer's [`p2p::Network`]), metrics (when on), miner.
//! The bound RPC and P2P addresses are printed on stdout as `RPC listening on
//! http://ADDR` and `P2P listening on ADDR`, and the metrics address as `metrics
//! listening on http://ADDR/metrics` (tests start nodes on port 0 and parse these
//! lines); logs go to stderr ([`LogArgs`]: escape codes only on a terminal, text or
//! JSON, each line naming its target). `cairn-node status` ([`status`]) asks a running
//! node over RPC.
//!
//! Shutdown: Ctrl-C (SIGINT) or SIGTERM stops, in order, the miner (its threads
//! joined), the RPC server, the metrics server, and P2P ([`p2p::P2p::shutdown`]: its
//! thread and tasks end, `peers.json` and `bans.json` are saved, the protocol's
//! reference to the node goes).
//! Then the node, the last owner of the chain, is dropped: the chain fsyncs its WAL and
//! RocksDB flushes its memtables and closes. A `--dev` temporary data dir is removed,
//! `shutdown complete` is logged last, and the process exits with status 0. A start that
//! fails after P2P runs (the RPC or metrics port taken) stops what already runs the
//! same way and closes the database, then exits with status 1 and the error.
//!
//! Fail-stop: a panic on any thread (a broken invariant, a poisoned lock, a write the
//! chain store refused: see [`cairn_node::failstop::fail_stop`]) is logged at error level
//! with its message and location, and the process exits at once with status
//! [`FAIL_STOP_EXIT`], without unwinding or running destructors, as if killed: the
//! store holds the last committed batch, which the next start resumes from.

use anyhow::{bail, Context};
use cairn_core::genesis::{dev_key_bytes, dev_keys, Genesis};
use cairn_core::transaction::address_of;
use cairn_core::Address;
use cairn_node::chain::{Chain, ChainOptions};
use cairn_node::mempool::{Mempool, MempoolConfig};
use cairn_node::node::{FaultInjection, Node};
use cairn_node::{miner, p2p, rpc};

mod config;
mod status;
use clap::{ArgMatches, Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};
use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(name = "cairn-node", version, about = "Cairn full node", args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Args, Debug)]
struct RunArgs {
    /// Read options from this TOML file (every long option is a key of the same name; the
    /// command line wins) [default: <data-dir>/cairn.toml when it exists].
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Print the effective configuration, and where each value came from, and exit.
    #[arg(long)]
    print_config: bool,
    /// Where the chain database, address book and RPC cookie live [default: ./cairn-data,
    /// or a temporary directory with --dev].
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// The chain's genesis file [default: ./genesis.json].
    #[arg(long, value_name = "FILE", conflicts_with = "dev")]
    genesis: Option<PathBuf>,
    /// P2P listen address.
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:7333")]
    listen: SocketAddr,
    /// JSON-RPC (HTTP and WebSocket) listen address.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:7332")]
    rpc_addr: SocketAddr,
    /// A peer to connect to (repeatable).
    #[arg(long = "peer", value_name = "ADDR")]
    peers: Vec<String>,
    /// Connect only to this peer (repeatable): no seeds, no dialling of addresses learned
    /// from peers (`--peer` ones are still dialled).
    #[arg(long = "connect", value_name = "ADDR")]
    connect: Vec<String>,
    /// Do not resolve the genesis file's seed names or dial the chain's fixed seed
    /// addresses (peers come from --peer, net_addPeer and peer exchange only).
    #[arg(long)]
    no_seeds: bool,
    /// The address peers should reach this node at (IP:PORT, repeatable), advertised
    /// instead of the one learned from what peers report [default: learned].
    #[arg(long = "external-addr", value_name = "ADDR")]
    external_addrs: Vec<SocketAddr>,
    /// Mine blocks.
    #[arg(long)]
    mine: bool,
    /// Address the coinbase pays [--dev: dev account 0].
    #[arg(long, value_name = "ADDR")]
    miner_address: Option<String>,
    /// Nonce search threads.
    #[arg(long, value_name = "N", default_value_t = 1)]
    miner_threads: usize,
    /// Most peers, inbound and outbound together (8 of them outbound, or half of a
    /// smaller cap; the rest inbound).
    #[arg(long, value_name = "N", default_value_t = 32)]
    max_peers: usize,
    /// Development chain: built-in dev genesis, ~1 s blocks, mining, funded dev accounts.
    #[arg(long)]
    dev: bool,
    /// With --dev: do not mine.
    #[arg(long, requires = "dev")]
    no_mine: bool,
    /// Cap on the summed size of pending transfers, in bytes; when full, a newcomer must
    /// pay a higher fee rate than the lowest pending one, which is evicted.
    #[arg(long, value_name = "BYTES", default_value_t = MempoolConfig::default().max_bytes)]
    mempool_max_bytes: usize,
    /// Serve Prometheus metrics at http://ADDR/metrics (docs/METRICS.md) [default: off;
    /// with --dev: 127.0.0.1:0, a free port, printed at start].
    #[arg(long, value_name = "ADDR")]
    metrics_addr: Option<SocketAddr>,
    #[command(flatten)]
    log: LogArgs,
    /// Seconds between two sync-progress lines in the log while the node catches up.
    #[arg(long, value_name = "SECONDS", default_value_t = 5.0, value_parser = parse_interval)]
    sync_progress_interval: f64,
    /// Do not keep the address history index (state_getHistory): deletes it if present;
    /// a later start without this flag builds it again from the stored blocks.
    #[arg(long)]
    no_address_index: bool,
}

fn parse_interval(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if (0.1..=86_400.0).contains(&v) => Ok(v),
        Ok(_) => Err("must be between 0.1 and 86400 seconds".into()),
        Err(e) => Err(e.to_string()),
    }
}

/// How the node logs: on stderr, one event per line, each naming its subsystem (the
/// tracing target, e.g. `cairn_node::p2p::protocol`).
#[derive(Args, Debug, Clone)]
struct LogArgs {
    /// Log line format: `text` (for people; coloured only when stderr is a terminal and
    /// NO_COLOR is unset) or `json` (one JSON object per line, for log collectors).
    #[arg(long, value_name = "FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// What to log: a level (error, warn, info, debug, trace) or filter directives such as
    /// `info,cairn_node::p2p=debug`. RUST_LOG, when set, wins.
    #[arg(long, value_name = "FILTER", default_value = "info", value_parser = parse_log_filter)]
    log_level: String,
}

impl Default for LogArgs {
    fn default() -> Self {
        LogArgs { log_format: LogFormat::Text, log_level: "info".into() }
    }
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum LogFormat {
    Text,
    Json,
}

/// A level, or `EnvFilter` directives. A bare word that is not a level (`loud`) would be
/// read as a target name enabling everything it logs: refused, as it is surely a typo.
fn parse_log_filter(s: &str) -> Result<String, String> {
    const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];
    if let Some(word) = s
        .split(',')
        .map(str::trim)
        .find(|d| !d.is_empty() && !d.contains('=') && !LEVELS.contains(&d.to_ascii_lowercase().as_str()))
    {
        return Err(format!(
            "`{word}` is not a level ({}) nor a `target=level` directive",
            LEVELS.join(", ")
        ));
    }
    tracing_subscriber::EnvFilter::builder()
        .parse(s)
        .map(|_| s.to_string())
        .map_err(|e| format!("not a log level or filter: {e}"))
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Replay the stored chain from genesis and verify state and indexes.
    CheckDb {
        #[arg(long, value_name = "DIR")]
        data_dir: PathBuf,
        #[arg(long, value_name = "FILE", conflicts_with = "dev")]
        genesis: Option<PathBuf>,
        #[arg(long)]
        dev: bool,
    },
    /// Ask a running node over JSON-RPC how it is doing: chain, height and best hash,
    /// sync progress, peers, mempool, hashrate, uptime and version.
    Status(status::StatusArgs),
}

fn load_genesis(dev: bool, file: Option<&Path>) -> anyhow::Result<Genesis> {
    if dev {
        return Ok(Genesis::dev());
    }
    let path = file.unwrap_or(Path::new("genesis.json"));
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read genesis file {}", path.display()))?;
    Genesis::from_json(&text).with_context(|| format!("genesis file {} is invalid", path.display()))
}

/// Logs to stderr as `log` says. RUST_LOG, when set and valid, wins over `--log-level`;
/// escape codes (colours) only when stderr is a terminal and NO_COLOR is unset, so a log
/// redirected to a file or read by journald is plain text.
fn init_tracing(log: &LogArgs) {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    let mut bad_env = None;
    let filter = match std::env::var("RUST_LOG") {
        Ok(env) if !env.trim().is_empty() => EnvFilter::builder().parse(&env).unwrap_or_else(|e| {
            bad_env = Some(format!("ignoring RUST_LOG={env:?}: {e}"));
            EnvFilter::new(&log.log_level)
        }),
        _ => EnvFilter::new(&log.log_level),
    };
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let builder =
        tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(true);
    match log.log_format {
        LogFormat::Text => builder.with_ansi(ansi).init(),
        LogFormat::Json => builder.json().with_ansi(false).init(),
    }
    if let Some(warning) = bad_env {
        tracing::warn!("{warning}");
    }
}

/// Exit status of a fail-stop: EX_SOFTWARE ("internal software error") of sysexits.h.
const FAIL_STOP_EXIT: i32 = 70;

/// Makes every panic stop the process (see the module docs). The hook runs on the
/// panicking thread before it unwinds, so the locks it holds are never released and no
/// other thread sees a poisoned lock or half-updated state.
fn install_fail_stop_hook() {
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<&str>()
            .copied()
            .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
            .unwrap_or("(a panic without a message)");
        let location = info.location().map_or_else(|| "an unknown location".to_string(), ToString::to_string);
        let thread = std::thread::current();
        let thread = thread.name().unwrap_or("unnamed");
        tracing::error!(
            thread,
            %location,
            "fail-stop: panicked: {message}; exiting with status {FAIL_STOP_EXIT}"
        );
        // The standard report too (with a backtrace under RUST_BACKTRACE=1).
        default_hook(info);
        use std::io::Write;
        let _ = std::io::stdout().flush();
        let _ = std::io::stderr().flush();
        // `_exit`, not `std::process::exit`: no atexit handlers or C++ static
        // destructors (RocksDB's) run while other threads still use them.
        #[allow(unsafe_code)]
        // SAFETY: `_exit` has no preconditions; it ends the process and never returns.
        unsafe {
            libc::_exit(FAIL_STOP_EXIT)
        }
    }));
}

/// The config file to read: `--config FILE`, or `<data-dir>/cairn.toml` when it exists
/// (the data dir given on the command line, or `./cairn-data` without --dev). The bool
/// says whether it was given explicitly.
fn config_file(matches: &ArgMatches) -> Option<(PathBuf, bool)> {
    if let Some(file) = matches.get_one::<PathBuf>("config") {
        return Some((file.clone(), true));
    }
    let dir = match matches.get_one::<PathBuf>("data_dir") {
        Some(dir) => dir.clone(),
        None if matches.get_flag("dev") => return None,
        None => PathBuf::from("cairn-data"),
    };
    let file = dir.join(DEFAULT_CONFIG_FILE);
    file.is_file().then_some((file, false))
}

/// The config file a data dir may hold.
const DEFAULT_CONFIG_FILE: &str = "cairn.toml";

/// The command line merged over the config file (see [`config`]).
fn load_config(
    cmd: &clap::Command,
    argv: &[OsString],
    matches: &ArgMatches,
) -> Result<config::Effective, Vec<config::ConfigError>> {
    let file = config_file(matches);
    let effective = config::merge(cmd, argv, matches, file.as_ref().map(|(f, _)| f.as_path()))?;
    if let Some((file, false)) = &file {
        // The data dir's own file cannot move the data dir: it was found there.
        let found_in = file.parent().unwrap_or(Path::new("."));
        let data_dir = effective.matches.get_one::<PathBuf>("data_dir");
        if effective.source("data_dir") == config::Source::File
            && data_dir.map(PathBuf::as_path) != Some(found_in)
        {
            return Err(vec![config::ConfigError {
                file: file.clone(),
                line: None,
                key: Some("data-dir".into()),
                message: format!(
                    "found in the data dir {}, it cannot name another one (choose the data dir with --data-dir or --config)",
                    found_in.display()
                ),
            }]);
        }
    }
    Ok(effective)
}

fn main() -> ExitCode {
    rpc::mark_started();
    let argv: Vec<OsString> = std::env::args_os().collect();
    let cmd = Cli::command();
    let matches = cmd.clone().get_matches_from(&argv);
    let effective = if matches.subcommand().is_some() {
        None
    } else {
        match load_config(&cmd, &argv, &matches) {
            Ok(effective) => Some(effective),
            Err(errors) => {
                for e in errors {
                    eprintln!("error: {e}");
                }
                return ExitCode::FAILURE;
            }
        }
    };
    let cli = Cli::from_arg_matches(effective.as_ref().map_or(&matches, |e| &e.matches))
        .unwrap_or_else(|e| e.exit());
    if let Some(effective) = effective.as_ref().filter(|_| cli.run.print_config) {
        print!("{}", effective.render(&cmd));
        return ExitCode::SUCCESS;
    }
    init_tracing(&match &cli.command {
        None => cli.run.log.clone(),
        Some(_) => LogArgs::default(),
    });
    install_fail_stop_hook();
    let result = match cli.command {
        Some(Command::CheckDb { data_dir, genesis, dev }) => check_db(&data_dir, genesis.as_deref(), dev),
        Some(Command::Status(args)) => status::run(&args),
        None => run(cli.run),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn check_db(data_dir: &Path, genesis: Option<&Path>, dev: bool) -> anyhow::Result<()> {
    let genesis = load_genesis(dev, genesis)?;
    if !data_dir.exists() {
        bail!("data dir {} does not exist", data_dir.display());
    }
    let report = cairn_node::chain::check_db(data_dir, &genesis)?;
    println!("{report}");
    if !report.is_consistent() {
        bail!("check-db found the stored chain inconsistent");
    }
    Ok(())
}

fn run(args: RunArgs) -> anyhow::Result<()> {
    let genesis = load_genesis(args.dev, args.genesis.as_deref())?;
    let mine = if args.dev { !args.no_mine || args.mine } else { args.mine };
    let miner_address: Option<Address> = match (&args.miner_address, args.dev) {
        (Some(text), _) => Some(text.parse().map_err(|e| anyhow::anyhow!("bad --miner-address: {e}"))?),
        (None, true) => Some(address_of(&dev_keys()[0])),
        (None, false) if mine => bail!("--mine needs --miner-address (or use --dev)"),
        (None, false) => None,
    };
    if args.miner_threads == 0 || args.miner_threads > 1024 {
        bail!("--miner-threads must be between 1 and 1024");
    }

    // The temporary dir lives until the end of this function, and is removed then.
    let mut _temp_dir = None;
    let data_dir = match (&args.data_dir, args.dev) {
        (Some(d), _) => d.clone(),
        (None, true) => {
            let t = tempfile::Builder::new()
                .prefix("cairn-dev-")
                .tempdir()
                .context("cannot create a temporary data dir")?;
            let p = t.path().to_path_buf();
            _temp_dir = Some(t);
            p
        }
        (None, false) => PathBuf::from("cairn-data"),
    };
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("cannot create data dir {}", data_dir.display()))?;

    let chain_options = ChainOptions { address_index: !args.no_address_index, ..ChainOptions::default() };
    let chain = Chain::open_with_options(&data_dir, &genesis, chain_options)
        .with_context(|| format!("cannot open the chain in {}", data_dir.display()))?;
    let tip = chain.tip();
    tracing::info!(height = tip.height, hash = %tip.hash, data_dir = %data_dir.display(), "chain opened");
    let mempool =
        Mempool::with_config(MempoolConfig { max_bytes: args.mempool_max_bytes, ..MempoolConfig::default() });
    let node = Node::new(chain, mempool, genesis.clone());
    if let Some(fault) = FaultInjection::from_env().map_err(anyhow::Error::msg)? {
        tracing::warn!(?fault, "fault injection armed ({}): for tests only", FaultInjection::ENV);
        node.inject_fault(fault);
    }

    let runtime =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start tokio")?;
    let result = runtime.block_on(serve(node.clone(), &args, &data_dir, mine, miner_address));
    // Let in-flight blocking tasks finish, and drop the rest (RPC subscriptions), before
    // the database closes with `node`.
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    close_node(node);
    drop(_temp_dir);
    if result.is_ok() {
        tracing::info!("shutdown complete");
    }
    result
}

/// Drops the last reference to the node: the chain's final WAL fsync and RocksDB's
/// flush and close run here, before the process exits.
fn close_node(node: std::sync::Arc<Node>) {
    match std::sync::Arc::try_unwrap(node) {
        Ok(node) => {
            drop(node);
            tracing::info!("database closed");
        }
        Err(node) => {
            // A bug: something still holds the node. The store holds every committed
            // batch either way (the next start replays the WAL).
            tracing::warn!(
                references = std::sync::Arc::strong_count(&node),
                "the node is still referenced at exit"
            );
        }
    }
}

/// What [`serve`] started, stopped in the reverse order: at the shutdown signal, and
/// also when a later start fails (a port taken), so that P2P lets go of the node and the
/// database still closes cleanly.
struct Services {
    p2p: p2p::P2p,
    rpc: Option<rpc::RpcServer>,
    metrics: Option<cairn_node::metrics_server::MetricsServer>,
    miner: Option<miner::MinerHandle>,
}

impl Services {
    async fn stop(self) {
        if let Some(m) = self.miner {
            m.stop();
        }
        if let Some(server) = self.rpc {
            let _ = server.handle.stop();
            server.handle.stopped().await;
        }
        if let Some(m) = self.metrics {
            m.stop().await;
        }
        self.p2p.shutdown().await;
    }
}

async fn serve(
    node: std::sync::Arc<Node>,
    args: &RunArgs,
    data_dir: &Path,
    mine: bool,
    miner_address: Option<Address>,
) -> anyhow::Result<()> {
    let cookie = rpc::Cookie::create(data_dir)
        .with_context(|| format!("cannot write the RPC cookie in {}", data_dir.display()))?;
    let p2p = p2p::start(
        node.clone(),
        p2p::P2pConfig {
            listen: args.listen,
            seeds: args.peers.iter().chain(&args.connect).cloned().collect(),
            max_peers: args.max_peers,
            data_dir: data_dir.to_path_buf(),
            progress_interval_ms: (args.sync_progress_interval * 1000.0) as u64,
            external_addrs: args.external_addrs.clone(),
            dns_seeds: node.genesis().seeds.clone(),
            no_seeds: args.no_seeds,
            connect_only: !args.connect.is_empty(),
        },
    )
    .await
    .with_context(|| format!("cannot start P2P on {}", args.listen))?;
    let mut services = Services { p2p, rpc: None, metrics: None, miner: None };
    let started = start_services(&mut services, &node, args, &cookie, mine, miner_address).await;
    if started.is_ok() {
        shutdown_signal().await;
        tracing::info!("shutting down");
    }
    services.stop().await;
    drop(cookie);
    started
}

/// RPC, metrics and the miner, each kept in `services` as soon as it runs.
async fn start_services(
    services: &mut Services,
    node: &std::sync::Arc<Node>,
    args: &RunArgs,
    cookie: &rpc::Cookie,
    mine: bool,
    miner_address: Option<Address>,
) -> anyhow::Result<()> {
    let p2p_addr = services.p2p.local_addr();
    let network = services.p2p.network();
    let server =
        services.rpc.insert(rpc::start(node.clone(), Some(network.clone()), args.rpc_addr, cookie).await?);
    let rpc_addr = server.local_addr;

    if args.dev {
        print_dev_banner(node.genesis());
    }
    println!("RPC listening on http://{rpc_addr}");
    println!("P2P listening on {p2p_addr}");
    println!("RPC cookie: {}", cookie.path().display());
    let metrics_addr = args.metrics_addr.or(args.dev.then_some(SocketAddr::from(([127, 0, 0, 1], 0))));
    if let Some(addr) = metrics_addr {
        let m = services.metrics.insert(cairn_node::metrics_server::start(addr, node, Some(network)).await?);
        println!("metrics listening on http://{}/metrics", m.local_addr);
    }
    tracing::info!(rpc = %rpc_addr, p2p = %p2p_addr, "node started");

    if let (true, Some(address)) = (mine, miner_address) {
        services.miner = Some(
            miner::start(node.clone(), miner::MinerConfig { address, threads: args.miner_threads })
                .context("cannot start the miner")?,
        );
    }
    Ok(())
}

fn print_dev_banner(genesis: &Genesis) {
    let mut out = String::new();
    out.push_str("\ncairn-node --dev: development chain\n");
    out.push_str(&format!("chain id {}, genesis {}\n\n", genesis.params.chain_id, genesis.hash()));
    out.push_str("Dev accounts (each funded in the dev genesis):\n");
    for (i, k) in dev_keys().iter().enumerate() {
        let balance =
            genesis.allocations.iter().find(|a| a.address == address_of(k)).map_or(0, |a| a.balance.0);
        out.push_str(&format!("({i}) {} ({balance})\n", address_of(k)));
    }
    out.push_str("\nPrivate keys:\n");
    for i in 0..dev_keys().len() {
        out.push_str(&format!("({i}) {}\n", hex::encode(dev_key_bytes(i))));
    }
    out.push_str("\nThese keys are public: never use them on a real chain.\n");
    println!("{out}");
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
