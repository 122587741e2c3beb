//! Webhook signing per the Standard Webhooks specification 1.0.0 (the `v1` scheme), and the rule
//! for which addresses webhook deliveries may go to.
//!
//! A delivery carries `webhook-id` (the event's id, unchanged on retries), `webhook-timestamp`
//! (Unix seconds of this attempt) and `webhook-signature`: `v1,` followed by the base64 of
//! HMAC-SHA256 over `{id}.{timestamp}.{body}` keyed with the endpoint's secret. The secret is
//! shown to the owner once, as `whsec_` + base64 of its bytes, which is what receivers' libraries
//! (Python `standardwebhooks`, Rust `standardwebhooks`, Svix) take.
//!
//! Spec: <https://github.com/standard-webhooks/standard-webhooks/blob/main/spec/standard-webhooks.md>
//! ("Signature scheme", "Symmetric signatures").

use crate::entropy::{Entropy, EntropyError};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{KeyInit as _, Mac as _};
use std::fmt;
use std::net::IpAddr;
use zeroize::Zeroizing;

/// Bytes of a new endpoint secret: 32 (the spec allows 24 to 64).
pub const SECRET_LEN: usize = 32;

/// The prefix of a secret as shown to owners.
pub const SECRET_PREFIX: &str = "whsec_";

/// An endpoint's signing secret. `Debug` prints `<hidden>`; zeroized on drop.
#[derive(Clone)]
pub struct WebhookSecret(Zeroizing<Vec<u8>>);

impl WebhookSecret {
    /// A fresh random secret.
    ///
    /// # Errors
    /// [`EntropyError`] if the entropy source fails.
    pub fn generate(entropy: &mut dyn Entropy) -> Result<Self, EntropyError> {
        let mut bytes = Zeroizing::new(vec![0u8; SECRET_LEN]);
        entropy.fill(&mut bytes)?;
        Ok(Self(bytes))
    }

    /// A secret from its raw bytes (as the store gives them back).
    #[must_use]
    pub fn from_bytes(bytes: Zeroizing<Vec<u8>>) -> Self {
        Self(bytes)
    }

    /// Parses `whsec_<base64>` (or bare base64), as receivers' libraries do.
    ///
    /// # Errors
    /// When the text is not base64 or decodes to fewer than 24 or more than 64 bytes.
    pub fn parse(text: &str) -> Result<Self, &'static str> {
        let b64 = text.strip_prefix(SECRET_PREFIX).unwrap_or(text);
        let bytes = Zeroizing::new(STANDARD.decode(b64).map_err(|_| "a webhook secret is whsec_ followed by base64")?);
        if !(24..=64).contains(&bytes.len()) {
            return Err("a webhook secret holds 24 to 64 bytes");
        }
        Ok(Self(bytes))
    }

    /// The raw bytes (to seal for storage).
    #[must_use]
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// The form shown to the owner once: `whsec_` + base64.
    #[must_use]
    pub fn display(&self) -> Zeroizing<String> {
        Zeroizing::new(format!("{SECRET_PREFIX}{}", STANDARD.encode(self.0.as_slice())))
    }

    /// The `webhook-signature` header value for message `id` sent at `timestamp` (Unix
    /// seconds) with `body`: `v1,<base64 HMAC-SHA256(secret, "{id}.{timestamp}.{body}")>`.
    #[must_use]
    pub fn sign(&self, id: &str, timestamp: u64, body: &[u8]) -> String {
        let mut mac = <hmac::Hmac<sha2::Sha256>>::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable!("HMAC takes a key of any length"));
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
    }
}

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebhookSecret(<hidden>)")
    }
}

/// True when `ip` is an address on the public internet: not loopback, private (RFC 1918, IPv6
/// unique local), link-local, carrier-grade NAT, unspecified, multicast, broadcast,
/// documentation or otherwise reserved, and not an IPv4 address mapped into IPv6 that is one of
/// those. Webhook deliveries go only to such addresses unless the operator allows private ones,
/// so an owner cannot make the server probe its own network (server-side request forgery).
#[must_use]
pub fn is_public_address(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_multicast()
                || v4.is_broadcast()
                || v4.is_documentation()
                || o[0] == 0
                || (o[0] == 100 && (64..128).contains(&o[1]))
                || (o[0] == 192 && o[1] == 0 && o[2] == 0)
                || (o[0] == 198 && (18..20).contains(&o[1]))
                || (o[0] == 192 && o[1] == 88 && o[2] == 99)
                || o[0] >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public_address(IpAddr::V4(v4));
            }
            let s = v6.segments();
            // Only global unicast (2000::/3) is public; everything else (IPv4-compatible and
            // -translated forms, site-local, discard-only, ULA, link-local, NAT64) is not
            // (outside review). Inside it: IETF protocol assignments (2001::/23, Teredo among
            // them), documentation (2001:db8::/32) and 6to4 (2002::/16) are not either.
            (s[0] & 0xe000) == 0x2000
                && !(s[0] == 0x2001 && s[1] < 0x0200)
                && !(s[0] == 0x2001 && s[1] == 0x0db8)
                && s[0] != 0x2002
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn signs_the_standard_webhooks_test_vector() {
        // The specification's example, recomputed (shared/reference/hygiene.md section 1).
        let secret = WebhookSecret::parse("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD").unwrap();
        let sig = secret.sign(
            "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk",
            1_649_367_553,
            br#"{"email":"test@example.com","username":"test_user"}"#,
        );
        assert_eq!(sig, "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=");
        assert_eq!(secret.display().as_str(), "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD");
    }

    #[test]
    fn secrets_are_random_hidden_and_of_the_allowed_size() {
        struct Counting(u8);
        impl Entropy for Counting {
            fn fill(&mut self, dest: &mut [u8]) -> Result<(), EntropyError> {
                for b in dest {
                    self.0 = self.0.wrapping_add(1);
                    *b = self.0;
                }
                Ok(())
            }
        }
        let s = WebhookSecret::generate(&mut Counting(0)).unwrap();
        assert_eq!(s.expose().len(), SECRET_LEN);
        assert_eq!(format!("{s:?}"), "WebhookSecret(<hidden>)");
        let round = WebhookSecret::parse(&s.display()).unwrap();
        assert_eq!(round.expose(), s.expose());
        assert!(WebhookSecret::parse("whsec_AAAA").is_err(), "too short");
        assert!(WebhookSecret::parse("whsec_not base64!").is_err());
    }

    #[test]
    fn only_public_addresses_are_public() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "255.255.255.255",
            "224.0.0.1",
            "192.0.2.1",
            "::1",
            "::",
            "fc00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "2001:db8::1",
            // The outside review's: IPv4-compatible and -translated, Teredo, site-local,
            // discard-only, 6to4 and its relay.
            "::127.0.0.1",
            "::ffff:0:7f00:1",
            "2001::1",
            "fec0::1",
            "100::1",
            "2002:7f00:1::1",
            "192.88.99.1",
        ] {
            assert!(!is_public_address(private.parse().unwrap()), "{private}");
        }
        for public in ["8.8.8.8", "1.1.1.1", "140.82.112.3", "2606:4700:4700::1111", "2a00:1450::1", "::ffff:8.8.8.8"] {
            assert!(is_public_address(public.parse().unwrap()), "{public}");
        }
    }
}
