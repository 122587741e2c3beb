//! Liveness and readiness for process supervisors and load balancers.

use super::BinanceJson;
use crate::{ApiError, AppState};
use axum::extract::State;

/// `GET /healthz`: the process answers.
pub(crate) async fn live() -> BinanceJson<serde_json::Value> {
    BinanceJson(serde_json::json!({ "status": "ok" }))
}

/// `GET /readyz`: the store answers a read and a write, the exchange's engine answers, and the
/// key cache is loaded.
pub(crate) async fn ready(State(state): State<AppState>) -> Result<BinanceJson<serde_json::Value>, ApiError> {
    state.service.ready().await.map_err(|e| ApiError::Unavailable(format!("not ready: {e}")))?;
    Ok(BinanceJson(serde_json::json!({ "status": "ready", "keys_cached": state.service.cache().len() })))
}
