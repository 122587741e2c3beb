//! Signed requests: the only way a handler gets a [`VerifiedRequest`], verified for the security
//! type its row of the endpoint table gives.
//!
//! [`Signed`] is not an axum extractor: a handler that takes one can only be routed through
//! [`serve`] (via `routes::signed`), which reads the route's row, so the access a handler demands
//! is the table's and nothing else's. In order, [`serve`] verifies the request, charges the weight
//! its body adds, counts the order when the row says the route places one, runs the handler, and
//! settles the count with the answer (given back when the exchange refused the order). What it
//! learned travels with the answer, never through shared slots in the request.

use crate::client_ip::peer_client_ip;
use crate::endpoints::Route;
use crate::ratelimit::write_order_count_headers;
use crate::weight::{Provisional, UsedWeight};
use crate::{ApiError, AppState};
use axum::body::{Bytes, HttpBody};
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};
use keygate_auth::{Access, SignatureCheck, UnverifiedRequest, VerifiedRequest};
use keygate_proto::UnixMicros;
use std::net::{IpAddr, SocketAddr};

/// A request verified for its route's security type. Consumes the body: handlers read parameters
/// only from [`VerifiedRequest::params`], so what was verified is what is executed.
#[derive(Debug)]
pub struct Signed {
    /// The verified request.
    pub request: VerifiedRequest,
    /// The client address it came from.
    pub client_ip: IpAddr,
}

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

impl Signed {
    /// Verifies `req` for `access`, recording the key's use or the denial. Returns the request and
    /// when it was verified (after its body arrived).
    async fn verify(
        req: Request,
        peer: Option<SocketAddr>,
        state: &AppState,
        access: Access,
    ) -> Result<(Self, UnixMicros), ApiError> {
        let Some(ip) = peer_client_ip(peer, req.headers(), &state.trusted_proxies) else {
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
        let query = parts.uri.query().unwrap_or("").as_bytes();
        let limit = state.verifier.limits().max_body;
        // Most signed reads have no body; skip collecting an empty one.
        let body: Bytes = if bodiless {
            Bytes::new()
        } else {
            match axum::body::to_bytes(body, limit).await {
                Ok(b) => b,
                Err(e) if crate::slow_clients::is_body_deadline(&e) => return Err(ApiError::SlowBody),
                Err(e) if crate::slow_clients::is_body_limit(&e) => {
                    return Err(ApiError::Denied(keygate_auth::Denial::BodyTooLarge));
                }
                Err(_) => return Err(ApiError::BodyIncomplete),
            }
        };
        let endpoint = keygate_auth::Endpoint { method: parts.method.as_str(), path: parts.uri.path() };
        let unverified = UnverifiedRequest { api_key, query, body: &body, peer: ip, endpoint };
        let now = state.service.clock().now();
        // Several nodes on one database: a node that cannot confirm it has heard every key change
        // refuses rather than accept a key that may have been revoked elsewhere (issue #13).
        if !state.service.is_current(now.as_millis().0) {
            return Err(ApiError::Unavailable("this node cannot confirm its API keys are current".into()));
        }
        match verify(state, &unverified, access, now).await {
            Ok((request, now)) => {
                state.service.record_use(&request.key().id, ip, now.as_millis());
                Ok((Self { request, client_ip: ip }, now))
            }
            Err(rejection) => {
                state.service.record_denial(&rejection, ip);
                Err(ApiError::Denied(rejection.denial))
            }
        }
    }
}

/// [`keygate_auth::Verifier::verify`], with an Ed25519 signature checked together with those of
/// concurrent requests ([`crate::ed25519_batches`]). Returns the request and the time its
/// verification ended.
async fn verify(
    state: &AppState,
    req: &UnverifiedRequest<'_>,
    access: Access,
    now: UnixMicros,
) -> Result<(VerifiedRequest, UnixMicros), keygate_auth::Rejection> {
    let mut prepared = state.verifier.prepare(req, state.service.cache().as_ref(), now)?;
    let (good, now) = match prepared.signature_check(req) {
        SignatureCheck::Done(good) => (good, now),
        SignatureCheck::Ed25519(check) => {
            let key = std::sync::Arc::clone(prepared.key());
            // A key that sent a bad signature lately is checked alone, here, so that a flood of
            // bad signatures spoils nobody else's batches (`RecentBadSignature`).
            let good =
                if key.bad_signature.recent(now) { check.verify() } else { state.ed25519_batches.verify(check).await };
            if good.is_none() {
                key.bad_signature.note(now);
            }
            // The check may have waited for other requests': the window and the replay guard are
            // judged at the time it ended.
            (good, state.service.clock().now())
        }
    };
    state.verifier.conclude(prepared, good, req, access, now).map(|request| (request, now))
}

/// Answers one request to a signed `route`, from the connection's `peer`, with `handler`: verifies it for the security type of
/// the route's row, charges the weight its body adds (a [`Provisional`] charge left by the weight
/// middleware), counts it against its account's `ORDERS` limits when the row says it places an
/// order (an order over the limit never reaches the engine), runs the handler, and gives the
/// count back when the answer is an error (Binance counts orders placed). A public route (no
/// access to verify) is refused as an internal error: it is routed wrongly.
pub(crate) async fn serve<H, Fut, R>(
    route: Route,
    state: AppState,
    req: Request,
    peer: Option<SocketAddr>,
    handler: H,
) -> Response
where
    H: FnOnce(State<AppState>, Signed) -> Fut,
    Fut: Future<Output = R>,
    R: IntoResponse,
{
    let spec = route.spec();
    let Some(access) = spec.security.access() else {
        return ApiError::Internal(format!("{route:?} is public but routed as signed")).into_response();
    };
    let provisional = req.extensions().get::<Provisional>().copied();
    let (signed, now) = match Signed::verify(req, peer, &state, access).await {
        Ok(verified) => verified,
        Err(e) => return e.into_response(),
    };
    let at_ms = now.as_millis().0;
    // The weight the middleware could not see: parameters in the body.
    let mut used = None;
    if let Some(Provisional(charged)) = provisional {
        let extra = spec.weight.of(signed.request.params()).saturating_sub(charged);
        if extra > 0 {
            let (usage, verdict) = state.limiter.charge_more(signed.client_ip, extra, at_ms).await;
            used = (!usage.is_empty()).then_some(UsedWeight(usage));
            if let Err(refusal) = verdict {
                return with_weight(ApiError::RateLimited(refusal).into_response(), used);
            }
        }
    }
    // Per account, so only once the request is known to be the account's.
    let mut order = None;
    if spec.counts_as_order && state.limiter.config().enabled {
        let account = signed.request.account_id();
        let (usage, verdict) = state.limiter.admit_order(account, at_ms).await;
        let counted = match verdict {
            Ok(counted) => counted,
            Err(refusal) => {
                // Refused by the limit itself: not counted, and the counts are reported.
                let mut res = ApiError::RateLimited(refusal).into_response();
                write_order_count_headers(res.headers_mut(), &usage);
                return with_weight(res, used);
            }
        };
        order = Some((account, usage, counted, state.limiter.clone()));
    }
    let mut res = handler(State(state), signed).await.into_response();
    if let Some((account, usage, counted, limiter)) = order {
        if res.status().is_success() {
            write_order_count_headers(res.headers_mut(), &usage);
        } else {
            // Refused after it was counted: not placed, so not counted (and no count headers,
            // which Binance does not promise on rejected orders either).
            limiter.refund_order(account, at_ms, counted).await;
        }
    }
    with_weight(res, used)
}

/// `res` carrying the address's new usage back to the weight middleware, if more was charged.
fn with_weight(mut res: Response, used: Option<UsedWeight>) -> Response {
    if let Some(used) = used {
        res.extensions_mut().insert(used);
    }
    res
}
