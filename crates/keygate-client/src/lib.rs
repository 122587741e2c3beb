//! Signing and calling keygate (or any Binance Spot-compatible API) from Rust.
//!
//! Used by the key holder's tools and by keygate's own tests. It signs exactly the bytes it sends,
//! as Binance requires: the query string is built once, signed, and sent unchanged.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::Signer as _;
use ed25519_dalek::pkcs8::DecodePrivateKey as _;
use hmac::{Hmac, KeyInit as _, Mac as _};
use keygate_proto::{ErrorBody, UnixMillis};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use sha2::Sha256;
use std::fmt;
use std::sync::Arc;

/// Characters left unescaped in parameter values, as `urllib.parse.urlencode` leaves them.
const VALUE: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');

/// Percent-encodes a parameter value.
#[must_use]
pub fn encode(value: &str) -> String {
    utf8_percent_encode(value, VALUE).to_string()
}

/// Why a client could not be built or a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The private key could not be read.
    #[error("unreadable private key: {0}")]
    Key(String),
    /// The HTTP request failed.
    #[error("request failed: {0}")]
    Http(#[from] reqwest::Error),
}

/// Signs payloads for one key.
pub enum Signer {
    /// HMAC-SHA256 keyed with the secret text; hex signatures.
    Hmac(Hmac<Sha256>),
    /// Ed25519; base64 signatures.
    Ed25519(ed25519_dalek::SigningKey),
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Hmac(_) => "Signer::Hmac(<hidden>)",
            Self::Ed25519(_) => "Signer::Ed25519(<hidden>)",
        })
    }
}

impl Signer {
    /// An HMAC signer for `secret`.
    #[must_use]
    pub fn hmac(secret: &str) -> Self {
        match Hmac::<Sha256>::new_from_slice(secret.as_bytes()) {
            Ok(m) => Self::Hmac(m),
            Err(_) => unreachable!("HMAC takes keys of any length"),
        }
    }

    /// An Ed25519 signer from a PKCS#8 PEM private key.
    ///
    /// # Errors
    /// [`ClientError::Key`] when the PEM is not an unencrypted Ed25519 PKCS#8 key.
    pub fn ed25519_pem(pem: &str) -> Result<Self, ClientError> {
        ed25519_dalek::SigningKey::from_pkcs8_pem(pem).map(Self::Ed25519).map_err(|e| ClientError::Key(e.to_string()))
    }

    /// The signature of `payload` as it goes on the wire: hex for HMAC, percent-encoded base64
    /// for Ed25519.
    #[must_use]
    pub fn sign(&self, payload: &[u8]) -> String {
        match self {
            Self::Hmac(keyed) => {
                let mut mac = keyed.clone();
                mac.update(payload);
                hex::encode(mac.finalize().into_bytes())
            }
            Self::Ed25519(k) => encode(&STANDARD.encode(k.sign(payload).to_bytes())),
        }
    }
}

/// Builds `k=v&…` with values percent-encoded.
#[must_use]
pub fn query_string(params: &[(&str, &str)]) -> String {
    params.iter().map(|(k, v)| format!("{k}={}", encode(v))).collect::<Vec<_>>().join("&")
}

/// Appends `timestamp` to `params`, signs the result and returns the full query string.
#[must_use]
pub fn signed_query(params: &[(&str, &str)], timestamp: UnixMillis, signer: &Signer) -> String {
    let mut q = query_string(params);
    if !q.is_empty() {
        q.push('&');
    }
    q.push_str(&format!("timestamp={}", timestamp.0));
    let sig = signer.sign(q.as_bytes());
    q.push_str("&signature=");
    q.push_str(&sig);
    q
}

/// The answer to a call: HTTP status, headers of interest, and the JSON body.
#[derive(Debug, Clone)]
pub struct Answer {
    /// HTTP status.
    pub status: u16,
    /// `x-keygate-reason`, when the server disclosed one.
    pub reason: Option<String>,
    /// `x-request-id`.
    pub request_id: Option<String>,
    /// The body as JSON (`Null` when it was not JSON).
    pub body: serde_json::Value,
}

impl Answer {
    /// The Binance error, if the body is one.
    #[must_use]
    pub fn error(&self) -> Option<ErrorBody> {
        serde_json::from_value(self.body.clone()).ok()
    }
}

/// Source of the timestamp put on each request.
pub type TimeSource = Arc<dyn Fn() -> UnixMillis + Send + Sync>;

/// A signed-request client for one key.
pub struct Client {
    base_url: String,
    api_key: String,
    signer: Signer,
    time: TimeSource,
    http: reqwest::Client,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client for `base_url` (e.g. `http://127.0.0.1:8080`) signing as `api_key` with
    /// `signer`, stamping requests with `time`.
    #[must_use]
    pub fn new(base_url: impl Into<String>, api_key: impl Into<String>, signer: Signer, time: TimeSource) -> Self {
        Self { base_url: base_url.into(), api_key: api_key.into(), signer, time, http: reqwest::Client::new() }
    }

    async fn answer(res: reqwest::Response) -> Result<Answer, ClientError> {
        let status = res.status().as_u16();
        let header = |n: &str| res.headers().get(n).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let reason = header("x-keygate-reason");
        let request_id = header("x-request-id");
        let bytes = res.bytes().await?;
        Ok(Answer {
            status,
            reason,
            request_id,
            body: serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
        })
    }

    /// A signed request with every parameter in the query string.
    ///
    /// # Errors
    /// [`ClientError::Http`] when the server cannot be reached.
    pub async fn signed(
        &self,
        method: reqwest::Method,
        path: &str,
        params: &[(&str, &str)],
    ) -> Result<Answer, ClientError> {
        let q = signed_query(params, (self.time)(), &self.signer);
        self.raw(method, path, &q, "").await
    }

    /// Sends exactly `query` and `body`, with this client's key header: for tests that craft bytes.
    ///
    /// # Errors
    /// [`ClientError::Http`] when the server cannot be reached.
    pub async fn raw(
        &self,
        method: reqwest::Method,
        path: &str,
        query: &str,
        body: &str,
    ) -> Result<Answer, ClientError> {
        let url = if query.is_empty() {
            format!("{}{path}", self.base_url)
        } else {
            format!("{}{path}?{query}", self.base_url)
        };
        let mut req = self.http.request(method, url).header("X-MBX-APIKEY", &self.api_key);
        if !body.is_empty() {
            req = req.header("Content-Type", "application/x-www-form-urlencoded").body(body.to_owned());
        }
        Self::answer(req.send().await?).await
    }

    /// The API key sent as `X-MBX-APIKEY`, for tests that send requests by hand.
    #[must_use]
    pub fn api_key(&self) -> &str {
        &self.api_key
    }

    /// The signer, for tests that sign by hand.
    #[must_use]
    pub fn signer(&self) -> &Signer {
        &self.signer
    }

    /// The current timestamp of this client.
    #[must_use]
    pub fn now(&self) -> UnixMillis {
        (self.time)()
    }
}
