//! Shared by the RPC and dev-mode tests: start a real `cairn-node` process, find its
//! addresses on stdout, and kill it when the test ends (pass or fail).
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub struct NodeProcess {
    child: Child,
    pub rpc: SocketAddr,
    pub p2p: SocketAddr,
    pub data_dir: PathBuf,
    /// Everything the node printed on stdout up to its address lines.
    pub banner: Vec<String>,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl NodeProcess {
    /// Starts `cairn-node --dev` on free ports with its own data dir, plus `extra` flags.
    pub fn start_dev(extra: &[&str]) -> NodeProcess {
        Self::start_dev_env(extra, &[])
    }

    /// [`NodeProcess::start_dev`] with environment variables `env` set for the node.
    pub fn start_dev_env(extra: &[&str], env: &[(&str, &str)]) -> NodeProcess {
        let dir = tempfile::tempdir().expect("tempdir");
        let data_dir = dir.path().join("data");
        let log = dir.path().join("node.log");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_cairn-node"));
        cmd.args(["--dev", "--rpc-addr", "127.0.0.1:0", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(&data_dir)
            .args(extra)
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).expect("log file"));
        let mut child = cmd.spawn().expect("spawn cairn-node");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel::<String>();
        // Keep draining stdout for the node's whole life so it never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        let (mut rpc, mut p2p) = (None, None);
        let mut banner = Vec::new();
        while rpc.is_none() || p2p.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = match rx.recv_timeout(left) {
                Ok(l) => l,
                Err(_) => {
                    let _ = child.kill();
                    let log = std::fs::read_to_string(&log).unwrap_or_default();
                    panic!("node did not print its addresses in time; log:\n{log}");
                }
            };
            banner.push(line.clone());
            if let Some(a) = line.strip_prefix("RPC listening on http://") {
                rpc = Some(a.trim().parse().expect("rpc addr"));
            } else if let Some(a) = line.strip_prefix("P2P listening on ") {
                p2p = Some(a.trim().parse().expect("p2p addr"));
            }
        }
        NodeProcess { child, rpc: rpc.unwrap(), p2p: p2p.unwrap(), data_dir, banner, log, _dir: dir }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.rpc)
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}", self.rpc)
    }

    pub fn cookie(&self) -> String {
        std::fs::read_to_string(self.data_dir.join(".cookie")).expect("cookie file")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Polls for the process's exit until `timeout`; `None` if it still runs.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A raw HTTP/1.1 POST (for what a JSON-RPC client would never send).
    pub fn raw_post(&self, body: &[u8]) -> (u16, String) {
        raw_post(self.rpc, body, None)
    }
}

pub fn raw_post(addr: SocketAddr, body: &[u8], auth: Option<&str>) -> (u16, String) {
    raw_post_declared(addr, body.len(), body, auth)
}

/// Like [`raw_post`], but declares `declared_len` bytes of body whatever `body` holds
/// (to send an oversized request without racing the server's early answer).
pub fn raw_post_declared(
    addr: SocketAddr,
    declared_len: usize,
    body: &[u8],
    auth: Option<&str>,
) -> (u16, String) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut req = format!(
        "POST / HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {declared_len}\r\nConnection: close\r\n"
    );
    if let Some(a) = auth {
        req.push_str(&format!("Authorization: {a}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    // The server may answer (413) and close before reading a huge body: ignore write errors.
    let _ = s.write_all(body);
    let mut resp = Vec::new();
    let _ = s.read_to_end(&mut resp);
    let text = String::from_utf8_lossy(&resp).to_string();
    let status = text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!("--- last node log lines ---");
            for l in tail.into_iter().rev() {
                eprintln!("{l}");
            }
        }
    }
}

/// Polls `f` until it returns `Some`, or panics after `timeout`.
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
