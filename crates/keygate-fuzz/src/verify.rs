//! Target `verify`: `keygate_auth::Verifier::verify`, the hot path of every signed request.
//!
//! The first byte picks a mode.
//!
//! *Arbitrary* (even): header, query, body, peer, time, key state and endpoint all come from the
//! fuzzer (time mostly relative to the request's own `timestamp`, so the later checks are
//! reached). Properties: never panics; an accepted request names the registered key, carries a
//! `timestamp`, and its signature is the HMAC of its signed payload as recomputed here with the
//! `hmac` crate; a `BadSignature` refusal is never given to a correct signature; a refusal decided
//! after the signature (key state, IP, permission...) is only given to a correct one; a refusal
//! names a key only when the header named the registered key.
//!
//! *Signed* (odd): the fuzzer chooses parameter names and arbitrary UTF-8 values, how each byte is
//! escaped, the order, the query/body split, where the `signature` pair sits, a name repeated in
//! the body (the query wins), `timestamp` units, `recvWindow`, the hex case of the signature, the
//! key's state and restrictions, the peer, the endpoint and the time inside the window. The
//! request is signed with the known HMAC secret. Properties: the verifier's answer equals the one
//! computed here from DESIGN.md's rules (accepted, or the first key-state denial that applies);
//! an accepted request's parameters are exactly the values that were encoded; verifying it again
//! is refused as a reuse on single-use endpoints and accepted on reading ones; and changing any one
//! byte of header, query or body (position and new value from the fuzzer) is refused, the only
//! exception being a change of case of a hex digit of the signature, which Binance treats as the
//! same signature.

/// The endpoint every request here is sent to.
const ENDPOINT: keygate_auth::Endpoint<'static> = keygate_auth::Endpoint { method: "POST", path: "/api/v3/order" };

use crate::Input;
use crate::input::SplitMix64;
use hmac::{Hmac, KeyInit as _, Mac as _};
use keygate_auth::{
    Access, AccountId, ApiKeyId, Credential, Denial, HmacSecret, IpAllowlist, KeyEntry, KeyLookup, KeyStatus, Limits,
    Params, Permission, Permissions, Rejection, Restrictions, UnverifiedRequest, VerifiedRequest, Verifier,
};
use keygate_proto::{Symbol, UnixMicros, UnixMillis};
use sha2::Sha256;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

/// The server time the signed mode runs around (2023-11-14T22:13:20Z), in milliseconds.
const NOW_MS: u64 = 1_700_000_000_000;

/// The one registered key: its id, its secret, and its cache entry.
struct World {
    id: ApiKeyId,
    secret: HmacSecret,
    entry: Arc<KeyEntry>,
}

impl KeyLookup for World {
    fn lookup(&self, api_key: &str) -> Option<Arc<KeyEntry>> {
        (api_key == self.id.as_str()).then(|| Arc::clone(&self.entry))
    }
}

/// What the fuzzer chose about the key: status, permissions, restrictions.
struct KeyState {
    status: KeyStatus,
    permissions: Permissions,
    restrictions: Restrictions,
}

fn key_state(input: &mut Input<'_>, now_ms: u64) -> KeyState {
    let flags = input.byte();
    let status = match flags & 0b111 {
        0 => KeyStatus::Disabled,
        1 => KeyStatus::Revoked,
        2 => KeyStatus::Expired,
        _ => KeyStatus::Active,
    };
    let permissions = match (flags >> 3) & 0b11 {
        0 => Permissions::READ_ONLY,
        1 => Permissions::with(&[Permission::Trade]),
        2 => Permissions::with(&[Permission::Withdraw]),
        _ => Permissions::with(&[Permission::Trade, Permission::Withdraw]),
    };
    let mut restrictions = Restrictions::default();
    if flags & 0b10_0000 != 0 {
        restrictions.ip_allowlist = IpAllowlist::parse(&["203.0.113.0/24", "2001:db8::/32"]).unwrap_or_default();
    }
    if flags & 0b100_0000 != 0 {
        restrictions.symbols = Symbol::parse("BTCUSDT").into_iter().collect();
    }
    if flags & 0b1000_0000 != 0 {
        // An expiry a little before or after now.
        let offset = u64::from(input.u16());
        restrictions.expires_at = Some(UnixMillis((now_ms + 30_000).saturating_sub(offset)));
    }
    KeyState { status, permissions, restrictions }
}

fn world(state: KeyState) -> World {
    let mut rng = SplitMix64(0x6b67_f022);
    let (Ok(id), Ok(secret)) = (ApiKeyId::generate(&mut rng), HmacSecret::generate(&mut rng)) else {
        panic!("deterministic entropy cannot fail");
    };
    let entry = KeyEntry {
        id: id.clone(),
        account_id: AccountId(7),
        credential: Credential::hmac(&secret),
        permissions: state.permissions,
        restrictions: state.restrictions,
        status: state.status,
        created_at: UnixMillis(NOW_MS - 86_400_000),
        app_id: None,
        replay_use: Default::default(),
        bad_signature: Default::default(),
    };
    World { id, secret, entry: Arc::new(entry) }
}

fn peer(input: &mut Input<'_>) -> IpAddr {
    match input.byte() % 5 {
        0 => IpAddr::V4(Ipv4Addr::new(203, 0, 113, input.byte())),
        1 => IpAddr::V6(Ipv4Addr::new(203, 0, 113, input.byte()).to_ipv6_mapped()),
        2 => IpAddr::V4(Ipv4Addr::from(input.u32())),
        3 => IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, u16::from(input.byte()))),
        _ => IpAddr::V6(Ipv6Addr::from(u128::from(input.u64()) << 64 | u128::from(input.u64()))),
    }
}

fn access(input: &mut Input<'_>) -> Access {
    *input.choose(&[Access::USER_DATA, Access::TRADE, Access::WITHDRAW])
}

fn hmac_bytes(secret: &HmacSecret, payload: &[u8]) -> [u8; 32] {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes()) else {
        panic!("HMAC takes keys of any length");
    };
    mac.update(payload);
    mac.finalize().into_bytes().into()
}

/// Runs the target on one input.
pub fn run(data: &[u8]) {
    let mut input = Input::new(data);
    if input.byte() & 1 == 0 { arbitrary(&mut input) } else { signed(&mut input) }
}

/// Whether `params` carry a signature that is the hex HMAC of their signed payload.
fn signature_is_correct(w: &World, params: &Params, query: &[u8], body: &[u8]) -> bool {
    let Some(sig) = params.signature() else { return false };
    let mut expected = [0u8; 32];
    if hex::decode_to_slice(sig, &mut expected).is_err() {
        return false;
    }
    let payload = params.signed_payload(query, body);
    hmac_bytes(&w.secret, &payload.contiguous()) == expected
}

fn arbitrary(input: &mut Input<'_>) {
    let state = key_state(input, NOW_MS);
    let w = world(state);
    let header_mode = input.byte() % 4;
    let peer = peer(input);
    let access = access(input);
    let time_mode = input.byte();
    let delta = input.u32();
    let raw_now = input.u64();
    let query = input.bytes(4096);
    let body = input.rest();
    let header: Option<&[u8]> = match header_mode {
        0 => None,
        1 => Some(query.get(..query.len().min(48)).unwrap_or_default()),
        _ => Some(w.id.as_str().as_bytes()),
    };
    let parsed = Params::parse(query, body);
    // Mostly a time near the request's own timestamp, so the checks after the clock are reached.
    let now = match (&parsed, time_mode % 4) {
        (_, 0) => UnixMicros(raw_now),
        (Ok(p), _) => {
            let ts: u64 = p.get("timestamp").and_then(|t| t.parse().ok()).unwrap_or(NOW_MS);
            let ts_us = if ts >= 100_000_000_000_000 { ts } else { ts.saturating_mul(1000) };
            UnixMicros(ts_us.saturating_add(u64::from(delta)).saturating_sub(2_000_000))
        }
        (Err(_), _) => UnixMicros(NOW_MS * 1000 + u64::from(delta)),
    };
    let verifier = Verifier::new(Limits::default(), 64);
    let req = UnverifiedRequest { api_key: header, query, body, peer, endpoint: ENDPOINT };
    let result = verifier.verify(&req, access, &w, now);
    let named_key = header == Some(w.id.as_str().as_bytes());
    let correct = parsed.as_ref().is_ok_and(|p| signature_is_correct(&w, p, query, body));
    match &result {
        Ok(v) => {
            assert!(named_key, "accepted a request that does not name the registered key");
            assert!(correct, "accepted a request whose signature is not the HMAC of its payload");
            assert!(v.params().get("timestamp").is_some());
            assert_eq!(w.entry.status, KeyStatus::Active);
            assert!(w.entry.permissions.contains(access.permission));
            assert_eq!(v.account_id(), AccountId(7));
        }
        Err(Rejection { denial, key }) => {
            if key.is_some() {
                assert!(named_key, "a refusal names a key the header did not name: {denial:?}");
            }
            if *denial == Denial::BadSignature {
                assert!(!correct, "a correct signature was refused as BadSignature");
            }
            if denial.after_signature() {
                assert!(correct, "{denial:?} was decided without a correct signature");
            }
        }
    }
}

/// Appends `value` to `out`, each byte raw or escaped as the fuzzer says (bytes the syntax
/// reserves are always escaped).
fn encode_value(input: &mut Input<'_>, value: &str, out: &mut String) {
    let style = input.byte();
    for (i, &b) in value.as_bytes().iter().enumerate() {
        let bit = (style >> (i % 8)) & 1 == 1;
        let reserved = matches!(b, b'&' | b'%' | b'+');
        if b == b' ' && bit {
            out.push('+');
        } else if reserved || bit || !b.is_ascii() {
            if style & 0x80 != 0 {
                out.push_str(&format!("%{b:02x}"));
            } else {
                out.push_str(&format!("%{b:02X}"));
            }
        } else {
            out.push(char::from(b));
        }
    }
}

const NAMES: &[&str] = &[
    "symbol",
    "side",
    "type",
    "quantity",
    "price",
    "timeInForce",
    "newClientOrderId",
    "quoteOrderQty",
    "orderId",
    "coin",
    "address",
    "amount",
    "x",
    "a.b_c",
];

fn signed(input: &mut Input<'_>) {
    // The request: pairs in fuzz order, split between query and body.
    let n = input.below(8) as usize;
    let mut pairs: Vec<(String, String, String)> = Vec::new(); // (name, value, encoded pair)
    for _ in 0..n {
        let name = (*input.choose(NAMES)).to_owned();
        let raw = input.bytes(24);
        let value = String::from_utf8_lossy(raw).into_owned();
        if pairs.iter().any(|(n, _, _)| *n == name) {
            continue;
        }
        let mut enc = format!("{name}=");
        encode_value(input, &value, &mut enc);
        pairs.push((name, value, enc));
    }
    let time_flags = input.byte();
    let behind_us = u64::from(input.u32());
    let recv_ms: u64 = if time_flags & 1 == 1 { input.below(60_001) } else { 5000 };
    let recv_frac: u64 = if time_flags & 3 == 3 && recv_ms < 60_000 { input.below(1000) } else { 0 };
    let recv_us = recv_ms * 1000 + recv_frac;
    let ts_in_micros = time_flags & 4 == 4;
    let ts_us = if ts_in_micros { NOW_MS * 1000 + u64::from(input.u16()) } else { NOW_MS * 1000 };
    let ts_text = if ts_in_micros { ts_us.to_string() } else { (ts_us / 1000).to_string() };
    pairs.push(("timestamp".into(), ts_text.clone(), format!("timestamp={ts_text}")));
    if time_flags & 1 == 1 {
        let text = if time_flags & 2 == 2 && recv_ms < 60_000 {
            format!("{recv_ms}.{recv_frac:03}")
        } else {
            recv_ms.to_string()
        };
        pairs.push(("recvWindow".into(), text.clone(), format!("recvWindow={text}")));
    }
    // Fisher-Yates with fuzz-chosen swaps.
    for i in (1..pairs.len()).rev() {
        let j = input.index(i + 1);
        pairs.swap(i, j);
    }
    let split = input.index(pairs.len() + 1);
    let mut query: Vec<String> = pairs[..split].iter().map(|p| p.2.clone()).collect();
    let mut body: Vec<String> = pairs[split..].iter().map(|p| p.2.clone()).collect();
    // Sometimes a query name repeated in the body with another value: the query wins.
    if let Some((name, _, _)) = pairs[..split].first()
        && time_flags & 8 == 8
    {
        let at = input.index(body.len() + 1);
        body.insert(at, format!("{name}=ignored"));
    }
    // The signature over query ‖ body, placed at a fuzz-chosen segment of either part.
    let (q_text, b_text) = (query.join("&"), body.join("&"));
    let mac = hmac_bytes(
        &world(KeyState {
            status: KeyStatus::Active,
            permissions: Permissions::READ_ONLY,
            restrictions: Restrictions::default(),
        })
        .secret,
        format!("{q_text}{b_text}").as_bytes(),
    );
    let case = input.u32();
    let sig: String = hex::encode(mac)
        .chars()
        .enumerate()
        .map(|(i, c)| if (case >> (i % 32)) & 1 == 1 { c.to_ascii_uppercase() } else { c })
        .collect();
    let sig_in_body = input.bool();
    let target = if sig_in_body { &mut body } else { &mut query };
    let at = input.index(target.len() + 1);
    target.insert(at, format!("signature={sig}"));
    let (query, body) = (query.join("&"), body.join("&"));

    // The key, the caller and the time.
    let state = key_state(input, NOW_MS);
    let w = world(state);
    let peer = peer(input);
    let access = access(input);
    let now_us = ts_us.saturating_sub(999_999) + behind_us % (recv_us + 1_000_000);
    let now = UnixMicros(now_us);
    let expected = expected_denial(&w.entry, access, peer, now, pairs.iter().find(|p| p.0 == "symbol").map(|p| &p.1));

    let verifier = Verifier::new(Limits::default(), 64);
    let header = w.id.as_str().as_bytes();
    let req = UnverifiedRequest {
        api_key: Some(header),
        query: query.as_bytes(),
        body: body.as_bytes(),
        peer,
        endpoint: ENDPOINT,
    };
    let result = verifier.verify(&req, access, &w, now);
    match (&result, &expected) {
        (Ok(v), None) => check_params(v, &pairs),
        (Err(r), Some(d)) if r.denial == *d => {}
        _ => panic!(
            "expected {expected:?}, got {:?}\nquery {query:?}\nbody {body:?}",
            result.as_ref().map(|_| ()).map_err(|r| &r.denial)
        ),
    }
    if expected.is_some() {
        return;
    }
    // The same request again: a reuse.
    let again = verifier.verify(&req, access, &w, now);
    if access.single_use {
        assert_eq!(again.map(|_| ()).map_err(|r| r.denial), Err(Denial::SignatureReused));
    } else {
        assert!(again.is_ok(), "a reading endpoint refused a repeated request");
    }

    // One changed byte anywhere in header ‖ query ‖ body.
    let mut all = [header, query.as_bytes(), body.as_bytes()].concat();
    let pos = input.index(all.len());
    // 0x20 is a change of ASCII case: the one change that may keep a hex signature valid.
    let mask = match input.byte() {
        0 => 1,
        1 => 0x20,
        m => m,
    };
    let original = all[pos];
    all[pos] ^= mask;
    let (h, rest) = all.split_at(header.len());
    let (q, b) = rest.split_at(query.len());
    let req = UnverifiedRequest { api_key: Some(h), query: q, body: b, peer, endpoint: ENDPOINT };
    let result = Verifier::new(Limits::default(), 64).verify(&req, access, &w, now);
    let sig_start = if sig_in_body { header.len() + query.len() } else { header.len() }
        + if sig_in_body { body.find(&format!("signature={sig}")) } else { query.find(&format!("signature={sig}")) }
            .unwrap_or(usize::MAX / 2)
        + "signature=".len();
    let in_sig = (sig_start..sig_start + 64).contains(&pos);
    let case_change = in_sig && original.is_ascii_hexdigit() && original.eq_ignore_ascii_case(&all[pos]);
    assert_eq!(
        result.is_ok(),
        case_change,
        "byte {pos} {original:#04x} -> {:#04x} gave {:?}",
        all[pos],
        result.map(|_| ()).map_err(|r| r.denial)
    );
}

/// The first key-state denial DESIGN.md's order gives a correctly signed, timely request.
fn expected_denial(
    e: &KeyEntry,
    access: Access,
    peer: IpAddr,
    now: UnixMicros,
    symbol: Option<&String>,
) -> Option<Denial> {
    let r = &e.restrictions;
    match e.status {
        KeyStatus::Active => {}
        KeyStatus::Disabled => return Some(Denial::KeyDisabled),
        KeyStatus::Revoked => return Some(Denial::KeyRevoked),
        KeyStatus::Expired => return Some(Denial::KeyExpired),
    }
    if r.expires_at.is_some_and(|t| t.0 * 1000 <= now.0) {
        return Some(Denial::KeyExpired);
    }
    let allowed = r.ip_allowlist.is_empty() || r.ip_allowlist.nets().iter().any(|n| n.contains(&peer.to_canonical()));
    if !allowed {
        return Some(Denial::IpNotAllowed { ip: peer.to_canonical() });
    }
    if !e.permissions.contains(access.permission) {
        return Some(Denial::PermissionMissing(access.permission));
    }
    if access.permission == Permission::Withdraw && r.ip_allowlist.is_empty() {
        return Some(Denial::IpRestrictionRequired);
    }
    if access.permission == Permission::Trade
        && !r.symbols.is_empty()
        && !symbol.is_some_and(|s| r.symbols.iter().any(|x| x.as_str() == s))
    {
        return Some(Denial::SymbolNotAllowed(symbol.cloned().unwrap_or_default()));
    }
    None
}

fn check_params(v: &VerifiedRequest, pairs: &[(String, String, String)]) {
    for (name, value, _) in pairs {
        assert_eq!(v.params().get(name), Some(value.as_str()), "{name} was not read back as encoded");
    }
    assert_eq!(v.params().iter().count(), pairs.len(), "the verified request has other parameters");
    assert!(v.params().signature().is_some());
}
