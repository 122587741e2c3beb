//! Target `scan`: `keygate_auth::scan::find`, which reads arbitrary files for `keygate scan`.
//!
//! The first byte picks a part.
//!
//! * Raw text: never panics; the findings are in order, in bounds and do not overlap; each is a
//!   key id or secret that passes its check, preceded by no letter, digit or `_` and followed by
//!   no letter or digit; and they are exactly what a plain model finds by trying every position.
//! * Planted: a valid key id or secret built from fuzz bytes, put at a fuzz position of fuzz text
//!   between two separators, is always among the findings, with its kind and place.

use crate::Input;
use keygate_auth::base62::{ALPHABET, checksum6, is_base62};
use keygate_auth::keyfmt::{KEY_LEN, KEY_PREFIX, SECRET_LEN, SECRET_PREFIX};
use keygate_auth::scan::{Found, FoundKind, find};
use keygate_auth::{ApiKeyId, HmacSecret};

/// Runs the target on one input.
pub fn run(data: &[u8]) {
    let mut input = Input::new(data);
    if input.byte().is_multiple_of(2) {
        raw(input.rest());
    } else {
        planted(&mut input);
    }
}

/// What a scan must find, by brute force: every position that starts a valid credential on a
/// word boundary.
fn model(text: &[u8]) -> Vec<Found> {
    let mut out = Vec::new();
    for at in 0..text.len() {
        if at > 0 && (is_base62(text[at - 1]) || text[at - 1] == b'_') {
            continue;
        }
        for (kind, prefix, len) in
            [(FoundKind::Secret, SECRET_PREFIX, SECRET_LEN), (FoundKind::KeyId, KEY_PREFIX, KEY_LEN)]
        {
            let Some(candidate) = text.get(at..at + len) else { continue };
            if !candidate.starts_with(prefix.as_bytes()) || text.get(at + len).copied().is_some_and(is_base62) {
                continue;
            }
            let ok = match kind {
                FoundKind::Secret => HmacSecret::check(candidate).is_ok(),
                FoundKind::KeyId => ApiKeyId::check(candidate).is_ok(),
            };
            if ok {
                out.push(Found { kind, offset: at, len });
            }
        }
    }
    out
}

fn raw(text: &[u8]) {
    let found = find(text);
    let mut end = 0;
    for f in &found {
        assert!(f.offset >= end, "findings overlap or are out of order: {found:?}");
        end = f.offset + f.len;
        assert!(end <= text.len());
    }
    assert_eq!(found, model(text), "the scan and the model disagree");
}

fn planted(input: &mut Input<'_>) {
    let secret = input.bool();
    let (prefix, len) = if secret { (SECRET_PREFIX, SECRET_LEN) } else { (KEY_PREFIX, KEY_LEN) };
    let mut token = prefix.as_bytes().to_vec();
    while token.len() < len - 6 {
        token.push(ALPHABET[usize::from(input.byte()) % ALPHABET.len()]);
    }
    let sum = checksum6(&token);
    token.extend_from_slice(&sum);
    let mut text = input.rest().to_vec();
    let at = if text.is_empty() { 0 } else { usize::from(text[0]) % (text.len() + 1) };
    let mut planted = b"\n".to_vec();
    planted.extend_from_slice(&token);
    planted.push(b' ');
    text.splice(at..at, planted);
    let kind = if secret { FoundKind::Secret } else { FoundKind::KeyId };
    let found = find(&text);
    assert!(
        found.contains(&Found { kind, offset: at + 1, len }),
        "planted {kind:?} at {} not found in {found:?}",
        at + 1
    );
    raw(&text);
}
