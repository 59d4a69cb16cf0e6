//! Model-based test of a peer's inventory budget (docs/PROTOCOL.md, "Gossip"): random
//! sequences of `inv` messages (floods of whole messages, single messages of edge sizes,
//! each possibly carrying one transfer the node has never seen) and of the clock moving
//! by edge amounts (0, 1, the window less one, the window, one past it, an hour), against
//! a real in-memory node behind the protocol.
//!
//! The reference model is the rule as written: a window starts when the peer connects
//! and again at the first `inv` more than 10 s after the current window's start; the node
//! acts on a peer's transfer announcements until more than 100,000 items have come in the
//! window, and ignores them after that until the window ends, without punishing the peer.
//!
//! After every step: the node asked for the new transfer exactly when the model says it
//! acts on it, never asked for the transfer it already holds, and the peer is still
//! connected (no sequence of announcements is misbehaviour).
//!
//! Cases: `PROPTEST_CASES` (default [`DEFAULT_CASES`]).
#![allow(clippy::unwrap_used)] // test helpers fail loudly

use crate::p2p_sim::{peer_version, sim_config, sim_genesis, transfer};
use cairn_core::Txid;
use cairn_node::chain::Chain;
use cairn_node::mempool::Mempool;
use cairn_node::node::{Node, Origin};
use cairn_node::p2p::addrbook::Snapshot;
use cairn_node::p2p::protocol::limits::{INV_WINDOW_MS, MAX_INV_PER_WINDOW};
use cairn_node::p2p::protocol::{Config, Input, Output, Protocol};
use cairn_node::p2p::wire::{InvItem, Message, MAX_INV};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};

const DEFAULT_CASES: u32 = 128;
const PEER: u64 = 1;

/// Probes fetched, probes ignored past the budget, windows that went past it: printed
/// after the run so a reader sees both sides of the rule were reached.
static SEEN: [AtomicUsize; 3] = [const { AtomicUsize::new(0) }; 3];
const FETCHED: usize = 0;
const IGNORED: usize = 1;
const OVER: usize = 2;

#[derive(Clone, Debug)]
enum Op {
    /// This many whole `inv` messages (500 items each) of the transfer the node holds.
    Flood(u32),
    /// One `inv` of `held` copies of the held transfer, then, with `probe`, one transfer
    /// the node has never seen.
    Inv { held: usize, probe: bool },
    /// `inv`s of the held transfer until the window holds exactly the budget less
    /// `left` items (nothing if it already holds more): the next probe lands on the edge.
    FillTo { left: u64 },
    /// The clock moves on by this many ms.
    Advance(u64),
}

fn op() -> impl Strategy<Value = Op> {
    let held = prop_oneof![Just(0), Just(1), Just(2), Just(MAX_INV - 2), Just(MAX_INV - 1)];
    let advance = prop_oneof![
        Just(0),
        Just(1),
        Just(INV_WINDOW_MS - 1),
        Just(INV_WINDOW_MS),
        Just(INV_WINDOW_MS + 1),
        Just(3_600_000)
    ];
    prop_oneof![
        3 => (1u32..=120).prop_map(Op::Flood),
        4 => (held, any::<bool>()).prop_map(|(held, probe)| Op::Inv { held, probe }),
        2 => advance.prop_map(Op::Advance),
        1 => (0u64..=2).prop_map(|left| Op::FillTo { left }),
    ]
}

/// The rule as docs/PROTOCOL.md states it.
struct Model {
    window_start: u64,
    in_window: u64,
}

impl Model {
    /// The items counted in the window an `inv` at `now` falls in.
    fn window_at(&mut self, now: u64) -> u64 {
        if now.saturating_sub(self.window_start) > INV_WINDOW_MS {
            self.window_start = now;
            self.in_window = 0;
        }
        self.in_window
    }

    /// Counts an `inv` of `items` at `now`; whether the node acts on its transfers.
    fn inv(&mut self, now: u64, items: u64) -> bool {
        self.in_window = self.window_at(now) + items;
        self.in_window <= u64::from(MAX_INV_PER_WINDOW)
    }
}

fn asked_for(outs: &[Output], txid: Txid) -> bool {
    outs.iter().any(
        |o| matches!(o, Output::Send(PEER, Message::GetData(items)) if items.contains(&InvItem::Tx(txid))),
    )
}

fn run(ops: &[Op]) -> Result<(), TestCaseError> {
    let genesis = sim_genesis();
    let node = Node::new(Chain::open_in_memory(&genesis), Mempool::new(1 << 20), genesis.clone());
    // No liveness timer may end the connection: only the budget is under test.
    let config = Config { ping_interval_ms: u64::MAX / 4, ping_timeout_ms: u64::MAX / 4, ..sim_config() };
    let mut proto = Protocol::new(node.clone(), config, Snapshot::default(), 1, 0);
    let held = transfer(&genesis, 2, 0);
    let held_id = held.txid();
    node.verify_and_submit(held, Origin::Rpc, 0).expect("admitted");

    let mut now = 1_000;
    let addr = SocketAddr::new([10, 0, 1, 1].into(), 40_000);
    proto.step(now, Input::Connected { peer: PEER, addr, inbound: true });
    let version = peer_version(&genesis, 0, node.chain().tip().total_work.to_be_bytes(), 7, addr, "model");
    proto.step(now, Input::Received { peer: PEER, msg: Message::Version(version) });
    proto.step(now, Input::Received { peer: PEER, msg: Message::Verack });
    proto.drain();
    prop_assert_eq!(proto.ready_peers(), vec![PEER]);
    let mut m = Model { window_start: now, in_window: 0 };
    let mut probes = 0u64;
    let mut was_over = false;

    for op in ops {
        let mut outs = Vec::new();
        let mut expect = None;
        match *op {
            Op::Advance(ms) => now += ms,
            Op::Flood(n) => {
                for _ in 0..n {
                    now += 1;
                    m.inv(now, MAX_INV as u64);
                    proto.step(
                        now,
                        Input::Received {
                            peer: PEER,
                            msg: Message::Inv(vec![InvItem::Tx(held_id); MAX_INV]),
                        },
                    );
                    outs.extend(proto.drain());
                }
            }
            Op::FillTo { left } => {
                let target = u64::from(MAX_INV_PER_WINDOW) - left;
                loop {
                    let size = target.saturating_sub(m.window_at(now + 1)).min(MAX_INV as u64);
                    if size == 0 {
                        break;
                    }
                    now += 1;
                    m.inv(now, size);
                    let items = vec![InvItem::Tx(held_id); size as usize];
                    proto.step(now, Input::Received { peer: PEER, msg: Message::Inv(items) });
                    outs.extend(proto.drain());
                }
            }
            Op::Inv { held, probe } => {
                now += 1;
                let mut items = vec![InvItem::Tx(held_id); held];
                let mut probe_id = [0xA5u8; 32];
                probe_id[..8].copy_from_slice(&probes.to_le_bytes());
                let probe_id = Txid(probe_id);
                if probe {
                    probes += 1;
                    items.push(InvItem::Tx(probe_id));
                }
                let acts = m.inv(now, items.len() as u64);
                proto.step(now, Input::Received { peer: PEER, msg: Message::Inv(items) });
                outs.extend(proto.drain());
                if probe {
                    expect = Some((probe_id, acts));
                }
            }
        }
        if m.in_window > u64::from(MAX_INV_PER_WINDOW) && !was_over {
            SEEN[OVER].fetch_add(1, Ordering::Relaxed);
        }
        was_over = m.in_window > u64::from(MAX_INV_PER_WINDOW);

        if let Some((id, acts)) = expect {
            prop_assert_eq!(asked_for(&outs, id), acts, "after {:?}: the new transfer asked for", op);
            SEEN[if acts { FETCHED } else { IGNORED }].fetch_add(1, Ordering::Relaxed);
        }
        prop_assert!(!asked_for(&outs, held_id), "after {:?}: asked for a transfer the node holds", op);
        prop_assert!(
            !outs.iter().any(|o| matches!(o, Output::Disconnect(PEER, _))),
            "after {:?}: the peer was dropped: {:?}",
            op,
            outs.iter().find(|o| matches!(o, Output::Disconnect(..)))
        );
        prop_assert_eq!(proto.ready_peers(), vec![PEER], "after {:?}", op);
    }
    Ok(())
}

#[test]
fn transfer_announcements_follow_the_inventory_budget_model() {
    let cases = crate::model_cases(DEFAULT_CASES);
    let mut runner = crate::model_runner(cases);
    let result = runner.run(&prop::collection::vec(op(), 1..40), |ops| run(&ops));
    let n: Vec<usize> = SEEN.iter().map(|c| c.load(Ordering::Relaxed)).collect();
    eprintln!(
        "inventory budget model: {} cases; new transfers fetched {}, ignored past the budget {}, windows past the budget {}",
        cases,
        n[FETCHED],
        n[IGNORED],
        n[OVER]
    );
    if let Err(e) = result {
        panic!("{e}");
    }
    assert!(n[FETCHED] > 0 && n[IGNORED] > 0, "the cases never reached one side of the rule");
}
