//! Ed25519 and RSA signatures made by OpenSSL (see `fixtures/README.md` for the commands), the
//! reference's deterministic Ed25519 vector, and the public-key parsers.
//!
//! Signatures from an independent implementation guard against a verifier that only agrees with
//! keygate's own signing code.

use crate::support::{Keys, NOW_MS, denial, ed25519_b64, entry, key_id, ms, percent_encode_b64, request, verifier};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use keygate_auth::{Access, Credential, Denial, KeyType, PublicKey, PublicKeyError, Rejection, VerifiedRequest};
use keygate_proto::UnixMicros;

const ED25519_PEM: &str = include_str!("fixtures/ed25519_public.pem");
const ED25519_PAYLOAD: &str = include_str!("fixtures/ed25519_payload.txt");
const ED25519_SIG: &str = include_str!("fixtures/ed25519_signature.b64");
const RSA2048_PEM: &str = include_str!("fixtures/rsa2048_public.pem");
const RSA2048_PKCS1_PEM: &str = include_str!("fixtures/rsa2048_public_pkcs1.pem");
const RSA_PAYLOAD: &str = include_str!("fixtures/rsa_payload.txt");
const RSA_SIG: &str = include_str!("fixtures/rsa2048_signature.b64");
const RSA1024_PEM: &str = include_str!("fixtures/rsa1024_public.pem");
const RSA1024_PRIVATE_PKCS8: &str = include_str!("fixtures/rsa1024_private.pem");
const RSA1024_PRIVATE_PKCS1: &str = include_str!("fixtures/rsa1024_private_pkcs1.pem");

/// The reference's deterministic vector (section 1.2): seed `00 01 … 1f`.
const REF_PUBLIC_DER_B64: &str = "MCowBQYDK2VwAyEAA6EHv/POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg=";
const REF_PAYLOAD: &str =
    "symbol=BTCUSDT&side=SELL&type=LIMIT&timeInForce=GTC&quantity=1&price=0.2&timestamp=1668481559918&recvWindow=5000";
const REF_SIG: &str = "m5loLRxgkb9HyW0wkZ4KNrpck881bx5D0OrKNnPklvk4tlGjEJkhiP9DoyC0sc1lXA/TWugjVPrMb/bfNdmdBw==";
const REF_SIG_URL: &str =
    "m5loLRxgkb9HyW0wkZ4KNrpck881bx5D0OrKNnPklvk4tlGjEJkhiP9DoyC0sc1lXA%2FTWugjVPrMb%2FbfNdmdBw%3D%3D";
const REF_TIMESTAMP_MS: u64 = 1_668_481_559_918;

fn ref_seed() -> [u8; 32] {
    std::array::from_fn(|i| u8::try_from(i).unwrap())
}

/// Fixture text without the trailing newline an editor may add (the signed payloads have none).
fn fixture(text: &str) -> &str {
    text.trim_end()
}

fn verify_with(credential: Credential, query: &str, body: &str, now: UnixMicros) -> Result<VerifiedRequest, Rejection> {
    let id = key_id(11);
    let mut keys = Keys::default();
    keys.insert(entry(id.clone(), credential));
    verifier().verify(&request(id.as_str(), query, body), Access::USER_DATA, &keys, now)
}

fn ed25519_fixture_credential() -> Credential {
    PublicKey::parse_ed25519(ED25519_PEM).unwrap().credential().unwrap()
}

fn rsa_fixture_credential() -> Credential {
    PublicKey::parse_rsa(RSA2048_PEM).unwrap().credential().unwrap()
}

fn ed25519_private_pem(seed: &[u8; 32]) -> String {
    // PKCS#8 v1 for Ed25519 is a fixed 16-byte prefix followed by the seed (RFC 8410 section 7).
    let mut der = hex::decode("302e020100300506032b657004220420").unwrap();
    der.extend_from_slice(seed);
    format!("-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n", STANDARD.encode(der))
}

#[test]
fn openssl_signatures_contain_every_character_that_needs_percent_encoding() {
    let sig = fixture(ED25519_SIG);
    assert!(sig.contains('+') && sig.contains('/') && sig.ends_with("=="), "{sig}");
    assert_eq!(STANDARD.decode(sig).unwrap().len(), 64);
    assert_eq!(STANDARD.decode(fixture(RSA_SIG)).unwrap().len(), 256);
    let encoded = percent_encode_b64(sig);
    assert!(encoded.contains("%2B") && encoded.contains("%2F") && encoded.ends_with("%3D%3D"));
}

#[test]
fn openssl_ed25519_signature_verifies_percent_encoded_in_the_query() {
    let query = format!("{}&signature={}", fixture(ED25519_PAYLOAD), percent_encode_b64(fixture(ED25519_SIG)));
    let verified = verify_with(ed25519_fixture_credential(), &query, "", ms(NOW_MS + 1)).unwrap();
    assert_eq!(verified.params().get("price"), Some("42000.5"));
    assert_eq!(verified.params().signature(), Some(fixture(ED25519_SIG)));
}

#[test]
fn openssl_ed25519_signature_verifies_percent_encoded_in_the_body() {
    let body = format!("{}&signature={}", fixture(ED25519_PAYLOAD), percent_encode_b64(fixture(ED25519_SIG)));
    assert!(verify_with(ed25519_fixture_credential(), "", &body, ms(NOW_MS + 1)).is_ok());
    // Signature first in the query, parameters in the body.
    let query = format!("signature={}", percent_encode_b64(fixture(ED25519_SIG)));
    assert!(verify_with(ed25519_fixture_credential(), &query, fixture(ED25519_PAYLOAD), ms(NOW_MS + 1)).is_ok());
}

#[test]
fn unencoded_base64_signature_keeps_its_plus_signs() {
    // Inside `signature` a `+` is base64, not a form-encoded space (params.rs module docs).
    let query = format!("{}&signature={}", fixture(ED25519_PAYLOAD), fixture(ED25519_SIG));
    assert!(verify_with(ed25519_fixture_credential(), &query, "", ms(NOW_MS + 1)).is_ok());
}

#[test]
fn openssl_ed25519_signature_over_another_payload_is_refused() {
    let payload = fixture(ED25519_PAYLOAD).replace("quantity=0.01", "quantity=0.02");
    let query = format!("{payload}&signature={}", percent_encode_b64(fixture(ED25519_SIG)));
    assert_eq!(denial(verify_with(ed25519_fixture_credential(), &query, "", ms(NOW_MS + 1))), Denial::BadSignature);
}

#[test]
fn malformed_ed25519_signatures_are_bad_signatures_not_errors_of_another_kind() {
    let sig = fixture(ED25519_SIG);
    let truncated = &sig[..84];
    let hex_instead = "ab".repeat(32);
    // 66 bytes fills the verifier's decode buffer exactly; 72 bytes overflows it.
    let sixty_six = STANDARD.encode([1u8; 66]);
    let seventy_two = STANDARD.encode([1u8; 72]);
    let rsa_length = fixture(RSA_SIG);
    for bad in [truncated, hex_instead.as_str(), sixty_six.as_str(), seventy_two.as_str(), rsa_length, "=="] {
        let query = format!("{}&signature={}", fixture(ED25519_PAYLOAD), percent_encode_b64(bad));
        let result = verify_with(ed25519_fixture_credential(), &query, "", ms(NOW_MS + 1));
        assert_eq!(denial(result), Denial::BadSignature, "{bad}");
    }
}

#[test]
fn reference_ed25519_vector_verifies_percent_encoded_in_query_and_body() {
    assert_eq!(percent_encode_b64(REF_SIG), REF_SIG_URL);
    let key = PublicKey::parse_ed25519(REF_PUBLIC_DER_B64).unwrap();
    let now = ms(REF_TIMESTAMP_MS + 1);
    let query = format!("{REF_PAYLOAD}&signature={REF_SIG_URL}");
    assert!(verify_with(key.credential().unwrap(), &query, "", now).is_ok());
    assert!(verify_with(key.credential().unwrap(), "", &query, now).is_ok());
    let tampered = query.replace("price=0.2", "price=0.3");
    assert_eq!(denial(verify_with(key.credential().unwrap(), &tampered, "", now)), Denial::BadSignature);
}

#[test]
fn reference_ed25519_vector_matches_signing_with_its_seed() {
    let sk = ed25519_dalek::SigningKey::from_bytes(&ref_seed());
    assert_eq!(ed25519_b64(&sk, REF_PAYLOAD.as_bytes()), REF_SIG);
    let der = STANDARD.decode(REF_PUBLIC_DER_B64).unwrap();
    assert_eq!(&der[12..], sk.verifying_key().as_bytes());
}

#[test]
fn openssl_rsa_signature_verifies_percent_encoded_in_the_query_and_in_the_body() {
    let signed = format!("{}&signature={}", fixture(RSA_PAYLOAD), percent_encode_b64(fixture(RSA_SIG)));
    assert!(verify_with(rsa_fixture_credential(), &signed, "", ms(NOW_MS + 1)).is_ok());
    assert!(verify_with(rsa_fixture_credential(), "", &signed, ms(NOW_MS + 1)).is_ok());
    // The PKCS#1 form of the same key verifies the same signature.
    let pkcs1 = PublicKey::parse_rsa(RSA2048_PKCS1_PEM).unwrap().credential().unwrap();
    assert!(verify_with(pkcs1, &signed, "", ms(NOW_MS + 1)).is_ok());
}

#[test]
fn openssl_rsa_signature_over_another_payload_or_altered_is_refused() {
    let payload = fixture(RSA_PAYLOAD).replace("price=2100", "price=2101");
    let query = format!("{payload}&signature={}", percent_encode_b64(fixture(RSA_SIG)));
    assert_eq!(denial(verify_with(rsa_fixture_credential(), &query, "", ms(NOW_MS + 1))), Denial::BadSignature);

    let mut raw = STANDARD.decode(fixture(RSA_SIG)).unwrap();
    raw[100] ^= 1;
    let flipped = STANDARD.encode(&raw);
    let short = STANDARD.encode(&raw[1..]);
    for sig in [flipped, short, fixture(ED25519_SIG).to_owned()] {
        let query = format!("{}&signature={}", fixture(RSA_PAYLOAD), percent_encode_b64(&sig));
        let result = verify_with(rsa_fixture_credential(), &query, "", ms(NOW_MS + 1));
        assert_eq!(denial(result), Denial::BadSignature);
    }
}

#[test]
fn parse_ed25519_accepts_pem_base64_raw_and_base64_der_alike() {
    let sk = ed25519_dalek::SigningKey::from_bytes(&ref_seed());
    let raw_b64 = STANDARD.encode(sk.verifying_key().as_bytes());
    let from_der = PublicKey::parse_ed25519(REF_PUBLIC_DER_B64).unwrap();
    let from_raw = PublicKey::parse_ed25519(&raw_b64).unwrap();
    let from_pem = PublicKey::parse_ed25519(from_der.pem()).unwrap();
    assert_eq!(from_der, from_raw);
    assert_eq!(from_der, from_pem);
    assert_eq!(from_der.key_type(), KeyType::Ed25519);
    assert_eq!(from_der.pem(), format!("-----BEGIN PUBLIC KEY-----\n{REF_PUBLIC_DER_B64}\n-----END PUBLIC KEY-----\n"));

    // OpenSSL's PEM file is already canonical.
    let openssl = PublicKey::parse_ed25519(ED25519_PEM).unwrap();
    assert_eq!(openssl.pem(), ED25519_PEM);
    // Binance's FAQ sample key (base64 DER).
    assert!(PublicKey::parse_ed25519("MCowBQYDK2VwAyEAgmDRTtj2FA+wzJUIlAL9ly1eovjLBu7uXUFR+jFULmg=").is_ok());
}

#[test]
fn parse_ed25519_tolerates_surrounding_whitespace_and_crlf_line_endings() {
    assert!(PublicKey::parse_ed25519(&format!("  \n{ED25519_PEM}\n\n")).is_ok());
    assert!(PublicKey::parse_ed25519(&format!(" {REF_PUBLIC_DER_B64}\n")).is_ok());
    let crlf = ED25519_PEM.replace('\n', "\r\n");
    assert_eq!(PublicKey::parse_ed25519(&crlf).unwrap().pem(), ED25519_PEM);
}

#[test]
fn parse_ed25519_refuses_a_private_key_with_a_clear_error() {
    let err = PublicKey::parse_ed25519(&ed25519_private_pem(&ref_seed())).unwrap_err();
    assert_eq!(err, PublicKeyError::PrivateKeyGiven);
    assert!(err.to_string().contains("PRIVATE key"), "{err}");
}

#[test]
fn parse_ed25519_refuses_other_keys_and_garbage() {
    let short = STANDARD.encode([7u8; 31]);
    // The identity point: a small-order ("weak") key anyone can forge signatures for.
    let mut weak = [0u8; 32];
    weak[0] = 1;
    let weak = STANDARD.encode(weak);
    for bad in [
        "",
        "not base64!",
        short.as_str(),
        weak.as_str(),
        RSA2048_PEM,
        "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----",
    ] {
        assert_eq!(PublicKey::parse_ed25519(bad), Err(PublicKeyError::Ed25519Unreadable), "{bad:?}");
    }
}

#[test]
fn parse_rsa_accepts_spki_and_pkcs1_pem_alike() {
    let spki = PublicKey::parse_rsa(RSA2048_PEM).unwrap();
    let pkcs1 = PublicKey::parse_rsa(RSA2048_PKCS1_PEM).unwrap();
    assert_eq!(spki, pkcs1);
    assert_eq!(spki.key_type(), KeyType::Rsa);
    assert_eq!(spki.pem(), RSA2048_PEM);
    assert_eq!(spki.credential().unwrap().key_type(), KeyType::Rsa);
}

#[test]
fn parse_rsa_refuses_a_1024_bit_key_naming_its_size() {
    let err = PublicKey::parse_rsa(RSA1024_PEM).unwrap_err();
    assert_eq!(err, PublicKeyError::RsaSize(1024));
    assert_eq!(err.to_string(), "RSA keys must be 2048 or 4096 bits, this one has 1024");
}

#[test]
fn parse_rsa_refuses_a_private_key_with_a_clear_error() {
    for private in [RSA1024_PRIVATE_PKCS8, RSA1024_PRIVATE_PKCS1] {
        let err = PublicKey::parse_rsa(private).unwrap_err();
        assert_eq!(err, PublicKeyError::PrivateKeyGiven);
        let msg = err.to_string();
        assert!(msg.contains("PRIVATE key") && msg.contains("public key"), "{msg}");
    }
}

#[test]
fn parse_rsa_refuses_an_ed25519_key_and_garbage() {
    for bad in [ED25519_PEM, REF_PUBLIC_DER_B64, "", "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----"] {
        assert_eq!(PublicKey::parse_rsa(bad), Err(PublicKeyError::RsaUnreadable), "{bad:?}");
    }
}

#[test]
fn stored_public_keys_read_back_equal() {
    for key in [PublicKey::parse_ed25519(ED25519_PEM).unwrap(), PublicKey::parse_rsa(RSA2048_PKCS1_PEM).unwrap()] {
        assert_eq!(PublicKey::from_stored(key.key_type(), key.pem()).unwrap(), key);
    }
}
