//! Shared helpers: a key cache, deterministic key material, signing, and a ready-made HMAC setup.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::Signer as _;
use hmac::{Hmac, KeyInit as _, Mac as _};
use keygate_auth::{
    Access, AccountId, ApiKeyId, Credential, Denial, Entropy, EntropyError, HmacSecret, KeyEntry, KeyLookup, KeyStatus,
    Limits, Permission, Permissions, Rejection, Restrictions, UnverifiedRequest, VerifiedRequest, Verifier,
};
use keygate_proto::{UnixMicros, UnixMillis};
use sha2::Sha256;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

/// The server time most tests run at (2023-11-14T22:13:20Z), in milliseconds.
pub const NOW_MS: u64 = 1_700_000_000_000;

/// The peer address of requests that do not choose one (TEST-NET-3).
pub const PEER: IpAddr = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7));

/// Milliseconds as the verifier's microsecond clock.
pub fn ms(ms: u64) -> UnixMicros {
    UnixMicros(ms * 1000)
}

/// A deterministic entropy source (SplitMix64), so generated key ids and secrets are reproducible
/// from a seed. Never for production: its output is predictable by design.
pub struct SeededEntropy(u64);

impl SeededEntropy {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

impl Entropy for SeededEntropy {
    fn fill(&mut self, dest: &mut [u8]) -> Result<(), EntropyError> {
        for chunk in dest.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
        Ok(())
    }
}

/// A fresh keygate key id derived from `seed`.
pub fn key_id(seed: u64) -> ApiKeyId {
    ApiKeyId::generate(&mut SeededEntropy::new(seed)).unwrap()
}

/// A fresh keygate HMAC secret derived from `seed`.
pub fn hmac_secret(seed: u64) -> HmacSecret {
    // Offset the seed so a key id and a secret from the same seed share no randomness.
    HmacSecret::generate(&mut SeededEntropy::new(seed ^ 0x005E_C2E7)).unwrap()
}

/// The key cache of the tests: a plain map from key id to entry.
#[derive(Default)]
pub struct Keys(HashMap<String, Arc<KeyEntry>>);

impl Keys {
    /// Adds `entry` under its id and returns the shared handle.
    pub fn insert(&mut self, entry: KeyEntry) -> Arc<KeyEntry> {
        let entry = Arc::new(entry);
        self.0.insert(entry.id.as_str().to_owned(), Arc::clone(&entry));
        entry
    }
}

impl KeyLookup for Keys {
    fn lookup(&self, api_key: &str) -> Option<Arc<KeyEntry>> {
        self.0.get(api_key).cloned()
    }
}

/// An active key of account 42 that may read and trade, with no restrictions.
pub fn entry(id: ApiKeyId, credential: Credential) -> KeyEntry {
    KeyEntry {
        id,
        account_id: AccountId(42),
        credential,
        permissions: Permissions::with(&[Permission::Trade]),
        restrictions: Restrictions::default(),
        status: KeyStatus::Active,
        created_at: UnixMillis(NOW_MS - 86_400_000),
        app_id: None,
        replay_use: Default::default(),
        bad_signature: Default::default(),
    }
}

/// An HMAC credential keyed with arbitrary bytes (e.g. a Binance secret, which is no `HmacSecret`).
pub fn hmac_credential(secret: &[u8]) -> Credential {
    Credential::Hmac(Hmac::<Sha256>::new_from_slice(secret).unwrap())
}

/// Lower-case hex HMAC-SHA256 of `payload` under `secret`, as Binance clients compute it.
pub fn hmac_hex(secret: &[u8], payload: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap();
    mac.update(payload);
    hex::encode(mac.finalize().into_bytes())
}

/// Base64 Ed25519 signature of `payload`.
pub fn ed25519_b64(key: &ed25519_dalek::SigningKey, payload: &[u8]) -> String {
    STANDARD.encode(key.sign(payload).to_bytes())
}

/// Percent-encodes the three base64 characters that are not URL-safe, as Binance requires.
pub fn percent_encode_b64(b64: &str) -> String {
    b64.replace('+', "%2B").replace('/', "%2F").replace('=', "%3D")
}

/// The raw request as a client would send it from `peer`.
pub fn request_from<'a>(peer: IpAddr, api_key: &'a str, query: &'a str, body: &'a str) -> UnverifiedRequest<'a> {
    UnverifiedRequest {
        api_key: Some(api_key.as_bytes()),
        query: query.as_bytes(),
        body: body.as_bytes(),
        peer,
        endpoint: ORDER_ENDPOINT,
    }
}

/// Where [`request`] sends: Binance's order endpoint.
pub const ORDER_ENDPOINT: keygate_auth::Endpoint<'static> =
    keygate_auth::Endpoint { method: "POST", path: "/api/v3/order" };

/// The raw request as a client would send it from [`PEER`].
pub fn request<'a>(api_key: &'a str, query: &'a str, body: &'a str) -> UnverifiedRequest<'a> {
    request_from(PEER, api_key, query, body)
}

/// A verifier with Binance's limits and room for plenty of single-use signatures.
pub fn verifier() -> Verifier {
    Verifier::new(Limits::default(), 4096)
}

/// A typical order payload (without signature) at `timestamp_ms`.
pub fn order(timestamp_ms: u64) -> String {
    format!("symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=100&timestamp={timestamp_ms}")
}

/// The denial of a result that must be a rejection.
pub fn denial(result: Result<VerifiedRequest, Rejection>) -> Denial {
    result.unwrap_err().denial
}

/// One genuine keygate HMAC key (`kg_…` id, `kgs_…` secret) in its own cache and verifier: the
/// setup most tests share. `configure` adjusts the entry (permissions, status, restrictions)
/// before it is cached.
pub struct HmacKey {
    pub keys: Keys,
    pub id: ApiKeyId,
    pub secret: HmacSecret,
    pub verifier: Verifier,
}

impl HmacKey {
    pub fn new(configure: impl FnOnce(&mut KeyEntry)) -> Self {
        Self::with_seed(1, configure)
    }

    pub fn with_seed(seed: u64, configure: impl FnOnce(&mut KeyEntry)) -> Self {
        let id = key_id(seed);
        let secret = hmac_secret(seed);
        let mut e = entry(id.clone(), Credential::hmac(&secret));
        configure(&mut e);
        let mut keys = Keys::default();
        keys.insert(e);
        Self { keys, id, secret, verifier: verifier() }
    }

    /// Hex signature of `payload` with this key's secret.
    pub fn sign(&self, payload: &str) -> String {
        hmac_hex(self.secret.expose().as_bytes(), payload.as_bytes())
    }

    /// `payload&signature=<hex>`.
    pub fn signed(&self, payload: &str) -> String {
        format!("{payload}&signature={}", self.sign(payload))
    }

    /// Verifies a request from [`PEER`] with this key's id in the header.
    pub fn verify(
        &self,
        query: &str,
        body: &str,
        access: Access,
        now: UnixMicros,
    ) -> Result<VerifiedRequest, Rejection> {
        self.verify_from(PEER, query, body, access, now)
    }

    /// Verifies a request from `peer` with this key's id in the header.
    pub fn verify_from(
        &self,
        peer: IpAddr,
        query: &str,
        body: &str,
        access: Access,
        now: UnixMicros,
    ) -> Result<VerifiedRequest, Rejection> {
        self.verifier.verify(&request_from(peer, self.id.as_str(), query, body), access, &self.keys, now)
    }
}
