//! Target `keyfmt`: API key ids and HMAC secrets (`keyfmt.rs`), and IP allowlists
//! (`restriction.rs`).
//!
//! The first byte picks a part.
//!
//! * Raw key text: never panics; text accepted as a key id or secret has the documented shape
//!   (prefix, length, base62, a checksum equal to `checksum6` of the rest), parses to a value
//!   whose text, `Display` and JSON form are the input again; no text is both a key id and a
//!   secret.
//! * Constructed key text: fuzz bytes mapped onto the base62 alphabet with the right prefix and
//!   checksum are always accepted, and changing any one byte of the result (position and new
//!   value from the fuzzer) is always refused.
//! * IP allowlist: never panics; an accepted list has no duplicate, no entry wider than the
//!   minimum prefix, no host bits; each entry's text parses alone to the same network, the
//!   re-serialised list parses to the same list, and the JSON form round-trips; `allows` answers
//!   exactly "empty, or some network contains the canonical address", the same for an IPv4 peer
//!   and its IPv4-mapped IPv6 form; a list never widens itself.

use crate::Input;
use keygate_auth::base62::{ALPHABET, checksum6};
use keygate_auth::keyfmt::{KEY_LEN, KEY_PREFIX, SECRET_LEN, SECRET_PREFIX};
use keygate_auth::restriction::{MIN_V4_PREFIX, MIN_V6_PREFIX};
use keygate_auth::{ApiKeyId, HmacSecret, IpAllowlist};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Runs the target on one input.
pub fn run(data: &[u8]) {
    let mut input = Input::new(data);
    match input.byte() % 4 {
        0 => raw_key(input.rest()),
        1 => constructed_key(&mut input),
        _ => allowlist(&mut input),
    }
}

fn checksum_ok(text: &[u8]) -> bool {
    let (body, sum) = text.split_at(text.len() - 6);
    checksum6(body) == sum
}

fn raw_key(text: &[u8]) {
    let as_id = ApiKeyId::check(text);
    let as_secret = HmacSecret::check(text);
    assert!(as_id.is_err() || as_secret.is_err(), "text accepted as both key id and secret");
    if as_id.is_ok() {
        assert_eq!(text.len(), KEY_LEN);
        assert!(text.starts_with(KEY_PREFIX.as_bytes()));
        assert!(text[KEY_PREFIX.len()..].iter().all(u8::is_ascii_alphanumeric));
        assert!(checksum_ok(text));
        let Ok(s) = std::str::from_utf8(text) else { panic!("accepted key id is not UTF-8") };
        let id = match ApiKeyId::parse(s) {
            Ok(id) => id,
            Err(e) => panic!("check accepted but parse refused: {e}"),
        };
        assert_eq!(id.as_str(), s);
        assert_eq!(id.to_string(), s);
        assert!(s.starts_with(id.prefix()));
        let json = serde_json::to_string(&id).unwrap_or_default();
        assert_eq!(serde_json::from_str::<ApiKeyId>(&json).ok(), Some(id));
    } else if let Ok(s) = std::str::from_utf8(text) {
        assert!(ApiKeyId::parse(s).is_err());
        assert!(serde_json::from_value::<ApiKeyId>(serde_json::Value::String(s.to_owned())).is_err());
    }
    if as_secret.is_ok() {
        assert_eq!(text.len(), SECRET_LEN);
        assert!(text.starts_with(SECRET_PREFIX.as_bytes()));
        assert!(text[SECRET_PREFIX.len()..].iter().all(u8::is_ascii_alphanumeric));
        assert!(checksum_ok(text));
        let Ok(s) = std::str::from_utf8(text) else { panic!("accepted secret is not UTF-8") };
        let secret = match HmacSecret::parse(s.to_owned()) {
            Ok(secret) => secret,
            Err(e) => panic!("check accepted but parse refused: {e}"),
        };
        assert_eq!(secret.expose(), s);
        assert!(!format!("{secret:?}").contains(&s[SECRET_PREFIX.len()..]), "Debug shows the secret");
    } else if let Ok(s) = std::str::from_utf8(text) {
        assert!(HmacSecret::parse(s.to_owned()).is_err());
    }
}

fn constructed_key(input: &mut Input<'_>) {
    let secret = input.bool();
    let (prefix, len) = if secret { (SECRET_PREFIX, SECRET_LEN) } else { (KEY_PREFIX, KEY_LEN) };
    let mut text: Vec<u8> = prefix.as_bytes().to_vec();
    for _ in prefix.len()..len - 6 {
        text.push(ALPHABET[usize::from(input.byte()) % ALPHABET.len()]);
    }
    let sum = checksum6(&text);
    text.extend_from_slice(&sum);
    let check = |t: &[u8]| if secret { HmacSecret::check(t) } else { ApiKeyId::check(t) };
    assert!(check(&text).is_ok(), "a well-formed {} was refused", if secret { "secret" } else { "key id" });
    let pos = input.index(text.len());
    let mask = match input.byte() {
        0 => 1,
        m => m,
    };
    text[pos] ^= mask;
    assert!(check(&text).is_err(), "changing byte {pos} by {mask:#04x} went unnoticed");
}

fn peer(input: &mut Input<'_>) -> IpAddr {
    match input.byte() % 4 {
        0 => IpAddr::V4(Ipv4Addr::from(input.u32())),
        1 => IpAddr::V6(Ipv4Addr::from(input.u32()).to_ipv6_mapped()),
        _ => IpAddr::V6(Ipv6Addr::from(u128::from(input.u64()) << 64 | u128::from(input.u64()))),
    }
}

fn allowlist(input: &mut Input<'_>) {
    let peer = peer(input);
    let text = String::from_utf8_lossy(input.rest()).into_owned();
    let entries: Vec<&str> = text.split(['\n', ',']).collect();
    let Ok(list) = IpAllowlist::parse(&entries) else {
        return;
    };
    let nets = list.nets();
    for (i, net) in nets.iter().enumerate() {
        assert!(!nets[..i].contains(net), "duplicate entry {net}");
        let shortest = if net.addr().is_ipv4() { MIN_V4_PREFIX } else { MIN_V6_PREFIX };
        assert!(net.prefix_len() >= shortest, "{net} is wider than allowed");
        assert_eq!(net.network(), net.addr(), "{net} has host bits");
        if let IpAddr::V6(v6) = net.addr() {
            assert!(v6.to_ipv4_mapped().is_none(), "{net} kept in IPv4-mapped form");
        }
        let alone = IpAllowlist::parse(&[net.to_string()]);
        assert_eq!(alone.as_ref().map(IpAllowlist::nets), Ok(&[*net][..]), "{net} does not re-parse to itself");
    }
    let texts: Vec<String> = nets.iter().map(ToString::to_string).collect();
    assert_eq!(IpAllowlist::parse(&texts).as_ref(), Ok(&list), "re-serialised list differs");
    let json = serde_json::to_string(&list).unwrap_or_default();
    assert_eq!(serde_json::from_str::<IpAllowlist>(&json).ok().as_ref(), Some(&list));
    let canonical = peer.to_canonical();
    let expected = list.is_empty() || nets.iter().any(|n| n.contains(&canonical));
    assert_eq!(list.allows(peer), expected, "allows({peer}) is wrong for {texts:?}");
    if let IpAddr::V4(v4) = canonical {
        assert_eq!(list.allows(IpAddr::V6(v4.to_ipv6_mapped())), list.allows(IpAddr::V4(v4)));
    }
    assert!(!list.widens(&list), "a list widens itself");
    if !list.is_empty() {
        assert!(IpAllowlist::default().widens(&list), "removing every entry does not widen");
    }
}
