//! A harness for end-to-end tests with real `cairn-node` and `cairn-wallet` processes.
//!
//! - [`NodeProcess`] starts a node on loopback with OS-chosen ports (`127.0.0.1:0`),
//!   learns its RPC and P2P addresses from its output, captures its log, restarts it on
//!   the same data dir, signals it and waits for its exit, and kills it when dropped, so
//!   a failing test leaves no process behind. It is the one process harness: node's own
//!   integration tests (node/tests/) and the benchmark use it too.
//! - [`rpc`] is a tiny blocking JSON-RPC over HTTP client (std only); [`raw_post`] sends
//!   what a JSON-RPC client never would.
//! - [`wait_until`] (and [`wait_for`] in async tests) polls a condition until a deadline:
//!   tests never sleep to synchronise.
//! - [`wallet`] runs the wallet binary.
//! - [`adversary`] is a misbehaving peer that speaks the wire protocol on its own.
//!
//! Binaries are found next to the test executable (`target/<profile>/`), or in
//! `$CAIRN_BIN_DIR`. `scripts/test.sh` builds them before running the tests.

pub mod adversary;
mod http;
pub mod netns;
mod process;

pub use http::{http_post, raw_post, raw_post_declared, rpc, HttpResponse};
pub use process::{start_seeded_network, wait_same_tip, NodeOptions, NodeProcess};

use anyhow::{bail, Context, Result};
use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
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

/// The async form of [`wait_until`] for `#[tokio::test]`s: polls `f` every 50 ms until
/// it returns `Some`, or panics after `timeout`.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
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

/// `s` without ANSI colour codes (the node's log has them; tests match on plain text).
pub fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
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

/// A tool the tests need from Debian (`scripts/setup.sh --test` installs it), found on
/// the PATH. Absent: `None`, which the caller turns into a skip, except under CI
/// (`CI=true`), where it panics: a missing tool must not pass a CI run unseen.
pub fn test_tool(name: &str, package: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join(name))
        .find(|p| p.is_file());
    if found.is_none() {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!(
                "{name} is not installed (Debian package `{package}`; scripts/setup.sh --test installs it)"
            );
        }
        eprintln!(
            "SKIPPED: {name} is not installed (run scripts/setup.sh --test, or apt-get install {package})"
        );
    }
    found
}
