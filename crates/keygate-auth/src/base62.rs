//! Base62 text (`0-9A-Za-z`) for key material and checksums, as GitHub's token format uses.

use crate::entropy::{Entropy, EntropyError};

/// The alphabet, in the order GitHub's checksums use.
pub const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// True if and only if `b` is one of the 62 alphabet bytes.
#[must_use]
pub fn is_base62(b: u8) -> bool {
    b.is_ascii_alphanumeric()
}

/// Appends `n` uniformly random alphabet characters to `out`.
///
/// Rejection sampling (bytes >= 248 are discarded) keeps every character uniform, so `n`
/// characters carry `n * log2(62)` bits.
///
/// # Errors
/// [`EntropyError`] if the entropy source fails.
pub fn push_random(entropy: &mut dyn Entropy, n: usize, out: &mut String) -> Result<(), EntropyError> {
    let mut buf = [0u8; 64];
    let mut left = n;
    while left > 0 {
        entropy.fill(&mut buf)?;
        for &b in &buf {
            if left == 0 {
                break;
            }
            if b < 248 {
                out.push(char::from(ALPHABET[usize::from(b % 62)]));
                left -= 1;
            }
        }
    }
    Ok(())
}

/// The six-character checksum of `data`: CRC32, base62, left-padded with `0`.
#[must_use]
pub fn checksum6(data: &[u8]) -> [u8; 6] {
    let mut v = crc32fast::hash(data);
    let mut out = [b'0'; 6];
    for slot in out.iter_mut().rev() {
        *slot = ALPHABET[(v % 62) as usize];
        v /= 62;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_is_six_alphabet_characters_and_depends_on_every_byte() {
        let a = checksum6(b"kg_abc");
        let b = checksum6(b"kg_abd");
        assert!(a.iter().all(|&c| is_base62(c)));
        assert_ne!(a, b);
    }
}
