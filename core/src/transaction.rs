//! Transfers, their signatures, and coinbases.
//!
//! A transfer is signed with ECDSA over secp256k1 on its signing hash,
//! `SHA-256("cairn/transfer-sighash/v1" || encode(transfer))`. The transfer includes the
//! chain id, so a signature is worthless on any other chain. Signatures are RFC 6979
//! deterministic and must be low-S: the high-S twin of a valid signature is rejected, so
//! nobody but the signer can produce a second valid encoding (and txid) of a transfer.

use crate::address::Address;
use crate::amount::Amount;
use crate::encoding;
use crate::hash::{tag, tagged_hash, Txid};
use k256::ecdsa::signature::hazmat::{PrehashSigner, PrehashVerifier};
use k256::ecdsa::{Signature, SigningKey, VerifyingKey};
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
        tagged_hash(tag::SIGHASH, &[&encoding::encode(self)])
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
        let t = &self.transfer;
        if t.chain_id != chain_id {
            return Err(TxError::WrongChain { expected: chain_id, got: t.chain_id });
        }
        t.total_cost().ok_or(TxError::AmountOverflow)?;
        let sig = Signature::from_slice(&self.signature).map_err(|_| TxError::MalformedSignature)?;
        if sig.normalize_s() != sig {
            return Err(TxError::HighS);
        }
        let key = VerifyingKey::from_sec1_bytes(&t.from).map_err(|_| TxError::BadPublicKey)?;
        key.verify_prehash(&t.signing_hash(), &sig).map_err(|_| TxError::BadSignature)
    }
}

impl Transaction {
    /// Tagged SHA-256 of the canonical encoding of the whole transaction (signature
    /// included).
    pub fn txid(&self) -> Txid {
        Txid(tagged_hash(tag::TXID, &[&encoding::encode(self)]))
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
