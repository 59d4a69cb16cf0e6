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
//!   layer's [`Network`], `/proc/self`), by a [`Collector`], so `/metrics` and
//!   `chain_getInfo` / `net_peers` / `mempool_getInfo` cannot disagree. The exceptions,
//!   state only the P2P protocol thread can see (headers and blocks in flight,
//!   transfers waiting for a predecessor), are gauges that thread sets after each batch
//!   of inputs, as it does for `net_peers`' list.
//!
//! The figures are encoded by `prometheus-client`. A scraper that asks for OpenMetrics
//! (`Accept: application/openmetrics-text`, as Prometheus does) gets the crate's output
//! as it is; any other client gets the same families in the Prometheus text format 0.0.4
//! (what `promtool check metrics` and older scrapers read), see [`to_text_format`].
//!
//! The server is a small hyper HTTP/1.1 server on its own listener: at most
//! [`MAX_CONNECTIONS`] connections at once, 10 s to send the request head, each
//! connection closed after [`CONNECTION_LIFETIME`]. Scrapes run on the blocking pool (the
//! collector locks the chain and the mempool, each briefly, one after the other).

use crate::chain::{AcceptResult, Acceptance};
use crate::mempool::MempoolError;
use crate::node::Node;
use crate::p2p::protocol::DisconnectReason;
use crate::p2p::Network;
use cairn_core::validation::BlockError;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::{Registry, Unit};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, OnceLock, Weak};
use std::time::Duration;

/// Most metrics connections open at once; more are closed at once.
pub const MAX_CONNECTIONS: usize = 16;
/// A metrics connection is closed after this long, whatever it is doing.
pub const CONNECTION_LIFETIME: Duration = Duration::from_secs(60);
/// Content type of the OpenMetrics text format.
pub const OPENMETRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// Content type of the Prometheus text format.
pub const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

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

// ---------------------------------------------------------------------------------------
// Scrape-time state: the node, the network, the process.

/// Reads the state figures at scrape time from the node and the P2P layer.
struct StateCollector {
    node: Weak<Node>,
    network: Option<Arc<dyn Network>>,
}

impl std::fmt::Debug for StateCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateCollector").finish_non_exhaustive()
    }
}

fn encode_gauge<V: prometheus_client::encoding::EncodeGaugeValue>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    value: V,
) -> Result<(), std::fmt::Error> {
    let mut m = encoder.encode_descriptor(name, help, unit, MetricType::Gauge)?;
    m.encode_gauge(&value)
}

/// A 256-bit big-endian unsigned integer as the nearest f64 (rounded per step, so
/// within a relative 1e-15 or so).
fn be_bytes_to_f64(bytes: &[u8; 32]) -> f64 {
    bytes.iter().fold(0.0, |acc, b| acc * 256.0 + f64::from(*b))
}

impl Collector for StateCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(node) = self.node.upgrade() else { return Ok(()) };
        let e = &mut encoder;
        let chain = node.chain();
        let tip = chain.tip();
        let best_header = chain.best_header().height;
        let orphans = chain.orphan_count();
        let index_backlog = chain.index_backlog();
        drop(chain);
        let mempool = node.mempool();
        let (size, bytes, min_fee) = (mempool.len(), mempool.bytes(), mempool.min_fee().0);
        drop(mempool);
        encode_gauge(e, "chain_height", "Height of the best chain's tip", None, tip.height)?;
        encode_gauge(
            e,
            "chain_best_header_height",
            "Height of the most-work header known (above the tip while syncing)",
            None,
            best_header,
        )?;
        encode_gauge(
            e,
            "chain_total_work",
            "Cumulative proof of work of the best chain (expected hashes), as a float",
            None,
            be_bytes_to_f64(&tip.total_work.to_be_bytes()),
        )?;
        encode_gauge(
            e,
            "chain_tip_timestamp",
            "Timestamp of the tip block (Unix time)",
            Some(&Unit::Seconds),
            tip.timestamp_ms as f64 / 1000.0,
        )?;
        encode_gauge(e, "chain_orphans", "Blocks in the orphan pool (parent unknown)", None, orphans as u64)?;
        encode_gauge(
            e,
            "chain_index_backlog_blocks",
            "Blocks connected or disconnected whose tx and address index entries are not written yet",
            None,
            index_backlog,
        )?;
        encode_gauge(e, "mempool_transfers", "Transfers in the mempool", None, size as u64)?;
        encode_gauge(
            e,
            "mempool",
            "Summed encoded size of the transfers in the mempool",
            Some(&Unit::Bytes),
            bytes as u64,
        )?;
        encode_gauge(
            e,
            "mempool_min_fee",
            "Lowest fee a new transfer must pay to enter the mempool now",
            None,
            min_fee,
        )?;
        encode_gauge(
            e,
            "miner_hashrate",
            "The miner's hash rate (hashes per second; 0 when not mining)",
            None,
            node.hashrate(),
        )?;
        if let Some(network) = &self.network {
            let peers = network.peers();
            let inbound = peers.iter().filter(|p| p.inbound).count() as u64;
            let outbound = peers.len() as u64 - inbound;
            let mut m = e.encode_descriptor(
                "p2p_peers",
                "Peers that completed the handshake, by direction",
                None,
                MetricType::Gauge,
            )?;
            m.encode_family(&[("direction", "inbound")])?.encode_gauge(&inbound)?;
            m.encode_family(&[("direction", "outbound")])?.encode_gauge(&outbound)?;
            encode_gauge(
                e,
                "p2p_sockets",
                "Peer sockets open (peers plus connections still in the handshake)",
                None,
                network.peer_sockets() as u64,
            )?;
            encode_gauge(
                e,
                "p2p_syncing",
                "1 while a peer has shown more work than our tip and we are fetching it",
                None,
                u64::from(network.is_syncing()),
            )?;
        }
        Ok(())
    }
}

/// The process's own figures from `/proc/self`, under the names every Prometheus
/// client library's process collector uses (`process_*`). Emits nothing where there is
/// no `/proc`.
#[derive(Debug)]
struct ProcessCollector;

/// Clock ticks per second of `/proc/<pid>/stat`: `USER_HZ`, 100 on every Linux
/// architecture the kernel exports it for.
const USER_HZ: f64 = 100.0;

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let e = &mut encoder;
        let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else { return Ok(()) };
        // The fields after the command name, which is in parentheses and may hold spaces.
        let fields: Vec<&str> =
            stat.rsplit_once(')').map(|(_, rest)| rest.split_whitespace().collect()).unwrap_or_default();
        // Field n of proc(5) is fields[n - 3].
        let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<u64>().ok());
        if let (Some(utime), Some(stime)) = (field(14), field(15)) {
            let cpu = (utime + stime) as f64 / USER_HZ;
            let mut m = e.encode_descriptor(
                "process_cpu",
                "Total user and system CPU time spent",
                Some(&Unit::Seconds),
                MetricType::Counter,
            )?;
            m.encode_counter::<NoLabelSet, _, u64>(&cpu, None)?;
        }
        if let Some(start) = field(22).zip(boot_time()).map(|(ticks, boot)| boot + ticks as f64 / USER_HZ) {
            encode_gauge(
                e,
                "process_start_time",
                "Start time of the process since the Unix epoch",
                Some(&Unit::Seconds),
                start,
            )?;
        }
        if let Some(vsize) = field(23) {
            encode_gauge(e, "process_virtual_memory", "Virtual memory size", Some(&Unit::Bytes), vsize)?;
        }
        if let Some(rss) = status_kib("VmRSS:") {
            encode_gauge(
                e,
                "process_resident_memory",
                "Resident memory size",
                Some(&Unit::Bytes),
                rss * 1024,
            )?;
        }
        if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
            // (The count includes the directory handle that read_dir holds.)
            encode_gauge(e, "process_open_fds", "Open file descriptors", None, dir.count() as u64)?;
        }
        if let Some(max) = max_open_files() {
            encode_gauge(e, "process_max_fds", "Limit on open file descriptors", None, max)?;
        }
        if let Some(threads) = field(20) {
            encode_gauge(e, "process_threads", "OS threads of the process", None, threads)?;
        }
        Ok(())
    }
}

fn boot_time() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    stat.lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(|v| v as f64)
}

fn status_kib(key: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(key))?;
    line[key.len()..].split_whitespace().next()?.parse().ok()
}

fn max_open_files() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..].split_whitespace().next()?.parse().ok()
}

// ---------------------------------------------------------------------------------------
// Rendering and serving.

/// What one scrape encodes: the event metrics, the RPC metrics (once an RPC server
/// started) and the state collectors.
pub struct Scrape {
    state: Registry,
}

impl Scrape {
    /// The figures of `node` and `network` (`None`: no P2P figures).
    pub fn new(node: &Arc<Node>, network: Option<Arc<dyn Network>>) -> Scrape {
        let mut state = Registry::default();
        state
            .sub_registry_with_prefix("cairn")
            .register_collector(Box::new(StateCollector { node: Arc::downgrade(node), network }));
        state.register_collector(Box::new(ProcessCollector));
        Scrape { state }
    }

    /// The OpenMetrics text of every metric.
    pub fn openmetrics(&self) -> Result<String, std::fmt::Error> {
        use prometheus_client::encoding::text::{encode_eof, encode_registry};
        let mut out = String::with_capacity(32 * 1024);
        encode_registry(&mut out, &get().registry)?;
        if let Some(rpc) = RPC.get() {
            encode_registry(&mut out, &rpc.registry)?;
        }
        encode_registry(&mut out, &self.state)?;
        encode_eof(&mut out)?;
        Ok(out)
    }
}

/// The OpenMetrics text `prometheus-client` writes, as the Prometheus text format
/// 0.0.4: the two differ, for what this node exports, only in that OpenMetrics names a
/// counter family without its `_total` suffix (its samples have it) and has `# UNIT`
/// and `# EOF` lines. Samples are passed through unchanged.
pub fn to_text_format(openmetrics: &str) -> String {
    let counters: std::collections::HashSet<&str> =
        openmetrics.lines().filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter")).collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        }
        let descriptor = ["# HELP ", "# TYPE "].into_iter().find_map(|p| Some((p, line.strip_prefix(p)?)));
        match descriptor.and_then(|(p, rest)| Some((p, rest.split_once(' ')?))) {
            Some((p, (name, tail))) if counters.contains(name) => {
                out.push_str(p);
                out.push_str(name);
                out.push_str("_total ");
                out.push_str(tail);
            }
            _ => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

/// A running metrics server.
pub struct MetricsServer {
    pub local_addr: SocketAddr,
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl MetricsServer {
    /// Stops listening and closes every metrics connection.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// Serves `GET /metrics` on `addr` with the figures of `node` and `network`.
pub async fn start(
    addr: SocketAddr,
    node: &Arc<Node>,
    network: Option<Arc<dyn Network>>,
) -> anyhow::Result<MetricsServer> {
    use tokio::sync::Semaphore;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen for metrics on {addr}: {e}"))?;
    let local_addr = listener.local_addr()?;
    let scrape = Arc::new(Scrape::new(node, network));
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let task = tokio::spawn(async move {
        let mut stop_rx = stopped.clone();
        loop {
            let accepted = tokio::select! {
                _ = stop_rx.wait_for(|s| *s) => break,
                a = listener.accept() => a,
            };
            let stream = match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors, say: wait a little rather than spin.
                    tracing::debug!(error = %e, "metrics: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let Ok(slot) = slots.clone().try_acquire_owned() else { continue };
            let scrape = scrape.clone();
            let mut stop_rx = stopped.clone();
            tokio::spawn(async move {
                serve_connection(stream, scrape, &mut stop_rx).await;
                drop(slot);
            });
        }
    });
    Ok(MetricsServer { local_addr, stop, task })
}

async fn serve_connection(
    stream: tokio::net::TcpStream,
    scrape: Arc<Scrape>,
    stop: &mut tokio::sync::watch::Receiver<bool>,
) {
    use hyper_util::rt::{TokioIo, TokioTimer};
    let service = hyper::service::service_fn(move |req| respond(scrape.clone(), req));
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(10))
        .serve_connection(TokioIo::new(stream), service);
    tokio::select! {
        _ = connection => {}
        _ = stop.wait_for(|s| *s) => {}
        _ = tokio::time::sleep(CONNECTION_LIFETIME) => {}
    }
}

type Body = http_body_util::Full<bytes::Bytes>;

fn reply(status: http::StatusCode, content_type: &str, body: String) -> http::Response<Body> {
    let mut r = http::Response::new(Body::from(body));
    *r.status_mut() = status;
    if let Ok(v) = http::HeaderValue::from_str(content_type) {
        r.headers_mut().insert(http::header::CONTENT_TYPE, v);
    }
    r
}

async fn respond<B>(
    scrape: Arc<Scrape>,
    req: http::Request<B>,
) -> Result<http::Response<Body>, std::convert::Infallible> {
    use http::StatusCode;
    const PLAIN: &str = "text/plain; charset=utf-8";
    if req.uri().path() != "/metrics" {
        return Ok(reply(StatusCode::NOT_FOUND, PLAIN, "not found: the metrics are at /metrics\n".into()));
    }
    if req.method() != http::Method::GET && req.method() != http::Method::HEAD {
        let mut r = reply(StatusCode::METHOD_NOT_ALLOWED, PLAIN, "only GET\n".into());
        r.headers_mut().insert(http::header::ALLOW, http::HeaderValue::from_static("GET, HEAD"));
        return Ok(r);
    }
    let openmetrics = req
        .headers()
        .get_all(http::header::ACCEPT)
        .iter()
        .any(|v| v.to_str().is_ok_and(|s| s.contains("application/openmetrics-text")));
    // The collector locks the chain and mempool: not on an async worker.
    let rendered = tokio::task::spawn_blocking(move || scrape.openmetrics()).await;
    Ok(match rendered {
        Ok(Ok(text)) if openmetrics => reply(StatusCode::OK, OPENMETRICS_CONTENT_TYPE, text),
        Ok(Ok(text)) => reply(StatusCode::OK, TEXT_CONTENT_TYPE, to_text_format(&text)),
        _ => reply(
            StatusCode::INTERNAL_SERVER_ERROR,
            PLAIN,
            "internal error: could not encode the metrics\n".into(),
        ),
    })
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

    #[test]
    fn the_text_format_names_counters_with_their_suffix() {
        let om = "# HELP cairn_x Some.\n# TYPE cairn_x counter\ncairn_x_total 3\n# HELP cairn_y_seconds Y.\n# TYPE cairn_y_seconds gauge\n# UNIT cairn_y_seconds seconds\ncairn_y_seconds 1.5\n# EOF\n";
        assert_eq!(
            to_text_format(om),
            "# HELP cairn_x_total Some.\n# TYPE cairn_x_total counter\ncairn_x_total 3\n# HELP cairn_y_seconds Y.\n# TYPE cairn_y_seconds gauge\ncairn_y_seconds 1.5\n"
        );
    }

    #[test]
    fn total_work_converts_to_a_float() {
        let mut b = [0u8; 32];
        b[31] = 1;
        b[30] = 1;
        assert_eq!(be_bytes_to_f64(&b), 257.0);
        assert_eq!(be_bytes_to_f64(&[0xff; 32]), 2f64.powi(256));
    }
}
