//! `/metrics` of real nodes (docs/METRICS.md): the figures a scrape shows equal what RPC
//! says, the counters move with what the nodes do, `promtool check metrics` accepts a
//! real scrape, and the Grafana dashboard asks only for metrics a node exports.
#![allow(clippy::unwrap_used)]

use anyhow::{bail, Context, Result};
use cairn_tests::*;
use serde_json::{json, Value};
use std::collections::{BTreeSet, HashMap};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The `/metrics` URL a node printed at start (`metrics listening on http://ADDR/metrics`).
fn metrics_url(node: &NodeProcess) -> String {
    let text = node.stdout_text();
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("metrics listening on "))
        .unwrap_or_else(|| panic!("the node printed no metrics address:\n{text}"));
    line.trim().to_string()
}

/// One HTTP GET of `url` (`http://ADDR/PATH`) with extra `headers`; returns the status,
/// the headers (lower-cased names) and the body.
fn http_get(url: &str, headers: &[(&str, &str)]) -> Result<(u16, HashMap<String, String>, String)> {
    let rest = url.strip_prefix("http://").context("not an http:// URL")?;
    let (addr, path) = rest.split_once('/').map_or((rest, "/".to_string()), |(a, p)| (a, format!("/{p}")));
    let mut s = TcpStream::connect(addr).with_context(|| format!("connect {addr}"))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes())?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let raw = String::from_utf8(raw).context("the answer is not UTF-8")?;
    let (head, body) = raw.split_once("\r\n\r\n").context("no end of headers")?;
    let mut lines = head.lines();
    let status =
        lines.next().and_then(|l| l.split_whitespace().nth(1)).and_then(|c| c.parse().ok()).unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    // (hyper sends a Content-Length for a full body, so there is no chunking to undo.)
    Ok((status, headers, body.to_string()))
}

/// A scrape in the Prometheus text format (what a client without an OpenMetrics
/// `Accept` header gets).
fn scrape_text(url: &str) -> Result<String> {
    let (status, headers, body) = http_get(url, &[])?;
    if status != 200 {
        bail!("GET {url}: status {status}: {body}");
    }
    let ct = headers.get("content-type").cloned().unwrap_or_default();
    if !ct.starts_with("text/plain; version=0.0.4") {
        bail!("GET {url}: content type {ct}");
    }
    Ok(body)
}

/// The samples of a text-format scrape: `name{labels}` (as written) -> value.
fn samples(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.to_string(), value.parse().ok()?))
        })
        .collect()
}

/// The value of one series, 0 if absent (a counter not yet made).
fn value(s: &HashMap<String, f64>, series: &str) -> f64 {
    s.get(series).copied().unwrap_or(0.0)
}

fn get(s: &HashMap<String, f64>, series: &str) -> f64 {
    *s.get(series).unwrap_or_else(|| panic!("no series {series} in the scrape"))
}

/// Total work as chain_getInfo gives it (hex) as a float.
fn work_of_hex(hex: &str) -> f64 {
    let hex = hex.trim_start_matches("0x");
    hex.chars().fold(0.0, |acc, c| acc * 16.0 + f64::from(c.to_digit(16).unwrap()))
}

/// Peers (inbound, outbound) as net_peers lists them.
fn rpc_peers(node: &NodeProcess) -> Result<(u64, u64)> {
    let peers = node.rpc("net_peers", json!([]))?;
    let peers = peers.as_array().context("net_peers is not an array")?;
    let inbound = peers.iter().filter(|p| p["inbound"] == json!(true)).count() as u64;
    Ok((inbound, peers.len() as u64 - inbound))
}

/// Waits until one scrape agrees with RPC on height, total work, syncing, hash rate,
/// peers and mempool. The chain moves, so a comparison counts only when RPC said the
/// same before and after the scrape.
fn wait_scrape_agrees_with_rpc(node: &NodeProcess, name: &str) -> HashMap<String, f64> {
    let url = metrics_url(node);
    wait_until(Duration::from_secs(60), &format!("{name}'s /metrics to agree with its RPC"), || {
        let info = node.rpc("chain_getInfo", json!([]))?;
        let pool = node.rpc("mempool_getInfo", json!([]))?;
        let peers = rpc_peers(node)?;
        let s = samples(&scrape_text(&url)?);
        let (info2, pool2, peers2) = (
            node.rpc("chain_getInfo", json!([]))?,
            node.rpc("mempool_getInfo", json!([]))?,
            rpc_peers(node)?,
        );
        if info != info2 || pool != pool2 || peers != peers2 {
            return Ok(None); // RPC moved during the scrape: try again
        }
        let mut wrong = Vec::new();
        let mut check = |what: &str, scraped: f64, rpc: f64| {
            if scraped != rpc {
                wrong.push(format!("{what}: /metrics {scraped}, RPC {rpc}"));
            }
        };
        check("height", get(&s, "cairn_chain_height"), info["height"].as_u64().unwrap() as f64);
        check(
            "syncing",
            get(&s, "cairn_p2p_syncing"),
            if info["syncing"] == json!(true) { 1.0 } else { 0.0 },
        );
        check("hashrate", get(&s, "cairn_miner_hashrate"), info["hashrate"].as_u64().unwrap() as f64);
        check("inbound peers", get(&s, "cairn_p2p_peers{direction=\"inbound\"}"), peers.0 as f64);
        check("outbound peers", get(&s, "cairn_p2p_peers{direction=\"outbound\"}"), peers.1 as f64);
        check("mempool transfers", get(&s, "cairn_mempool_transfers"), pool["size"].as_u64().unwrap() as f64);
        check(
            "mempool size",
            get(&s, "cairn_mempool_transfers"),
            info["mempool_size"].as_u64().unwrap() as f64,
        );
        check("mempool bytes", get(&s, "cairn_mempool_bytes"), pool["bytes"].as_u64().unwrap() as f64);
        check("mempool min fee", get(&s, "cairn_mempool_min_fee"), pool["min_fee"].as_u64().unwrap() as f64);
        let work = work_of_hex(info["total_work"].as_str().unwrap());
        let scraped_work = get(&s, "cairn_chain_total_work");
        if ((scraped_work - work) / work).abs() > 1e-12 {
            wrong.push(format!("total work: /metrics {scraped_work}, RPC {work}"));
        }
        if wrong.is_empty() {
            Ok(Some(s))
        } else {
            // Disagreement with RPC steady across the scrape is a bug, not a race.
            panic!("{name}: /metrics disagrees with RPC: {}", wrong.join("; "));
        }
    })
}

/// Two dev nodes, B peered to A (which mines), a wallet transfer through B.
fn two_nodes_and_a_transfer(tmp: &Path) -> (NodeProcess, NodeProcess, String) {
    // --dev turns metrics on (a free port); B names its address explicitly.
    let a = NodeProcess::start_dev(bin("cairn-node"), &[]);
    let peer = a.p2p_addr.to_string();
    let b = NodeProcess::start_dev(
        bin("cairn-node"),
        &["--no-mine", "--peer", &peer, "--metrics-addr", "127.0.0.1:0"],
    );
    wait_until(Duration::from_secs(60), "B to peer with A and sync past height 3", || {
        let (ia, ib) = (a.rpc("chain_getInfo", json!([]))?, b.rpc("chain_getInfo", json!([]))?);
        Ok((ib["peers"] == json!(1) && ia["peers"] == json!(1) && ib["height"].as_u64() >= Some(3))
            .then_some(()))
    });
    let wallet_dir = tmp.join("wallet");
    let rpc_b = b.rpc_url.clone();
    wallet_json(&rpc_b, &wallet_dir, "pw", &["import"], Some(&dev_key_hex(4))).unwrap();
    let recipient = dev_address(7);
    let sent = wallet_json(
        &rpc_b,
        &wallet_dir,
        "pw",
        &["send", "--from", &dev_address(4), "--to", &recipient, "--amount", "777", "--fee", "10"],
        None,
    )
    .unwrap();
    let txid = sent["txid"].as_str().unwrap_or_else(|| panic!("no txid in {sent}")).to_string();
    (a, b, txid)
}

#[test]
fn metrics_of_two_nodes_agree_with_rpc_and_their_counters_move() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b, txid) = two_nodes_and_a_transfer(tmp.path());

    // The transfer confirms on both nodes.
    wait_until(Duration::from_secs(60), "the transfer to confirm on both nodes", || {
        for n in [&a, &b] {
            let status = n.rpc("chain_getTransaction", json!([txid]))?;
            if status.is_null() || status["confirmations"].as_u64().unwrap_or(0) < 1 {
                return Ok(None);
            }
        }
        Ok(Some(()))
    });

    let sa = wait_scrape_agrees_with_rpc(&a, "A");
    let sb = wait_scrape_agrees_with_rpc(&b, "B");

    // One peer each: B dialled A.
    assert_eq!(get(&sa, "cairn_p2p_peers{direction=\"inbound\"}"), 1.0);
    assert_eq!(get(&sb, "cairn_p2p_peers{direction=\"outbound\"}"), 1.0);

    // Blocks: each node connected every block of its chain (both started fresh, so
    // connected minus disconnected is the height, read in one scrape once the tip
    // holds still across it); A mined them.
    for (node, name) in [(&a, "A"), (&b, "B")] {
        let url = metrics_url(node);
        wait_until(Duration::from_secs(30), &format!("{name}: connected - disconnected = height"), || {
            let s = samples(&scrape_text(&url)?);
            let net = value(&s, "cairn_chain_blocks_connected_total")
                - value(&s, "cairn_chain_blocks_disconnected_total");
            Ok((net == get(&s, "cairn_chain_height") && net >= 3.0).then_some(()))
        });
    }
    assert!(value(&sa, "cairn_miner_blocks_mined_total") >= 3.0);
    assert_eq!(value(&sb, "cairn_miner_blocks_mined_total"), 0.0, "B does not mine");
    assert!(get(&sa, "cairn_chain_block_import_seconds_count") >= 3.0);
    assert!(get(&sb, "cairn_chain_block_transfers_sum") >= 1.0, "the wallet's transfer was in a block");

    // Messages by command: the handshake both ways, blocks from A to B.
    for (s, name) in [(&sa, "A"), (&sb, "B")] {
        for cmd in ["version", "verack"] {
            let series = format!("cairn_p2p_messages_received_total{{command=\"{cmd}\"}}");
            assert!(value(s, &series) >= 1.0, "{name}: {series}");
            let series = format!("cairn_p2p_messages_sent_total{{command=\"{cmd}\"}}");
            assert!(value(s, &series) >= 1.0, "{name}: {series}");
        }
    }
    // A block goes whole (`block`) or, as the next block of B's chain, compact
    // (`cmpctblock`, docs/PROTOCOL.md "Compact blocks").
    let received = |cmd: &str| value(&sb, &format!("cairn_p2p_messages_received_total{{command=\"{cmd}\"}}"));
    let received_bytes =
        |cmd: &str| value(&sb, &format!("cairn_p2p_received_bytes_total{{command=\"{cmd}\"}}"));
    let sent_bytes = |cmd: &str| value(&sa, &format!("cairn_p2p_sent_bytes_total{{command=\"{cmd}\"}}"));
    let blocks_in = received("block") + received("cmpctblock");
    assert!(blocks_in >= 3.0, "B received {blocks_in} blocks");
    assert!(received_bytes("block") + received_bytes("cmpctblock") > blocks_in * 100.0);
    assert!(sent_bytes("block") + sent_bytes("cmpctblock") > 0.0);
    // The transfer: admitted by B (RPC) and by A (relayed), sent by B to A as a `tx`.
    assert!(value(&sb, "cairn_mempool_admissions_total") >= 1.0);
    assert!(value(&sa, "cairn_mempool_admissions_total") >= 1.0);
    assert!(value(&sa, "cairn_p2p_messages_received_total{command=\"tx\"}") >= 1.0);

    // RPC calls by method and outcome: the wallet's tx_submit on B, and the test's own.
    assert!(value(&sb, "cairn_rpc_calls_total{method=\"tx_submit\",outcome=\"ok\"}") >= 1.0);
    let calls = value(&sb, "cairn_rpc_calls_total{method=\"chain_getInfo\",outcome=\"ok\"}");
    assert!(calls >= 2.0, "chain_getInfo calls: {calls}");
    assert!(get(&sb, "cairn_rpc_call_duration_seconds_count{method=\"chain_getInfo\"}") >= calls);
    // A refused call is counted as an error; a method not served as `other`.
    assert!(b.rpc("chain_getBlock", json!(["not a hash"])).is_err());
    assert!(b.rpc("no_suchMethod", json!([])).is_err());
    let s = samples(&scrape_text(&metrics_url(&b)).unwrap());
    assert!(value(&s, "cairn_rpc_calls_total{method=\"chain_getBlock\",outcome=\"error\"}") >= 1.0);
    assert!(value(&s, "cairn_rpc_calls_total{method=\"other\",outcome=\"error\"}") >= 1.0);

    // The process's own figures.
    for s in [&sa, &sb] {
        assert!(get(s, "process_resident_memory_bytes") > 1e6);
        assert!(get(s, "process_open_fds") >= 5.0);
        assert!(get(s, "process_cpu_seconds_total") > 0.0);
        let started = get(s, "process_start_time_seconds");
        let now = now_ms() as f64 / 1000.0;
        assert!(started <= now + 1.0 && started > now - 600.0, "start time {started}, now {now}");
    }
}

#[test]
fn the_metrics_server_answers_only_get_metrics() {
    let node = NodeProcess::start_dev(bin("cairn-node"), &["--no-mine"]);
    let url = metrics_url(&node);
    let base = url.trim_end_matches("/metrics");
    let (status, _, _) = http_get(&format!("{base}/"), &[]).unwrap();
    assert_eq!(status, 404);
    // Prometheus asks for OpenMetrics and gets the crate's output as it is.
    let (status, headers, body) =
        http_get(&url, &[("Accept", "application/openmetrics-text;version=1.0.0,text/plain;q=0.5")]).unwrap();
    assert_eq!(status, 200);
    assert!(headers["content-type"].starts_with("application/openmetrics-text; version=1.0.0"));
    assert!(body.ends_with("# EOF\n"), "{}", &body[body.len().saturating_sub(200)..]);
    assert!(body.contains("# TYPE cairn_chain_blocks_connected counter\n"));
    // Without --metrics-addr or --dev, no metrics server.
    let plain = NodeProcess::start_temp(&NodeOptions {
        genesis: Some(write_fast_genesis(node.data_dir.parent().unwrap(), 500).unwrap()),
        ..NodeOptions::default()
    })
    .unwrap();
    assert!(!plain.stdout_text().contains("metrics listening"), "{}", plain.stdout_text());
}

/// `promtool` from Debian's `prometheus` package (`scripts/setup.sh --test` installs it). Absent:
/// `None`, which fails the test under CI (CI=true) and skips it elsewhere.
fn promtool() -> Option<PathBuf> {
    cairn_tests::test_tool("promtool", "prometheus")
}

fn run_promtool(args: &[&str], stdin: Option<&str>) -> (bool, String) {
    use std::process::{Command, Stdio};
    let Some(tool) = promtool() else { return (true, String::new()) };
    let mut child = Command::new(tool)
        .args(args)
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(input) = stdin {
        child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

#[test]
fn promtool_accepts_a_real_scrape() {
    if promtool().is_none() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    // Traffic of every kind first, so every family has samples.
    let (_a, b, _) = two_nodes_and_a_transfer(tmp.path());
    let _ = b.rpc("no_suchMethod", json!([]));
    let text = scrape_text(&metrics_url(&b)).unwrap();
    let (ok, report) = run_promtool(&["check", "metrics"], Some(&text));
    assert!(ok, "promtool check metrics: {report}\n--- scrape:\n{text}");
}

/// Metric names a PromQL expression uses (identifiers of ours: `cairn_*`, `process_*`).
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut word = String::new();
    for c in expr.chars().chain(std::iter::once(' ')) {
        if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
            word.push(c);
        } else {
            if word.starts_with("cairn_") || word.starts_with("process_") {
                names.insert(std::mem::take(&mut word));
            }
            word.clear();
        }
    }
    names
}

fn exprs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                match (k.as_str(), v) {
                    // Panels' PromQL, and the node variable's label_values(...) query.
                    ("expr" | "definition", Value::String(s)) => out.push(s.clone()),
                    _ => exprs(v, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|v| exprs(v, out)),
        _ => {}
    }
}

fn repo_file(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

#[test]
fn the_dashboard_asks_only_for_metrics_the_node_exports() {
    let text = std::fs::read_to_string(repo_file("contrib/grafana/cairn.json")).unwrap();
    let dashboard: Value = serde_json::from_str(&text).unwrap();
    assert!(dashboard["title"].is_string() && dashboard["panels"].is_array(), "not a Grafana dashboard");
    let mut all = Vec::new();
    exprs(&dashboard, &mut all);
    assert!(all.len() >= 6, "the dashboard has {} queries", all.len());

    // Every series name of a real scrape (a histogram's _bucket/_sum/_count included).
    let node = NodeProcess::start_dev(bin("cairn-node"), &[]);
    let _ = node.rpc("chain_getInfo", json!([]));
    let exported: BTreeSet<String> = samples(&scrape_text(&metrics_url(&node)).unwrap())
        .keys()
        .map(|k| k.split('{').next().unwrap().to_string())
        .collect();
    let mut unknown = Vec::new();
    for e in &all {
        let names = metric_names(e);
        assert!(!names.is_empty(), "a query of no cairn metric: {e}");
        for n in names {
            if !exported.contains(&n) {
                unknown.push(format!("{n} (in {e})"));
            }
        }
    }
    assert!(unknown.is_empty(), "the dashboard asks for metrics the node does not export: {unknown:#?}");
}

#[test]
fn promtool_accepts_the_prometheus_config() {
    let config = repo_file("contrib/prometheus.yml");
    let (ok, report) = run_promtool(&["check", "config", config.to_str().unwrap()], None);
    assert!(ok, "promtool check config: {report}");
}

#[test]
fn a_hostile_peer_shows_in_the_failed_handshake_and_misbehaviour_counters() {
    use cairn_tests::adversary::{cmd, magic_of, Peer, VersionFields};
    let node = NodeProcess::start_dev(bin("cairn-node"), &["--no-mine"]);
    let url = metrics_url(&node);
    let genesis = cairn_core::Genesis::dev();
    let magic = magic_of(&genesis);
    let counter = |series: &str| -> Result<f64> { Ok(value(&samples(&scrape_text(&url)?), series)) };

    // Bytes that are no frame, before any handshake.
    let mut junk = Peer::connect(node.p2p_addr, magic).unwrap();
    junk.send_raw(b"GET / HTTP/1.1\r\nHost: cairn\r\n\r\n").unwrap();
    junk.wait_closed(Duration::from_secs(10));
    let malformed = "cairn_p2p_handshakes_failed_total{reason=\"malformed_frame\"}";
    wait_until(Duration::from_secs(20), "a failed handshake counted as a malformed frame", || {
        Ok((counter(malformed)? >= 1.0).then_some(()))
    });

    // A pong nobody asked for, after a good handshake: scored, not banned.
    let mut peer = Peer::connect(node.p2p_addr, magic).unwrap();
    peer.handshake(&VersionFields::for_genesis(&genesis, [0; 32], "metrics-test")).unwrap();
    peer.send(cmd::PONG, &12345u64.to_le_bytes()).unwrap();
    let pong = "cairn_p2p_misbehaviour_total{reason=\"unsolicited_pong\"}";
    wait_until(Duration::from_secs(20), "the unsolicited pong counted", || {
        Ok((counter(pong)? >= 1.0).then_some(()))
    });
    assert_eq!(counter("cairn_p2p_bans_total").unwrap(), 0.0);
    let s = samples(&scrape_text(&url).unwrap());
    assert_eq!(get(&s, "cairn_p2p_peers{direction=\"inbound\"}"), 1.0, "the scored peer is still connected");
    assert!(value(&s, "cairn_p2p_messages_received_total{command=\"pong\"}") >= 1.0);
}
