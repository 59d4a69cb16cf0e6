//! [`NodeProcess`]: one running `cairn-node`, the process harness of both test suites
//! (tests/ and node's integration tests) and of the benchmark.

use crate::{bin, http_post, raw_post, rpc, wait_until};
use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How long [`NodeProcess::start`] waits for a node's RPC to answer.
const READY_TIMEOUT: Duration = Duration::from_secs(90);

/// Options for [`NodeProcess::start`].
#[derive(Clone, Debug, Default)]
pub struct NodeOptions {
    /// The `cairn-node` binary (default: [`bin`]`("cairn-node")`). Node's own integration
    /// tests pass `env!("CARGO_BIN_EXE_cairn-node")`.
    pub bin: Option<PathBuf>,
    pub dev: bool,
    pub mine: bool,
    pub peers: Vec<SocketAddr>,
    pub genesis: Option<PathBuf>,
    pub miner_address: Option<String>,
    pub extra: Vec<String>,
    /// Fixed P2P listen address (default: 127.0.0.1:0).
    pub listen: Option<SocketAddr>,
    /// RPC address (default: 127.0.0.1:0).
    pub rpc_addr: Option<SocketAddr>,
    /// Network namespace to run the node in (`ip netns exec NAME`); its RPC address must
    /// then be one the test can reach.
    pub netns: Option<String>,
    /// Environment variables for the node (besides `RUST_LOG`, which is `$CAIRN_TEST_LOG`
    /// or `info`).
    pub env: Vec<(String, String)>,
}

impl NodeOptions {
    /// `cairn-node --dev` run from `bin` with `extra` flags: it mines unless `extra` says
    /// `--no-mine`.
    pub fn dev(bin: impl Into<PathBuf>, extra: &[&str]) -> NodeOptions {
        NodeOptions {
            bin: Some(bin.into()),
            dev: true,
            mine: true,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            ..NodeOptions::default()
        }
    }

    fn args(&self, data_dir: &Path) -> Vec<String> {
        let mut args: Vec<String> = vec!["--data-dir".into(), data_dir.display().to_string()];
        let rpc_addr = self.rpc_addr.map(|a| a.to_string()).unwrap_or_else(|| "127.0.0.1:0".into());
        args.extend(["--rpc-addr".into(), rpc_addr]);
        let listen = self.listen.map(|a| a.to_string()).unwrap_or_else(|| "127.0.0.1:0".into());
        args.extend(["--listen".into(), listen]);
        if self.dev {
            args.push("--dev".into());
            if !self.mine {
                args.push("--no-mine".into());
            }
        } else if self.mine {
            args.push("--mine".into());
        }
        if let Some(g) = &self.genesis {
            args.extend(["--genesis".into(), g.display().to_string()]);
        }
        if let Some(a) = &self.miner_address {
            args.extend(["--miner-address".into(), a.clone()]);
        }
        for p in &self.peers {
            args.extend(["--peer".into(), p.to_string()]);
        }
        args.extend(self.extra.iter().cloned());
        args
    }
}

/// A running `cairn-node` on loopback with OS-chosen ports (unless fixed), its stdout and
/// log (stderr) captured to files in its data dir. Dropping it kills the process
/// (SIGKILL) and reaps it, prints the log's tail if the test is panicking, and removes
/// the data dir if [`NodeProcess::start_temp`] made it.
pub struct NodeProcess {
    child: Option<Child>,
    /// `http://IP:PORT`, known once the node is ready.
    pub rpc_url: String,
    pub rpc_addr: SocketAddr,
    pub p2p_addr: SocketAddr,
    pub data_dir: PathBuf,
    /// The current run's log (the node's stderr).
    pub log: PathBuf,
    /// The current run's stdout (the dev-mode banner and the listening addresses).
    pub stdout: PathBuf,
    bin: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    netns: Option<String>,
    /// Holds the data dir of [`NodeProcess::start_temp`]; removed after the kill on drop.
    temp: Option<tempfile::TempDir>,
}

impl NodeProcess {
    /// Starts a node on `data_dir` and waits until its RPC answers.
    pub fn start(data_dir: &Path, opts: &NodeOptions) -> Result<NodeProcess> {
        let mut node = Self::launch(data_dir, opts)?;
        node.wait_ready(READY_TIMEOUT)?;
        Ok(node)
    }

    /// [`NodeProcess::start`] on a fresh temporary data dir, removed when the node is
    /// dropped.
    pub fn start_temp(opts: &NodeOptions) -> Result<NodeProcess> {
        let temp = tempfile::tempdir().context("temp dir")?;
        let mut node = Self::launch(&temp.path().join("data"), opts)?;
        node.temp = Some(temp);
        node.wait_ready(READY_TIMEOUT)?;
        Ok(node)
    }

    /// `cairn-node --dev` from `bin` with `extra` flags on a temporary data dir (see
    /// [`NodeOptions::dev`]); panics if it does not come up.
    pub fn start_dev(bin: impl Into<PathBuf>, extra: &[&str]) -> NodeProcess {
        Self::start_dev_env(bin, extra, &[])
    }

    /// [`NodeProcess::start_dev`] with the environment variables `env` set for the node.
    pub fn start_dev_env(bin: impl Into<PathBuf>, extra: &[&str], env: &[(&str, &str)]) -> NodeProcess {
        let mut opts = NodeOptions::dev(bin, extra);
        opts.env = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Self::start_temp(&opts).unwrap_or_else(|e| panic!("cairn-node --dev {extra:?}: {e:#}"))
    }

    /// Starts a node on `data_dir` and returns at once, without waiting for it: see
    /// [`NodeProcess::wait_ready`]. Its addresses are unknown until then.
    pub fn launch(data_dir: &Path, opts: &NodeOptions) -> Result<NodeProcess> {
        let unknown: SocketAddr = "0.0.0.0:0".parse()?;
        let mut node = NodeProcess {
            child: None,
            rpc_url: String::new(),
            rpc_addr: unknown,
            p2p_addr: unknown,
            data_dir: data_dir.to_path_buf(),
            log: PathBuf::new(),
            stdout: PathBuf::new(),
            bin: opts.bin.clone().unwrap_or_else(|| bin("cairn-node")),
            args: opts.args(data_dir),
            env: opts.env.clone(),
            netns: opts.netns.clone(),
            temp: None,
        };
        node.spawn()?;
        Ok(node)
    }

    /// Runs the binary with the node's arguments, its output going to new files.
    fn spawn(&mut self) -> Result<()> {
        std::fs::create_dir_all(&self.data_dir)?;
        let run = unique();
        self.log = self.data_dir.join(format!("node-{run}.log"));
        self.stdout = self.data_dir.join(format!("node-{run}.stdout"));
        let mut cmd = match &self.netns {
            // `ip netns exec` execs the node, so the child's pid is the node's.
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(&self.bin);
                c
            }
            None => Command::new(&self.bin),
        };
        let child = cmd
            .args(&self.args)
            .env("RUST_LOG", std::env::var("CAIRN_TEST_LOG").unwrap_or_else(|_| "info".into()))
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&self.stdout)?)
            .stderr(std::fs::File::create(&self.log)?)
            .spawn()
            .with_context(|| format!("spawn {}", self.bin.display()))?;
        self.child = Some(child);
        self.rpc_url.clear();
        Ok(())
    }

    /// Waits until the node has printed its addresses and its RPC answers, or fails after
    /// `timeout` or if the node exits first.
    pub fn wait_ready(&mut self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.exited() {
                bail!("node exited early with {status}: {}", tail(&self.log_text(), 4000));
            }
            let text = self.stdout_text();
            if let Some((url, p2p)) =
                find_after(&text, "RPC listening on ").zip(find_after(&text, "P2P listening on "))
            {
                let rpc_addr = url.trim_start_matches("http://");
                self.rpc_addr = rpc_addr.parse().with_context(|| format!("bad RPC address {rpc_addr}"))?;
                self.p2p_addr = p2p.parse().with_context(|| format!("bad P2P address {p2p}"))?;
                if rpc(&url, "chain_getInfo", json!([])).is_ok() {
                    self.rpc_url = url;
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                bail!("node not ready after {timeout:?}: {}", tail(&self.log_text(), 4000));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills the process with SIGKILL and waits for it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sends `signal` (e.g. `libc::SIGTERM`) to the process if it still runs.
    pub fn signal(&mut self, signal: i32) {
        if self.exited().is_none() {
            if let Some(c) = &self.child {
                #[allow(unsafe_code)] // plain kill(2) on our own, not yet reaped child's pid
                unsafe {
                    libc::kill(c.id() as i32, signal);
                }
            }
        }
    }

    /// Polls for the process's exit until `timeout`; `None` if it still runs (or was
    /// killed with [`NodeProcess::kill`]).
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.exited() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The exit status if the process has exited, without waiting.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.as_mut().and_then(|c| c.try_wait().ok().flatten())
    }

    /// Stops with SIGTERM (graceful), falling back to SIGKILL after 10 s.
    pub fn stop(&mut self) {
        self.signal(libc::SIGTERM);
        self.wait_exit(Duration::from_secs(10));
        self.kill();
    }

    /// Starts the same node again (same data dir, arguments and environment; new ports
    /// unless fixed) and waits until it is ready.
    pub fn restart(&mut self) -> Result<()> {
        self.kill();
        self.spawn()?;
        self.wait_ready(READY_TIMEOUT)
    }

    /// What the current run printed on stdout.
    pub fn stdout_text(&self) -> String {
        std::fs::read_to_string(&self.stdout).unwrap_or_default()
    }

    /// Everything the current run printed: its stdout, then its log (stderr).
    pub fn log_text(&self) -> String {
        self.stdout_text() + &std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The RPC URL for a JSON-RPC client (`http://IP:PORT`).
    pub fn url(&self) -> String {
        self.rpc_url.clone()
    }

    /// The WebSocket URL of the same RPC server (`ws://IP:PORT`).
    pub fn ws_url(&self) -> String {
        format!("ws://{}", self.rpc_addr)
    }

    pub fn rpc(&self, method: &str, params: Value) -> Result<Value> {
        rpc(&self.rpc_url, method, params)
    }

    /// A raw HTTP/1.1 POST (for what a JSON-RPC client would never send).
    pub fn raw_post(&self, body: &[u8]) -> (u16, String) {
        raw_post(self.rpc_addr, body, None)
    }

    pub fn info(&self) -> Result<Value> {
        self.rpc("chain_getInfo", json!([]))
    }

    pub fn height(&self) -> Result<u64> {
        self.info()?["height"].as_u64().ok_or_else(|| anyhow!("no height"))
    }

    pub fn best_hash(&self) -> Result<String> {
        Ok(self.info()?["best_hash"].as_str().unwrap_or_default().to_string())
    }

    pub fn balance(&self, address: &str) -> Result<u64> {
        self.rpc("state_getAccount", json!([address]))?["balance"]
            .as_u64()
            .ok_or_else(|| anyhow!("no balance"))
    }

    /// The admin cookie as the node wrote it: `__cookie__:<secret>`, for HTTP basic auth.
    pub fn cookie(&self) -> Result<String> {
        let path = self.data_dir.join(".cookie");
        std::fs::read_to_string(&path).with_context(|| format!("read {}", path.display()))
    }

    /// Calls an admin method with the cookie.
    pub fn admin_rpc(&self, method: &str, params: Value) -> Result<Value> {
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).to_string();
        let resp = http_post(&self.rpc_url, &body, Some(self.cookie()?.trim()))?;
        let v: Value = serde_json::from_str(&resp.body)
            .with_context(|| format!("HTTP {}: {}", resp.status, resp.body))?;
        if let Some(err) = v.get("error") {
            bail!("rpc error {}: {}", err["code"], err["message"].as_str().unwrap_or_default());
        }
        Ok(v["result"].clone())
    }

    /// The process id while the process has not been killed.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Listen addresses of the peers this node has finished a handshake with.
    pub fn peer_addrs(&self) -> Result<Vec<SocketAddr>> {
        let peers = self.rpc("net_peers", json!([]))?;
        let peers = peers.as_array().ok_or_else(|| anyhow!("net_peers: not a list"))?;
        peers
            .iter()
            .map(|p| {
                let a = p["addr"].as_str().unwrap_or_default();
                a.parse().with_context(|| format!("bad peer address {a:?}"))
            })
            .collect()
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!(
                "--- log of node {} ({}) ---\n{}",
                self.rpc_url,
                self.log.display(),
                tail(&self.log_text(), 4000)
            );
        }
        // `temp`, if any, is dropped (removed) after this, with the process gone.
    }
}

/// Starts `n` nodes of the chain in `genesis` under `root/node<i>`: node 0 first, every
/// other node given only node 0 as its seed (peer exchange does the rest). Node `i`
/// mines when it is in `miners`, paying dev account `9 - i`.
pub fn start_seeded_network(
    root: &Path,
    genesis: &Path,
    n: usize,
    miners: &[usize],
) -> Result<Vec<NodeProcess>> {
    let mut nodes: Vec<NodeProcess> = Vec::new();
    for i in 0..n {
        let mine = miners.contains(&i);
        let opts = NodeOptions {
            mine,
            miner_address: mine.then(|| crate::dev_address(9 - i)),
            genesis: Some(genesis.to_path_buf()),
            peers: nodes.first().map(|seed| vec![seed.p2p_addr]).unwrap_or_default(),
            ..NodeOptions::default()
        };
        nodes.push(NodeProcess::start(&root.join(format!("node{i}")), &opts)?);
    }
    Ok(nodes)
}

/// Waits until every node in `nodes` reports the same best hash at height >= `min_height`
/// and returns that hash.
pub fn wait_same_tip(nodes: &[&NodeProcess], min_height: u64, timeout: Duration) -> String {
    wait_until(timeout, "nodes on one tip", || {
        let mut tips = Vec::new();
        for n in nodes {
            let info = n.info()?;
            if info["height"].as_u64().unwrap_or(0) < min_height {
                return Ok(None);
            }
            tips.push(info["best_hash"].as_str().unwrap_or_default().to_string());
        }
        Ok(tips.windows(2).all(|w| w[0] == w[1]).then(|| tips[0].clone()))
    })
}

fn tail(s: &str, n: usize) -> &str {
    let start = s.len().saturating_sub(n);
    let start = (start..s.len()).find(|i| s.is_char_boundary(*i)).unwrap_or(s.len());
    &s[start..]
}

fn find_after(text: &str, marker: &str) -> Option<String> {
    let i = text.find(marker)?;
    let rest = &text[i + marker.len()..];
    // Only a whole word: the line may still be being written.
    let end = rest.find(char::is_whitespace)?;
    (end > 0).then(|| rest[..end].to_string())
}

fn unique() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!("{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}
