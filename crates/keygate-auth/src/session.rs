//! Console session ids and one-time recovery codes: formats, hashing and CSRF tokens.
//!
//! A session id is 256 random bits the browser holds in a cookie; the store keeps only its
//! SHA-256, so a copy of the database cannot be replayed as a login. The CSRF token of a session
//! is derived from the id (HMAC-SHA256 keyed by the id, over a fixed label), so nothing more is
//! stored, the token changes whenever the id rotates, and knowing a CSRF token reveals nothing
//! about the id (OWASP's "signed double-submit" pattern, with the unguessable id as key).
//!
//! Recovery codes carry 80 random bits: enough that their stored SHA-256 cannot be reversed by
//! brute force, short enough to type (`xxxx-xxxx-xxxx-xxxx`, lowercase base32 without `0 1 8 9`
//! look-alikes' ambiguity: RFC 4648's alphabet).

use crate::base62::{is_base62, push_random};
use crate::entropy::{Entropy, EntropyError};
use hmac::{Hmac, KeyInit as _, Mac as _};
use sha2::{Digest as _, Sha256};
use std::fmt;
use subtle::ConstantTimeEq as _;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

/// Prefix of every session id.
pub const SESSION_PREFIX: &str = "kgsess_";
/// Random base62 characters in a session id: 43 carry 256.03 bits.
pub const SESSION_RANDOM_LEN: usize = 43;
/// Total length of a session id.
pub const SESSION_LEN: usize = SESSION_PREFIX.len() + SESSION_RANDOM_LEN;

const CSRF_LABEL: &[u8] = b"keygate/csrf/v1";

/// A session id as the browser presents it was malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a keygate session id")]
pub struct SessionTokenError;

/// The browser's session id: `kgsess_` + 43 base62 characters (256 random bits). Zeroized on
/// drop; `Debug` prints `<hidden>`.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct SessionToken(String);

impl fmt::Debug for SessionToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionToken(<hidden>)")
    }
}

impl SessionToken {
    /// A new random session id.
    ///
    /// # Errors
    /// [`EntropyError`] if no randomness is available.
    pub fn generate(entropy: &mut dyn Entropy) -> Result<Self, EntropyError> {
        let mut s = String::with_capacity(SESSION_LEN);
        s.push_str(SESSION_PREFIX);
        push_random(entropy, SESSION_RANDOM_LEN, &mut s)?;
        Ok(Self(s))
    }

    /// Parses what the browser sent (the cookie value), refusing a malformed id before any
    /// store lookup.
    ///
    /// # Errors
    /// [`SessionTokenError`] for a wrong prefix, length or character.
    pub fn parse(text: &str) -> Result<Self, SessionTokenError> {
        let ok = text.len() == SESSION_LEN
            && text.starts_with(SESSION_PREFIX)
            && text.as_bytes()[SESSION_PREFIX.len()..].iter().all(|&b| is_base62(b));
        if ok { Ok(Self(text.to_owned())) } else { Err(SessionTokenError) }
    }

    /// The cookie value: the one way the id leaves the process, into `Set-Cookie`.
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// SHA-256 of the id: the only form the store ever sees.
    #[must_use]
    pub fn hash(&self) -> [u8; 32] {
        Sha256::digest(self.0.as_bytes()).into()
    }

    /// The CSRF token bound to this session: HMAC-SHA256 keyed by the id over a fixed label, in
    /// lowercase hex. It changes whenever the session id rotates.
    #[must_use]
    pub fn csrf_token(&self) -> String {
        hex::encode(self.csrf_bytes().as_slice())
    }

    /// True if and only if `presented` is this session's CSRF token (constant-time comparison).
    #[must_use]
    pub fn check_csrf(&self, presented: &str) -> bool {
        let mut raw = Zeroizing::new([0u8; 32]);
        if presented.len() != 64 || hex::decode_to_slice(presented, raw.as_mut_slice()).is_err() {
            return false;
        }
        bool::from(self.csrf_bytes().as_slice().ct_eq(raw.as_slice()))
    }

    fn csrf_bytes(&self) -> Zeroizing<[u8; 32]> {
        let mut out = Zeroizing::new([0u8; 32]);
        // HMAC accepts keys of any length, so this cannot fail; an empty tag would only make
        // every CSRF check fail, never pass.
        if let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(self.0.as_bytes()) {
            mac.update(CSRF_LABEL);
            out.copy_from_slice(&mac.finalize().into_bytes());
        }
        out
    }
}

/// Crockford's base32 alphabet, lowercase: no `i`, `l`, `o` or `u`, so no code holds a letter
/// that reads like a digit (`l`/`1`, `o`/`0`) on paper or in a typewriter font (issue #18).
const CODE_ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";
/// The alphabet of recovery codes issued before issue #18 (RFC 4648 base32, lowercase): codes
/// already printed keep working ([`normalize_legacy_recovery_code`]).
const LEGACY_CODE_ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
/// Characters in a recovery code, without separators: 16 x 5 bits = 80 bits.
pub const RECOVERY_CODE_CHARS: usize = 16;

/// A new recovery code, `xxxx-xxxx-xxxx-xxxx` (80 random bits) in Crockford's base32: digits and
/// lowercase letters without `i`, `l`, `o`, `u`.
///
/// # Errors
/// [`EntropyError`] if no randomness is available.
pub fn generate_recovery_code(entropy: &mut dyn Entropy) -> Result<Zeroizing<String>, EntropyError> {
    let mut raw = Zeroizing::new([0u8; RECOVERY_CODE_CHARS]);
    entropy.fill(raw.as_mut_slice())?;
    let mut s = Zeroizing::new(String::with_capacity(RECOVERY_CODE_CHARS + 3));
    for (i, b) in raw.iter().enumerate() {
        if i > 0 && i % 4 == 0 {
            s.push('-');
        }
        // 256 is a multiple of 32: every character stays uniform.
        s.push(char::from(CODE_ALPHABET[usize::from(b % 32)]));
    }
    Ok(s)
}

/// The canonical form of a typed recovery code (lowercase, separators and spaces dropped, and,
/// as Crockford's decoding does, `o` read as `0` and `i`/`l` as `1`), or `None` if it cannot be
/// one.
#[must_use]
pub fn normalize_recovery_code(typed: &str) -> Option<Zeroizing<String>> {
    let s: Zeroizing<String> = Zeroizing::new(
        typed
            .chars()
            .filter(|c| !matches!(c, '-' | ' '))
            .map(|c| match c.to_ascii_lowercase() {
                'o' => '0',
                'i' | 'l' => '1',
                other => other,
            })
            .collect(),
    );
    (s.len() == RECOVERY_CODE_CHARS && s.bytes().all(|b| CODE_ALPHABET.contains(&b))).then_some(s)
}

/// The canonical form of a recovery code issued before issue #18 (RFC 4648 base32), or `None`.
/// Checked after [`normalize_recovery_code`] so that such codes keep working.
#[must_use]
pub fn normalize_legacy_recovery_code(typed: &str) -> Option<Zeroizing<String>> {
    let s: Zeroizing<String> =
        Zeroizing::new(typed.chars().filter(|c| !matches!(c, '-' | ' ')).map(|c| c.to_ascii_lowercase()).collect());
    (s.len() == RECOVERY_CODE_CHARS && s.bytes().all(|b| LEGACY_CODE_ALPHABET.contains(&b))).then_some(s)
}

/// SHA-256 of a recovery code in canonical form ([`normalize_recovery_code`]): what the store keeps.
#[must_use]
pub fn hash_recovery_code(canonical: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"keygate/recovery-code/v1|");
    h.update(canonical.as_bytes());
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

    use super::*;

    struct Counter(u8);
    impl Entropy for Counter {
        fn fill(&mut self, dest: &mut [u8]) -> Result<(), EntropyError> {
            for b in dest {
                self.0 = self.0.wrapping_add(37);
                *b = self.0;
            }
            Ok(())
        }
    }

    #[test]
    fn session_ids_parse_back_and_malformed_ones_are_refused() {
        let t = SessionToken::generate(&mut Counter(0)).unwrap();
        assert_eq!(t.expose().len(), SESSION_LEN);
        assert_eq!(SessionToken::parse(t.expose()).unwrap(), t);
        for bad in ["", "kgsess_", &t.expose()[..SESSION_LEN - 1], &t.expose().replace("kgsess_", "kgsesx_")] {
            assert!(SessionToken::parse(bad).is_err(), "{bad}");
        }
        let mut with_dash = t.expose().to_owned();
        with_dash.replace_range(SESSION_LEN - 1.., "-");
        assert!(SessionToken::parse(&with_dash).is_err());
        assert_eq!(format!("{t:?}"), "SessionToken(<hidden>)");
    }

    #[test]
    fn csrf_token_belongs_to_one_session_and_is_not_its_hash() {
        let a = SessionToken::generate(&mut Counter(0)).unwrap();
        let b = SessionToken::generate(&mut Counter(1)).unwrap();
        assert!(a.check_csrf(&a.csrf_token()));
        assert!(!a.check_csrf(&b.csrf_token()));
        assert!(!a.check_csrf(""));
        assert!(!a.check_csrf(&a.csrf_token().to_uppercase().replace('A', "Z")));
        assert_ne!(a.csrf_token(), hex::encode(a.hash()));
    }

    #[test]
    fn recovery_codes_normalize_and_hash_stably() {
        let c = generate_recovery_code(&mut Counter(3)).unwrap();
        assert_eq!(c.len(), 19);
        let canon = normalize_recovery_code(&c.to_uppercase()).unwrap();
        assert_eq!(*canon, c.replace('-', ""));
        assert_eq!(hash_recovery_code(&canon), hash_recovery_code(&normalize_recovery_code(&c).unwrap()));
        assert!(normalize_recovery_code("123456").is_none());
        assert!(normalize_recovery_code("abcd-efgh-jkmn-pqru").is_none(), "u is no code character");
    }

    #[test]
    fn recovery_codes_hold_no_letter_that_reads_like_a_digit_and_typed_ones_are_forgiven() {
        for seed in 0..=255 {
            let c = generate_recovery_code(&mut Counter(seed)).unwrap();
            assert!(!c.contains(['i', 'l', 'o', 'u']), "{}", &*c);
        }
        // Read off paper: `O` for 0 and `l`/`I` for 1 give the same code.
        let typed = normalize_recovery_code("OOlI-2345-6789-abcd").unwrap();
        assert_eq!(*typed, "00112345".to_owned() + "6789abcd");
        // Codes printed before keep their meaning.
        let legacy = normalize_legacy_recovery_code("lmno-pqrs-tuvw-xyz2").unwrap();
        assert_eq!(*legacy, "lmnopqrstuvwxyz2");
        assert!(normalize_legacy_recovery_code("0000-0000-0000-0000").is_none());
    }
}
