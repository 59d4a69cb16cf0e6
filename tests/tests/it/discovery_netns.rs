//! Discovery on a real (namespaced) network: three "public" nodes on one bridge, a node
//! behind a masquerading router, and a seed name resolved through the NATed node's own
//! hosts file. The NATed node is started with no `--peer`: it finds the network through
//! the seed, learns its router's external address from what the public nodes report
//! (they are in 3 network groups), and never advertises its private address; the
//! public nodes know it only by the router's address.
//!
//! Everything runs in namespaces the test creates and deletes (Drop guards), wired with
//! veth pairs created inside them; the host's interfaces and routes are not touched.
//! Skipped (with a message) where namespaces are unavailable or not root; under CI=true
//! that fails instead.
//!
//! Addresses: the "internet" is 11.0.0.0/8 (the public nodes at 11.1.0.1, 11.2.0.1 and
//! 11.3.0.1, the router at 11.9.0.1). That is a public range, which is the point: the
//! node's rules treat private and test-net ranges (10/8, 192.0.2/24, ...) as unroutable,
//! so "public" nodes must have public addresses. Nothing leaves the isolated namespaces,
//! so no real 11/8 host is ever contacted. Behind the router: 10.9.0.0/24.
#![allow(clippy::unwrap_used)] // test helpers fail loudly

use cairn_core::genesis::Genesis;
use cairn_tests::netns::{self, Netns};
use cairn_tests::{wait_until, NodeOptions, NodeProcess};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

fn node_opts(genesis: &Path, ns: &Netns, ip: &str, extra: &[&str]) -> NodeOptions {
    NodeOptions {
        genesis: Some(genesis.to_path_buf()),
        listen: Some(format!("{ip}:7333").parse().unwrap()),
        rpc_addr: Some(format!("{ip}:0").parse().unwrap()),
        netns: Some(ns.name.clone()),
        extra: extra.iter().map(|s| s.to_string()).collect(),
        ..NodeOptions::default()
    }
}

fn addrs_of(list: &Value) -> Vec<String> {
    list.as_array().into_iter().flatten().filter_map(|p| p["addr"].as_str().map(str::to_string)).collect()
}

fn is_private(addr: &str) -> bool {
    addr.starts_with("10.") || addr.starts_with("127.")
}

#[test]
fn a_natted_node_joins_through_a_seed_name_and_learns_its_routers_address() {
    if !netns::available() {
        return;
    }
    let pid = std::process::id();
    let tmp = tempfile::tempdir().unwrap();
    let mut genesis = Genesis::dev();
    genesis.seeds = vec!["seed.cairn.test:7333".into()];
    let genesis_file: PathBuf = tmp.path().join("genesis.json");
    std::fs::write(&genesis_file, genesis.to_json()).unwrap();

    // The namespaces first, so that they outlive the nodes (dropped in reverse order).
    let hub = Netns::create(&format!("cd{pid}-hub")).unwrap();
    hub.ip(&["link", "add", "br0", "type", "bridge"]).unwrap();
    hub.ip(&["addr", "add", "11.0.0.254/8", "dev", "br0"]).unwrap();
    hub.ip(&["link", "set", "br0", "up"]).unwrap();
    let mut public = Vec::new();
    for i in 1..=3 {
        let ns = Netns::create(&format!("cd{pid}-pub{i}")).unwrap();
        let port = format!("p{i}");
        hub.link(&port, None, &ns, "eth0", Some(&format!("11.{i}.0.1/8"))).unwrap();
        hub.ip(&["link", "set", &port, "master", "br0"]).unwrap();
        public.push(ns);
    }
    let router = Netns::create(&format!("cd{pid}-rtr")).unwrap();
    hub.link("rtr", None, &router, "ext", Some("11.9.0.1/8")).unwrap();
    hub.ip(&["link", "set", "rtr", "master", "br0"]).unwrap();
    let mut lan = Netns::create(&format!("cd{pid}-lan")).unwrap();
    router.link("int", Some("10.9.0.1/24"), &lan, "eth0", Some("10.9.0.2/24")).unwrap();
    lan.ip(&["route", "add", "default", "via", "10.9.0.1"]).unwrap();
    // The namespace's own forwarding switch (/proc/sys/net is per namespace).
    router.exec("sh", &["-c", "echo 1 > /proc/sys/net/ipv4/ip_forward"]).unwrap();
    let rules = tmp.path().join("nat.nft");
    std::fs::write(
        &rules,
        "table ip nat {\n  chain post { type nat hook postrouting priority 100; oifname \"ext\" masquerade; }\n}\n",
    )
    .unwrap();
    router.exec("nft", &["-f", &rules.to_string_lossy()]).unwrap();
    // The seed name, as the NATed node's resolver sees it: public node 1.
    lan.hosts("127.0.0.1 localhost\n11.1.0.1 seed.cairn.test\n").unwrap();

    // The public nodes: 2 and 3 know 1; none mines, none resolves seeds.
    let hub_in = hub.enter().unwrap();
    let mut nodes: Vec<NodeProcess> = Vec::new();
    for (i, ns) in public.iter().enumerate() {
        let ip = format!("11.{}.0.1", i + 1);
        let mut extra = vec!["--no-seeds"];
        let first = "11.1.0.1:7333".to_string();
        if i > 0 {
            extra.extend(["--peer", first.as_str()]);
        }
        let dir = tmp.path().join(format!("pub{}", i + 1));
        nodes.push(NodeProcess::start(&dir, &node_opts(&genesis_file, ns, &ip, &extra)).unwrap());
    }
    drop(hub_in);

    // The NATed node: no --peer; its RPC is reached from inside its namespace.
    let natted = {
        let _in = lan.enter().unwrap();
        NodeProcess::start(&tmp.path().join("natted"), &node_opts(&genesis_file, &lan, "10.9.0.2", &[]))
            .unwrap()
    };
    let natted_rpc = |method: &str| {
        let _in = lan.enter().unwrap();
        natted.rpc(method, json!([])).unwrap()
    };

    // It joins through the seed and adopts the router's address, with its listen port.
    let info = wait_until(Duration::from_secs(60), "the NATed node learns its external address", || {
        let info = natted_rpc("net_getInfo");
        Ok((info["external"].as_array().is_some_and(|e| !e.is_empty())).then_some(info))
    });
    let ext = &info["external"][0];
    assert_eq!(ext["addr"], "11.9.0.1:7333", "{info}");
    assert_eq!(ext["learned"], "peers", "{info}");
    assert!(ext["groups"].as_u64().unwrap() >= 2, "{info}");
    assert_eq!(info["inbound_seen"], false, "nobody can dial in through the NAT: {info}");
    let peers = addrs_of(&natted_rpc("net_peers"));
    assert!(peers.iter().any(|p| p == "11.1.0.1:7333"), "joined through the seed: {peers:?}");
    assert!(natted.log_text().contains("seed resolved"), "{}", natted.log_text());
    eprintln!("NATed node: net_getInfo {info}, peers {peers:?}");

    // The public nodes know it only by the router's address.
    let _hub_in = hub.enter().unwrap();
    wait_until(Duration::from_secs(30), "a public node sees the NATed node as 11.9.0.1", || {
        Ok(nodes
            .iter()
            .any(|n| {
                n.peer_addrs().unwrap_or_default().contains(&"11.9.0.1:7333".parse::<SocketAddr>().unwrap())
            })
            .then_some(()))
    });
    for n in &nodes {
        let peers = addrs_of(&n.rpc("net_peers", json!([])).unwrap());
        assert!(peers.iter().all(|p| !is_private(p)), "a public node lists a private peer: {peers:?}");
        let info = n.rpc("net_getInfo", json!([])).unwrap();
        assert!(
            info["external"].as_array().unwrap().iter().all(|e| !is_private(e["addr"].as_str().unwrap())),
            "{info}"
        );
    }
    assert_eq!(nodes[0].rpc("net_getInfo", json!([])).unwrap()["inbound_seen"], true);
    // Their address books, saved at a clean stop, hold no private address.
    for n in nodes.iter_mut() {
        n.stop();
        let book = std::fs::read_to_string(n.data_dir.join("peers.json")).unwrap();
        let book: Value = serde_json::from_str(&book).unwrap();
        let known: Vec<String> = addrs_of(&book["addrs"]);
        assert!(!known.is_empty());
        assert!(known.iter().all(|a| !is_private(a)), "a public node learned a private address: {known:?}");
        eprintln!("public node {}: address book {known:?}", n.p2p_addr);
    }
}
