//! The network model: what links, nodes and miners look like. Every parameter, its
//! default and where the default comes from are in docs/SCALE.md ("The model").

use rand::rngs::StdRng;
use rand::Rng;
use serde::Serialize;

/// A log-normal distribution given by its median and the standard deviation `sigma`
/// of its logarithm, cut at `max` (a long tail, but no link slower than `max`).
#[derive(Clone, Copy, Debug, Serialize)]
pub struct LogNormal {
    pub median: f64,
    pub sigma: f64,
    pub max: f64,
}

impl LogNormal {
    pub fn sample(&self, rng: &mut StdRng) -> f64 {
        (self.median * (self.sigma * normal(rng)).exp()).min(self.max)
    }
}

/// A standard normal sample (Box-Muller), from the simulation's own generator so that
/// a run depends on its seed only.
pub fn normal(rng: &mut StdRng) -> f64 {
    let u1: f64 = rng.gen_range(f64::MIN_POSITIVE..1.0);
    let u2: f64 = rng.gen();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// An exponential sample with the given mean (time between blocks of a Poisson
/// process, session lengths).
pub fn exponential(rng: &mut StdRng, mean: f64) -> f64 {
    let u: f64 = rng.gen_range(f64::MIN_POSITIVE..1.0);
    -mean * u.ln()
}

/// Churn: nodes leave after an exponential session and come back after an
/// exponential downtime, keeping their chain and address book or (with
/// `lose_data_share`) starting from nothing but the seeds.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Churn {
    pub mean_session_s: f64,
    pub mean_downtime_s: f64,
    pub lose_data_share: f64,
}

/// The whole model of one run.
#[derive(Clone, Debug, Serialize)]
pub struct Model {
    /// One-way latency of a connection, drawn once per connection, in ms.
    pub latency_ms: LogNormal,
    /// Each node's upload bandwidth in Mbit/s, drawn once per node. A message waits for
    /// the sender's earlier messages to leave (one queue per node, all peers), then
    /// takes size / bandwidth to send.
    pub upload_mbit: LogNormal,
    /// Share of nodes that accept no inbound connection (behind NAT): they only dial.
    pub unreachable_share: f64,
    /// How often each node's protocol gets a clock tick (its timers: pings, timeouts,
    /// dials), in ms.
    pub tick_ms: u64,
    /// Addresses a new or data-less node starts with (the seeds), picked among
    /// reachable nodes.
    pub seeds_per_node: usize,
    pub churn: Option<Churn>,
    /// Hash-rate shares of the miners (nodes 0, 1, ...), summing to 1.
    pub miner_shares: Vec<f64>,
}

impl Default for Model {
    fn default() -> Model {
        Model {
            latency_ms: LogNormal { median: 70.0, sigma: 0.6, max: 2_000.0 },
            upload_mbit: LogNormal { median: 20.0, sigma: 0.8, max: 1_000.0 },
            unreachable_share: 0.5,
            tick_ms: 1_000,
            seeds_per_node: 3,
            churn: None,
            miner_shares: vec![0.25, 0.2, 0.15, 0.1, 0.1, 0.05, 0.05, 0.05, 0.05],
        }
    }
}

impl Model {
    /// The index of the miner of the next block, by hash-rate share.
    pub fn pick_miner(&self, rng: &mut StdRng) -> usize {
        let total: f64 = self.miner_shares.iter().sum();
        let mut x = rng.gen::<f64>() * total;
        for (i, s) in self.miner_shares.iter().enumerate() {
            if x < *s {
                return i;
            }
            x -= s;
        }
        self.miner_shares.len() - 1
    }
}
