//! Verifying leak reports: the ECDSA P-256 signatures of GitHub's secret scanning partner
//! program (and of any scanner that signs the same way).
//!
//! GitHub signs the raw body with ECDSA over P-256 and SHA-256 and sends the DER signature in
//! base64 (`Github-Public-Key-Signature`), naming its key in `Github-Public-Key-Identifier`.
//! keygate verifies against public keys the operator configured (PEM, SubjectPublicKeyInfo as
//! GitHub publishes them), never against a key the request brings.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use p256::ecdsa::signature::Verifier as _;
use p256::ecdsa::{Signature, VerifyingKey};
use p256::pkcs8::DecodePublicKey as _;
use std::fmt;

/// Why a report's signature was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LeakSignatureError {
    /// No configured key has the identifier the report names.
    #[error("unknown public key identifier")]
    UnknownKey,
    /// The signature is not base64 of a DER ECDSA signature.
    #[error("the signature is not base64 of a DER-encoded ECDSA signature")]
    Malformed,
    /// The signature does not match the body under the named key.
    #[error("the signature does not match")]
    Mismatch,
}

/// One configured public key of a reporter.
#[derive(Clone)]
pub struct ReporterKey {
    id: String,
    key: VerifyingKey,
}

impl ReporterKey {
    /// A key named `id` from a PEM `PUBLIC KEY` (SubjectPublicKeyInfo) block.
    ///
    /// # Errors
    /// A readable message when the PEM is not a P-256 public key.
    pub fn from_pem(id: &str, pem: &str) -> Result<Self, String> {
        let key = VerifyingKey::from_public_key_pem(pem.trim())
            .map_err(|e| format!("leak report key {id:?}: not a P-256 public key in PEM: {e}"))?;
        Ok(Self { id: id.to_owned(), key })
    }

    /// The identifier reports name it by.
    #[must_use]
    pub fn id(&self) -> &str {
        &self.id
    }
}

impl fmt::Debug for ReporterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReporterKey").field("id", &self.id).finish_non_exhaustive()
    }
}

/// Checks that `signature_b64` (base64 of a DER ECDSA P-256/SHA-256 signature) signs `message`
/// under the key of `keys` named `key_id`.
///
/// # Errors
/// [`LeakSignatureError`] saying which check failed.
pub fn verify_report(
    keys: &[ReporterKey],
    key_id: &str,
    signature_b64: &str,
    message: &[u8],
) -> Result<(), LeakSignatureError> {
    let key = keys.iter().find(|k| k.id == key_id).ok_or(LeakSignatureError::UnknownKey)?;
    let der = STANDARD.decode(signature_b64.trim()).map_err(|_| LeakSignatureError::Malformed)?;
    let sig = Signature::from_der(&der).map_err(|_| LeakSignatureError::Malformed)?;
    key.key.verify(message, &sig).map_err(|_| LeakSignatureError::Mismatch)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use p256::ecdsa::SigningKey;
    use p256::ecdsa::signature::Signer as _;
    use p256::pkcs8::{EncodePublicKey as _, LineEnding};

    fn pair(seed: u8) -> (SigningKey, ReporterKey) {
        let sk = SigningKey::from_slice(&[seed; 32]).unwrap();
        let pem = sk.verifying_key().to_public_key_pem(LineEnding::LF).unwrap();
        (sk, ReporterKey::from_pem("k1", &pem).unwrap())
    }

    fn sign(sk: &SigningKey, msg: &[u8]) -> String {
        let sig: Signature = sk.sign(msg);
        STANDARD.encode(sig.to_der().as_bytes())
    }

    #[test]
    fn accepts_only_the_configured_keys_signature_over_the_exact_bytes() {
        let (sk, key) = pair(7);
        let (other, _) = pair(9);
        let body = br#"[{"token":"x","type":"keygate_api_secret","url":"","source":"content"}]"#;
        let keys = [key];
        assert_eq!(verify_report(&keys, "k1", &sign(&sk, body), body), Ok(()));
        assert_eq!(verify_report(&keys, "k2", &sign(&sk, body), body), Err(LeakSignatureError::UnknownKey));
        assert_eq!(verify_report(&keys, "k1", &sign(&other, body), body), Err(LeakSignatureError::Mismatch));
        let mut changed = body.to_vec();
        changed[3] ^= 1;
        assert_eq!(verify_report(&keys, "k1", &sign(&sk, body), &changed), Err(LeakSignatureError::Mismatch));
        assert_eq!(verify_report(&keys, "k1", "not base64!", body), Err(LeakSignatureError::Malformed));
        assert_eq!(verify_report(&keys, "k1", "AAAA", body), Err(LeakSignatureError::Malformed));
    }

    #[test]
    fn refuses_a_pem_that_is_not_a_p256_key() {
        assert!(ReporterKey::from_pem("k", "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----").is_err());
        assert!(ReporterKey::from_pem("k", "").is_err());
    }
}
