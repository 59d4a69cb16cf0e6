//! Crash test: the real node binary mines on a dev chain and is killed with SIGKILL at
//! random moments, at least 30 times; after each kill `check_db` must find the store
//! consistent, and no block the node reported as connected may be lost.
//!
//! `CAIRN_CRASH_KILLS` sets the number of kills (default 30) and `CAIRN_CRASH_SEED` the
//! random seed (printed, so a failure can be replayed).
#![allow(clippy::unwrap_used)] // test helpers fail loudly

use cairn_core::genesis::Genesis;
use cairn_node::chain::check_db;
use rand::{Rng, SeedableRng};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

/// Kills and reaps the node however the test ends.
struct NodeProcess {
    child: Child,
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Log lines of interest, parsed from the node's stderr.
enum Event {
    Opened { height: u64 },
    Mined { height: u64 },
    Exited,
}

fn strip_ansi(s: &str) -> String {
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

fn field(line: &str, name: &str) -> Option<u64> {
    let start = line.find(&format!("{name}="))? + name.len() + 1;
    let digits: String = line[start..].chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

fn start_node(data_dir: &Path) -> (NodeProcess, Receiver<Event>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_cairn-node"))
        .args(["--dev", "--data-dir"])
        .arg(data_dir)
        .args(["--rpc-addr", "127.0.0.1:0", "--listen", "127.0.0.1:0"])
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start cairn-node");
    let stderr = child.stderr.take().expect("piped stderr");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            let line = strip_ansi(&line);
            let event = if line.contains("chain opened") {
                field(&line, "height").map(|height| Event::Opened { height })
            } else if line.contains("mined block") && line.contains("Connected") {
                field(&line, "height").map(|height| Event::Mined { height })
            } else {
                None
            };
            if let Some(e) = event {
                if tx.send(e).is_err() {
                    return;
                }
            }
        }
        let _ = tx.send(Event::Exited);
    });
    (NodeProcess { child }, rx)
}

/// Waits for an event matching `want` until `deadline`.
fn wait_for(
    rx: &Receiver<Event>,
    deadline: Instant,
    mut want: impl FnMut(&Event) -> bool,
    what: &str,
) -> Event {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(Event::Exited) => panic!("the node exited while waiting for {what}"),
            Ok(e) if want(&e) => return e,
            Ok(_) => {}
            Err(RecvTimeoutError::Timeout) => panic!("timed out waiting for {what}"),
            Err(RecvTimeoutError::Disconnected) => panic!("log reader ended while waiting for {what}"),
        }
    }
}

#[test]
fn sigkill_at_random_moments_never_corrupts_the_store() {
    let kills: usize = std::env::var("CAIRN_CRASH_KILLS").ok().and_then(|v| v.parse().ok()).unwrap_or(30);
    let seed: u64 = std::env::var("CAIRN_CRASH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(cairn_node::now_ms);
    eprintln!("crash test: {kills} kills, seed {seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let genesis = Genesis::dev();
    let dir = tempfile::tempdir().expect("temp dir");
    let mut committed = 0u64; // highest height the node said it connected
    let mut last_tip = 0u64;
    for round in 0..kills {
        let (mut node, rx) = start_node(dir.path());
        let deadline = Instant::now() + Duration::from_secs(120);
        let Event::Opened { height } =
            wait_for(&rx, deadline, |e| matches!(e, Event::Opened { .. }), "chain opened")
        else {
            unreachable!()
        };
        assert!(
            height >= last_tip,
            "round {round}: reopened at {height}, below the last checked tip {last_tip}"
        );
        // Kill at a random moment: mostly while mining, sometimes during start-up.
        if rng.gen_bool(0.8) {
            let blocks = rng.gen_range(1..=3);
            let target = height + blocks;
            if let Event::Mined { height } = wait_for(
                &rx,
                deadline,
                |e| matches!(e, Event::Mined { height } if *height >= target),
                "mined blocks",
            ) {
                committed = committed.max(height);
            }
        }
        std::thread::sleep(Duration::from_millis(rng.gen_range(0..800)));
        // Blocks connected before the kill that we have not read yet still count.
        node.child.kill().expect("SIGKILL");
        node.child.wait().expect("reap");
        // Drain the log to its end (the reader sends Exited at EOF).
        let drain_deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match rx.recv_timeout(drain_deadline.saturating_duration_since(Instant::now())) {
                Ok(Event::Mined { height }) => committed = committed.max(height),
                Ok(Event::Exited) | Err(_) => break,
                Ok(_) => {}
            }
        }
        drop(node);

        let report = check_db(dir.path(), &genesis).expect("check-db runs");
        assert!(report.is_consistent(), "round {round} (seed {seed}): {report}");
        assert!(
            report.tip_height >= committed,
            "round {round} (seed {seed}): tip {} lost connected block {committed}",
            report.tip_height
        );
        last_tip = report.tip_height;
        eprintln!("round {round}: consistent at height {}", report.tip_height);
    }
    assert!(last_tip >= kills as u64 / 2, "the node made too little progress: height {last_tip}");
}
