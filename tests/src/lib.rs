//! A harness for end-to-end tests with real `cairn-node` and `cairn-wallet` processes.
//!
//! - [`NodeProcess`] starts a node on loopback with OS-chosen ports (`127.0.0.1:0`),
//!   learns its RPC and P2P addresses from its output, and kills it when dropped, so a
//!   failing test leaves no process behind.
//! - [`rpc`] is a tiny blocking JSON-RPC over HTTP client (std only).
//! - [`wait_until`] polls a condition until a deadline: tests never sleep to synchronise.
//! - [`wallet`] runs the wallet binary.
//! - [`adversary`] is a misbehaving peer that speaks the wire protocol on its own.
//!
//! Binaries are found next to the test executable (`target/<profile>/`), or in
//! `$CAIRN_BIN_DIR`. `scripts/test.sh` builds them before running the tests.

pub mod adversary;

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Directory holding the built binaries.
pub fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CAIRN_BIN_DIR") {
        return PathBuf::from(dir);
    }
    // target/<profile>/deps/<test-binary> -> target/<profile>
    let exe = std::env::current_exe().expect("test executable path");
    let deps = exe.parent().expect("deps dir");
    deps.parent().expect("profile dir").to_path_buf()
}

pub fn bin(name: &str) -> PathBuf {
    let path = bin_dir().join(name);
    assert!(path.exists(), "{} not built: run `cargo build --workspace --bins` first", path.display());
    path
}

/// Polls `check` every 50 ms until it returns `Some`, or panics after `timeout` with
/// `what` and the last error seen.
pub fn wait_until<T>(timeout: Duration, what: &str, mut check: impl FnMut() -> Result<Option<T>>) -> T {
    let deadline = Instant::now() + timeout;
    let mut last_err = String::new();
    loop {
        match check() {
            Ok(Some(v)) => return v,
            Ok(None) => {}
            Err(e) => last_err = format!("{e:#}"),
        }
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what} (last error: {last_err})");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One JSON-RPC call over HTTP. Returns `result`, or an error carrying the JSON-RPC
/// error object's message.
pub fn rpc(url: &str, method: &str, params: Value) -> Result<Value> {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).to_string();
    let resp = http_post(url, &body, None)?;
    let v: Value =
        serde_json::from_str(&resp.body).with_context(|| format!("bad JSON from {method}: {}", resp.body))?;
    if let Some(err) = v.get("error") {
        bail!("rpc error {}: {}", err["code"], err["message"].as_str().unwrap_or_default());
    }
    Ok(v["result"].clone())
}

pub struct HttpResponse {
    pub status: u16,
    pub body: String,
}

/// POSTs `body` to `url` (http://host:port/), with optional basic auth `user:password`.
pub fn http_post(url: &str, body: &str, basic_auth: Option<&str>) -> Result<HttpResponse> {
    let addr = url.trim_start_matches("http://").trim_end_matches('/');
    let mut s = TcpStream::connect(addr).with_context(|| format!("connect {addr}"))?;
    s.set_read_timeout(Some(Duration::from_secs(20)))?;
    let auth =
        basic_auth.map(|a| format!("Authorization: Basic {}\r\n", base64(a.as_bytes()))).unwrap_or_default();
    let req = format!(
        "POST / HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n{auth}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes())?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, rest) =
        text.split_once("\r\n\r\n").ok_or_else(|| anyhow!("no HTTP header end in {text:?}"))?;
    let status: u16 = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        dechunk(rest)
    } else {
        rest.to_string()
    };
    Ok(HttpResponse { status, body })
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((len, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(len.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

fn base64(input: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in input.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A running `cairn-node`, killed (SIGKILL) and reaped on drop.
pub struct NodeProcess {
    child: Option<Child>,
    pub rpc_url: String,
    pub p2p_addr: SocketAddr,
    pub data_dir: PathBuf,
    pub log: PathBuf,
    args: Vec<String>,
    netns: Option<String>,
}

/// Options for [`NodeProcess::start`].
#[derive(Clone, Debug, Default)]
pub struct NodeOptions {
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
}

impl NodeProcess {
    /// Starts a node on `data_dir` and waits until its RPC answers.
    pub fn start(data_dir: &Path, opts: &NodeOptions) -> Result<NodeProcess> {
        let mut args: Vec<String> = vec!["--data-dir".into(), data_dir.display().to_string()];
        let rpc_addr = opts.rpc_addr.map(|a| a.to_string()).unwrap_or_else(|| "127.0.0.1:0".into());
        args.extend(["--rpc-addr".into(), rpc_addr]);
        let listen = opts.listen.map(|a| a.to_string()).unwrap_or_else(|| "127.0.0.1:0".into());
        args.extend(["--listen".into(), listen]);
        if opts.dev {
            args.push("--dev".into());
            if !opts.mine {
                args.push("--no-mine".into());
            }
        } else if opts.mine {
            args.push("--mine".into());
        }
        if let Some(g) = &opts.genesis {
            args.extend(["--genesis".into(), g.display().to_string()]);
        }
        if let Some(a) = &opts.miner_address {
            args.extend(["--miner-address".into(), a.clone()]);
        }
        for p in &opts.peers {
            args.extend(["--peer".into(), p.to_string()]);
        }
        args.extend(opts.extra.iter().cloned());
        Self::spawn(data_dir, args, opts.netns.clone())
    }

    fn spawn(data_dir: &Path, args: Vec<String>, netns: Option<String>) -> Result<NodeProcess> {
        std::fs::create_dir_all(data_dir)?;
        let log = data_dir.join(format!("node-{}.log", unique()));
        let out = std::fs::File::create(&log)?;
        let err = out.try_clone()?;
        let mut cmd = match &netns {
            // `ip netns exec` execs the node, so the child's pid is the node's.
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(bin("cairn-node"));
                c
            }
            None => Command::new(bin("cairn-node")),
        };
        let child = cmd
            .args(&args)
            .env("RUST_LOG", std::env::var("CAIRN_TEST_LOG").unwrap_or_else(|_| "info".into()))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .context("spawn cairn-node")?;
        let mut node = NodeProcess {
            child: Some(child),
            rpc_url: String::new(),
            p2p_addr: "0.0.0.0:0".parse()?,
            data_dir: data_dir.to_path_buf(),
            log,
            args,
            netns,
        };
        let (rpc_url, p2p) = wait_until(Duration::from_secs(60), "node to print its addresses", || {
            if let Some(status) = node.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                bail!("node exited early with {status}: {}", node.log_text());
            }
            let text = node.log_text();
            Ok(find_after(&text, "RPC listening on ").zip(find_after(&text, "P2P listening on ")))
        });
        node.rpc_url = rpc_url;
        node.p2p_addr = p2p.parse().with_context(|| format!("bad P2P address {p2p}"))?;
        let url = node.rpc_url.clone();
        wait_until(Duration::from_secs(30), "RPC to answer", || {
            Ok(rpc(&url, "chain_getInfo", json!([])).ok())
        });
        Ok(node)
    }

    /// Kills the process with SIGKILL and waits for it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Stops with SIGTERM (graceful), falling back to SIGKILL after 10 s.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            #[allow(unsafe_code)] // plain kill(2) on our own child's pid
            unsafe {
                libc::kill(c.id() as i32, libc::SIGTERM);
            }
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the same node again (same data dir and arguments, new ports unless fixed).
    pub fn restart(&mut self) -> Result<()> {
        self.kill();
        let again = Self::spawn(&self.data_dir.clone(), self.args.clone(), self.netns.clone())?;
        *self = again;
        Ok(())
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn rpc(&self, method: &str, params: Value) -> Result<Value> {
        rpc(&self.rpc_url, method, params)
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

    /// The admin cookie, `__cookie__:<secret>`, for HTTP basic auth.
    pub fn cookie(&self) -> Result<String> {
        let c = std::fs::read_to_string(self.data_dir.join(".cookie"))?;
        Ok(if c.contains(':') { c.trim().to_string() } else { format!("__cookie__:{}", c.trim()) })
    }

    /// Calls an admin method with the cookie.
    pub fn admin_rpc(&self, method: &str, params: Value) -> Result<Value> {
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).to_string();
        let resp = http_post(&self.rpc_url, &body, Some(&self.cookie()?))?;
        let v: Value = serde_json::from_str(&resp.body)
            .with_context(|| format!("HTTP {}: {}", resp.status, resp.body))?;
        if let Some(err) = v.get("error") {
            bail!("rpc error {}: {}", err["code"], err["message"].as_str().unwrap_or_default());
        }
        Ok(v["result"].clone())
    }

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
            miner_address: mine.then(|| dev_address(9 - i)),
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
    }
}

fn tail(s: &str, n: usize) -> &str {
    let start = s.len().saturating_sub(n);
    let start = (start..s.len()).find(|i| s.is_char_boundary(*i)).unwrap_or(s.len());
    &s[start..]
}

fn find_after(text: &str, marker: &str) -> Option<String> {
    let i = text.find(marker)?;
    let rest = &text[i + marker.len()..];
    let word: String = rest.chars().take_while(|c| !c.is_whitespace()).collect();
    (!word.is_empty()).then_some(word)
}

fn unique() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!("{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

/// Runs `cairn-wallet` with `args` against `rpc_url` and the given wallet dir, with the
/// password in the environment, and returns its output.
pub fn wallet(
    rpc_url: &str,
    wallet_dir: &Path,
    password: &str,
    args: &[&str],
    stdin: Option<&str>,
) -> Result<Output> {
    let mut cmd = Command::new(bin("cairn-wallet"));
    cmd.arg("--rpc")
        .arg(rpc_url)
        .arg("--wallet-dir")
        .arg(wallet_dir)
        .args(args)
        .env("CAIRN_WALLET_PASSWORD", password)
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().context("spawn cairn-wallet")?;
    if let Some(input) = stdin {
        child.stdin.take().context("stdin")?.write_all(input.as_bytes())?;
    }
    Ok(child.wait_with_output()?)
}

/// Runs the wallet with `--json` and parses its one JSON object; errors carry stderr.
pub fn wallet_json(
    rpc_url: &str,
    wallet_dir: &Path,
    password: &str,
    args: &[&str],
    stdin: Option<&str>,
) -> Result<Value> {
    let mut full = vec!["--json"];
    full.extend_from_slice(args);
    let out = wallet(rpc_url, wallet_dir, password, &full, stdin)?;
    if !out.status.success() {
        bail!("wallet {:?} failed: {}", args, String::from_utf8_lossy(&out.stderr));
    }
    serde_json::from_slice(&out.stdout).with_context(|| String::from_utf8_lossy(&out.stdout).to_string())
}

/// Private key hex of dev account `i`.
pub fn dev_key_hex(i: usize) -> String {
    hex::encode(cairn_core::genesis::dev_key_bytes(i))
}

/// Address text of dev account `i`.
pub fn dev_address(i: usize) -> String {
    cairn_core::transaction::address_of(&cairn_core::genesis::dev_keys()[i]).to_text()
}

/// Writes a fast local chain's genesis to `dir/genesis.json` and returns its path: the
/// dev chain's accounts and rules, but `block_ms` blocks and an easy start, so tests
/// that need hundreds of blocks take seconds.
pub fn write_fast_genesis(dir: &Path, block_ms: u64) -> Result<PathBuf> {
    let mut g = cairn_core::genesis::Genesis::dev();
    g.name = "cairn-e2e".into();
    g.params.chain_id = 4242;
    g.params.target_block_time_ms = block_ms;
    g.params.half_life_ms = block_ms * 20;
    g.params.initial_target = "0000ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff".parse()?;
    std::fs::create_dir_all(dir)?;
    let path = dir.join("genesis.json");
    std::fs::write(&path, g.to_json())?;
    Ok(path)
}
