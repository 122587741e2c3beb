//! The one strict parser for request parameters: query string and form body, as sent.
//!
//! Binance reads parameters from the query string and from a form-encoded body whatever the
//! `Content-Type` says, and the signature covers `query ‖ body` byte for byte (minus the
//! `signature` pair). This module splits both parts once, decodes names and values, records where
//! the `signature` pair sits so the signed bytes can be taken without re-serialising anything, and
//! applies the duplicate rules:
//!
//! * a name repeated within the query, or within the body, is -1101;
//! * a name present in both keeps the query's value (Binance's rule);
//! * `signature` may appear once in all (in either part), since two would be ambiguous.
//!
//! Raw spaces and raw UTF-8 are accepted (ccxt sends some bodies unescaped); `+` decodes to a
//! space, as in any form encoding, except inside `signature`, whose base64 `+` is kept.

use smallvec::SmallVec;
use std::borrow::Cow;
use std::ops::Range;

/// A byte range of `Params::buf`; `u32` keeps the inline pair list small.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Span(u32, u32);

impl Span {
    fn of(r: Range<usize>) -> Self {
        // Bodies are capped far below 4 GiB (`Limits::max_body`), so offsets fit.
        Self(u32::try_from(r.start).unwrap_or(u32::MAX), u32::try_from(r.end).unwrap_or(u32::MAX))
    }

    fn get(self, buf: &str) -> &str {
        buf.get(self.0 as usize..self.1 as usize).unwrap_or("")
    }

    /// Whether the span holds `text`: compares lengths before slicing, since a handler looks up
    /// a dozen names among a dozen parameters and most differ in length.
    fn holds(self, buf: &str, text: &str) -> bool {
        self.1.wrapping_sub(self.0) as usize == text.len() && self.get(buf) == text
    }
}

/// Most parameters one request may carry.
pub const MAX_PARAMS: usize = 64;

/// The class of a parameter error, mapped by the server to Binance's code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamErrorKind {
    /// -1100: characters or a format the parameter may not have.
    IllegalChars,
    /// -1101: too many parameters, or one sent twice.
    TooMany,
    /// -1102: a mandatory parameter missing, empty or malformed.
    Mandatory,
    /// -1104: parameters the endpoint does not read.
    NotRead,
}

/// A parameter error with Binance's wording.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{msg}")]
pub struct ParamError {
    /// Which Binance code applies.
    pub kind: ParamErrorKind,
    /// The message for the client.
    pub msg: String,
}

impl ParamError {
    /// -1100 for `name` with Binance's message.
    #[must_use]
    pub fn illegal(name: &str) -> Self {
        Self {
            kind: ParamErrorKind::IllegalChars,
            msg: format!(
                "Illegal characters found in parameter '{name}'; legal range is '^([0-9]{{1,20}})(\\.[0-9]{{1,20}})?$'."
            ),
        }
    }

    /// -1100 with a specific message.
    #[must_use]
    pub fn illegal_msg(msg: impl Into<String>) -> Self {
        Self { kind: ParamErrorKind::IllegalChars, msg: msg.into() }
    }

    /// -1102 for a missing or empty mandatory parameter.
    #[must_use]
    pub fn mandatory(name: &str) -> Self {
        Self {
            kind: ParamErrorKind::Mandatory,
            msg: format!("Mandatory parameter '{name}' was not sent, was empty/null, or malformed."),
        }
    }

    /// -1101 for a duplicated parameter.
    #[must_use]
    pub fn duplicate(name: &str) -> Self {
        Self { kind: ParamErrorKind::TooMany, msg: format!("Duplicate values for parameter '{name}'.") }
    }
}

/// Decoded parameters of one request, plus the location of its signature.
///
/// Built only by [`Params::parse`]; handlers read values through [`Params::get`] and friends.
/// Every decoded name and value lives in one buffer, so parsing a request costs two allocations
/// however many parameters it has.
#[derive(Debug, Clone, Default)]
pub struct Params {
    buf: String,
    /// Name and value spans in `buf`; inline up to 16 pairs, more than any Binance endpoint takes.
    pairs: SmallVec<[(Span, Span); 16]>,
    signature: Option<SignatureSpot>,
}

#[derive(Debug, Clone)]
struct SignatureSpot {
    in_body: bool,
    /// The byte range of the pair *and* one adjacent `&`, so removing it leaves the rest as sent.
    cut: Range<usize>,
    /// The decoded value, in `Params::buf`.
    value: Span,
}

/// Appends the percent-decoded `raw` to `out`, returning where it landed; `None` when the escapes
/// are malformed or the result is not UTF-8.
fn decode_into(raw: &[u8], plus_is_space: bool, out: &mut String, scratch: &mut Vec<u8>) -> Option<Range<usize>> {
    let start = out.len();
    let needs_decoding =
        if plus_is_space { memchr::memchr2(b'%', b'+', raw).is_some() } else { memchr::memchr(b'%', raw).is_some() };
    if !needs_decoding {
        out.push_str(std::str::from_utf8(raw).ok()?);
        return Some(start..out.len());
    }
    scratch.clear();
    let mut i = 0;
    while i < raw.len() {
        match raw[i] {
            b'%' => {
                let hex = |b: u8| (b as char).to_digit(16);
                let hi = raw.get(i + 1).copied().and_then(hex)?;
                let lo = raw.get(i + 2).copied().and_then(hex)?;
                scratch.push(u8::try_from(hi * 16 + lo).ok()?);
                i += 3;
            }
            b'+' if plus_is_space => {
                scratch.push(b' ');
                i += 1;
            }
            b => {
                scratch.push(b);
                i += 1;
            }
        }
    }
    out.push_str(std::str::from_utf8(scratch).ok()?);
    Some(start..out.len())
}

/// The `&`-separated segments of a part, found with a vectorised search (this loop is most of
/// the parser's time).
struct Segments<'a> {
    rest: &'a [u8],
    done: bool,
}

impl<'a> Iterator for Segments<'a> {
    type Item = &'a [u8];

    /// Yields exactly what `rest.split(|&b| b == b'&')` would.
    fn next(&mut self) -> Option<&'a [u8]> {
        if self.done {
            return None;
        }
        if let Some(i) = memchr::memchr(b'&', self.rest) {
            let seg = &self.rest[..i];
            self.rest = &self.rest[i + 1..];
            Some(seg)
        } else {
            self.done = true;
            Some(self.rest)
        }
    }
}

/// Longest accepted parameter name.
const MAX_NAME: usize = 64;

fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= MAX_NAME && name.bytes().all(is_name_byte)
}

/// The bytes a parameter name may consist of: `[A-Za-z0-9_.]`.
fn is_name_byte(b: u8) -> bool {
    NAME_BYTE[usize::from(b)]
}

/// [`is_name_byte`] as a table, so the fast path classifies a byte with one load.
const NAME_BYTE: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = c.is_ascii_alphanumeric() || c == b'_' || c == b'.';
        b += 1;
    }
    t
};

impl Params {
    /// Parses the raw query string (without `?`) and the raw body.
    ///
    /// # Errors
    /// [`ParamError`] for undecodable text, illegal names, duplicates, or too many parameters.
    pub fn parse(query: &[u8], body: &[u8]) -> Result<Self, ParamError> {
        match Self::parse_plain(query, body) {
            Some(params) => Ok(params),
            None => Self::parse_general(query, body),
        }
    }

    /// The general parser: decodes every name and value; the definition of what is accepted.
    fn parse_general(query: &[u8], body: &[u8]) -> Result<Self, ParamError> {
        let mut params =
            Self { buf: String::with_capacity(query.len() + body.len()), pairs: SmallVec::new(), signature: None };
        let mut scratch = Vec::new();
        let query_len = params.parse_part(query, false, &mut scratch)?;
        params.parse_part(body, true, &mut scratch)?;
        params.query_wins(query_len);
        Ok(params)
    }

    /// Query wins over body: drops body pairs whose name the query already has.
    fn query_wins(&mut self, query_len: usize) {
        if query_len > 0 && self.pairs.len() > query_len {
            let (q, b) = self.pairs.split_at(query_len);
            let buf = &self.buf;
            let kept: SmallVec<[(Span, Span); 16]> =
                b.iter().filter(|(n, _)| !q.iter().any(|(qn, _)| qn.get(buf) == n.get(buf))).copied().collect();
            self.pairs.truncate(query_len);
            self.pairs.extend(kept);
        }
    }

    /// The fast path for what nearly every client sends: both parts valid UTF-8 with no `%` or
    /// `+` anywhere, so nothing needs decoding. Both parts are then copied into `buf` once, as
    /// they are, and names and values are spans of that copy: one scan per part, no per-value
    /// copy or UTF-8 check.
    ///
    /// Returns `Some` only for input the general parser would accept, with the same pairs and
    /// signature; anything unusual (an empty segment, a bad name, a duplicate, too many
    /// parameters) returns `None` and [`Params::parse`] runs the general parser, which then
    /// reports the error in its own words. That keeps one definition of the rules.
    fn parse_plain(query: &[u8], body: &[u8]) -> Option<Self> {
        let query_text = std::str::from_utf8(query).ok()?;
        let body_text = std::str::from_utf8(body).ok()?;
        if memchr::memchr2(b'%', b'+', query).is_some() || memchr::memchr2(b'%', b'+', body).is_some() {
            return None;
        }
        let mut buf = String::with_capacity(query.len() + body.len());
        buf.push_str(query_text);
        buf.push_str(body_text);
        let mut params = Self { buf, pairs: SmallVec::new(), signature: None };
        let query_len = params.scan_plain(query, 0, false)?;
        params.scan_plain(body, query.len(), true)?;
        params.query_wins(query_len);
        Some(params)
    }

    /// Splits one part already copied to `buf[base..]`, returning how many pairs it added, or
    /// `None` when the general parser must decide (see [`Params::parse_plain`]).
    fn scan_plain(&mut self, part: &[u8], base: usize, in_body: bool) -> Option<usize> {
        if part.is_empty() {
            return Some(0);
        }
        let start_len = self.pairs.len();
        let span = |r: Range<usize>| Span::of(base + r.start..base + r.end);
        let mut pos = 0;
        loop {
            let seg_start = pos;
            while pos < part.len() && is_name_byte(part[pos]) {
                pos += 1;
            }
            let name = seg_start..pos;
            if name.is_empty() || name.len() > MAX_NAME {
                return None;
            }
            let value = match part.get(pos) {
                None | Some(b'&') => pos..pos,
                Some(b'=') => {
                    let start = pos + 1;
                    pos = memchr::memchr(b'&', &part[start..]).map_or(part.len(), |i| start + i);
                    start..pos
                }
                Some(_) => return None,
            };
            let seg_end = pos;
            if &part[name.clone()] == b"signature" {
                if self.signature.is_some() {
                    return None;
                }
                // The same cut as the general parser's: the pair and one adjacent separator.
                let cut = if seg_start > 0 {
                    seg_start - 1..seg_end
                } else if seg_end < part.len() {
                    seg_start..seg_end + 1
                } else {
                    seg_start..seg_end
                };
                self.signature = Some(SignatureSpot { in_body, cut, value: span(value) });
            } else {
                let this = &part[name.clone()];
                let buf = self.buf.as_bytes();
                if self.pairs[start_len..].iter().any(|(n, _)| buf.get(n.0 as usize..n.1 as usize) == Some(this))
                    || self.pairs.len() >= MAX_PARAMS
                {
                    return None;
                }
                self.pairs.push((span(name), span(value)));
            }
            if pos == part.len() {
                return Some(self.pairs.len() - start_len);
            }
            // `part[pos]` is the `&` that ended the segment.
            pos += 1;
        }
    }

    /// Parses one part, returning how many pairs it added.
    fn parse_part(&mut self, part: &[u8], in_body: bool, scratch: &mut Vec<u8>) -> Result<usize, ParamError> {
        if part.is_empty() {
            return Ok(0);
        }
        let start_len = self.pairs.len();
        let mut offset = 0usize;
        for seg in (Segments { rest: part, done: false }) {
            let seg_start = offset;
            offset += seg.len() + 1;
            if seg.is_empty() {
                return Err(ParamError::illegal_msg("Empty parameter found; check for a stray '&'."));
            }
            let (raw_name, raw_value) = match memchr::memchr(b'=', seg) {
                Some(i) => (&seg[..i], &seg[i + 1..]),
                None => (seg, &b""[..]),
            };
            let bad_name =
                || ParamError::illegal_msg(format!("Illegal parameter name '{}'.", String::from_utf8_lossy(raw_name)));
            let name = Span::of(decode_into(raw_name, true, &mut self.buf, scratch).ok_or_else(bad_name)?);
            if !valid_name(name.get(&self.buf)) {
                return Err(bad_name());
            }
            if name.get(&self.buf) == "signature" {
                if self.signature.is_some() {
                    return Err(ParamError::duplicate("signature"));
                }
                let value =
                    Span::of(decode_into(raw_value, false, &mut self.buf, scratch).ok_or_else(|| {
                        ParamError::illegal_msg("Illegal characters found in parameter 'signature'.")
                    })?);
                let seg_end = seg_start + seg.len();
                // Remove the pair and one separator: the preceding `&` when there is one, else the
                // following one, so `a=1&signature=x&b=2` leaves `a=1&b=2`.
                let cut = if seg_start > 0 {
                    seg_start - 1..seg_end
                } else if seg_end < part.len() {
                    seg_start..seg_end + 1
                } else {
                    seg_start..seg_end
                };
                self.signature = Some(SignatureSpot { in_body, cut, value });
                continue;
            }
            let value = Span::of(decode_into(raw_value, true, &mut self.buf, scratch).ok_or_else(|| {
                ParamError::illegal_msg(format!("Illegal characters found in parameter '{}'.", name.get(&self.buf)))
            })?);
            let this = name.get(&self.buf);
            if self.pairs[start_len..].iter().any(|(n, _)| n.holds(&self.buf, this)) {
                return Err(ParamError::duplicate(this));
            }
            if self.pairs.len() >= MAX_PARAMS {
                return Err(ParamError {
                    kind: ParamErrorKind::TooMany,
                    msg: "Too many parameters sent for this endpoint.".into(),
                });
            }
            self.pairs.push((name, value));
        }
        Ok(self.pairs.len() - start_len)
    }

    /// The decoded value of `name`, if sent. An empty value is returned as `Some("")`.
    #[must_use]
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs.iter().find(|(n, _)| n.holds(&self.buf, name)).map(|(_, v)| v.get(&self.buf))
    }

    /// The value of `name`, required to be present and non-empty.
    ///
    /// # Errors
    /// -1102 [`ParamError`] when missing or empty.
    pub fn require(&self, name: &str) -> Result<&str, ParamError> {
        match self.get(name) {
            Some(v) if !v.is_empty() => Ok(v),
            _ => Err(ParamError::mandatory(name)),
        }
    }

    /// Refuses parameters outside `known` (plus `timestamp` and `recvWindow`), as Binance's -1104
    /// does. Every endpoint calls this with the names it reads, so bytes the handler ignores
    /// cannot ride along under a valid signature (for example a value re-split between query and
    /// body into a stray parameter).
    ///
    /// # Errors
    /// -1104 [`ParamError`] naming how many were read and sent.
    pub fn ensure_only(&self, known: &[&str]) -> Result<(), ParamError> {
        let read = self.iter().filter(|(n, _)| *n == "timestamp" || *n == "recvWindow" || known.contains(n)).count();
        let sent = self.pairs.len();
        if read == sent {
            return Ok(());
        }
        Err(ParamError {
            kind: ParamErrorKind::NotRead,
            msg: format!(
                "Not all sent parameters were read; read '{}' parameter(s) but was sent '{}'.",
                read + 1,
                sent + 1
            ),
        })
    }

    /// All decoded pairs except `signature`, query first.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.pairs.iter().map(|(n, v)| (n.get(&self.buf), v.get(&self.buf)))
    }

    /// The decoded `signature` value, if one was sent.
    #[must_use]
    pub fn signature(&self) -> Option<&str> {
        self.signature.as_ref().map(|s| s.value.get(&self.buf))
    }

    /// The signed bytes: `query ‖ body` as sent, with the `signature` pair removed.
    ///
    /// Borrowed when the signature sits at the end of the only non-empty part (what every
    /// common client sends), so the hot path copies nothing.
    #[must_use]
    pub fn signed_payload<'a>(&self, query: &'a [u8], body: &'a [u8]) -> SignedPayload<'a> {
        let Some(spot) = &self.signature else {
            return SignedPayload::Two(query, body);
        };
        let (part, other) = if spot.in_body { (body, query) } else { (query, body) };
        let head = &part[..spot.cut.start];
        let tail = &part[spot.cut.end..];
        match (spot.in_body, tail.is_empty()) {
            (false, true) => SignedPayload::Two(head, body),
            (true, true) => SignedPayload::Two(other, head),
            (false, false) => SignedPayload::Owned([head, tail, body].concat()),
            (true, false) => SignedPayload::Owned([other, head, tail].concat()),
        }
    }
}

/// The bytes a signature covers, in at most two borrowed pieces or one owned buffer.
#[derive(Debug)]
pub enum SignedPayload<'a> {
    /// Two consecutive pieces (either may be empty).
    Two(&'a [u8], &'a [u8]),
    /// A rebuilt buffer, when the signature sat in the middle of a part.
    Owned(Vec<u8>),
}

impl SignedPayload<'_> {
    /// The payload as one contiguous slice, copying only when it is in two non-empty pieces.
    #[must_use]
    pub fn contiguous(&self) -> Cow<'_, [u8]> {
        match self {
            Self::Two(a, []) => Cow::Borrowed(a),
            Self::Two([], b) => Cow::Borrowed(b),
            Self::Two(a, b) => Cow::Owned([*a, *b].concat()),
            Self::Owned(v) => Cow::Borrowed(v),
        }
    }

    /// The pieces in order, for incremental hashing.
    #[must_use]
    pub fn pieces(&self) -> [&[u8]; 2] {
        match self {
            Self::Two(a, b) => [a, b],
            Self::Owned(v) => [v, &[]],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(q: &str, b: &str) -> Vec<u8> {
        let p = Params::parse(q.as_bytes(), b.as_bytes()).unwrap();
        p.signed_payload(q.as_bytes(), b.as_bytes()).contiguous().into_owned()
    }

    #[test]
    fn signed_payload_is_the_sent_bytes_minus_the_signature_pair() {
        assert_eq!(payload("a=1&b=2&signature=abc", ""), b"a=1&b=2");
        assert_eq!(payload("signature=abc&a=1", ""), b"a=1");
        assert_eq!(payload("a=1&signature=abc&b=2", ""), b"a=1&b=2");
        assert_eq!(payload("a=1", "b=2&signature=abc"), b"a=1b=2");
        assert_eq!(payload("", "b=2&signature=abc"), b"b=2");
        assert_eq!(payload("signature=abc", "b=2"), b"b=2");
        assert_eq!(payload("a=%41", "b=c d&signature=abc&e=1"), b"a=%41b=c d&e=1");
    }

    #[test]
    fn duplicates_within_a_part_are_refused_and_the_query_wins_between_parts() {
        let e = Params::parse(b"a=1&a=2", b"").unwrap_err();
        assert_eq!(e.kind, ParamErrorKind::TooMany);
        let e = Params::parse(b"", b"a=1&a=2").unwrap_err();
        assert_eq!(e.kind, ParamErrorKind::TooMany);
        let p = Params::parse(b"a=1", b"a=2&b=3").unwrap();
        assert_eq!(p.get("a"), Some("1"));
        assert_eq!(p.get("b"), Some("3"));
        assert_eq!(p.iter().count(), 2);
        assert!(Params::parse(b"signature=a", b"signature=b").is_err());
    }

    #[test]
    fn values_are_decoded_with_plus_as_space_except_in_the_signature() {
        let p = Params::parse(b"name=My+Wallet%20%C3%BC&signature=ab%2Bc+d", b"").unwrap();
        assert_eq!(p.get("name"), Some("My Wallet ü"));
        assert_eq!(p.signature(), Some("ab+c+d"));
        let raw = Params::parse("x=raw ü".as_bytes(), b"").unwrap();
        assert_eq!(raw.get("x"), Some("raw ü"));
    }

    #[test]
    fn parameters_an_endpoint_does_not_read_are_minus_1104() {
        let p = Params::parse(b"symbol=X&timestamp=1&recvWindow=5000", b"0&signature=ab").unwrap();
        let e = p.ensure_only(&["symbol"]).unwrap_err();
        assert_eq!(e.kind, ParamErrorKind::NotRead);
        assert!(p.ensure_only(&["symbol", "0"]).is_ok());
        assert!(Params::parse(b"timestamp=1", b"").unwrap().ensure_only(&[]).is_ok());
    }

    /// What a parse yields, for comparing the two parsers.
    fn observed(p: &Params, q: &[u8], b: &[u8]) -> (Vec<(String, String)>, Option<String>, Vec<u8>) {
        (
            p.iter().map(|(n, v)| (n.to_owned(), v.to_owned())).collect(),
            p.signature().map(str::to_owned),
            p.signed_payload(q, b).contiguous().into_owned(),
        )
    }

    proptest::proptest! {
        /// The fast path is only a shortcut: whenever it answers, the general parser accepts the
        /// same input with the same pairs, signature and signed bytes.
        #[test]
        fn plain_fast_path_agrees_with_the_general_parser(
            q in "[ab&=s%+2ü ]{0,12}|(signature|a|b)=[a-c1]{0,3}(&(signature|a|b|timestamp)(=[0-9ü ]{0,3})?){0,4}",
            b in "[ab&=s%+2ü ]{0,12}|(signature|a|b)=[a-c1]{0,3}(&(signature|a|b|timestamp)(=[0-9ü ]{0,3})?){0,4}",
        ) {
            let (q, b) = (q.as_bytes(), b.as_bytes());
            let general = Params::parse_general(q, b);
            if let Some(fast) = Params::parse_plain(q, b) {
                let general = general.expect("the general parser accepts what the fast path accepts");
                proptest::prop_assert_eq!(observed(&fast, q, b), observed(&general, q, b));
            }
        }
    }

    #[test]
    fn the_fast_path_takes_plain_requests_and_leaves_the_rest_to_the_general_parser() {
        assert!(Params::parse_plain(b"a=1&b=2&signature=abc", b"c=3").is_some());
        for (q, b) in [(&b"a=%41"[..], &b""[..]), (b"a=1+2", b""), (b"a=1&a=2", b""), (b"a=1&", b""), (b"", b"a b=1")] {
            assert!(Params::parse_plain(q, b).is_none(), "{:?}", String::from_utf8_lossy(q));
        }
    }

    #[test]
    fn malformed_input_is_an_error_not_a_panic() {
        for bad in [&b"a=%zz"[..], b"a=%4", b"a=%FF", b"&a=1", b"a=1&", b"=1", b"a b=1", b"a=1&&b=2"] {
            assert!(Params::parse(bad, b"").is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        assert_eq!(Params::parse(b"flag", b"").unwrap().get("flag"), Some(""));
    }
}
