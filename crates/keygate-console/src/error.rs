//! The console's error type: every refusal with its HTTP status, a stable code for the JSON API,
//! and a message for the person who asked.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use keygate_service::ServiceError;
use keygate_service::engine::EngineError;

/// Why a console request was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    /// The service refused or failed.
    #[error(transparent)]
    Service(#[from] ServiceError),
    /// No valid session.
    #[error("please log in")]
    NotLoggedIn,
    /// The CSRF token is missing or wrong, or the request came from another origin.
    #[error("the form expired or came from another site; reload the page and try again")]
    Csrf,
    /// The request itself is malformed; the message says how.
    #[error("{0}")]
    BadRequest(String),
    /// The exchange engine refused or failed.
    #[error("{0}")]
    Exchange(String),
    /// Too many requests of this kind.
    #[error("{0}")]
    TooMany(String),
}

impl ConsoleError {
    /// The HTTP status.
    #[must_use]
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Service(e) => match e {
                ServiceError::NotFound(_) => StatusCode::NOT_FOUND,
                ServiceError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
                ServiceError::Forbidden(_) | ServiceError::StepUpRequired(_) => StatusCode::FORBIDDEN,
                ServiceError::Conflict(_) => StatusCode::CONFLICT,
                ServiceError::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
                ServiceError::InvalidCode(_) => StatusCode::FORBIDDEN,
                ServiceError::Throttled { .. } => StatusCode::TOO_MANY_REQUESTS,
                ServiceError::WithdrawalHeld(_) => StatusCode::FORBIDDEN,
                ServiceError::Exchange(e) if exchange_refusal(e) => StatusCode::UNPROCESSABLE_ENTITY,
                ServiceError::Exchange(
                    EngineError::Busy
                    | EngineError::Unavailable
                    | EngineError::Storage(_)
                    | EngineError::NoWriter(_)
                    | EngineError::NotWriter
                    | EngineError::Unknown(_),
                ) => StatusCode::SERVICE_UNAVAILABLE,
                ServiceError::Store(_) | ServiceError::Internal(_) | ServiceError::Exchange(_) => {
                    StatusCode::INTERNAL_SERVER_ERROR
                }
            },
            Self::NotLoggedIn => StatusCode::UNAUTHORIZED,
            Self::Csrf => StatusCode::FORBIDDEN,
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Exchange(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::TooMany(_) => StatusCode::TOO_MANY_REQUESTS,
        }
    }

    /// A stable machine-readable code for the JSON API.
    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            Self::Service(e) => match e {
                ServiceError::NotFound(_) => "not_found",
                ServiceError::Invalid(_) => "invalid",
                ServiceError::Forbidden(_) => "forbidden",
                ServiceError::StepUpRequired(_) => "step_up_required",
                ServiceError::Conflict(_) => "conflict",
                ServiceError::Unauthenticated(_) => "unauthenticated",
                ServiceError::InvalidCode(_) => "invalid_code",
                ServiceError::Throttled { .. } => "throttled",
                ServiceError::WithdrawalHeld(_) => "withdrawal_held",
                ServiceError::Exchange(e) if exchange_refusal(e) => "exchange",
                ServiceError::Exchange(
                    EngineError::Busy
                    | EngineError::Unavailable
                    | EngineError::Storage(_)
                    | EngineError::NoWriter(_)
                    | EngineError::NotWriter
                    | EngineError::Unknown(_),
                ) => "busy",
                ServiceError::Store(_) | ServiceError::Internal(_) | ServiceError::Exchange(_) => "internal",
            },
            Self::NotLoggedIn => "unauthenticated",
            Self::Csrf => "csrf",
            Self::BadRequest(_) => "bad_request",
            Self::Exchange(_) => "exchange",
            Self::TooMany(_) => "throttled",
        }
    }

    /// The message shown to the person; internal causes are replaced by a generic sentence (and
    /// logged once, here: they carry no secret, the service's messages never do).
    #[must_use]
    pub fn message(&self) -> String {
        match self {
            Self::Service(ServiceError::Exchange(e)) if exchange_refusal(e) => e.to_string(),
            Self::Service(ServiceError::Exchange(EngineError::Unknown(_))) => {
                "the exchange did not confirm in time: check your wallet before trying again".into()
            }
            Self::Service(ServiceError::Exchange(
                EngineError::Busy
                | EngineError::Unavailable
                | EngineError::Storage(_)
                | EngineError::NoWriter(_)
                | EngineError::NotWriter,
            )) => "the exchange is busy or recovering; please try again in a moment".into(),
            Self::Service(e @ (ServiceError::Store(_) | ServiceError::Internal(_) | ServiceError::Exchange(_))) => {
                tracing::error!(error = %e, "console request failed");
                "something went wrong on the server; please try again".into()
            }
            other => other.to_string(),
        }
    }

    /// Seconds to wait, for throttled answers.
    #[must_use]
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            Self::Service(ServiceError::Throttled { retry_after_ms, .. }) => Some(retry_after_ms.div_ceil(1000).max(1)),
            _ => None,
        }
    }

    /// True when the refusal asks for a (new) fresh 2FA code.
    #[must_use]
    pub fn needs_step_up(&self) -> bool {
        matches!(self, Self::Service(ServiceError::StepUpRequired(_) | ServiceError::InvalidCode(_)))
    }
}

/// True for the exchange's own refusals (a Binance code and a message for the person), as opposed
/// to its engine failing.
fn exchange_refusal(e: &EngineError) -> bool {
    matches!(e, EngineError::Rejected(_) | EngineError::Expired)
}

/// A console refusal's stable code (`unauthenticated`, `csrf`, ...), put in the response's
/// extensions for the server's access log: a fixed word, never a message with request data.
#[derive(Debug, Clone, Copy)]
pub struct Refused(pub &'static str);

impl IntoResponse for ConsoleError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = serde_json::json!({ "error": self.code(), "message": self.message() });
        let mut res = (status, Json(body)).into_response();
        res.extensions_mut().insert(Refused(self.code()));
        if let Some(s) = self.retry_after()
            && let Ok(v) = HeaderValue::from_str(&s.to_string())
        {
            res.headers_mut().insert(header::RETRY_AFTER, v);
        }
        res
    }
}

impl From<keygate_service::engine::EngineError> for ConsoleError {
    fn from(e: keygate_service::engine::EngineError) -> Self {
        Self::Exchange(e.to_string())
    }
}
