//! Property tests of the verifier and of the parameter parser.

use crate::support::{
    Keys, NOW_MS, PEER, ed25519_b64, entry, hmac_hex, hmac_secret, key_id, ms, percent_encode_b64, verifier,
};
use keygate_auth::verify::grants;
use keygate_auth::{
    Access, ApiKeyId, Credential, Denial, HmacSecret, IpAllowlist, Params, Permission, Permissions, Rejection,
    UnverifiedRequest, VerifiedRequest,
};
use keygate_proto::UnixMicros;
use proptest::prelude::*;
use proptest::sample::Index;

/// Signing material of either kind the tests sign with.
enum SigningKey {
    Hmac(HmacSecret),
    Ed25519(ed25519_dalek::SigningKey),
}

impl SigningKey {
    fn new(ed25519: bool, seed: u64) -> Self {
        if ed25519 {
            let mut bytes = [0u8; 32];
            bytes[..8].copy_from_slice(&seed.to_le_bytes());
            Self::Ed25519(ed25519_dalek::SigningKey::from_bytes(&bytes))
        } else {
            Self::Hmac(hmac_secret(seed))
        }
    }

    fn credential(&self) -> Credential {
        match self {
            Self::Hmac(secret) => Credential::hmac(secret),
            Self::Ed25519(sk) => Credential::Ed25519(sk.verifying_key()),
        }
    }

    /// The `signature` value as a client sends it: hex, or percent-encoded base64.
    fn sign(&self, payload: &[u8]) -> String {
        match self {
            Self::Hmac(secret) => hmac_hex(secret.expose().as_bytes(), payload),
            Self::Ed25519(sk) => percent_encode_b64(&ed25519_b64(sk, payload)),
        }
    }
}

/// A cache holding one key for `signing`, with `configure` applied.
fn cache(signing: &SigningKey, configure: impl FnOnce(&mut keygate_auth::KeyEntry)) -> (Keys, ApiKeyId) {
    let id = key_id(3);
    let mut e = entry(id.clone(), signing.credential());
    configure(&mut e);
    let mut keys = Keys::default();
    keys.insert(e);
    (keys, id)
}

fn verify_raw(
    keys: &Keys,
    id: &ApiKeyId,
    query: &[u8],
    body: &[u8],
    access: Access,
    now: UnixMicros,
) -> Result<VerifiedRequest, Rejection> {
    let req = UnverifiedRequest {
        api_key: Some(id.as_str().as_bytes()),
        query,
        body,
        peer: PEER,
        endpoint: crate::support::ORDER_ENDPOINT,
    };
    verifier().verify(&req, access, keys, now)
}

/// A signed request as sent: the payload's pairs split between query and body at `split`, the
/// signature appended to the body, or to the query when the body is empty. Returns query and
/// body.
fn signed_request(signing: &SigningKey, pairs: &[String], split: usize) -> (Vec<u8>, Vec<u8>) {
    let split = split.min(pairs.len());
    let query = pairs[..split].join("&");
    let body = pairs[split..].join("&");
    let sig = signing.sign(format!("{query}{body}").as_bytes());
    if body.is_empty() {
        (format!("{query}&signature={sig}").into_bytes(), Vec::new())
    } else {
        (query.into_bytes(), format!("{body}&signature={sig}").into_bytes())
    }
}

/// The pairs of a plausible order, in any order, timestamped within the default window.
fn order_pairs() -> impl Strategy<Value = Vec<String>> {
    (
        "[A-Z]{3,8}",
        prop::sample::select(vec!["BUY", "SELL"]),
        "[0-9]{1,4}(\\.[0-9]{1,4})?",
        prop::collection::btree_map("x[a-z]{1,6}", "[A-Za-z0-9._~-]{0,12}", 0..4),
        0u64..5000,
    )
        .prop_flat_map(|(symbol, side, qty, extra, behind)| {
            let mut pairs = vec![
                format!("symbol={symbol}"),
                format!("side={side}"),
                format!("quantity={qty}"),
                format!("timestamp={}", NOW_MS - behind),
            ];
            pairs.extend(extra.into_iter().map(|(k, v)| format!("{k}={v}")));
            Just(pairs).prop_shuffle()
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// (a) Any single changed byte of the signed payload, wherever it sits, is refused.
    #[test]
    fn changing_any_payload_byte_is_never_accepted(
        ed25519 in any::<bool>(),
        seed in any::<u64>(),
        pairs in order_pairs(),
        split in 0usize..8,
        at in any::<Index>(),
        byte in any::<u8>(),
    ) {
        let signing = SigningKey::new(ed25519, seed);
        let (keys, id) = cache(&signing, |_| {});
        let (mut query, mut body) = signed_request(&signing, &pairs, split);
        prop_assert!(verify_raw(&keys, &id, &query, &body, Access::USER_DATA, ms(NOW_MS)).is_ok());

        let split = split.min(pairs.len());
        let query_payload_len = pairs[..split].join("&").len();
        let payload_len = query_payload_len + pairs[split..].join("&").len();
        let i = at.index(payload_len);
        let target = if i < query_payload_len {
            &mut query[i]
        } else {
            &mut body[i - query_payload_len]
        };
        prop_assume!(*target != byte);
        *target = byte;
        let result = verify_raw(&keys, &id, &query, &body, Access::USER_DATA, ms(NOW_MS));
        prop_assert!(result.is_err(), "accepted after changing byte {} to {:#04x}", i, byte);
    }

    /// (a, continued) Changing a byte of the `&signature=…` part is refused too, except a change
    /// of case in HMAC hex, which Binance defines as the same signature.
    #[test]
    fn changing_any_signature_byte_is_accepted_only_as_a_hex_case_change(
        ed25519 in any::<bool>(),
        seed in any::<u64>(),
        pairs in order_pairs(),
        at in any::<Index>(),
        byte in any::<u8>(),
    ) {
        let signing = SigningKey::new(ed25519, seed);
        let (keys, id) = cache(&signing, |_| {});
        let (mut query, body) = signed_request(&signing, &pairs, usize::MAX);
        let payload_len = pairs.join("&").len();
        let i = payload_len + at.index(query.len() - payload_len);
        let original = query[i];
        prop_assume!(original != byte);
        query[i] = byte;
        // Equivalent spellings: hex digits of an HMAC signature, or of a `%XX` escape in base64,
        // are case-insensitive. Anything else changes the signature or breaks the request.
        let in_value = i >= payload_len + "&signature=".len();
        let in_escape = query[i - 1] == b'%' || query[i - 2] == b'%';
        let case_change = in_value
            && (!ed25519 || in_escape)
            && original.is_ascii_hexdigit()
            && original.eq_ignore_ascii_case(&byte);
        let result = verify_raw(&keys, &id, &query, &body, Access::USER_DATA, ms(NOW_MS));
        prop_assert_eq!(
            result.is_ok(), case_change, "byte {} {:#04x} -> {:#04x}", i, original, byte
        );
    }

    /// (b) A signature made with any other secret or private key is refused.
    #[test]
    fn signing_with_another_key_is_a_bad_signature(
        ed25519 in any::<bool>(),
        seed in any::<u64>(),
        other in any::<u64>(),
        pairs in order_pairs(),
        split in 0usize..8,
    ) {
        prop_assume!(seed != other);
        let registered = SigningKey::new(ed25519, seed);
        let (keys, id) = cache(&registered, |_| {});
        let (query, body) = signed_request(&SigningKey::new(ed25519, other), &pairs, split);
        let result = verify_raw(&keys, &id, &query, &body, Access::USER_DATA, ms(NOW_MS));
        prop_assert_eq!(result.unwrap_err().denial, Denial::BadSignature);
    }

    /// (c) Outside `[timestamp - 1000 ms, timestamp + recvWindow]` the request is refused with a
    /// timestamp denial, whatever the units; inside it is accepted.
    #[test]
    fn timestamp_outside_its_window_is_refused_and_inside_accepted(
        ts_ms in 1_000_000_000_000u64..4_000_000_000_000,
        sub_ms_us in 0u64..1000,
        in_micros in any::<bool>(),
        recv_us in 0u64..=60_000_000,
        plain_recv_window in any::<bool>(),
        delta in 0u64..10_000_000_000,
        inside in any::<Index>(),
    ) {
        // A whole number of ms, or up to three decimals.
        let recv_us = if plain_recv_window { recv_us / 1000 * 1000 } else { recv_us };
        let recv_text = if plain_recv_window {
            (recv_us / 1000).to_string()
        } else {
            format!("{}.{:03}", recv_us / 1000, recv_us % 1000)
        };
        let ts_us = if in_micros { ts_ms * 1000 + sub_ms_us } else { ts_ms * 1000 };
        let ts_text = if in_micros { ts_us.to_string() } else { ts_ms.to_string() };
        let signing = SigningKey::new(false, 9);
        let (keys, id) = cache(&signing, |_| {});
        let payload = format!("symbol=BTCUSDT&recvWindow={recv_text}&timestamp={ts_text}");
        let query = format!("{payload}&signature={}", signing.sign(payload.as_bytes()));
        let at = |now_us: u64| {
            verify_raw(&keys, &id, query.as_bytes(), b"", Access::USER_DATA, UnixMicros(now_us))
        };

        let late = at(ts_us + recv_us + 1 + delta);
        let stale = matches!(late, Err(Rejection { denial: Denial::TimestampStale { .. }, .. }));
        prop_assert!(stale, "{:?}", late);
        let early = at(ts_us - 1_000_000 - delta);
        let ahead = matches!(early, Err(Rejection { denial: Denial::TimestampAhead { .. }, .. }));
        prop_assert!(ahead, "{:?}", early);
        // Anywhere in (timestamp - 1000 ms, timestamp + recvWindow].
        let width = recv_us + 999_999;
        let offset = inside.index(usize::try_from(width + 1).unwrap());
        let ok = at(ts_us - 999_999 + u64::try_from(offset).unwrap());
        prop_assert!(ok.is_ok(), "{:?}", ok);
    }

    /// (d) Whatever the key's permissions and the endpoint's access, a permission that is not
    /// granted is never allowed, and one that is granted (all else being fine) is.
    #[test]
    fn permission_not_granted_is_never_allowed(
        trade in any::<bool>(),
        withdraw in any::<bool>(),
        wanted in prop::sample::select(Permission::ALL.to_vec()),
        single_use in any::<bool>(),
        ed25519 in any::<bool>(),
    ) {
        let extra: Vec<Permission> = [(trade, Permission::Trade), (withdraw, Permission::Withdraw)]
            .into_iter()
            .filter_map(|(on, p)| on.then_some(p))
            .collect();
        let permissions = Permissions::with(&extra);
        let access = Access { permission: wanted, single_use };
        let signing = SigningKey::new(ed25519, 4);
        // An IP allowlist that admits the peer, so withdrawals are not refused for lacking one.
        let (keys, id) = cache(&signing, |e| {
            e.permissions = permissions;
            e.restrictions.ip_allowlist = IpAllowlist::parse(&["203.0.113.0/24"]).unwrap();
        });
        let payload = [format!("symbol=BTCUSDT&timestamp={NOW_MS}")];
        let (query, body) = signed_request(&signing, &payload, 1);
        let result = verify_raw(&keys, &id, &query, &body, access, ms(NOW_MS));
        prop_assert_eq!(grants(permissions, access), permissions.contains(wanted));
        if permissions.contains(wanted) {
            prop_assert!(result.is_ok(), "{:?}", result);
        } else {
            prop_assert_eq!(result.unwrap_err().denial, Denial::PermissionMissing(wanted));
        }
    }

    /// (e) The parser never panics on arbitrary bytes, and what it calls the signed payload is
    /// the input minus at most the signature pair.
    #[test]
    fn params_parse_never_panics_on_arbitrary_bytes(
        query in prop::collection::vec(any::<u8>(), 0..200),
        body in prop::collection::vec(any::<u8>(), 0..200),
    ) {
        check_parse(&query, &body)?;
    }

    /// (e, continued) The same over an alphabet dense in separators, escapes and `signature`, to
    /// reach the parser's branches far more often than uniform bytes do.
    #[test]
    fn params_parse_never_panics_on_separator_heavy_input(
        query in "(signature|timestamp|a|=|&|%|%2|%2B|%zz|%C3%BC|\\+| |ü|1){0,24}",
        body in "(signature|timestamp|a|=|&|%|%2|%2B|%zz|%C3%BC|\\+| |ü|1){0,24}",
    ) {
        check_parse(query.as_bytes(), body.as_bytes())?;
    }

    /// The whole verifier never panics on arbitrary request bytes either.
    #[test]
    fn verify_never_panics_on_arbitrary_requests(
        query in prop::collection::vec(any::<u8>(), 0..200),
        body in prop::collection::vec(any::<u8>(), 0..200),
        now in any::<u64>(),
        single_use in any::<bool>(),
    ) {
        let signing = SigningKey::new(false, 5);
        let (keys, id) = cache(&signing, |_| {});
        let access = Access { permission: Permission::Read, single_use };
        let _ = verify_raw(&keys, &id, &query, &body, access, UnixMicros(now));
    }
}

fn check_parse(query: &[u8], body: &[u8]) -> Result<(), TestCaseError> {
    let Ok(params) = Params::parse(query, body) else {
        return Ok(());
    };
    let payload = params.signed_payload(query, body);
    let signed = payload.contiguous().into_owned();
    let total = query.len() + body.len();
    match params.signature() {
        None => prop_assert_eq!(&signed, &[query, body].concat()),
        Some(sig) => {
            // At least `signature` and the value (never shorter raw than decoded) were removed.
            prop_assert!(signed.len() + "signature".len() + sig.len() <= total);
        }
    }
    let [a, b] = payload.pieces();
    prop_assert_eq!([a, b].concat(), signed);
    Ok(())
}
