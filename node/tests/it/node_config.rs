//! The config file with real `cairn-node` processes: its values take effect, the command
//! line wins, `<data-dir>/cairn.toml` is read without --config, `--print-config` says
//! where each value came from, and a bad file stops the node with an error naming the
//! file, the line and the key.
#![allow(clippy::unwrap_used)] // test helpers fail loudly

use cairn_tests::{NodeOptions, NodeProcess};
use serde_json::Value;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

fn node(args: &[&str], dir: &Path) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cairn-node"));
    cmd.args(args).current_dir(dir).env_remove("RUST_LOG");
    // A node that wrongly started would run until killed: give it a deadline.
    let mut child =
        cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

#[test]
fn a_bad_config_file_names_the_file_line_and_key_and_the_node_does_not_start() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("unknown key", "dev = true\n# a comment\nmax_peers = 3\n", 3, "max_peers", "unknown key"),
        ("wrong type", "dev = true\nmine = \"yes\"\n", 2, "mine", "expected true or false, found a string"),
        (
            "bad value",
            "listen = \"127.0.0.1:0\"\ndev = true\nmax-peers = -1\n",
            3,
            "max-peers",
            "invalid value '-1'",
        ),
        ("bad log level", "dev = true\nlog-level = \"loud\"\n", 2, "log-level", "invalid value 'loud'"),
    ];
    for (case, text, line, key, why) in cases {
        let file = dir.path().join("cairn.toml");
        std::fs::write(&file, text).unwrap();
        let data = dir.path().join("data");
        let out = node(
            &["--config", "cairn.toml", "--data-dir", data.to_str().unwrap(), "--rpc-addr", "127.0.0.1:0"],
            dir.path(),
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{case}: {stderr}");
        let want = format!("error: config file cairn.toml, line {line}, key `{key}`: ");
        assert!(stderr.contains(&want) && stderr.contains(why), "{case}: want {want}…{why}, got: {stderr}");
        assert!(out.stdout.is_empty(), "{case}: the node started: {}", String::from_utf8_lossy(&out.stdout));
        assert!(!data.exists(), "{case}: the node created its data dir");
    }
    // --config names a file that is not there.
    let out = node(&["--config", "missing.toml", "--dev"], dir.path());
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("config file missing.toml: cannot read it"));
}

#[test]
fn print_config_says_where_each_value_came_from() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("my.toml"),
        "max-peers = 5\nlisten = \"127.0.0.1:7400\"\npeer = [\"10.0.0.1:7333\"]\n",
    )
    .unwrap();
    let out = node(&["--config", "my.toml", "--print-config", "--max-peers", "7"], dir.path());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let line = |start: &str| {
        text.lines().find(|l| l.starts_with(start)).unwrap_or_else(|| panic!("{start}: {text}"))
    };
    assert!(line("max-peers = 7 ").ends_with("# command line"), "{text}");
    assert!(line("listen = \"127.0.0.1:7400\"").ends_with("# config file"), "{text}");
    assert!(line("peer = [\"10.0.0.1:7333\"]").ends_with("# config file"), "{text}");
    assert!(line("rpc-addr = \"127.0.0.1:7332\"").ends_with("# default"), "{text}");
    assert!(line("# miner-address =").ends_with("# not set"), "{text}");

    // The shipped example: every key it sets is read, and it passes the node's checks.
    let contrib = Path::new(env!("CARGO_MANIFEST_DIR")).join("../contrib/cairn.toml");
    let out = node(&["--config", contrib.to_str().unwrap(), "--print-config"], dir.path());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("data-dir = \"/var/lib/cairn\"  "), "{text}");
}

/// A node started on a data dir holding `cairn.toml` (no --config) runs with the file's
/// values, except where the command line says otherwise: the file's `listen` is a port
/// this test holds, so the node starts only if the harness's `--listen 127.0.0.1:0` wins.
#[test]
fn a_node_runs_with_its_data_dirs_cairn_toml_and_the_command_line_wins() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let held = TcpListener::bind("127.0.0.1:0").unwrap();
    let text = format!("log-format = \"json\"\nlisten = \"{}\"\nmax-peers = 4\n", held.local_addr().unwrap());
    std::fs::write(data.join("cairn.toml"), text).unwrap();
    let opts = NodeOptions::dev(env!("CARGO_BIN_EXE_cairn-node"), &["--no-mine"]);
    let mut node = NodeProcess::start(&data, &opts).unwrap();
    assert_ne!(node.p2p_addr, held.local_addr().unwrap());
    node.stop();
    let log = std::fs::read_to_string(&node.log).unwrap();
    let lines: Vec<Value> = log.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(lines.iter().any(|v| v["fields"]["message"] == "node started"), "{log}");
}
