//! `POST /keygate/v1/leak-reports`: the endpoint a secret scanner reports leaked keygate secrets
//! to (GitHub's secret scanning partner program format). Thin: the service checks the signature,
//! refuses replays, revokes and answers (see `keygate_service::leaks`). Answers are plain JSON in
//! the scanner's format, not Binance's: `[{"token_raw","token_type","label"}]` on success, and
//! `{"error": ...}` with 400 (not a list of tokens), 401 (signature or timestamp), 404 (no
//! reporter key configured) or 409 (a replayed report).

use crate::AppState;
use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use keygate_service::{LeakReport, ServiceError};

/// The handler.
pub(crate) async fn report(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let h = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    // keygate's own headers (timestamped) first, then GitHub's.
    let (key_id, signature, timestamp) = match (h("keygate-leak-key-id"), h("keygate-leak-signature")) {
        (Some(id), Some(sig)) => (id, sig, Some(h("keygate-leak-timestamp").unwrap_or(""))),
        _ => match (h("github-public-key-identifier"), h("github-public-key-signature")) {
            (Some(id), Some(sig)) => (id, sig, None),
            _ if !state.service.accepts_leak_reports() => return error(StatusCode::NOT_FOUND, "not found"),
            _ => return error(StatusCode::UNAUTHORIZED, "the report carries no signature headers"),
        },
    };
    let report = LeakReport { key_id, signature, timestamp, body: &body };
    match state.service.handle_leak_report(report).await {
        Ok(verdicts) => (StatusCode::OK, Json(verdicts)).into_response(),
        Err(ServiceError::NotFound(_)) => error(StatusCode::NOT_FOUND, "not found"),
        Err(ServiceError::Unauthenticated(why)) => error(StatusCode::UNAUTHORIZED, &why),
        Err(ServiceError::Invalid(why)) => error(StatusCode::BAD_REQUEST, &why),
        Err(ServiceError::Conflict(why)) => error(StatusCode::CONFLICT, &why),
        Err(other) => {
            tracing::error!(error = %other, "handling a leak report failed");
            error(StatusCode::SERVICE_UNAVAILABLE, "the report could not be handled now; send it again later")
        }
    }
}

fn error(status: StatusCode, why: &str) -> Response {
    (status, Json(serde_json::json!({ "error": why }))).into_response()
}
