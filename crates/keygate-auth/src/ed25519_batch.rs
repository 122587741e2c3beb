//! Ed25519 signatures checked many at a time.
//!
//! One Ed25519 verification costs about 40 µs of CPU, most of an Ed25519-signed request (the
//! rest of a signed account read is about 10 µs). Checking several signatures together with one
//! multi-scalar multiplication (ed25519-dalek's `verify_batch`) costs about half as much per
//! signature from eight signatures on (docs/benchmarks.md), and a server under load has many
//! requests waiting for their check at once. The server gathers them (its `ed25519_batches`
//! module); this module decides each one's verdict.
//!
//! # What a batch accepts
//!
//! Every signature that `verify_strict` accepts passes a batch, and a batch that fails is checked
//! again one signature at a time with `verify_strict`, so one bad signature costs its neighbours
//! only time. A batch that passes accepts each signature in it. Its equation is the cofactorless
//! one `verify_strict` checks, summed with random weights, so it can accept, where
//! `verify_strict` would not, only a signature whose `R` carries a small-order component or is the
//! identity or is not canonically encoded. Since `R` is hashed into the challenge, changing the
//! `R` of somebody else's signature changes the equation and fails like any forgery: only the
//! holder of the private key can make such a signature, about their own request, and gains
//! nothing by it that an ordinary signature would not give. Signatures from a third party are
//! judged exactly as `verify_strict` judges them
//! (`tests::a_tampered_signature_fails_its_batch_and_only_itself`).
//! Weak (small-order) keys are refused when a key is registered; a batch sends any that reach it to
//! `verify_strict`, which refuses them.

use crate::verify::{GoodSignature, replay_id};
use ed25519_dalek::{Signature, VerifyingKey};

/// One Ed25519 check, owned, so that it can wait in a queue beside other requests' checks.
#[derive(Debug, Clone)]
pub struct Ed25519Check {
    key: VerifyingKey,
    signature: Signature,
    message: Vec<u8>,
}

/// Signatures checked together at most; more waiting form the next batch. The cost per signature
/// hardly falls beyond 16 (0.59 of a lone check at 8, 0.46 at 64: docs/benchmarks.md), while a
/// batch holds the worker thread that checks it for its whole length: 32 signatures are about
/// 0.6 ms.
pub const MAX_BATCH: usize = 32;

impl Ed25519Check {
    /// The check of `signature` over `message` by `key`.
    #[must_use]
    pub fn new(key: VerifyingKey, signature: &[u8; 64], message: Vec<u8>) -> Self {
        Self { key, signature: Signature::from_bytes(signature), message }
    }

    /// Checks this signature alone, with `verify_strict`.
    #[must_use]
    pub fn verify(&self) -> Option<GoodSignature> {
        self.verify_alone().then(|| self.good())
    }

    fn verify_alone(&self) -> bool {
        self.key.verify_strict(&self.message, &self.signature).is_ok()
    }

    /// The verdict once this signature is known to be good.
    fn good(&self) -> GoodSignature {
        GoodSignature::verified(replay_id(&self.signature.to_bytes()))
    }
}

/// The verdict on each of `checks`, in order: `Some` where the signature is good.
///
/// A single check, and a set with a weak key, is verified one by one; the rest as one batch, and
/// one by one if the batch fails (see the module documentation).
#[must_use]
pub fn verify_all(checks: &[Ed25519Check]) -> Vec<Option<GoodSignature>> {
    let batchable = checks.len() > 1 && checks.iter().all(|c| !c.key.is_weak());
    if batchable {
        let messages: Vec<&[u8]> = checks.iter().map(|c| c.message.as_slice()).collect();
        let signatures: Vec<Signature> = checks.iter().map(|c| c.signature).collect();
        let keys: Vec<VerifyingKey> = checks.iter().map(|c| c.key).collect();
        if ed25519_dalek::verify_batch(&messages, &signatures, &keys).is_ok() {
            return checks.iter().map(|c| Some(c.good())).collect();
        }
    }
    checks.iter().map(Ed25519Check::verify).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signer as _, SigningKey};
    use proptest::prelude::*;

    fn signer(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn check(key: &SigningKey, message: &[u8]) -> Ed25519Check {
        Ed25519Check::new(key.verifying_key(), &key.sign(message).to_bytes(), message.to_vec())
    }

    /// Ways a third party can change a signed request.
    #[derive(Debug, Clone, Copy)]
    enum Tamper {
        /// One bit of the signature flipped (R or s).
        SignatureBit(usize),
        /// One bit of the message flipped.
        MessageBit(usize),
        /// `s + l`: the classic malleation, refused as non-canonical.
        SPlusOrder,
        /// R with a small-order point added: another encoding of "the same" signature.
        RPlusTorsion(usize),
        /// Signed by another key.
        OtherKey,
    }

    /// The group order l, little-endian.
    const ORDER: [u8; 32] = [
        0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14, 0, 0, 0, 0, 0,
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
    ];

    fn tamper(c: &Ed25519Check, how: Tamper) -> Ed25519Check {
        let mut sig = c.signature.to_bytes();
        let mut message = c.message.clone();
        let mut key = c.key;
        match how {
            Tamper::SignatureBit(bit) => sig[bit / 8 % 64] ^= 1 << (bit % 8),
            Tamper::MessageBit(bit) => {
                let at = bit / 8 % message.len();
                message[at] ^= 1 << (bit % 8);
            }
            Tamper::SPlusOrder => {
                let mut carry = 0u16;
                for (s, l) in sig[32..].iter_mut().zip(ORDER) {
                    let v = u16::from(*s) + u16::from(l) + carry;
                    *s = v as u8;
                    carry = v >> 8;
                }
            }
            Tamper::RPlusTorsion(which) => {
                use curve25519_dalek::constants::EIGHT_TORSION;
                use curve25519_dalek::edwards::CompressedEdwardsY;
                let r = CompressedEdwardsY(sig[..32].try_into().unwrap()).decompress().unwrap();
                let t = EIGHT_TORSION[1 + which % 7];
                sig[..32].copy_from_slice((r + t).compress().as_bytes());
            }
            Tamper::OtherKey => key = signer(99).verifying_key(),
        }
        Ed25519Check { key, signature: Signature::from_bytes(&sig), message }
    }

    fn tampers() -> impl Strategy<Value = Tamper> {
        prop_oneof![
            (0usize..512).prop_map(Tamper::SignatureBit),
            (0usize..4096).prop_map(Tamper::MessageBit),
            Just(Tamper::SPlusOrder),
            (0usize..7).prop_map(Tamper::RPlusTorsion),
            Just(Tamper::OtherKey),
        ]
    }

    #[test]
    fn good_signatures_pass_in_batches_of_every_size_and_alone() {
        let keys = [signer(1), signer(2), signer(3)];
        let checks: Vec<Ed25519Check> =
            (0..MAX_BATCH).map(|i| check(&keys[i % 3], format!("symbol=BTCUSDT&timestamp={i}").as_bytes())).collect();
        for n in [1, 2, 3, 8, MAX_BATCH] {
            let verdicts = verify_all(&checks[..n]);
            let alone: Vec<_> = checks[..n].iter().map(Ed25519Check::verify).collect();
            assert!(verdicts.iter().all(Option::is_some), "a batch of {n}");
            assert_eq!(verdicts, alone, "the same verdicts, each naming its own signature");
        }
        assert!(verify_all(&[]).is_empty());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// Whatever a third party changes in one request of a batch, that request alone is
        /// refused, exactly as `verify_strict` refuses it, and its neighbours pass.
        #[test]
        fn a_tampered_signature_fails_its_batch_and_only_itself(
            n in 1usize..12,
            at in 0usize..12,
            how in tampers(),
        ) {
            let key = signer(7);
            let mut checks: Vec<Ed25519Check> =
                (0..n).map(|i| check(&key, format!("timestamp=17{i:011}&recvWindow=5000").as_bytes())).collect();
            let at = at % n;
            checks[at] = tamper(&checks[at], how);
            let strict = checks[at].verify_alone();
            prop_assert!(!strict, "verify_strict refuses every tampering here");
            let verdicts = verify_all(&checks);
            for (i, verdict) in verdicts.iter().enumerate() {
                prop_assert_eq!(verdict.is_some(), i != at, "check {} of {}", i, n);
                prop_assert_eq!(*verdict, checks[i].verify());
            }
        }
    }

    #[test]
    fn a_weak_key_is_never_batched_and_is_refused() {
        use curve25519_dalek::constants::{ED25519_BASEPOINT_POINT, EIGHT_TORSION};
        // The identity as a "public key": with R = B and s = 1 the cofactorless equation
        // [s]B = R + [h]A holds for every message, so a batch would accept this forgery.
        let weak = VerifyingKey::from_bytes(EIGHT_TORSION[0].compress().as_bytes()).unwrap();
        assert!(weak.is_weak());
        let mut sig = [0u8; 64];
        sig[..32].copy_from_slice(ED25519_BASEPOINT_POINT.compress().as_bytes());
        sig[32] = 1;
        let forged = Ed25519Check::new(weak, &sig, b"symbol=BTCUSDT&quantity=1000".to_vec());
        let good = check(&signer(5), b"timestamp=1");
        let messages: [&[u8]; 2] = [&good.message, &forged.message];
        assert!(
            ed25519_dalek::verify_batch(&messages, &[good.signature, forged.signature], &[good.key, weak]).is_ok(),
            "the batch equation alone accepts the forgery"
        );
        assert_eq!(verify_all(&[good.clone(), forged.clone()]), vec![good.verify(), None]);
        assert!(good.verify().is_some());
        assert_eq!(verify_all(&[forged]), vec![None]);
    }
}
