//! The signed-request extractor: the only way a handler gets a [`VerifiedRequest`].

use crate::{ApiError, AppState, client_ip::client_ip};
use axum::body::{Bytes, HttpBody};
use axum::extract::{ConnectInfo, FromRequest, Request};
use axum::http::{HeaderName, HeaderValue};
use keygate_auth::{Access, UnverifiedRequest, VerifiedRequest};
use std::marker::PhantomData;
use std::net::{IpAddr, SocketAddr};

/// Binance security types as types, so a route's access is fixed at compile time.
pub trait Security: Send + Sync + 'static {
    /// What the endpoint demands of a key.
    const ACCESS: Access;
}

/// `USER_DATA`: read permission.
#[derive(Debug)]
pub struct UserData;
impl Security for UserData {
    const ACCESS: Access = Access::USER_DATA;
}

/// `TRADE`: trade permission, single-use signatures.
#[derive(Debug)]
pub struct Trade;
impl Security for Trade {
    const ACCESS: Access = Access::TRADE;
}

/// Withdrawals: withdraw permission, IP allowlist, single-use signatures.
#[derive(Debug)]
pub struct Withdraw;
impl Security for Withdraw {
    const ACCESS: Access = Access::WITHDRAW;
}

/// A request verified for security type `S`. Consumes the body: handlers read parameters only
/// from [`VerifiedRequest::params`], so what was verified is what is executed.
#[derive(Debug)]
pub struct Signed<S: Security> {
    /// The verified request.
    pub request: VerifiedRequest,
    /// The client address it came from.
    pub client_ip: IpAddr,
    _security: PhantomData<S>,
}

/// The client address of a request: the peer, or the trusted proxy's forwarded address;
/// `None` when a trusted proxy forwarded an address that cannot be read, or the connection's
/// peer is unknown.
pub fn request_client_ip(req: &Request, state: &AppState) -> Option<IpAddr> {
    let peer = req.extensions().get::<ConnectInfo<SocketAddr>>()?.0.ip();
    let lines = req.headers().get_all(X_FORWARDED_FOR).into_iter().filter_map(|v| v.to_str().ok());
    client_ip(peer, lines, &state.trusted_proxies)
}

/// `X-Forwarded-For`, as a constant: looking a header up by a `&str` parses the name each time.
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// `X-MBX-APIKEY`, Binance's API key header.
const X_MBX_APIKEY: HeaderName = HeaderName::from_static("x-mbx-apikey");

/// True when the request certainly has no body: the body says it has ended, or, over HTTP/1.x,
/// the head announces none (no `Transfer-Encoding`, no `Content-Length` or a zero one), which is
/// how HTTP/1.1 frames a request body (RFC 9112, section 6.3), so the body is not collected.
fn has_no_body(parts: &axum::http::request::Parts, body: &axum::body::Body) -> bool {
    use axum::http::{Version, header};
    if HttpBody::is_end_stream(body) {
        return true;
    }
    let http1 = matches!(parts.version, Version::HTTP_09 | Version::HTTP_10 | Version::HTTP_11);
    let h = &parts.headers;
    http1
        && !h.contains_key(header::TRANSFER_ENCODING)
        && h.get_all(header::CONTENT_LENGTH).iter().all(|v| v.as_bytes() == b"0")
}

impl<S: Security> FromRequest<AppState> for Signed<S> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        let Some(ip) = request_client_ip(&req, state) else {
            return Err(ApiError::UnknownClient);
        };
        // The head is read in place (no copies of the key, path or query); only the body moves.
        let (parts, body) = req.into_parts();
        let bodiless = has_no_body(&parts, &body);
        let api_key = parts.headers.get(X_MBX_APIKEY).map(HeaderValue::as_bytes);
        match api_key {
            None | Some(b"") => return Err(ApiError::Denied(keygate_auth::Denial::MissingApiKey)),
            // Refuse a malformed key before reading a byte of a body (the verifier checks it
            // again; a bodiless request skips this first check).
            Some(k) if !bodiless && keygate_auth::ApiKeyId::check(k).is_err() => {
                return Err(ApiError::Denied(keygate_auth::Denial::MalformedApiKey));
            }
            Some(_) => {}
        }
        let (method, path) = (&parts.method, parts.uri.path());
        let counts_order = crate::ratelimit::counts_as_order(method, path);
        let order_counts = parts.extensions.get::<crate::ratelimit::OrderCountSlot>();
        let charged = parts.extensions.get::<crate::weight::Charged>();
        let query = parts.uri.query().unwrap_or("").as_bytes();
        let limit = state.verifier.limits().max_body;
        // Most signed reads have no body; skip collecting an empty one.
        let body: Bytes = if bodiless {
            Bytes::new()
        } else {
            match axum::body::to_bytes(body, limit).await {
                Ok(b) => b,
                Err(e) if crate::slow_clients::is_body_deadline(&e) => return Err(ApiError::SlowBody),
                Err(_) => return Err(ApiError::Denied(keygate_auth::Denial::BodyTooLarge)),
            }
        };
        let endpoint = keygate_auth::Endpoint { method: method.as_str(), path };
        let unverified = UnverifiedRequest { api_key, query, body: &body, peer: ip, endpoint };
        let now = state.service.clock().now();
        match state.verifier.verify(&unverified, S::ACCESS, state.service.cache().as_ref(), now) {
            Ok(request) => {
                state.service.record_use(&request.key().id, ip, now.as_millis());
                // The weight the middleware could not see: parameters in the body.
                crate::weight::charge_rest(state, charged, method, path, request.params(), now.as_millis().0)
                    .map_err(ApiError::RateLimited)?;
                if counts_order {
                    // Per account, so only once the request is known to be the account's; an
                    // order over the limit never reaches the engine.
                    let (account, at_ms) = (request.account_id(), now.as_millis().0);
                    let (usage, verdict) = state.limiter.admit_order(account, at_ms);
                    if let Some(slot) = order_counts {
                        slot.set(crate::ratelimit::CountedOrder { account, at_ms, usage, counted: verdict.is_ok() });
                    }
                    verdict.map_err(ApiError::RateLimited)?;
                }
                Ok(Self { request, client_ip: ip, _security: PhantomData })
            }
            Err(rejection) => {
                state.service.record_denial(&rejection, ip);
                Err(ApiError::Denied(rejection.denial))
            }
        }
    }
}
