//! Model-based test of the peer protocol's connection state machine: random sequences of
//! connections opening and closing (inbound and outbound, up to four at once), `version`
//! and `verack` in and out of order, pings and pongs with edge nonces (0, 1, `u64::MAX`,
//! the one outstanding), bad frames, and the clock jumping by edge amounts (0, 1, each
//! timeout and one past it, the ban duration, `u64::MAX`), against a real in-memory node
//! behind the `Ledger` door.
//!
//! The reference model here is the handshake and liveness as docs/PROTOCOL.md states
//! them: a peer is ready once its `version` was answered with `verack` and its own
//! `verack` came after; a second `version`, a `verack` out of order or any other message
//! before the handshake drops it; repeated handshake messages after it cost 20 points and
//! an unsolicited pong 10, and 100 points ban and drop; a bad frame drops (and, unless it
//! is only a wrong magic, bans) it; a banned address is refused; inbound connections past
//! `max_inbound` are refused; the self-connection and wrong-network rules; of two
//! connections to one node (same nonce) exactly one is dropped; and on each tick the
//! handshake, ping and headers timeouts drop, and an idle ready peer is pinged.
//!
//! After every step: each drop the model requires happened and no other did, every
//! message went to a connected peer (and, past `version`/`verack`, to a ready one) and
//! fits its frame limit, and the protocol's ready peers are exactly the model's.
//!
//! Cases: `PROPTEST_CASES` (default [`DEFAULT_CASES`]).
#![allow(clippy::unwrap_used)] // test helpers fail loudly

use cairn_core::genesis::Genesis;
use cairn_node::chain::Chain;
use cairn_node::mempool::Mempool;
use cairn_node::node::Node;
use cairn_node::p2p::addrbook::Snapshot;
use cairn_node::p2p::protocol::limits::BAN_SCORE;
use cairn_node::p2p::protocol::{Config, DisconnectReason, Input, Output, Protocol};
use cairn_node::p2p::wire::{max_payload, Message, Version, WireError, PROTOCOL_VERSION};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};

const DEFAULT_CASES: u32 = 256;
const SLOTS: u8 = 4;
const MAX_INBOUND: usize = 2;

/// What the cases reached, printed after the run so a reader sees the test was not
/// trivially green: handshakes completed, drops, pings answered, nonce twins, bans.
static SEEN: [AtomicUsize; 5] = [const { AtomicUsize::new(0) }; 5];
const READY: usize = 0;
const DROPS: usize = 1;
const PONGED: usize = 2;
const TWINS: usize = 3;
const BANS: usize = 4;

fn seen(what: usize) {
    SEEN[what].fetch_add(1, Ordering::Relaxed);
}

#[derive(Clone, Copy, Debug)]
enum VersionNonce {
    Fixed(u64),
    Ours,
    /// Different for every slot.
    Own,
}

#[derive(Clone, Copy, Debug)]
enum PongNonce {
    Fixed(u64),
    Outstanding,
}

#[derive(Clone, Debug)]
enum Op {
    Connect {
        slot: u8,
        inbound: bool,
    },
    Version {
        slot: u8,
        nonce: VersionNonce,
        height: u64,
        work: [u8; 32],
        listen_port: u16,
        wrong_chain: bool,
    },
    Verack {
        slot: u8,
    },
    Ping {
        slot: u8,
        nonce: u64,
    },
    Pong {
        slot: u8,
        nonce: PongNonce,
    },
    BadFrame {
        slot: u8,
        wrong_magic: bool,
    },
    Close {
        slot: u8,
    },
    /// The clock moves on by this many ms (or, as `None`, to `u64::MAX`), then a tick.
    Advance(Option<u64>),
    /// A whole handshake: `Connect`, a `Version` with the slot's own nonce (or, as a
    /// `twin`, nonce 0, as a second connection to one node would), `Verack`.
    Join {
        slot: u8,
        inbound: bool,
        twin: bool,
    },
}

/// The ops with each [`Op::Join`] spelled out as its three steps.
fn expand(ops: &[Op]) -> Vec<Op> {
    ops.iter()
        .flat_map(|op| match op.clone() {
            Op::Join { slot, inbound, twin } => vec![
                Op::Connect { slot, inbound },
                Op::Version {
                    slot,
                    nonce: if twin { VersionNonce::Fixed(0) } else { VersionNonce::Own },
                    height: 0,
                    work: [0; 32],
                    listen_port: 0,
                    wrong_chain: false,
                },
                Op::Verack { slot },
            ],
            other => vec![other],
        })
        .collect()
}

fn edge_u64() -> impl Strategy<Value = u64> {
    prop_oneof![Just(0), Just(1), Just(u64::MAX), Just(u64::MAX - 1), any::<u64>()]
}

fn op() -> impl Strategy<Value = Op> {
    let c = Config::default();
    let slot = 0..SLOTS;
    let mut one = [0u8; 32];
    one[31] = 1;
    let work = prop_oneof![Just([0u8; 32]), Just(one), Just([0xff; 32])];
    let nonce = prop_oneof![
        Just(VersionNonce::Fixed(0)),
        Just(VersionNonce::Fixed(1)),
        Just(VersionNonce::Fixed(u64::MAX)),
        Just(VersionNonce::Ours),
        Just(VersionNonce::Own),
        Just(VersionNonce::Own),
    ];
    let advance = prop_oneof![
        Just(Some(0)),
        Just(Some(1)),
        Just(Some(c.handshake_timeout_ms)),
        Just(Some(c.handshake_timeout_ms + 1)),
        Just(Some(c.ping_interval_ms)),
        Just(Some(c.ping_timeout_ms + 1)),
        Just(Some(c.headers_timeout_ms + 1)),
        Just(Some(c.ban_duration_ms + 1)),
        Just(Some(u64::MAX / 2)),
        Just(None),
        (0..60_000u64).prop_map(Some),
    ];
    prop_oneof![
        3 => (slot.clone(), any::<bool>()).prop_map(|(slot, inbound)| Op::Connect { slot, inbound }),
        3 => (slot.clone(), nonce, edge_u64(), work, prop_oneof![Just(0u16), Just(1), Just(u16::MAX)], prop::bool::weighted(0.1))
            .prop_map(|(slot, nonce, height, work, listen_port, wrong_chain)| Op::Version {
                slot, nonce, height, work, listen_port, wrong_chain
            }),
        3 => slot.clone().prop_map(|slot| Op::Verack { slot }),
        1 => (slot.clone(), edge_u64()).prop_map(|(slot, nonce)| Op::Ping { slot, nonce }),
        2 => (slot.clone(), prop_oneof![3 => Just(PongNonce::Outstanding), 1 => edge_u64().prop_map(PongNonce::Fixed)])
            .prop_map(|(slot, nonce)| Op::Pong { slot, nonce }),
        1 => (slot.clone(), any::<bool>()).prop_map(|(slot, wrong_magic)| Op::BadFrame { slot, wrong_magic }),
        1 => slot.prop_map(|slot| Op::Close { slot }),
        3 => advance.prop_map(Op::Advance),
        4 => (0..SLOTS, any::<bool>(), prop::bool::weighted(0.3))
            .prop_map(|(slot, inbound, twin)| Op::Join { slot, inbound, twin }),
    ]
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Handshake {
    AwaitingVersion,
    /// The peer's `version` was answered with our `verack`.
    AwaitingVerack,
    Ready,
}

#[derive(Clone, Debug)]
struct ModelPeer {
    slot: u8,
    addr: SocketAddr,
    inbound: bool,
    handshake: Handshake,
    /// When the connection came up (the handshake timeout runs from it).
    since_ms: u64,
    version_nonce: Option<u64>,
    score: u32,
    /// `Some(nonce, sent)` while a ping is unanswered; otherwise idle since `idle_ms`.
    ping: Option<(u64, u64)>,
    idle_ms: u64,
    headers_asked_ms: Option<u64>,
}

/// The model: live connections by peer id, bans by address, the clock.
struct Model {
    peers: BTreeMap<u64, ModelPeer>,
    bans: HashMap<SocketAddr, u64>,
    now: u64,
}

impl Model {
    fn by_slot(&self, slot: u8) -> Option<u64> {
        self.peers.iter().find(|(_, p)| p.slot == slot).map(|(id, _)| *id)
    }
    fn ready(&self) -> Vec<u64> {
        self.peers.iter().filter(|(_, p)| p.handshake == Handshake::Ready).map(|(id, _)| *id).collect()
    }
    fn ban(&mut self, addr: SocketAddr) {
        self.bans.insert(addr, self.now.saturating_add(Config::default().ban_duration_ms));
    }
    fn is_banned(&self, addr: &SocketAddr) -> bool {
        self.bans.get(addr).is_some_and(|until| *until > self.now)
    }
}

/// What the model says about drops in one step.
#[derive(Default)]
struct Expect {
    must_drop: BTreeSet<u64>,
    /// Of these, exactly one is dropped (two connections to one node).
    exactly_one_of: Option<(u64, u64)>,
    /// Must be sent to this peer, in this step.
    must_send: Vec<(u64, Message)>,
    /// Ready idle peers due a ping this tick.
    must_ping: BTreeSet<u64>,
    /// A connection taken in: our `version` must go to it.
    must_send_version: Option<u64>,
}

fn run(ops: &[Op]) -> Result<(), TestCaseError> {
    let mut genesis = Genesis::dev();
    genesis.params.initial_target = genesis.params.pow_limit;
    let node = Node::new(Chain::open_in_memory(&genesis), Mempool::new(1 << 20), genesis.clone());
    let config = Config { max_inbound: MAX_INBOUND, ..Config::default() };
    let c = config.clone();
    let start = genesis.params.timestamp_ms + 60_000;
    let mut proto = Protocol::new(node, config, Snapshot::default(), 7, start);
    let ours = proto.nonce();
    let mut m = Model { peers: BTreeMap::new(), bans: HashMap::new(), now: start };
    let mut next_id = 1u64;

    for op in &expand(ops) {
        let mut e = Expect::default();
        // The input, and the model's transition of the peer it concerns.
        let input = match op.clone() {
            Op::Connect { slot, inbound } => {
                if m.by_slot(slot).is_some() {
                    continue;
                }
                let ip = if inbound { [127, 0, 0, 1] } else { [127, 0, 0, 2] };
                let addr = SocketAddr::from((ip, 7000 + u16::from(slot)));
                let peer = next_id;
                next_id += 1;
                let inbound_now = m.peers.values().filter(|p| p.inbound).count();
                if m.is_banned(&addr) || (inbound && inbound_now >= MAX_INBOUND) {
                    e.must_drop.insert(peer);
                } else {
                    e.must_send_version = Some(peer);
                }
                m.peers.insert(
                    peer,
                    ModelPeer {
                        slot,
                        addr,
                        inbound,
                        handshake: Handshake::AwaitingVersion,
                        since_ms: m.now,
                        version_nonce: None,
                        score: 0,
                        ping: None,
                        idle_ms: m.now,
                        headers_asked_ms: None,
                    },
                );
                Input::Connected { peer, addr, inbound }
            }
            Op::Version { slot, nonce, height, work, listen_port, wrong_chain } => {
                let Some(peer) = m.by_slot(slot) else { continue };
                let nonce = match nonce {
                    VersionNonce::Fixed(n) => n,
                    VersionNonce::Ours => ours,
                    VersionNonce::Own => 1_000 + u64::from(slot),
                };
                let p = m.peers.get_mut(&peer).unwrap();
                match p.handshake {
                    Handshake::AwaitingVerack => {
                        e.must_drop.insert(peer);
                    }
                    Handshake::Ready => {
                        p.score += 20;
                        if p.score >= BAN_SCORE {
                            e.must_drop.insert(peer);
                        }
                    }
                    Handshake::AwaitingVersion if wrong_chain || nonce == ours => {
                        e.must_drop.insert(peer);
                    }
                    Handshake::AwaitingVersion => {
                        p.version_nonce = Some(nonce);
                        p.handshake = Handshake::AwaitingVerack;
                        let twin = m
                            .peers
                            .iter()
                            .find(|(id, o)| **id != peer && o.version_nonce == Some(nonce))
                            .map(|(id, _)| *id);
                        match twin {
                            Some(other) => {
                                seen(TWINS);
                                e.exactly_one_of = Some((peer, other))
                            }
                            None => e.must_send.push((peer, Message::Verack)),
                        }
                    }
                }
                let chain_id = genesis.params.chain_id ^ u32::from(wrong_chain);
                Input::Received {
                    peer,
                    msg: Message::Version(Version {
                        protocol_version: PROTOCOL_VERSION,
                        chain_id,
                        genesis_hash: genesis.hash(),
                        best_height: height,
                        best_work: work,
                        listen_port,
                        nonce,
                        your_addr: cairn_node::p2p::wire::NetAddr::from_socket(([127, 0, 0, 1], 7000).into()),
                        relay: true,
                        user_agent: "model".into(),
                    }),
                }
            }
            Op::Verack { slot } => {
                let Some(peer) = m.by_slot(slot) else { continue };
                let now = m.now;
                let p = m.peers.get_mut(&peer).unwrap();
                match p.handshake {
                    Handshake::AwaitingVersion => {
                        e.must_drop.insert(peer);
                    }
                    Handshake::AwaitingVerack => {
                        p.handshake = Handshake::Ready;
                        p.idle_ms = now;
                        seen(READY);
                    }
                    Handshake::Ready => {
                        p.score += 20;
                        if p.score >= BAN_SCORE {
                            e.must_drop.insert(peer);
                        }
                    }
                }
                Input::Received { peer, msg: Message::Verack }
            }
            Op::Ping { slot, nonce } => {
                let Some(peer) = m.by_slot(slot) else { continue };
                if m.peers[&peer].handshake == Handshake::Ready {
                    e.must_send.push((peer, Message::Pong(nonce)));
                } else {
                    e.must_drop.insert(peer);
                }
                Input::Received { peer, msg: Message::Ping(nonce) }
            }
            Op::Pong { slot, nonce } => {
                let Some(peer) = m.by_slot(slot) else { continue };
                let p = m.peers.get_mut(&peer).unwrap();
                let n = match nonce {
                    PongNonce::Fixed(n) => n,
                    PongNonce::Outstanding => p.ping.map_or(0, |(n, _)| n),
                };
                if p.handshake != Handshake::Ready {
                    e.must_drop.insert(peer);
                } else {
                    match p.ping {
                        Some((outstanding, sent)) if outstanding == n => {
                            seen(PONGED);
                            p.ping = None;
                            p.idle_ms = sent;
                        }
                        _ => {
                            p.score += 10;
                            if p.score >= BAN_SCORE {
                                e.must_drop.insert(peer);
                            }
                        }
                    }
                }
                Input::Received { peer, msg: Message::Pong(n) }
            }
            Op::BadFrame { slot, wrong_magic } => {
                let Some(peer) = m.by_slot(slot) else { continue };
                e.must_drop.insert(peer);
                let error = if wrong_magic {
                    WireError::BadMagic([1, 2, 3, 4])
                } else {
                    WireError::UnknownCommand(200)
                };
                Input::BadFrame { peer, error }
            }
            Op::Close { slot } => {
                let Some(peer) = m.by_slot(slot) else { continue };
                m.peers.remove(&peer);
                Input::Disconnected { peer, reason: DisconnectReason::Closed }
            }
            Op::Join { .. } => unreachable!("expanded"),
            Op::Advance(by) => {
                m.now = by.map_or(u64::MAX, |d| m.now.saturating_add(d));
                for (id, p) in &m.peers {
                    let elapsed = |t: u64| m.now.saturating_sub(t);
                    if p.handshake != Handshake::Ready {
                        if elapsed(p.since_ms) > c.handshake_timeout_ms {
                            e.must_drop.insert(*id);
                        }
                        continue;
                    }
                    match p.ping {
                        Some((_, sent)) if elapsed(sent) > c.ping_timeout_ms => {
                            e.must_drop.insert(*id);
                            continue;
                        }
                        None if elapsed(p.idle_ms) >= c.ping_interval_ms => {
                            e.must_ping.insert(*id);
                        }
                        _ => {}
                    }
                    if p.headers_asked_ms.is_some_and(|t| elapsed(t) > c.headers_timeout_ms) {
                        e.must_drop.insert(*id);
                    }
                }
                Input::Tick
            }
        };
        let is_bad_frame = matches!(input, Input::BadFrame { .. });
        proto.step(m.now, input);

        // The outputs, in order, against the model.
        let mut dropped = BTreeSet::new();
        let mut sent: Vec<(u64, Message)> = Vec::new();
        for out in proto.drain() {
            match out {
                Output::Send(peer, msg) => {
                    let Some(p) = m.peers.get_mut(&peer) else {
                        return Err(TestCaseError::fail(format!(
                            "{} sent to peer {peer}, not connected",
                            msg.name()
                        )));
                    };
                    let handshake_msg = matches!(msg, Message::Version(_) | Message::Verack);
                    prop_assert!(
                        handshake_msg || p.handshake == Handshake::Ready,
                        "{} sent to peer {peer} before its handshake finished ({:?})",
                        msg.name(),
                        p.handshake
                    );
                    let (len, max) = (msg.encode_payload().len(), max_payload(msg.command()).unwrap());
                    prop_assert!(len <= max, "a {} of {len} bytes (limit {max})", msg.name());
                    match &msg {
                        Message::Ping(n) => p.ping = Some((*n, m.now)),
                        Message::GetHeaders(_) => p.headers_asked_ms = Some(m.now),
                        _ => {}
                    }
                    sent.push((peer, msg));
                }
                Output::ServeBlock { peer, .. } => {
                    prop_assert!(m.peers.get(&peer).is_some_and(|p| p.handshake == Handshake::Ready));
                }
                Output::Disconnect(peer, reason) => {
                    let Some(p) = m.peers.remove(&peer) else {
                        return Err(TestCaseError::fail(format!(
                            "dropped peer {peer} twice or unknown ({reason})"
                        )));
                    };
                    let banned = is_bad_frame
                        && !matches!(reason, DisconnectReason::Wire(WireError::BadMagic(_)))
                        || matches!(reason, DisconnectReason::Misbehaviour(_));
                    if banned {
                        seen(BANS);
                        m.ban(p.addr);
                    }
                    seen(DROPS);
                    dropped.insert(peer);
                }
                Output::Connect(_) | Output::Save(_) => {}
            }
        }

        // Drops: each one the model requires, and no other.
        let mut allowed = e.must_drop.clone();
        if let Some((a, b)) = e.exactly_one_of {
            prop_assert!(
                dropped.contains(&a) != dropped.contains(&b),
                "two connections with one nonce: exactly one of {a}, {b} must go; dropped {dropped:?}"
            );
            allowed.extend([a, b]);
            if !dropped.contains(&a) {
                e.must_send.push((a, Message::Verack));
            }
        }
        prop_assert!(
            e.must_drop.is_subset(&dropped),
            "after {op:?}: must drop {:?}, dropped {dropped:?}",
            e.must_drop
        );
        prop_assert!(
            dropped.is_subset(&allowed),
            "after {op:?}: dropped {dropped:?}, only {allowed:?} may go"
        );
        for (peer, msg) in &e.must_send {
            if dropped.contains(peer) {
                continue;
            }
            prop_assert!(
                sent.contains(&(*peer, msg.clone())),
                "after {op:?}: no {} sent to {peer}",
                msg.name()
            );
        }
        let pinged: BTreeSet<u64> =
            sent.iter().filter(|(_, msg)| matches!(msg, Message::Ping(_))).map(|(p, _)| *p).collect();
        prop_assert_eq!(&pinged, &e.must_ping, "after {:?}: pinged peers", op);
        if let Some(peer) = e.must_send_version {
            prop_assert!(
                sent.iter()
                    .any(|(p, msg)| *p == peer && matches!(msg, Message::Version(v) if v.nonce == ours)),
                "a connection taken in was not sent our version"
            );
        }

        // The protocol's ready peers are exactly the model's.
        prop_assert_eq!(proto.ready_peers(), m.ready(), "after {:?}: ready peers", op);
        prop_assert_eq!(proto.peer_infos().len(), m.ready().len());
    }
    Ok(())
}

#[test]
fn connections_follow_the_handshake_and_liveness_model() {
    let cases = crate::model_cases(DEFAULT_CASES);
    let mut runner = crate::model_runner(cases);
    let result = runner.run(&prop::collection::vec(op(), 1..80), |ops| run(&ops));
    let n: Vec<usize> = SEEN.iter().map(|c| c.load(Ordering::Relaxed)).collect();
    eprintln!(
        "protocol model: {} cases; handshakes completed {}, drops {}, pongs matched {}, nonce twins {}, bans {}",
        cases,
        n[READY],
        n[DROPS],
        n[PONGED],
        n[TWINS],
        n[BANS]
    );
    if let Err(e) = result {
        panic!("{e}");
    }
}
