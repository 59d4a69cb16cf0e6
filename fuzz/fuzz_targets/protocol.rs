//! The peer protocol state machine (node/src/p2p/protocol/) fed arbitrary sequences of
//! inputs: connections opening and closing, clock ticks, handshakes, and messages
//! decoded from fuzz bytes (or the bad-frame report when they do not decode), for up to
//! four peers, against a real in-memory node. Never a panic, and every message the node
//! sends fits its command's frame limit (stored blocks aside: the driver reads those).
#![no_main]

use cairn_core::genesis::Genesis;
use cairn_node::chain::Chain;
use cairn_node::mempool::Mempool;
use cairn_node::node::Node;
use cairn_node::p2p::addrbook::Snapshot;
use cairn_node::p2p::protocol::{Config, DisconnectReason, Input, Output, Protocol};
use cairn_node::p2p::wire::{max_payload, Message, Version, WireError, PROTOCOL_VERSION};
use libfuzzer_sys::fuzz_target;
use std::net::SocketAddr;

fn take<'a>(data: &mut &'a [u8], n: usize) -> &'a [u8] {
    let n = n.min(data.len());
    let (head, tail) = data.split_at(n);
    *data = tail;
    head
}

fn byte(data: &mut &[u8]) -> u8 {
    take(data, 1).first().copied().unwrap_or(0)
}

fuzz_target!(|data: &[u8]| {
    let mut genesis = Genesis::dev();
    genesis.params.initial_target = genesis.params.pow_limit;
    let chain = Chain::open_in_memory(&genesis);
    let node = Node::new(chain, Mempool::new(1 << 20), genesis.clone());
    let start = genesis.params.timestamp_ms + 60_000;
    let mut proto = Protocol::new(node, Config::default(), Snapshot::default(), 7, start);
    let mut now = start;
    let mut data = data;
    let mut steps = 0;
    while !data.is_empty() && steps < 256 {
        steps += 1;
        let op = byte(&mut data);
        let peer = u64::from(op >> 4) % 4 + 1;
        let addr = SocketAddr::from(([127, 0, 0, 1], 7000 + peer as u16));
        let input = match op & 0x0f {
            0 => Input::Connected { peer, addr, inbound: op & 0x80 != 0 },
            1 => Input::Disconnected { peer, reason: DisconnectReason::Closed },
            2 => {
                now += 1000 * u64::from(byte(&mut data));
                Input::Tick
            }
            3 => {
                let mut best_work = [0u8; 32];
                best_work[31] = byte(&mut data);
                Input::Received {
                    peer,
                    msg: Message::Version(Version {
                        protocol_version: PROTOCOL_VERSION,
                        chain_id: genesis.params.chain_id,
                        genesis_hash: genesis.hash(),
                        best_height: u64::from(byte(&mut data)),
                        best_work,
                        listen_port: 7000 + peer as u16,
                        nonce: peer,
                        your_addr: cairn_node::p2p::wire::NetAddr::from_socket(([127, 0, 0, 1], 7000).into()),
                        relay: true,
                        user_agent: "fuzz".into(),
                    }),
                }
            }
            4 => Input::Received { peer, msg: Message::Verack },
            5 => Input::BadFrame { peer, error: WireError::UnknownCommand(200) },
            6 => Input::AddPeer(SocketAddr::from(([127, 0, 0, 2], u16::from(byte(&mut data)) + 1))),
            _ => {
                let command = byte(&mut data) % 17;
                let len = u16::from_le_bytes([byte(&mut data), byte(&mut data)]) as usize;
                let payload = take(&mut data, len);
                match Message::decode_payload(command, payload) {
                    Ok(msg) => Input::Received { peer, msg },
                    Err(error) => Input::BadFrame { peer, error },
                }
            }
        };
        proto.step(now, input);
        for out in proto.drain() {
            let (name, len, max) = match out {
                Output::Send(_, msg) => {
                    (msg.name(), msg.encode_payload().len(), max_payload(msg.command()).expect("known command"))
                }
                _ => continue,
            };
            assert!(len <= max, "the node sent a {name} of {len} bytes (limit {max})");
        }
    }
});
