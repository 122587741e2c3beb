//! The HTTP layer's error type and its one mapping to Binance's `{code,msg}` and HTTP status.

use crate::ratelimit::Refusal;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use keygate_auth::{Denial, ParamError, ParamErrorKind};
use keygate_exchange::ExchangeError;
use keygate_proto::{ErrorBody, ErrorCode};
use keygate_service::engine::EngineError;

/// Header carrying the specific denial reason, sent only after the signature verified.
pub const REASON_HEADER: &str = "x-keygate-reason";

/// Content type of every JSON answer, including errors: the official SDK parses error bodies only
/// when it starts with `application/json`.
pub const JSON: &str = "application/json;charset=UTF-8";

/// An error answered on the exchange API.
#[derive(Debug)]
pub enum ApiError {
    /// A refused signed request.
    Denied(Denial),
    /// A bad parameter.
    Param(ParamError),
    /// No such route.
    NotFound,
    /// Route exists, method does not.
    MethodNotAllowed,
    /// A trusted proxy forwarded a client address that cannot be read, so no IP rule can be
    /// applied; refused rather than guessed.
    UnknownClient,
    /// The exchange refused the request, or the handler refused it with an exchange-style
    /// Binance code (-1xxx parameter errors, -2010/-2011/-2013, -4xxx wallet errors): 400 with
    /// the code and message, except an internal invariant (-1000), which is a logged 500.
    Exchange(ExchangeError),
    /// The request's `recvWindow` passed before its command reached the engine (-1021).
    Expired,
    /// The engine's queue is full: 429 -1003 with `Retry-After`.
    Busy,
    /// A rate limit: 429 -1003 or -1015, or 418 -1003 for a banned address, with `Retry-After`.
    RateLimited(crate::ratelimit::Refusal),
    /// Something failed inside; the cause is logged once by the error middleware, never sent.
    Internal(String),
    /// A dependency (the store) does not answer, or this node cannot confirm its keys are current:
    /// 503 -1001, so load balancers take the node out and clients retry elsewhere.
    Unavailable(String),
    /// A command went to the exchange's writer on another node and its answer was lost: 503
    /// -1007, execution status unknown (Binance's answer for the same case).
    OutcomeUnknown(String),
    /// The body did not arrive within its deadline after the headers: 408, and the connection
    /// is closed rather than kept for the rest of the trickle.
    SlowBody,
    /// The body ended before its declared length (the client closed its connection, or the
    /// chunked encoding broke): 400, and the connection is closed.
    BodyIncomplete,
}

impl From<ExchangeError> for ApiError {
    fn from(e: ExchangeError) -> Self {
        Self::Exchange(e)
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::Rejected(e) => Self::Exchange(e),
            EngineError::Expired => Self::Expired,
            EngineError::Busy => Self::Busy,
            // Nothing of the command was acknowledged: the client may retry (Binance's -1001).
            EngineError::Storage(cause) => Self::Unavailable(format!("exchange storage: {cause}")),
            EngineError::Unavailable => Self::Unavailable("the exchange is being rebuilt from storage".to_owned()),
            // The same signed request, carried out before (here, on another node, or before a
            // restart): refused as the replay guard refuses it.
            EngineError::Replayed => Self::Denied(keygate_auth::Denial::SignatureReused),
            EngineError::Stopped => Self::Internal("the exchange engine is not running".to_owned()),
            // Nothing was carried out: the writer could not be reached, or changed meanwhile.
            EngineError::NoWriter(why) => Self::Unavailable(format!("exchange writer: {why}")),
            EngineError::NotWriter => Self::Unavailable("this node is not the exchange writer".to_owned()),
            EngineError::Unknown(why) => Self::OutcomeUnknown(why),
        }
    }
}

impl ApiError {
    /// A 400 with `code` and a message specific to the case, for refusals the handlers decide
    /// themselves (-1116, -1130, -2010, ...); answered like the exchange's own refusals.
    pub(crate) fn binance(code: ErrorCode, msg: impl Into<String>) -> Self {
        Self::Exchange(ExchangeError::BadParam { code, msg: msg.into() })
    }
}

impl From<ParamError> for ApiError {
    fn from(e: ParamError) -> Self {
        Self::Param(e)
    }
}

fn param_code(kind: ParamErrorKind) -> ErrorCode {
    match kind {
        ParamErrorKind::IllegalChars => ErrorCode::IllegalChars,
        ParamErrorKind::TooMany => ErrorCode::TooManyParameters,
        ParamErrorKind::Mandatory => ErrorCode::MandatoryParamEmptyOrMalformed,
        ParamErrorKind::NotRead => ErrorCode::UnreadParameters,
    }
}

impl ApiError {
    /// HTTP status, Binance body and optional reason header: the single mapping for every error.
    fn parts(&self) -> (StatusCode, ErrorBody, Option<&'static str>) {
        let unauthorized = StatusCode::UNAUTHORIZED;
        let bad = StatusCode::BAD_REQUEST;
        match self {
            Self::Param(e) => (bad, ErrorBody::with_msg(param_code(e.kind), e.msg.clone()), None),
            Self::NotFound => {
                (StatusCode::NOT_FOUND, ErrorBody::with_msg(ErrorCode::Unknown, "Unknown endpoint."), None)
            }
            Self::MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                ErrorBody::with_msg(ErrorCode::Unknown, "Method not allowed for this endpoint."),
                None,
            ),
            Self::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, ErrorBody::new(ErrorCode::Disconnected), None),
            Self::OutcomeUnknown(_) => (StatusCode::SERVICE_UNAVAILABLE, ErrorBody::new(ErrorCode::Timeout), None),
            Self::SlowBody => (
                StatusCode::REQUEST_TIMEOUT,
                ErrorBody::with_msg(ErrorCode::Unknown, "The request body did not arrive in time."),
                None,
            ),
            Self::BodyIncomplete => (
                bad,
                ErrorBody::with_msg(ErrorCode::Unknown, "The request body ended before its declared length."),
                None,
            ),
            Self::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, ErrorBody::new(ErrorCode::Unknown), None),
            Self::Exchange(ExchangeError::Internal(_)) => {
                (StatusCode::INTERNAL_SERVER_ERROR, ErrorBody::new(ErrorCode::Unknown), None)
            }
            // Every other exchange refusal is the client's: -1xxx, -2010, -2011, -2013, -4xxx.
            Self::Exchange(e) => (bad, ErrorBody::with_msg(e.error_code(), e.message()), None),
            Self::Expired => (bad, ErrorBody::new(ErrorCode::InvalidTimestamp), None),
            Self::Busy => (
                StatusCode::TOO_MANY_REQUESTS,
                ErrorBody::with_msg(ErrorCode::TooManyRequests, "Too many requests queued."),
                None,
            ),
            Self::RateLimited(r) => match r {
                Refusal::TooManyRequests { msg, .. } => {
                    (StatusCode::TOO_MANY_REQUESTS, ErrorBody::with_msg(ErrorCode::TooManyRequests, msg.clone()), None)
                }
                Refusal::TooManyOrders { msg, .. } => {
                    (StatusCode::TOO_MANY_REQUESTS, ErrorBody::with_msg(ErrorCode::TooManyOrders, msg.clone()), None)
                }
                Refusal::Banned { until_ms, .. } => (
                    StatusCode::IM_A_TEAPOT,
                    ErrorBody::with_msg(
                        ErrorCode::TooManyRequests,
                        format!(
                            "Way too much request weight used; IP banned until {until_ms}. Please use WebSocket Streams for live updates to avoid bans."
                        ),
                    ),
                    None,
                ),
            },
            Self::UnknownClient => (
                bad,
                ErrorBody::with_msg(
                    ErrorCode::Unauthorized,
                    "The client address forwarded by the proxy cannot be read.",
                ),
                None,
            ),
            Self::Denied(d) => {
                let reason = d.after_signature().then(|| d.reason());
                let (status, body) = match d {
                    Denial::MissingApiKey | Denial::MalformedApiKey => {
                        (unauthorized, ErrorBody::new(ErrorCode::BadApiKeyFormat))
                    }
                    Denial::UnknownApiKey
                    | Denial::KeyDisabled
                    | Denial::KeyRevoked
                    | Denial::KeyExpired
                    | Denial::IpNotAllowed { .. }
                    | Denial::PermissionMissing(_)
                    | Denial::IpRestrictionRequired
                    | Denial::SymbolNotAllowed(_) => (unauthorized, ErrorBody::new(ErrorCode::RejectedApiKey)),
                    Denial::BodyTooLarge => (
                        StatusCode::PAYLOAD_TOO_LARGE,
                        ErrorBody::with_msg(ErrorCode::TooManyParameters, "Request body too large."),
                    ),
                    Denial::Param(e) => (bad, ErrorBody::with_msg(param_code(e.kind), e.msg.clone())),
                    Denial::BadRecvWindow => (bad, ErrorBody::new(ErrorCode::BadRecvWindow)),
                    Denial::TimestampAhead { ahead_ms } => (
                        bad,
                        ErrorBody::with_msg(
                            ErrorCode::InvalidTimestamp,
                            format!(
                                "Timestamp for this request was 1000ms ahead of the server's time (it is {ahead_ms} ms ahead)."
                            ),
                        ),
                    ),
                    Denial::TimestampStale { behind_ms } => (
                        bad,
                        ErrorBody::with_msg(
                            ErrorCode::InvalidTimestamp,
                            format!(
                                "Timestamp for this request is outside of the recvWindow (it is {behind_ms} ms behind the server's time)."
                            ),
                        ),
                    ),
                    Denial::BadSignature => (bad, ErrorBody::new(ErrorCode::InvalidSignature)),
                    Denial::SignatureReused => (
                        bad,
                        ErrorBody::with_msg(
                            ErrorCode::InvalidSignature,
                            "Signature for this request was already used.",
                        ),
                    ),
                    Denial::ReplayGuardFull => (
                        StatusCode::TOO_MANY_REQUESTS,
                        ErrorBody::with_msg(ErrorCode::TooManyRequests, "Too many requests; retry shortly."),
                    ),
                    Denial::ReplayKeyQuota => (
                        StatusCode::TOO_MANY_REQUESTS,
                        ErrorBody::with_msg(
                            ErrorCode::TooManyRequests,
                            "Too many new signed requests for this API key; retry shortly.",
                        ),
                    ),
                };
                (status, body, reason)
            }
        }
    }
}

impl ApiError {
    /// A fixed word for the access log saying why: the verifier's denial reason for a refused
    /// signed request (also before the signature verified: the log is the operator's), else the
    /// kind of refusal. Never built from request data.
    const fn log_reason(&self) -> &'static str {
        match self {
            Self::Denied(d) => d.reason(),
            Self::Param(_) => "BAD_PARAMETER",
            Self::NotFound => "NOT_FOUND",
            Self::MethodNotAllowed => "METHOD_NOT_ALLOWED",
            Self::UnknownClient => "CLIENT_ADDRESS_UNREADABLE",
            Self::Exchange(ExchangeError::Internal(_)) => "EXCHANGE_INVARIANT",
            Self::Exchange(_) => "EXCHANGE_REFUSED",
            Self::Expired => "EXPIRED_IN_QUEUE",
            Self::Busy => "ENGINE_BUSY",
            Self::RateLimited(Refusal::TooManyRequests { .. }) => "RATE_LIMITED",
            Self::RateLimited(Refusal::TooManyOrders { .. }) => "ORDER_RATE_LIMITED",
            Self::RateLimited(Refusal::Banned { .. }) => "IP_BANNED",
            Self::Internal(_) => "INTERNAL",
            Self::Unavailable(_) => "UNAVAILABLE",
            Self::OutcomeUnknown(_) => "WRITER_NO_ANSWER",
            Self::SlowBody => "BODY_TOO_SLOW",
            Self::BodyIncomplete => "BODY_INCOMPLETE",
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, body, reason) = self.parts();
        let refused = crate::access_log::Refused { code: body.code, reason: self.log_reason() };
        let json = serde_json::to_vec(&body)
            .unwrap_or_else(|_| format!(r#"{{"code":{},"msg":"error"}}"#, ErrorCode::Unknown.code()).into_bytes());
        let mut res = (status, json).into_response();
        res.extensions_mut().insert(refused);
        let h = res.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(JSON));
        if let Some(r) = reason {
            h.insert(REASON_HEADER, HeaderValue::from_static(r));
        }
        if matches!(self, Self::Denied(Denial::ReplayGuardFull | Denial::ReplayKeyQuota) | Self::Busy) {
            h.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if matches!(self, Self::SlowBody | Self::BodyIncomplete) {
            h.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        if let Self::RateLimited(r) = &self {
            h.insert(header::RETRY_AFTER, HeaderValue::from(r.retry_after()));
        }
        let cause = match self {
            Self::Internal(cause) => Some(cause),
            Self::Exchange(ExchangeError::Internal(what)) => Some(format!("exchange invariant: {what}")),
            _ => None,
        };
        if let Some(cause) = cause {
            // Logged once, by the trace layer, from this extension; never sent to the client.
            res.extensions_mut().insert(InternalCause(cause));
        }
        res
    }
}

/// The internal cause of a 500, for the logging middleware.
#[derive(Debug, Clone)]
pub struct InternalCause(pub String);

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(e: ApiError) -> (u16, i32, String, Option<String>, bool) {
        let res = e.into_response();
        let retry = res.headers().get(header::RETRY_AFTER).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let logged = res.extensions().get::<InternalCause>().is_some();
        let status = res.status().as_u16();
        let bytes = body_bytes(res.into_body());
        let parsed: ErrorBody = serde_json::from_slice(&bytes).unwrap();
        (status, parsed.code, parsed.msg, retry, logged)
    }

    fn body_bytes(body: axum::body::Body) -> Vec<u8> {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(axum::body::to_bytes(body, 1 << 16)).unwrap().to_vec()
    }

    #[test]
    fn engine_errors_map_to_binance_codes_and_statuses() {
        let (s, c, m, _, logged) = answer(EngineError::Rejected(ExchangeError::UnknownSymbol).into());
        assert_eq!((s, c, m.as_str(), logged), (400, -1121, "Invalid symbol.", false));
        let (s, c, _, _, _) = answer(EngineError::Rejected(ExchangeError::InsufficientBalance).into());
        assert_eq!((s, c), (400, -2010));
        let (s, c, _, _, _) = answer(EngineError::Rejected(ExchangeError::AddressNotAllowed).into());
        assert_eq!((s, c), (400, -4035));
        let (s, c, m, _, _) = answer(EngineError::Expired.into());
        assert_eq!((s, c, m.as_str()), (400, -1021, "Timestamp for this request is outside of the recvWindow."));
        let (s, c, _, retry, _) = answer(EngineError::Busy.into());
        assert_eq!((s, c, retry.as_deref()), (429, -1003, Some("1")));
        // Nothing acknowledged, retry: Binance's -1001 with 503 (issue #13), never a 500.
        for e in [EngineError::Storage("disk full".into()), EngineError::Unavailable] {
            let (s, c, m, _, _) = answer(e.into());
            assert_eq!((s, c), (503, -1001));
            assert!(!m.contains("disk"), "internal causes are never sent: {m}");
        }
        let (s, c, _, _, logged) = answer(EngineError::Stopped.into());
        assert_eq!((s, c, logged), (500, -1000, true));
        let (s, c, _, _, logged) = answer(ExchangeError::Internal("overflow").into());
        assert_eq!((s, c, logged), (500, -1000, true));
    }
}
