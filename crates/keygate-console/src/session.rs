//! Cookies, the logged-in viewer, and CSRF checks.
//!
//! * The session cookie holds the service's session token (stored hashed by the service). It is
//!   `HttpOnly; SameSite=Strict; Path=/`, and `Secure` with the `__Host-` prefix when the console
//!   is reached over TLS, so no other site, script or plain-HTTP page can read or plant it.
//! * A logged-in request's CSRF token is the service's per-session token (an HMAC of the session
//!   id, so it rotates with the id at login and step-up). Forms carry it in a hidden `csrf` field,
//!   JSON calls in an `X-CSRF-Token` header.
//! * Before login (sign-up, login) there is no session yet, so a random pre-session cookie plays
//!   its part (double submit): the form must echo the cookie's value, which another site can
//!   neither read nor set.
//! * Every state-changing request that carries an `Origin` header must come from an allowed host.

use crate::{ClientAddr, Console, ConsoleError};
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, header};
use keygate_service::{Actor, SessionInfo, SessionToken};
use std::net::SocketAddr;
use subtle::ConstantTimeEq as _;

/// The session cookie's name.
pub(crate) fn session_cookie_name(secure: bool) -> &'static str {
    if secure { "__Host-kg_session" } else { "kg_session" }
}

/// The pre-session (login CSRF) cookie's name.
pub(crate) fn pre_cookie_name(secure: bool) -> &'static str {
    if secure { "__Host-kg_pre" } else { "kg_pre" }
}

/// The known-device cookie's name: it outlives sessions, so that the owner's browser is told
/// apart from whoever else has the password (see `keygate_service::devices`).
pub(crate) fn device_cookie_name(secure: bool) -> &'static str {
    if secure { "__Host-kg_device" } else { "kg_device" }
}

/// A `Set-Cookie` value with every flag the console needs.
pub(crate) fn set_cookie(name: &str, value: &str, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!("{name}={value}; Path=/; HttpOnly; SameSite=Strict{secure}"))
        .unwrap_or_else(|_| HeaderValue::from_static("invalid=; Max-Age=0"))
}

/// A `Set-Cookie` value that deletes the cookie.
pub(crate) fn clear_cookie(name: &str, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!("{name}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{secure}"))
        .unwrap_or_else(|_| HeaderValue::from_static("invalid=; Max-Age=0"))
}

/// The value of cookie `name`, if the request carries it.
pub(crate) fn read_cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|line| line.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

/// The client address for audit records and throttles.
pub(crate) fn source_of(parts: &Parts) -> Option<String> {
    parts
        .extensions
        .get::<ClientAddr>()
        .map(|c| c.0.to_string())
        .or_else(|| parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip().to_string()))
}

/// Request facts every handler may want: the session token (if any), pre-session value, client
/// address, and whether the origin is acceptable.
#[derive(Debug)]
pub(crate) struct Ctx {
    /// The session cookie's token, when present and well-formed.
    pub token: Option<SessionToken>,
    /// The pre-session cookie's value.
    pub pre: Option<String>,
    /// The client address.
    pub source: Option<String>,
    /// False when an `Origin` header names a host the console does not answer to.
    pub origin_ok: bool,
    /// The `X-CSRF-Token` header.
    pub csrf_header: Option<String>,
    /// Cookies are `Secure`.
    pub secure: bool,
    /// The known-device cookie's token, when present and of a plausible length (the service
    /// checks its signature).
    pub device: Option<String>,
}

impl FromRequestParts<Console> for Ctx {
    type Rejection = ConsoleError;

    async fn from_request_parts(parts: &mut Parts, console: &Console) -> Result<Self, ConsoleError> {
        let secure = console.config().secure_cookies;
        let token = read_cookie(&parts.headers, session_cookie_name(secure)).and_then(|t| SessionToken::parse(&t).ok());
        let pre = read_cookie(&parts.headers, pre_cookie_name(secure)).filter(|p| p.len() == 64);
        let origin_ok = match parts.headers.get(header::ORIGIN).and_then(|o| o.to_str().ok()) {
            None => true,
            Some(origin) => origin
                .strip_prefix("https://")
                .or_else(|| origin.strip_prefix("http://"))
                .is_some_and(|host| console.config().allowed_hosts.allows(host)),
        };
        let csrf_header = parts.headers.get("x-csrf-token").and_then(|v| v.to_str().ok()).map(str::to_owned);
        let device = read_cookie(&parts.headers, device_cookie_name(secure)).filter(|d| d.len() <= 200);
        Ok(Self { token, pre, source: source_of(parts), origin_ok, csrf_header, secure, device })
    }
}

/// A fully logged-in owner.
#[derive(Debug)]
pub(crate) struct Viewer {
    /// The session token (to rotate, step up, log out).
    pub token: SessionToken,
    /// What the service says about the session.
    pub info: SessionInfo,
    /// The owner as the service's subject.
    pub actor: Actor,
}

impl Viewer {
    /// The viewer of a session the service just answered for (a login that finished now).
    pub fn of(token: SessionToken, info: SessionInfo, source: Option<String>) -> Self {
        let actor = Actor::Owner {
            account_id: info.account_id,
            name: info.account.clone(),
            stepped_up_until: info.stepped_up_until,
            source,
            fresh_code: None,
        };
        Self { token, info, actor }
    }
}

impl Ctx {
    /// The logged-in owner, or [`ConsoleError::NotLoggedIn`] (also for a session still waiting
    /// for its second factor).
    pub async fn viewer(&self, console: &Console) -> Result<Viewer, ConsoleError> {
        let token = self.token.clone().ok_or(ConsoleError::NotLoggedIn)?;
        let info = match console.service().session(&token, self.source.clone()).await {
            Ok(i) => i,
            Err(keygate_service::ServiceError::Unauthenticated(_)) => return Err(ConsoleError::NotLoggedIn),
            Err(e) => return Err(e.into()),
        };
        if info.two_factor_pending {
            return Err(ConsoleError::NotLoggedIn);
        }
        Ok(Viewer::of(token, info, self.source.clone()))
    }

    /// The session waiting for its second factor, if that is what the cookie holds.
    pub async fn pending(&self, console: &Console) -> Option<(SessionToken, SessionInfo)> {
        let token = self.token.clone()?;
        let info = console.service().session(&token, self.source.clone()).await.ok()?;
        info.two_factor_pending.then_some((token, info))
    }

    /// Checks a logged-in (or 2FA-pending) request's CSRF token from the form or the header.
    pub fn check_session_csrf(&self, token: &SessionToken, form: Option<&str>) -> Result<(), ConsoleError> {
        let presented = form.or(self.csrf_header.as_deref()).unwrap_or("");
        if self.origin_ok && !presented.is_empty() && token.check_csrf(presented) {
            Ok(())
        } else {
            Err(ConsoleError::Csrf)
        }
    }

    /// Checks an anonymous request's token against the pre-session cookie.
    pub fn check_pre_csrf(&self, form: Option<&str>) -> Result<(), ConsoleError> {
        let presented = form.or(self.csrf_header.as_deref()).unwrap_or("");
        match &self.pre {
            Some(pre) if self.origin_ok && bool::from(pre.as_bytes().ct_eq(presented.as_bytes())) => Ok(()),
            _ => Err(ConsoleError::Csrf),
        }
    }

    /// The pre-session value to put in an anonymous form, and the cookie to set when it is new.
    pub fn pre_token(&self) -> Result<(String, Option<HeaderValue>), ConsoleError> {
        if let Some(p) = &self.pre {
            return Ok((p.clone(), None));
        }
        let mut raw = [0u8; 32];
        getrandom::getrandom(&mut raw)
            .map_err(|_| ConsoleError::Service(keygate_service::ServiceError::Internal("no randomness".into())))?;
        let value = hex::encode(raw);
        let cookie = set_cookie(pre_cookie_name(self.secure), &value, self.secure);
        Ok((value, Some(cookie)))
    }

    /// The cookie carrying a (new or rotated) session.
    pub fn session_cookie(&self, token: &SessionToken) -> HeaderValue {
        set_cookie(session_cookie_name(self.secure), token.expose(), self.secure)
    }

    /// The cookie deleting the session.
    pub fn clear_session_cookie(&self) -> HeaderValue {
        clear_cookie(session_cookie_name(self.secure), self.secure)
    }

    /// The cookies to set after a finished login: the session's, and the browser's fresh
    /// known-device token (kept for the token's lifetime, across logouts) when the service gave
    /// one.
    pub fn login_cookies(&self, s: &keygate_service::NewSession) -> Vec<HeaderValue> {
        let mut cookies = vec![self.session_cookie(&s.token)];
        if let Some(d) = &s.device_token {
            let secure = if self.secure { "; Secure" } else { "" };
            let max_age = keygate_service::devices::KNOWN_DEVICE_TTL_MS / 1000;
            let name = device_cookie_name(self.secure);
            let v = format!("{name}={d}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}");
            if let Ok(v) = HeaderValue::from_str(&v) {
                cookies.push(v);
            }
        }
        cookies
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookie_flags_depend_on_tls() {
        let plain = set_cookie("kg_session", "v", false);
        assert_eq!(plain.to_str().unwrap(), "kg_session=v; Path=/; HttpOnly; SameSite=Strict");
        let tls = set_cookie(session_cookie_name(true), "v", true);
        assert_eq!(tls.to_str().unwrap(), "__Host-kg_session=v; Path=/; HttpOnly; SameSite=Strict; Secure");
    }

    #[test]
    fn reads_the_named_cookie_among_others() {
        let mut h = HeaderMap::new();
        h.append(header::COOKIE, HeaderValue::from_static("a=1; kg_session=xyz"));
        h.append(header::COOKIE, HeaderValue::from_static("kg_pre=p"));
        assert_eq!(read_cookie(&h, "kg_session").as_deref(), Some("xyz"));
        assert_eq!(read_cookie(&h, "kg_pre").as_deref(), Some("p"));
        assert_eq!(read_cookie(&h, "kg"), None);
    }
}
