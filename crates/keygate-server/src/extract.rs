//! The signed-request extractor: the only way a handler gets a [`VerifiedRequest`].

use crate::{ApiError, AppState, client_ip::client_ip};
use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequest, Request};
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
    let lines: Vec<&str> = req.headers().get_all("x-forwarded-for").iter().filter_map(|v| v.to_str().ok()).collect();
    client_ip(peer, &lines, &state.trusted_proxies)
}

impl<S: Security> FromRequest<AppState> for Signed<S> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        let Some(ip) = request_client_ip(&req, state) else {
            return Err(ApiError::UnknownClient);
        };
        let api_key = req.headers().get("x-mbx-apikey").map(|v| v.as_bytes().to_vec());
        // Refuse a missing or malformed key before reading a byte of the body.
        match api_key.as_deref() {
            None | Some(b"") => return Err(ApiError::Denied(keygate_auth::Denial::MissingApiKey)),
            Some(k) if keygate_auth::ApiKeyId::check(k).is_err() => {
                return Err(ApiError::Denied(keygate_auth::Denial::MalformedApiKey));
            }
            Some(_) => {}
        }
        let counts_order = crate::ratelimit::counts_as_order(req.method(), req.uri().path());
        let order_counts = req.extensions().get::<crate::ratelimit::OrderCountSlot>().cloned();
        let charged = req.extensions().get::<crate::weight::Charged>().cloned();
        let (method, path) = (req.method().clone(), req.uri().path().to_owned());
        let query = req.uri().query().unwrap_or("").as_bytes().to_vec();
        let limit = state.verifier.limits().max_body;
        let body: Bytes = match axum::body::to_bytes(req.into_body(), limit).await {
            Ok(b) => b,
            Err(_) => return Err(ApiError::Denied(keygate_auth::Denial::BodyTooLarge)),
        };
        let unverified = UnverifiedRequest { api_key: api_key.as_deref(), query: &query, body: &body, peer: ip };
        let now = state.service.clock().now();
        match state.verifier.verify(&unverified, S::ACCESS, state.service.cache().as_ref(), now) {
            Ok(request) => {
                state.service.record_use(&request.key().id, &ip.to_string());
                // The weight the middleware could not see: parameters in the body.
                crate::weight::charge_rest(
                    state,
                    charged.as_ref(),
                    &method,
                    &path,
                    request.params(),
                    now.as_millis().0,
                )
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
                state.service.record_denial(&rejection, &ip.to_string());
                Err(ApiError::Denied(rejection.denial))
            }
        }
    }
}
