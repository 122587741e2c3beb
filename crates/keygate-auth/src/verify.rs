//! Verification of one signed request: the hot path.
//!
//! Order of checks, and why:
//! 1. API key header present and well-formed (checksum): -2014, no store access for garbage.
//! 2. Parameters parsed by the one strict parser: -1100/-1101/-1102.
//! 3. Key looked up in the cache: unknown is -2015.
//! 4. `timestamp`, `recvWindow` and the time window: -1102/-1131/-1021, before any cryptography so
//!    stale traffic is cheap to refuse.
//! 5. Signature over the bytes as sent: -1022.
//! 6. Only now the key's own state: status, expiry, IP allowlist, permission, symbol allowlist,
//!    single use. All are -2015 on the wire; the specific reason may be disclosed because the
//!    caller has proved possession of the key.

use crate::account::AccountId;
use crate::credential::Credential;
use crate::ed25519_batch::Ed25519Check;
use crate::keyfmt::ApiKeyId;
use crate::params::{ParamError, Params};
use crate::permission::{Permission, Permissions};
use crate::replay::{Endpoint, KeyReplayUse, ReplayGuard, ReplayOutcome};
use crate::restriction::Restrictions;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::Mac as _;
use keygate_proto::{UnixMicros, UnixMillis};
use serde::{Deserialize, Serialize};
use std::net::IpAddr;
use std::sync::Arc;

/// Lifecycle state of a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyStatus {
    /// Usable.
    Active,
    /// Switched off by its owner or an operator; may be switched on again.
    Disabled,
    /// Permanently unusable.
    Revoked,
    /// Past its expiry, as recorded by the expiry policy.
    Expired,
}

impl KeyStatus {
    /// Lower-case name for tables and JSON.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Disabled => "disabled",
            Self::Revoked => "revoked",
            Self::Expired => "expired",
        }
    }
}

/// Everything the verifier needs to know about one key, as held in the in-memory cache.
#[derive(Debug)]
pub struct KeyEntry {
    /// The public key id.
    pub id: ApiKeyId,
    /// The owning account.
    pub account_id: AccountId,
    /// What verifies its signatures.
    pub credential: Credential,
    /// What it may do.
    pub permissions: Permissions,
    /// Where and how it may be used.
    pub restrictions: Restrictions,
    /// Lifecycle state.
    pub status: KeyStatus,
    /// Creation time (reported by `apiRestrictions`).
    pub created_at: UnixMillis,
    /// The connected app holding the key (issue #15), reported by `apiRestrictions`.
    pub app_id: Option<String>,
    /// Its share of the replay guard, counted for the per-key quota.
    pub replay_use: KeyReplayUse,
    /// When it last sent a bad Ed25519 signature: its signatures are then checked alone for a
    /// while, not batched.
    pub bad_signature: crate::ed25519_batch::RecentBadSignature,
}

/// Finds a key by its id without I/O: the server's key cache implements this.
pub trait KeyLookup {
    /// The entry for `api_key`, if the key exists.
    fn lookup(&self, api_key: &str) -> Option<Arc<KeyEntry>>;
}

/// What an endpoint demands of a key: the permission implied by its security type, and whether
/// its signatures are single-use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Access {
    /// The permission the key must hold.
    pub permission: Permission,
    /// True for TRADE and withdrawal endpoints (see [`ReplayGuard`]).
    pub single_use: bool,
}

impl Access {
    /// Binance `USER_DATA`: needs `read`.
    pub const USER_DATA: Self = Self { permission: Permission::Read, single_use: false };
    /// Binance `TRADE`: needs `trade`; single-use signatures.
    pub const TRADE: Self = Self { permission: Permission::Trade, single_use: true };
    /// Withdrawals: need `withdraw` (and hence an IP allowlist); single-use signatures.
    pub const WITHDRAW: Self = Self { permission: Permission::Withdraw, single_use: true };
}

/// Bounds the verifier applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest accepted body in bytes (the server enforces it before reading, too).
    pub max_body: usize,
    /// How far ahead of server time a `timestamp` may be, in ms (Binance: 1000).
    pub max_future_ms: u64,
    /// `recvWindow` when none is sent, in ms (Binance: 5000).
    pub default_recv_window_ms: u64,
    /// Largest accepted `recvWindow`, in ms (Binance: 60000).
    pub max_recv_window_ms: u64,
    /// Unexpired signatures one key may hold in the replay guard; beyond it that key's new
    /// requests get -1003 until some expire, so one key cannot fill the guard for everyone.
    pub replay_per_key: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body: 64 * 1024,
            max_future_ms: 1000,
            default_recv_window_ms: 5000,
            max_recv_window_ms: 60_000,
            // A tenth of the default guard: a key sending 1,000 signed requests a second with
            // 60-second windows stays well inside it.
            replay_per_key: 100_000,
        }
    }
}

/// The raw inputs of one request, exactly as received.
#[derive(Debug, Clone, Copy)]
pub struct UnverifiedRequest<'a> {
    /// The `X-MBX-APIKEY` header bytes, if present.
    pub api_key: Option<&'a [u8]>,
    /// The raw query string, without `?`.
    pub query: &'a [u8],
    /// The raw body.
    pub body: &'a [u8],
    /// The client address (socket peer, or the trusted proxy's forwarded address).
    pub peer: IpAddr,
    /// The method and path it was sent to: a signature is single-use per endpoint.
    pub endpoint: Endpoint<'a>,
}

/// Why a request was refused. The server maps each to Binance's code and HTTP status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denial {
    /// No `X-MBX-APIKEY` header on a signed endpoint (-2014).
    MissingApiKey,
    /// The header is not a well-formed keygate key id (-2014).
    MalformedApiKey,
    /// Well-formed, but no such key (-2015).
    UnknownApiKey,
    /// The body exceeds [`Limits::max_body`].
    BodyTooLarge,
    /// A parameter error (-1100/-1101/-1102).
    Param(ParamError),
    /// `recvWindow` malformed or above the maximum (-1131).
    BadRecvWindow,
    /// `timestamp` too far ahead of server time (-1021).
    TimestampAhead {
        /// By how much, in ms.
        ahead_ms: u64,
    },
    /// `timestamp` older than `recvWindow` (-1021).
    TimestampStale {
        /// How far behind server time, in ms.
        behind_ms: u64,
    },
    /// The signature does not verify (-1022).
    BadSignature,
    /// The key is disabled (-2015).
    KeyDisabled,
    /// The key is revoked (-2015).
    KeyRevoked,
    /// The key is past its expiry (-2015).
    KeyExpired,
    /// The client address is not in the key's allowlist (-2015).
    IpNotAllowed {
        /// The address the request came from.
        ip: IpAddr,
    },
    /// The key lacks the endpoint's permission (-2015).
    PermissionMissing(Permission),
    /// Withdrawals need an IP allowlist, and the key has none (-2015).
    IpRestrictionRequired,
    /// The key may not trade this symbol (-2015).
    SymbolNotAllowed(String),
    /// This signature was already used on a single-use endpoint (-1022).
    SignatureReused,
    /// The replay guard is full (-1003, retry shortly).
    ReplayGuardFull,
    /// This key holds its quota of the replay guard (-1003, retry shortly).
    ReplayKeyQuota,
}

impl Denial {
    /// A stable, machine-readable reason, e.g. `IP_NOT_ALLOWED`, for headers and audit records.
    #[must_use]
    pub const fn reason(&self) -> &'static str {
        match self {
            Self::MissingApiKey => "API_KEY_MISSING",
            Self::MalformedApiKey => "API_KEY_MALFORMED",
            Self::UnknownApiKey => "API_KEY_UNKNOWN",
            Self::BodyTooLarge => "BODY_TOO_LARGE",
            Self::Param(_) => "BAD_PARAMETER",
            Self::BadRecvWindow => "BAD_RECV_WINDOW",
            Self::TimestampAhead { .. } => "TIMESTAMP_AHEAD",
            Self::TimestampStale { .. } => "TIMESTAMP_STALE",
            Self::BadSignature => "SIGNATURE_INVALID",
            Self::KeyDisabled => "KEY_DISABLED",
            Self::KeyRevoked => "KEY_REVOKED",
            Self::KeyExpired => "KEY_EXPIRED",
            Self::IpNotAllowed { .. } => "IP_NOT_ALLOWED",
            Self::PermissionMissing(Permission::Read) => "PERMISSION_MISSING_READ",
            Self::PermissionMissing(Permission::Trade) => "PERMISSION_MISSING_TRADE",
            Self::PermissionMissing(Permission::Withdraw) => "PERMISSION_MISSING_WITHDRAW",
            Self::IpRestrictionRequired => "IP_RESTRICTION_REQUIRED",
            Self::SymbolNotAllowed(_) => "SYMBOL_NOT_ALLOWED",
            Self::SignatureReused => "SIGNATURE_REUSED",
            Self::ReplayGuardFull => "REPLAY_GUARD_FULL",
            Self::ReplayKeyQuota => "REPLAY_KEY_QUOTA",
        }
    }

    /// True if and only if the denial was decided after the signature verified, so the specific
    /// reason may be told to the caller without helping a stranger probe key ids.
    #[must_use]
    pub const fn after_signature(&self) -> bool {
        matches!(
            self,
            Self::KeyDisabled
                | Self::KeyRevoked
                | Self::KeyExpired
                | Self::IpNotAllowed { .. }
                | Self::PermissionMissing(_)
                | Self::IpRestrictionRequired
                | Self::SymbolNotAllowed(_)
                | Self::SignatureReused
                | Self::ReplayGuardFull
                | Self::ReplayKeyQuota
        )
    }
}

/// A refused request: the reason, and the key when it was found (for audit aggregation).
#[derive(Debug, Clone)]
pub struct Rejection {
    /// Why.
    pub denial: Denial,
    /// The key the request named, when it exists.
    pub key: Option<Arc<KeyEntry>>,
}

/// A request whose key, signature, time window and permissions have all been checked.
///
/// There is no public constructor: only [`Verifier::verify`] and [`Verifier::conclude`] make one,
/// and `conclude` needs the [`GoodSignature`] of the request's own signature, so a handler that
/// takes a `VerifiedRequest` cannot run on unverified input.
#[derive(Debug)]
pub struct VerifiedRequest {
    key: Arc<KeyEntry>,
    params: Params,
    timestamp: UnixMicros,
    recv_window_us: u64,
    single_use: Option<[u8; 32]>,
}

impl VerifiedRequest {
    /// The key that signed the request.
    #[must_use]
    pub fn key(&self) -> &Arc<KeyEntry> {
        &self.key
    }

    /// The account the key belongs to.
    #[must_use]
    pub fn account_id(&self) -> AccountId {
        self.key.account_id
    }

    /// The verified parameters: the only place handlers may read input from.
    #[must_use]
    pub fn params(&self) -> &Params {
        &self.params
    }

    /// The request's `timestamp`.
    #[must_use]
    pub fn timestamp(&self) -> UnixMicros {
        self.timestamp
    }

    /// For a single-use endpoint (`TRADE`, withdrawals): the signature's durable identity (a
    /// SHA-256 of the key, the endpoint and the signature's first bytes), which the exchange
    /// records with the command it carries out, so a replay is refused on any node and after
    /// any restart, not only while this process remembers it (issue #13). `None` elsewhere.
    #[must_use]
    pub fn single_use_id(&self) -> Option<[u8; 32]> {
        self.single_use
    }

    /// True if and only if the request is still inside its `recvWindow` at `now`: the second check
    /// Binance makes when an order reaches the matching engine.
    #[must_use]
    pub fn still_fresh(&self, now: UnixMicros) -> bool {
        now.0.saturating_sub(self.timestamp.0) <= self.recv_window_us
    }
}

/// The value of 1 to `max_len` ASCII digits (`max_len` <= 19, so it cannot overflow); `None` for
/// anything else, signs and spaces included.
fn parse_digits(v: &str, max_len: usize) -> Option<u64> {
    if v.is_empty() || v.len() > max_len {
        return None;
    }
    let mut n = 0u64;
    for b in v.bytes() {
        let d = b.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        n = n * 10 + u64::from(d);
    }
    Some(n)
}

/// Parses `timestamp`: milliseconds, or microseconds when it has 15 or more digits (a
/// millisecond value that large would be thousands of years ahead).
fn parse_timestamp(v: &str) -> Option<UnixMicros> {
    let n = parse_digits(v, 16)?;
    Some(UnixMicros(if n >= 100_000_000_000_000 { n } else { n.checked_mul(1000)? }))
}

/// Parses `recvWindow` (ms, up to three decimals) into microseconds.
fn parse_recv_window(v: &str) -> Option<u64> {
    let (ms, us_frac) = match v.split_once('.') {
        None => (parse_digits(v, 9)?, 0),
        Some((int, frac)) => {
            let mut us = parse_digits(frac, 3)?;
            for _ in frac.len()..3 {
                us *= 10;
            }
            (parse_digits(int, 9)?, us)
        }
    };
    Some(ms * 1000 + us_frac)
}

/// Hex digit values by byte; 0xFF marks a byte that is not a hex digit (either case accepted).
const HEX_VALUE: [u8; 256] = {
    let mut t = [0xFF; 256];
    let mut i = 0;
    while i < 10 {
        t[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        t[b'a' as usize + i] = 10 + i as u8;
        t[b'A' as usize + i] = 10 + i as u8;
        i += 1;
    }
    t
};

/// Decodes exactly 64 hex digits, either case, as Binance accepts; a wrong length or any non-hex
/// byte fails. One table load per digit: the signature is the caller's own input, so branching
/// on it reveals nothing secret.
fn decode_hex32(text: &[u8]) -> Option<[u8; 32]> {
    if text.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    let mut bad = 0u8;
    for (o, pair) in out.iter_mut().zip(text.chunks_exact(2)) {
        let hi = HEX_VALUE[usize::from(pair[0])];
        let lo = HEX_VALUE[usize::from(pair[1])];
        bad |= hi | lo;
        *o = (hi << 4) | lo;
    }
    (bad & 0xF0 == 0).then_some(out)
}

/// A single-use signature's identity across processes: the key, the endpoint and the
/// signature's first bytes, hashed (stored, so unkeyed, unlike the replay guard's in-memory
/// identity).
fn durable_id(key: &str, endpoint: Endpoint<'_>, sig: &[u8; 16]) -> [u8; 32] {
    use sha2::{Digest as _, Sha256};
    let mut h = Sha256::new();
    h.update(b"keygate-single-use-v1");
    for part in [key.as_bytes(), endpoint.method.as_bytes(), endpoint.path.as_bytes()] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part);
    }
    h.update(sig);
    h.finalize().into()
}

/// The first 16 bytes of a decoded signature: its identity in the replay guard.
pub(crate) fn replay_id(sig: &[u8]) -> [u8; 16] {
    let mut id = [0u8; 16];
    let n = sig.len().min(16);
    id[..n].copy_from_slice(&sig[..n]);
    id
}

/// Proof that a request's signature verified, and the signature's identity in the replay guard.
/// Only this crate's checks make one ([`Prepared::signature_check`], [`Ed25519Check`] and
/// [`crate::ed25519_batch::verify_all`]), so [`Verifier::conclude`] cannot be handed a verdict
/// nobody reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GoodSignature {
    id: [u8; 16],
}

impl GoodSignature {
    /// The verdict for a signature whose replay identity is `id`, once it has verified.
    pub(crate) const fn verified(id: [u8; 16]) -> Self {
        Self { id }
    }
}

/// What is left of a request's signature check after [`Prepared::signature_check`].
#[derive(Debug)]
pub enum SignatureCheck {
    /// Decided already: HMAC and RSA are checked on the spot, as is an Ed25519 signature that
    /// does not even decode. `None` means the signature is bad.
    Done(Option<GoodSignature>),
    /// An Ed25519 signature, to be checked alone ([`Ed25519Check::verify`]) or together with
    /// other requests' ([`crate::ed25519_batch::verify_all`]).
    Ed25519(Box<Ed25519Check>),
}

/// Checks a signature, or hands an Ed25519 one back to be checked, and gives its replay-guard
/// identity.
fn check_signature(
    credential: &Credential,
    signature: &str,
    payload: &crate::params::SignedPayload<'_>,
) -> (SignatureCheck, Option<[u8; 16]>) {
    let refused = (SignatureCheck::Done(None), None);
    match credential {
        Credential::Hmac(keyed) => {
            let Some(expected) = decode_hex32(signature.as_bytes()) else { return refused };
            let mut mac = keyed.clone();
            for piece in payload.pieces() {
                mac.update(piece);
            }
            let id = replay_id(&expected);
            // `verify_slice` compares in constant time.
            let good = mac.verify_slice(&expected).is_ok().then(|| GoodSignature::verified(id));
            (SignatureCheck::Done(good), Some(id))
        }
        Credential::Ed25519(vk) => {
            let mut raw = [0u8; 66];
            let Ok(n) = STANDARD.decode_slice(signature.as_bytes(), &mut raw) else { return refused };
            let Some(bytes) = raw.get(..n).and_then(|b| <[u8; 64]>::try_from(b).ok()) else { return refused };
            let check = Ed25519Check::new(*vk, &bytes, payload.contiguous().into_owned());
            (SignatureCheck::Ed25519(Box::new(check)), Some(replay_id(&bytes)))
        }
        Credential::Rsa { key, size } => {
            use rsa::signature::Verifier as _;
            let Ok(bytes) = STANDARD.decode(signature.as_bytes()) else { return refused };
            if bytes.len() != *size {
                return refused;
            }
            let Ok(sig) = rsa::pkcs1v15::Signature::try_from(bytes.as_slice()) else { return refused };
            let id = replay_id(&bytes);
            let good = key.verify(&payload.contiguous(), &sig).is_ok().then(|| GoodSignature::verified(id));
            (SignatureCheck::Done(good), Some(id))
        }
    }
}

/// A request that passed every check that comes before its signature's (steps 1 to 4 of the
/// module documentation). [`Prepared::signature_check`] starts step 5, [`Verifier::conclude`]
/// takes its verdict and makes the rest. [`Verifier::verify`] does all three in a row; the server
/// splits them to check the Ed25519 signatures of concurrent requests together.
#[derive(Debug)]
pub struct Prepared {
    found: Arc<KeyEntry>,
    params: Params,
    timestamp: UnixMicros,
    recv_window_us: u64,
    /// The identity of the signature that [`Prepared::signature_check`] decoded.
    signature_id: Option<[u8; 16]>,
}

impl Prepared {
    /// The key the request names.
    #[must_use]
    pub fn key(&self) -> &Arc<KeyEntry> {
        &self.found
    }

    /// Checks the signature of `req` (the request this was prepared from) where that is cheap, or
    /// hands back the Ed25519 check to make.
    pub fn signature_check(&mut self, req: &UnverifiedRequest<'_>) -> SignatureCheck {
        let Some(signature) = self.params.signature() else { return SignatureCheck::Done(None) };
        let payload = self.params.signed_payload(req.query, req.body);
        let (check, id) = check_signature(&self.found.credential, signature, &payload);
        self.signature_id = id;
        check
    }
}

/// The verifier: limits plus the replay guard, shared by every request of a server.
#[derive(Debug)]
pub struct Verifier {
    limits: Limits,
    replay: ReplayGuard,
}

impl Verifier {
    /// A verifier with `limits` and a replay guard of `replay_capacity` signatures.
    #[must_use]
    pub fn new(limits: Limits, replay_capacity: usize) -> Self {
        Self { limits, replay: ReplayGuard::new(replay_capacity) }
    }

    /// The limits in force.
    #[must_use]
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The replay guard, for its fill ([`ReplayGuard::len`], [`ReplayGuard::capacity`]) in the
    /// server's metrics.
    #[must_use]
    pub fn replay_guard(&self) -> &ReplayGuard {
        &self.replay
    }

    /// Verifies one request against `access` at time `now`.
    ///
    /// # Errors
    /// A [`Rejection`] with the first failed check, in the order given in the module docs.
    pub fn verify(
        &self,
        req: &UnverifiedRequest<'_>,
        access: Access,
        keys: &dyn KeyLookup,
        now: UnixMicros,
    ) -> Result<VerifiedRequest, Rejection> {
        let mut prepared = self.prepare(req, keys, now)?;
        let good = match prepared.signature_check(req) {
            SignatureCheck::Done(good) => good,
            SignatureCheck::Ed25519(check) => check.verify(),
        };
        self.conclude(prepared, good, req, access, now)
    }

    /// Steps 1 to 4 of the module documentation: everything before the signature.
    ///
    /// # Errors
    /// A [`Rejection`] with the first failed check.
    pub fn prepare(
        &self,
        req: &UnverifiedRequest<'_>,
        keys: &dyn KeyLookup,
        now: UnixMicros,
    ) -> Result<Prepared, Rejection> {
        let reject = |denial, key: Option<&Arc<KeyEntry>>| Rejection { denial, key: key.cloned() };
        let api_key = match req.api_key {
            None | Some(b"") => return Err(reject(Denial::MissingApiKey, None)),
            Some(k) => k,
        };
        if ApiKeyId::check(api_key).is_err() {
            return Err(reject(Denial::MalformedApiKey, None));
        }
        if req.body.len() > self.limits.max_body {
            return Err(reject(Denial::BodyTooLarge, None));
        }
        let params = Params::parse(req.query, req.body).map_err(|e| reject(Denial::Param(e), None))?;
        // `check` passed, so the header is ASCII.
        let key_text = std::str::from_utf8(api_key).map_err(|_| reject(Denial::MalformedApiKey, None))?;
        let Some(found) = keys.lookup(key_text) else {
            return Err(reject(Denial::UnknownApiKey, None));
        };
        let key = Some(&found);
        let timestamp = params
            .get("timestamp")
            .and_then(parse_timestamp)
            .ok_or_else(|| reject(Denial::Param(ParamError::mandatory("timestamp")), key))?;
        let recv_window_us = match params.get("recvWindow") {
            None => self.limits.default_recv_window_ms * 1000,
            Some(v) => match parse_recv_window(v) {
                Some(us) if us <= self.limits.max_recv_window_ms * 1000 => us,
                _ => return Err(reject(Denial::BadRecvWindow, key)),
            },
        };
        let ahead_limit = now.0.saturating_add(self.limits.max_future_ms * 1000);
        if timestamp.0 >= ahead_limit {
            let ahead_ms = (timestamp.0 - now.0).div_ceil(1000);
            return Err(reject(Denial::TimestampAhead { ahead_ms }, key));
        }
        if now.0.saturating_sub(timestamp.0) > recv_window_us {
            let behind_ms = (now.0 - timestamp.0) / 1000;
            return Err(reject(Denial::TimestampStale { behind_ms }, key));
        }
        match params.signature() {
            Some(s) if !s.is_empty() => {}
            _ => return Err(reject(Denial::Param(ParamError::mandatory("signature")), key)),
        }
        Ok(Prepared { found, params, timestamp, recv_window_us, signature_id: None })
    }

    /// Step 5's verdict and step 6: the key's own state, its restrictions and the replay guard.
    /// `good` is the verdict on `prepared`'s signature; a verdict on another signature is refused
    /// like a bad one. `now` is read again after the signature check: a request that waited for it
    /// past its `recvWindow` is refused as stale, since the replay guard forgets a window's
    /// signatures once it has passed.
    ///
    /// # Errors
    /// A [`Rejection`] with the first failed check.
    pub fn conclude(
        &self,
        prepared: Prepared,
        good: Option<GoodSignature>,
        req: &UnverifiedRequest<'_>,
        access: Access,
        now: UnixMicros,
    ) -> Result<VerifiedRequest, Rejection> {
        let Prepared { found, params, timestamp, recv_window_us, signature_id } = prepared;
        let reject = |denial, key: &Arc<KeyEntry>| Rejection { denial, key: Some(Arc::clone(key)) };
        let key_ref = &found;
        let sig_bytes = match (good, signature_id) {
            (Some(good), Some(id)) if good.id == id => id,
            _ => return Err(reject(Denial::BadSignature, key_ref)),
        };
        if now.0.saturating_sub(timestamp.0) > recv_window_us {
            let behind_ms = (now.0 - timestamp.0) / 1000;
            return Err(reject(Denial::TimestampStale { behind_ms }, key_ref));
        }
        // The caller holds the key: from here on, specific reasons may be told.
        match key_ref.status {
            KeyStatus::Active => {}
            KeyStatus::Disabled => return Err(reject(Denial::KeyDisabled, key_ref)),
            KeyStatus::Revoked => return Err(reject(Denial::KeyRevoked, key_ref)),
            KeyStatus::Expired => return Err(reject(Denial::KeyExpired, key_ref)),
        }
        let r = &key_ref.restrictions;
        if r.expires_at.is_some_and(|e| e.as_micros() <= now.0) {
            return Err(reject(Denial::KeyExpired, key_ref));
        }
        if !r.ip_allowlist.allows(req.peer) {
            return Err(reject(Denial::IpNotAllowed { ip: req.peer.to_canonical() }, key_ref));
        }
        if !key_ref.permissions.contains(access.permission) {
            return Err(reject(Denial::PermissionMissing(access.permission), key_ref));
        }
        if access.permission == Permission::Withdraw && r.ip_allowlist.is_empty() {
            return Err(reject(Denial::IpRestrictionRequired, key_ref));
        }
        if access.permission == Permission::Trade && !r.symbols.is_empty() {
            // A key limited to some symbols may only make TRADE requests that name one of them;
            // a request naming none (or naming them another way) is refused, not waved through.
            match params.get("symbol") {
                Some(symbol) if r.allows_symbol(symbol) => {}
                other => return Err(reject(Denial::SymbolNotAllowed(other.unwrap_or("").to_owned()), key_ref)),
            }
        }
        // Every verified signature is remembered until its window ends, whatever the endpoint, so
        // a signature first seen on a reading endpoint cannot be replayed on a trading one.
        let expires = timestamp.0.saturating_add(recv_window_us);
        let quota = (&key_ref.replay_use, self.limits.replay_per_key);
        match self.replay.check_and_record(&sig_bytes, req.endpoint, expires, now.0, quota) {
            ReplayOutcome::Fresh => {}
            ReplayOutcome::Reused if !access.single_use => {}
            ReplayOutcome::Reused => return Err(reject(Denial::SignatureReused, key_ref)),
            ReplayOutcome::Full => return Err(reject(Denial::ReplayGuardFull, key_ref)),
            ReplayOutcome::KeyFull => return Err(reject(Denial::ReplayKeyQuota, key_ref)),
        }
        let single_use = access.single_use.then(|| durable_id(key_ref.id.as_str(), req.endpoint, &sig_bytes));
        // The looked-up handle moves into the result: no second reference count round trip.
        Ok(VerifiedRequest { key: found, params, timestamp, recv_window_us, single_use })
    }
}

/// Returns true if and only if `permissions` grants what `access` needs; the single source of
/// that rule for callers that check without a request (e.g. the console's key preview).
#[must_use]
pub fn grants(permissions: Permissions, access: Access) -> bool {
    permissions.contains(access.permission)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_in_ms_and_us_and_recv_windows_with_decimals() {
        assert_eq!(parse_timestamp("1499827319559"), Some(UnixMicros(1_499_827_319_559_000)));
        assert_eq!(parse_timestamp("1499827319559123"), Some(UnixMicros(1_499_827_319_559_123)));
        assert_eq!(parse_timestamp("1e12"), None);
        assert_eq!(parse_timestamp("-1"), None);
        assert_eq!(parse_recv_window("5000"), Some(5_000_000));
        assert_eq!(parse_recv_window("6000.346"), Some(6_000_346));
        assert_eq!(parse_recv_window("6000.3"), Some(6_000_300));
        assert_eq!(parse_recv_window("6000."), None);
        assert_eq!(parse_recv_window("6000.1234"), None);
        assert_eq!(parse_recv_window("1e3"), None);
    }
}
