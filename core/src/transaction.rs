//! Transfers, their signatures, and coinbases.
//!
//! A transfer is signed with ECDSA over secp256k1 on its signing hash,
//! `SHA-256("cairn/transfer-sighash/v1" || encode(transfer))`. The transfer includes the
//! chain id, so a signature is worthless on any other chain. Signatures are RFC 6979
//! deterministic and must be low-S: the high-S twin of a valid signature is rejected, so
//! nobody but the signer can produce a second valid encoding (and txid) of a transfer.

use crate::address::Address;
use crate::amount::Amount;
use crate::ecdsa;
use crate::encoding;
use crate::hash::{tag, tagged_hash, Txid};
use k256::ecdsa::signature::hazmat::PrehashSigner;
use k256::ecdsa::{Signature, SigningKey, VerifyingKey};
use std::collections::HashMap;
use thiserror::Error;

/// A compressed SEC1 secp256k1 public key.
pub type PublicKeyBytes = [u8; 33];
/// A signature as `r || s`, 32 bytes each, big-endian.
pub type SignatureBytes = [u8; 64];

/// The unsigned body of a transfer: what the sender signs.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, bincode::Encode, bincode::Decode)]
pub struct Transfer {
    pub chain_id: u32,
    /// Must equal the sender's account nonce when the transfer is applied.
    pub nonce: u64,
    /// The sender's compressed public key; the sender's address is derived from it.
    pub from: PublicKeyBytes,
    pub to: Address,
    pub amount: Amount,
    pub fee: Amount,
}

/// A transfer and its signature.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, bincode::Encode, bincode::Decode)]
pub struct SignedTransfer {
    pub transfer: Transfer,
    pub signature: SignatureBytes,
}

/// The block reward and fees paid to the miner. It carries the block height, so no two
/// coinbases ever share a txid.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, bincode::Encode, bincode::Decode)]
pub struct Coinbase {
    pub height: u64,
    pub to: Address,
    pub amount: Amount,
}

/// One entry of a block's transaction list. Encoded as a `u32` variant index
/// (0 = coinbase, 1 = transfer) followed by the fields.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, bincode::Encode, bincode::Decode)]
pub enum Transaction {
    Coinbase(Coinbase),
    Transfer(SignedTransfer),
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TxError {
    #[error("wrong chain id: transfer is for chain {got}, this chain is {expected}")]
    WrongChain { expected: u32, got: u32 },
    #[error("invalid sender public key")]
    BadPublicKey,
    #[error("malformed signature")]
    MalformedSignature,
    #[error("high-S signature (only low-S signatures are valid)")]
    HighS,
    #[error("bad signature")]
    BadSignature,
    #[error("amount plus fee overflows")]
    AmountOverflow,
    #[error("invalid private key")]
    BadPrivateKey,
}

impl Transfer {
    /// The hash the sender signs.
    pub fn signing_hash(&self) -> [u8; 32] {
        encoding::with_encoded(self, |bytes| tagged_hash(tag::SIGHASH, &[bytes]))
    }

    /// The sender's address.
    pub fn sender(&self) -> Address {
        Address::from_public_key(&self.from)
    }

    /// amount + fee, or `None` on overflow.
    pub fn total_cost(&self) -> Option<Amount> {
        self.amount.checked_add(self.fee)
    }

    /// Signs with RFC 6979 deterministic nonces, producing a low-S signature.
    pub fn sign(self, key: &SigningKey) -> Result<SignedTransfer, TxError> {
        let sig: Signature = key.sign_prehash(&self.signing_hash()).map_err(|_| TxError::BadPrivateKey)?;
        let sig = sig.normalize_s();
        Ok(SignedTransfer { transfer: self, signature: sig.to_bytes().into() })
    }
}

impl SignedTransfer {
    pub fn txid(&self) -> Txid {
        Transaction::Transfer(*self).txid()
    }

    /// Checks everything about the transfer that needs no chain state: chain id, amount
    /// overflow, public key, signature validity and low-S. This is the costly part of
    /// validation and may run on any thread.
    pub fn verify(&self, chain_id: u32) -> Result<(), TxError> {
        self.verify_inner(chain_id, None)
    }

    /// [`SignedTransfer::verify`], taking the sender's public key from `keys` when it is
    /// there instead of decompressing it again. Same result, same errors.
    pub fn verify_with_keys(&self, chain_id: u32, keys: &DecodedKeys) -> Result<(), TxError> {
        self.verify_inner(chain_id, keys.0.get(&self.transfer.from))
    }

    /// [`SignedTransfer::verify`] with `decoded`, the entry [`DecodedKeys::decode`] gave
    /// for some key: used when it was decoded from these very bytes (`self.transfer.from`),
    /// else the sender's key is decompressed as `verify` does. Same result, same errors.
    pub fn verify_with_key(
        &self,
        chain_id: u32,
        decoded: Option<&(PublicKeyBytes, VerifyingKey)>,
    ) -> Result<(), TxError> {
        let key = decoded.filter(|(bytes, _)| *bytes == self.transfer.from).map(|(_, key)| key);
        self.verify_inner(chain_id, key)
    }

    /// `decoded`, when given, is the decoding of `self.transfer.from` (a [`DecodedKeys`]
    /// entry, keyed by those very bytes).
    fn verify_inner(&self, chain_id: u32, decoded: Option<&VerifyingKey>) -> Result<(), TxError> {
        let (key, prehash, sig) = self.claim_parts(chain_id, decoded)?;
        match ecdsa::verify_prehashed(&key, &prehash, &sig) {
            true => Ok(()),
            false => Err(TxError::BadSignature),
        }
    }

    /// Every check but the signature equation, in [`SignedTransfer::verify`]'s order;
    /// what the equation needs: the sender's key, the signing hash, the signature.
    fn claim_parts(&self, chain_id: u32, decoded: Option<&VerifyingKey>) -> Result<ClaimParts, TxError> {
        let t = &self.transfer;
        if t.chain_id != chain_id {
            return Err(TxError::WrongChain { expected: chain_id, got: t.chain_id });
        }
        t.total_cost().ok_or(TxError::AmountOverflow)?;
        let sig = Signature::from_slice(&self.signature).map_err(|_| TxError::MalformedSignature)?;
        if sig.normalize_s() != sig {
            return Err(TxError::HighS);
        }
        let key = match decoded {
            Some(key) => *key,
            None => VerifyingKey::from_sec1_bytes(&t.from).map_err(|_| TxError::BadPublicKey)?,
        };
        Ok((key, t.signing_hash(), sig))
    }
}

/// What the signature equation needs: the sender's key, the signing hash, the signature.
type ClaimParts = (VerifyingKey, [u8; 32], Signature);

/// [`SignedTransfer::verify_with_keys`] of each of `txs`, in order, with the same
/// results, the signature equations run together ([`ecdsa::verify_prehashed_all`]: one
/// field inversion for all of them rather than one each).
pub fn verify_all_with_keys(
    txs: &[&SignedTransfer],
    chain_id: u32,
    keys: &DecodedKeys,
) -> Vec<Result<(), TxError>> {
    let parts: Vec<Result<ClaimParts, TxError>> =
        txs.iter().map(|st| st.claim_parts(chain_id, keys.0.get(&st.transfer.from))).collect();
    let claims: Vec<ecdsa::Claim<'_>> = parts
        .iter()
        .filter_map(|p| p.as_ref().ok())
        .map(|(key, prehash, signature)| ecdsa::Claim { key, prehash: *prehash, signature: *signature })
        .collect();
    let mut verdicts = ecdsa::verify_prehashed_all(&claims).into_iter();
    parts
        .into_iter()
        .map(|p| match p {
            Err(e) => Err(e),
            Ok(_) => match verdicts.next() {
                Some(true) => Ok(()),
                _ => Err(TxError::BadSignature),
            },
        })
        .collect()
}

/// Public keys decompressed once each, for checking many transfers of the same senders
/// ([`SignedTransfer::verify_with_keys`]): decompressing a 33-byte key is a square root
/// in the field, a tenth of a verification, and a block often carries several transfers
/// of one sender. Keyed by the exact compressed bytes, so an entry is what decoding the
/// transfer's own `from` would give; keys that do not decode are simply not entered.
#[derive(Default)]
pub struct DecodedKeys(HashMap<PublicKeyBytes, VerifyingKey>);

impl DecodedKeys {
    /// Decompresses one key: `None` if it is not a valid point. The costly part; may
    /// run on any thread.
    pub fn decode(bytes: &PublicKeyBytes) -> Option<(PublicKeyBytes, VerifyingKey)> {
        VerifyingKey::from_sec1_bytes(bytes).ok().map(|k| (*bytes, k))
    }

    /// The entry for `bytes`, to carry into another set (the keys of one block kept for
    /// the next).
    pub fn entry(&self, bytes: &PublicKeyBytes) -> Option<(PublicKeyBytes, VerifyingKey)> {
        self.0.get(bytes).map(|k| (*bytes, *k))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Extend<(PublicKeyBytes, VerifyingKey)> for DecodedKeys {
    fn extend<I: IntoIterator<Item = (PublicKeyBytes, VerifyingKey)>>(&mut self, iter: I) {
        self.0.extend(iter);
    }
}

impl FromIterator<(PublicKeyBytes, VerifyingKey)> for DecodedKeys {
    fn from_iter<I: IntoIterator<Item = (PublicKeyBytes, VerifyingKey)>>(iter: I) -> Self {
        DecodedKeys(iter.into_iter().collect())
    }
}

impl Transaction {
    /// Tagged SHA-256 of the canonical encoding of the whole transaction (signature
    /// included).
    pub fn txid(&self) -> Txid {
        Txid(encoding::with_encoded(self, |bytes| tagged_hash(tag::TXID, &[bytes])))
    }

    pub fn as_transfer(&self) -> Option<&SignedTransfer> {
        match self {
            Transaction::Transfer(t) => Some(t),
            Transaction::Coinbase(_) => None,
        }
    }
}

/// The compressed public key of a signing key.
pub fn public_key_of(key: &SigningKey) -> PublicKeyBytes {
    let point = key.verifying_key().to_sec1_point(true);
    let mut out = [0u8; 33];
    out.copy_from_slice(point.as_bytes());
    out
}

/// The address of a signing key.
pub fn address_of(key: &SigningKey) -> Address {
    Address::from_public_key(&public_key_of(key))
}

/// Parses a 32-byte private key.
pub fn signing_key_from_bytes(bytes: &[u8]) -> Result<SigningKey, TxError> {
    SigningKey::from_slice(bytes).map_err(|_| TxError::BadPrivateKey)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k256::elliptic_curve::ops::Neg;

    fn key(n: u8) -> SigningKey {
        signing_key_from_bytes(&[n; 32]).unwrap()
    }

    fn sample(k: &SigningKey) -> Transfer {
        Transfer {
            chain_id: 7,
            nonce: 3,
            from: public_key_of(k),
            to: Address([9; 20]),
            amount: Amount(1000),
            fee: Amount(10),
        }
    }

    #[test]
    fn sign_then_verify() {
        let k = key(1);
        let st = sample(&k).sign(&k).unwrap();
        assert_eq!(st.verify(7), Ok(()));
    }

    #[test]
    fn signing_is_deterministic() {
        let k = key(1);
        assert_eq!(sample(&k).sign(&k).unwrap(), sample(&k).sign(&k).unwrap());
    }

    #[test]
    fn wrong_chain_is_rejected() {
        let k = key(1);
        let st = sample(&k).sign(&k).unwrap();
        assert_eq!(st.verify(8), Err(TxError::WrongChain { expected: 8, got: 7 }));
        // Re-labelling the chain id breaks the signature, since the chain id is signed.
        let mut moved = st;
        moved.transfer.chain_id = 8;
        assert_eq!(moved.verify(8), Err(TxError::BadSignature));
    }

    #[test]
    fn high_s_twin_is_rejected() {
        let k = key(2);
        let st = sample(&k).sign(&k).unwrap();
        let sig = Signature::from_slice(&st.signature).unwrap();
        let (r, s) = sig.split_scalars();
        let high = Signature::from_scalars(r, s.neg()).unwrap();
        let mut twin = st;
        twin.signature = high.to_bytes().into();
        assert_ne!(twin.txid(), st.txid());
        assert_eq!(twin.verify(7), Err(TxError::HighS));
    }

    #[test]
    fn tampering_breaks_the_signature() {
        let k = key(3);
        let st = sample(&k).sign(&k).unwrap();
        for mutate in [
            (|t: &mut Transfer| t.amount = Amount(1001)) as fn(&mut Transfer),
            |t| t.fee = Amount(0),
            |t| t.nonce = 4,
            |t| t.to = Address([8; 20]),
        ] {
            let mut bad = st;
            mutate(&mut bad.transfer);
            assert_eq!(bad.verify(7), Err(TxError::BadSignature));
        }
        let mut other_key = st;
        other_key.transfer.from = public_key_of(&key(4));
        assert_eq!(other_key.verify(7), Err(TxError::BadSignature));
    }

    #[test]
    fn overflowing_amount_is_rejected() {
        let k = key(5);
        let mut t = sample(&k);
        t.amount = Amount(u64::MAX);
        t.fee = Amount(1);
        assert_eq!(t.sign(&k).unwrap().verify(7), Err(TxError::AmountOverflow));
    }

    #[test]
    fn a_decoded_key_gives_the_same_answer_as_decoding_it_each_time() {
        let (a, b) = (key(1), key(2));
        let keys: DecodedKeys =
            [public_key_of(&a), [0xff; 33]].iter().filter_map(DecodedKeys::decode).collect();
        assert_eq!(keys.len(), 1, "a key that does not decode is not entered");
        let good = sample(&a).sign(&a).unwrap();
        let other = sample(&b).sign(&b).unwrap(); // its key is not in the cache
        let mut forged = good; // a's key, b's signature over the same body
        forged.signature = other.signature;
        let mut tampered = good;
        tampered.transfer.amount = Amount(1);
        let mut garbage = good;
        garbage.transfer.from = [0xff; 33];
        let mut wrong_chain = good;
        wrong_chain.transfer.chain_id = 8;
        let mut malformed = good;
        malformed.signature = [0; 64];
        for (st, expected) in [
            (good, Ok(())),
            (other, Ok(())),
            (forged, Err(TxError::BadSignature)),
            (tampered, Err(TxError::BadSignature)),
            (garbage, Err(TxError::BadPublicKey)),
            (wrong_chain, Err(TxError::WrongChain { expected: 7, got: 8 })),
            (malformed, Err(TxError::MalformedSignature)),
        ] {
            assert_eq!(st.verify_with_keys(7, &keys), expected);
            assert_eq!(st.verify(7), expected);
            // One entry, whichever transfer it is offered to: used only for its own key.
            let a_entry = DecodedKeys::decode(&public_key_of(&a));
            assert_eq!(st.verify_with_key(7, a_entry.as_ref()), expected);
            assert_eq!(st.verify_with_key(7, None), expected);
        }
        // All of them at once, in order, with and without their keys decoded.
        let all = [good, other, forged, tampered, garbage, wrong_chain, malformed, good, forged];
        let refs: Vec<&SignedTransfer> = all.iter().collect();
        let one_by_one: Vec<_> = all.iter().map(|st| st.verify(7)).collect();
        assert_eq!(verify_all_with_keys(&refs, 7, &keys), one_by_one);
        assert_eq!(verify_all_with_keys(&refs, 7, &DecodedKeys::default()), one_by_one);
        assert_eq!(verify_all_with_keys(&refs[..1], 7, &keys), vec![Ok(())]);
        assert!(verify_all_with_keys(&[], 7, &keys).is_empty());
    }

    #[test]
    fn garbage_key_and_signature_are_errors_not_panics() {
        let k = key(6);
        let mut st = sample(&k).sign(&k).unwrap();
        st.transfer.from = [0xff; 33];
        assert!(st.verify(7).is_err());
        let mut st = sample(&k).sign(&k).unwrap();
        st.signature = [0; 64];
        assert_eq!(st.verify(7), Err(TxError::MalformedSignature));
    }
}
