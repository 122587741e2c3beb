//! `X-Request-Id` on every response: the caller's own if well-formed, else a fresh one.
//!
//! A fresh id is 32 hex digits: a random 64-bit prefix drawn once per server, then a counter. It
//! only has to be unique (it ties an answer to its access line), not secret, so it costs an
//! atomic increment instead of a `getrandom` system call per request, and distinct servers (or
//! restarts) still never repeat one another's ids.

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use std::sync::atomic::{AtomicU64, Ordering};

/// The header name (a `HeaderName`, not a `&str`, so no lookup parses and lowercases it anew).
pub const HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// Makes the ids of one server.
#[derive(Debug)]
pub struct RequestIds {
    prefix: u64,
    next: AtomicU64,
}

impl Default for RequestIds {
    fn default() -> Self {
        let mut b = [0u8; 8];
        // Without randomness the ids are still unique within this server; never fail to start.
        let _ = getrandom::getrandom(&mut b);
        Self { prefix: u64::from_le_bytes(b), next: AtomicU64::new(0) }
    }
}

impl RequestIds {
    /// The id of a request: the caller's `X-Request-Id` when it is 8 to 64 characters of
    /// letters, digits and `-`, else a fresh one.
    #[must_use]
    pub fn for_request(&self, headers: &HeaderMap) -> HeaderValue {
        match headers.get(&HEADER) {
            Some(v)
                if (8..=64).contains(&v.len())
                    && v.as_bytes().iter().all(|b| b.is_ascii_alphanumeric() || *b == b'-') =>
            {
                v.clone()
            }
            _ => self.fresh(),
        }
    }

    /// A fresh id: the prefix and the next count, in hex.
    #[must_use]
    pub fn fresh(&self) -> HeaderValue {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let mut out = [0u8; 32];
        for (i, word) in [self.prefix, n].into_iter().enumerate() {
            for (j, byte) in word.to_be_bytes().into_iter().enumerate() {
                out[i * 16 + j * 2] = HEX[usize::from(byte >> 4)];
                out[i * 16 + j * 2 + 1] = HEX[usize::from(byte & 0xf)];
            }
        }
        // 32 hex digits are always a valid header value.
        HeaderValue::from_bytes(&out).unwrap_or(HeaderValue::from_static("0"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_ids_are_32_hex_digits_and_never_repeat_and_a_callers_own_is_kept_if_well_formed() {
        let ids = RequestIds::default();
        let (a, b) = (ids.fresh(), ids.fresh());
        assert_ne!(a, b);
        for id in [&a, &b] {
            assert_eq!(id.len(), 32);
            assert!(id.as_bytes().iter().all(u8::is_ascii_hexdigit), "{id:?}");
        }
        assert_eq!(a.as_bytes()[..16], b.as_bytes()[..16], "one prefix per server");
        assert_ne!(RequestIds::default().fresh().as_bytes()[..16], a.as_bytes()[..16], "servers differ");
        let mut h = HeaderMap::new();
        h.insert(HEADER, HeaderValue::from_static("client-chosen-42"));
        assert_eq!(ids.for_request(&h), "client-chosen-42");
        for bad in ["short", "has space here", "semi;colon;x"] {
            h.insert(HEADER, HeaderValue::from_static(bad));
            assert_eq!(ids.for_request(&h).len(), 32, "{bad}");
        }
    }
}
