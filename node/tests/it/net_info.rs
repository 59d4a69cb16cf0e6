//! `net_getInfo` from real processes on loopback: the protocol version, the bound listen
//! address, an `--external-addr` reported as configured, and `inbound_seen` once a peer
//! has dialled in (a node that only dialled out has seen none). Loopback reports are not
//! routable, so the node with no `--external-addr` learns no external address.
#![allow(clippy::unwrap_used)] // test helpers fail loudly

use cairn_tests::{wait_until, NodeOptions, NodeProcess};
use serde_json::{json, Value};
use std::path::Path;
use std::time::Duration;

fn start(dir: &Path, extra: &[&str]) -> NodeProcess {
    NodeProcess::start(dir, &NodeOptions::dev(env!("CARGO_BIN_EXE_cairn-node"), extra))
        .expect("start cairn-node")
}

fn net_info(n: &NodeProcess) -> Value {
    n.rpc("net_getInfo", json!([])).unwrap()
}

#[test]
fn net_get_info_reports_listen_external_and_inbound() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let a = start(&tmp.path().join("a"), &["--external-addr", "198.51.100.20:7333"]);
    let info = net_info(&a);
    assert_eq!(info["protocol_version"], 2);
    assert_eq!(info["listen"], json!([a.p2p_addr.to_string()]));
    assert_eq!(info["external"], json!([{ "addr": "198.51.100.20:7333", "learned": "configured" }]));
    assert_eq!(info["inbound_seen"], false, "nobody dialled it yet");

    let b = start(&tmp.path().join("b"), &["--no-mine", "--peer", &a.p2p_addr.to_string()]);
    wait_until(Duration::from_secs(30), "A sees B's inbound connection", || {
        Ok((net_info(&a)["inbound_seen"] == true).then_some(()))
    });
    let info = net_info(&b);
    assert_eq!(info["inbound_seen"], false, "B only dialled out: {info}");
    assert_eq!(info["external"], json!([]), "loopback reports are not an external address: {info}");
}
