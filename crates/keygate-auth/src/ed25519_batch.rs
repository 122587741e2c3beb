//! Ed25519 signatures checked many at a time.
//!
//! One Ed25519 verification costs about 40 µs of CPU, most of an Ed25519-signed request (the
//! rest of a signed account read is about 10 µs). Checking several signatures together with one
//! multi-scalar multiplication (ed25519-dalek's `verify_batch`) costs 0.59 as much per signature
//! at eight and 0.46 at 64 (docs/benchmarks.md, "Ed25519 signatures of concurrent requests
//! checked together"), and a server under load has many requests waiting for their check at once.
//! The server gathers them (its `ed25519_batches` module); this module decides each one's verdict.
//!
//! # What a batch accepts
//!
//! Every signature that `verify_strict` accepts passes a batch, and a batch that fails is checked
//! again one signature at a time with `verify_strict`, so one bad signature costs its neighbours
//! only time. A batch that passes accepts each signature in it. Its equation is the cofactorless
//! one `verify_strict` checks, summed with weights derived from a hash of the whole batch (128-bit,
//! deterministic: ed25519-dalek's merlin transcript). `verify_strict` also refuses a small-order
//! key, a small-order `R` and a non-canonically encoded `R`; those are looked for first, in the
//! bytes, and such a signature is checked alone (`batchable`). What a batch can still accept
//! that `verify_strict` would not is a signature whose `R` carries a small-order component (or
//! whose key does: registration refuses only small-order keys): the component drops out of the
//! summed equation when its weight is a multiple of its order. Since `R` is hashed into the
//! challenge, changing the `R` of somebody else's signature changes the equation and fails like
//! any forgery: only the holder of the private key can make such a signature, about their own
//! request, and it gains them nothing an ordinary signature would not (keygate never uses a
//! signature as evidence against its maker). Signatures from a third party are judged exactly as
//! `verify_strict` judges them (`tests::a_tampered_signature_fails_its_batch_and_only_itself`;
//! the holder's cases in `tests::a_holders_small_order_or_non_canonical_r_is_never_batched`).

use crate::verify::{GoodSignature, replay_id};
use ed25519_dalek::{Signature, VerifyingKey};
use keygate_proto::UnixMicros;
use std::sync::atomic::{AtomicU64, Ordering};

/// How long after a bad signature a key's Ed25519 signatures are checked alone
/// ([`RecentBadSignature`]).
pub const CHECK_ALONE_AFTER_BAD_US: u64 = 60_000_000;

/// When a key last sent a bad Ed25519 signature, kept beside the key in its cache entry. For
/// [`CHECK_ALONE_AFTER_BAD_US`] after, the server checks that key's signatures alone, on the
/// request's own thread, instead of batching them: one bad signature sends its whole batch back to
/// be checked one by one, so a flood of bad signatures made with one key id would slow everyone's
/// Ed25519 requests. This way each key spoils at most one batch a minute.
#[derive(Debug, Default)]
pub struct RecentBadSignature(AtomicU64);

impl RecentBadSignature {
    /// Notes a bad signature at `now`.
    pub fn note(&self, now: UnixMicros) {
        self.0.fetch_max(now.0, Ordering::Relaxed);
    }

    /// True if the key sent a bad signature less than [`CHECK_ALONE_AFTER_BAD_US`] before `now`.
    #[must_use]
    pub fn recent(&self, now: UnixMicros) -> bool {
        let at = self.0.load(Ordering::Relaxed);
        at != 0 && now.0.saturating_sub(at) < CHECK_ALONE_AFTER_BAD_US
    }
}

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

/// Whether `check` may join a batch: its key is not of small order, and its `R` is neither
/// encoded non-canonically nor of small order (the cases `verify_strict` refuses that a batch
/// would not, looked for in the bytes, without decoding the point).
fn batchable(check: &Ed25519Check) -> bool {
    let r = check.signature.r_bytes();
    !check.key.is_weak() && canonical_y(r) && !SMALL_ORDER_R.contains(r)
}

/// True if the y coordinate of an encoded point (its low 255 bits) is below p = 2^255 - 19.
fn canonical_y(encoded: &[u8; 32]) -> bool {
    let mut y = *encoded;
    y[31] &= 0x7f;
    // y >= p only if it is 2^255 - 19 + k for k in 0..19: all bytes 0xff but the first >= 0xed
    // and the last 0x7f.
    !(y[31] == 0x7f && y[1..31].iter().all(|&b| b == 0xff) && y[0] >= 0xed)
}

/// The canonical encodings of the eight points of small order, and the two of them with x = 0
/// (the identity and the point of order 2) with the sign bit set, which decode to the same points.
const SMALL_ORDER_R: [[u8; 32]; 10] = {
    /// `p` with the sign bit (of x) set.
    const fn signed(mut p: [u8; 32]) -> [u8; 32] {
        p[31] |= 0x80;
        p
    }
    // x = 0: y = 1 (the identity) and y = p - 1 (order 2).
    let mut identity = [0u8; 32];
    identity[0] = 1;
    let mut order_2 = [0xff; 32];
    order_2[0] = 0xec;
    order_2[31] = 0x7f;
    // y = 0: the two points of order 4.
    let order_4 = [0u8; 32];
    // Two of the four points of order 8; the sign bit gives the other two.
    let order_8 = [
        0x26, 0xe8, 0x95, 0x8f, 0xc2, 0xb2, 0x27, 0xb0, 0x45, 0xc3, 0xf4, 0x89, 0xf2, 0xef, 0x98, 0xf0, 0xd5, 0xdf,
        0xac, 0x05, 0xd3, 0xc6, 0x33, 0x39, 0xb1, 0x38, 0x02, 0x88, 0x6d, 0x53, 0xfc, 0x05,
    ];
    let order_8_b = [
        0xc7, 0x17, 0x6a, 0x70, 0x3d, 0x4d, 0xd8, 0x4f, 0xba, 0x3c, 0x0b, 0x76, 0x0d, 0x10, 0x67, 0x0f, 0x2a, 0x20,
        0x53, 0xfa, 0x2c, 0x39, 0xcc, 0xc6, 0x4e, 0xc7, 0xfd, 0x77, 0x92, 0xac, 0x03, 0x7a,
    ];
    [
        identity,
        signed(identity),
        order_2,
        signed(order_2),
        order_4,
        signed(order_4),
        order_8,
        signed(order_8),
        order_8_b,
        signed(order_8_b),
    ]
};

/// The verdict on each of `checks`, in order: `Some` where the signature is good.
///
/// A single check, and any that may not join a batch (a small-order key or `R`, a non-canonical `R`), is verified alone; the rest
/// as one batch, and one by one if the batch fails (see the module documentation).
#[must_use]
pub fn verify_all(checks: &[Ed25519Check]) -> Vec<Option<GoodSignature>> {
    let (batch, alone): (Vec<usize>, Vec<usize>) =
        (0..checks.len()).partition(|&i| checks.get(i).is_some_and(batchable));
    if batch.len() < 2 {
        return checks.iter().map(Ed25519Check::verify).collect();
    }
    let mut verdicts: Vec<Option<GoodSignature>> = vec![None; checks.len()];
    for i in alone {
        if let (Some(v), Some(c)) = (verdicts.get_mut(i), checks.get(i)) {
            *v = c.verify();
        }
    }
    let members: Vec<&Ed25519Check> = batch.iter().filter_map(|&i| checks.get(i)).collect();
    let together = verify_batch(&members);
    for (&i, c) in batch.iter().zip(&members) {
        if let Some(v) = verdicts.get_mut(i) {
            *v = if together { Some(c.good()) } else { c.verify() };
        }
    }
    verdicts
}

/// One `verify_batch` of all of `checks`.
fn verify_batch(checks: &[&Ed25519Check]) -> bool {
    let messages: Vec<&[u8]> = checks.iter().map(|c| c.message.as_slice()).collect();
    let signatures: Vec<Signature> = checks.iter().map(|c| c.signature).collect();
    let keys: Vec<VerifyingKey> = checks.iter().map(|c| c.key).collect();
    ed25519_dalek::verify_batch(&messages, &signatures, &keys).is_ok()
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
    fn a_bad_signature_is_remembered_for_a_minute() {
        let r = RecentBadSignature::default();
        assert!(!r.recent(UnixMicros(5)));
        r.note(UnixMicros(1_000_000));
        assert!(r.recent(UnixMicros(1_000_000 + CHECK_ALONE_AFTER_BAD_US - 1)));
        assert!(!r.recent(UnixMicros(1_000_000 + CHECK_ALONE_AFTER_BAD_US)));
        r.note(UnixMicros(10)); // an earlier time does not shorten it
        assert!(r.recent(UnixMicros(1_000_001)));
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
            n in 2usize..12,
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
    fn the_small_order_encodings_are_exactly_those_of_the_eight_torsion_points() {
        use curve25519_dalek::constants::EIGHT_TORSION;
        use curve25519_dalek::edwards::CompressedEdwardsY;
        for t in EIGHT_TORSION {
            assert!(SMALL_ORDER_R.contains(t.compress().as_bytes()), "{:?}", t.compress());
        }
        for r in SMALL_ORDER_R {
            let p = CompressedEdwardsY(r).decompress().expect("a point");
            assert!(p.is_small_order(), "{r:?}");
        }
        let mut y = [0xff; 32];
        y[31] = 0x7f;
        for first in 0xed..=0xffu8 {
            y[0] = first;
            assert!(!canonical_y(&y), "y = 2^255 - 19 + {}", first - 0xed);
        }
        y[0] = 0xec;
        assert!(canonical_y(&y), "p - 1");
    }

    /// Signatures `verify_strict` refuses that only the key's holder can make, and that a batch's
    /// equation alone would accept: each is checked alone, whatever it is batched with.
    #[test]
    fn a_holders_small_order_or_non_canonical_r_is_never_batched() {
        use curve25519_dalek::constants::EIGHT_TORSION;
        use curve25519_dalek::scalar::Scalar;
        use sha2::{Digest as _, Sha512};
        let key = signer(8);
        let a = key.to_scalar();
        let holder_signs = |r: [u8; 32], message: &[u8]| {
            // s = H(R || A || M) * a, so that [s]B = [h]A = R + [h]A when R is the identity.
            let h = Scalar::from_bytes_mod_order_wide(
                &Sha512::new()
                    .chain_update(r)
                    .chain_update(key.verifying_key().as_bytes())
                    .chain_update(message)
                    .finalize()
                    .into(),
            );
            let mut sig = [0u8; 64];
            sig[..32].copy_from_slice(&r);
            sig[32..].copy_from_slice((h * a).as_bytes());
            Ed25519Check::new(key.verifying_key(), &sig, message.to_vec())
        };
        let identity = EIGHT_TORSION[0].compress().to_bytes();
        let mut identity_sign = identity;
        identity_sign[31] |= 0x80;
        // y = p + 1: the identity, encoded non-canonically.
        let mut identity_wide = [0xff; 32];
        identity_wide[0] = 0xee;
        identity_wide[31] = 0x7f;
        for r in [identity, identity_sign, identity_wide] {
            let odd = holder_signs(r, b"timestamp=1&quantity=1");
            assert!(odd.verify().is_none(), "verify_strict refuses it");
            let good: Vec<Ed25519Check> = (0..5).map(|i| check(&key, format!("timestamp={i}").as_bytes())).collect();
            let mut all = good.clone();
            all.insert(2, odd.clone());
            assert!(verify_batch(&all.iter().collect::<Vec<_>>()), "a batch's equation alone accepts {r:?}");
            let verdicts = verify_all(&all);
            assert_eq!(verdicts.iter().filter(|v| v.is_some()).count(), 5, "{r:?}");
            assert!(verdicts[2].is_none(), "{r:?}");
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
