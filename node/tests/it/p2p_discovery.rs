//! Protocol version 2 at the protocol level, driven input by input with no sockets: each
//! side's `version` says where it sees the other; a node behind a NAT adopts the external
//! address that peers in two network groups report, advertises it and not its private
//! one, and never hands private addresses to a peer on the internet; a peer that sent
//! `relay: false` hears of no transfers or addresses.
#![allow(clippy::unwrap_used)] // test helpers fail loudly

use cairn_core::genesis::{dev_keys, Genesis};
use cairn_core::transaction::{public_key_of, Transfer};
use cairn_core::{Address, Amount, Txid};
use cairn_node::chain::Chain;
use cairn_node::mempool::Mempool;
use cairn_node::node::Node;
use cairn_node::p2p::addrbook::Snapshot;
use cairn_node::p2p::ledger::{NodeEvent, Origin};
use cairn_node::p2p::protocol::{Config, Input, Output, Protocol};
use cairn_node::p2p::wire::{InvItem, Message, NetAddr, Version, PROTOCOL_VERSION};
use cairn_node::p2p::PeerId;
use std::net::SocketAddr;
use std::sync::Arc;

const NOW: u64 = 1_700_000_000_000;

fn protocol(config: Config) -> Protocol {
    protocol_and_node(config).0
}

fn protocol_and_node(config: Config) -> (Protocol, Arc<Node>) {
    let genesis = Genesis::dev();
    let node = Node::new(Chain::open_in_memory(&genesis), Mempool::new(1 << 20), genesis);
    (Protocol::new(node.clone(), Config { listen_port: 7333, ..config }, Snapshot::default(), 1, NOW), node)
}

/// A transfer from dev account 0 admitted to `node`'s mempool (only pending transfers
/// are announced), and the node's event for it.
fn new_transfer(node: &Node) -> (Txid, NodeEvent) {
    let key = &dev_keys()[0];
    let tx = Transfer {
        chain_id: Genesis::dev().params.chain_id,
        nonce: 0,
        from: public_key_of(key),
        to: Address([7; 20]),
        amount: Amount(1),
        fee: Amount(1),
    }
    .sign(key)
    .unwrap();
    let (txid, event) = node.verify_and_submit(tx, Origin::Local, NOW).unwrap();
    assert!(matches!(event, NodeEvent::NewTransfer { .. }));
    (txid, event)
}

fn a(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn version(nonce: u64, your_addr: SocketAddr, relay: bool) -> Message {
    Message::Version(Version {
        protocol_version: PROTOCOL_VERSION,
        chain_id: Genesis::dev().params.chain_id,
        genesis_hash: Genesis::dev().hash(),
        best_height: 0,
        best_work: [0; 32],
        listen_port: 7333,
        nonce,
        your_addr: NetAddr::from_socket(your_addr),
        relay,
        user_agent: "test".into(),
    })
}

fn step(p: &mut Protocol, input: Input) -> Vec<Output> {
    p.step(NOW, input);
    p.drain()
}

/// Our `version` to `peer`, from the outputs of its connection.
fn sent_version(out: &[Output], peer: PeerId) -> Version {
    out.iter()
        .find_map(|o| match o {
            Output::Send(to, Message::Version(v)) if *to == peer => Some(v.clone()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no version to {peer} in {out:?}"))
}

/// A whole handshake; returns our version to the peer and the outputs after its verack.
fn handshake(
    p: &mut Protocol,
    peer: PeerId,
    addr: SocketAddr,
    inbound: bool,
    sees_us_at: SocketAddr,
    relay: bool,
) -> (Version, Vec<Output>) {
    let ours = sent_version(&step(p, Input::Connected { peer, addr, inbound }), peer);
    step(p, Input::Received { peer, msg: version(100 + peer, sees_us_at, relay) });
    (ours, step(p, Input::Received { peer, msg: Message::Verack }))
}

fn addrs_sent(out: &[Output], peer: PeerId) -> Vec<SocketAddr> {
    out.iter()
        .filter_map(|o| match o {
            Output::Send(to, Message::Addr(v)) if *to == peer => Some(v.iter().map(|n| n.to_socket())),
            _ => None,
        })
        .flatten()
        .collect()
}

#[test]
fn our_version_says_where_we_see_the_peer() {
    let mut p = protocol(Config::default());
    let out = step(&mut p, Input::Connected { peer: 1, addr: a("11.1.0.1:7333"), inbound: false });
    let v = sent_version(&out, 1);
    assert_eq!(v.protocol_version, 2);
    assert_eq!(v.your_addr.to_socket(), a("11.1.0.1:7333"));
    assert!(v.relay);
    let out = step(&mut p, Input::Connected { peer: 2, addr: a("11.2.0.9:50123"), inbound: true });
    assert_eq!(sent_version(&out, 2).your_addr.to_socket(), a("11.2.0.9:50123"));
}

#[test]
fn a_natted_node_adopts_the_address_two_groups_report_and_advertises_it() {
    // Behind a NAT: we dial public nodes, which see us as the router, 11.9.0.1, from
    // whatever port the router mapped.
    let mut p = protocol(Config::default());
    let (_, out) = handshake(&mut p, 1, a("11.1.0.1:7333"), false, a("11.9.0.1:40001"), true);
    assert!(addrs_sent(&out, 1).is_empty(), "one report is not enough: {out:?}");
    assert!(p.self_address().external(7333).is_empty());
    // A second peer in the same /16 is the same voice.
    let (_, out) = handshake(&mut p, 2, a("11.1.7.7:7333"), false, a("11.9.0.1:40002"), true);
    assert!(addrs_sent(&out, 2).is_empty(), "{out:?}");
    // A peer on our own LAN sees our private address: ignored.
    handshake(&mut p, 3, a("10.9.0.3:7333"), false, a("10.9.0.2:40003"), true);
    assert!(p.self_address().external(7333).is_empty());
    // A second group agrees: adopted, with our listen port, and told once to every
    // outbound peer (a public address may go to anyone).
    let (_, out) = handshake(&mut p, 4, a("11.2.0.1:7333"), false, a("11.9.0.1:40004"), true);
    assert_eq!(p.self_address().adopted().map(|(ip, n)| (ip.to_string(), n)), Some(("11.9.0.1".into(), 2)));
    for peer in [1, 2, 3, 4] {
        assert_eq!(addrs_sent(&out, peer), vec![a("11.9.0.1:7333")], "peer {peer}: {out:?}");
    }
    // A later outbound peer hears it after its handshake.
    let (_, out) = handshake(&mut p, 5, a("11.3.0.1:7333"), false, a("11.9.0.1:40005"), true);
    assert!(addrs_sent(&out, 5).contains(&a("11.9.0.1:7333")), "{out:?}");
    // It is never dialled as if it were someone else.
    step(
        &mut p,
        Input::Received { peer: 5, msg: Message::Addr(vec![NetAddr::from_socket(a("11.9.0.1:7333"))]) },
    );
    for i in 0..20 {
        p.step(NOW + i * 1_000, Input::Tick);
        assert!(!p.drain().contains(&Output::Connect(a("11.9.0.1:7333"))), "dialled ourselves");
    }
}

#[test]
fn the_operators_external_address_wins() {
    let mut p = protocol(Config { external_addrs: vec![a("12.0.0.1:9000")], ..Config::default() });
    let (_, out) = handshake(&mut p, 1, a("11.1.0.1:7333"), false, a("11.9.0.1:1"), true);
    assert_eq!(addrs_sent(&out, 1), vec![a("12.0.0.1:9000")]);
    handshake(&mut p, 2, a("11.2.0.1:7333"), false, a("11.9.0.1:2"), true);
    let ext: Vec<SocketAddr> = p.self_address().external(7333).into_iter().map(|(a, _)| a).collect();
    assert_eq!(ext, vec![a("12.0.0.1:9000")]);
}

#[test]
fn private_addresses_never_reach_a_public_peer() {
    let mut p = protocol(Config::default());
    // A LAN peer tells us of LAN and public nodes; we keep both.
    handshake(&mut p, 1, a("10.0.0.5:7333"), false, a("10.0.0.2:1"), true);
    let lan = [a("10.0.0.6:7333"), a("192.168.1.9:7333"), a("11.4.0.1:7333")];
    step(
        &mut p,
        Input::Received {
            peer: 1,
            msg: Message::Addr(lan.iter().map(|x| NetAddr::from_socket(*x)).collect()),
        },
    );
    assert!(lan.iter().all(|x| p.address_book().contains(x)));
    // A public peer's private addresses are not taken in.
    handshake(&mut p, 2, a("11.1.0.1:7333"), false, a("11.9.0.1:1"), true);
    let junk = [a("10.77.0.1:7333"), a("127.0.0.1:7333"), a("11.5.0.1:7333")];
    step(
        &mut p,
        Input::Received {
            peer: 2,
            msg: Message::Addr(junk.iter().map(|x| NetAddr::from_socket(*x)).collect()),
        },
    );
    assert!(!p.address_book().contains(&a("10.77.0.1:7333")));
    assert!(!p.address_book().contains(&a("127.0.0.1:7333")));
    assert!(p.address_book().contains(&a("11.5.0.1:7333")));
    // A public peer asking for addresses gets only the public ones; a LAN peer all.
    let out = step(&mut p, Input::Received { peer: 2, msg: Message::GetAddr });
    let told = addrs_sent(&out, 2);
    assert!(told.contains(&a("11.4.0.1:7333")) && told.contains(&a("11.5.0.1:7333")), "{told:?}");
    assert!(
        told.iter()
            .all(|x| !x.ip().to_string().starts_with("10.") && !x.ip().to_string().starts_with("192.168.")),
        "{told:?}"
    );
    let out = step(&mut p, Input::Received { peer: 1, msg: Message::GetAddr });
    assert!(addrs_sent(&out, 1).contains(&a("10.0.0.6:7333")), "{out:?}");
}

#[test]
fn a_peer_that_sent_relay_false_hears_no_transfers_or_addresses() {
    let (mut p, node) = protocol_and_node(Config::default());
    handshake(&mut p, 1, a("11.1.0.1:7333"), false, a("11.9.0.1:1"), false);
    handshake(&mut p, 2, a("11.2.0.1:7333"), false, a("11.9.0.1:2"), true);
    // Our external address (adopted from the two reports) goes to peer 2 only.
    assert_eq!(p.self_address().external(7333).len(), 1);
    // A new transfer is announced to peer 2 only.
    let (txid, event) = new_transfer(&node);
    let out = step(&mut p, Input::Node(event));
    let inv_to = |peer| out.contains(&Output::Send(peer, Message::Inv(vec![InvItem::Tx(txid)])));
    assert!(!inv_to(1) && inv_to(2), "{out:?}");
    // An inbound newcomer's address is relayed, but not to peer 1.
    let mut relayed_to_1 = false;
    for i in 0..10u64 {
        let peer = 10 + i;
        let (_, out) =
            handshake(&mut p, peer, a(&format!("11.{}.0.1:5000{i}", 20 + i)), true, a("11.9.0.1:7333"), true);
        relayed_to_1 |= !addrs_sent(&out, 1).is_empty();
    }
    assert!(!relayed_to_1, "addresses relayed over a block-relay-only link");
}

#[test]
fn a_block_relay_only_dial_says_relay_false_and_asks_no_addresses() {
    let (mut p, node) = protocol_and_node(Config::default());
    p.dial_block_relay(a("11.1.0.1:7333"));
    let out = p.drain();
    assert_eq!(out, vec![Output::Connect(a("11.1.0.1:7333"))]);
    let (ours, out) = handshake(&mut p, 1, a("11.1.0.1:7333"), false, a("11.9.0.1:1"), true);
    assert!(!ours.relay);
    assert!(!out.contains(&Output::Send(1, Message::GetAddr)), "{out:?}");
    let (txid, event) = new_transfer(&node);
    let out = step(&mut p, Input::Node(event));
    assert!(!out.contains(&Output::Send(1, Message::Inv(vec![InvItem::Tx(txid)]))), "{out:?}");
    // An ordinary dial is a full link.
    step(&mut p, Input::AddPeer(a("11.2.0.1:7333")));
    let (ours, out) = handshake(&mut p, 2, a("11.2.0.1:7333"), false, a("11.9.0.1:2"), true);
    assert!(ours.relay);
    assert!(out.contains(&Output::Send(2, Message::GetAddr)), "{out:?}");
}
