//! The ECDSA check of a signature over a 32-byte hash, on k256's arithmetic.
//!
//! The same equation as `ecdsa::hazmat::verify_prehashed`, which k256's
//! `VerifyingKey::verify_prehash` runs, with the same answer for every input: s must be
//! low; with z the hash read as a big-endian integer mod n, `u1 = z/s` and `u2 = r/s`;
//! the signature holds when the x coordinate of `R = u1·G + u2·Q`, taken mod n, is r (the
//! point at infinity has none, and fails). Only how the steps are computed differs,
//! never their results. ecdsa 0.17 brings R to affine coordinates with k256's
//! constant-time field inversion (`ProjectivePoint::to_affine`); nothing in a
//! verification is secret, so here it is the variable-time inversion, and
//! [`verify_prehashed_all`] shares one inversion among many signatures (Montgomery's
//! trick, k256's `batch_normalize_vartime`), where a block brings a thousand, and one
//! inversion of their s values (the same trick, on scalars). `u1·G + u2·Q` is
//! [`crate::ecmult`]'s, which builds G's tables once instead of on every call. The
//! scalar, field and point arithmetic is k256's own; the tests compare both functions
//! with k256's check on valid signatures and on signatures wrong in each of their parts.

use k256::ecdsa::{Signature, VerifyingKey};
use k256::elliptic_curve::ops::Reduce;
use k256::elliptic_curve::point::AffineCoordinates;
use k256::elliptic_curve::scalar::IsHigh;
use k256::elliptic_curve::BatchNormalize;
use k256::{AffinePoint, FieldBytes, ProjectivePoint, Scalar};

/// One signature to check: the signer's key, the hash it signed, the signature.
#[derive(Clone, Copy, Debug)]
pub struct Claim<'a> {
    pub key: &'a VerifyingKey,
    pub prehash: [u8; 32],
    pub signature: Signature,
}

/// Whether `signature` is `key`'s low-S signature of `prehash`: what k256's
/// `VerifyingKey::verify_prehash(prehash, signature).is_ok()` answers.
pub fn verify_prehashed(key: &VerifyingKey, prehash: &[u8; 32], signature: &Signature) -> bool {
    verify_prehashed_all(&[Claim { key, prehash: *prehash, signature: *signature }]) == [true]
}

/// [`verify_prehashed`] of each claim, in order, with one field inversion for all and
/// one scalar inversion for all (each of the two about 3 µs, a twentieth of a check).
pub fn verify_prehashed_all(claims: &[Claim<'_>]) -> Vec<bool> {
    // The claims with a low s (the others fail), and their s values.
    let (low_s, s_values): (Vec<usize>, Vec<Scalar>) = claims
        .iter()
        .enumerate()
        .map(|(i, c)| (i, *c.signature.s()))
        .filter(|(_, s)| !bool::from(s.is_high()))
        .unzip();
    let inverses = invert_all(&s_values);
    let mut rs = Vec::with_capacity(low_s.len());
    let mut points = Vec::with_capacity(low_s.len());
    let mut slots: Vec<Option<usize>> = vec![None; claims.len()];
    for (k, i) in low_s.into_iter().enumerate() {
        let s_inv = match &inverses {
            Some(all) => Some(all[k]),
            None => Option::from(s_values[k].invert_vartime()),
        };
        if let Some(s_inv) = s_inv {
            let (r, point) = r_and_point(&claims[i], &s_inv);
            rs.push(r);
            points.push(point);
            slots[i] = Some(points.len() - 1);
        }
    }
    let affine = <ProjectivePoint as BatchNormalize<[ProjectivePoint]>>::batch_normalize_vartime(&points);
    slots.into_iter().map(|slot| slot.is_some_and(|i| x_is(&affine[i], &rs[i]))).collect()
}

/// The inverse of each of `xs` by Montgomery's trick: one inversion of their product and
/// three multiplications each. `None` if the product is zero (never, for the s values of
/// [`Signature`]s, which are in 1..n with n prime).
fn invert_all(xs: &[Scalar]) -> Option<Vec<Scalar>> {
    // prefix[i] = xs[0]·…·xs[i - 1]
    let mut prefix = Vec::with_capacity(xs.len());
    let mut product = Scalar::ONE;
    for x in xs {
        prefix.push(product);
        product *= x;
    }
    let mut inv: Scalar = Option::from(product.invert_vartime())?;
    // Walking back, `inv` is the inverse of xs[0]·…·xs[i].
    let mut out = vec![Scalar::ZERO; xs.len()];
    for i in (0..xs.len()).rev() {
        out[i] = inv * prefix[i];
        inv *= xs[i];
    }
    Some(out)
}

/// r and the point `R = (z/s)·G + (r/s)·Q`, given `s_inv` = 1/s (the caller has
/// refused a high s). r and s are non-zero: a [`Signature`] holds only scalars in 1..n.
fn r_and_point(c: &Claim<'_>, s_inv: &Scalar) -> (Scalar, ProjectivePoint) {
    let r = *c.signature.r();
    let z = <Scalar as Reduce<FieldBytes>>::reduce(&FieldBytes::from(c.prehash));
    let q = ProjectivePoint::from(*c.key.as_affine());
    let point = crate::ecmult::mul_generator_add(&(z * s_inv), &(r * s_inv), &q);
    (r, point)
}

/// Whether the affine point's x, taken mod n, is `r`. The point at infinity (k256 gives
/// it x = 0) never is: r is not zero.
fn x_is(point: &AffinePoint, r: &Scalar) -> bool {
    *r == <Scalar as Reduce<FieldBytes>>::reduce(&point.x())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k256::ecdsa::signature::hazmat::{PrehashSigner, PrehashVerifier};
    use k256::ecdsa::SigningKey;
    use k256::elliptic_curve::ops::Neg;
    use k256::elliptic_curve::PrimeField;
    use proptest::prelude::*;

    fn k256_says(key: &VerifyingKey, prehash: &[u8; 32], sig: &Signature) -> bool {
        key.verify_prehash(prehash, sig).is_ok()
    }

    /// Signatures valid and wrong in each part: another hash, another key, r and s
    /// changed, the high-S twin, r or s from the edges (1, n - 1), r equal to another
    /// signature's, and the point at infinity (u1·G + u2·Q = O when Q = -(z/r)·G).
    fn cases(seed: [u8; 32], hash: [u8; 32]) -> Vec<(VerifyingKey, [u8; 32], Signature)> {
        let sk = SigningKey::from_slice(&seed).unwrap_or_else(|_| SigningKey::from_slice(&[7; 32]).unwrap());
        let key = *sk.verifying_key();
        let sig: Signature = sk.sign_prehash(&hash).unwrap();
        let sig = sig.normalize_s();
        let (r, s) = sig.split_scalars();
        let other = *SigningKey::from_slice(&[9; 32]).unwrap().verifying_key();
        let one = Scalar::ONE;
        let n_minus_1 = Scalar::ZERO - Scalar::ONE;
        let with = |r: Scalar, s: Scalar| Signature::from_scalars(r.to_repr(), s.to_repr()).ok();
        let mut flipped = hash;
        flipped[31] ^= 1;
        let mut out = vec![(key, hash, sig), (key, flipped, sig), (other, hash, sig)];
        for s2 in [with(*r, *s + one), with(*r + one, *s), with(*r, -*s), with(one, *s), with(*r, one)]
            .into_iter()
            .chain([with(n_minus_1, *s), with(*r, n_minus_1), with(one, one)])
            .flatten()
        {
            out.push((key, hash, s2));
        }
        // Q = -(z/r)·G: with s = 1, u1·G + u2·Q = z·G - r·(z/r)·G = O.
        let z = <Scalar as Reduce<FieldBytes>>::reduce(&FieldBytes::from(hash));
        let r_inv: Option<Scalar> = r.invert().into();
        if let Some(r_inv) = r_inv {
            let q = (ProjectivePoint::GENERATOR * (z * r_inv)).neg().to_affine();
            if let Ok(k) = VerifyingKey::from_affine(q) {
                if let Some(s1) = with(*r, one) {
                    out.push((k, hash, s1));
                }
            }
        }
        out
    }

    #[test]
    fn agrees_with_k256_on_fixed_cases() {
        let mut seen = [0, 0];
        for i in 1..20u8 {
            let all = cases([i; 32], [i.wrapping_mul(37); 32]);
            let claims: Vec<Claim> = all
                .iter()
                .map(|(key, prehash, signature)| Claim { key, prehash: *prehash, signature: *signature })
                .collect();
            let batch = verify_prehashed_all(&claims);
            for ((key, prehash, sig), b) in all.iter().zip(batch) {
                let want = k256_says(key, prehash, sig);
                assert_eq!(verify_prehashed(key, prehash, sig), want);
                assert_eq!(b, want);
                seen[usize::from(want)] += 1;
            }
        }
        assert!(seen[0] > 100 && seen[1] >= 19, "valid and invalid cases both ran: {seen:?}");
    }

    #[test]
    fn an_empty_batch_is_empty() {
        assert!(verify_prehashed_all(&[]).is_empty());
        assert_eq!(invert_all(&[]), Some(vec![]));
    }

    #[test]
    fn batch_inverses_are_inverses() {
        let xs = [
            Scalar::ONE,
            Scalar::ONE + Scalar::ONE,
            -Scalar::ONE,
            Scalar::from(0x1234_5678u64),
            -Scalar::from(3u64),
        ];
        let inv = invert_all(&xs).expect("no zero");
        for (x, i) in xs.iter().zip(&inv) {
            assert_eq!(*x * i, Scalar::ONE);
        }
        assert_eq!(invert_all(&[Scalar::ONE, Scalar::ZERO]), None);
    }

    proptest! {
        #[test]
        fn agrees_with_k256_on_random_signatures(
            seed in any::<[u8; 32]>(),
            hash in any::<[u8; 32]>(),
            r in any::<[u8; 32]>(),
            s in any::<[u8; 32]>(),
        ) {
            let mut all = cases(seed, hash);
            // Arbitrary (r, s) against the same key, where they form a signature.
            if let Ok(sig) = Signature::from_scalars(r, s) {
                all.push((all[0].0, hash, sig));
            }
            let claims: Vec<Claim> =
                all.iter().map(|(key, prehash, signature)| Claim { key, prehash: *prehash, signature: *signature }).collect();
            let batch = verify_prehashed_all(&claims);
            for ((key, prehash, sig), b) in all.iter().zip(batch) {
                let want = k256_says(key, prehash, sig);
                prop_assert_eq!(verify_prehashed(key, prehash, sig), want);
                prop_assert_eq!(b, want);
            }
        }
    }
}
