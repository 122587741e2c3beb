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

    /// The message shown to the person, written for them (issue #18): no error-kind prefix
    /// ("not authenticated: …"), no command-line flags (`--ip`), a capital letter and a full
    /// stop. Internal causes are replaced by a generic sentence (and logged once, here: they
    /// carry no secret, the service's messages never do).
    #[must_use]
    pub fn message(&self) -> String {
        let text = match self {
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
            // The service's own words, without the kind of refusal in front.
            Self::Service(ServiceError::Unauthenticated(m) | ServiceError::Forbidden(m)) => m.clone(),
            Self::Service(ServiceError::StepUpRequired(m)) if m.contains(" needs ") => m.clone(),
            Self::Service(ServiceError::StepUpRequired(m)) => format!(
                "{m} needs a 2FA code: type the code from your authenticator app in the 2FA code field \
                 (or unlock changes for 5 minutes first)"
            ),
            Self::Service(ServiceError::Throttled { what, retry_after_ms }) => {
                format!("too many attempts ({what}); try again in {}", wait_words(*retry_after_ms))
            }
            other => other.to_string(),
        };
        for_a_person(&text)
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

/// The command-line wording some service rules use, and what the console's forms call the same
/// thing.
const CLI_WORDS: &[(&str, &str)] = &[
    ("add --ip with the addresses that may withdraw", "list the addresses that may withdraw in the IP allowlist"),
    ("add --withdraw-address", "add one under Withdrawal addresses"),
    ("--withdraw-address", "Withdrawal addresses"),
    ("--ip", "the IP allowlist"),
];

/// `text` as a sentence for a person: command-line flags replaced by the form's words, a
/// capital letter first and a full stop last.
pub(crate) fn for_a_person(text: &str) -> String {
    let mut s = text.trim().to_owned();
    for (cli, form) in CLI_WORDS {
        s = s.replace(cli, form);
    }
    let mut chars = s.chars();
    let mut out = match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect::<String>(),
        None => return s,
    };
    if !out.ends_with(['.', '!', '?', ')', '"', '”']) {
        out.push('.');
    }
    out
}

/// "5 minutes", "40 seconds", "2 hours".
fn wait_words(ms: u64) -> String {
    let s = ms.div_ceil(1000).max(1);
    let (n, unit) = if s < 90 {
        (s, "second")
    } else if s < 90 * 60 {
        (s.div_ceil(60), "minute")
    } else {
        (s.div_ceil(3600), "hour")
    };
    format!("{n} {unit}{}", if n == 1 { "" } else { "s" })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_for_a_person_not_for_the_cli() {
        let e = ConsoleError::Service(ServiceError::Unauthenticated("wrong account name or password".into()));
        assert_eq!(e.message(), "Wrong account name or password.");
        let e = ConsoleError::Service(ServiceError::Invalid(
            "the withdraw permission needs an IP allowlist: add --ip with the addresses that may withdraw".into(),
        ));
        assert_eq!(
            e.message(),
            "The withdraw permission needs an IP allowlist: list the addresses that may withdraw in the IP allowlist."
        );
        let e = ConsoleError::Service(ServiceError::Invalid(
            "the withdraw permission needs at least one withdrawal address: add --withdraw-address".into(),
        ));
        assert!(!e.message().contains("--"), "{}", e.message());
        let e = ConsoleError::Service(ServiceError::Forbidden("step-up needs 2FA: enable it first".into()));
        assert_eq!(e.message(), "Step-up needs 2FA: enable it first.");
        let e = ConsoleError::Service(ServiceError::StepUpRequired("revoking all keys".into()));
        assert!(e.message().starts_with("Revoking all keys needs a 2FA code"), "{}", e.message());
        let e = ConsoleError::Service(ServiceError::Throttled { what: "login".into(), retry_after_ms: 299_001 });
        assert_eq!(e.message(), "Too many attempts (login); try again in 5 minutes.");
        for e in [&e, &ConsoleError::NotLoggedIn, &ConsoleError::Csrf] {
            let m = e.message();
            assert!(!m.contains("not authenticated:") && !m.contains("not allowed:"), "{m}");
        }
    }
}
