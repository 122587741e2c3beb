//! Target `params`: the strict request parameter parser (`keygate_auth::Params`).
//!
//! Input: two bytes choose where the rest splits into query string and body.
//!
//! Properties:
//! * never panics;
//! * accepts exactly what an independent, naive reference parser (below, written from the rules
//!   in `params.rs`'s module docs) accepts, and then yields the same pairs in the same order, the
//!   same `signature`, and the same signed payload (the input with the signature pair and one
//!   adjacent `&` removed);
//! * accepted output is self-consistent: no name twice, no `signature` among the pairs, `get`
//!   finds every pair, the query's value wins over the body's, `require` and `ensure_only` agree
//!   with the pairs, and the two payload views are the same bytes;
//! * accepted output round-trips: re-encoding every pair (and the signature) percent-escaped and
//!   parsing again gives the same pairs and signature;
//! * errors are only ever -1100 or -1101.

use crate::Input;
use keygate_auth::params::MAX_PARAMS;
use keygate_auth::{ParamErrorKind, Params};

/// Runs the target on one input.
pub fn run(data: &[u8]) {
    let mut input = Input::new(data);
    let split = usize::from(input.u16());
    let rest = input.rest();
    let (query, body) = rest.split_at(split % (rest.len() + 1));
    check(query, body);
}

/// Checks every property for one query string and body.
pub fn check(query: &[u8], body: &[u8]) {
    let parsed = Params::parse(query, body);
    let reference = reference_parse(query, body);
    let params = match (parsed, reference) {
        (Err(e), None) => {
            assert!(
                matches!(e.kind, ParamErrorKind::IllegalChars | ParamErrorKind::TooMany),
                "parser error of an unexpected class: {e:?}"
            );
            return;
        }
        (Ok(p), Some(r)) => {
            let pairs: Vec<(String, String)> = p.iter().map(|(n, v)| (n.to_owned(), v.to_owned())).collect();
            assert_eq!(pairs, r.pairs, "pairs differ from the reference parser");
            assert_eq!(p.signature(), r.signature.as_deref(), "signature differs from the reference parser");
            let payload = p.signed_payload(query, body);
            assert_eq!(payload.contiguous().as_ref(), r.payload.as_slice(), "signed payload differs");
            let [a, b] = payload.pieces();
            assert_eq!([a, b].concat(), r.payload, "payload pieces differ from the contiguous payload");
            p
        }
        (Ok(p), None) => panic!("parser accepted what the reference refuses: {p:?}"),
        (Err(e), Some(r)) => panic!("parser refused ({e:?}) what the reference accepts: {:?}", r.pairs),
    };
    check_consistency(&params, query);
    check_round_trip(&params);
}

fn check_consistency(params: &Params, query: &[u8]) {
    let names: Vec<&str> = params.iter().map(|(n, _)| n).collect();
    assert!(names.len() <= MAX_PARAMS);
    for (i, (name, value)) in params.iter().enumerate() {
        assert!(!names[..i].contains(&name), "name {name:?} returned twice");
        assert_ne!(name, "signature", "signature returned as an ordinary pair");
        assert!(valid_name(name), "invalid name {name:?} accepted");
        assert_eq!(params.get(name), Some(value));
        assert_eq!(params.require(name).is_ok(), !value.is_empty());
    }
    // Query wins: every pair of the query (parsed alone, it must parse) keeps its value.
    if let Ok(q) = Params::parse(query, b"") {
        for (name, value) in q.iter() {
            assert_eq!(params.get(name), Some(value), "the query's value of {name:?} did not win");
        }
    } else {
        panic!("the query alone was refused although query and body were accepted");
    }
    assert!(params.ensure_only(&names).is_ok());
    let only_time = names.iter().all(|n| *n == "timestamp" || *n == "recvWindow");
    assert_eq!(params.ensure_only(&[]).is_ok(), only_time);
}

fn check_round_trip(params: &Params) {
    let mut text = params.iter().map(|(n, v)| format!("{}={}", escape(n), escape(v))).collect::<Vec<_>>();
    if let Some(sig) = params.signature() {
        text.push(format!("signature={}", escape(sig)));
    }
    let text = text.join("&");
    let again = match Params::parse(text.as_bytes(), b"") {
        Ok(p) => p,
        Err(e) => panic!("re-encoded parameters {text:?} refused: {e:?}"),
    };
    assert!(params.iter().eq(again.iter()), "round trip changed the pairs: {text:?}");
    assert_eq!(params.signature(), again.signature());
}

/// Percent-encodes every byte outside `[A-Za-z0-9._~-]`.
#[must_use]
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'~' | b'-') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 64 && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
}

/// What the reference parser makes of one request.
#[derive(Debug)]
pub struct Reference {
    /// Pairs except `signature`, query first, body pairs whose name the query has dropped.
    pub pairs: Vec<(String, String)>,
    /// The decoded signature.
    pub signature: Option<String>,
    /// The bytes the signature covers.
    pub payload: Vec<u8>,
}

fn decode(raw: &[u8], plus_is_space: bool) -> Option<String> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < raw.len() {
        match raw[i] {
            b'%' => {
                let hex = raw.get(i + 1..i + 3)?;
                if !hex.iter().all(u8::is_ascii_hexdigit) {
                    return None;
                }
                out.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

struct Part {
    pairs: Vec<(String, String)>,
    /// The decoded signature and the index of its segment.
    signature: Option<(String, usize)>,
    segments: Vec<Vec<u8>>,
}

fn reference_part(part: &[u8]) -> Option<Part> {
    let mut out = Part { pairs: Vec::new(), signature: None, segments: Vec::new() };
    if part.is_empty() {
        return Some(out);
    }
    for (idx, seg) in part.split(|&b| b == b'&').enumerate() {
        out.segments.push(seg.to_vec());
        if seg.is_empty() {
            return None;
        }
        let (raw_name, raw_value) = match seg.iter().position(|&b| b == b'=') {
            Some(i) => (&seg[..i], &seg[i + 1..]),
            None => (seg, &[][..]),
        };
        let name = decode(raw_name, true)?;
        if !valid_name(&name) {
            return None;
        }
        if name == "signature" {
            if out.signature.is_some() {
                return None;
            }
            out.signature = Some((decode(raw_value, false)?, idx));
            continue;
        }
        let value = decode(raw_value, true)?;
        if out.pairs.iter().any(|(n, _)| *n == name) {
            return None;
        }
        out.pairs.push((name, value));
    }
    Some(out)
}

fn without(part: &Part, cut: Option<usize>) -> Vec<u8> {
    let kept: Vec<&[u8]> =
        part.segments.iter().enumerate().filter(|(i, _)| Some(*i) != cut).map(|(_, s)| s.as_slice()).collect();
    kept.join(&b'&')
}

/// A deliberately naive parser of the same rules: split, decode, check, merge.
#[must_use]
pub fn reference_parse(query: &[u8], body: &[u8]) -> Option<Reference> {
    let q = reference_part(query)?;
    let b = reference_part(body)?;
    if q.signature.is_some() && b.signature.is_some() {
        return None;
    }
    if q.pairs.len() + b.pairs.len() > MAX_PARAMS {
        return None;
    }
    let mut pairs = q.pairs.clone();
    pairs.extend(b.pairs.iter().filter(|(n, _)| !q.pairs.iter().any(|(qn, _)| qn == n)).cloned());
    let q_cut = q.signature.as_ref().map(|s| s.1);
    let b_cut = b.signature.as_ref().map(|s| s.1);
    let payload = [without(&q, q_cut), without(&b, b_cut)].concat();
    let signature = q.signature.or(b.signature).map(|s| s.0);
    Some(Reference { pairs, signature, payload })
}
