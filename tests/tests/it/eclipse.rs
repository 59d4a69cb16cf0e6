//! Eclipse resistance against real node processes (docs/SECURITY.md, "Eclipse").
//!
//! Network groups on loopback: all of 127.0.0.0/8 is on `lo`, and a node's network group
//! of an IPv4 address is its /16, so 127.10.0.1 and 127.11.0.1 are two groups and
//! 127.66.3.1 and 127.66.4.1 one. Honest nodes listen on addresses in groups of their
//! own; the attacker connects from (and advertises) addresses in a few groups of its own.
//!
//! - `address_flood_and_restart_keep_honest_outbound_links`: an attacker with 24
//!   connections from 2 groups answers the victim's `getaddr` with 250 addresses in 16
//!   groups (the victim asks while its book is small) and sends 20 unasked on each
//!   connection; the victim keeps at most the documented share in
//!   its new table, none in tried, and after a restart with no `--peer` it dials honest
//!   nodes again.
//! - `inbound_eviction_keeps_the_peers_that_gave_blocks`: inbound slots full, two peers
//!   that delivered blocks stay connected while 20 newcomers arrive and evict others.

use cairn_core::genesis::Genesis;
use cairn_tests::adversary::{cmd, magic_of, next_blocks, Peer, VersionFields};
use cairn_tests::{wait_until, write_fast_genesis, NodeOptions, NodeProcess};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// `net_peers` as (address, inbound).
fn peers(node: &NodeProcess) -> anyhow::Result<Vec<(SocketAddr, bool)>> {
    let v = node.rpc("net_peers", json!([]))?;
    Ok(v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|p| Some((p["addr"].as_str()?.parse().ok()?, p["inbound"].as_bool()?)))
                .collect()
        })
        .unwrap_or_default())
}

fn second_octet(ip: IpAddr) -> u8 {
    match ip {
        IpAddr::V4(v4) => v4.octets()[1],
        IpAddr::V6(_) => 0,
    }
}

/// The `n` addresses connection `conn` of the attacker advertises: distinct ones, spread
/// over 16 groups (127.66 to 127.81), where nobody listens.
fn attacker_addrs(conn: usize, n: usize) -> Vec<SocketAddr> {
    (0..n)
        .map(|k| {
            let i = conn * n + k;
            let ip: IpAddr =
                [127, 66 + (i % 16) as u8, (i / 16 / 250) as u8, (i / 16 % 250) as u8 + 1].into();
            SocketAddr::new(ip, 7333)
        })
        .collect()
}

#[test]
fn address_flood_and_restart_keep_honest_outbound_links() {
    let tmp = tempfile::tempdir().unwrap();
    let path = write_fast_genesis(tmp.path(), 1000).unwrap();
    let genesis = Genesis::from_json(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let magic = magic_of(&genesis);
    let opts = |listen: &str, peers: Vec<SocketAddr>| NodeOptions {
        genesis: Some(path.clone()),
        listen: Some(listen.parse().unwrap()),
        peers,
        ..NodeOptions::default()
    };
    let opts_listen_only = || NodeOptions { genesis: Some(path.clone()), ..NodeOptions::default() };
    // Three honest nodes in three groups; the victim knows only the first. They dial
    // only each other (`--connect`): an honest node that learned the restarted victim's
    // new address and dialled it first made the victim's own dial to it a duplicate,
    // dropped for theirs by the nonce rule, and left the victim with that node as an
    // inbound peer only (a CI run failed that way). Each listens on its own loopback
    // address, so a port found free there stays free until it binds it.
    let free_on = |ip: &str| std::net::TcpListener::bind((ip, 0)).unwrap().local_addr().unwrap();
    let h1_addr = free_on("127.11.0.1");
    let connect = |to: SocketAddr| NodeOptions {
        extra: vec!["--connect".into(), to.to_string()],
        ..opts_listen_only()
    };
    let h0 = NodeProcess::start(
        &tmp.path().join("h0"),
        &NodeOptions { listen: Some("127.10.0.1:0".parse().unwrap()), ..connect(h1_addr) },
    )
    .unwrap();
    let h1 = NodeProcess::start(
        &tmp.path().join("h1"),
        &NodeOptions { listen: Some(h1_addr), ..connect(h0.p2p_addr) },
    )
    .unwrap();
    let h2 = NodeProcess::start(
        &tmp.path().join("h2"),
        &NodeOptions { listen: Some("127.12.0.1:0".parse().unwrap()), ..connect(h0.p2p_addr) },
    )
    .unwrap();
    let honest: BTreeSet<SocketAddr> = [h0.p2p_addr, h1.p2p_addr, h2.p2p_addr].into();
    // The victim has no --peer (seeds are never forgotten, which would prove nothing):
    // an honest peer in a fourth group tells it of the three, and it dials them.
    let victim_dir = tmp.path().join("victim");
    let mut victim = NodeProcess::start(&victim_dir, &opts("127.0.0.1:0", vec![])).unwrap();
    let mut gossip = Peer::connect_from("127.13.0.1:0".parse().unwrap(), victim.p2p_addr, magic).unwrap();
    gossip.handshake(&VersionFields::for_genesis(&genesis, [0; 32], "honest gossip")).unwrap();
    gossip.expect(cmd::GETADDR, Duration::from_secs(5)).unwrap();
    let list: Vec<SocketAddr> = honest.iter().copied().collect();
    gossip.send(cmd::ADDR, &cairn_tests::adversary::addr_payload(&list)).unwrap();
    wait_until(Duration::from_secs(30), "the victim's outbound links to the three honest nodes", || {
        let p = peers(&victim)?;
        Ok(honest.iter().all(|h| p.iter().any(|(a, inbound)| a == h && !inbound)).then_some(()))
    });
    gossip.close();

    // The flood: 24 inbound connections from 2 groups (127.66 and 127.67), each
    // answering the victim's getaddr with 250 addresses and sending 20 more unasked.
    const CONNS: usize = 24;
    let mut conns = Vec::new();
    let mut offered = 0;
    for c in 0..CONNS {
        let local: SocketAddr = format!("127.{}.{}.1:0", 66 + c % 2, c / 2 + 1).parse().unwrap();
        let Ok(mut p) = Peer::connect_from(local, victim.p2p_addr, magic) else { continue };
        let version = VersionFields::for_genesis(&genesis, [0; 32], "eclipse");
        if p.handshake(&version).is_err() {
            continue; // refused: inbound slots full of protected peers
        }
        let addrs = attacker_addrs(c, 270);
        if p.expect(cmd::GETADDR, Duration::from_secs(2)).is_ok() {
            p.send(cmd::ADDR, &cairn_tests::adversary::addr_payload(&addrs[..250])).unwrap();
            offered += 250;
        }
        let _ = p.send(cmd::ADDR, &cairn_tests::adversary::addr_payload(&addrs[250..]));
        offered += 20;
        conns.push(p);
    }
    // The victim asks inbound peers for addresses only while its book is small (under
    // 250 entries), so most connections get in only their 20 unsolicited ones.
    assert!(offered >= 900, "the flood reached the victim: {offered} addresses");
    // Every connection's addresses were handled once its ping comes back.
    for p in conns.iter_mut() {
        let _ = p.send(cmd::PING, &7u64.to_le_bytes());
        let _ = p.expect(cmd::PONG, Duration::from_secs(10));
    }

    // A clean shutdown saves the book (and the anchors); what does the victim keep?
    victim.stop();
    drop(conns);
    let book: Value =
        serde_json::from_str(&std::fs::read_to_string(victim_dir.join("peers.json")).unwrap()).unwrap();
    let entries = book["addrs"].as_array().unwrap();
    let is_attacker = |e: &Value| {
        let a: SocketAddr = e["addr"].as_str().unwrap().parse().unwrap();
        (66..=81).contains(&second_octet(a.ip()))
    };
    let tried = |e: &&Value| e["tried"].as_bool() == Some(true);
    let attacker_new = entries.iter().filter(|e| is_attacker(e) && !tried(e)).count();
    let attacker_tried = entries.iter().filter(|e| is_attacker(e) && tried(e)).count();
    let all_tried = entries.iter().filter(tried).count();
    eprintln!(
        "eclipse figures: {offered} attacker addresses offered over {} connections from 2 groups; \
         kept in new {attacker_new}, in tried {attacker_tried} of {all_tried}; book {} entries",
        CONNS,
        entries.len()
    );
    // Two source groups reach at most 2 x 8 buckets of 32 (docs/SECURITY.md).
    assert!(attacker_new <= 2 * 8 * 32, "{attacker_new} attacker addresses in new");
    assert_eq!(attacker_tried, 0, "addresses nobody answers never reach tried");
    assert!(book["key"].as_str().is_some_and(|k| k.len() == 64), "the bucket key is saved");

    // Restart with no --peer: the victim finds honest nodes again from its book.
    let restarted = std::time::Instant::now();
    let mut victim = NodeProcess::start(&victim_dir, &opts("127.0.0.1:0", vec![])).unwrap();
    let reached =
        wait_until(Duration::from_secs(60), "outbound links to honest nodes after the restart", || {
            let out: BTreeSet<SocketAddr> = peers(&victim)?
                .into_iter()
                .filter(|(a, inbound)| !inbound && honest.contains(a))
                .map(|(a, _)| a)
                .collect();
            Ok((out.len() >= 2).then_some(out))
        });
    eprintln!(
        "after the restart: outbound to {} honest nodes within {:?}",
        reached.len(),
        restarted.elapsed()
    );
    assert!(!victim_dir.join("anchors.json").exists(), "anchors are read once");
    victim.stop();
}

#[test]
fn inbound_eviction_keeps_the_peers_that_gave_blocks() {
    let tmp = tempfile::tempdir().unwrap();
    let path = write_fast_genesis(tmp.path(), 1000).unwrap();
    let genesis = Genesis::from_json(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let magic = magic_of(&genesis);
    // --max-peers 40: 8 outbound slots, 32 inbound; 2 of them protected for blocks.
    let victim = NodeProcess::start(
        &tmp.path().join("victim"),
        &NodeOptions {
            genesis: Some(path.clone()),
            extra: vec!["--max-peers".into(), "40".into()],
            ..NodeOptions::default()
        },
    )
    .unwrap();
    let version = || VersionFields::for_genesis(&genesis, [0; 32], "eviction");
    // Two peers that deliver a new block each.
    let mut givers = Vec::new();
    for g in 0..2u8 {
        let local: SocketAddr = format!("127.{}.0.1:0", 20 + g).parse().unwrap();
        let mut p = Peer::connect_from(local, victim.p2p_addr, magic).unwrap();
        p.handshake(&version()).unwrap();
        let blocks = next_blocks(&victim.rpc_url, &genesis, &[vec![]]).unwrap();
        let sent = p.serve_blocks(&blocks, Duration::from_secs(20)).unwrap();
        assert_eq!(sent.len(), 1);
        let want = u64::from(g) + 1;
        wait_until(Duration::from_secs(20), "the block accepted", || {
            Ok((victim.height()? >= want).then_some(()))
        });
        givers.push(p);
    }
    // Fill the other 30 slots, then 20 newcomers: each evicts someone.
    let mut others = Vec::new();
    for i in 0..50usize {
        let local: SocketAddr = format!("127.{}.{}.1:0", 30 + i % 10, i / 10 + 1).parse().unwrap();
        let Ok(mut p) = Peer::connect_from(local, victim.p2p_addr, magic) else { continue };
        if p.handshake(&version()).is_ok() {
            others.push(p);
        }
    }
    let giver_addrs: Vec<SocketAddr> = givers.iter().map(|p| p.local).collect();
    let listed = wait_until(Duration::from_secs(20), "newcomers admitted by eviction", || {
        let p = peers(&victim)?;
        let newcomers = p.iter().filter(|(a, _)| (30..40).contains(&second_octet(a.ip()))).count();
        Ok((p.len() <= 32 && newcomers >= 30).then_some(p))
    });
    for g in &giver_addrs {
        assert!(listed.iter().any(|(a, _)| a == g), "block giver {g} was evicted: {listed:?}");
    }
    eprintln!("eviction: {} handshakes after the givers, {} inbound listed", others.len(), listed.len());
    assert!(others.len() >= 40, "newcomers were admitted (by evicting others): {}", others.len());
}
