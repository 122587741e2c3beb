//! Invite codes for `serve --signup invite` (issue #18): the format and the one hash the store
//! keeps.
//!
//! A code is `kginv_` + 27 base62 characters: 160 random bits, so its SHA-256 (salted by a fixed
//! label only) cannot be reversed by trying codes, and a copy of the database redeems nothing. The
//! prefix lets a person (and `keygate scan`-style tools) recognise what was pasted.

use crate::base62::{is_base62, push_random};
use crate::entropy::{Entropy, EntropyError};
use sha2::{Digest as _, Sha256};
use zeroize::Zeroizing;

/// Prefix of every invite code.
pub const INVITE_PREFIX: &str = "kginv_";
/// Random base62 characters in an invite code: 27 carry 160.76 bits.
pub const INVITE_RANDOM_LEN: usize = 27;
/// Total length of an invite code.
pub const INVITE_LEN: usize = INVITE_PREFIX.len() + INVITE_RANDOM_LEN;

/// A new random invite code, shown once to the operator who made it.
///
/// # Errors
/// [`EntropyError`] if no randomness is available.
pub fn generate_invite_code(entropy: &mut dyn Entropy) -> Result<Zeroizing<String>, EntropyError> {
    let mut s = Zeroizing::new(String::with_capacity(INVITE_LEN));
    s.push_str(INVITE_PREFIX);
    push_random(entropy, INVITE_RANDOM_LEN, &mut s)?;
    Ok(s)
}

/// The SHA-256 the store keeps for a typed code (surrounding spaces ignored), or `None` if the
/// text cannot be an invite code, so a typo is refused without a store lookup.
#[must_use]
pub fn hash_invite_code(typed: &str) -> Option<[u8; 32]> {
    let code = typed.trim();
    let ok = code.len() == INVITE_LEN
        && code.starts_with(INVITE_PREFIX)
        && code.as_bytes()[INVITE_PREFIX.len()..].iter().all(|&b| is_base62(b));
    if !ok {
        return None;
    }
    let mut h = Sha256::new();
    h.update(b"keygate/invite/v1|");
    h.update(code.as_bytes());
    Some(h.finalize().into())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

    use super::*;

    struct Counter(u8);
    impl Entropy for Counter {
        fn fill(&mut self, dest: &mut [u8]) -> Result<(), EntropyError> {
            for b in dest {
                self.0 = self.0.wrapping_add(41);
                *b = self.0;
            }
            Ok(())
        }
    }

    #[test]
    fn invite_codes_hash_back_and_malformed_ones_are_refused() {
        let a = generate_invite_code(&mut Counter(0)).unwrap();
        let b = generate_invite_code(&mut Counter(1)).unwrap();
        assert_eq!(a.len(), INVITE_LEN);
        assert!(a.starts_with(INVITE_PREFIX));
        assert_ne!(a, b);
        let h = hash_invite_code(&a).unwrap();
        assert_eq!(hash_invite_code(&format!("  {}\n", a.as_str())), Some(h), "spaces around a paste are ignored");
        assert_ne!(hash_invite_code(&b), Some(h));
        for bad in ["", "kginv_", &a[1..], &format!("{}x", a.as_str()), &a.replace("kginv_", "kgsess")] {
            assert_eq!(hash_invite_code(bad), None, "{bad:?}");
        }
        let mut dash = a.to_string();
        dash.replace_range(10..11, "-");
        assert_eq!(hash_invite_code(&dash), None);
    }
}
