//! The signature check's arithmetic against k256's own (core/src/ecmult.rs,
//! core/src/ecdsa.rs): `a·G + b·Q` is the point k256's
//! `mul_by_generator_and_mul_add_vartime` gives, for any scalars and any key; and Cairn's
//! check of a key, a hash and a signature taken from the input answers what k256's
//! `verify_prehash` answers.
#![no_main]

use cairn_core::ecdsa::verify_prehashed;
use cairn_core::ecmult::mul_generator_add;
use k256::ecdsa::signature::hazmat::PrehashVerifier;
use k256::ecdsa::{Signature, VerifyingKey};
use k256::elliptic_curve::ops::{MulByGeneratorVartime, Reduce};
use k256::{FieldBytes, ProjectivePoint, Scalar};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Three 32-byte words (zero-padded): a, b, and Q's discrete log, each reduced mod n.
    let mut words = [[0u8; 32]; 3];
    for (word, chunk) in words.iter_mut().zip(data.chunks(32)) {
        word[..chunk.len()].copy_from_slice(chunk);
    }
    let scalar = |w: [u8; 32]| <Scalar as Reduce<FieldBytes>>::reduce(&FieldBytes::from(w));
    let (a, b) = (scalar(words[0]), scalar(words[1]));
    let q = ProjectivePoint::GENERATOR * scalar(words[2]);
    assert_eq!(mul_generator_add(&a, &b, &q), ProjectivePoint::mul_by_generator_and_mul_add_vartime(&a, &b, &q));

    // The same bytes as a compressed key, a hash and a signature.
    if data.len() >= 33 + 32 + 64 {
        let (key, rest) = data.split_at(33);
        let (hash, sig) = rest.split_at(32);
        if let (Ok(key), Ok(sig)) = (VerifyingKey::from_sec1_bytes(key), Signature::from_slice(&sig[..64])) {
            let hash: [u8; 32] = hash.try_into().expect("32 bytes");
            assert_eq!(verify_prehashed(&key, &hash, &sig), key.verify_prehash(&hash, &sig).is_ok());
        }
    }
});
