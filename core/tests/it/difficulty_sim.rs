//! The difficulty schedule under changing hash rate and lying miners.

use cairn_core::difficulty::next_target;
use cairn_core::genesis::Genesis;
use cairn_core::params::ChainParams;
use cairn_core::Target;

/// SplitMix64: a tiny deterministic generator, so every run sees the same chain.
struct Rng(u64);
impl Rng {
    fn next_f64(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        ((z >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }
}

fn work_f64(t: &Target) -> f64 {
    // Expected hashes, as a float, for the simulation only.
    let w = t.work().0;
    let mut bytes = [0u8; 32];
    bytes.copy_from_slice(&w.to_big_endian());
    bytes.iter().fold(0.0, |acc, b| acc * 256.0 + f64::from(*b))
}

/// Mines `blocks_per_phase` blocks at each hash rate multiplier; returns per-block
/// intervals in ms, grouped by phase.
fn simulate(params: &ChainParams, multipliers: &[f64], blocks_per_phase: usize, seed: u64) -> Vec<Vec<f64>> {
    let mut rng = Rng(seed);
    let base_rate = work_f64(&params.initial_target) / params.target_block_time_ms as f64; // hashes per ms
    let mut height = 0u64;
    let mut time = params.timestamp_ms as f64;
    let mut anchor = 0u64;
    let mut out = Vec::new();
    for &m in multipliers {
        let mut intervals = Vec::new();
        for _ in 0..blocks_per_phase {
            let target = next_target(params, height, time as u64, anchor);
            let expected_ms = work_f64(&target) / (base_rate * m);
            let dt = -rng.next_f64().ln() * expected_ms;
            time += dt.max(1.0);
            height += 1;
            if height == 1 {
                anchor = time as u64;
            }
            intervals.push(dt);
        }
        out.push(intervals);
    }
    out
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

#[test]
fn block_time_returns_to_target_after_10x_steps() {
    // Documented window (docs/CONSENSUS.md): after a 10x step in hash rate, the mean
    // block time over the blocks that follow the first 10 half-lives' worth of blocks is
    // within 20% of the target.
    let params = Genesis::dev().params;
    let t = params.target_block_time_ms as f64;
    let window = (10 * params.half_life_ms / params.target_block_time_ms) as usize;
    for seed in 1..=5 {
        let phases = simulate(&params, &[1.0, 10.0, 1.0, 0.1, 1.0], 400, seed);
        for (i, intervals) in phases.iter().enumerate() {
            let settled = mean(&intervals[window..]);
            assert!(
                (settled - t).abs() / t < 0.2,
                "seed {seed} phase {i}: mean block time {settled:.0} ms after the window, target {t} ms"
            );
        }
        // Right after a 10x step up, blocks are fast until the schedule catches up:
        // the simulation really exercises the adjustment.
        assert!(mean(&phases[1][..10]) < t / 2.0);
    }
}

#[test]
fn lying_about_time_cannot_lower_difficulty_beyond_the_drift() {
    // A time-warp attacker stamps every block as far ahead as peers accept (now + drift).
    // With an absolutely scheduled target, the most it gains is 2^(drift / half_life)
    // over an honest miner at the same moment, and it does not compound.
    let params = Genesis::dev().params;
    let t = params.target_block_time_ms;
    let anchor = params.timestamp_ms + t;
    let bound = 2f64.powf(params.max_future_drift_ms as f64 / params.half_life_ms as f64) * 1.001;
    for height in 1..500u64 {
        let now = anchor + t * (height - 1); // the chain is on schedule in real time
        let honest = next_target(&params, height, now, anchor);
        let liar = next_target(&params, height, now + params.max_future_drift_ms, anchor);
        let ratio = work_f64(&honest) / work_f64(&liar);
        assert!(ratio <= bound, "height {height}: attacker's target {ratio:.3}x easier, bound {bound:.3}");
    }
}

#[test]
fn timestamps_held_back_only_make_blocks_harder() {
    // Stamping blocks as early as the median rule allows (the other half of a time
    // warp) never makes the next target easier than on schedule.
    let params = Genesis::dev().params;
    let anchor = params.timestamp_ms + 1000;
    let t = params.target_block_time_ms;
    for height in 1..300u64 {
        let held_back = anchor + (height - 1); // 1 ms per block: barely moving forward
        let on_schedule = anchor + t * (height - 1);
        let target = next_target(&params, height, held_back, anchor).to_u256();
        assert!(target <= next_target(&params, height, on_schedule, anchor).to_u256(), "height {height}");
    }
}
