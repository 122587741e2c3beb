//! Liveness and readiness for process supervisors and load balancers.

use super::BinanceJson;
use crate::{ApiError, AppState};
use axum::extract::State;

/// `GET /healthz`: the process answers.
pub(crate) async fn live() -> BinanceJson<serde_json::Value> {
    BinanceJson(serde_json::json!({ "status": "ok" }))
}

/// `GET /readyz`: the store answers a read and a write, the exchange's engine answers, and the
/// key cache is loaded. With shared counters (`--redis-url`), it asks them too and says what it
/// found under `shared_counters`, but stays ready when they do not answer: the node then limits
/// by its own counts (`rate_limits_scope` says `NODE`), which is no reason to stop serving.
pub(crate) async fn ready(State(state): State<AppState>) -> Result<BinanceJson<serde_json::Value>, ApiError> {
    state.service.ready().await.map_err(|e| ApiError::Unavailable(format!("not ready: {e}")))?;
    let mut body = serde_json::json!({ "status": "ready", "keys_cached": state.service.cache().len() });
    if let Some(shared) = state.service.shared_counters() {
        let status = shared.probe().await;
        body["shared_counters"] = serde_json::json!({
            "backend": status.backend,
            "reachable": status.reachable,
            "error": status.error,
        });
    }
    if state.limiter.config().enabled {
        body["rate_limits_scope"] = if state.limiter.shared_now() { "CLUSTER" } else { "NODE" }.into();
    }
    Ok(BinanceJson(body))
}
