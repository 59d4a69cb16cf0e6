//! Prometheus metrics: `GET /metrics` on `--metrics-addr` (docs/METRICS.md lists every
//! metric).
//!
//! Two kinds of figures, kept apart on purpose:
//!
//! - **Events** (blocks connected, messages in by command, RPC calls, refusals by
//!   reason, ...) are counters and histograms in one process-wide [`Metrics`], bumped
//!   where the event happens by a one-line call. Each is an atomic add on a metric made
//!   when the process first touches it: the labelled ones are made for every label value
//!   up front and indexed (never looked up by name under a lock), and histograms are
//!   [`AtomicHistogram`]s (the crate's `Histogram` takes a lock per observation).
//! - **State** (height, total work, peers, mempool size, hash rate, the process's own
//!   figures) is read at scrape time from the same source RPC reads (`Node`, the P2P
//!   layer's `Network`, `/proc/self`), by a collector, so `/metrics` and
//!   `chain_getInfo` / `net_peers` / `mempool_getInfo` cannot disagree. The exceptions,
//!   state only the P2P protocol thread can see (headers and blocks in flight,
//!   transfers waiting for a predecessor), are gauges that thread sets after each batch
//!   of inputs, as it does for `net_peers`' list.
//!
//! The figures are encoded by `prometheus-client`. A scraper that asks for OpenMetrics
//! (`Accept: application/openmetrics-text`, as Prometheus does) gets the crate's output
//! as it is; any other client gets the same families in the Prometheus text format 0.0.4
//! (what `promtool check metrics` and older scrapers read), see [`crate::metrics_server::to_text_format`].
//!
//! The server is a small hyper HTTP/1.1 server on its own listener: at most
//! [`crate::metrics_server::MAX_CONNECTIONS`] connections at once, 10 s to send the request head, each
//! connection closed after [`crate::metrics_server::CONNECTION_LIFETIME`]. Scrapes run on the blocking
//! pool (the collector locks the chain and the mempool, each briefly, one after the other).
//!
//! This file is the event side, which the chain's caller, the mempool and the P2P layer
//! call; it depends on none of them but for the error types it counts by reason. The
//! state collectors, the encoding and the server, which read the node and the network,
//! are [`crate::metrics_server`]: so no module the node calls depends back on the node.

use crate::chain::{AcceptResult, Acceptance};
use crate::mempool::error::MempoolError;
use crate::p2p::protocol::disconnect::DisconnectReason;
use cairn_core::validation::BlockError;
use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::{Registry, Unit};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, OnceLock};
use std::time::Duration;

// ---------------------------------------------------------------------------------------
// A histogram of atomic adds.

/// A histogram whose observation is a few relaxed atomic adds, no lock. Values are
/// recorded as integers in `1/scale` of the unit (nanoseconds for seconds), so the sum
/// is an integer add too; the count is the sum of the buckets, so a scrape never shows
/// a count that disagrees with its buckets.
#[derive(Clone, Debug)]
pub struct AtomicHistogram(Arc<HistogramInner>);

#[derive(Debug)]
struct HistogramInner {
    /// Upper bounds in the unit (for the encoder) and in recorded integers.
    bounds: Vec<f64>,
    scaled: Vec<u64>,
    /// One per bound, then the +Inf bucket; not cumulative.
    counts: Vec<AtomicU64>,
    sum: AtomicU64,
    scale: f64,
}

impl AtomicHistogram {
    /// A histogram of values recorded in `1/scale` of the unit, with these upper bounds
    /// (in the unit, increasing).
    pub fn new(bounds: &[f64], scale: f64) -> AtomicHistogram {
        AtomicHistogram(Arc::new(HistogramInner {
            bounds: bounds.to_vec(),
            scaled: bounds.iter().map(|b| (b * scale).round() as u64).collect(),
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum: AtomicU64::new(0),
            scale,
        }))
    }

    /// A histogram of durations in seconds (recorded in nanoseconds).
    pub fn seconds(bounds: &[f64]) -> AtomicHistogram {
        AtomicHistogram::new(bounds, 1e9)
    }

    /// A histogram of whole numbers (a depth, a count).
    pub fn counts(bounds: &[f64]) -> AtomicHistogram {
        AtomicHistogram::new(bounds, 1.0)
    }

    /// Records `v` in `1/scale` of the unit.
    pub fn observe_scaled(&self, v: u64) {
        let h = &self.0;
        let i = h.scaled.iter().position(|b| v <= *b).unwrap_or(h.scaled.len());
        h.counts[i].fetch_add(1, Ordering::Relaxed);
        h.sum.fetch_add(v, Ordering::Relaxed);
    }

    pub fn observe_duration(&self, d: Duration) {
        self.observe_scaled(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.0.counts.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }
}

impl TypedMetric for AtomicHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for AtomicHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let h = &self.0;
        let counts: Vec<u64> = h.counts.iter().map(|c| c.load(Ordering::Relaxed)).collect();
        let count = counts.iter().sum();
        let sum = h.sum.load(Ordering::Relaxed) as f64 / h.scale;
        // The crate's encoder takes per-bucket counts and an upper bound of f64::MAX
        // for +Inf, as its own Histogram hands it.
        let buckets: Vec<(f64, u64)> =
            h.bounds.iter().copied().chain(std::iter::once(f64::MAX)).zip(counts).collect();
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

// ---------------------------------------------------------------------------------------
// Labelled counters made up front.

type Labels = [(&'static str, &'static str); 1];

/// A counter family whose label values are all known up front: each child is made
/// once and kept here, so counting is an index and an atomic add.
#[derive(Debug)]
pub struct CounterVec {
    values: &'static [&'static str],
    counters: Vec<Counter>,
}

impl CounterVec {
    fn register(
        registry: &mut Registry,
        name: &str,
        help: &str,
        unit: Option<Unit>,
        label: &'static str,
        values: &'static [&'static str],
    ) -> CounterVec {
        let family = Family::<Labels, Counter>::default();
        let counters = values.iter().map(|v| family.get_or_create_owned(&[(label, *v)])).collect();
        match unit {
            Some(unit) => registry.register_with_unit(name, help, unit, family),
            None => registry.register(name, help, family),
        }
        CounterVec { values, counters }
    }

    /// Adds `n` to the child with label value `value`. Callers pass only values of the
    /// list (the mapping functions below return nothing else; debug builds check it);
    /// anything else would count in the last child.
    pub fn inc_by(&self, value: &str, n: u64) {
        let found = self.values.iter().position(|v| *v == value);
        debug_assert!(found.is_some(), "label value {value:?} is not one of {:?}", self.values);
        let i = found.unwrap_or(self.values.len() - 1);
        self.counters[i].inc_by(n);
    }

    /// Adds `n` to the child at `index` in the value list (the catch-all when out of range).
    pub fn inc_index_by(&self, index: usize, n: u64) {
        let i = index.min(self.counters.len() - 1);
        self.counters[i].inc_by(n);
    }

    pub fn get(&self, value: &str) -> u64 {
        self.values.iter().position(|v| *v == value).map_or(0, |i| self.counters[i].get())
    }
}

// ---------------------------------------------------------------------------------------
// The process-wide event metrics.

/// Buckets of the block import time, in seconds.
const IMPORT_BUCKETS: &[f64] =
    &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
/// Buckets of the RPC call time, in seconds.
const RPC_BUCKETS: &[f64] =
    &[0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];
/// Buckets of the reorg depth, in blocks.
const DEPTH_BUCKETS: &[f64] = &[1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0, 32.0, 64.0, 128.0];
/// Buckets of the transfers in one block.
const TRANSFER_BUCKETS: &[f64] =
    &[0.0, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0];

/// `reason` values of `cairn_chain_invalid_blocks_total`: one per [`BlockError`] variant.
const INVALID_BLOCK_REASONS: &[&str] = &[
    "too_large",
    "bad_version",
    "bad_proof_of_work",
    "no_coinbase",
    "extra_coinbase",
    "coinbase_height",
    "bad_merkle_root",
    "duplicate_txid",
    "invalid_transfer",
    "wrong_height",
    "wrong_parent",
    "wrong_target",
    "timestamp_too_old",
    "timestamp_too_new",
    "transfer_not_applicable",
    "balance_overflow",
    "fee_overflow",
    "coinbase_amount",
    "invalid_ancestor",
    "state",
];

fn invalid_block_reason(e: &BlockError) -> &'static str {
    match e {
        BlockError::TooLarge { .. } => "too_large",
        BlockError::BadVersion(_) => "bad_version",
        BlockError::BadProofOfWork => "bad_proof_of_work",
        BlockError::NoCoinbase => "no_coinbase",
        BlockError::ExtraCoinbase { .. } => "extra_coinbase",
        BlockError::CoinbaseHeight { .. } => "coinbase_height",
        BlockError::BadMerkleRoot => "bad_merkle_root",
        BlockError::DuplicateTxid(_) => "duplicate_txid",
        BlockError::InvalidTransfer { .. } => "invalid_transfer",
        BlockError::WrongHeight { .. } => "wrong_height",
        BlockError::WrongParent { .. } => "wrong_parent",
        BlockError::WrongTarget { .. } => "wrong_target",
        BlockError::TimestampTooOld { .. } => "timestamp_too_old",
        BlockError::TimestampTooNew { .. } => "timestamp_too_new",
        BlockError::Transfer { .. } => "transfer_not_applicable",
        BlockError::BalanceOverflow { .. } => "balance_overflow",
        BlockError::FeeOverflow => "fee_overflow",
        BlockError::CoinbaseAmount { .. } => "coinbase_amount",
        BlockError::InvalidAncestor(_) => "invalid_ancestor",
        BlockError::State(_) => "state",
    }
}

/// `reason` values of `cairn_mempool_refusals_total`: one per [`MempoolError`] variant.
const REFUSAL_REASONS: &[&str] = &[
    "duplicate",
    "fee_too_low",
    "nonce_too_low",
    "nonce_gap",
    "insufficient_balance",
    "replacement_fee_too_low",
    "replacement_unaffordable",
    "too_many_from_sender",
    "full",
    "overflow",
    "pending_overflow",
    "nonce_overflow",
    "state",
];

fn refusal_reason(e: &MempoolError) -> &'static str {
    match e {
        MempoolError::Duplicate => "duplicate",
        MempoolError::FeeTooLow { .. } => "fee_too_low",
        MempoolError::NonceTooLow { .. } => "nonce_too_low",
        MempoolError::NonceGap { .. } => "nonce_gap",
        MempoolError::InsufficientBalance { .. } => "insufficient_balance",
        MempoolError::ReplacementFeeTooLow { .. } => "replacement_fee_too_low",
        MempoolError::ReplacementUnaffordable { .. } => "replacement_unaffordable",
        MempoolError::TooManyFromSender { .. } => "too_many_from_sender",
        MempoolError::Full { .. } => "full",
        MempoolError::Overflow => "overflow",
        MempoolError::PendingOverflow => "pending_overflow",
        MempoolError::NonceOverflow => "nonce_overflow",
        MempoolError::State(_) => "state",
    }
}

const EVICTION_REASONS: &[&str] = &["full", "expired"];

/// `command` values of the P2P message counters, indexed by the wire command byte
/// (docs/PROTOCOL.md), then the catch-all.
const COMMANDS: &[&str] = &[
    "version",
    "verack",
    "ping",
    "pong",
    "getaddr",
    "addr",
    "inv",
    "getdata",
    "notfound",
    "getheaders",
    "headers",
    "block",
    "tx",
    "sendcmpct",
    "cmpctblock",
    "getblocktxn",
    "blocktxn",
    "other",
];

/// `reason` values of `cairn_p2p_misbehaviour_total`. The protocol scores misbehaviour
/// with a short description ([`misbehaviour_reason`] maps it); every description that is
/// not one of the fixed ones or a presync refusal is a block or header that failed
/// validation (the validation error's text), counted as `invalid_block_or_header`.
const MISBEHAVIOUR_REASONS: &[&str] = &[
    "unrequested_headers",
    "unconnected_headers",
    "unrequested_block",
    "unsolicited_pong",
    "repeated_handshake",
    "getdata_flood",
    "unrequested_transfer",
    "invalid_transfer",
    "presync_not_continued",
    "presync_too_long",
    "presync_mismatch",
    "invalid_compact_block",
    "unrequested_blocktxn",
    "blocktxn_mismatch",
    "getblocktxn_bad_index",
    "invalid_block_or_header",
];

fn misbehaviour_reason(what: &str) -> &'static str {
    match what {
        "unrequested headers" => "unrequested_headers",
        "headers that do not connect" => "unconnected_headers",
        "unrequested block" => "unrequested_block",
        "unsolicited pong" => "unsolicited_pong",
        "repeated handshake" => "repeated_handshake",
        "getdata asks for too many blocks" => "getdata_flood",
        "unrequested transfer" => "unrequested_transfer",
        w if w.starts_with("invalid transfer") => "invalid_transfer",
        // The low-work header screen's refusals (`PresyncError`'s texts) other than an
        // invalid header.
        w if w.starts_with("headers do not continue the branch") => "presync_not_continued",
        w if w.starts_with("more than ") && w.ends_with(" headers below our tip's work") => {
            "presync_too_long"
        }
        w if w.starts_with("redownloaded header at height ") => "presync_mismatch",
        // Compact block relay (docs/PROTOCOL.md, "Compact blocks"); a compact block whose
        // header fails validation is an invalid header like any other.
        w if w.starts_with("invalid compact block")
            || w.starts_with("compact block with an invalid transfer") =>
        {
            "invalid_compact_block"
        }
        "unrequested blocktxn" => "unrequested_blocktxn",
        "blocktxn does not answer getblocktxn" => "blocktxn_mismatch",
        "getblocktxn for an index that is no transfer" => "getblocktxn_bad_index",
        _ => "invalid_block_or_header",
    }
}

/// `reason` values of `cairn_p2p_handshakes_failed_total`: the [`DisconnectReason`]
/// variants that can end a connection before its handshake completes.
const HANDSHAKE_REASONS: &[&str] = &[
    "handshake_timeout",
    "ping_timeout",
    "wrong_network",
    "self_connection",
    "duplicate",
    "too_many_peers",
    "banned",
    "blocked",
    "protocol",
    "misbehaviour",
    "malformed_frame",
    "stalled",
    "no_headers",
    "not_delivered",
    "slow_reader",
    "closed",
];

fn disconnect_reason(r: &DisconnectReason) -> &'static str {
    match r {
        DisconnectReason::HandshakeTimeout => "handshake_timeout",
        DisconnectReason::PingTimeout => "ping_timeout",
        DisconnectReason::WrongNetwork(_) => "wrong_network",
        DisconnectReason::SelfConnection => "self_connection",
        DisconnectReason::Duplicate => "duplicate",
        DisconnectReason::TooManyPeers => "too_many_peers",
        DisconnectReason::Banned => "banned",
        DisconnectReason::Blocked => "blocked",
        DisconnectReason::Protocol(_) => "protocol",
        DisconnectReason::Misbehaviour(_) => "misbehaviour",
        DisconnectReason::Wire(_) => "malformed_frame",
        DisconnectReason::Stalled => "stalled",
        DisconnectReason::NoHeaders => "no_headers",
        DisconnectReason::NotDelivered => "not_delivered",
        DisconnectReason::SlowReader => "slow_reader",
        DisconnectReason::Closed => "closed",
    }
}

/// Every event metric of the process. Made on first use; see the module docs.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub blocks_connected: Counter,
    pub blocks_disconnected: Counter,
    pub reorgs: Counter,
    pub reorg_depth: AtomicHistogram,
    pub block_import: AtomicHistogram,
    pub block_transfers: AtomicHistogram,
    pub orphans: Counter,
    pub invalid_blocks: CounterVec,
    pub mempool_admissions: Counter,
    pub mempool_refusals: CounterVec,
    pub mempool_evictions: CounterVec,
    pub p2p_messages_in: CounterVec,
    pub p2p_messages_out: CounterVec,
    pub p2p_bytes_in: CounterVec,
    pub p2p_bytes_out: CounterVec,
    pub p2p_misbehaviour: CounterVec,
    pub p2p_bans: Counter,
    pub p2p_handshakes_failed: CounterVec,
    pub p2p_headers_in_flight: prometheus_client::metrics::gauge::Gauge,
    pub p2p_blocks_in_flight: prometheus_client::metrics::gauge::Gauge,
    pub p2p_waiting_transfers: prometheus_client::metrics::gauge::Gauge,
    pub miner_blocks_mined: Counter,
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// The process's event metrics.
pub fn get() -> &'static Metrics {
    &METRICS
}

impl Metrics {
    fn new() -> Metrics {
        use prometheus_client::metrics::gauge::Gauge;
        let mut registry = Registry::with_prefix("cairn");
        let r = &mut registry;
        fn counter(r: &mut Registry, name: &str, help: &str) -> Counter {
            let c = Counter::default();
            r.register(name, help, c.clone());
            c
        }
        fn gauge(r: &mut Registry, name: &str, help: &str) -> Gauge {
            let g = Gauge::default();
            r.register(name, help, g.clone());
            g
        }
        fn histogram(
            r: &mut Registry,
            name: &str,
            help: &str,
            unit: Option<Unit>,
            h: AtomicHistogram,
        ) -> AtomicHistogram {
            match unit {
                Some(unit) => r.register_with_unit(name, help, unit, h.clone()),
                None => r.register(name, help, h.clone()),
            }
            h
        }
        Metrics {
            blocks_connected: counter(r, "chain_blocks_connected", "Blocks connected to the best chain (including by reorgs)"),
            blocks_disconnected: counter(r, "chain_blocks_disconnected", "Blocks disconnected from the best chain by reorgs"),
            reorgs: counter(r, "chain_reorgs", "Reorganisations: tip changes that disconnected at least one block"),
            reorg_depth: histogram(r, "chain_reorg_depth_blocks", "Blocks disconnected by each reorganisation", None, AtomicHistogram::counts(DEPTH_BUCKETS)),
            block_import: histogram(r, "chain_block_import", "Time to check and store a submitted block, connect it (and what it unlocked) and update the mempool", Some(Unit::Seconds), AtomicHistogram::seconds(IMPORT_BUCKETS)),
            block_transfers: histogram(r, "chain_block_transfers", "Transfers (coinbase excluded) in each block connected to the best chain", None, AtomicHistogram::counts(TRANSFER_BUCKETS)),
            orphans: counter(r, "chain_orphans_received", "Blocks received whose parent was unknown (held in the orphan pool)"),
            invalid_blocks: CounterVec::register(r, "chain_invalid_blocks", "Blocks found invalid, by the rule they broke", None, "reason", INVALID_BLOCK_REASONS),
            mempool_admissions: counter(r, "mempool_admissions", "Transfers admitted to the mempool"),
            mempool_refusals: CounterVec::register(r, "mempool_refusals", "Verified transfers the mempool refused, by reason", None, "reason", REFUSAL_REASONS),
            mempool_evictions: CounterVec::register(r, "mempool_evictions", "Pending transfers dropped from the mempool: to make room for a better-paying one (full) or after the expiry (expired)", None, "reason", EVICTION_REASONS),
            p2p_messages_in: CounterVec::register(r, "p2p_messages_received", "P2P messages received, by command", None, "command", COMMANDS),
            p2p_messages_out: CounterVec::register(r, "p2p_messages_sent", "P2P messages written to peer sockets, by command", None, "command", COMMANDS),
            p2p_bytes_in: CounterVec::register(r, "p2p_received", "P2P bytes received in whole frames (header included), by command", Some(Unit::Bytes), "command", COMMANDS),
            p2p_bytes_out: CounterVec::register(r, "p2p_sent", "P2P bytes written to peer sockets (frame header included), by command", Some(Unit::Bytes), "command", COMMANDS),
            p2p_misbehaviour: CounterVec::register(r, "p2p_misbehaviour", "Misbehaviour scored against peers, by reason", None, "reason", MISBEHAVIOUR_REASONS),
            p2p_bans: counter(r, "p2p_bans", "Peers banned for misbehaviour"),
            p2p_handshakes_failed: CounterVec::register(r, "p2p_handshakes_failed", "Connections closed before their handshake completed, by reason", None, "reason", HANDSHAKE_REASONS),
            p2p_headers_in_flight: gauge(r, "p2p_headers_in_flight", "Peers we await a headers reply from"),
            p2p_blocks_in_flight: gauge(r, "p2p_blocks_in_flight", "Block bodies requested from peers and not yet received"),
            p2p_waiting_transfers: gauge(r, "p2p_waiting_transfers", "Peers' transfers held until the transfer before them (by nonce) arrives"),
            miner_blocks_mined: counter(r, "miner_blocks_mined", "Blocks found by this node's miner and accepted by its chain"),
            registry,
        }
    }
}

// ----- the one-line calls from the rest of the node -----

/// `Node::submit_block`: what became of a block, and how long it took.
pub fn block_submitted(result: &AcceptResult, took: Duration) {
    let m = get();
    match &result.acceptance {
        Acceptance::Duplicate => return,
        Acceptance::Orphan { .. } => {
            m.orphans.inc();
        }
        Acceptance::Invalid(e) => m.invalid_blocks.inc_by(invalid_block_reason(e), 1),
        Acceptance::SideBranch | Acceptance::Connected => {}
    }
    m.block_import.observe_duration(took);
    if let Some(change) = &result.tip_change {
        m.blocks_connected.inc_by(change.connected.len() as u64);
        let depth = change.disconnected.len() as u64;
        if depth > 0 {
            m.blocks_disconnected.inc_by(depth);
            m.reorgs.inc();
            m.reorg_depth.observe_scaled(depth);
        }
        for b in &change.connected {
            m.block_transfers.observe_scaled(b.transactions.len().saturating_sub(1) as u64);
        }
    }
}

/// `Node::submit_transfer`: the mempool's answer.
pub fn transfer_submitted<T>(admitted: &Result<T, MempoolError>) {
    match admitted {
        Ok(_) => {
            get().mempool_admissions.inc();
        }
        Err(e) => get().mempool_refusals.inc_by(refusal_reason(e), 1),
    }
}

/// The mempool dropped `n` pending transfers (`reason`: `full` or `expired`).
pub fn mempool_evicted(reason: &'static str, n: usize) {
    if n > 0 {
        get().mempool_evictions.inc_by(reason, n as u64);
    }
}

/// The P2P driver read a whole frame of `bytes` bytes carrying `command`.
pub fn p2p_received(command: u8, bytes: usize) {
    let m = get();
    m.p2p_messages_in.inc_index_by(command as usize, 1);
    m.p2p_bytes_in.inc_index_by(command as usize, bytes as u64);
}

/// The P2P driver wrote `frame` to a peer socket.
pub fn p2p_sent(frame: &[u8]) {
    let m = get();
    // The header is magic (4 bytes), command (1), length (4).
    let command = frame.get(4).map_or(usize::MAX, |c| *c as usize);
    m.p2p_messages_out.inc_index_by(command, 1);
    m.p2p_bytes_out.inc_index_by(command, frame.len() as u64);
}

/// The protocol scored misbehaviour described by `what`.
pub fn p2p_misbehaved(what: &str) {
    get().p2p_misbehaviour.inc_by(misbehaviour_reason(what), 1);
}

/// A connection ended (or was refused) before its handshake completed.
pub fn p2p_handshake_failed(reason: &DisconnectReason) {
    get().p2p_handshakes_failed.inc_by(disconnect_reason(reason), 1);
}

/// The P2P protocol thread's own state, after a batch of inputs.
pub fn p2p_protocol_state(headers_in_flight: usize, blocks_in_flight: usize, waiting_transfers: usize) {
    let m = get();
    m.p2p_headers_in_flight.set(headers_in_flight as i64);
    m.p2p_blocks_in_flight.set(blocks_in_flight as i64);
    m.p2p_waiting_transfers.set(waiting_transfers as i64);
}

// ---------------------------------------------------------------------------------------
// RPC: calls and latency by method, counted by an RPC middleware (`rpc.rs`).

/// Per-method RPC metrics, made once the RPC module's method names are known.
#[derive(Debug)]
pub struct RpcMetrics {
    registry: Registry,
    /// Method name -> index into `methods`; a name not served is counted as `other`.
    index: HashMap<&'static str, usize>,
    methods: Vec<RpcMethodMetrics>,
}

#[derive(Debug)]
struct RpcMethodMetrics {
    ok: Counter,
    error: Counter,
    latency: AtomicHistogram,
}

static RPC: OnceLock<RpcMetrics> = OnceLock::new();

/// Label of a batch request: the calls in a batch are timed and counted as one.
pub const RPC_BATCH: &str = "batch";
/// Label of a method the server does not serve.
pub const RPC_OTHER: &str = "other";

/// Makes the RPC metrics for these methods (the first RPC server of the process does;
/// later ones serve the same methods).
pub fn rpc_methods(names: impl Iterator<Item = &'static str>) -> &'static RpcMetrics {
    RPC.get_or_init(|| {
        let mut registry = Registry::with_prefix("cairn");
        let calls = Family::<[(&'static str, &'static str); 2], Counter>::default();
        let latency =
            Family::<Labels, AtomicHistogram, fn() -> AtomicHistogram>::new_with_constructor(|| {
                AtomicHistogram::seconds(RPC_BUCKETS)
            });
        let mut all: Vec<&'static str> = names.collect();
        all.sort_unstable();
        all.dedup();
        all.push(RPC_BATCH);
        all.push(RPC_OTHER);
        let mut index = HashMap::new();
        let mut methods = Vec::new();
        for (i, name) in all.iter().enumerate() {
            index.insert(*name, i);
            methods.push(RpcMethodMetrics {
                ok: calls.get_or_create_owned(&[("method", name), ("outcome", "ok")]),
                error: calls.get_or_create_owned(&[("method", name), ("outcome", "error")]),
                latency: latency.get_or_create_owned(&[("method", name)]),
            });
        }
        registry.register(
            "rpc_calls",
            "JSON-RPC calls answered, by method and outcome (error: a JSON-RPC error object)",
            calls,
        );
        registry.register_with_unit(
            "rpc_call_duration",
            "Time from a JSON-RPC call's parse to its answer, by method",
            Unit::Seconds,
            latency,
        );
        RpcMetrics { registry, index, methods }
    })
}

/// The registries of the events: every metric of [`Metrics`], then the RPC metrics once
/// an RPC server has started. What a scrape encodes besides the state
/// ([`crate::metrics_server`]).
pub fn event_registries() -> impl Iterator<Item = &'static Registry> {
    std::iter::once(&get().registry).chain(RPC.get().map(|rpc| &rpc.registry))
}

impl RpcMetrics {
    /// The index [`RpcMetrics::record`] takes for `method` as the client named it.
    pub fn method_index(&self, method: &str) -> usize {
        self.index.get(method).copied().unwrap_or(self.methods.len() - 1)
    }

    /// Counts and times one call of the method at `index` ([`RpcMetrics::method_index`]).
    pub fn record(&self, index: usize, ok: bool, took: Duration) {
        let m = &self.methods[index.min(self.methods.len() - 1)];
        if ok {
            m.ok.inc();
        } else {
            m.error.inc();
        }
        m.latency.observe_duration(took);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_histogram_counts_each_value_in_its_bucket() {
        let h = AtomicHistogram::seconds(&[0.001, 0.01]);
        h.observe_duration(Duration::from_micros(500));
        h.observe_duration(Duration::from_millis(1));
        h.observe_duration(Duration::from_millis(5));
        h.observe_duration(Duration::from_secs(3));
        let mut registry = Registry::default();
        registry.register_with_unit("t", "Test", Unit::Seconds, h.clone());
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &registry).unwrap();
        assert!(out.contains("t_seconds_count 4\n"), "{out}");
        assert!(out.contains("t_seconds_sum 3.0065\n"), "{out}");
        assert!(out.contains("t_seconds_bucket{le=\"0.001\"} 2\n"), "{out}");
        assert!(out.contains("t_seconds_bucket{le=\"0.01\"} 3\n"), "{out}");
        assert!(out.contains("t_seconds_bucket{le=\"+Inf\"} 4\n"), "{out}");
        assert_eq!(h.count(), 4);
    }

    #[test]
    fn every_label_list_ends_with_its_catch_all_or_is_exhaustive() {
        // inc_by falls back to the last value: make sure that is a sensible one.
        assert_eq!(COMMANDS.last(), Some(&"other"));
        assert_eq!(MISBEHAVIOUR_REASONS.last(), Some(&"invalid_block_or_header"));
        for c in 0..=16u8 {
            assert_eq!(Some(COMMANDS[c as usize]), crate::p2p::wire::command_name(c));
        }
        assert_eq!(crate::p2p::wire::command_name(17), None);
    }

    #[test]
    fn presync_refusals_have_labels_of_their_own() {
        use crate::p2p::presync::PresyncError;
        let cases = [
            (PresyncError::NotContinued, "presync_not_continued"),
            (PresyncError::TooLong, "presync_too_long"),
            (PresyncError::Mismatch(7), "presync_mismatch"),
            (
                PresyncError::Invalid(cairn_core::BlockHash::ZERO, BlockError::BadProofOfWork),
                "invalid_block_or_header",
            ),
        ];
        for (e, label) in cases {
            assert_eq!(misbehaviour_reason(&e.to_string()), label, "{e}");
        }
        assert_eq!(misbehaviour_reason("invalid transfer: bad signature"), "invalid_transfer");
        // The compact-block texts of p2p/protocol/compact.rs.
        for (what, label) in [
            ("invalid compact block: compact block without a coinbase first", "invalid_compact_block"),
            ("compact block with an invalid transfer ab12: bad signature", "invalid_compact_block"),
            ("unrequested blocktxn", "unrequested_blocktxn"),
            ("blocktxn does not answer getblocktxn", "blocktxn_mismatch"),
            ("getblocktxn for an index that is no transfer", "getblocktxn_bad_index"),
            ("compact block: timestamp too old", "invalid_block_or_header"),
        ] {
            assert_eq!(misbehaviour_reason(what), label, "{what}");
        }
        assert_eq!(misbehaviour_reason(&BlockError::BadMerkleRoot.to_string()), "invalid_block_or_header");
    }
}
