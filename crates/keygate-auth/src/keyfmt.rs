//! API key identifiers (`kg_…`) and HMAC secrets (`kgs_…`).
//!
//! Both carry a fixed prefix, base62 randomness and a six-character CRC32 checksum over prefix and
//! randomness. The checksum lets the verifier refuse a mistyped or invented key id before any
//! lookup, and lets a secret scanner recognise a leaked secret offline, as GitHub's token format
//! does. Checksums detect accidents; they are not a security boundary (anyone can compute one).

use crate::base62::{checksum6, is_base62, push_random};
use crate::entropy::{Entropy, EntropyError};
use std::fmt;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// Prefix of every API key id.
pub const KEY_PREFIX: &str = "kg_";
/// Random characters in a key id (about 190 bits).
pub const KEY_RANDOM_LEN: usize = 32;
/// Prefix of every HMAC secret.
pub const SECRET_PREFIX: &str = "kgs_";
/// Random characters in a secret: 43 base62 characters carry 256.03 bits.
pub const SECRET_RANDOM_LEN: usize = 43;
const CHECKSUM_LEN: usize = 6;

/// Total length of a key id.
pub const KEY_LEN: usize = KEY_PREFIX.len() + KEY_RANDOM_LEN + CHECKSUM_LEN;
/// Total length of a secret.
pub const SECRET_LEN: usize = SECRET_PREFIX.len() + SECRET_RANDOM_LEN + CHECKSUM_LEN;

/// Why a key id or secret text was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyFormatError {
    /// Wrong prefix, length or character set.
    #[error("not a keygate {0}: expected {1}")]
    Shape(&'static str, &'static str),
    /// The checksum does not match: a typo or a made-up value.
    #[error("the {0} checksum does not match (mistyped or truncated?)")]
    Checksum(&'static str),
}

fn check(
    text: &[u8],
    prefix: &str,
    random_len: usize,
    what: &'static str,
    shape: &'static str,
) -> Result<(), KeyFormatError> {
    let total = prefix.len() + random_len + CHECKSUM_LEN;
    if text.len() != total
        || !text.starts_with(prefix.as_bytes())
        || !text[prefix.len()..].iter().all(|&b| is_base62(b))
    {
        return Err(KeyFormatError::Shape(what, shape));
    }
    let (body, sum) = text.split_at(total - CHECKSUM_LEN);
    if checksum6(body) != sum {
        return Err(KeyFormatError::Checksum(what));
    }
    Ok(())
}

fn generate(prefix: &str, random_len: usize, entropy: &mut dyn Entropy) -> Result<String, EntropyError> {
    let mut s = String::with_capacity(prefix.len() + random_len + CHECKSUM_LEN);
    s.push_str(prefix);
    push_random(entropy, random_len, &mut s)?;
    let sum = checksum6(s.as_bytes());
    s.extend(sum.iter().map(|&b| char::from(b)));
    Ok(s)
}

/// An API key id: `kg_` + 32 base62 + 6-character checksum. Public: it identifies, never signs.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ApiKeyId(String);

impl ApiKeyId {
    /// Checks the shape and checksum of `text` without allocating.
    ///
    /// # Errors
    /// [`KeyFormatError`] when the prefix, length, alphabet or checksum is wrong.
    pub fn check(text: &[u8]) -> Result<(), KeyFormatError> {
        check(text, KEY_PREFIX, KEY_RANDOM_LEN, "API key", "kg_ followed by 38 letters and digits")
    }

    /// Parses a key id.
    ///
    /// # Errors
    /// As [`ApiKeyId::check`].
    pub fn parse(text: &str) -> Result<Self, KeyFormatError> {
        Self::check(text.as_bytes())?;
        Ok(Self(text.to_owned()))
    }

    /// A fresh random key id.
    ///
    /// # Errors
    /// [`EntropyError`] if the entropy source fails.
    pub fn generate(entropy: &mut dyn Entropy) -> Result<Self, EntropyError> {
        generate(KEY_PREFIX, KEY_RANDOM_LEN, entropy).map(Self)
    }

    /// The full id.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The first characters, enough to recognise a key in a list without printing all of it.
    #[must_use]
    pub fn prefix(&self) -> &str {
        &self.0[..KEY_PREFIX.len() + 8]
    }
}

impl fmt::Debug for ApiKeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for ApiKeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::borrow::Borrow<str> for ApiKeyId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for ApiKeyId {
    type Error = KeyFormatError;
    fn try_from(s: String) -> Result<Self, KeyFormatError> {
        Self::check(s.as_bytes())?;
        Ok(Self(s))
    }
}

impl From<ApiKeyId> for String {
    fn from(k: ApiKeyId) -> String {
        k.0
    }
}

/// An HMAC secret: `kgs_` + 43 base62 (>= 256 bits) + 6-character checksum.
///
/// Its ASCII bytes are the HMAC key, exactly as Binance clients use the secret string. Zeroized
/// on drop; `Debug` never prints it. Shown to its owner once, at creation.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct HmacSecret(String);

impl HmacSecret {
    /// Checks the shape and checksum of a secret.
    ///
    /// # Errors
    /// [`KeyFormatError`] when the prefix, length, alphabet or checksum is wrong.
    pub fn check(text: &[u8]) -> Result<(), KeyFormatError> {
        check(text, SECRET_PREFIX, SECRET_RANDOM_LEN, "HMAC secret", "kgs_ followed by 49 letters and digits")
    }

    /// Wraps secret text after checking it.
    ///
    /// # Errors
    /// As [`HmacSecret::check`].
    pub fn parse(text: String) -> Result<Self, KeyFormatError> {
        let s = Self(text);
        Self::check(s.0.as_bytes())?;
        Ok(s)
    }

    /// A fresh random secret.
    ///
    /// # Errors
    /// [`EntropyError`] if the entropy source fails.
    pub fn generate(entropy: &mut dyn Entropy) -> Result<Self, EntropyError> {
        generate(SECRET_PREFIX, SECRET_RANDOM_LEN, entropy).map(Self)
    }

    /// The secret text. Every call site is a place the secret leaves this wrapper: keep them few.
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for HmacSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HmacSecret(<hidden>)")
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A deterministic entropy source for tests: a counter stream (never use outside tests).
    pub(crate) struct CountingEntropy(pub u8);
    impl Entropy for CountingEntropy {
        fn fill(&mut self, dest: &mut [u8]) -> Result<(), EntropyError> {
            for b in dest {
                *b = self.0;
                self.0 = self.0.wrapping_add(37);
            }
            Ok(())
        }
    }

    #[test]
    fn generated_ids_and_secrets_pass_their_own_checks() {
        let mut e = CountingEntropy(1);
        let id = ApiKeyId::generate(&mut e).unwrap();
        assert_eq!(id.as_str().len(), KEY_LEN);
        assert!(ApiKeyId::parse(id.as_str()).is_ok());
        let secret = HmacSecret::generate(&mut e).unwrap();
        assert_eq!(secret.expose().len(), SECRET_LEN);
        assert!(HmacSecret::check(secret.expose().as_bytes()).is_ok());
        // A secret is never a key id and vice versa.
        assert!(ApiKeyId::check(secret.expose().as_bytes()).is_err());
    }

    #[test]
    fn a_single_changed_character_fails_the_checksum() {
        let id = ApiKeyId::generate(&mut CountingEntropy(9)).unwrap();
        let mut bytes = id.as_str().as_bytes().to_vec();
        bytes[10] = if bytes[10] == b'a' { b'b' } else { b'a' };
        assert_eq!(ApiKeyId::check(&bytes), Err(KeyFormatError::Checksum("API key")));
    }

    #[test]
    fn secret_debug_output_hides_the_secret() {
        let s = HmacSecret::generate(&mut CountingEntropy(3)).unwrap();
        assert!(!format!("{s:?}").contains(&s.expose()[4..12]));
    }

    #[test]
    fn refuses_binance_style_keys_and_garbage() {
        assert!(ApiKeyId::check(b"vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A").is_err());
        assert!(ApiKeyId::check(b"").is_err());
        assert!(ApiKeyId::check("kg_ééééééééééééééééééééééééééééééééééééé".as_bytes()).is_err());
    }
}
