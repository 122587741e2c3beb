//! Binance's documented HMAC-SHA256 vectors (reference `exchange-api-keys.md` section 1.2, and
//! the legacy `rest-api.md` "SIGNED Endpoint Examples for POST /api/v3/order"), through the
//! verifier.
//!
//! keygate key ids and secrets have their own format (`kg_…`, `kgs_…`), so Binance's secret is no
//! `HmacSecret`: these tests key a `Credential::Hmac` with its bytes directly and file it under a
//! freshly generated keygate id. What matters is that a payload signed exactly as Binance's
//! documentation signs it verifies.

use crate::support::{Keys, denial, entry, hmac_credential, hmac_hex, key_id, ms, request};
use keygate_auth::{Access, ApiKeyId, Denial, Rejection, VerifiedRequest};
use keygate_proto::UnixMicros;

const SECRET: &str = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j";
const TIMESTAMP_MS: u64 = 1_499_827_319_559;

const PAYLOAD: &str =
    "symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=0.1&recvWindow=5000&timestamp=1499827319559";
const HEX: &str = "c8db56825ae71d6d79447849e617115f4a920fa2acdcab2b053c4b2838bd6b71";

/// The same order with a percent-encoded full-width symbol (`１２３４５６`), as Binance signs since
/// percent-encoding before signing became mandatory.
const PAYLOAD2: &str = "symbol=%EF%BC%91%EF%BC%92%EF%BC%93%EF%BC%94%EF%BC%95%EF%BC%96&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=0.1&recvWindow=5000&timestamp=1499827319559";
const HEX2: &str = "e1353ec6b14d888f1164ae9af8228a3dbd508bc82eb867db8ab6046442f33ef3";

/// Binance's legacy "Example 3": the order split between query string and body; the documented
/// signature covers `query ‖ body` with no separator (`…timeInForce=GTCquantity=1…`).
const MIXED_QUERY: &str = "symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC";
const MIXED_BODY: &str = "quantity=1&price=0.1&recvWindow=5000&timestamp=1499827319559";
const MIXED_HEX: &str = "0fd168b8ddb4876a0358a8d14d0c9f3da0e9b20c5d52b2a00fcf7d1c602f9a77";

/// Right after the vectors' timestamp.
fn now() -> UnixMicros {
    ms(TIMESTAMP_MS + 1)
}

fn binance_key() -> (Keys, ApiKeyId) {
    let id = key_id(7);
    let mut keys = Keys::default();
    keys.insert(entry(id.clone(), hmac_credential(SECRET.as_bytes())));
    (keys, id)
}

fn verify(query: &str, body: &str) -> Result<VerifiedRequest, Rejection> {
    let (keys, id) = binance_key();
    crate::support::verifier().verify(&request(id.as_str(), query, body), Access::USER_DATA, &keys, now())
}

#[test]
fn documented_hmac_vectors_are_hmac_sha256_of_the_payloads() {
    assert_eq!(hmac_hex(SECRET.as_bytes(), PAYLOAD.as_bytes()), HEX);
    assert_eq!(hmac_hex(SECRET.as_bytes(), PAYLOAD2.as_bytes()), HEX2);
    let mixed = format!("{MIXED_QUERY}{MIXED_BODY}");
    assert_eq!(hmac_hex(SECRET.as_bytes(), mixed.as_bytes()), MIXED_HEX);
}

#[test]
fn documented_signature_in_the_query_verifies_in_lower_and_upper_case_hex() {
    for (payload, hex) in [(PAYLOAD, HEX), (PAYLOAD2, HEX2)] {
        for sig in [hex.to_owned(), hex.to_ascii_uppercase()] {
            let query = format!("{payload}&signature={sig}");
            let verified = verify(&query, "").unwrap();
            assert_eq!(verified.timestamp(), ms(TIMESTAMP_MS));
            assert_eq!(verified.params().get("recvWindow"), Some("5000"));
        }
    }
}

#[test]
fn documented_signature_with_mixed_case_hex_verifies() {
    let mixed: String =
        HEX.chars().enumerate().map(|(i, c)| if i % 2 == 0 { c.to_ascii_uppercase() } else { c }).collect();
    assert!(verify(&format!("{PAYLOAD}&signature={mixed}"), "").is_ok());
}

#[test]
fn verified_parameters_are_the_decoded_values_of_the_signed_payload() {
    let verified = verify(&format!("{PAYLOAD2}&signature={HEX2}"), "").unwrap();
    assert_eq!(verified.params().get("symbol"), Some("１２３４５６"));
    assert_eq!(verified.params().get("price"), Some("0.1"));
    assert_eq!(verified.params().signature(), Some(HEX2));
    assert_eq!(verified.params().iter().count(), 8, "signature is not among the parameters");
    assert_eq!(verified.account_id().0, 42);
}

#[test]
fn documented_payload_with_one_character_changed_is_a_bad_signature() {
    let changes = [
        ("price=0.1", "price=0.2"),
        ("quantity=1", "quantity=9"),
        ("side=BUY", "side=BUX"),
        ("symbol=LTCBTC", "symbol=LTCBTD"),
        ("timestamp=1499827319559", "timestamp=1499827319558"),
        ("recvWindow=5000", "recvWindow=5001"),
    ];
    for (from, to) in changes {
        let payload = PAYLOAD.replacen(from, to, 1);
        assert_ne!(payload, PAYLOAD);
        let query = format!("{payload}&signature={HEX}");
        assert_eq!(denial(verify(&query, "")), Denial::BadSignature, "{from} -> {to}");
    }
}

#[test]
fn documented_signature_with_one_hex_digit_changed_is_a_bad_signature() {
    for i in [0, 31, 63] {
        let mut sig = HEX.as_bytes().to_vec();
        sig[i] = if sig[i] == b'0' { b'1' } else { b'0' };
        let sig = String::from_utf8(sig).unwrap();
        let query = format!("{PAYLOAD}&signature={sig}");
        assert_eq!(denial(verify(&query, "")), Denial::BadSignature, "digit {i}");
    }
}

#[test]
fn documented_payload_changed_at_any_single_position_never_verifies() {
    for i in 0..PAYLOAD.len() {
        for replacement in [b'0', b'9', b'A', b'z', b'&', b'='] {
            let mut payload = PAYLOAD.as_bytes().to_vec();
            if payload[i] == replacement {
                continue;
            }
            payload[i] = replacement;
            let query = format!("{}&signature={HEX}", String::from_utf8(payload).unwrap());
            assert!(verify(&query, "").is_err(), "position {i} -> {}", char::from(replacement));
        }
    }
}

#[test]
fn documented_signature_verifies_with_every_parameter_in_the_body() {
    // Binance's "Example 2": the same payload as a form body gives the same signature.
    assert!(verify("", &format!("{PAYLOAD}&signature={HEX}")).is_ok());
    // The signature may sit in the query while the parameters are in the body, and vice versa.
    assert!(verify(&format!("signature={HEX}"), PAYLOAD).is_ok());
    assert!(verify(PAYLOAD, &format!("signature={HEX}")).is_ok());
}

#[test]
fn payload_split_between_query_and_body_is_signed_as_their_concatenation_without_separator() {
    // Binance's "Example 3".
    let verified = verify(MIXED_QUERY, &format!("{MIXED_BODY}&signature={MIXED_HEX}")).unwrap();
    assert_eq!(verified.params().get("timeInForce"), Some("GTC"));
    assert_eq!(verified.params().get("quantity"), Some("1"));
    // The documented vector itself, cut at an arbitrary byte: the signed bytes are unchanged.
    let (query, body) = PAYLOAD.split_at(PAYLOAD.find("&quantity").unwrap() - 1);
    assert_eq!(query.len() + body.len(), PAYLOAD.len());
    assert!(verify(query, &format!("{body}&signature={HEX}")).is_ok());
}

#[test]
fn signature_over_query_and_body_joined_with_an_ampersand_is_refused() {
    // A client that inserts `&` between query and body signs other bytes than Binance does.
    let joined = format!("{MIXED_QUERY}&{MIXED_BODY}");
    let sig = hmac_hex(SECRET.as_bytes(), joined.as_bytes());
    assert_eq!(sig, HEX, "query&body is the single-part payload");
    let result = verify(MIXED_QUERY, &format!("{MIXED_BODY}&signature={sig}"));
    assert_eq!(denial(result), Denial::BadSignature);
}

#[test]
fn documented_request_is_stale_once_its_recv_window_has_passed() {
    let (keys, id) = binance_key();
    let query = format!("{PAYLOAD}&signature={HEX}");
    let req = request(id.as_str(), &query, "");
    let v = crate::support::verifier();
    assert!(v.verify(&req, Access::USER_DATA, &keys, ms(TIMESTAMP_MS + 5000)).is_ok());
    let late = v.verify(&req, Access::USER_DATA, &keys, ms(TIMESTAMP_MS + 5001));
    assert_eq!(denial(late), Denial::TimestampStale { behind_ms: 5001 });
}
