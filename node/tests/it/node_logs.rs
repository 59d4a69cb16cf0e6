//! The node's log as an operator reads it: plain text (no escape codes) when stderr is a
//! file, one JSON object per line with `--log-format json`, and every line naming its
//! subsystem (the tracing target).
#![allow(clippy::unwrap_used)] // test helpers fail loudly

use cairn_tests::{wait_until, NodeProcess};
use serde_json::Value;
use std::time::Duration;

const T: Duration = Duration::from_secs(60);

/// Starts a mining dev node with `extra` flags and the environment a service manager
/// gives (no NO_COLOR: the node must see for itself that stderr is not a terminal), waits
/// for a few mined blocks, stops it with SIGTERM, and returns its stdout and log.
fn run_node(extra: &[&str]) -> (Vec<u8>, Vec<u8>) {
    let mut node = NodeProcess::start_dev(env!("CARGO_BIN_EXE_cairn-node"), extra);
    wait_until(T, "3 mined blocks", || Ok((node.height()? >= 3).then_some(())));
    node.stop();
    (std::fs::read(&node.stdout).unwrap(), std::fs::read(&node.log).unwrap())
}

#[test]
fn a_log_redirected_to_a_file_has_no_escape_codes() {
    let (stdout, log) = run_node(&[]);
    let text = String::from_utf8(log.clone()).unwrap();
    assert!(text.contains("mined block"), "no mined block in the log:\n{text}");
    assert!(text.contains("shutdown complete"), "{text}");
    assert!(!log.contains(&0x1b), "the log holds an escape byte:\n{text:?}");
    assert!(!stdout.contains(&0x1b), "stdout holds an escape byte");
    // Every line names its subsystem: `<time> <LEVEL> <target>: <message>`.
    for line in text.lines() {
        let target = line.split_whitespace().nth(2).unwrap_or_default();
        assert!(target.starts_with("cairn_node") && target.ends_with(':'), "no target in {line:?}");
    }
}

#[test]
fn log_format_json_writes_one_json_object_per_line() {
    let (_, log) = run_node(&["--log-format", "json"]);
    let text = String::from_utf8(log).unwrap();
    let mut messages = Vec::new();
    for line in text.lines() {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}"));
        let target = v["target"].as_str().unwrap_or_else(|| panic!("no target in {line}"));
        assert!(target.starts_with("cairn_node"), "{line}");
        assert!(v["level"].is_string() && v["timestamp"].is_string(), "{line}");
        messages.push(v["fields"]["message"].as_str().unwrap_or_default().to_string());
    }
    // The fields stay fields: a mined block's height is a JSON number.
    let mined = text
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|v| v["fields"]["message"] == "mined block")
        .unwrap_or_else(|| panic!("no mined block line:\n{text}"));
    assert!(mined["fields"]["height"].is_u64(), "{mined}");
    assert_eq!(messages.last().map(String::as_str), Some("shutdown complete"), "{text}");
}

#[test]
fn log_level_chooses_what_is_logged_and_rust_log_wins() {
    // --log-level warn: none of the info lines of a normal start.
    let mut opts = cairn_tests::NodeOptions::dev(env!("CARGO_BIN_EXE_cairn-node"), &["--log-level", "warn"]);
    opts.env.push(("RUST_LOG".into(), String::new()));
    let mut node = NodeProcess::start_temp(&opts).unwrap();
    wait_until(T, "2 mined blocks", || Ok((node.height()? >= 2).then_some(())));
    node.stop();
    let log = std::fs::read_to_string(&node.log).unwrap();
    assert!(!log.contains("INFO"), "info lines under --log-level warn:\n{log}");

    // RUST_LOG (the harness sets info) wins over --log-level.
    let mut node = NodeProcess::start_dev(env!("CARGO_BIN_EXE_cairn-node"), &["--log-level", "warn"]);
    wait_until(T, "a mined block in the log", || {
        Ok(std::fs::read_to_string(&node.log)?.contains("mined block").then_some(()))
    });
    node.stop();
}
