//! Model-based test of [`Chain`] on the real RocksDB store: random sequences of blocks
//! on several branches (extend the tip, grow a side branch until it is heavier and a
//! reorg follows, blocks that break a rule somewhere in a branch, resubmitted blocks,
//! restarts that drop the chain and reopen its directory, restarts after a crash that
//! lost the index writer's last jobs (the tx and address indexes rolled back to what
//! they held a few steps earlier, as a kill -9 while the writer lags leaves them), runs
//! of blocks handed over in
//! one `Chain::accept_blocks` call as an import or a sync does), with balances, amounts and
//! fees at the edges (0, 1, `u64::MAX`, `u64::MAX - x`, a sender's whole balance, one
//! more than it) on a genesis whose allocations may sum to `u64::MAX`.
//!
//! After every step the chain must agree with a reference model written here
//! independently of the node and of `cairn_core::state`: fork choice as ARCHITECTURE.md
//! states it (see [`Model::activate`]: the tip moves only to strictly more work; the
//! best candidate has the most work, ties to the block stored first; a block that fails
//! to connect is invalid with its descendants, and fork choice runs again), and the
//! state of every account as a
//! replay from genesis along the model's best chain in `u128` arithmetic on a plain
//! `HashMap`. Compared: each block's acceptance, the tip, its height and total work, the
//! best chain's hash at every height, the tx index's answer for every transaction of
//! every block built (where it is on the best chain, or not found), and the balance and
//! nonce of every address the test uses (and no stored account beyond them).
//!
//! Cases: `PROPTEST_CASES` (default [`DEFAULT_CASES`], sized for a debug build on a
//! loaded 2-core machine).
#![allow(clippy::unwrap_used)] // test helpers fail loudly

use cairn_core::block::{Block, BlockHeader, BLOCK_VERSION};
use cairn_core::difficulty::median_time_past;
use cairn_core::genesis::{dev_keys, Allocation, Genesis};
use cairn_core::pow::Target;
use cairn_core::transaction::{address_of, public_key_of, Coinbase, SignedTransfer, Transaction, Transfer};
use cairn_core::validation::ParentInfo;
use cairn_core::{merkle, Address, Amount, BlockHash, Work};
use cairn_node::chain::{check_db, check_store, Acceptance, Chain, ChainError};
use cairn_node::store::{meta_key, Batch, Column, KvStore, RocksStore};
use k256::ecdsa::SigningKey;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};

/// What the random runs exercised (printed at the end): connected, side branch,
/// invalid, duplicate, reorgs (a tip change that disconnected blocks), restarts, blocks
/// that came through [`Chain::accept_blocks`], restarts with the indexes rolled back,
/// and of these the ones whose indexes were on a branch the chain had left.
static SEEN: [AtomicUsize; 9] = [const { AtomicUsize::new(0) }; 9];

fn seen(i: usize) {
    SEEN[i].fetch_add(1, Ordering::Relaxed);
}

const DEFAULT_CASES: u32 = 32;
const EASIEST: &str = "7fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff";
/// Senders: the first `FUNDED` are allocated at genesis, the last one never is.
const SENDERS: usize = 5;
const FUNDED: usize = 4;
const FRESH_A: Address = Address([0xa1; 20]);
const FRESH_B: Address = Address([0xb2; 20]);

/// An amount or fee as the test draws it; the `Balance*` kinds are relative to the
/// sender's balance on the branch the block extends.
#[derive(Clone, Copy, Debug)]
enum AmountSpec {
    Zero,
    One,
    Small(u32),
    Max,
    MaxMinus(u16),
    /// The sender's balance minus the fee minus x: affordable to the unit when x is 0.
    BalanceMinus(u16),
    /// One more than the sender can pay (with the fee).
    BalancePlusOne,
}

#[derive(Clone, Copy, Debug)]
struct TxSpec {
    from: usize,
    to: usize,
    amount: AmountSpec,
    fee: AmountSpec,
    /// Added to the right nonce (mostly 0).
    nonce_delta: i8,
}

/// Breaks a block on purpose in a way the chain sees before state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Corruption {
    None,
    /// The header's hash misses its target (a bad proof-of-work nonce).
    BadPow,
    /// A signature bit flipped in the last transfer (if any).
    BadSignature,
}

#[derive(Clone, Debug)]
enum Op {
    /// A block on a parent picked by `parent` (see [`Model::pick_parent`]).
    Build { parent: ParentPick, txs: Vec<TxSpec>, coinbase_delta: i8, miner: usize, corrupt: Corruption },
    /// Hand the chain a block it already has again.
    Resubmit(usize),
    /// Drop the chain and open its directory again.
    Restart,
    /// Drop the chain, roll its tx and address indexes back to one of the last few
    /// steps' (see [`IndexSnapshot`]), check the store as a crash would leave it, and
    /// open it again, which must catch the indexes up.
    LoseIndexJobs(usize),
    /// Several `Build`s handed to the chain in one [`Chain::accept_blocks`] call, whose
    /// checks of the next blocks run ahead while the one before is committed: every
    /// block must get the result `accept_block` would have given it.
    Batch(Vec<Op>),
}

#[derive(Clone, Copy, Debug)]
enum ParentPick {
    Tip,
    /// `n` blocks below the tip (a fork off the best chain).
    BelowTip(u8),
    /// Any indexed block (side branches, invalid ones).
    Any(usize),
    /// The most recently built block (so that a side branch grows until it wins).
    Last,
}

fn amount_spec() -> impl Strategy<Value = AmountSpec> {
    prop_oneof![
        2 => Just(AmountSpec::Zero),
        2 => Just(AmountSpec::One),
        8 => (0u32..1_000_000).prop_map(AmountSpec::Small),
        1 => Just(AmountSpec::Max),
        1 => (0u16..3).prop_map(AmountSpec::MaxMinus),
        3 => (0u16..3).prop_map(AmountSpec::BalanceMinus),
        1 => Just(AmountSpec::BalancePlusOne),
    ]
}

fn tx_spec() -> impl Strategy<Value = TxSpec> {
    (
        0..SENDERS,
        0..SENDERS + 2,
        amount_spec(),
        prop_oneof![3 => (0u32..1_000).prop_map(AmountSpec::Small), 1 => amount_spec()],
        prop_oneof![12 => Just(0i8), 1 => Just(1i8), 1 => Just(-1i8)],
    )
        .prop_map(|(from, to, amount, fee, nonce_delta)| TxSpec { from, to, amount, fee, nonce_delta })
}

fn build_op() -> BoxedStrategy<Op> {
    let parent = prop_oneof![
        4 => Just(ParentPick::Tip),
        3 => Just(ParentPick::Last),
        2 => (1u8..4).prop_map(ParentPick::BelowTip),
        1 => any::<usize>().prop_map(ParentPick::Any),
    ];
    (
        parent,
        prop::collection::vec(tx_spec(), 0..3),
        prop_oneof![12 => Just(0i8), 1 => Just(1i8), 1 => Just(-1i8)],
        0..3usize,
        prop_oneof![14 => Just(Corruption::None), 1 => Just(Corruption::BadPow), 1 => Just(Corruption::BadSignature)],
    )
        .prop_map(|(parent, txs, coinbase_delta, miner, corrupt)| Op::Build {
            parent,
            txs,
            coinbase_delta,
            miner,
            corrupt,
        })
        .boxed()
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        16 => build_op(),
        3 => prop::collection::vec(build_op(), 2..6).prop_map(Op::Batch),
        1 => any::<usize>().prop_map(Op::Resubmit),
        2 => Just(Op::Restart),
        2 => any::<usize>().prop_map(Op::LoseIndexJobs),
    ]
}

fn edge_u64() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(0u64),
        Just(1u64),
        Just(u64::MAX),
        (0u64..3).prop_map(|x| u64::MAX - x),
        Just(u64::MAX / 2),
        0u64..10_000_000_000,
    ]
}

#[derive(Clone, Debug)]
struct Scenario {
    balances: Vec<u64>,
    reward: u64,
    ops: Vec<Op>,
}

fn scenario() -> impl Strategy<Value = Scenario> {
    (
        prop::collection::vec(edge_u64(), FUNDED),
        prop_oneof![8 => Just(5_000_000_000u64), 1 => Just(0u64), 1 => Just(1u64), 1 => Just(u64::MAX - 1), 1 => Just(u64::MAX)],
        prop::collection::vec(op(), 1..28),
    )
        .prop_map(|(balances, reward, ops)| Scenario { balances, reward, ops })
}

/// An account in the model: balance in `u128` so that no sum can wrap unseen.
type State = HashMap<Address, (u128, u64)>;

struct MBlock {
    block: Block,
    hash: BlockHash,
    parent: Option<usize>,
    work: Work,
    /// State after this block: `None` when it or an ancestor breaks a state rule.
    state: Option<State>,
    /// In the chain's block index (stored, or an invalid entry it keeps).
    indexed: bool,
    /// Stored with its body and not invalid up front: may become the tip.
    stored: bool,
    seq: u64,
    /// Found invalid (itself or an ancestor) by the chain, as the model predicts.
    failed: bool,
}

struct Model {
    g: Genesis,
    blocks: Vec<MBlock>,
    tip: usize,
    next_seq: u64,
    /// Blocks fork choice may move to (see [`Model::activate`]).
    candidates: HashSet<usize>,
    last_built: usize,
    clock_ms: u64,
    keys: Vec<SigningKey>,
    universe: Vec<Address>,
}

/// Applies `block` to `state` the plain way: `None` if any rule breaks.
fn model_apply(state: &State, block: &Block, reward: u64) -> Option<State> {
    const MAX: u128 = u64::MAX as u128;
    let mut s = state.clone();
    let mut fees: u128 = 0;
    for tx in &block.transactions[1..] {
        let Transaction::Transfer(st) = tx else { return None };
        let t = &st.transfer;
        let from = address_of_pub(&t.from);
        let (bal, nonce) = s.get(&from).copied().unwrap_or((0, 0));
        let cost = u128::from(t.amount.0) + u128::from(t.fee.0);
        if t.nonce != nonce || cost > bal {
            return None;
        }
        s.insert(from, (bal - cost, nonce + 1));
        let (to_bal, to_nonce) = s.get(&t.to).copied().unwrap_or((0, 0));
        if to_bal + u128::from(t.amount.0) > MAX {
            return None;
        }
        s.insert(t.to, (to_bal + u128::from(t.amount.0), to_nonce));
        fees += u128::from(t.fee.0);
    }
    let Some(Transaction::Coinbase(cb)) = block.transactions.first() else { return None };
    if u128::from(cb.amount.0) != u128::from(reward) + fees {
        return None;
    }
    let (m_bal, m_nonce) = s.get(&cb.to).copied().unwrap_or((0, 0));
    if m_bal + u128::from(cb.amount.0) > MAX {
        return None;
    }
    s.insert(cb.to, (m_bal + u128::from(cb.amount.0), m_nonce));
    Some(s)
}

fn address_of_pub(key: &[u8; 33]) -> Address {
    Address::from_public_key(key)
}

fn test_genesis(balances: &[u64], reward: u64) -> Genesis {
    let mut g = Genesis::dev();
    g.name = "cairn-chain-model".into();
    let easy: Target = EASIEST.parse().unwrap();
    g.params.initial_target = easy;
    g.params.pow_limit = easy;
    g.params.block_reward = Amount(reward);
    // Allocations may sum to u64::MAX but no further (the genesis rule): clamp.
    let keys = dev_keys();
    let mut total: u64 = 0;
    g.allocations = balances
        .iter()
        .enumerate()
        .map(|(i, &b)| {
            let b = b.min(u64::MAX - total);
            total += b;
            Allocation { address: address_of(&keys[i]), balance: Amount(b) }
        })
        .collect();
    g.check().unwrap();
    g
}

impl Model {
    fn new(g: Genesis) -> Model {
        let keys: Vec<SigningKey> = dev_keys().into_iter().take(SENDERS).collect();
        let mut universe: Vec<Address> = keys.iter().map(address_of).collect();
        universe.extend([FRESH_A, FRESH_B]);
        let state: State = g.allocations.iter().map(|a| (a.address, (u128::from(a.balance.0), 0))).collect();
        let block = g.block();
        let genesis = MBlock {
            hash: block.hash(),
            work: block.header.target.work(),
            block,
            parent: None,
            state: Some(state),
            indexed: true,
            stored: true,
            seq: 0,
            failed: false,
        };
        Model {
            clock_ms: g.params.timestamp_ms,
            g,
            blocks: vec![genesis],
            tip: 0,
            next_seq: 1,
            candidates: HashSet::new(),
            last_built: 0,
            keys,
            universe,
        }
    }

    fn path(&self, mut b: usize) -> Vec<usize> {
        let mut out = vec![b];
        while let Some(p) = self.blocks[b].parent {
            out.push(p);
            b = p;
        }
        out.reverse();
        out
    }

    fn parent_info(&self, b: usize) -> ParentInfo {
        let path = self.path(b);
        let header = |i: usize| &self.blocks[path[i]].block.header;
        let n = self.g.params.median_time_blocks as usize;
        let stamps: Vec<u64> =
            path.iter().rev().take(n).map(|&i| self.blocks[i].block.header.timestamp_ms).collect();
        let tip = header(path.len() - 1);
        ParentInfo {
            hash: tip.hash(),
            height: tip.height,
            timestamp_ms: tip.timestamp_ms,
            median_time_past_ms: median_time_past(&stamps),
            anchor_timestamp_ms: if path.len() > 1 { header(1).timestamp_ms } else { tip.timestamp_ms },
        }
    }

    fn pick_parent(&self, pick: ParentPick) -> usize {
        let best = self.path(self.tip);
        match pick {
            ParentPick::Tip => self.tip,
            ParentPick::BelowTip(n) => best[best.len().saturating_sub(1 + n as usize)],
            ParentPick::Last => self.last_built,
            ParentPick::Any(i) => {
                let indexed: Vec<usize> =
                    (0..self.blocks.len()).filter(|&b| self.blocks[b].indexed).collect();
                indexed[i % indexed.len()]
            }
        }
    }

    /// Builds the block `op` describes on top of `parent` (signed, mined, maybe broken).
    fn build(
        &mut self,
        parent: usize,
        txs: &[TxSpec],
        coinbase_delta: i8,
        miner: usize,
        corrupt: Corruption,
    ) -> Block {
        let info = self.parent_info(parent);
        // A branch's own state for nonces and balances (an invalid branch: genesis's).
        let base = self.blocks[parent].state.clone().unwrap_or_else(|| self.blocks[0].state.clone().unwrap());
        let mut running = base.clone();
        let mut transfers: Vec<SignedTransfer> = Vec::new();
        let mut fees: u128 = 0;
        for spec in txs {
            let key = &self.keys[spec.from];
            let from = address_of(key);
            let (bal, nonce) = running.get(&from).copied().unwrap_or((0, 0));
            let resolve = |s: AmountSpec, fee: u64| -> u64 {
                let clamp = |v: u128| u64::try_from(v).unwrap_or(u64::MAX);
                match s {
                    AmountSpec::Zero => 0,
                    AmountSpec::One => 1,
                    AmountSpec::Small(x) => u64::from(x),
                    AmountSpec::Max => u64::MAX,
                    AmountSpec::MaxMinus(x) => u64::MAX - u64::from(x),
                    AmountSpec::BalanceMinus(x) => {
                        clamp(bal.saturating_sub(u128::from(fee)).saturating_sub(u128::from(x)))
                    }
                    AmountSpec::BalancePlusOne => clamp(bal.saturating_sub(u128::from(fee)) + 1),
                }
            };
            let fee = resolve(spec.fee, 0);
            let amount = resolve(spec.amount, fee);
            let t = Transfer {
                chain_id: self.g.params.chain_id,
                nonce: nonce.saturating_add_signed(i64::from(spec.nonce_delta)),
                from: public_key_of(key),
                to: self.universe[spec.to],
                amount: Amount(amount),
                fee: Amount(fee),
            };
            // Keep the running view moving like a valid block would, so that later
            // transfers of the same sender carry the next nonce and see what is left.
            let cost = u128::from(amount) + u128::from(fee);
            running.insert(from, (bal.saturating_sub(cost), nonce + 1));
            fees += u128::from(fee);
            transfers.push(t.sign(key).unwrap());
        }
        if corrupt == Corruption::BadSignature {
            if let Some(last) = transfers.last_mut() {
                last.signature[40] ^= 1;
            }
        }
        let miner_address = [FRESH_A, self.universe[0], self.universe[FUNDED]][miner];
        let exact = u128::from(self.g.params.block_reward.0) + fees;
        let cb_amount =
            u64::try_from(exact).unwrap_or(u64::MAX).saturating_add_signed(i64::from(coinbase_delta));
        let height = info.height + 1;
        let mut transactions =
            vec![Transaction::Coinbase(Coinbase { height, to: miner_address, amount: Amount(cb_amount) })];
        transactions.extend(transfers.into_iter().map(Transaction::Transfer));
        let txids: Vec<_> = transactions.iter().map(Transaction::txid).collect();
        // On schedule or behind it, so every block has the easiest target (equal work):
        // a distinct delay per block keeps siblings distinct.
        self.clock_ms += 1;
        let delay = 1_000 + self.clock_ms % 977;
        let mut header = BlockHeader {
            version: BLOCK_VERSION,
            height,
            prev: info.hash,
            merkle_root: merkle::merkle_root(&txids),
            timestamp_ms: info.timestamp_ms + delay,
            target: info.next_target(&self.g.params),
            nonce: 0,
        };
        while header.meets_own_target() != (corrupt != Corruption::BadPow) {
            header.nonce += 1;
        }
        Block { header, transactions }
    }

    /// What the chain must answer for `block` on `parent`, updating the model.
    fn submit(&mut self, parent: usize, block: Block, corrupt: Corruption) -> Expect {
        let hash = block.hash();
        let stateless_bad = corrupt == Corruption::BadSignature && block.transactions.len() > 1
            || block.transactions[1..].iter().any(|tx| match tx {
                Transaction::Transfer(st) => st.transfer.amount.0.checked_add(st.transfer.fee.0).is_none(),
                Transaction::Coinbase(_) => false,
            });
        let parent_failed = self.blocks[parent].failed;
        let reward = self.g.params.block_reward.0;
        let state = self.blocks[parent].state.as_ref().and_then(|s| model_apply(s, &block, reward));
        let mut m = MBlock {
            hash,
            work: self.blocks[parent].work.saturating_add(block.header.target.work()),
            block,
            parent: Some(parent),
            state,
            indexed: false,
            stored: false,
            seq: 0,
            failed: true,
        };
        if corrupt == Corruption::BadPow || parent_failed {
            // Refused before it is indexed.
            self.blocks.push(m);
            return Expect::Invalid;
        }
        if stateless_bad {
            // Indexed as invalid (so its children are refused), never a candidate.
            m.indexed = true;
            self.blocks.push(m);
            return Expect::Invalid;
        }
        m.indexed = true;
        m.stored = true;
        m.failed = false;
        m.seq = self.next_seq;
        self.next_seq += 1;
        self.blocks.push(m);
        let idx = self.blocks.len() - 1;
        self.last_built = idx;
        if self.blocks[idx].work > self.blocks[self.tip].work {
            self.candidates.insert(idx);
        }
        self.activate();
        let on_best = self.path(self.tip).contains(&idx);
        if self.blocks[idx].failed {
            Expect::Invalid
        } else if on_best {
            Expect::Connected
        } else {
            Expect::SideBranch
        }
    }

    /// Fork choice as ARCHITECTURE.md states it: a block is a candidate when it is
    /// stored with more work than the tip at that moment, or when a reorg disconnects
    /// it; while the best candidate (most work, then stored first) has strictly more
    /// work than the tip, move to it block by block, and fail the first block that does
    /// not apply, with its descendants. Candidates that no longer beat the tip are
    /// dropped at the end. (So after a reorg that fails part-way the node returns to the
    /// chain it was on, not to an equal-work side block stored earlier.)
    fn activate(&mut self) {
        loop {
            let tip_work = self.blocks[self.tip].work;
            let best = self
                .candidates
                .iter()
                .copied()
                .min_by_key(|&b| (std::cmp::Reverse(self.blocks[b].work), self.blocks[b].seq));
            let Some(best) = best.filter(|&b| self.blocks[b].work > tip_work) else { break };
            let from = self.path(self.tip);
            let to = self.path(best);
            let fork = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
            self.candidates.extend(&from[fork..]);
            self.tip = to[fork - 1];
            for &b in &to[fork..] {
                if self.blocks[b].state.is_some() {
                    self.tip = b;
                    self.candidates.remove(&b);
                } else {
                    self.fail_with_descendants(b);
                    break;
                }
            }
        }
        let tip_work = self.blocks[self.tip].work;
        let blocks = &self.blocks;
        self.candidates.retain(|&b| blocks[b].work > tip_work);
    }

    /// What reopening the chain does: every stored, not-failed block with more work
    /// than the tip is a candidate again, and fork choice runs.
    fn restart(&mut self) {
        let tip_work = self.blocks[self.tip].work;
        self.candidates = (0..self.blocks.len())
            .filter(|&b| self.blocks[b].stored && !self.blocks[b].failed && self.blocks[b].work > tip_work)
            .collect();
        self.activate();
    }

    fn fail_with_descendants(&mut self, root: usize) {
        // Blocks are in creation order, parents before children.
        self.blocks[root].failed = true;
        self.candidates.remove(&root);
        for b in root + 1..self.blocks.len() {
            if let Some(p) = self.blocks[b].parent {
                if self.blocks[p].failed && self.blocks[b].indexed {
                    self.blocks[b].failed = true;
                    self.candidates.remove(&b);
                }
            }
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    Connected,
    SideBranch,
    Invalid,
    Duplicate,
}

fn acceptance_kind(a: &Acceptance) -> Option<Expect> {
    match a {
        Acceptance::Connected => Some(Expect::Connected),
        Acceptance::SideBranch => Some(Expect::SideBranch),
        Acceptance::Invalid(_) => Some(Expect::Invalid),
        Acceptance::Duplicate => Some(Expect::Duplicate),
        Acceptance::Orphan { .. } => None,
    }
}

/// The chain's tip, total work, best chain and accounts equal the model's.
fn check(chain: &Chain, model: &Model, step: usize) -> Result<(), TestCaseError> {
    let path = model.path(model.tip);
    let tip = &model.blocks[model.tip];
    let t = chain.tip();
    prop_assert_eq!(t.hash, tip.hash, "step {}: tip", step);
    prop_assert_eq!(t.height, tip.block.header.height, "step {}: height", step);
    prop_assert_eq!(t.total_work, tip.work, "step {}: total work", step);
    for (h, &b) in path.iter().enumerate() {
        prop_assert_eq!(
            chain.best_hash_at(h as u64),
            Some(model.blocks[b].hash),
            "step {}: best chain at {}",
            step,
            h
        );
    }
    prop_assert_eq!(chain.best_hash_at(path.len() as u64), None, "step {}: best chain too long", step);
    // The tx index (written behind the chain; `tx_location` waits for the writer).
    let mut on_best = HashSet::new();
    for (h, &b) in path.iter().enumerate().skip(1) {
        for (i, tx) in model.blocks[b].block.transactions.iter().enumerate() {
            let txid = tx.txid();
            on_best.insert(txid);
            let got = chain.tx_location(&txid).unwrap().map(|l| (l.block_hash, l.height, l.index));
            prop_assert_eq!(
                got,
                Some((model.blocks[b].hash, h as u64, i as u32)),
                "step {}: tx index of {}",
                step,
                txid
            );
        }
    }
    for mb in model.blocks.iter().skip(1) {
        for tx in &mb.block.transactions {
            let txid = tx.txid();
            if !on_best.contains(&txid) {
                prop_assert_eq!(
                    chain.tx_location(&txid).unwrap(),
                    None,
                    "step {}: tx {} is off the best chain",
                    step,
                    txid
                );
            }
        }
    }
    let state = tip.state.as_ref().unwrap();
    for a in &model.universe {
        let got = chain.account(a).unwrap();
        let (balance, nonce) = state.get(a).copied().unwrap_or((0, 0));
        prop_assert_eq!(
            (u128::from(got.balance.0), got.nonce),
            (balance, nonce),
            "step {}: account {}",
            step,
            a
        );
    }
    // The store itself, under the chain's account cache, agrees too.
    for (a, stored) in chain.all_accounts().unwrap() {
        prop_assert!(model.universe.contains(&a), "step {}: stray account {}", step, a);
        let (balance, nonce) = state.get(&a).copied().unwrap_or((0, 0));
        prop_assert_eq!(
            (u128::from(stored.balance.0), stored.nonce),
            (balance, nonce),
            "step {}: stored account {}",
            step,
            a
        );
    }
    Ok(())
}

/// The tx and address indexes and meta's `indexed` as they were after a step.
struct IndexSnapshot {
    entries: Vec<(Column, Vec<u8>, Vec<u8>)>,
    indexed: Vec<u8>,
}

/// Steps whose indexes a `LoseIndexJobs` may roll back to.
const SNAPSHOTS: usize = 6;

fn index_snapshot(store: &dyn KvStore) -> IndexSnapshot {
    let mut entries = Vec::new();
    for c in [Column::TxIndex, Column::AddrIndex] {
        store
            .for_each(c, &mut |k, v| {
                entries.push((c, k.to_vec(), v.to_vec()));
                true
            })
            .unwrap();
    }
    let indexed = store.get(Column::Meta, meta_key::INDEXED).unwrap().expect("meta names the indexed block");
    IndexSnapshot { entries, indexed }
}

/// Puts back the indexes of `snap`, as if every index job after it had been lost.
fn restore_indexes(store: &dyn KvStore, snap: &IndexSnapshot) {
    let mut b = Batch::new();
    for c in [Column::TxIndex, Column::AddrIndex] {
        store
            .for_each(c, &mut |k, _| {
                b.delete(c, k.to_vec());
                true
            })
            .unwrap();
    }
    for (c, k, v) in &snap.entries {
        b.put(*c, k.clone(), v.clone());
    }
    b.put(Column::Meta, meta_key::INDEXED, snap.indexed.clone());
    store.write(b).unwrap();
}

fn now_ms(g: &Genesis) -> u64 {
    g.params.timestamp_ms + 10_000_000_000
}

fn run(s: &Scenario) -> Result<(), TestCaseError> {
    let g = test_genesis(&s.balances, s.reward);
    let dir = tempfile::tempdir().unwrap();
    let mut chain = Some(Chain::open(dir.path(), &g).unwrap());
    let mut model = Model::new(g.clone());
    check(chain.as_ref().unwrap(), &model, 0)?;
    let mut snapshots = std::collections::VecDeque::new();
    for (step, op) in s.ops.iter().enumerate() {
        let step = step + 1;
        match op {
            Op::Build { parent, txs, coinbase_delta, miner, corrupt } => {
                let p = model.pick_parent(*parent);
                let block = model.build(p, txs, *coinbase_delta, *miner, *corrupt);
                let expect = model.submit(p, block.clone(), *corrupt);
                let got = chain.as_mut().unwrap().accept_block(block, now_ms(&g)).unwrap();
                prop_assert_eq!(
                    acceptance_kind(&got.acceptance),
                    Some(expect),
                    "step {}: {:?}",
                    step,
                    got.acceptance
                );
                seen(expect as usize);
                if got.tip_change.as_ref().is_some_and(|c| !c.disconnected.is_empty()) {
                    seen(4);
                }
            }
            Op::Resubmit(i) => {
                let known: Vec<usize> =
                    (1..model.blocks.len()).filter(|&b| model.blocks[b].indexed).collect();
                if known.is_empty() {
                    continue;
                }
                let block = model.blocks[known[i % known.len()]].block.clone();
                let got = chain.as_mut().unwrap().accept_block(block, now_ms(&g)).unwrap();
                prop_assert_eq!(acceptance_kind(&got.acceptance), Some(Expect::Duplicate), "step {}", step);
                prop_assert!(got.tip_change.is_none(), "step {}", step);
                seen(Expect::Duplicate as usize);
            }
            Op::Batch(builds) => {
                // The model takes them one by one (each may build on the one before);
                // the chain takes them in one call.
                let mut blocks = Vec::new();
                let mut expected = Vec::new();
                for b in builds {
                    let Op::Build { parent, txs, coinbase_delta, miner, corrupt } = b else {
                        unreachable!("batches hold builds only")
                    };
                    let p = model.pick_parent(*parent);
                    let block = model.build(p, txs, *coinbase_delta, *miner, *corrupt);
                    expected.push((block.hash(), model.submit(p, block.clone(), *corrupt)));
                    blocks.push(block);
                }
                let mut got = Vec::new();
                chain
                    .as_mut()
                    .unwrap()
                    .accept_blocks(blocks.into_iter().map(Ok::<_, ChainError>), now_ms(&g), |hash, r| {
                        got.push((
                            hash,
                            acceptance_kind(&r.acceptance),
                            r.tip_change.is_some_and(|c| !c.disconnected.is_empty()),
                        ));
                        Ok(())
                    })
                    .unwrap();
                prop_assert_eq!(got.len(), expected.len(), "step {}: a result for every block", step);
                for ((hash, kind, reorg), (want_hash, want)) in got.into_iter().zip(expected) {
                    prop_assert_eq!(hash, want_hash, "step {}", step);
                    prop_assert_eq!(kind, Some(want), "step {}: block {}", step, hash);
                    seen(want as usize);
                    seen(6);
                    if reorg {
                        seen(4);
                    }
                }
            }
            Op::Restart => {
                drop(chain.take());
                chain = Some(Chain::open(dir.path(), &g).unwrap());
                model.restart();
                seen(5);
            }
            Op::LoseIndexJobs(k) => {
                if snapshots.is_empty() {
                    continue;
                }
                let snap = &snapshots[k % snapshots.len()];
                drop(chain.take());
                {
                    let store = RocksStore::open(&dir.path().join("chain")).unwrap();
                    restore_indexes(&store, snap);
                    let report = check_store(&store, &g).unwrap();
                    prop_assert!(report.is_consistent(), "step {}: indexes rolled back: {}", step, report);
                    let indexed = BlockHash(snap.indexed.clone().try_into().unwrap());
                    let on_best = model.path(model.tip).iter().any(|&b| model.blocks[b].hash == indexed);
                    if !on_best {
                        seen(8);
                    }
                }
                chain = Some(Chain::open(dir.path(), &g).unwrap());
                model.restart();
                seen(7);
            }
        }
        check(chain.as_ref().unwrap(), &model, step)?;
        snapshots.push_front(index_snapshot(chain.as_ref().unwrap().store()));
        snapshots.truncate(SNAPSHOTS);
    }
    drop(chain);
    let report = check_db(dir.path(), &g).unwrap();
    prop_assert!(report.is_consistent(), "{}", report);
    Ok(())
}

#[test]
fn chain_matches_a_replay_from_genesis_after_every_step() {
    let cases = crate::model_cases(DEFAULT_CASES);
    let mut runner = crate::model_runner(cases);
    let result = runner.run(&scenario(), |s| run(&s));
    let n: Vec<usize> = SEEN.iter().map(|c| c.load(Ordering::Relaxed)).collect();
    eprintln!(
        "chain model: {} cases; blocks connected {}, side branch {}, invalid {}, duplicate {}; reorgs {}, restarts {}; {} of the blocks through accept_blocks; {} restarts with the indexes rolled back, {} of them to a branch the chain had left",
        cases,
        n[0],
        n[1],
        n[2],
        n[3],
        n[4],
        n[5],
        n[6],
        n[7],
        n[8]
    );
    if let Err(e) = result {
        panic!("{e}");
    }
}

/// Builds a block on model block `parent` holding `txs`, submits it to the model and the
/// chain, asserts both give `want` and still agree, and returns the block's model index.
fn submit_expecting(
    chain: &mut Chain,
    model: &mut Model,
    g: &Genesis,
    parent: usize,
    txs: &[TxSpec],
    want: Expect,
) -> usize {
    let block = model.build(parent, txs, 0, 0, Corruption::None);
    assert_eq!(model.submit(parent, block.clone(), Corruption::None), want);
    let got = chain.accept_block(block, now_ms(g)).unwrap();
    assert_eq!(acceptance_kind(&got.acceptance), Some(want), "{:?}", got.acceptance);
    check(chain, model, 0).unwrap();
    model.blocks.len() - 1
}

/// A fixed scenario that must reach a reorg to a heavier side branch and back, an
/// invalid block mid-branch, and a restart (the random runs cover these only by chance).
#[test]
fn a_side_branch_overtakes_then_fails_mid_branch_and_survives_a_restart() {
    let g = test_genesis(&[u64::MAX - 10, 10, 0, 0], 1);
    let dir = tempfile::tempdir().unwrap();
    let mut chain = Chain::open(dir.path(), &g).unwrap();
    let mut model = Model::new(g.clone());
    let spend = |amount| TxSpec { from: 0, to: 5, amount, fee: AmountSpec::Zero, nonce_delta: 0 };
    let submit = |chain: &mut Chain, model: &mut Model, parent: usize, txs: &[TxSpec], want: Expect| {
        submit_expecting(chain, model, &g, parent, txs, want)
    };
    // Main branch: three blocks.
    let a1 = submit(&mut chain, &mut model, 0, &[spend(AmountSpec::One)], Expect::Connected);
    let a2 = submit(&mut chain, &mut model, a1, &[], Expect::Connected);
    let _a3 = submit(&mut chain, &mut model, a2, &[], Expect::Connected);
    // Side branch off genesis spends everything account 0 has (u64::MAX - 10), then
    // becomes heavier: reorg.
    let b1 = submit(&mut chain, &mut model, 0, &[spend(AmountSpec::BalanceMinus(0))], Expect::SideBranch);
    let b2 = submit(&mut chain, &mut model, b1, &[], Expect::SideBranch);
    let b3 = submit(&mut chain, &mut model, b2, &[], Expect::SideBranch);
    let b4 = submit(&mut chain, &mut model, b3, &[], Expect::Connected);
    // A third branch off a1 whose fourth block overspends: stored on the side until it
    // would win, then found invalid; the chain stays on b4 (equal work, seen first).
    let c2 = submit(&mut chain, &mut model, a1, &[], Expect::SideBranch);
    let c3 = submit(&mut chain, &mut model, c2, &[], Expect::SideBranch);
    let c4 = submit(&mut chain, &mut model, c3, &[spend(AmountSpec::BalancePlusOne)], Expect::SideBranch);
    let _c5 = submit(&mut chain, &mut model, c4, &[], Expect::Invalid);
    assert_eq!(chain.tip().hash, model.blocks[b4].hash);
    drop(chain);
    let chain = Chain::open(dir.path(), &g).unwrap();
    check(&chain, &model, 0).unwrap();
}

/// Pins down a tie the fork-choice text leaves open: a reorg that fails part-way leaves
/// the tip on the new branch's last valid block when it has as much work as the old tip,
/// and a later failed reorg returns to that tip, not to the equal-work old tip stored
/// earlier (it is no longer a candidate).
#[test]
fn a_failed_reorg_returns_to_the_chain_it_left_not_an_older_equal_one() {
    let g = test_genesis(&[1_000, 0, 0, 0], 5);
    let dir = tempfile::tempdir().unwrap();
    let mut chain = Chain::open(dir.path(), &g).unwrap();
    let mut model = Model::new(g.clone());
    let overspend =
        [TxSpec { from: 0, to: 6, amount: AmountSpec::BalancePlusOne, fee: AmountSpec::One, nonce_delta: 0 }];
    let submit = |chain: &mut Chain, model: &mut Model, parent: usize, txs: &[TxSpec], want: Expect| {
        submit_expecting(chain, model, &g, parent, txs, want)
    };
    let y1 = submit(&mut chain, &mut model, 0, &[], Expect::Connected);
    let y2 = submit(&mut chain, &mut model, y1, &[], Expect::Connected);
    let y3 = submit(&mut chain, &mut model, y2, &[], Expect::Connected);
    let a1 = submit(&mut chain, &mut model, 0, &[], Expect::SideBranch);
    let a2 = submit(&mut chain, &mut model, a1, &[], Expect::SideBranch);
    let a3 = submit(&mut chain, &mut model, a2, &[], Expect::SideBranch);
    submit(&mut chain, &mut model, a3, &overspend, Expect::Invalid);
    assert_eq!(chain.tip().hash, model.blocks[a3].hash, "stays on the branch it moved to");
    let d1 = submit(&mut chain, &mut model, 0, &[], Expect::SideBranch);
    let d2 = submit(&mut chain, &mut model, d1, &overspend, Expect::SideBranch);
    let d3 = submit(&mut chain, &mut model, d2, &[], Expect::SideBranch);
    submit(&mut chain, &mut model, d3, &[], Expect::Invalid);
    assert_eq!(chain.tip().hash, model.blocks[a3].hash);
    assert_ne!(chain.tip().hash, model.blocks[y3].hash);
    drop(chain);
    let chain = Chain::open(dir.path(), &g).unwrap();
    model.restart();
    check(&chain, &model, 0).unwrap();
}
