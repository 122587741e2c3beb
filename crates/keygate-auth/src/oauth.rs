//! Connected apps (issue #15): the pure rules of keygate's OAuth 2.0 authorization server.
//!
//! keygate's token endpoint answers with an API key, not a bearer token; what is decided here is
//! everything about the exchange that needs no I/O: the formats of client ids, client secrets
//! and authorization codes (and the one hash the store keeps of each), redirect URI rules (RFC
//! 9700 section 2.1: exact match, `https` except loopback, whose port may vary per RFC 8252
//! section 7.3), PKCE with S256 only (RFC 7636 section 4.6), what a request asks for (a plain
//! `scope=read trade` or RFC 9396 `authorization_details`), the app's registered ceiling, and
//! the owner's narrowing at consent, which can only ever take away.

use crate::base62::{is_base62, push_random};
use crate::entropy::{Entropy, EntropyError};
use crate::permission::{Permission, Permissions};
use crate::restriction::IpAllowlist;
use base64::Engine as _;
use keygate_proto::{Symbol, UnixMillis};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;
use zeroize::Zeroizing;

/// Prefix of a client id (public: it is in every authorize URL).
pub const CLIENT_ID_PREFIX: &str = "kgapp_";
/// Prefix of a client secret (shown once, stored hashed), so a scanner can recognise one.
pub const CLIENT_SECRET_PREFIX: &str = "kgcs_";
/// Prefix of an authorization code.
pub const CODE_PREFIX: &str = "kgac_";
/// Random base62 characters of a client id (about 95 bits: unguessable, though not secret).
const CLIENT_ID_RANDOM: usize = 16;
/// Random base62 characters of a client secret or code: 43 carry 256 bits.
const SECRET_RANDOM: usize = 43;
/// How long an authorization code may be exchanged, in ms (issue #15: 60 s).
pub const CODE_TTL_MS: u64 = 60_000;
/// The one `authorization_details` type keygate knows (RFC 9396 section 2).
pub const DETAILS_TYPE: &str = "keygate_api_key";
/// The `token_type` of keygate's token answer: an absolute URI, as RFC 6749 section 8.1 asks of
/// types that are not registered. The `access_token` is the API key id; the app signs requests.
pub const TOKEN_TYPE: &str = "urn:keygate:api-key";
/// Most redirect URIs one app may register.
pub const MAX_REDIRECT_URIS: usize = 10;

/// An RFC 6749 error code (sections 4.1.2.1 and 5.2) or RFC 9396's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// A parameter is missing, repeated or malformed.
    InvalidRequest,
    /// Client authentication failed, or the client is unknown or suspended.
    InvalidClient,
    /// The code is bad, expired, used, or for another client, redirect URI or verifier.
    InvalidGrant,
    /// The client may not use this grant or response type.
    UnauthorizedClient,
    /// Only `authorization_code` is offered.
    UnsupportedGrantType,
    /// Only `code` is offered.
    UnsupportedResponseType,
    /// The scope is unknown or beyond what the app may ask.
    InvalidScope,
    /// The owner refused.
    AccessDenied,
    /// RFC 9396 section 5: a malformed or unknown authorization details entry.
    InvalidAuthorizationDetails,
    /// Something failed on keygate's side.
    ServerError,
}

impl ErrorCode {
    /// The code as sent in `error=`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::InvalidRequest => "invalid_request",
            Self::InvalidClient => "invalid_client",
            Self::InvalidGrant => "invalid_grant",
            Self::UnauthorizedClient => "unauthorized_client",
            Self::UnsupportedGrantType => "unsupported_grant_type",
            Self::UnsupportedResponseType => "unsupported_response_type",
            Self::InvalidScope => "invalid_scope",
            Self::AccessDenied => "access_denied",
            Self::InvalidAuthorizationDetails => "invalid_authorization_details",
            Self::ServerError => "server_error",
        }
    }
}

/// A refusal with its RFC code and a description for the developer (never a secret).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {description}", code.as_str())]
pub struct OAuthError {
    /// The RFC error code.
    pub code: ErrorCode,
    /// `error_description`.
    pub description: String,
}

impl OAuthError {
    /// A refusal with `code`.
    #[must_use]
    pub fn new(code: ErrorCode, description: impl Into<String>) -> Self {
        Self { code, description: description.into() }
    }
}

fn invalid_request(d: impl Into<String>) -> OAuthError {
    OAuthError::new(ErrorCode::InvalidRequest, d)
}

/// Whether an app keeps a secret (a server) or cannot (a browser or native app).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientKind {
    /// Authenticates at the token endpoint with its client secret.
    Confidential,
    /// Has no secret; PKCE alone binds the code to it.
    Public,
}

impl ClientKind {
    /// `confidential` or `public`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Confidential => "confidential",
            Self::Public => "public",
        }
    }

    /// Parses `confidential` or `public`.
    ///
    /// # Errors
    /// A sentence naming the two values.
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "confidential" => Ok(Self::Confidential),
            "public" => Ok(Self::Public),
            other => Err(format!("client type {other:?}: expected confidential or public")),
        }
    }
}

fn random_token(prefix: &str, n: usize, entropy: &mut dyn Entropy) -> Result<Zeroizing<String>, EntropyError> {
    let mut s = Zeroizing::new(String::with_capacity(prefix.len() + n));
    s.push_str(prefix);
    push_random(entropy, n, &mut s)?;
    Ok(s)
}

/// A new client id.
///
/// # Errors
/// [`EntropyError`] if no randomness is available.
pub fn generate_client_id(entropy: &mut dyn Entropy) -> Result<String, EntropyError> {
    Ok(random_token(CLIENT_ID_PREFIX, CLIENT_ID_RANDOM, entropy)?.to_string())
}

/// True if and only if `s` has the shape of a client id (checked before any lookup).
#[must_use]
pub fn is_client_id(s: &str) -> bool {
    s.len() == CLIENT_ID_PREFIX.len() + CLIENT_ID_RANDOM
        && s.starts_with(CLIENT_ID_PREFIX)
        && s.as_bytes()[CLIENT_ID_PREFIX.len()..].iter().all(|&b| is_base62(b))
}

/// A new client secret, shown once to whoever registered the app.
///
/// # Errors
/// [`EntropyError`] if no randomness is available.
pub fn generate_client_secret(entropy: &mut dyn Entropy) -> Result<Zeroizing<String>, EntropyError> {
    random_token(CLIENT_SECRET_PREFIX, SECRET_RANDOM, entropy)
}

/// A new authorization code, sent once in the redirect.
///
/// # Errors
/// [`EntropyError`] if no randomness is available.
pub fn generate_code(entropy: &mut dyn Entropy) -> Result<Zeroizing<String>, EntropyError> {
    random_token(CODE_PREFIX, SECRET_RANDOM, entropy)
}

fn hash_token(label: &[u8], prefix: &str, text: &str) -> Option<[u8; 32]> {
    let ok = text.len() == prefix.len() + SECRET_RANDOM
        && text.starts_with(prefix)
        && text.as_bytes()[prefix.len()..].iter().all(|&b| is_base62(b));
    if !ok {
        return None;
    }
    let mut h = Sha256::new();
    h.update(label);
    h.update(text.as_bytes());
    Some(h.finalize().into())
}

/// The SHA-256 the store keeps of a client secret, or `None` if the text cannot be one. A secret
/// carries 256 random bits, so a plain hash cannot be reversed by guessing.
#[must_use]
pub fn hash_client_secret(secret: &str) -> Option<[u8; 32]> {
    hash_token(b"keygate/client-secret/v1|", CLIENT_SECRET_PREFIX, secret)
}

/// The SHA-256 the store keeps of an authorization code, or `None` if the text cannot be one.
#[must_use]
pub fn hash_code(code: &str) -> Option<[u8; 32]> {
    hash_token(b"keygate/authorization-code/v1|", CODE_PREFIX, code)
}

/// True if and only if `presented` is the client secret whose hash is `stored`, compared in
/// constant time.
#[must_use]
pub fn client_secret_matches(presented: &str, stored: &[u8; 32]) -> bool {
    // A malformed secret is compared against a hash of nothing, so timing does not tell the
    // two refusals apart.
    let h = hash_client_secret(presented).unwrap_or([0; 32]);
    bool::from(h.ct_eq(stored)) && hash_client_secret(presented).is_some()
}

/// Whether `host` (as written in a URI's authority, without port) is a loopback address.
fn loopback_host(host: &str) -> bool {
    host == "127.0.0.1" || host == "[::1]"
}

/// Splits `scheme://authority/rest` into (scheme, host, port, rest).
fn split_uri(uri: &str) -> Option<(&str, &str, Option<&str>, &str)> {
    let (scheme, after) = uri.split_once("://")?;
    let end = after.find(['/', '?', '#']).unwrap_or(after.len());
    let (authority, rest) = after.split_at(end);
    if authority.contains('@') {
        return None;
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let close = v6.find(']')?;
        let host = &authority[..close + 2];
        let port = authority[close + 2..].strip_prefix(':');
        (host, port)
    } else {
        match authority.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if host.is_empty() || port.is_some_and(|p| p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit())) {
        return None;
    }
    Some((scheme, host, port, rest))
}

/// Checks a redirect URI an app registers: an absolute `https` URI, or `http` to a loopback
/// address (RFC 8252 section 7.3; `localhost` is refused, as RFC 8252 section 8.3 advises),
/// without a fragment (RFC 6749 section 3.1.2) or user information, of printable ASCII.
///
/// # Errors
/// A sentence saying what is wrong.
pub fn validate_redirect_uri(uri: &str) -> Result<(), String> {
    if uri.is_empty() || uri.len() > 512 || !uri.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!("redirect URI {uri:?}: at most 512 printable ASCII characters without spaces"));
    }
    if uri.contains('#') {
        return Err(format!("redirect URI {uri}: a fragment is not allowed"));
    }
    // Browsers read a backslash as a slash, so `https://evil.example\.a.example/cb` goes to
    // evil.example whatever this parser would make of it; refuse what readers could disagree on.
    if uri.contains('\\') {
        return Err(format!("redirect URI {uri}: a backslash is not allowed"));
    }
    let Some((scheme, host, port, _)) = split_uri(uri) else {
        return Err(format!("redirect URI {uri}: not an absolute URI like https://app.example/callback"));
    };
    if port.is_some_and(|p| p.parse::<u16>().is_err()) {
        return Err(format!("redirect URI {uri}: the port must be a number up to 65535"));
    }
    match scheme {
        "https" => Ok(()),
        "http" if loopback_host(host) => Ok(()),
        "http" => Err(format!(
            "redirect URI {uri}: http is allowed only to 127.0.0.1 or [::1] (a native app's loopback); use https"
        )),
        other => Err(format!("redirect URI {uri}: scheme {other} is not allowed; use https")),
    }
}

/// True if and only if `presented` is one of the `registered` redirect URIs: character for
/// character, except that a loopback `http` URI may name any port (RFC 8252 section 7.3).
#[must_use]
pub fn redirect_uri_matches(registered: &[String], presented: &str) -> bool {
    registered.iter().any(|r| {
        if r == presented {
            return true;
        }
        match (split_uri(r), split_uri(presented)) {
            (Some(("http", rh, _, rr)), Some(("http", ph, pp, pr))) => {
                loopback_host(rh) && rh == ph && rr == pr && pp.is_none_or(|p| p.parse::<u16>().is_ok())
            }
            _ => false,
        }
    })
}

/// The S256 challenge of `verifier`: unpadded base64url of its SHA-256 (RFC 7636 section 4.2).
#[must_use]
pub fn s256_challenge(verifier: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

fn pkce_chars(s: &str) -> bool {
    (43..=128).contains(&s.len())
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// Checks the PKCE parameters of an authorization request: a challenge is required (every
/// client, RFC 9700 section 2.1.1), and the method must be `S256` (RFC 7636's default, `plain`,
/// is refused, as is a missing method, which means `plain`).
///
/// # Errors
/// `invalid_request` naming what is missing or not allowed.
pub fn check_challenge(challenge: Option<&str>, method: Option<&str>) -> Result<String, OAuthError> {
    let Some(challenge) = challenge.filter(|c| !c.is_empty()) else {
        return Err(invalid_request("code_challenge is required (PKCE, RFC 7636, with S256)"));
    };
    if method != Some("S256") {
        return Err(invalid_request("code_challenge_method must be S256; plain is not supported"));
    }
    if challenge.len() != 43 || !challenge.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_')) {
        return Err(invalid_request("code_challenge must be the unpadded base64url SHA-256 of the verifier"));
    }
    Ok(challenge.to_owned())
}

/// True if and only if `verifier` is well-formed and its S256 challenge is `challenge`, compared
/// in constant time.
#[must_use]
pub fn verify_pkce(verifier: &str, challenge: &str) -> bool {
    pkce_chars(verifier) && bool::from(s256_challenge(verifier).as_bytes().ct_eq(challenge.as_bytes()))
}

/// What an app is given: permissions (`read`, perhaps `trade`; never `withdraw`) and the
/// restrictions of the key it gets.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Grant {
    /// Permissions (`read` always).
    pub permissions: Permissions,
    /// Networks the key may be used from; empty: any.
    #[serde(default)]
    pub ip_allowlist: IpAllowlist,
    /// Symbols the key may trade; empty: all.
    #[serde(default)]
    pub symbols: Vec<Symbol>,
    /// When the key expires; none: never.
    #[serde(default)]
    pub expires_at: Option<UnixMillis>,
}

/// One entry of `authorization_details` as keygate reads it (RFC 9396 section 2).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DetailsEntry {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    actions: Vec<String>,
    #[serde(default)]
    locations: Vec<String>,
    #[serde(default)]
    symbols: Vec<String>,
    #[serde(default)]
    ip_allowlist: Vec<String>,
    #[serde(default)]
    expires_at: Option<u64>,
}

fn permission_of(word: &str, code: ErrorCode) -> Result<Permission, OAuthError> {
    match word {
        "read" => Ok(Permission::Read),
        "trade" => Ok(Permission::Trade),
        "withdraw" => Err(OAuthError::new(code, "withdraw is never granted to an app")),
        other => Err(OAuthError::new(code, format!("unknown permission {other:?}: use read and trade"))),
    }
}

/// What an authorization request asks for: `authorization_details` (a JSON array with one
/// `keygate_api_key` entry: `actions`, optional `symbols`, `ip_allowlist`, `expires_at` in ms)
/// or, without it, `scope` (space-separated `read` and `trade`; none means `read`).
///
/// # Errors
/// `invalid_authorization_details` for a malformed entry, an unknown type, field or action;
/// `invalid_scope` for an unknown scope; `invalid_request` when both are sent.
pub fn parse_requested(scope: Option<&str>, details: Option<&str>) -> Result<Grant, OAuthError> {
    let mut perms = vec![Permission::Read];
    let Some(details) = details.filter(|d| !d.trim().is_empty()) else {
        for word in scope.unwrap_or("").split(' ').filter(|w| !w.is_empty()) {
            perms.push(permission_of(word, ErrorCode::InvalidScope)?);
        }
        return Ok(Grant { permissions: perms.into(), ..Grant::default() });
    };
    if scope.is_some_and(|s| !s.trim().is_empty()) {
        return Err(invalid_request("send either scope or authorization_details, not both"));
    }
    let bad = |d: String| OAuthError::new(ErrorCode::InvalidAuthorizationDetails, d);
    let entries: Vec<DetailsEntry> = serde_json::from_str(details)
        .map_err(|e| bad(format!("authorization_details is not a JSON array of objects with a type: {e}")))?;
    let [entry] = entries.as_slice() else {
        return Err(bad(format!("authorization_details must hold exactly one {DETAILS_TYPE:?} entry")));
    };
    if entry.kind != DETAILS_TYPE {
        return Err(bad(format!("unknown authorization_details type {:?}: use {DETAILS_TYPE:?}", entry.kind)));
    }
    if !entry.locations.is_empty() && entry.locations.len() > 8 {
        return Err(bad("too many locations".into()));
    }
    for a in &entry.actions {
        perms.push(permission_of(a, ErrorCode::InvalidAuthorizationDetails)?);
    }
    let symbols = entry
        .symbols
        .iter()
        .map(|s| Symbol::parse(s).map_err(|e| bad(format!("symbol {s:?}: {e}"))))
        .collect::<Result<Vec<_>, _>>()?;
    let ip_allowlist = IpAllowlist::parse(&entry.ip_allowlist).map_err(|e| bad(e.to_string()))?;
    Ok(Grant { permissions: perms.into(), ip_allowlist, symbols, expires_at: entry.expires_at.map(UnixMillis) })
}

/// Refuses a request beyond the app's registered ceiling (`invalid_scope`): a permission the
/// app may not ask for. `withdraw` is never within any ceiling.
///
/// # Errors
/// `invalid_scope` naming the permission.
pub fn check_ceiling(requested: &Grant, ceiling: Permissions) -> Result<(), OAuthError> {
    for p in requested.permissions.iter() {
        if p == Permission::Withdraw || !ceiling.contains(p) {
            return Err(OAuthError::new(
                ErrorCode::InvalidScope,
                format!("this app may not ask for {p}: it is registered for {ceiling}"),
            ));
        }
    }
    Ok(())
}

/// What the owner chose on the consent page.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Narrowing {
    /// Keep `trade` (when asked for); false drops it.
    pub keep_trade: bool,
    /// IP allowlist entries to add (one address or CIDR each).
    pub ip_allowlist: Vec<String>,
    /// Symbols to allow (empty: those asked for).
    pub symbols: Vec<String>,
    /// An expiry (ms), earlier than one asked for.
    pub expires_at: Option<UnixMillis>,
}

/// The grant the owner gives: `requested`, narrowed by `choice`, never wider than asked. Adding
/// IP entries to a request that had an allowlist keeps only the owner's entries inside it, so the
/// owner can restrict but never open; symbols must be among those asked for when some were;
/// an expiry later than asked for is refused. Also returns whether anything was narrowed.
///
/// # Errors
/// A sentence for the owner saying what cannot be chosen.
pub fn narrow(requested: &Grant, choice: &Narrowing, now: UnixMillis) -> Result<(Grant, bool), String> {
    let mut g = requested.clone();
    if requested.permissions.contains(Permission::Trade) && !choice.keep_trade {
        g.permissions = Permissions::READ_ONLY;
    }
    let entries: Vec<&str> = choice.ip_allowlist.iter().map(|s| s.trim()).filter(|s| !s.is_empty()).collect();
    if !entries.is_empty() {
        let owner = IpAllowlist::parse(&entries).map_err(|e| e.to_string())?;
        if !requested.ip_allowlist.is_empty() && owner.widens(&requested.ip_allowlist) {
            return Err("the IP allowlist may only narrow the one the app asked for".into());
        }
        g.ip_allowlist = owner;
    }
    let symbols: Vec<&str> = choice.symbols.iter().map(|s| s.trim()).filter(|s| !s.is_empty()).collect();
    if !symbols.is_empty() {
        let mut chosen = Vec::new();
        for s in symbols {
            let sym = Symbol::parse(&s.to_ascii_uppercase()).map_err(|e| format!("symbol {s:?}: {e}"))?;
            if !requested.symbols.is_empty() && !requested.symbols.contains(&sym) {
                return Err(format!("{sym} is not among the symbols the app asked for"));
            }
            if !chosen.contains(&sym) {
                chosen.push(sym);
            }
        }
        g.symbols = chosen;
    }
    if let Some(at) = choice.expires_at {
        if at <= now {
            return Err("the expiry must be in the future".into());
        }
        if requested.expires_at.is_some_and(|asked| at > asked) {
            return Err("the expiry may only be earlier than the one the app asked for".into());
        }
        g.expires_at = Some(at);
    }
    if g.expires_at.is_some_and(|at| at <= now) {
        return Err("the app asked for an expiry that has already passed".into());
    }
    let narrowed = g != *requested;
    Ok((g, narrowed))
}

/// The `authorization_details` of a token answer: what was granted, in the request's shape
/// (RFC 9396 section 7).
#[must_use]
pub fn granted_details(g: &Grant) -> serde_json::Value {
    let actions: Vec<&str> = g.permissions.iter().map(Permission::as_str).collect();
    let mut entry = serde_json::json!({ "type": DETAILS_TYPE, "actions": actions });
    if let Some(map) = entry.as_object_mut() {
        if !g.symbols.is_empty() {
            map.insert("symbols".into(), serde_json::json!(g.symbols));
        }
        if !g.ip_allowlist.is_empty() {
            map.insert("ip_allowlist".into(), serde_json::json!(g.ip_allowlist));
        }
        if let Some(at) = g.expires_at {
            map.insert("expires_at".into(), serde_json::json!(at.0));
        }
    }
    serde_json::json!([entry])
}

/// The `scope` of a token answer: the granted permissions, space-separated.
#[must_use]
pub fn granted_scope(g: &Grant) -> String {
    g.permissions.iter().map(Permission::as_str).collect::<Vec<_>>().join(" ")
}

/// Reads `Authorization: Basic` client credentials (RFC 6749 section 2.3.1: id and secret each
/// form-urlencoded, then joined by `:` and base64-encoded).
///
/// # Errors
/// `invalid_client` for a header that is not well-formed Basic credentials.
pub fn parse_basic(header: &str) -> Result<(String, Zeroizing<String>), OAuthError> {
    let bad = || OAuthError::new(ErrorCode::InvalidClient, "malformed Basic client credentials");
    let b64 = header.strip_prefix("Basic ").or_else(|| header.strip_prefix("basic ")).ok_or_else(bad)?;
    let raw = Zeroizing::new(base64::engine::general_purpose::STANDARD.decode(b64.trim()).map_err(|_| bad())?);
    let text = std::str::from_utf8(&raw).map_err(|_| bad())?;
    let (id, secret) = text.split_once(':').ok_or_else(bad)?;
    let dec =
        |s: &str| percent_encoding::percent_decode_str(&s.replace('+', " ")).decode_utf8().map(|c| c.into_owned());
    Ok((dec(id).map_err(|_| bad())?, Zeroizing::new(dec(secret).map_err(|_| bad())?)))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

    use super::*;

    struct Counter(u8);
    impl Entropy for Counter {
        fn fill(&mut self, dest: &mut [u8]) -> Result<(), EntropyError> {
            for b in dest {
                self.0 = self.0.wrapping_add(37);
                *b = self.0;
            }
            Ok(())
        }
    }

    #[test]
    fn pkce_s256_matches_rfc_7636_appendix_b() {
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        assert_eq!(s256_challenge(verifier), "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM");
        assert!(verify_pkce(verifier, "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"));
        assert!(!verify_pkce(&verifier.replace('d', "e"), "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"));
        assert!(!verify_pkce("short", &s256_challenge("short")), "a verifier under 43 characters is refused");
    }

    #[test]
    fn only_s256_challenges_are_accepted() {
        let c = s256_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk");
        assert!(check_challenge(Some(&c), Some("S256")).is_ok());
        for (ch, m) in [
            (None, Some("S256")),
            (Some(c.as_str()), None),
            (Some(c.as_str()), Some("plain")),
            (Some("x"), Some("S256")),
        ] {
            assert_eq!(check_challenge(ch, m).unwrap_err().code, ErrorCode::InvalidRequest, "{ch:?} {m:?}");
        }
    }

    #[test]
    fn redirect_uris_are_https_or_loopback_and_match_exactly() {
        for ok in
            ["https://app.example/cb", "http://127.0.0.1:8765/cb", "http://[::1]/cb", "https://a.example:8443/x?y=1"]
        {
            validate_redirect_uri(ok).unwrap();
        }
        for bad in [
            "http://app.example/cb",
            "http://localhost/cb",
            "https://a.example/cb#f",
            "app.example/cb",
            "javascript://x",
            "https://u@a.example/",
            "https://evil.example\\.a.example/cb",
            "http://127.0.0.1:99999999999999999999/cb",
            "https://a.example:x/cb",
        ] {
            assert!(validate_redirect_uri(bad).is_err(), "{bad}");
        }
        let reg = vec!["https://app.example/cb".to_owned(), "http://127.0.0.1:1/native".to_owned()];
        assert!(redirect_uri_matches(&reg, "https://app.example/cb"));
        assert!(!redirect_uri_matches(&reg, "https://app.example/cb/"));
        assert!(!redirect_uri_matches(&reg, "https://app.example/cb?x=1"));
        assert!(!redirect_uri_matches(&reg, "https://APP.example/cb"));
        assert!(redirect_uri_matches(&reg, "http://127.0.0.1:50123/native"), "loopback ports vary");
        assert!(!redirect_uri_matches(&reg, "http://127.0.0.1:50123/other"));
        assert!(!redirect_uri_matches(&reg, "http://[::1]:50123/native"));
        assert!(!redirect_uri_matches(&reg, "http://127.0.0.1:99999999999999999999/native"));
    }

    #[test]
    fn codes_and_secrets_hash_back_and_malformed_ones_do_not() {
        let code = generate_code(&mut Counter(1)).unwrap();
        assert!(hash_code(&code).is_some());
        assert_ne!(hash_code(&code), hash_client_secret(&code.replace(CODE_PREFIX, CLIENT_SECRET_PREFIX)));
        assert_eq!(hash_code(&code[1..]), None);
        let secret = generate_client_secret(&mut Counter(2)).unwrap();
        let stored = hash_client_secret(&secret).unwrap();
        assert!(client_secret_matches(&secret, &stored));
        assert!(!client_secret_matches(&secret.replace('a', "b"), &stored) || !secret.contains('a'));
        assert!(!client_secret_matches("kgcs_", &[0; 32]), "a malformed secret never matches, even a zero hash");
        let id = generate_client_id(&mut Counter(3)).unwrap();
        assert!(is_client_id(&id));
        assert!(!is_client_id(&id[..id.len() - 1]));
    }

    #[test]
    fn scope_and_authorization_details_are_read_and_withdraw_is_never_asked() {
        assert_eq!(parse_requested(None, None).unwrap().permissions, Permissions::READ_ONLY);
        let g = parse_requested(Some("read trade"), None).unwrap();
        assert!(g.permissions.contains(Permission::Trade));
        assert_eq!(parse_requested(Some("read withdraw"), None).unwrap_err().code, ErrorCode::InvalidScope);
        assert_eq!(parse_requested(Some("admin"), None).unwrap_err().code, ErrorCode::InvalidScope);
        let d = r#"[{"type":"keygate_api_key","actions":["read","trade"],"symbols":["BTCUSDT"],"expires_at":99}]"#;
        let g = parse_requested(None, Some(d)).unwrap();
        assert!(g.permissions.contains(Permission::Trade));
        assert_eq!(g.symbols.len(), 1);
        assert_eq!(g.expires_at, Some(UnixMillis(99)));
        for bad in [
            r#"[{"type":"other","actions":["read"]}]"#,
            r#"[{"actions":["read"]}]"#,
            r#"{"type":"keygate_api_key"}"#,
            r#"[{"type":"keygate_api_key","actions":["withdraw"]}]"#,
            r#"[{"type":"keygate_api_key","colour":"red"}]"#,
            "not json",
        ] {
            assert_eq!(
                parse_requested(None, Some(bad)).unwrap_err().code,
                ErrorCode::InvalidAuthorizationDetails,
                "{bad}"
            );
        }
        assert_eq!(parse_requested(Some("read"), Some(d)).unwrap_err().code, ErrorCode::InvalidRequest);
    }

    #[test]
    fn asking_beyond_the_registered_ceiling_is_invalid_scope() {
        let g = parse_requested(Some("read trade"), None).unwrap();
        assert_eq!(check_ceiling(&g, Permissions::READ_ONLY).unwrap_err().code, ErrorCode::InvalidScope);
        check_ceiling(&g, Permissions::with(&[Permission::Trade])).unwrap();
        let w = Grant { permissions: Permissions::with(&[Permission::Withdraw]), ..Grant::default() };
        assert!(check_ceiling(&w, Permissions::with(&[Permission::Trade, Permission::Withdraw])).is_err());
    }

    #[test]
    fn the_owner_can_narrow_but_never_widen() {
        let now = UnixMillis(1_000);
        let asked = parse_requested(
            None,
            Some(r#"[{"type":"keygate_api_key","actions":["trade"],"symbols":["BTCUSDT","ETHUSDT"],"expires_at":50000}]"#),
        )
        .unwrap();
        let keep = Narrowing { keep_trade: true, ..Narrowing::default() };
        let (g, narrowed) = narrow(&asked, &keep, now).unwrap();
        assert_eq!(g, asked);
        assert!(!narrowed);
        let choice = Narrowing {
            keep_trade: false,
            ip_allowlist: vec!["203.0.113.7".into()],
            symbols: vec!["btcusdt".into()],
            expires_at: Some(UnixMillis(20_000)),
        };
        let (g, narrowed) = narrow(&asked, &choice, now).unwrap();
        assert!(narrowed);
        assert_eq!(g.permissions, Permissions::READ_ONLY);
        assert_eq!(g.symbols, vec![Symbol::parse("BTCUSDT").unwrap()]);
        assert_eq!(g.expires_at, Some(UnixMillis(20_000)));
        assert!(!g.ip_allowlist.is_empty());
        let later = Narrowing { keep_trade: true, expires_at: Some(UnixMillis(60_000)), ..Narrowing::default() };
        assert!(narrow(&asked, &later, now).is_err());
        let other = Narrowing { keep_trade: true, symbols: vec!["BNBUSDT".into()], ..Narrowing::default() };
        assert!(narrow(&asked, &other, now).is_err());
        let with_ip = Grant { ip_allowlist: IpAllowlist::parse(&["203.0.113.0/24"]).unwrap(), ..asked.clone() };
        let wider = Narrowing { keep_trade: true, ip_allowlist: vec!["0.0.0.0/8".into()], ..Narrowing::default() };
        assert!(narrow(&with_ip, &wider, now).is_err());
    }

    #[test]
    fn basic_credentials_are_form_decoded() {
        let h = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode("kgapp_x:a%2Bb+c"));
        let (id, secret) = parse_basic(&h).unwrap();
        assert_eq!(id, "kgapp_x");
        assert_eq!(secret.as_str(), "a+b c");
        assert_eq!(parse_basic("Bearer x").unwrap_err().code, ErrorCode::InvalidClient);
    }
}
