//! Target `ed25519_batch`: `keygate_auth::ed25519_batch::verify_all`, which checks the Ed25519
//! signatures of concurrent requests together.
//!
//! The fuzzer builds a batch of 1 to 12 checks, each by one of three keys over a message of its
//! choosing, signed properly and then left alone, given one flipped bit (in `R`, `s` or the
//! message), replaced by 64 bytes of its choosing, signed by another key, or made as only the key's
//! holder can: an `R` of small order or encoded non-canonically, with `s` solving the
//! cofactorless equation (which a batch's equation alone would accept). Property: every verdict
//! equals that of checking the signature alone with `verify_strict`, and names its own signature.

use crate::Input;
use ed25519_dalek::{Signer as _, SigningKey};
use keygate_auth::ed25519_batch::{Ed25519Check, verify_all};
use sha2::{Digest as _, Sha512};

/// Runs the target on one input.
pub fn run(data: &[u8]) {
    let mut input = Input::new(data);
    let keys: [SigningKey; 3] = [1u8, 2, 3].map(|s| SigningKey::from_bytes(&[s; 32]));
    let n = 1 + input.below(12) as usize;
    let mut checks = Vec::with_capacity(n);
    for _ in 0..n {
        let k = input.below(3) as usize;
        let key = &keys[k];
        let mut message = input.bytes(64).to_vec();
        let mut sig = key.sign(&message).to_bytes();
        let mut verifying = key.verifying_key();
        match input.byte() % 6 {
            0 | 1 => {}
            2 => {
                let bit = input.below(512 + 8 * message.len() as u64) as usize;
                match sig.get_mut(bit / 8) {
                    Some(b) => *b ^= 1 << (bit % 8),
                    None => {
                        if let Some(b) = message.get_mut(bit / 8 - 64) {
                            *b ^= 1 << (bit % 8);
                        }
                    }
                }
            }
            3 => sig = input.array(),
            4 => verifying = keys[(k + 1 + input.below(2) as usize) % 3].verifying_key(),
            _ => sig = holder_made(key, input.byte(), &message),
        }
        checks.push(Ed25519Check::new(verifying, &sig, message));
    }
    let verdicts = verify_all(&checks);
    assert_eq!(verdicts.len(), checks.len());
    for (i, (verdict, check)) in verdicts.iter().zip(&checks).enumerate() {
        assert_eq!(*verdict, check.verify(), "check {i} of {n}: the batch and verify_strict disagree");
    }
}

/// A signature only `key`'s holder can make, with an `R` that `verify_strict` refuses: the
/// identity (as encoded canonically, with the sign bit set, or as y = p + 1) or another point of
/// small order, and `s = H(R || A || M) * a`, which satisfies the cofactorless equation when `R`
/// is the identity.
fn holder_made(key: &SigningKey, which: u8, message: &[u8]) -> [u8; 64] {
    let mut r = [0u8; 32];
    match which % 4 {
        0 => r[0] = 1,
        1 => {
            r[0] = 1;
            r[31] = 0x80;
        }
        2 => {
            r = [0xff; 32];
            r[0] = 0xee;
            r[31] = 0x7f;
        }
        // y = 0: a point of order 4.
        _ => {}
    }
    let h = curve25519_dalek::scalar::Scalar::from_bytes_mod_order_wide(
        &Sha512::new()
            .chain_update(r)
            .chain_update(key.verifying_key().as_bytes())
            .chain_update(message)
            .finalize()
            .into(),
    );
    let mut sig = [0u8; 64];
    sig[..32].copy_from_slice(&r);
    sig[32..].copy_from_slice((h * key.to_scalar()).as_bytes());
    sig
}
