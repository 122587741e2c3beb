//! Finding keygate credentials in arbitrary text: the heart of `keygate scan`, for pre-commit hooks,
//! CI jobs and leak response.
//!
//! A candidate is a `kg_` or `kgs_` prefix that does not continue a longer word, followed by
//! exactly the number of base62 characters its kind has (not one more). It is reported only if its
//! 6-character checksum matches, so random text, hashes and look-alikes are never reported: a
//! random candidate passes the checksum with probability 62^-6 (about 1 in 57 billion).

use crate::base62::is_base62;
use crate::keyfmt::{ApiKeyId, HmacSecret, KEY_LEN, KEY_PREFIX, SECRET_LEN, SECRET_PREFIX};

/// What was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FoundKind {
    /// An HMAC secret (`kgs_...`): whoever holds it can sign as the key. Revoke the key.
    Secret,
    /// An API key id (`kg_...`): it identifies, never signs; worth knowing where it is written.
    KeyId,
}

impl FoundKind {
    /// A stable word for output.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Secret => "secret",
            Self::KeyId => "key_id",
        }
    }
}

/// One credential found in a text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Found {
    /// Secret or key id.
    pub kind: FoundKind,
    /// Byte offset of its first character.
    pub offset: usize,
    /// Its length in bytes.
    pub len: usize,
}

/// Every valid keygate credential in `text`, in order of position.
#[must_use]
pub fn find(text: &[u8]) -> Vec<Found> {
    let mut out = Vec::new();
    // Both prefixes start with `kg`; one pass over its occurrences finds both.
    for at in memchr::memmem::find_iter(text, b"kg") {
        // Not the middle of a longer word (`xkg_...`).
        if at > 0 && text.get(at - 1).copied().is_some_and(|b| is_base62(b) || b == b'_') {
            continue;
        }
        let rest = &text[at..];
        let (kind, len) = if rest.starts_with(SECRET_PREFIX.as_bytes()) {
            (FoundKind::Secret, SECRET_LEN)
        } else if rest.starts_with(KEY_PREFIX.as_bytes()) {
            (FoundKind::KeyId, KEY_LEN)
        } else {
            continue;
        };
        let Some(candidate) = rest.get(..len) else { continue };
        // Exactly that long: a longer run of letters and digits is something else.
        if rest.get(len).copied().is_some_and(is_base62) {
            continue;
        }
        let valid = match kind {
            FoundKind::Secret => HmacSecret::check(candidate).is_ok(),
            FoundKind::KeyId => ApiKeyId::check(candidate).is_ok(),
        };
        if valid {
            out.push(Found { kind, offset: at, len });
        }
    }
    out
}

/// How a finding may be shown: a key id in full (it is public), a secret by its first eight
/// characters only, so a report of a leak does not leak it again.
#[must_use]
pub fn redacted(text: &[u8], found: Found) -> String {
    let raw = text.get(found.offset..found.offset + found.len).unwrap_or_default();
    let shown = match found.kind {
        FoundKind::KeyId => raw,
        FoundKind::Secret => raw.get(..8).unwrap_or(raw),
    };
    let mut s = String::from_utf8_lossy(shown).into_owned();
    if found.kind == FoundKind::Secret {
        s.push_str("...");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Entropy;

    /// A deterministic generator (SplitMix64), so failures reproduce.
    struct Seq(u64);
    impl Seq {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }
    }
    impl Entropy for Seq {
        fn fill(&mut self, buf: &mut [u8]) -> Result<(), crate::EntropyError> {
            for b in buf {
                *b = self.next() as u8;
            }
            Ok(())
        }
    }

    #[test]
    fn finds_planted_secrets_and_ids_wherever_they_stand_and_shows_secrets_redacted() {
        let mut e = Seq(1);
        let secret = HmacSecret::generate(&mut e).unwrap();
        let id = ApiKeyId::generate(&mut e).unwrap();
        let (s, i) = (secret.expose(), id.as_str());
        let text = format!(
            "{s}\nexport KEYGATE_SECRET=\"{s}\"\napi_key: {i}\n{{\"secret\":\"{s}\",\"api_key\":\"{i}\"}}\nurl?k={i}&s={s}"
        );
        let found = find(text.as_bytes());
        let kinds: Vec<_> = found.iter().map(|f| f.kind).collect();
        use FoundKind::{KeyId, Secret};
        assert_eq!(kinds, [Secret, Secret, KeyId, Secret, KeyId, KeyId, Secret]);
        for f in &found {
            let raw = &text.as_bytes()[f.offset..f.offset + f.len];
            assert!(raw == s.as_bytes() || raw == i.as_bytes());
        }
        let shown = redacted(text.as_bytes(), found[0]);
        assert_eq!(shown, format!("{}...", &s[..8]));
        assert!(!shown.contains(&s[8..]));
        assert_eq!(redacted(text.as_bytes(), found[2]), i);
    }

    #[test]
    fn look_alikes_are_not_reported() {
        let mut e = Seq(2);
        let s = HmacSecret::generate(&mut e).unwrap().expose().to_owned();
        let i = ApiKeyId::generate(&mut e).unwrap().as_str().to_owned();
        let mut typo = s.clone().into_bytes();
        typo[10] = if typo[10] == b'a' { b'b' } else { b'a' };
        let typo = String::from_utf8(typo).unwrap();
        for text in [
            typo.as_str(),     // checksum no longer matches
            &s[..s.len() - 1], // one short
            &format!("{s}x"),  // one too many: another token
            &format!("x{s}"),  // the end of a longer word
            &format!("_{i}"),  // likewise
            &i[..i.len() - 1],
            "kg_",
            "kgs_",
            "kg",
            "kgs_!!!!",
            "",
        ] {
            assert!(find(text.as_bytes()).is_empty(), "{text:?}");
        }
    }

    #[test]
    fn ten_megabytes_of_random_text_hold_no_false_positive() {
        // Random bytes, random letters and digits, and many `kg_`/`kgs_` prefixes followed by
        // random base62 of exactly the right length: only the checksum can tell them apart.
        let mut r = Seq(3);
        let mut text = Vec::with_capacity(10 << 20);
        while text.len() < 10 << 20 {
            match r.next() % 4 {
                0 => text.extend((0..64).map(|_| r.next() as u8)),
                1 => text.extend((0..64).map(|_| crate::base62::ALPHABET[(r.next() % 62) as usize])),
                _ => {
                    let (prefix, n) =
                        if r.next().is_multiple_of(2) { ("kgs_", SECRET_LEN - 4) } else { ("kg_", KEY_LEN - 3) };
                    text.push(b' ');
                    text.extend_from_slice(prefix.as_bytes());
                    text.extend((0..n).map(|_| crate::base62::ALPHABET[(r.next() % 62) as usize]));
                    text.push(b'\n');
                }
            }
        }
        assert_eq!(find(&text), Vec::new());
    }
}
