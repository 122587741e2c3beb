//! Every denial path of `Verifier::verify`, in the order the verifier checks them, and what may be
//! disclosed once the signature has verified.

use crate::support::{
    HmacKey, Keys, NOW_MS, PEER, denial, hmac_hex, key_id, ms, order, request, request_from, verifier,
};
use keygate_auth::{
    Access, Denial, IpAllowlist, KeyEntry, KeyLookup, KeyStatus, Limits, ParamError, ParamErrorKind, Permission,
    Permissions, UnverifiedRequest, Verifier,
};
use keygate_proto::{Symbol, UnixMicros, UnixMillis};
use std::net::IpAddr;
use std::sync::Arc;

/// A key cache that fails the test if it is consulted at all.
struct MustNotLookUp;

impl KeyLookup for MustNotLookUp {
    fn lookup(&self, api_key: &str) -> Option<Arc<KeyEntry>> {
        panic!("the key cache was consulted for {api_key:?}");
    }
}

fn now() -> UnixMicros {
    ms(NOW_MS)
}

fn param_error(d: Denial) -> ParamError {
    match d {
        Denial::Param(e) => e,
        other => panic!("expected a parameter error, got {other:?}"),
    }
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

fn allow(entries: &[&str]) -> impl FnOnce(&mut KeyEntry) {
    let list = IpAllowlist::parse(entries).unwrap();
    move |e| e.restrictions.ip_allowlist = list
}

// ---- The API key header -------------------------------------------------------------------------

#[test]
fn rejects_request_without_api_key_header() {
    let k = HmacKey::new(|_| {});
    let query = k.signed(&order(NOW_MS));
    let req = UnverifiedRequest {
        api_key: None,
        query: query.as_bytes(),
        body: b"",
        peer: PEER,
        endpoint: crate::support::ORDER_ENDPOINT,
    };
    let r = k.verifier.verify(&req, Access::USER_DATA, &MustNotLookUp, now()).unwrap_err();
    assert_eq!(r.denial, Denial::MissingApiKey);
    assert!(r.key.is_none());
}

#[test]
fn rejects_empty_api_key_header_as_missing() {
    let k = HmacKey::new(|_| {});
    let query = k.signed(&order(NOW_MS));
    let req = UnverifiedRequest {
        api_key: Some(b""),
        query: query.as_bytes(),
        body: b"",
        peer: PEER,
        endpoint: crate::support::ORDER_ENDPOINT,
    };
    let r = k.verifier.verify(&req, Access::USER_DATA, &MustNotLookUp, now()).unwrap_err();
    assert_eq!(r.denial, Denial::MissingApiKey);
}

#[test]
fn rejects_malformed_api_key_without_consulting_the_key_cache() {
    let k = HmacKey::new(|_| {});
    let query = k.signed(&order(NOW_MS));
    let good = k.id.as_str();
    // One character changed: the checksum no longer matches.
    let mut typo = good.as_bytes().to_vec();
    typo[5] = if typo[5] == b'a' { b'b' } else { b'a' };
    let truncated = &good.as_bytes()[..good.len() - 1];
    let binance = b"vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A";
    let secret = k.secret.expose().as_bytes();
    let not_utf8 = [0xFFu8; 41];
    for header in [&typo[..], truncated, binance, secret, &not_utf8, b" "] {
        let req = UnverifiedRequest {
            api_key: Some(header),
            query: query.as_bytes(),
            body: b"",
            peer: PEER,
            endpoint: crate::support::ORDER_ENDPOINT,
        };
        let r = k.verifier.verify(&req, Access::USER_DATA, &MustNotLookUp, now()).unwrap_err();
        assert_eq!(r.denial, Denial::MalformedApiKey, "{:?}", String::from_utf8_lossy(header));
        assert!(r.key.is_none());
    }
}

#[test]
fn rejects_well_formed_but_unknown_api_key() {
    let k = HmacKey::new(|_| {});
    let stranger = key_id(999);
    let query = k.signed(&order(NOW_MS));
    let r = k.verifier.verify(&request(stranger.as_str(), &query, ""), Access::USER_DATA, &k.keys, now()).unwrap_err();
    assert_eq!(r.denial, Denial::UnknownApiKey);
    assert!(r.key.is_none());
}

// ---- Parameters --------------------------------------------------------------------------------

#[test]
fn rejects_parameter_repeated_within_the_query_or_within_the_body() {
    let k = HmacKey::new(|_| {});
    let repeated = format!("{}&side=SELL", order(NOW_MS));
    for (query, body) in [(k.signed(&repeated), String::new()), (String::new(), k.signed(&repeated))] {
        let e = param_error(denial(k.verify(&query, &body, Access::USER_DATA, now())));
        assert_eq!(e.kind, ParamErrorKind::TooMany, "{e}");
        assert_eq!(e.msg, "Duplicate values for parameter 'side'.");
    }
}

#[test]
fn rejects_two_signatures_even_when_one_is_in_the_query_and_one_in_the_body() {
    let k = HmacKey::new(|_| {});
    let payload = order(NOW_MS);
    let sig = k.sign(&payload);
    let e = param_error(denial(k.verify(
        &format!("signature={sig}"),
        &format!("{payload}&signature={sig}"),
        Access::USER_DATA,
        now(),
    )));
    assert_eq!(e.kind, ParamErrorKind::TooMany);
}

#[test]
fn parameter_in_both_query_and_body_takes_the_query_value() {
    let k = HmacKey::new(|_| {});
    let query = format!("symbol=ETHUSDT&timestamp={NOW_MS}");
    let body = format!("symbol=BTCUSDT&quantity=3&timestamp={}", NOW_MS - 60_000);
    let sig = k.sign(&format!("{query}{body}"));
    let v = k.verify(&query, &format!("{body}&signature={sig}"), Access::USER_DATA, now()).unwrap();
    assert_eq!(v.params().get("symbol"), Some("ETHUSDT"));
    assert_eq!(v.params().get("quantity"), Some("3"));
    // The query's timestamp is the one judged: the body's is a minute old.
    assert_eq!(v.timestamp(), ms(NOW_MS));
    // Handlers see each name once, with the query's value.
    let pairs: Vec<(&str, &str)> = v.params().iter().collect();
    let expected_ts = NOW_MS.to_string();
    assert_eq!(pairs, [("symbol", "ETHUSDT"), ("timestamp", expected_ts.as_str()), ("quantity", "3")]);
}

#[test]
fn rejects_illegal_characters_and_stray_separators() {
    let k = HmacKey::new(|_| {});
    for bad in ["symbol=%ZZ", "symbol=%FF", "sym bol=BTCUSDT", "&symbol=BTCUSDT", "symbol=BTCUSDT&&side=BUY"] {
        let query = k.signed(&format!("{bad}&timestamp={NOW_MS}"));
        let e = param_error(denial(k.verify(&query, "", Access::USER_DATA, now())));
        assert_eq!(e.kind, ParamErrorKind::IllegalChars, "{bad}: {e}");
    }
}

#[test]
fn rejects_more_than_sixty_four_parameters() {
    let k = HmacKey::new(|_| {});
    let many: Vec<String> = (0..64).map(|i| format!("p{i}=1")).collect();
    let payload = format!("{}&timestamp={NOW_MS}", many.join("&"));
    let e = param_error(denial(k.verify(&k.signed(&payload), "", Access::USER_DATA, now())));
    assert_eq!(e.kind, ParamErrorKind::TooMany);
}

#[test]
fn rejects_body_over_the_limit() {
    let k = HmacKey::new(|_| {});
    let v = Verifier::new(Limits { max_body: 100, ..Limits::default() }, 16);
    let body = k.signed(&format!("{}&note={}", order(NOW_MS), "x".repeat(100)));
    let r = v.verify(&request(k.id.as_str(), "", &body), Access::USER_DATA, &k.keys, now()).unwrap_err();
    assert_eq!(r.denial, Denial::BodyTooLarge);
}

#[test]
fn rejects_missing_or_malformed_timestamp() {
    let k = HmacKey::new(|_| {});
    let no_ts = "symbol=BTCUSDT&side=BUY".to_owned();
    let cases = [
        no_ts.clone(),
        format!("{no_ts}&timestamp="),
        format!("{no_ts}&timestamp=abc"),
        format!("{no_ts}&timestamp=-1"),
        format!("{no_ts}&timestamp=1700000000000.5"),
        format!("{no_ts}&timestamp=17000000000000000"),
        format!("{no_ts}&timestamp=+1700000000000"),
    ];
    for payload in cases {
        let r = k.verify(&k.signed(&payload), "", Access::USER_DATA, now()).unwrap_err();
        let e = param_error(r.denial);
        assert_eq!(e.kind, ParamErrorKind::Mandatory, "{payload}");
        assert!(e.msg.contains("'timestamp'"), "{}", e.msg);
        // The key was found, so the rejection names it for audit aggregation.
        assert_eq!(r.key.unwrap().id, k.id);
    }
}

#[test]
fn rejects_missing_or_empty_signature() {
    let k = HmacKey::new(|_| {});
    let payload = order(NOW_MS);
    for query in [payload.clone(), format!("{payload}&signature="), format!("{payload}&signature")] {
        let e = param_error(denial(k.verify(&query, "", Access::USER_DATA, now())));
        assert_eq!(e.kind, ParamErrorKind::Mandatory, "{query}");
        assert!(e.msg.contains("'signature'"), "{}", e.msg);
    }
}

// ---- Time --------------------------------------------------------------------------------------

#[test]
fn rejects_recv_window_above_sixty_seconds_or_malformed() {
    let k = HmacKey::new(|_| {});
    for window in ["60001", "60000.001", "999999999", "abc", "1e3", "5000.", ".5", "5000.1234", "-1", ""] {
        let payload = format!("{}&recvWindow={window}", order(NOW_MS));
        assert_eq!(
            denial(k.verify(&k.signed(&payload), "", Access::USER_DATA, now())),
            Denial::BadRecvWindow,
            "{window}"
        );
    }
}

#[test]
fn accepts_recv_window_up_to_sixty_seconds_with_three_decimals() {
    let k = HmacKey::new(|_| {});
    for window in ["60000", "60000.000", "6000.346", "0", "5000.5"] {
        let payload = format!("{}&recvWindow={window}", order(NOW_MS));
        assert!(k.verify(&k.signed(&payload), "", Access::USER_DATA, now()).is_ok(), "{window}");
    }
}

#[test]
fn rejects_timestamp_a_second_or_more_ahead_of_server_time() {
    let k = HmacKey::new(|_| {});
    assert!(k.verify(&k.signed(&order(NOW_MS + 999)), "", Access::USER_DATA, now()).is_ok());
    let ahead = k.verify(&k.signed(&order(NOW_MS + 1000)), "", Access::USER_DATA, now());
    assert_eq!(denial(ahead), Denial::TimestampAhead { ahead_ms: 1000 });
    let far = k.verify(&k.signed(&order(NOW_MS + 3_600_000)), "", Access::USER_DATA, now());
    assert_eq!(denial(far), Denial::TimestampAhead { ahead_ms: 3_600_000 });
}

#[test]
fn rejects_timestamp_outside_recv_window() {
    let k = HmacKey::new(|_| {});
    // Default window: 5000 ms, inclusive.
    assert!(k.verify(&k.signed(&order(NOW_MS - 5000)), "", Access::USER_DATA, now()).is_ok());
    let stale = k.verify(&k.signed(&order(NOW_MS - 5001)), "", Access::USER_DATA, now());
    assert_eq!(denial(stale), Denial::TimestampStale { behind_ms: 5001 });
    // An explicit window.
    let wide = format!("{}&recvWindow=10000", order(NOW_MS - 9000));
    assert!(k.verify(&k.signed(&wide), "", Access::USER_DATA, now()).is_ok());
    let narrow = format!("{}&recvWindow=1000", order(NOW_MS - 1500));
    assert_eq!(
        denial(k.verify(&k.signed(&narrow), "", Access::USER_DATA, now())),
        Denial::TimestampStale { behind_ms: 1500 }
    );
}

#[test]
fn recv_window_decimals_are_honoured_to_the_microsecond() {
    let k = HmacKey::new(|_| {});
    let query = k.signed(&format!("{}&recvWindow=100.5", order(NOW_MS)));
    assert!(k.verify(&query, "", Access::USER_DATA, UnixMicros(NOW_MS * 1000 + 100_500)).is_ok());
    let late = k.verify(&query, "", Access::USER_DATA, UnixMicros(NOW_MS * 1000 + 100_501));
    assert_eq!(denial(late), Denial::TimestampStale { behind_ms: 100 });
}

#[test]
fn accepts_timestamp_in_microseconds() {
    let k = HmacKey::new(|_| {});
    let ts_us = NOW_MS * 1000 + 123;
    assert_eq!(ts_us.to_string().len(), 16);
    let query = k.signed(&format!("symbol=BTCUSDT&timestamp={ts_us}"));
    let v = k.verify(&query, "", Access::USER_DATA, UnixMicros(ts_us + 1)).unwrap();
    assert_eq!(v.timestamp(), UnixMicros(ts_us));
    assert!(v.still_fresh(UnixMicros(ts_us + 5_000_000)));
    assert!(!v.still_fresh(UnixMicros(ts_us + 5_000_001)));
    // The window is judged in microseconds too.
    let stale = k.verify(&query, "", Access::USER_DATA, UnixMicros(ts_us + 5_000_001));
    assert_eq!(denial(stale), Denial::TimestampStale { behind_ms: 5000 });
    let ahead = k.verify(&query, "", Access::USER_DATA, UnixMicros(ts_us - 1_000_000));
    assert_eq!(denial(ahead), Denial::TimestampAhead { ahead_ms: 1000 });
    assert!(k.verify(&query, "", Access::USER_DATA, UnixMicros(ts_us - 999_999)).is_ok());
}

// ---- The signature -----------------------------------------------------------------------------

#[test]
fn rejects_signature_made_with_another_secret() {
    let k = HmacKey::new(|_| {});
    let other = crate::support::hmac_secret(2);
    let payload = order(NOW_MS);
    let sig = hmac_hex(other.expose().as_bytes(), payload.as_bytes());
    let r = k.verify(&format!("{payload}&signature={sig}"), "", Access::USER_DATA, now()).unwrap_err();
    assert_eq!(r.denial, Denial::BadSignature);
    assert_eq!(r.key.unwrap().id, k.id);
}

#[test]
fn rejects_hmac_signature_of_wrong_length_or_alphabet() {
    let k = HmacKey::new(|_| {});
    let payload = order(NOW_MS);
    let good = k.sign(&payload);
    let b64 = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, hex::decode(&good).unwrap());
    let cases = [
        good[..63].to_owned(),
        format!("{good}0"),
        format!("{}g", &good[..63]),
        format!("{good}{good}"),
        b64.replace('+', "%2B").replace('/', "%2F").replace('=', "%3D"),
        format!("+{}", &good[1..]),
    ];
    for sig in cases {
        let query = format!("{payload}&signature={sig}");
        assert_eq!(denial(k.verify(&query, "", Access::USER_DATA, now())), Denial::BadSignature, "{sig}");
    }
}

#[test]
fn rejects_signature_over_other_bytes_than_those_sent() {
    // python-binance's mistake: signing decoded values while sending them percent-encoded.
    let k = HmacKey::new(|_| {});
    let sent = format!("symbol=BTCUSDT&note=a%20b&timestamp={NOW_MS}");
    let signed = format!("symbol=BTCUSDT&note=a b&timestamp={NOW_MS}");
    let query = format!("{sent}&signature={}", k.sign(&signed));
    assert_eq!(denial(k.verify(&query, "", Access::USER_DATA, now())), Denial::BadSignature);
}

// ---- The key's own state, told only after the signature verified ------------------------------

#[test]
fn rejects_disabled_revoked_and_expired_keys() {
    for (status, expected) in [
        (KeyStatus::Disabled, Denial::KeyDisabled),
        (KeyStatus::Revoked, Denial::KeyRevoked),
        (KeyStatus::Expired, Denial::KeyExpired),
    ] {
        let k = HmacKey::new(|e| e.status = status);
        let r = k.verify(&k.signed(&order(NOW_MS)), "", Access::USER_DATA, now()).unwrap_err();
        assert_eq!(r.denial, expected);
        assert_eq!(r.key.unwrap().status, status);
    }
}

#[test]
fn rejects_key_whose_expiry_has_passed() {
    let at = |expires_ms: u64| {
        let k = HmacKey::new(|e| e.restrictions.expires_at = Some(UnixMillis(expires_ms)));
        k.verify(&k.signed(&order(NOW_MS)), "", Access::USER_DATA, now())
    };
    assert_eq!(denial(at(NOW_MS - 1)), Denial::KeyExpired);
    // Expiry is an instant: at it, the key is already expired.
    assert_eq!(denial(at(NOW_MS)), Denial::KeyExpired);
    assert!(at(NOW_MS + 1).is_ok());
}

#[test]
fn rejects_ipv4_peer_outside_allowlist() {
    let k = HmacKey::new(allow(&["198.51.100.0/24"]));
    let query = k.signed(&order(NOW_MS));
    assert!(k.verify_from(ip("198.51.100.9"), &query, "", Access::USER_DATA, now()).is_ok());
    let r = k.verify_from(ip("198.51.101.9"), &query, "", Access::USER_DATA, now());
    assert_eq!(denial(r), Denial::IpNotAllowed { ip: ip("198.51.101.9") });
}

#[test]
fn rejects_ipv6_peer_outside_allowlist() {
    let k = HmacKey::new(allow(&["2001:db8::/32"]));
    let query = k.signed(&order(NOW_MS));
    assert!(k.verify_from(ip("2001:db8:ffff::1"), &query, "", Access::USER_DATA, now()).is_ok());
    let r = k.verify_from(ip("2001:db9::1"), &query, "", Access::USER_DATA, now());
    assert_eq!(denial(r), Denial::IpNotAllowed { ip: ip("2001:db9::1") });
    // An IPv4 peer never matches an IPv6 range.
    let r = k.verify_from(ip("198.51.100.9"), &query, "", Access::USER_DATA, now());
    assert_eq!(denial(r), Denial::IpNotAllowed { ip: ip("198.51.100.9") });
}

#[test]
fn ipv4_mapped_peer_matches_ipv4_allowlist_entry() {
    // A dual-stack listener reports IPv4 clients as `::ffff:a.b.c.d`.
    let k = HmacKey::new(allow(&["198.51.100.0/24"]));
    let query = k.signed(&order(NOW_MS));
    assert!(k.verify_from(ip("::ffff:198.51.100.9"), &query, "", Access::USER_DATA, now()).is_ok());
    let r = k.verify_from(ip("::ffff:203.0.113.7"), &query, "", Access::USER_DATA, now());
    // The reported address is the canonical IPv4 one.
    assert_eq!(denial(r), Denial::IpNotAllowed { ip: ip("203.0.113.7") });
}

#[test]
fn rejects_endpoint_whose_permission_the_key_lacks() {
    let k = HmacKey::new(|e| {
        e.permissions = Permissions::READ_ONLY;
        e.restrictions.ip_allowlist = IpAllowlist::parse(&["203.0.113.0/24"]).unwrap();
    });
    let query = k.signed(&order(NOW_MS));
    assert!(k.verify(&query, "", Access::USER_DATA, now()).is_ok());
    assert_eq!(denial(k.verify(&query, "", Access::TRADE, now())), Denial::PermissionMissing(Permission::Trade));
    assert_eq!(denial(k.verify(&query, "", Access::WITHDRAW, now())), Denial::PermissionMissing(Permission::Withdraw));
}

#[test]
fn trade_permission_does_not_imply_withdraw() {
    let k = HmacKey::new(allow(&["203.0.113.0/24"]));
    let query = k.signed(&order(NOW_MS));
    assert_eq!(denial(k.verify(&query, "", Access::WITHDRAW, now())), Denial::PermissionMissing(Permission::Withdraw));
}

#[test]
fn rejects_withdrawal_by_key_without_ip_allowlist() {
    let unrestricted = HmacKey::new(|e| e.permissions = Permissions::with(&[Permission::Withdraw]));
    let query = unrestricted.signed(&order(NOW_MS));
    assert_eq!(denial(unrestricted.verify(&query, "", Access::WITHDRAW, now())), Denial::IpRestrictionRequired);

    let restricted = HmacKey::new(|e| {
        e.permissions = Permissions::with(&[Permission::Withdraw]);
        e.restrictions.ip_allowlist = IpAllowlist::parse(&["203.0.113.0/24"]).unwrap();
    });
    let query = restricted.signed(&order(NOW_MS));
    assert!(restricted.verify(&query, "", Access::WITHDRAW, now()).is_ok());
}

#[test]
fn rejects_trade_on_symbol_outside_the_keys_allowlist() {
    let k = HmacKey::new(|e| e.restrictions.symbols = vec![Symbol::parse("ETHUSDT").unwrap()]);
    let btc = k.signed(&order(NOW_MS));
    assert_eq!(denial(k.verify(&btc, "", Access::TRADE, now())), Denial::SymbolNotAllowed("BTCUSDT".into()));
    let eth = k.signed(&order(NOW_MS).replace("BTCUSDT", "ETHUSDT"));
    assert!(k.verify(&eth, "", Access::TRADE, now()).is_ok());
    // Reading about another symbol is not trading it.
    assert!(k.verify(&btc, "", Access::USER_DATA, now()).is_ok());
}

#[test]
fn trade_request_naming_no_symbol_is_refused_for_a_key_with_a_symbol_allowlist() {
    let k = HmacKey::new(|e| e.restrictions.symbols = vec![Symbol::parse("ETHUSDT").unwrap()]);
    let none = k.signed(&format!("orderId=7&timestamp={NOW_MS}"));
    assert_eq!(denial(k.verify(&none, "", Access::TRADE, now())), Denial::SymbolNotAllowed(String::new()));
    let other_name = k.signed(&format!("symbols=%5B%22ETHUSDT%22%5D&timestamp={NOW_MS}"));
    assert_eq!(denial(k.verify(&other_name, "", Access::TRADE, now())), Denial::SymbolNotAllowed(String::new()));
}

#[test]
fn symbol_allowlist_applies_to_the_symbol_in_the_body_too() {
    let k = HmacKey::new(|e| e.restrictions.symbols = vec![Symbol::parse("ETHUSDT").unwrap()]);
    let body = k.signed(&order(NOW_MS));
    assert_eq!(denial(k.verify("", &body, Access::TRADE, now())), Denial::SymbolNotAllowed("BTCUSDT".into()));
}

#[test]
fn rejects_signature_reused_on_a_single_use_endpoint() {
    let k = HmacKey::new(|_| {});
    let payload = order(NOW_MS);
    let query = k.signed(&payload);
    assert!(k.verify(&query, "", Access::TRADE, now()).is_ok());
    assert_eq!(denial(k.verify(&query, "", Access::TRADE, ms(NOW_MS + 10))), Denial::SignatureReused);
    // The same signature in upper case, or moved to the body, is the same signature.
    let upper = format!("{payload}&signature={}", k.sign(&payload).to_ascii_uppercase());
    assert_eq!(denial(k.verify(&upper, "", Access::TRADE, now())), Denial::SignatureReused);
    assert_eq!(
        denial(k.verify(&payload, &format!("signature={}", k.sign(&payload)), Access::TRADE, now())),
        Denial::SignatureReused
    );
}

#[test]
fn a_signature_is_single_use_per_endpoint_and_reading_endpoints_take_repeats() {
    // binance-connector's get-then-cancel sends GET and DELETE /api/v3/order with identical
    // parameters in one millisecond, hence one signature; Binance accepts both. Binance has no
    // replay cache at all: keygate refuses a repeat only on the same single-use endpoint.
    let k = HmacKey::new(|_| {});
    let query = k.signed(&order(NOW_MS));
    let at = |method, path| {
        let mut req = request(k.id.as_str(), &query, "");
        req.endpoint = keygate_auth::Endpoint { method, path };
        req
    };
    let (get, delete) = (at("GET", "/api/v3/order"), at("DELETE", "/api/v3/order"));
    for _ in 0..3 {
        assert!(k.verifier.verify(&get, Access::USER_DATA, &k.keys, now()).is_ok());
    }
    assert!(k.verifier.verify(&delete, Access::TRADE, &k.keys, now()).is_ok());
    assert_eq!(denial(k.verifier.verify(&delete, Access::TRADE, &k.keys, now())), Denial::SignatureReused);
    // Another single-use endpoint is another use, once.
    let open_orders = at("DELETE", "/api/v3/openOrders");
    assert!(k.verifier.verify(&open_orders, Access::TRADE, &k.keys, now()).is_ok());
    assert_eq!(denial(k.verifier.verify(&open_orders, Access::TRADE, &k.keys, now())), Denial::SignatureReused);
    // On one endpoint, a signature first seen as a read is not new to a single-use check.
    let same = at("GET", "/api/v3/order");
    assert_eq!(denial(k.verifier.verify(&same, Access::TRADE, &k.keys, now())), Denial::SignatureReused);
}

#[test]
fn one_key_over_its_replay_quota_is_refused_while_another_key_is_served() {
    let greedy = HmacKey::new(|_| {});
    let v = Verifier::new(Limits { replay_per_key: 3, ..Limits::default() }, 1 << 16);
    for i in 0..3 {
        let query = greedy.signed(&order(NOW_MS - i));
        assert!(v.verify(&request(greedy.id.as_str(), &query, ""), Access::USER_DATA, &greedy.keys, now()).is_ok());
    }
    let query = greedy.signed(&order(NOW_MS - 3));
    let over = v.verify(&request(greedy.id.as_str(), &query, ""), Access::USER_DATA, &greedy.keys, now());
    assert_eq!(denial(over), Denial::ReplayKeyQuota);
    // A replay of one it holds is still told as a replay.
    let first = greedy.signed(&order(NOW_MS));
    let replay = v.verify(&request(greedy.id.as_str(), &first, ""), Access::TRADE, &greedy.keys, now());
    assert_eq!(denial(replay), Denial::SignatureReused);
    let other = HmacKey::with_seed(99, |_| {});
    let query = other.signed(&order(NOW_MS));
    assert!(v.verify(&request(other.id.as_str(), &query, ""), Access::USER_DATA, &other.keys, now()).is_ok());
}

#[test]
fn refused_single_use_request_does_not_use_up_its_signature() {
    // A request refused before the replay guard (here: missing permission) leaves no trace, so
    // the same signature still works once the key may trade (same seed: same id and secret).
    let k = HmacKey::new(|e| e.permissions = Permissions::READ_ONLY);
    let query = k.signed(&order(NOW_MS));
    assert_eq!(denial(k.verify(&query, "", Access::TRADE, now())), Denial::PermissionMissing(Permission::Trade));
    let widened = HmacKey::new(|_| {});
    assert_eq!(widened.id, k.id);
    let req = request(k.id.as_str(), &query, "");
    assert!(k.verifier.verify(&req, Access::TRADE, &widened.keys, now()).is_ok());
    assert_eq!(denial(k.verifier.verify(&req, Access::TRADE, &widened.keys, now())), Denial::SignatureReused);
}

#[test]
fn full_replay_guard_refuses_instead_of_forgetting() {
    // Capacity 1 rounds up to one entry in each of 16 shards: among 17 distinct signatures two
    // must share a shard, so the guard fills up within 17 requests.
    let k = HmacKey::new(|_| {});
    let v = Verifier::new(Limits::default(), 1);
    let mut outcomes = Vec::new();
    for i in 0..17 {
        let query = k.signed(&order(NOW_MS - i));
        let r = v.verify(&request(k.id.as_str(), &query, ""), Access::TRADE, &k.keys, now());
        outcomes.push(r.map(|_| ()).map_err(|r| r.denial));
    }
    let first_full = outcomes.iter().position(|o| *o == Err(Denial::ReplayGuardFull)).unwrap();
    assert!(outcomes[..first_full].iter().all(Result::is_ok), "{outcomes:?}");
    assert!(outcomes.iter().all(|o| o.is_ok() || *o == Err(Denial::ReplayGuardFull)), "{outcomes:?}");
}

// ---- What is disclosed -------------------------------------------------------------------------

#[test]
fn after_signature_is_true_exactly_for_reasons_decided_after_the_signature_verified() {
    let before = [
        Denial::MissingApiKey,
        Denial::MalformedApiKey,
        Denial::UnknownApiKey,
        Denial::BodyTooLarge,
        Denial::Param(ParamError::mandatory("timestamp")),
        Denial::Param(ParamError::duplicate("side")),
        Denial::Param(ParamError::illegal("price")),
        Denial::BadRecvWindow,
        Denial::TimestampAhead { ahead_ms: 1000 },
        Denial::TimestampStale { behind_ms: 5001 },
        Denial::BadSignature,
    ];
    let after = [
        Denial::KeyDisabled,
        Denial::KeyRevoked,
        Denial::KeyExpired,
        Denial::IpNotAllowed { ip: PEER },
        Denial::PermissionMissing(Permission::Read),
        Denial::PermissionMissing(Permission::Trade),
        Denial::PermissionMissing(Permission::Withdraw),
        Denial::IpRestrictionRequired,
        Denial::SymbolNotAllowed("BTCUSDT".into()),
        Denial::SignatureReused,
        Denial::ReplayGuardFull,
        Denial::ReplayKeyQuota,
    ];
    for d in &before {
        assert!(!d.after_signature(), "{d:?}");
    }
    for d in &after {
        assert!(d.after_signature(), "{d:?}");
    }
    // Every variant is listed above; a new one makes this match fail to compile.
    for d in before.iter().chain(&after) {
        match d {
            Denial::MissingApiKey
            | Denial::MalformedApiKey
            | Denial::UnknownApiKey
            | Denial::BodyTooLarge
            | Denial::Param(_)
            | Denial::BadRecvWindow
            | Denial::TimestampAhead { .. }
            | Denial::TimestampStale { .. }
            | Denial::BadSignature
            | Denial::KeyDisabled
            | Denial::KeyRevoked
            | Denial::KeyExpired
            | Denial::IpNotAllowed { .. }
            | Denial::PermissionMissing(_)
            | Denial::IpRestrictionRequired
            | Denial::SymbolNotAllowed(_)
            | Denial::SignatureReused
            | Denial::ReplayGuardFull
            | Denial::ReplayKeyQuota => {}
        }
    }
}

#[test]
fn key_state_is_not_disclosed_without_a_valid_signature() {
    // A stranger who knows a key id learns only what Binance would tell: -1021/-1022.
    let configure = |e: &mut KeyEntry| {
        e.status = KeyStatus::Revoked;
        e.permissions = Permissions::READ_ONLY;
        e.restrictions.ip_allowlist = IpAllowlist::parse(&["10.0.0.0/8"]).unwrap();
        e.restrictions.expires_at = Some(UnixMillis(1));
    };
    let k = HmacKey::new(configure);
    let payload = order(NOW_MS);
    let forged = format!("{payload}&signature={}", "0".repeat(64));
    let r = k.verify(&forged, "", Access::TRADE, now()).unwrap_err();
    assert_eq!(r.denial, Denial::BadSignature);
    assert!(!r.denial.after_signature());
    let stale = k.signed(&order(NOW_MS - 60_000));
    assert_eq!(denial(k.verify(&stale, "", Access::TRADE, now())), Denial::TimestampStale { behind_ms: 60_000 });
    // With the signature, the first key-state reason is told.
    let r = k.verify(&k.signed(&payload), "", Access::TRADE, now()).unwrap_err();
    assert_eq!(r.denial, Denial::KeyRevoked);
    assert!(r.denial.after_signature());
}

#[test]
fn post_signature_checks_run_in_the_documented_order() {
    // status, expiry, IP allowlist, permission, IP restriction for withdrawals, symbol, single use.
    let query = |k: &HmacKey| k.signed(&order(NOW_MS));
    let k = HmacKey::new(|e| {
        e.restrictions.expires_at = Some(UnixMillis(1));
        e.restrictions.ip_allowlist = IpAllowlist::parse(&["10.0.0.0/8"]).unwrap();
    });
    assert_eq!(denial(k.verify(&query(&k), "", Access::TRADE, now())), Denial::KeyExpired);
    let k = HmacKey::new(|e| {
        e.permissions = Permissions::READ_ONLY;
        e.restrictions.ip_allowlist = IpAllowlist::parse(&["10.0.0.0/8"]).unwrap();
    });
    assert_eq!(denial(k.verify(&query(&k), "", Access::TRADE, now())), Denial::IpNotAllowed { ip: PEER });
    let k = HmacKey::new(|e| {
        e.permissions = Permissions::READ_ONLY;
        e.restrictions.symbols = vec![Symbol::parse("ETHUSDT").unwrap()];
    });
    assert_eq!(denial(k.verify(&query(&k), "", Access::TRADE, now())), Denial::PermissionMissing(Permission::Trade));
}

#[test]
fn verified_request_carries_the_key_and_account() {
    let k = HmacKey::new(|_| {});
    let v = k.verify(&k.signed(&order(NOW_MS)), "", Access::TRADE, now()).unwrap();
    assert_eq!(v.key().id, k.id);
    assert_eq!(v.account_id().0, 42);
    assert_eq!(v.params().get("side"), Some("BUY"));
    assert_eq!(v.timestamp(), ms(NOW_MS));
}

#[test]
fn unknown_key_is_reported_before_its_parameters_are_judged() {
    // A stranger's stale or unsigned request with an unknown id is -2015, as on Binance.
    let keys = Keys::default();
    let stranger = key_id(5);
    let req = request_from(PEER, stranger.as_str(), "timestamp=1", "");
    assert_eq!(verifier().verify(&req, Access::USER_DATA, &keys, now()).unwrap_err().denial, Denial::UnknownApiKey);
}

/// A request whose signature check ended after its window (it waited for other requests' Ed25519
/// signatures) is refused as stale when concluded, before the replay guard, which forgets a
/// window's signatures once it has passed: judged there at the later time, a replay could look new.
#[test]
fn a_request_concluded_after_its_window_is_stale_and_never_reaches_the_replay_guard() {
    use keygate_auth::SignatureCheck;
    let k = HmacKey::new(|e| e.permissions = Permissions::with(&[Permission::Read, Permission::Trade]));
    let query = k.signed(&format!("{}&recvWindow=1000", order(NOW_MS)));
    let req = request(k.id.as_str(), &query, "");
    let conclude_at = |at: UnixMicros| {
        let mut prepared = k.verifier.prepare(&req, &k.keys, ms(NOW_MS)).unwrap();
        let SignatureCheck::Done(good) = prepared.signature_check(&req) else { panic!("HMAC is checked at once") };
        assert!(good.is_some());
        k.verifier.conclude(prepared, good, &req, Access::TRADE, at)
    };
    let late = conclude_at(UnixMicros(NOW_MS * 1000 + 1_000_001));
    assert_eq!(denial(late), Denial::TimestampStale { behind_ms: 1000 });
    assert_eq!(k.verifier.replay_guard().len(), 0, "nothing was recorded");
    // Concluded within the window: recorded once, and the same signature again is a replay.
    assert!(conclude_at(UnixMicros(NOW_MS * 1000 + 1_000_000)).is_ok());
    assert_eq!(denial(conclude_at(UnixMicros(NOW_MS * 1000 + 1_000_000))), Denial::SignatureReused);
}
