//! Public endpoints (security type NONE): they ignore `X-MBX-APIKEY`, an empty one included.

use super::BinanceJson;
use crate::AppState;
use axum::extract::State;
use keygate_proto::responses::ServerTime;

/// `GET /api/v3/ping`: `{}`.
pub(crate) async fn ping() -> BinanceJson<serde_json::Value> {
    BinanceJson(serde_json::json!({}))
}

/// `GET /api/v3/time`: the server clock, for client clock-offset sync.
pub(crate) async fn time(State(state): State<AppState>) -> BinanceJson<ServerTime> {
    BinanceJson(ServerTime { server_time: state.service.clock().now().as_millis().0 })
}
