//! The difficulty schedule (ASERT) and median-time-past.
//!
//! Cairn retargets every block with an absolutely scheduled exponential moving target
//! (the "aserti3-2d" construction), anchored at block 1:
//!
//! ```text
//! target(1)   = initial_target
//! target(h+1) = initial_target * 2^((t_h - t_1 - T * (h - 1)) / half_life)     for h >= 1
//! ```
//!
//! where `t_h` is the parent's timestamp, `t_1` block 1's timestamp, `T` the target block
//! time. Every block that is one block time late makes the target easier by
//! `2^(T/half_life)`, every block early makes it harder by the same factor, so the chain
//! tracks the schedule whatever the hash rate does. Anchoring at block 1 rather than at
//! genesis lets a chain start long after its genesis timestamp without a burst of easy
//! blocks. Everything is integer arithmetic: the fractional power of two is a cubic
//! approximation in 16-bit fixed point, exactly as specified in docs/CONSENSUS.md.

use crate::params::ChainParams;
use crate::pow::Target;
use primitive_types::{U256, U512};

/// The target required of the block at `parent_height + 1`.
///
/// `parent_timestamp` is the parent's timestamp and `anchor_timestamp` block 1's
/// (ignored when the parent is genesis).
pub fn next_target(
    params: &ChainParams,
    parent_height: u64,
    parent_timestamp_ms: u64,
    anchor_timestamp_ms: u64,
) -> Target {
    if parent_height == 0 {
        return params.initial_target;
    }
    let time_diff = i128::from(parent_timestamp_ms) - i128::from(anchor_timestamp_ms);
    let ideal = i128::from(params.target_block_time_ms) * i128::from(parent_height - 1);
    let half_life = i128::from(params.half_life_ms.max(1));
    // Fixed-point exponent with 16 fractional bits; floor division so the result is
    // the same for every implementation.
    let exponent = ((time_diff - ideal) * 65536).div_euclid(half_life);
    let shifts = exponent >> 16; // arithmetic shift: floor
    let frac = (exponent & 0xffff) as u64; // always in 0..65536
    let frac = u128::from(frac);
    // 2^(frac/65536) * 65536, to within rounding, by the aserti3-2d polynomial.
    let poly = 195_766_423_245_049u128 * frac
        + 971_821_376u128 * frac * frac
        + 5_127u128 * frac * frac * frac
        + (1u128 << 47);
    let factor = 65536u128 + (poly >> 48);

    let pow_limit = params.pow_limit.to_u256();
    let mut t = U512::from(params.initial_target.to_u256()) * U512::from(factor);
    // Net shift: the factor carries 16 fractional bits.
    let net = shifts - 16;
    if net >= 0 {
        // A result of 2^256 or more is above any limit. Checked before shifting, so
        // that no bit is ever shifted out of the 512 bits.
        if t.bits() as i128 + net > 256 {
            return params.pow_limit;
        }
        t <<= net as usize;
    } else {
        let right = (-net).min(600) as usize;
        t >>= right;
    }
    let t = U256::try_from(t).unwrap_or(U256::MAX);
    let t = t.clamp(U256::one(), pow_limit);
    Target::from_u256(t)
}

/// The median of the given timestamps (the lower median when their number is even):
/// callers pass the parent's and its ancestors', `params.median_time_blocks` of them or
/// all there are. An empty slice gives 0.
pub fn median_time_past(timestamps: &[u64]) -> u64 {
    if timestamps.is_empty() {
        return 0;
    }
    let mut v = timestamps.to_vec();
    v.sort_unstable();
    v[(v.len() - 1) / 2]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::genesis::Genesis;

    fn params() -> ChainParams {
        Genesis::dev().params
    }

    #[test]
    fn on_schedule_keeps_initial_target() {
        let p = params();
        let t1 = 1_000_000;
        for h in 1..50u64 {
            let t = next_target(&p, h, t1 + p.target_block_time_ms * (h - 1), t1);
            assert_eq!(t, p.initial_target, "height {h}");
        }
    }

    #[test]
    fn one_half_life_late_doubles_the_target() {
        let p = params();
        let t1 = 1_000_000;
        let h = 10;
        let on_time = t1 + p.target_block_time_ms * (h - 1);
        let late: U256 = next_target(&p, h, on_time + p.half_life_ms, t1).to_u256();
        let early = next_target(&p, h, on_time - p.half_life_ms, t1).to_u256();
        let init: U256 = p.initial_target.to_u256();
        assert_eq!(late, (init * U256::from(2)).min(p.pow_limit.to_u256()));
        assert_eq!(early, init / U256::from(2));
    }

    #[test]
    fn fractional_exponent_is_monotonic() {
        let p = params();
        let t1 = 0;
        let mut prev = U256::zero();
        for step in 0..200u64 {
            let ts = 10 * p.target_block_time_ms + step * p.half_life_ms / 100;
            let t = next_target(&p, 10, ts, t1).to_u256();
            assert!(t >= prev);
            prev = t;
        }
    }

    #[test]
    fn extremes_are_clamped() {
        let p = params();
        let far_late = next_target(&p, 2, u64::MAX / 2, 0);
        assert_eq!(far_late, p.pow_limit);
        let far_early = next_target(&p, u64::MAX / (2 * p.target_block_time_ms), 0, 0);
        assert_eq!(far_early.to_u256(), U256::one());
    }

    /// However far behind schedule, and however large `initial_target * factor`, a
    /// result past 256 bits is the pow limit: no bit is lost to the 512-bit arithmetic.
    #[test]
    fn huge_results_are_the_pow_limit_not_truncated() {
        let mut p = params();
        p.pow_limit = Target::from_u256(U256::MAX);
        p.initial_target = Target::from_u256(U256::one() << 255);
        let t1 = 0;
        let on_time = p.target_block_time_ms;
        for half_lives in [1u64, 16, 200, 240, 241, 250, 256, 257, 300] {
            let t = next_target(&p, 2, on_time + half_lives * p.half_life_ms, t1);
            assert_eq!(t, p.pow_limit, "{half_lives} half-lives late");
        }
    }

    #[test]
    fn median_of_window() {
        assert_eq!(median_time_past(&[5]), 5);
        assert_eq!(median_time_past(&[1, 2, 3, 4]), 2);
        assert_eq!(median_time_past(&[9, 1, 5, 3, 7]), 5);
        assert_eq!(median_time_past(&[]), 0);
    }
}
