//! `a·G + b·Q` for the ECDSA check ([`crate::ecdsa`]), in variable time, on k256's point
//! arithmetic: the step that takes most of a signature check.
//!
//! k256's own `mul_by_generator_and_mul_add_vartime` splits both scalars with the GLV
//! endomorphism (`λ·(x, y) = (β·x, y)`) into halves of 128 bits and builds four window
//! tables on every call: odd multiples of G, λ·G, Q and λ·Q, a doubling and eight
//! additions each (the `wnaf` crate's tables; the last addition goes unused). Here the
//! two tables of G are built once, wider (window 8: 64 odd multiples each) and in affine
//! form, so that G's half of the sum takes about 29 cheaper mixed additions instead of
//! about 43 full ones, and no table is built for it; λ·Q's table is Q's with every x
//! multiplied by β (one field multiplication a point) instead of being built again. The
//! rest is the same method: interleaved width-w NAFs (Straus), one shared chain of
//! doublings.
//!
//! Every number here is public (a signature, a hash, a key), so nothing needs constant
//! time. The answer is the same point k256 computes: the halves satisfy
//! `r1 + r2·λ = k (mod n)` by construction, and should a half ever not fit in 128 bits
//! (the lattice's bounds say it cannot), the call falls back to k256's function. The
//! tests compare both on random and edge scalars.

use k256::elliptic_curve::ops::MulByGeneratorVartime;
use k256::elliptic_curve::scalar::IsHigh;
use k256::elliptic_curve::{BatchNormalize, PrimeField};
use k256::{AffinePoint, FieldBytes, ProjectivePoint, Scalar};
use std::ops::{Add, Sub};
use std::sync::OnceLock;

/// Window of G's tables: odd multiples 1·G to 127·G.
const G_WINDOW: u32 = 8;
const G_TABLE: usize = 1 << (G_WINDOW - 2);
/// Window of Q's tables, built per call: 1·Q to 15·Q.
const Q_WINDOW: u32 = 5;
const Q_TABLE: usize = 1 << (Q_WINDOW - 2);
/// Digit positions of the NAF of a number below 2^128 (a final carry reaches bit 128).
const DIGITS: usize = 130;

/// The GLV constants of secp256k1 (as in libsecp256k1's `scalar_split_lambda`), big-endian:
/// λ, the lattice basis' -b1 and -b2, and g1, g2 = round(2^384·b2/n), round(2^384·(-b1)/n).
const LAMBDA: [u8; 32] = hex32("5363ad4cc05c30e0a5261c028812645a122e22ea20816678df02967c1b23bd72");
const MINUS_B1: [u8; 32] = hex32("00000000000000000000000000000000e4437ed6010e88286f547fa90abfe4c3");
const MINUS_B2: [u8; 32] = hex32("fffffffffffffffffffffffffffffffe8a280ac50774346dd765cda83db1562c");
const G1: [u8; 32] = hex32("3086d221a7d46bcde86c90e49284eb153daa8a1471e8ca7fe893209a45dbb031");
const G2: [u8; 32] = hex32("e4437ed6010e88286f547fa90abfe4c4221208ac9df506c61571b4ae8ac47f71");

/// 64 hex digits as 32 bytes, at compile time.
const fn hex32(s: &str) -> [u8; 32] {
    const fn nibble(c: u8) -> u8 {
        match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            _ => panic!("not a lower-case hex digit"),
        }
    }
    let b = s.as_bytes();
    assert!(b.len() == 64, "64 hex digits");
    let mut out = [0u8; 32];
    let mut i = 0;
    while i < 32 {
        out[i] = (nibble(b[2 * i]) << 4) | nibble(b[2 * i + 1]);
        i += 1;
    }
    out
}

/// What every call shares, made on first use.
struct Fixed {
    /// g1 and g2 as little-endian limbs.
    g1: [u64; 4],
    g2: [u64; 4],
    lambda: Scalar,
    minus_b1: Scalar,
    minus_b2: Scalar,
    /// (2i + 1)·G and (2i + 1)·λ·G, affine.
    g: Vec<AffinePoint>,
    g_lambda: Vec<AffinePoint>,
}

fn fixed() -> &'static Fixed {
    static FIXED: OnceLock<Fixed> = OnceLock::new();
    FIXED.get_or_init(|| {
        let scalar = |bytes: [u8; 32]| -> Scalar {
            Option::from(Scalar::from_repr(FieldBytes::from(bytes))).expect("a GLV constant is below n")
        };
        let g = odd_multiples::<G_TABLE>(&ProjectivePoint::GENERATOR);
        let g_lambda = g.map(|p| p.endomorphism());
        Fixed {
            g1: le_limbs(&G1),
            g2: le_limbs(&G2),
            lambda: scalar(LAMBDA),
            minus_b1: scalar(MINUS_B1),
            minus_b2: scalar(MINUS_B2),
            g: <ProjectivePoint as BatchNormalize<[ProjectivePoint]>>::batch_normalize_vartime(&g),
            g_lambda: <ProjectivePoint as BatchNormalize<[ProjectivePoint]>>::batch_normalize_vartime(
                &g_lambda,
            ),
        }
    })
}

/// `[1·p, 3·p, 5·p, ...]`, N of them.
fn odd_multiples<const N: usize>(p: &ProjectivePoint) -> [ProjectivePoint; N] {
    let twice = p.double();
    let mut out = [*p; N];
    for i in 1..N {
        out[i] = out[i - 1] + twice;
    }
    out
}

/// `a·G + b·Q`, the point k256's `mul_by_generator_and_mul_add_vartime(a, b, q)` gives.
pub fn mul_generator_add(a: &Scalar, b: &Scalar, q: &ProjectivePoint) -> ProjectivePoint {
    glv_straus(a, b, q).unwrap_or_else(|| ProjectivePoint::mul_by_generator_and_mul_add_vartime(a, b, q))
}

fn glv_straus(a: &Scalar, b: &Scalar, q: &ProjectivePoint) -> Option<ProjectivePoint> {
    let f = fixed();
    let [a1, a2] = split(a, f)?;
    let [b1, b2] = split(b, f)?;
    let (da1, da2) = (signed_naf(a1, G_WINDOW)?, signed_naf(a2, G_WINDOW)?);
    let (db1, db2) = (signed_naf(b1, Q_WINDOW)?, signed_naf(b2, Q_WINDOW)?);
    let q_table = odd_multiples::<Q_TABLE>(q);
    let q_lambda = q_table.map(|p| p.endomorphism());
    let top =
        [&da1, &da2, &db1, &db2].iter().filter_map(|d| d.iter().rposition(|x| *x != 0)).max().unwrap_or(0);
    let mut acc = ProjectivePoint::IDENTITY;
    for i in (0..=top).rev() {
        acc = acc.double();
        acc = add_digit(acc, &f.g, da1[i])?;
        acc = add_digit(acc, &f.g_lambda, da2[i])?;
        acc = add_digit(acc, &q_table, db1[i])?;
        acc = add_digit(acc, &q_lambda, db2[i])?;
    }
    Some(acc)
}

/// The width-`w` NAF of a half of a split, its digits negated when the half is.
fn signed_naf((magnitude, negative): (u128, bool), w: u32) -> Option<[i16; DIGITS]> {
    let mut digits = wnaf(magnitude, w)?;
    if negative {
        digits.iter_mut().for_each(|d| *d = -*d);
    }
    Some(digits)
}

/// `acc` plus NAF digit `d` times the point whose odd multiples `table` holds: `acc` for
/// a zero digit, `None` for a digit beyond the table (which [`wnaf`] never makes; the
/// whole sum then falls back).
fn add_digit<'t, P>(acc: ProjectivePoint, table: &'t [P], d: i16) -> Option<ProjectivePoint>
where
    ProjectivePoint: Add<&'t P, Output = ProjectivePoint> + Sub<&'t P, Output = ProjectivePoint>,
{
    if d == 0 {
        return Some(acc);
    }
    let entry = table.get(usize::from(d.unsigned_abs() / 2))?;
    Some(if d < 0 { acc - entry } else { acc + entry })
}

/// `k = r1 + r2·λ (mod n)`, each half as its magnitude below 2^128 and whether it is
/// negative (libsecp256k1's split: `r2 = c1·(-b1) + c2·(-b2)` with `c1`, `c2` the rounded
/// `k·g1 / 2^384`, `k·g2 / 2^384`; `r1 = k - r2·λ`). `None` if a half does not fit.
fn split(k: &Scalar, f: &Fixed) -> Option<[(u128, bool); 2]> {
    let limbs = le_limbs(&k.to_bytes().into());
    let c1 = Scalar::from(mul_shift_384(&limbs, &f.g1));
    let c2 = Scalar::from(mul_shift_384(&limbs, &f.g2));
    let r2 = c1 * f.minus_b1 + c2 * f.minus_b2;
    let r1 = *k - r2 * f.lambda;
    Some([half(&r1)?, half(&r2)?])
}

/// A scalar near zero as (|r|, r < 0), with "negative" meaning above n/2; `None` when
/// |r| is 2^128 or more.
fn half(r: &Scalar) -> Option<(u128, bool)> {
    let neg = bool::from(r.is_high());
    let m = if neg { -*r } else { *r };
    let bytes: [u8; 32] = m.to_bytes().into();
    let (high, low) = bytes.split_at(16);
    if high.iter().any(|b| *b != 0) {
        return None;
    }
    Some((u128::from_be_bytes(low.try_into().ok()?), neg))
}

/// A 256-bit big-endian number as four little-endian 64-bit limbs.
fn le_limbs(be: &[u8; 32]) -> [u64; 4] {
    let mut out = [0u64; 4];
    for (i, chunk) in be.rchunks_exact(8).enumerate() {
        out[i] = u64::from_be_bytes(chunk.try_into().expect("8 bytes"));
    }
    out
}

/// `round(a·b / 2^384)` for 256-bit `a` and `b`, when it is below 2^128 (as it is for
/// `a < n` and `b` = g1 or g2; it saturates otherwise, and the split then fails).
fn mul_shift_384(a: &[u64; 4], b: &[u64; 4]) -> u128 {
    let mut p = [0u64; 8];
    for i in 0..4 {
        let mut carry = 0u128;
        for j in 0..4 {
            // At most (2^64 - 1)^2 + 2·(2^64 - 1) = 2^128 - 1: no overflow.
            let t = u128::from(a[i]) * u128::from(b[j]) + u128::from(p[i + j]) + carry;
            p[i + j] = t as u64;
            carry = t >> 64;
        }
        p[i + 4] = carry as u64;
    }
    let high = (u128::from(p[7]) << 64) | u128::from(p[6]);
    high.saturating_add(u128::from(p[5] >> 63))
}

/// The width-`w` NAF of `k`, least significant digit first: each digit zero or odd with
/// |d| < 2^(w-1), two non-zero digits at least `w` positions apart, and the sum of
/// `d_i·2^i` equal to `k`. `None` if a carry is left over (it cannot be, below 2^128).
fn wnaf(k: u128, w: u32) -> Option<[i16; DIGITS]> {
    let mut out = [0i16; DIGITS];
    let width = 1i32 << w;
    let mask = (1u128 << w) - 1;
    let mut carry = 0i32;
    let mut pos = 0usize;
    while pos < DIGITS {
        let bits = k.checked_shr(pos as u32).unwrap_or(0);
        if (bits & 1) as i32 == carry {
            // This bit plus the carry is 0 or 2: a zero digit, the carry moves on.
            pos += 1;
            continue;
        }
        // Odd: the window's value plus the carry, taken as a digit in (-2^(w-1), 2^(w-1)).
        let window = carry + (bits & mask) as i32;
        let digit = if window >= width / 2 {
            carry = 1;
            window - width
        } else {
            carry = 0;
            window
        };
        out[pos] = digit as i16;
        pos += w as usize;
    }
    (carry == 0).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn from_be(bytes: [u8; 32]) -> Scalar {
        <Scalar as k256::elliptic_curve::ops::Reduce<FieldBytes>>::reduce(&FieldBytes::from(bytes))
    }

    /// Scalars at the edges: 0, 1, 2, n - 1, n - 2, λ, -λ, 2^127, 2^128, 2^128 - 1,
    /// 2^255 (reduced), and n/2 and its neighbours.
    fn edges() -> Vec<Scalar> {
        let f = fixed();
        let pow2 = |bit: u32| {
            let mut b = [0u8; 32];
            b[31 - (bit / 8) as usize] = 1 << (bit % 8);
            from_be(b)
        };
        let half_n = from_be(hex32("7fffffffffffffffffffffffffffffff5d576e7357a4501ddfe92f46681b20a0"));
        vec![
            Scalar::ZERO,
            Scalar::ONE,
            Scalar::ONE + Scalar::ONE,
            -Scalar::ONE,
            -(Scalar::ONE + Scalar::ONE),
            f.lambda,
            -f.lambda,
            pow2(127),
            pow2(128),
            pow2(128) - Scalar::ONE,
            pow2(255),
            half_n,
            half_n + Scalar::ONE,
            half_n - Scalar::ONE,
        ]
    }

    fn k256_says(a: &Scalar, b: &Scalar, q: &ProjectivePoint) -> ProjectivePoint {
        ProjectivePoint::GENERATOR * a + *q * b
    }

    #[test]
    fn lambda_is_the_endomorphism_of_k256() {
        let g = ProjectivePoint::GENERATOR;
        assert_eq!(g.endomorphism(), g * fixed().lambda);
    }

    #[test]
    fn the_tables_hold_the_odd_multiples() {
        let f = fixed();
        for (i, (p, pl)) in f.g.iter().zip(&f.g_lambda).enumerate() {
            let k = Scalar::from(2 * i as u64 + 1);
            assert_eq!(ProjectivePoint::from(*p), ProjectivePoint::GENERATOR * k);
            assert_eq!(ProjectivePoint::from(*pl), ProjectivePoint::GENERATOR * (k * f.lambda));
        }
    }

    #[test]
    fn edge_scalars_split_and_multiply_as_k256_does() {
        let f = fixed();
        let q = ProjectivePoint::GENERATOR * Scalar::from(7u64);
        for a in edges() {
            let [(r1, n1), (r2, n2)] = split(&a, f).expect("every scalar splits");
            let s = |m: u128, neg: bool| if neg { -Scalar::from(m) } else { Scalar::from(m) };
            assert_eq!(s(r1, n1) + s(r2, n2) * f.lambda, a);
            for b in edges() {
                assert_eq!(glv_straus(&a, &b, &q), Some(k256_says(&a, &b, &q)));
            }
        }
    }

    #[test]
    fn naf_digits_sum_to_the_number() {
        let two = Scalar::from(2u64);
        for k in [0u128, 1, 2, 3, 15, 16, 127, 128, 255, u128::MAX, u128::MAX - 1, 1 << 127, (1 << 127) - 1] {
            for w in [2, 5, 8] {
                let d = wnaf(k, w).expect("no carry left");
                let mut last = None;
                for (i, digit) in d.iter().enumerate().filter(|(_, x)| **x != 0) {
                    assert!(
                        digit % 2 != 0 && i32::from(digit.abs()) < 1 << (w - 1),
                        "digit {digit} for w {w}"
                    );
                    if let Some(j) = last {
                        assert!(i - j >= w as usize, "digits at {j} and {i} for w {w}");
                    }
                    last = Some(i);
                }
                // The sum of d_i·2^i, highest digit first, in the scalar field (exact: below n).
                let sum = d.iter().rev().fold(Scalar::ZERO, |acc, digit| {
                    let m = Scalar::from(u64::from(digit.unsigned_abs()));
                    acc * two + if *digit < 0 { -m } else { m }
                });
                assert_eq!(sum, Scalar::from(k), "k {k:#x} w {w}");
            }
        }
    }

    proptest! {
        #[test]
        fn random_scalars_multiply_as_k256_does(a in any::<[u8; 32]>(), b in any::<[u8; 32]>(), q in any::<[u8; 32]>()) {
            let (a, b) = (from_be(a), from_be(b));
            let q = ProjectivePoint::GENERATOR * from_be(q);
            prop_assert!(split(&a, fixed()).is_some() && split(&b, fixed()).is_some());
            prop_assert_eq!(mul_generator_add(&a, &b, &q), k256_says(&a, &b, &q));
        }
    }
}
