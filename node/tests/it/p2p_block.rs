//! `net_blockPeer` at the protocol level: a blocked listen address is dropped, refused at
//! the handshake and never dialled, while another node on the same IP is not affected;
//! unblocking lets it back in. The protocol is driven input by input, with no sockets.
#![allow(clippy::unwrap_used)] // test helpers fail loudly

use cairn_core::genesis::Genesis;
use cairn_node::chain::Chain;
use cairn_node::mempool::Mempool;
use cairn_node::node::Node;
use cairn_node::p2p::addrbook::Snapshot;
use cairn_node::p2p::protocol::{Config, DisconnectReason, Input, Output, Protocol};
use cairn_node::p2p::wire::{Message, Version, PROTOCOL_VERSION};
use cairn_node::p2p::PeerId;
use std::net::SocketAddr;

const NOW: u64 = 1_700_000_000_000;

fn protocol() -> Protocol {
    let genesis = Genesis::dev();
    let node = Node::new(Chain::open_in_memory(&genesis), Mempool::new(1 << 20), genesis);
    Protocol::new(node, Config { listen_port: 7000, ..Config::default() }, Snapshot::default(), 1, NOW)
}

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn version(listen_port: u16, nonce: u64) -> Message {
    Message::Version(Version {
        protocol_version: PROTOCOL_VERSION,
        chain_id: Genesis::dev().params.chain_id,
        genesis_hash: Genesis::dev().hash(),
        best_height: 0,
        best_work: [0; 32],
        listen_port,
        nonce,
        your_addr: cairn_node::p2p::wire::NetAddr::from_socket(([127, 0, 0, 1], 7000).into()),
        relay: true,
        user_agent: "test".into(),
    })
}

fn step(p: &mut Protocol, input: Input) -> Vec<Output> {
    p.step(NOW, input);
    p.drain()
}

/// An inbound connection from `source` that announces `listen_port`; returns the outputs
/// that answer its version.
fn inbound(p: &mut Protocol, peer: PeerId, source: u16, listen_port: u16) -> Vec<Output> {
    step(p, Input::Connected { peer, addr: addr(source), inbound: true });
    step(p, Input::Received { peer, msg: version(listen_port, 100 + peer) })
}

fn dials(outputs: &[Output]) -> Vec<SocketAddr> {
    outputs.iter().filter_map(|o| if let Output::Connect(a) = o { Some(*a) } else { None }).collect()
}

fn listed(p: &Protocol) -> Vec<String> {
    p.peer_infos().into_iter().map(|i| i.addr).collect()
}

#[test]
fn a_blocked_listen_address_is_dropped_refused_and_not_dialled_until_unblocked() {
    let mut p = protocol();
    // A ready inbound peer from 127.0.0.1:50001 that listens on 7001.
    let out = inbound(&mut p, 1, 50_001, 7001);
    assert!(out.contains(&Output::Send(1, Message::Verack)), "{out:?}");
    step(&mut p, Input::Received { peer: 1, msg: Message::Verack });
    assert_eq!(listed(&p), vec!["127.0.0.1:7001"]);

    // Blocking its listen address drops it.
    let out = step(&mut p, Input::BlockPeer(addr(7001)));
    assert!(out.contains(&Output::Disconnect(1, DisconnectReason::Blocked)), "{out:?}");
    assert!(listed(&p).is_empty());
    assert_eq!(p.blocked_peers(), vec![addr(7001)]);

    // It comes back from another source port: refused at its version.
    let out = inbound(&mut p, 2, 50_002, 7001);
    assert!(out.contains(&Output::Disconnect(2, DisconnectReason::Blocked)), "{out:?}");
    assert!(!out.contains(&Output::Send(2, Message::Verack)), "{out:?}");
    // Another node on the same IP is welcome.
    let out = inbound(&mut p, 3, 50_003, 7002);
    assert!(out.contains(&Output::Send(3, Message::Verack)), "{out:?}");

    // Never dialled: not when asked, not by outbound maintenance (the address is in the
    // book since the peer announced it).
    assert!(dials(&step(&mut p, Input::AddPeer(addr(7001)))).is_empty());
    for i in 0..50 {
        p.step(NOW + i * 1_000, Input::Tick);
        assert!(!dials(&p.drain()).contains(&addr(7001)), "dialled a blocked address");
    }

    // Unblocked: dialled again on request.
    step(&mut p, Input::UnblockPeer(addr(7001)));
    assert!(p.blocked_peers().is_empty());
    assert_eq!(dials(&step(&mut p, Input::AddPeer(addr(7001)))), vec![addr(7001)]);
}

#[test]
fn a_dial_in_flight_when_blocked_is_dropped_on_connect() {
    let mut p = protocol();
    assert_eq!(dials(&step(&mut p, Input::AddPeer(addr(7005)))), vec![addr(7005)]);
    step(&mut p, Input::BlockPeer(addr(7005)));
    let out = step(&mut p, Input::Connected { peer: 9, addr: addr(7005), inbound: false });
    assert_eq!(out, vec![Output::Disconnect(9, DisconnectReason::Blocked)]);
    assert!(listed(&p).is_empty());
}
