//! A reference model of the mempool, and a runner that drives the real [`Mempool`] and
//! the model through the same sequence of operations, checking after every step that
//! they agree and that the pool keeps its promises.
//!
//! Used by the property test below (random sequences, with amounts, fees, balances and
//! nonces drawn heavily from the edges) and by the `mempool` fuzz target
//! (`fuzz/fuzz_targets/mempool.rs`, the same sequences decoded from fuzz bytes).
//!
//! The model is deliberately plain: per sender, a list of pending transfers in nonce
//! order; sums in `u128`, so nothing in the model itself can overflow. It predicts the
//! exact outcome of every admission (which refusal, with which figures), of block
//! connects, reorgs and expiry. Eviction at the byte cap is the one place where it
//! predicts a set of allowed outcomes instead (a refusal, or an admission whose
//! evictions obey the eviction rule), checks the real pool's choice against it and
//! then takes the real pool's contents.
//!
//! Invariants checked after every step (see [`check_invariants`]): every sender's
//! pending transfers carry consecutive nonces from the chain's nonce and are affordable
//! from the chain's balance alone, in order; the byte cap holds and the byte count is
//! the sum of the sizes; the indexes agree; and a block template selected now is a block
//! that cairn-core's validation accepts on the current state.
//!
//! The model sums in `u128` on purpose (a `u64` amount plus a `u64` amount cannot
//! overflow there), so the arithmetic lint of the pool itself does not apply here.
#![allow(clippy::arithmetic_side_effects)]

use super::{transfer_size, Mempool, MempoolConfig, MempoolError};
use cairn_core::assemble::assemble_block;
use cairn_core::block::Block;
use cairn_core::genesis::Genesis;
use cairn_core::params::ChainParams;
use cairn_core::state::{commit_to_map, debit_sender, undo_in_map, Account, BlockUndo};
use cairn_core::transaction::{address_of, public_key_of, signing_key_from_bytes, Transaction, Transfer};
use cairn_core::validation::apply_block;
use cairn_core::validation::{check_block_structure, check_transfer_at, ParentInfo};
use cairn_core::{Address, Amount, SignedTransfer, Txid};
use k256::ecdsa::SigningKey;
use std::collections::{BTreeMap, HashMap, HashSet};

/// Senders the sequences use; one more key, the "outsider", pays into blocks from
/// elsewhere (credits near the largest amount) without ever using the mempool.
pub const SENDERS: usize = 4;

/// An amount as an operation asks for it: a literal, or relative to what the sender can
/// still spend (so that "exactly affordable" and "one too many" come up often).
#[derive(Clone, Copy, Debug)]
pub enum AmountSel {
    Lit(u64),
    /// What the sender can still spend at this nonce (its balance minus the cost of its
    /// other pending transfers) minus the fee, minus this.
    Left(u64),
    /// The same, plus this: just unaffordable.
    Over(u64),
}

/// Which nonce a submitted transfer carries.
#[derive(Clone, Copy, Debug)]
pub enum NonceSel {
    /// The sender's next nonce (chain nonce + pending).
    Next,
    /// The nonce of the sender's pending transfer number `i` (mod their count): a replacement.
    Replace(u8),
    /// Next + 1 + this: a gap.
    Gap(u8),
    /// Chain nonce - 1 - this: already used.
    Low(u8),
    Lit(u64),
}

#[derive(Clone, Debug)]
pub enum Op {
    Submit {
        sender: u8,
        to: u8,
        nonce: NonceSel,
        amount: AmountSel,
        fee: u64,
    },
    /// A block on the tip: the first `take` transfers of a template, conflicting
    /// transfers from the senders in `conflicts` (bit i: sender i spends its chain nonce
    /// elsewhere), and an outsider's credit of `credit` to sender `credit_to`.
    Connect {
        take: u8,
        conflicts: u8,
        credit: u64,
        credit_to: u8,
    },
    /// A reorg: `disconnect` blocks undone, then `connect` new blocks on the old
    /// branch's base holding conflicts, an outsider's credit and some of the undone
    /// transfers (bit i of `remine` re-mines the undone transfer i).
    Reorg {
        disconnect: u8,
        connect: u8,
        conflicts: u8,
        credit: u64,
        credit_to: u8,
        remine: u64,
    },
    /// `count` transfers of 1 from `sender` to the next sender, each at the sender's
    /// next nonce and paying `fee`, one after another: the pool grows large (up to the
    /// sender limit and the byte cap), so that blocks take a small part of it.
    Burst {
        sender: u8,
        count: u8,
        fee: u64,
    },
    /// The clock moves on by this many milliseconds (expiry).
    Advance {
        ms: u64,
    },
    /// A template of at most this many bytes of transfers, checked against consensus.
    Select {
        max_bytes: u32,
    },
}

/// One whole sequence: the starting state, the pool's configuration, the operations.
#[derive(Clone, Debug)]
pub struct Case {
    pub balances: [u64; SENDERS],
    pub nonces: [u64; SENDERS],
    pub outsider_balance: u64,
    pub config: MempoolConfig,
    pub ops: Vec<Op>,
}

/// What the model expects of a submission.
#[derive(Debug)]
enum Expect {
    Admit,
    Refuse(MempoolError),
    /// The pool is over its cap with the newcomer: refused as full, or admitted with
    /// evictions that obey the eviction rule.
    AdmitOrFull,
}

struct Pending {
    tx: SignedTransfer,
    added_ms: u64,
}

struct Model {
    state: HashMap<Address, Account>,
    pool: BTreeMap<Address, Vec<Pending>>,
    blocks: Vec<(Block, BlockUndo)>,
    now: u64,
}

struct World {
    params: ChainParams,
    genesis: Block,
    keys: Vec<SigningKey>,
    outsider: SigningKey,
}

fn key(i: u8) -> SigningKey {
    signing_key_from_bytes(&[i.wrapping_add(1); 32]).expect("a fixed valid key")
}

fn cost(tx: &SignedTransfer) -> u128 {
    u128::from(tx.transfer.amount.0) + u128::from(tx.transfer.fee.0)
}

fn account(state: &HashMap<Address, Account>, a: &Address) -> Account {
    state.get(a).copied().unwrap_or_default()
}

impl World {
    fn new() -> World {
        let genesis = Genesis::dev();
        World {
            params: genesis.params,
            genesis: genesis.block(),
            keys: (0..SENDERS as u8).map(key).collect(),
            outsider: key(100),
        }
    }

    fn address(&self, i: u8) -> Address {
        let k = &self.keys[usize::from(i) % SENDERS];
        address_of(k)
    }

    fn transfer(&self, k: &SigningKey, nonce: u64, to: Address, amount: u64, fee: u64) -> SignedTransfer {
        Transfer {
            chain_id: self.params.chain_id,
            nonce,
            from: public_key_of(k),
            to,
            amount: Amount(amount),
            fee: Amount(fee),
        }
        .sign(k)
        .expect("signing with a valid key")
    }

    fn parent(&self, height: u64) -> ParentInfo {
        let mut p = ParentInfo::of_genesis(&self.genesis.header);
        p.height = height;
        p
    }

    /// A block at `height` on `state` holding those of `candidates` that apply in turn;
    /// the coinbase pays a miner address of its own, so it never overflows.
    fn block_from(
        &self,
        state: &HashMap<Address, Account>,
        height: u64,
        candidates: &[SignedTransfer],
    ) -> Block {
        let miner = Address([0xc0; 20]);
        let mut taken: Vec<SignedTransfer> = Vec::new();
        for c in candidates {
            taken.push(*c);
            let ok = assemble_block(&self.params, &self.parent(height), 1, miner, &taken)
                .is_some_and(|b| apply_block(state, &b, &self.params).is_ok());
            if !ok {
                taken.pop();
            }
        }
        assemble_block(&self.params, &self.parent(height), 1, miner, &taken).expect("fees were checked")
    }
}

impl Model {
    fn spent(&self, a: &Address) -> u128 {
        self.pool.get(a).map_or(0, |q| q.iter().map(|p| cost(&p.tx)).sum())
    }

    fn len(&self, a: &Address) -> usize {
        self.pool.get(a).map_or(0, Vec::len)
    }

    fn bytes(&self) -> usize {
        self.pool.values().flatten().map(|p| transfer_size(&p.tx)).sum()
    }

    fn contains(&self, txid: &Txid) -> bool {
        self.pool.values().flatten().any(|p| p.tx.txid() == *txid)
    }

    fn expire(&mut self, config: &MempoolConfig) {
        let cutoff = self.now.saturating_sub(config.expiry_ms);
        for q in self.pool.values_mut() {
            if let Some(i) = q.iter().position(|p| p.added_ms < cutoff) {
                q.truncate(i);
            }
        }
        self.pool.retain(|_, q| !q.is_empty());
    }

    /// Keeps, for every sender, the pending transfers from the chain's nonce on that
    /// apply one after another on the chain's account; the rest go.
    fn revalidate(&mut self) {
        for (a, q) in self.pool.iter_mut() {
            let mut acc = account(&self.state, a);
            q.retain(|p| p.tx.transfer.nonce >= acc.nonce);
            let mut keep = 0;
            for p in q.iter() {
                match debit_sender(acc, &p.tx.transfer) {
                    Ok(next) => {
                        acc = next;
                        keep += 1;
                    }
                    Err(_) => break,
                }
            }
            q.truncate(keep);
        }
        self.pool.retain(|_, q| !q.is_empty());
    }

    fn expect_submit(&self, tx: &SignedTransfer, config: &MempoolConfig) -> Expect {
        use MempoolError as E;
        let t = &tx.transfer;
        if self.contains(&tx.txid()) {
            return Expect::Refuse(E::Duplicate);
        }
        if t.fee < config.min_fee {
            return Expect::Refuse(E::FeeTooLow { fee: t.fee, min_fee: config.min_fee });
        }
        let Some(new_cost) = t.amount.checked_add(t.fee) else { return Expect::Refuse(E::Overflow) };
        let sender = t.sender();
        let acc = account(&self.state, &sender);
        let q: &[Pending] = self.pool.get(&sender).map_or(&[], Vec::as_slice);
        let Some(next) = acc.nonce.checked_add(q.len() as u64) else {
            return Expect::Refuse(E::NonceOverflow);
        };
        if t.nonce < acc.nonce {
            return Expect::Refuse(E::NonceTooLow { expected: acc.nonce, got: t.nonce });
        }
        let size = transfer_size(tx);
        let cap = config.max_bytes;
        if t.nonce < next {
            let i = (t.nonce - acc.nonce) as usize;
            let old = &q[i].tx.transfer;
            let min_fee = old.fee.checked_add(config.min_fee.max(Amount(1)));
            if min_fee.is_none_or(|m| t.fee < m) {
                return Expect::Refuse(E::ReplacementFeeTooLow {
                    old_fee: old.fee,
                    min_fee: min_fee.unwrap_or(Amount::MAX),
                });
            }
            let needed = self.spent(&sender) - cost(&q[i].tx) + u128::from(new_cost.0);
            let Ok(needed) = u64::try_from(needed) else { return Expect::Refuse(E::PendingOverflow) };
            if needed > acc.balance.0 {
                let before: u128 = q[..i].iter().map(|p| cost(&p.tx)).sum();
                let balance =
                    Amount(u64::try_from(u128::from(acc.balance.0).saturating_sub(before)).unwrap_or(0));
                return Expect::Refuse(if new_cost > balance {
                    E::InsufficientBalance { balance, needed: new_cost }
                } else {
                    E::ReplacementUnaffordable { balance: acc.balance, needed: Amount(needed) }
                });
            }
            let without_old = self.bytes() - transfer_size(&q[i].tx);
            return if without_old + size <= cap { Expect::Admit } else { Expect::AdmitOrFull };
        }
        if t.nonce > next {
            return Expect::Refuse(E::NonceGap { expected: next, got: t.nonce });
        }
        if q.len() >= config.max_per_sender {
            return Expect::Refuse(E::TooManyFromSender { limit: config.max_per_sender });
        }
        let left = u64::try_from(u128::from(acc.balance.0).saturating_sub(self.spent(&sender))).unwrap_or(0);
        if new_cost.0 > left {
            return Expect::Refuse(E::InsufficientBalance { balance: Amount(left), needed: new_cost });
        }
        if t.nonce == u64::MAX {
            return Expect::Refuse(E::NonceOverflow);
        }
        if self.bytes() + size <= cap {
            Expect::Admit
        } else {
            Expect::AdmitOrFull
        }
    }

    /// Takes the real pool's contents (after an eviction the model allowed).
    fn sync_from(&mut self, m: &Mempool) {
        self.pool.clear();
        for (a, q) in &m.senders {
            let list = q
                .txs
                .values()
                .filter_map(|id| m.entries.get(id))
                .map(|e| Pending { tx: e.tx, added_ms: e.added_ms })
                .collect();
            self.pool.insert(*a, list);
        }
    }
}

/// The pool's contents, per sender in nonce order.
fn real_contents(m: &Mempool) -> BTreeMap<Address, Vec<Txid>> {
    m.senders.iter().map(|(a, q)| (*a, q.txs.values().copied().collect())).collect()
}

fn model_contents(model: &Model) -> BTreeMap<Address, Vec<Txid>> {
    model.pool.iter().map(|(a, q)| (*a, q.iter().map(|p| p.tx.txid()).collect())).collect()
}

/// The pool's promises, checked on its internals.
pub fn check_invariants(m: &Mempool, state: &HashMap<Address, Account>) -> Result<(), String> {
    let mut count = 0usize;
    let mut bytes = 0usize;
    for (a, q) in &m.senders {
        if q.txs.is_empty() {
            return Err(format!("sender {a} has an empty queue"));
        }
        if q.txs.len() > m.config.max_per_sender {
            return Err(format!("sender {a} has {} pending, limit {}", q.txs.len(), m.config.max_per_sender));
        }
        let mut acc = account(state, a);
        let mut spent = 0u128;
        for (nonce, id) in &q.txs {
            let e = m.entries.get(id).ok_or_else(|| format!("queue of {a} names a missing entry"))?;
            if e.sender != *a || e.tx.transfer.nonce != *nonce || e.tx.txid() != *id {
                return Err(format!("entry {id} is filed under the wrong sender or nonce"));
            }
            if e.size != transfer_size(&e.tx) {
                return Err(format!("entry {id} records size {}, is {}", e.size, transfer_size(&e.tx)));
            }
            acc = debit_sender(acc, &e.tx.transfer).map_err(|err| {
                format!("sender {a}'s pending nonce {nonce} does not apply on the chain: {err}")
            })?;
            spent += cost(&e.tx);
            count += 1;
            bytes += e.size;
        }
        if u128::from(q.spent.0) != spent {
            return Err(format!("sender {a} records spent {}, pending cost {spent}", q.spent));
        }
    }
    if count != m.entries.len() || count != m.by_priority.len() || count != m.by_age.len() {
        return Err(format!(
            "indexes disagree: {count} queued, {} entries, {} by priority, {} by age",
            m.entries.len(),
            m.by_priority.len(),
            m.by_age.len()
        ));
    }
    if bytes != m.bytes {
        return Err(format!("byte count {} but sizes sum to {bytes}", m.bytes));
    }
    if m.bytes > m.config.max_bytes {
        return Err(format!("{} bytes pending, cap {}", m.bytes, m.config.max_bytes));
    }
    Ok(())
}

/// A template of at most `max_bytes` must be a valid block on `state`, take each
/// sender's transfers as a prefix of its queue, and take everything when nothing can
/// stand in the way (it all fits, the fees fit, and no credit can pass the largest amount).
fn check_template(
    world: &World,
    m: &Mempool,
    state: &HashMap<Address, Account>,
    height: u64,
    max_bytes: usize,
) -> Result<(), String> {
    let room = Amount::MAX.saturating_sub(world.params.block_reward);
    let budget = max_bytes.min((world.params.max_block_bytes as usize).saturating_sub(512));
    let sel = m.select(state, budget, room);
    let size: usize = sel.iter().map(transfer_size).sum();
    if size > budget {
        return Err(format!("template of {size} bytes, budget {budget}"));
    }
    let block = assemble_block(&world.params, &world.parent(height), 1, Address([0xc1; 20]), &sel)
        .ok_or("template fees overflow the coinbase")?;
    check_block_structure(&block, &world.params).map_err(|e| format!("template structure: {e}"))?;
    for i in 1..block.transactions.len() {
        check_transfer_at(&block, i, world.params.chain_id).map_err(|e| format!("template transfer: {e}"))?;
    }
    apply_block(state, &block, &world.params).map_err(|e| format!("template does not apply: {e}"))?;
    let mut per_sender: BTreeMap<Address, Vec<Txid>> = BTreeMap::new();
    for t in &sel {
        per_sender.entry(t.transfer.sender()).or_default().push(t.txid());
    }
    let contents = real_contents(m);
    for (a, ids) in &per_sender {
        let queue = contents.get(a).ok_or("template holds a transfer the pool does not")?;
        if !queue.starts_with(ids) {
            return Err(format!("template takes sender {a}'s transfers out of nonce order"));
        }
    }
    let total_fees: u128 = m.entries.values().map(|e| u128::from(e.tx.transfer.fee.0)).sum();
    let mut incoming: HashMap<Address, u128> = HashMap::new();
    for e in m.entries.values() {
        *incoming.entry(e.tx.transfer.to).or_default() += u128::from(e.tx.transfer.amount.0);
    }
    let credits_fit =
        incoming.iter().all(|(a, inc)| u128::from(account(state, a).balance.0) + inc <= u128::from(u64::MAX));
    if m.bytes <= budget && total_fees <= u128::from(room.0) && credits_fit && sel.len() != m.len() {
        return Err(format!(
            "template takes {} of {} pending transfers although all fit",
            sel.len(),
            m.len()
        ));
    }
    Ok(())
}

/// The pool size from which a block's share of it is counted in [`Reached`].
const LARGE_POOL: usize = 20;

/// What a run reached, for a test to show that its cases were not trivially small.
#[derive(Clone, Copy, Debug, Default)]
pub struct Reached {
    /// The most transfers the pool held after a step.
    pub largest_pool: usize,
    /// Blocks after which less than a quarter of a pool of at least [`LARGE_POOL`]
    /// transfers left it (the pool's per-entry removal; a larger share is swept).
    pub small_part_of_large_pool: usize,
    /// Blocks after which a pool of at least [`LARGE_POOL`] transfers was empty.
    pub large_pool_emptied: usize,
}

impl Reached {
    /// Both runs' figures together.
    pub fn together(self, other: Reached) -> Reached {
        Reached {
            largest_pool: self.largest_pool.max(other.largest_pool),
            small_part_of_large_pool: self.small_part_of_large_pool + other.small_part_of_large_pool,
            large_pool_emptied: self.large_pool_emptied + other.large_pool_emptied,
        }
    }
}

/// Runs `case` against a real pool and the model. `Err` names the first disagreement or
/// broken promise, with the step.
pub fn run(case: &Case) -> Result<Reached, String> {
    let world = World::new();
    let mut state = HashMap::new();
    for i in 0..SENDERS {
        state.insert(
            world.address(i as u8),
            Account { balance: Amount(case.balances[i]), nonce: case.nonces[i] },
        );
    }
    let outsider = address_of(&world.outsider);
    state.insert(outsider, Account { balance: Amount(case.outsider_balance), nonce: 0 });
    let start = 1_000_000;
    let mut model = Model { state, pool: BTreeMap::new(), blocks: Vec::new(), now: start };
    let mut pool = Mempool::with_config(case.config.clone());
    let mut reached = Reached::default();
    for (step, op) in case.ops.iter().enumerate() {
        let at = |e: String| format!("step {step} ({op:?}): {e}");
        let before = pool.len();
        apply_op(&world, &mut model, &mut pool, op).map_err(at)?;
        if matches!(op, Op::Connect { .. }) && before >= LARGE_POOL {
            let left = before.saturating_sub(pool.len());
            if pool.is_empty() {
                reached.large_pool_emptied += 1;
            } else if left > 0 && left * 4 < before {
                reached.small_part_of_large_pool += 1;
            }
        }
        reached.largest_pool = reached.largest_pool.max(pool.len());
        check_invariants(&pool, &model.state).map_err(at)?;
        let (real, expected) = (real_contents(&pool), model_contents(&model));
        if real != expected {
            return Err(at(format!("pool holds {real:?}, model expects {expected:?}")));
        }
        check_template(&world, &pool, &model.state, model.blocks.len() as u64, usize::MAX).map_err(at)?;
        check_views(&pool, &model).map_err(at)?;
    }
    Ok(reached)
}

/// The read-only views the RPC serves (`mempool_getTransfers`, the pending part of
/// `state_getHistory`, `mempool_estimateFee`), against the model, with edge sizes.
fn check_views(m: &Mempool, model: &Model) -> Result<(), String> {
    let all: Vec<&SignedTransfer> = model.pool.values().flatten().map(|p| &p.tx).collect();
    for limit in [0, 1, all.len(), usize::MAX] {
        let top = m.top_by_fee_rate(limit);
        if top.len() != limit.min(all.len()) {
            return Err(format!("top_by_fee_rate({limit}) gave {} of {}", top.len(), all.len()));
        }
        // Fee rates never rise down the list (compared exactly: fee x other size).
        let rate_rises = top.windows(2).any(|w| {
            u128::from(w[0].tx.transfer.fee.0) * (w[1].size as u128)
                < u128::from(w[1].tx.transfer.fee.0) * (w[0].size as u128)
        });
        if rate_rises {
            return Err(format!("top_by_fee_rate({limit}) is not highest fee rate first"));
        }
    }
    let mut addresses: Vec<Address> = all.iter().map(|t| t.transfer.to).collect();
    addresses.extend(model.state.keys().copied());
    for a in addresses {
        let got = m.pending_for(&a);
        let mut got_ids: Vec<Txid> = got.iter().map(|p| p.txid).collect();
        got_ids.sort_unstable();
        let mut want: Vec<Txid> = model
            .pool
            .iter()
            .flat_map(|(sender, q)| q.iter().filter(move |p| *sender == a || p.tx.transfer.to == a))
            .map(|p| p.tx.txid())
            .collect();
        want.sort_unstable();
        if got_ids != want {
            return Err(format!("pending_for({a}) gave {got_ids:?}, model {want:?}"));
        }
        if got.windows(2).any(|w| w[0].seq <= w[1].seq) {
            return Err(format!("pending_for({a}) is not newest first"));
        }
    }
    let first_sender = model.state.keys().next().copied();
    for tx_bytes in [0, 1, 200, usize::MAX] {
        for block_bytes in [0, 1, usize::MAX] {
            for sender in [None, first_sender.as_ref()] {
                let e = m.estimate_fee(tx_bytes, block_bytes, sender);
                let floor = m.config.min_fee;
                if e.min_fee != floor || e.admit_fee < floor || e.next_block_fee < floor {
                    return Err(format!("estimate below the minimum: {e:?}"));
                }
                if e.fee != e.admit_fee.max(e.next_block_fee) {
                    return Err(format!("estimate is not the larger of its parts: {e:?}"));
                }
                if m.bytes.saturating_add(tx_bytes) <= m.config.max_bytes && e.admit_fee != floor {
                    return Err(format!("room for {tx_bytes} bytes, yet admission costs more: {e:?}"));
                }
                if block_bytes == usize::MAX && e.next_block_fee != floor {
                    return Err(format!("an unbounded block has room, yet the next block costs more: {e:?}"));
                }
            }
        }
    }
    Ok(())
}

/// What the sender can still spend at `nonce`: its balance minus the cost of its other
/// pending transfers (a replacement's slot does not count).
fn resolve_amount(model: &Model, sender: &Address, nonce: u64, fee: u64, sel: AmountSel) -> u64 {
    let replaced: u128 = model
        .pool
        .get(sender)
        .into_iter()
        .flatten()
        .filter(|p| p.tx.transfer.nonce == nonce)
        .map(|p| cost(&p.tx))
        .sum();
    let others = model.spent(sender) - replaced;
    let left = u128::from(account(&model.state, sender).balance.0).saturating_sub(others);
    let left = left.saturating_sub(u128::from(fee));
    match sel {
        AmountSel::Lit(x) => x,
        AmountSel::Left(x) => u64::try_from(left.saturating_sub(u128::from(x))).unwrap_or(u64::MAX),
        AmountSel::Over(x) => u64::try_from(left.saturating_add(u128::from(x))).unwrap_or(u64::MAX),
    }
}

fn resolve_nonce(model: &Model, sender: &Address, sel: NonceSel) -> u64 {
    let acc = account(&model.state, sender);
    let next = acc.nonce.saturating_add(model.len(sender) as u64);
    match sel {
        NonceSel::Next => next,
        NonceSel::Replace(i) => match model.len(sender) {
            0 => next,
            n => acc.nonce.saturating_add((usize::from(i) % n) as u64),
        },
        NonceSel::Gap(g) => next.saturating_add(1).saturating_add(u64::from(g)),
        NonceSel::Low(l) => acc.nonce.saturating_sub(1).saturating_sub(u64::from(l)),
        NonceSel::Lit(n) => n,
    }
}

/// Transfers from "elsewhere": each sender in `mask` spends its chain nonce on a small
/// transfer that is not in the pool, and the outsider credits `credit` to `credit_to`.
fn foreign_transfers(
    world: &World,
    state: &HashMap<Address, Account>,
    mask: u8,
    credit: u64,
    credit_to: u8,
) -> Vec<SignedTransfer> {
    let mut out = Vec::new();
    let outsider = address_of(&world.outsider);
    let n = account(state, &outsider).nonce;
    out.push(world.transfer(&world.outsider, n, world.address(credit_to), credit, 1));
    for i in 0..SENDERS as u8 {
        if mask & (1 << i) != 0 {
            let a = world.address(i);
            let acc = account(state, &a);
            // Pays the outsider 2, fee 1: not what any pool transfer looks like.
            out.push(world.transfer(&world.keys[usize::from(i)], acc.nonce, outsider, 2, 1));
        }
    }
    out
}

fn connect(model: &mut Model, world: &World, candidates: &[SignedTransfer]) -> Block {
    let height = model.blocks.len() as u64 + 1;
    let block = world.block_from(&model.state, height, candidates);
    let (changes, undo) = apply_block(&model.state, &block, &world.params).expect("built to apply");
    commit_to_map(&mut model.state, &changes);
    model.blocks.push((block.clone(), undo));
    block
}

fn apply_op(world: &World, model: &mut Model, pool: &mut Mempool, op: &Op) -> Result<(), String> {
    let config = pool.config.clone();
    match *op {
        Op::Submit { sender, to, nonce, amount, fee } => {
            let key = &world.keys[usize::from(sender) % SENDERS];
            let from = address_of(key);
            let to = world.address(to);
            let nonce = resolve_nonce(model, &from, nonce);
            let amount = resolve_amount(model, &from, nonce, fee, amount);
            let tx = world.transfer(key, nonce, to, amount, fee);
            model.expire(&config);
            let expect = model.expect_submit(&tx, &config);
            let got = pool.add_verified(tx, &model.state, model.now);
            match (&expect, &got) {
                (Expect::Refuse(e), Err(g)) if e == g => {}
                (Expect::AdmitOrFull, Err(MempoolError::Full { .. })) => {}
                (Expect::Admit, Ok(id)) if *id == tx.txid() => {
                    let q = model.pool.entry(from).or_default();
                    let base = account(&model.state, &from).nonce;
                    let i = (nonce - base) as usize;
                    let p = Pending { tx, added_ms: model.now };
                    if i < q.len() {
                        q[i] = p;
                    } else {
                        q.push(p);
                    }
                }
                (Expect::AdmitOrFull, Ok(_)) => {
                    check_eviction(model, pool, &tx)?;
                    model.sync_from(pool);
                }
                _ => return Err(format!("model expects {expect:?}, pool answered {got:?}")),
            }
            if let Err(e) = &got {
                // A refusal is a clear reason, never a panic message.
                let text = e.to_string();
                if text.contains("overflow")
                    && !matches!(
                        e,
                        MempoolError::Overflow | MempoolError::PendingOverflow | MempoolError::NonceOverflow
                    )
                {
                    return Err(format!("unexpected overflow text: {text}"));
                }
            }
        }
        Op::Connect { take, conflicts, credit, credit_to } => {
            let room = Amount::MAX.saturating_sub(world.params.block_reward);
            let mut candidates: Vec<SignedTransfer> =
                pool.select(&model.state, usize::MAX, room).into_iter().take(usize::from(take)).collect();
            candidates.extend(foreign_transfers(world, &model.state, conflicts, credit, credit_to));
            let block = connect(model, world, &candidates);
            pool.on_block_connected(&block, &block.txids(), &model.state);
            pool.expire(model.now);
            let confirmed: HashSet<Txid> = block.txids().into_iter().collect();
            for q in model.pool.values_mut() {
                q.retain(|p| !confirmed.contains(&p.tx.txid()));
            }
            model.revalidate();
            model.expire(&config);
        }
        Op::Reorg { disconnect, connect: new_blocks, conflicts, credit, credit_to, remine } => {
            let n = usize::from(disconnect).min(model.blocks.len());
            let mut undone = Vec::new();
            for _ in 0..n {
                let (block, undo) = model.blocks.pop().expect("counted");
                undo_in_map(&mut model.state, &undo);
                undone.push(block);
            }
            undone.reverse();
            let returned: Vec<SignedTransfer> = undone
                .iter()
                .flat_map(|b| b.transactions.iter().filter_map(Transaction::as_transfer).copied())
                .collect();
            let mut connected = Vec::new();
            for b in 0..new_blocks {
                let mut candidates: Vec<SignedTransfer> = if b == 0 {
                    returned
                        .iter()
                        .enumerate()
                        .filter(|(i, _)| *i < 64 && remine & (1 << i) != 0)
                        .map(|(_, t)| *t)
                        .collect()
                } else {
                    Vec::new()
                };
                let mask = if b == 0 { conflicts } else { 0 };
                candidates.extend(foreign_transfers(world, &model.state, mask, credit, credit_to));
                connected.push(connect(model, world, &candidates));
            }
            // As the node does: the undone blocks against the new tip, then each new block.
            pool.on_blocks_disconnected(&undone, &model.state, model.now);
            for b in &connected {
                pool.on_block_connected(b, &b.txids(), &model.state);
            }
            // Model: pending first, a returned transfer where its slot is free or it pays
            // more; then each sender's run that applies on the new tip, up to the limit.
            let mut slots: BTreeMap<Address, BTreeMap<u64, Pending>> = BTreeMap::new();
            for (a, q) in std::mem::take(&mut model.pool) {
                for p in q {
                    slots.entry(a).or_default().insert(p.tx.transfer.nonce, p);
                }
            }
            for t in &returned {
                let slot = slots.entry(t.transfer.sender()).or_default();
                let keep =
                    slot.get(&t.transfer.nonce).is_some_and(|have| have.tx.transfer.fee >= t.transfer.fee);
                if !keep {
                    slot.insert(t.transfer.nonce, Pending { tx: *t, added_ms: model.now });
                }
            }
            for (a, s) in slots {
                let mut acc = account(&model.state, &a);
                let mut q = Vec::new();
                for (nonce, p) in s {
                    if nonce < acc.nonce {
                        continue;
                    }
                    if q.len() >= config.max_per_sender {
                        break;
                    }
                    match debit_sender(acc, &p.tx.transfer) {
                        Ok(next) => acc = next,
                        Err(_) => break,
                    }
                    q.push(p);
                }
                if !q.is_empty() {
                    model.pool.insert(a, q);
                }
            }
            model.expire(&config);
            if model.bytes() <= config.max_bytes {
                // Nothing had to be trimmed: the pool must be exactly the model.
            } else {
                // Trimmed from the lowest fee rate: what is left must be per-sender
                // prefixes of the model's queues, within the cap.
                let expected = model_contents(model);
                for (a, ids) in real_contents(pool) {
                    if !expected.get(&a).is_some_and(|q| q.starts_with(&ids)) {
                        return Err(format!(
                            "after the reorg's trim, sender {a}'s queue is not a prefix of the model's"
                        ));
                    }
                }
                model.sync_from(pool);
            }
        }
        Op::Burst { sender, count, fee } => {
            for _ in 0..count {
                let submit = Op::Submit {
                    sender,
                    to: sender.wrapping_add(1),
                    nonce: NonceSel::Next,
                    amount: AmountSel::Lit(1),
                    fee,
                };
                apply_op(world, model, pool, &submit)?;
            }
        }
        Op::Advance { ms } => {
            model.now = model.now.saturating_add(ms);
            pool.expire(model.now);
            model.expire(&config);
        }
        Op::Select { max_bytes } => {
            check_template(world, pool, &model.state, model.blocks.len() as u64, max_bytes as usize)?;
        }
    }
    Ok(())
}

/// After an admission that needed room: the newcomer is in, its own predecessors are
/// not evicted, what went is a suffix of each other sender's queue, and the first
/// transfer that went from each such sender paid a strictly lower fee rate than the
/// newcomer (an equal rate ranks above the newcomer, which is the newest).
fn check_eviction(before: &Model, pool: &Mempool, tx: &SignedTransfer) -> Result<(), String> {
    let after = real_contents(pool);
    let sender = tx.transfer.sender();
    if !pool.contains(&tx.txid()) {
        return Err("admitted, but the newcomer is not in the pool".into());
    }
    let size = transfer_size(tx) as u128;
    for (a, old) in &before.pool {
        let now = after.get(a).map_or(&[][..], Vec::as_slice);
        if *a == sender {
            for p in old.iter().filter(|p| p.tx.transfer.nonce < tx.transfer.nonce) {
                if !now.contains(&p.tx.txid()) {
                    return Err("eviction took the newcomer's own predecessors".into());
                }
            }
            continue;
        }
        let old_ids: Vec<Txid> = old.iter().map(|p| p.tx.txid()).collect();
        if !old_ids.starts_with(now) {
            return Err(format!("eviction left a gap in sender {a}'s queue"));
        }
        if let Some(gone) = old.get(now.len()) {
            let fee = u128::from(gone.tx.transfer.fee.0);
            let rate_gone = fee * size;
            let rate_new = u128::from(tx.transfer.fee.0) * transfer_size(&gone.tx) as u128;
            if rate_gone >= rate_new {
                return Err(format!(
                    "evicted a transfer paying fee {fee} for a newcomer paying {}",
                    tx.transfer.fee
                ));
            }
        }
    }
    Ok(())
}

/// Reads fuzz bytes as a [`Case`]: every value is drawn from the same edges the
/// property test favours, or taken literally from the bytes.
pub fn case_from_bytes(data: &[u8]) -> Case {
    struct Bytes<'a>(&'a [u8]);
    impl Bytes<'_> {
        fn byte(&mut self) -> u8 {
            let (b, rest) = self.0.split_first().map_or((0, &[][..]), |(b, r)| (*b, r));
            self.0 = rest;
            b
        }
        fn u64(&mut self) -> u64 {
            (0..8).fold(0u64, |acc, _| (acc << 8) | u64::from(self.byte()))
        }
        /// 0, 1, the largest amount and its neighbours, small numbers, or 8 bytes.
        fn edge(&mut self) -> u64 {
            match self.byte() % 8 {
                0 => 0,
                1 => 1,
                2 => u64::MAX,
                3 => u64::MAX - u64::from(self.byte()),
                4 => u64::from(self.byte()),
                5 => 1_000u64.saturating_mul(u64::from(self.byte())),
                6 => u64::MAX / 2 + u64::from(self.byte()),
                _ => self.u64(),
            }
        }
        fn amount(&mut self) -> AmountSel {
            match self.byte() % 3 {
                0 => AmountSel::Lit(self.edge()),
                1 => AmountSel::Left(u64::from(self.byte() % 4)),
                _ => AmountSel::Over(u64::from(self.byte() % 4)),
            }
        }
        fn nonce(&mut self) -> NonceSel {
            match self.byte() % 6 {
                0 | 1 => NonceSel::Next,
                2 => NonceSel::Replace(self.byte()),
                3 => NonceSel::Gap(self.byte() % 3),
                4 => NonceSel::Low(self.byte() % 3),
                _ => NonceSel::Lit(self.edge()),
            }
        }
    }
    let mut b = Bytes(data);
    let balances = [b.edge(), b.edge(), b.edge(), b.edge()];
    let nonces = std::array::from_fn(|_| match b.byte() % 8 {
        0 => u64::MAX,
        1 => u64::MAX - 1,
        n => u64::from(n % 3),
    });
    let outsider_balance = b.edge();
    let size = transfer_size_estimate();
    let config = MempoolConfig {
        max_bytes: match b.byte() % 3 {
            0 => 1 << 20,
            n => size * (usize::from(n) + usize::from(b.byte() % 8)),
        },
        min_fee: Amount(match b.byte() % 3 {
            0 => 0,
            1 => 1,
            _ => 1_000,
        }),
        max_per_sender: match b.byte() % 5 {
            4 => 64,
            n => usize::from(n) + 1,
        },
        expiry_ms: if b.byte() % 2 == 0 { 1_000 } else { 24 * 60 * 60 * 1000 },
    };
    let mut ops = Vec::new();
    while !b.0.is_empty() && ops.len() < 64 {
        ops.push(match b.byte() % 9 {
            0..=3 => Op::Submit {
                sender: b.byte(),
                to: b.byte(),
                nonce: b.nonce(),
                fee: b.edge(),
                amount: b.amount(),
            },
            4 => {
                Op::Connect { take: b.byte() % 8, conflicts: b.byte(), credit: b.edge(), credit_to: b.byte() }
            }
            5 => Op::Reorg {
                disconnect: b.byte() % 4,
                connect: b.byte() % 3,
                conflicts: b.byte(),
                credit: b.edge(),
                credit_to: b.byte(),
                remine: b.u64(),
            },
            6 => Op::Advance { ms: b.edge() % 2_000 },
            7 => Op::Burst { sender: b.byte(), count: b.byte() % 48, fee: b.edge() },
            _ => Op::Select { max_bytes: u32::from(b.byte()) * 16 },
        });
    }
    Case { balances, nonces, outsider_balance, config, ops }
}

/// The size of a transfer with small amounts (the usual one), for caps of a few transfers.
pub fn transfer_size_estimate() -> usize {
    let k = key(0);
    let world_chain = Genesis::dev().params.chain_id;
    let t = Transfer {
        chain_id: world_chain,
        nonce: 0,
        from: public_key_of(&k),
        to: Address([0; 20]),
        amount: Amount(1),
        fee: Amount(1),
    }
    .sign(&k)
    .expect("signing with a valid key");
    transfer_size(&t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Amounts, fees and balances: mostly the edges.
    fn edge() -> impl Strategy<Value = u64> {
        prop_oneof![
            3 => Just(0u64),
            3 => Just(1u64),
            3 => Just(u64::MAX),
            3 => (0..1_000u64).prop_map(|x| u64::MAX - x),
            2 => Just(u64::MAX / 2),
            3 => 0..10_000u64,
            2 => any::<u64>(),
        ]
    }

    fn amount() -> impl Strategy<Value = AmountSel> {
        prop_oneof![
            3 => edge().prop_map(AmountSel::Lit),
            2 => (0..3u64).prop_map(AmountSel::Left),
            2 => (1..3u64).prop_map(AmountSel::Over),
        ]
    }

    fn nonce() -> impl Strategy<Value = NonceSel> {
        prop_oneof![
            5 => Just(NonceSel::Next),
            3 => any::<u8>().prop_map(NonceSel::Replace),
            1 => (0..3u8).prop_map(NonceSel::Gap),
            1 => (0..3u8).prop_map(NonceSel::Low),
            1 => edge().prop_map(NonceSel::Lit),
        ]
    }

    fn fee() -> impl Strategy<Value = u64> {
        prop_oneof![4 => 0..3_000u64, 2 => edge()]
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            8 => (any::<u8>(), any::<u8>(), nonce(), amount(), fee())
                .prop_map(|(sender, to, nonce, amount, fee)| Op::Submit { sender, to, nonce, amount, fee }),
            2 => (prop_oneof![3 => 0..6u8, 1 => Just(u8::MAX)], any::<u8>(), edge(), any::<u8>())
                .prop_map(|(take, conflicts, credit, credit_to)| Op::Connect { take, conflicts, credit, credit_to }),
            1 => (1..4u8, 0..3u8, any::<u8>(), edge(), any::<u8>(), any::<u64>()).prop_map(
                |(disconnect, connect, conflicts, credit, credit_to, remine)| Op::Reorg {
                    disconnect, connect, conflicts, credit, credit_to, remine,
                }
            ),
            1 => prop_oneof![Just(1u64), Just(999), Just(1_000), Just(1_001), 0..2_000u64]
                .prop_map(|ms| Op::Advance { ms }),
            1 => (0..2_000u32).prop_map(|max_bytes| Op::Select { max_bytes }),
            1 => burst(),
        ]
    }

    fn burst() -> impl Strategy<Value = Op> {
        (any::<u8>(), 1..48u8, fee()).prop_map(|(sender, count, fee)| Op::Burst { sender, count, fee })
    }

    /// Mostly the edges; one case in four builds large pools (funded senders, a high
    /// sender limit, more bursts), where a block takes a small part of the pool or
    /// all of it.
    fn case() -> impl Strategy<Value = Case> {
        prop_oneof![3 => edge_case(), 1 => large_pool_case()]
    }

    fn large_pool_case() -> impl Strategy<Value = Case> {
        let size = transfer_size_estimate();
        let balance = prop_oneof![Just(u64::MAX / 2), Just(u64::MAX), 1_000_000..u64::MAX / 4];
        (
            proptest::array::uniform4(balance),
            edge(),
            prop_oneof![Just(1usize << 20), Just(100 * size)],
            prop_oneof![Just(0u64), Just(1)],
            proptest::collection::vec(prop_oneof![3 => op(), 1 => burst()], 1..40),
        )
            .prop_map(move |(balances, outsider_balance, max_bytes, min_fee, ops)| Case {
                balances,
                nonces: [0; SENDERS],
                outsider_balance,
                config: MempoolConfig {
                    max_bytes,
                    min_fee: Amount(min_fee),
                    max_per_sender: 64,
                    expiry_ms: 24 * 60 * 60 * 1000,
                },
                ops,
            })
    }

    fn edge_case() -> impl Strategy<Value = Case> {
        let size = transfer_size_estimate();
        let config = (
            prop_oneof![Just(1usize << 20), (2..10usize).prop_map(move |n| n * size), Just(100 * size)],
            prop_oneof![Just(0u64), Just(1), Just(1_000)],
            prop_oneof![4 => 1..5usize, 1 => Just(64usize)],
            prop_oneof![Just(1_000u64), Just(24 * 60 * 60 * 1000)],
        )
            .prop_map(|(max_bytes, min_fee, max_per_sender, expiry_ms)| MempoolConfig {
                max_bytes,
                min_fee: Amount(min_fee),
                max_per_sender,
                expiry_ms,
            });
        let nonce = prop_oneof![8 => Just(0u64), 1 => Just(u64::MAX), 1 => Just(u64::MAX - 1)];
        (
            proptest::array::uniform4(edge()),
            proptest::array::uniform4(nonce),
            edge(),
            config,
            proptest::collection::vec(op(), 1..40),
        )
            .prop_map(|(balances, nonces, outsider_balance, config, ops)| Case {
                balances,
                nonces,
                outsider_balance,
                config,
                ops,
            })
    }

    /// 256 cases in CI (a few seconds on a debug build); more with PROPTEST_CASES. What
    /// the cases reached is printed, and the run fails if large pools never came up.
    #[test]
    fn mempool_agrees_with_its_model() {
        use proptest::test_runner::{Config, TestCaseError, TestRunner};
        let cases = std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(256);
        let mut runner = TestRunner::new(Config { cases, failure_persistence: None, ..Config::default() });
        let total = std::cell::Cell::new(Reached::default());
        let result = runner.run(&case(), |case| {
            let r = run(&case).map_err(TestCaseError::fail)?;
            total.set(total.get().together(r));
            Ok(())
        });
        let t = total.get();
        eprintln!("mempool model: {cases} cases; {t:?}");
        if let Err(e) = result {
            panic!("{e}");
        }
        assert!(
            t.largest_pool >= 40 && t.small_part_of_large_pool > 0 && t.large_pool_emptied > 0,
            "the cases never built and drained a large pool: {t:?}"
        );
    }

    /// The sequence that bricked debug nodes: two admitted transfers, then a replacement
    /// of the second whose amount + fee is exactly the largest amount.
    #[test]
    fn replacement_costing_the_largest_amount_is_refused() {
        let size = transfer_size_estimate();
        let case = Case {
            balances: [1_000_000_000, 0, 0, 0],
            nonces: [0; SENDERS],
            outsider_balance: 0,
            config: MempoolConfig { max_bytes: 100 * size, ..MempoolConfig::default() },
            ops: vec![
                Op::Submit { sender: 0, to: 1, nonce: NonceSel::Next, amount: AmountSel::Lit(1), fee: 1_000 },
                Op::Submit { sender: 0, to: 1, nonce: NonceSel::Next, amount: AmountSel::Lit(1), fee: 1_000 },
                Op::Submit {
                    sender: 0,
                    to: 1,
                    nonce: NonceSel::Replace(1),
                    amount: AmountSel::Lit(u64::MAX - 5_000),
                    fee: 5_000,
                },
            ],
        };
        run(&case).unwrap();
        // And directly: the refusal names the overflow.
        let world = World::new();
        let k = &world.keys[0];
        let mut state = HashMap::new();
        state.insert(address_of(k), Account { balance: Amount(1_000_000_000), nonce: 0 });
        let mut m = Mempool::new(1 << 20);
        m.add_verified(world.transfer(k, 0, world.address(1), 1, 1_000), &state, 0).unwrap();
        m.add_verified(world.transfer(k, 1, world.address(1), 1, 1_000), &state, 0).unwrap();
        let err = m.add_verified(world.transfer(k, 1, world.address(1), u64::MAX - 5_000, 5_000), &state, 0);
        assert_eq!(err, Err(MempoolError::PendingOverflow));
        assert!(err.unwrap_err().to_string().starts_with("amount overflow:"));
        assert_eq!(m.len(), 2);
    }
}
